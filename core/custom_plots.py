"""PNG plots of a custom model's card: held-out confusion matrix and learning curve."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def plot_confusion_matrix(cm, classes, path: str | Path, *, title: str = "") -> Path:
    """Confusion matrix (rows true, columns predicted): row-normalised colours, counts in cells."""
    cm = np.asarray(cm)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    fig = _figure((1.2 + 0.8 * n, 1.0 + 0.7 * n))
    ax = fig.add_subplot()
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            color = "white" if norm[i, j] > 0.5 else "black"
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", color=color, fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)


def plot_learning_curve(curve: list[dict], path: str | Path, *, baseline=None) -> Path:
    """Held-out UAR against labelled clips per class; ``baseline`` = (label, UAR) drawn flat."""
    fig = _figure((5, 3.5))
    ax = fig.add_subplot()
    x = [p["clips_per_class"] for p in curve]
    ax.plot(x, [p["uar"] for p in curve], marker="o", label="custom model")
    if baseline is not None:
        ax.axhline(baseline[1], color="grey", linestyle="--", label=baseline[0])
    ax.set_xlabel("labelled training clips per class")
    ax.set_ylabel("held-out UAR")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)
