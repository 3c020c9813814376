import subprocess
import sys

from core.calibration import coverage_curve, reliability_curve
from core.plots import plot_coverage, plot_reliability
from tests.core.test_calibration import calibrated_sample, sharpen


def test_plots_write_png(tmp_path):
    P, y = calibrated_sample(2_000, seed=6)
    before, after = reliability_curve(sharpen(P, 3.0), y), reliability_curve(P, y)
    for path in (
        plot_reliability(after, tmp_path / "one.png"),
        plot_reliability({"raw": before, "scaled": after}, tmp_path / "two.png", title="t"),
        plot_coverage(coverage_curve(P, y), tmp_path / "cov.png"),
        plot_coverage({"a": coverage_curve(P, y), "b": coverage_curve(sharpen(P, 3), y)},
                      tmp_path / "cov2.png"),
    ):  # fmt: skip
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5_000


def test_only_drawing_a_plot_loads_matplotlib():
    code = (
        "import sys, core.calibration, core.evaluation, core.plots, core.cli; "
        "print('matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]
