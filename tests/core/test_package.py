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
