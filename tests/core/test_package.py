"""The flat ``core`` namespace: every advertised name resolves, lazily."""

import subprocess
import sys

import core


def test_every_exported_name_resolves():
    for name in core.__all__:
        assert getattr(core, name) is not None, name


def test_importing_errors_does_not_load_the_ml_stack():
    code = "import core.errors, sys; print('sklearn' in sys.modules, 'librosa' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_every_package_is_listed_for_the_wheel():
    """pyproject.toml lists the packages by hand (so models/ installs as aer_models): a new
    package folder missing from the list would be left out of a non-editable install."""
    import tomllib
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    config = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {
        ".".join(init.parent.relative_to(repo).parts)
        for top in ("core", "api", "worker", "migrations")
        for init in (repo / top).rglob("__init__.py")
    }
    assert set(config["packages"]) == found | {"aer_models"}
    assert config["package-dir"] == {"aer_models": "models"}


def test_the_wheel_ships_the_models_the_demo_clips_and_the_migrations(tmp_path):
    """A non-editable install (the Docker image's ``pip install .``) must find everything
    ``aer demo`` needs without the source tree."""
    import zipfile
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q"]
    subprocess.run([*cmd, "-w", str(tmp_path), str(repo)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("aer-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    default = (repo / "models" / "default.txt").read_text().split()[0]
    for needed in (
        "aer_models/default.txt",
        f"aer_models/{default}.skops",
        f"aer_models/{default}.json",
        "api/store/settings.py",
        "migrations/versions/0001_initial.py",
        "core/samples/ravdess/README.md",
    ):
        assert needed in names, needed
    clips = [n for n in names if n.startswith("core/samples/ravdess/") and n.endswith(".flac")]
    assert len(clips) == 16
