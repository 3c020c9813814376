"""The generated Markdown card of a custom model: ``<name>.md`` next to its artifact."""

from __future__ import annotations

import math
from pathlib import Path

from core.custom_plots import plot_confusion_matrix, plot_learning_curve
from core.model import EmotionModel

_SPLIT = {
    "speaker": "by speaker: no speaker has clips on both sides, as with a new caller",
    "file": "by file: not every clip has a speaker, so one speaker may be on both sides, "
    "which flatters the score (add a speaker column to measure it on new voices)",
    "given": "on the held-out clips given with the training request",
}


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(header, rows) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)]


def _plots(model: EmotionModel, models_dir: Path) -> list[Path]:
    m = model.metadata["metrics"]
    folder = models_dir / "plots" / model.name
    folder.mkdir(parents=True, exist_ok=True)
    comp = m["default_comparison"]
    baseline = None
    if comp.get("comparable") and len(comp["shared_labels"]) == len(m["classes"]):
        baseline = (f"{comp['model']} (default)", comp["default"]["uar"])
    title = f"{model.name}: held-out UAR {m['uar']:.2f}, accuracy {m['accuracy']:.2f}"
    return [
        plot_confusion_matrix(
            m["confusion_matrix"], m["classes"], folder / "confusion.png", title=title
        ),
        plot_learning_curve(m["learning_curve"], folder / "learning_curve.png", baseline=baseline),
    ]


def _comparison(comp: dict) -> list[str]:
    if not comp.get("comparable"):
        return [f"Not comparable: {comp.get('reason', '')}."]
    shared = comp["shared_labels"]
    lines = [
        f"`{comp['model']}` {comp['version']} on the same {comp['n']} held-out clips of the "
        f"labels it shares with this model ({', '.join(shared)}); both models choose among "
        "those labels only.",
        "",
    ]
    rows = [
        ["UAR", comp["custom"]["uar"], comp["default"]["uar"]],
        ["accuracy", comp["custom"]["accuracy"], comp["default"]["accuracy"]],
    ]
    rows += [
        [
            f"recall {c}",
            comp["custom"]["per_class_recall"][c],
            comp["default"]["per_class_recall"][c],
        ]
        for c in shared
    ]
    return lines + _table(["", "this model", comp["model"]], rows)


def card_text(model: EmotionModel, plots: list[Path], models_dir: Path) -> str:
    """The card's Markdown."""
    meta, m = model.metadata, model.metadata["metrics"]
    t, classes = meta["training"], m["classes"]
    ravdess = t.get("add_ravdess")
    se = math.sqrt(max(m["accuracy"] * (1 - m["accuracy"]), 1e-9) / max(m["n_test"], 1))
    lines = [
        f"# Model card: {model.name} (custom model)",
        "",
        *_table(
            ["", ""],
            [
                ["Version", model.version],
                ["Labels", ", ".join(classes)],
                [
                    "Recipe",
                    f"preset `{meta['preset']}` on `{model.feature_set.id}` features (a "
                    "bandwidth-router preset is fitted as its wideband model alone)",
                ],
                [
                    "Training data",
                    f"{t['n_files']} labelled clips ({t['n_spans']} of them spans of "
                    f"files), {t['n_speakers']} speakers; per label: "
                    + ", ".join(f"{c} {n}" for c, n in t["class_counts"].items()),
                ],
                [
                    "RAVDESS added",
                    "no"
                    if not ravdess
                    else f"yes: {ravdess['n_clips']} clips of its labels in every fit",
                ],
                ["Failed clips", t["n_failed"]],
            ],
        ),
        "",
        "## Held-out evaluation",
        "",
        f"{m['n_test']} of the {m['n_train'] + m['n_test']} clips were held out "
        f"{_SPLIT[m['held_out_by']]}. The model scored here was fitted on the other "
        f"{m['n_train']}; the saved model was then refitted on all of them."
        + (f" Note: {m['split_note']}." if m.get("split_note") else ""),
        "",
        *_table(
            ["UAR", "accuracy", "macro-F1", "ECE"],
            [[m["uar"], m["accuracy"], m["macro_f1"], m["ece"]]],
        ),
        "",
        f"With {m['n_test']} held-out clips the accuracy is known to about ±{se:.2f} (one "
        "binomial standard error): small differences between models are noise.",
        "",
        *_table(["label", "recall"], [[c, m["per_class_recall"][c]] for c in classes]),
        "",
        "Confusion matrix (rows: true label, columns: predicted):",
        "",
        *_table(
            ["true \\ predicted", *classes],
            [[c, *row] for c, row in zip(classes, m["confusion_matrix"], strict=True)],
        ),
        "",
        "## Learning curve",
        "",
        "Held-out UAR of the same recipe refitted on k labelled clips per label (same held-out "
        "clips; the last row is the whole training part). A curve still rising at the end means "
        "more labels will help.",
        "",
        *_table(
            ["clips per label", "training clips", "UAR", "accuracy"],
            [
                [p["clips_per_class"], p["n_train"], p["uar"], p["accuracy"]]
                for p in m["learning_curve"]
            ],
        ),
        "",
        "## The default model on the same clips",
        "",
        *_comparison(m["default_comparison"]),
        "",
        "## Plots",
        "",
        *[f"![{p.stem}]({p.relative_to(models_dir).as_posix()})" for p in plots],
        "",
    ]
    return "\n".join(lines)


def write_card(model: EmotionModel, models_dir: str | Path) -> tuple[Path, list[Path]]:
    """Write ``<models_dir>/<name>.md`` and its PNGs (under ``plots/<name>/``)."""
    models_dir = Path(models_dir)
    plots = _plots(model, models_dir)
    path = models_dir / f"{model.name}.md"
    path.write_text(card_text(model, plots, models_dir))
    return path, plots
