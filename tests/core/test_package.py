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
