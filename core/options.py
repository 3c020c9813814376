"""The analysis options a caller can choose, in one light module (no numerical imports), so
that services can validate them without loading the audio stack.

The first value of each tuple is the default.
"""

from __future__ import annotations

#: ``channels``: mix the channels down, or analyse each on its own (stereo calls).
CHANNEL_MODES = ("mix", "split")
#: ``segmentation``: speech segments (VAD), fixed windows, or each channel whole.
SEGMENTATIONS = ("vad", "fixed", "none")
