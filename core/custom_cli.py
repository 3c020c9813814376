"""The custom-model part of ``aer train``: its options and what it runs and prints."""

from __future__ import annotations

import click

from core.custom import train_custom
from core.custom_data import as_clips, read_clips_manifest
from core.datasets import read_dataset
from core.errors import AERError
from core.registry import ModelRegistry


def custom_options(f):
    """``--custom``, ``--add-ravdess``, ``--holdout`` and ``--overwrite`` for ``aer train``."""
    options = [
        click.option("--custom", is_flag=True,
                     help="Train a custom model from --data (implied by --manifest): "
                          "held-out card, learning curve, default-model comparison."),
        click.option("--add-ravdess", type=click.Path(exists=True, file_okay=False),
                     help="Custom models: also train on this RAVDESS folder's clips of your "
                          "labels (off by default)."),
        click.option("--holdout", type=click.FloatRange(0.05, 0.5), default=0.25,
                     show_default=True,
                     help="Custom models: share held out for the card (by speaker when every "
                          "clip has one, else by file)."),
        click.option("--overwrite", is_flag=True,
                     help="Custom models: replace a model of the same name."),
    ]  # fmt: skip
    for option in reversed(options):
        f = option(f)
    return f


def _progress(stage: str, done: int, total: int) -> None:
    if done == 0 or stage == "features" and done == total:
        click.echo(f"{stage} {done}/{total}" if stage == "features" else stage, err=True)


def run_custom(*, data, manifest, preset, classes, cache_dir, jobs, seed, quiet, name, version,
               out, set_default, add_ravdess, holdout, overwrite) -> None:  # fmt: skip
    """Train, save and summarise a custom model (see :func:`core.custom.train_custom`)."""
    if bool(data) == bool(manifest):
        raise click.UsageError("give exactly one of --data DIR or --manifest CSV")
    try:
        clips = read_clips_manifest(manifest) if manifest else as_clips(read_dataset(data))
        if classes:
            clips = [c for c in clips if c.label in set(classes)]
        click.echo(f"{len(clips)} labelled clips from {manifest or data}", err=True)
        result = train_custom(
            clips,
            name=name,
            recipe=preset,
            add_ravdess=add_ravdess,
            holdout=holdout,
            seed=seed,
            models_dir=out,
            cache_dir=cache_dir,
            n_jobs=jobs,
            version=version,
            overwrite=overwrite,
            progress=None if quiet else _progress,
        )
        if set_default:
            ModelRegistry(out).set_default(name)
    except AERError as exc:
        raise click.ClickException(str(exc)) from None
    m = result.metrics
    click.echo(f"saved {result.model_path} and its card {result.card_path}")
    click.echo(
        f"held out by {m['held_out_by']} ({m['n_test']} of {m['n_train'] + m['n_test']} clips): "
        f"UAR {m['uar']:.3f}, accuracy {m['accuracy']:.3f}, ECE {m['ece']:.3f}"
    )
    if m["split_note"]:
        click.echo(f"  note: {m['split_note']}")
    curve = ", ".join(f"{p['clips_per_class']:g}: {p['uar']:.3f}" for p in m["learning_curve"])
    click.echo(f"  learning curve (clips per label: UAR): {curve}")
    comp = m["default_comparison"]
    if comp.get("comparable"):
        click.echo(
            f"  on {', '.join(comp['shared_labels'])}: this model UAR {comp['custom']['uar']:.3f}, "
            f"{comp['model']} {comp['default']['uar']:.3f} ({comp['n']} clips)"
        )
    else:
        click.echo(f"  default model: not comparable ({comp.get('reason', '')})")
