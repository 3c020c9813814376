"""The sample clips ship inside the package, with their licence."""

import soundfile as sf

from core.datasets import EMOTIONS, parse_ravdess_name
from core.samples import demo_clips, demo_folder


def test_demo_clips_are_two_per_emotion_sorted_16k_flac():
    clips = demo_clips()
    assert len(clips) == 16 and clips == sorted(clips)
    assert all(c.parent == demo_folder() and c.suffix == ".flac" for c in clips)
    emotions = sorted(parse_ravdess_name(c).emotion for c in clips)
    assert emotions == sorted(EMOTIONS * 2)
    assert {sf.info(c).samplerate for c in clips} == {16_000}


def test_the_licence_ships_with_the_clips():
    readme = (demo_folder() / "README.md").read_text()
    assert "CC BY-NC-SA 4.0" in readme and "Livingstone SR, Russo FA (2018)" in readme
