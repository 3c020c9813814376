"""PNG plots of evaluation results: confusion matrix, loss curves, reliability and coverage.

The only module of ``core`` that uses matplotlib, imported when a plot is drawn (the Agg canvas:
no display, no pyplot state).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from core.evaluation import EvaluationReport


def _named(curves, single_key: str) -> dict:
    """A curve, or a {name: curve} mapping, as a {name: curve} dict."""
    if isinstance(curves, Mapping) and single_key in curves:
        return {"model": curves}
    if isinstance(curves, Mapping):
        return dict(curves)
    return {"model": curves}


def _figure(figsize):
    """A figure on the Agg canvas: no pyplot, so no global state shared between threads."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def plot_reliability(curves, path: str | Path, *, title: str | None = None) -> Path:
    """Save a reliability diagram as PNG.

    Args:
        curves: one :func:`core.calibration.reliability_curve` result, or ``{name: curve}``
            to overlay several (e.g. before and after temperature scaling).
    """
    named = _named(curves, "ece")
    fig = _figure((5.0, 5.5))
    ax, hist = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
    for name, c in named.items():
        pts = [(x, y) for x, y in zip(c["confidence"], c["accuracy"], strict=True) if x is not None]
        xs, ys = zip(*pts, strict=True) if pts else ((), ())
        ax.plot(xs, ys, marker="o", markersize=4, label=f"{name} (ECE {c['ece']:.3f})")
        edges = c["bin_edges"]
        hist.stairs(c["count"], edges, label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(title or "reliability diagram (top label)", fontsize=9)
    hist.set_xlabel("confidence")
    hist.set_ylabel("count")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return Path(path)


def plot_coverage(curves, path: str | Path, *, title: str | None = None) -> Path:
    """Save accuracy versus coverage (thresholds annotated) as PNG.

    Args:
        curves: one :func:`core.calibration.coverage_curve` result, or ``{name: curve}``
            to overlay several.
    """
    named = {"model": curves} if isinstance(curves, list) else dict(curves)
    fig = _figure((5.5, 4.0))
    ax = fig.add_subplot()
    for name, rows in named.items():
        rows = [r for r in rows if r["accuracy"] is not None]
        cov = [r["coverage"] for r in rows]
        acc = [r["accuracy"] for r in rows]
        (line,) = ax.plot(cov, acc, marker="o", markersize=2, linewidth=1, label=name)
        last = 2.0
        for r in rows:  # label thresholds sparsely: one per ~0.08 of coverage
            if abs(last - r["coverage"]) >= 0.08:
                last = r["coverage"]
                ax.annotate(f"{r['threshold']:.2f}", (r["coverage"], r["accuracy"]),
                            xytext=(0, 4), textcoords="offset points", fontsize=6,
                            color=line.get_color(), ha="center")  # fmt: skip
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("coverage (share answered)")
    ax.set_ylabel("accuracy of answered")
    ax.set_title(title or "accuracy vs coverage (labels: confidence threshold)", fontsize=9)
    if len(named) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return Path(path)


def plot_confusion(report: EvaluationReport, path: str | Path) -> Path:
    """Save the summed confusion matrix (row-normalised colours, counts in cells) as PNG."""
    cm = report.confusion
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(report.classes)
    fig = _figure((1.0 + 0.8 * n, 0.8 + 0.7 * n))
    ax = fig.add_subplot()
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), report.classes, rotation=45, ha="right")
    ax.set_yticks(range(n), report.classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                int(cm[i, j]),
                ha="center",
                va="center",
                color="white" if norm[i, j] > 0.5 else "black",
                fontsize=8,
            )
    s = report.summary()
    ax.set_title(
        f"{report.preset}, {report.protocol} protocol: acc {s['accuracy']:.2f}, UAR {s['uar']:.2f}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return Path(path)


def plot_loss_curves(report: EvaluationReport, path: str | Path) -> Path:
    """Save each fold's training loss curve (MLP presets) as PNG."""
    fig = _figure((6, 4))
    ax = fig.add_subplot()
    for f in report.folds:
        if f.loss_curve:
            ax.plot(f.loss_curve, label=f"fold {f.fold}", linewidth=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title(f"{report.preset} training loss per fold", fontsize=9)
    if any(f.loss_curve for f in report.folds):
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return Path(path)
