"""Sample clips shipped with the package: 16 RAVDESS clips for ``aer demo`` and the tests.

Attribution and licence (CC BY-NC-SA 4.0, not the project's MIT): ``ravdess/README.md``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def demo_folder() -> Path:
    """The folder of the demo clips (RAVDESS-named 16 kHz FLAC files, and their README.md)."""
    return Path(str(resources.files(__name__) / "ravdess"))


def demo_clips() -> list[Path]:
    """The demo clips, sorted by name: two per emotion of RAVDESS's eight."""
    return sorted(demo_folder().glob("*.flac"))
