"""Command line for the ML pipeline: ``train``, ``evaluate`` and ``predict``.

``cli`` is the click group the service's ``api/cli.py`` extends; ``python -m core.cli`` runs
these commands alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from core.artifacts import save_model
from core.custom_cli import custom_options, run_custom
from core.datasets import Dataset, read_dataset, read_manifest
from core.degrade import DEGRADATIONS, parse_degradation
from core.errors import AERError
from core.evaluation import PROTOCOLS, EvaluationReport, evaluate
from core.plots import plot_confusion, plot_coverage, plot_loss_curves, plot_reliability
from core.predict import FilePrediction, predict_files
from core.presets import DEFAULT_RECIPE, PRESETS, RANDOM_STATE
from core.registry import DEFAULT_MODELS_DIR, ModelRegistry
from core.training import train_model

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "aer" / "features"


def _split_list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _read_data(data: str | None, manifest: str | None) -> Dataset:
    if bool(data) == bool(manifest):
        raise click.UsageError("give exactly one of --data DIR or --manifest CSV")
    dataset = read_manifest(manifest) if manifest else read_dataset(data)
    click.echo(f"{len(dataset)} files from {dataset.source}", err=True)
    if dataset.skipped:
        click.echo(f"skipped {len(dataset.skipped)} file(s):", err=True)
        for path, reason in dataset.skipped[:20]:
            click.echo(f"  {path}: {reason}", err=True)
        if len(dataset.skipped) > 20:
            click.echo(f"  ... and {len(dataset.skipped) - 20} more", err=True)
    return dataset


def _report_failed(failed: list[tuple[str, str]]) -> None:
    if failed:
        click.echo(f"{len(failed)} file(s) could not be used:", err=True)
        for path, reason in failed[:20]:
            click.echo(f"  {path}: {reason}", err=True)


def _check_specs(ctx, param, value: str | None) -> str | None:
    """Validate degradation spec(s) before any work starts."""
    for spec in _split_list(value):
        try:
            parse_degradation(spec)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


def _degradations_help() -> str:
    """The epilog of train and evaluate: every degradation step, one a line."""
    width = max(len(d.usage) for d in DEGRADATIONS)
    lines = [f"  {d.usage:<{width}}  {d.description}" for d in DEGRADATIONS]
    intro = (
        "Degradation specs for --augment, --also-test and --degrade; steps joined with '+' "
        "apply left to right (noise:20+telephone):"
    )
    return intro + "\n\n\b\n" + "\n".join(lines)  # \b: click keeps the lines as they are


def _data_options(f):
    """Options shared by train and evaluate."""
    options = [
        click.option("--data", type=click.Path(exists=True, file_okay=False), help="Folder: "
                     "RAVDESS-named files, or label/.../file."),
        click.option("--manifest", type=click.Path(exists=True, dir_okay=False),
                     help="CSV with path,label[,speaker] columns."),
        click.option("--preset", type=click.Choice(list(PRESETS)),
                     help="Recipe (default: seed-300; for custom models the default "
                          f"model's, {DEFAULT_RECIPE})."),
        click.option("--features", "feature_set",
                     help="Feature set: name (its latest version) or name@version, e.g. emo@1 "
                          "(default: the preset's, e.g. emo for emo-*)."),
        click.option("--classes", help="Comma-separated classes to keep (default: all)."),
        click.option("--augment", callback=_check_specs,
                     help="Degradation spec(s), comma-separated: add a degraded "
                     "copy of every training file per spec (e.g. speed:0.9,speed:1.1,telephone)."),
        click.option("--cache-dir", type=click.Path(file_okay=False),
                     default=str(DEFAULT_CACHE_DIR), show_default=True,
                     help="Feature cache folder."),
        click.option("--no-cache", is_flag=True, help="Do not read or write the feature cache."),
        click.option("--jobs", type=int, default=0, show_default=True,
                     help="Worker processes for feature extraction (0 = all cores)."),
        click.option("--seed", type=int, default=RANDOM_STATE, show_default=True,
                     help="Random state for models and splits."),
        click.option("--quiet", is_flag=True, help="No progress bars."),
        click.option("--also-test", callback=_check_specs,
                     help="More test-audio degradations, comma-separated (e.g. "
                     "telephone,noise:10,gain:-12), scored with the same fold models."),
        click.option("--plots", type=click.Path(file_okay=False),
                     help="Write confusion, loss, reliability and coverage PNGs here."),
    ]  # fmt: skip
    for option in reversed(options):
        f = option(f)
    return f


@click.group()
def cli() -> None:
    """AER: speech emotion recognition."""


@cli.command(epilog=_degradations_help())
@_data_options
@click.option("--name", required=True, help="Model name (file stem in --out).")
@click.option("--version", "model_version", help="Model version (default: UTC date-time).")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=str(DEFAULT_MODELS_DIR),
    show_default=True,
    help="Folder to write <name>.skops and <name>.json to.",
)
@click.option(
    "--evaluate/--no-evaluate",
    "run_eval",
    default=True,
    show_default=True,
    help="Also run speaker-independent cross-validation and store its metrics.",
)
@click.option("--folds", type=int, default=6, show_default=True)
@click.option("--set-default", is_flag=True, help="Make this model the default in --out.")
@custom_options
def train(data, manifest, preset, feature_set, classes, augment, cache_dir, no_cache, jobs, seed,
          quiet, also_test, plots, name, model_version, out, run_eval, folds,
          set_default, custom, add_ravdess, holdout, overwrite) -> None:  # fmt: skip
    """Train a model on a dataset and save it to --out.

    With --manifest (or --custom, or --add-ravdess) it trains a custom model from your labels:
    held-out scores, learning curve and the default model's score go in its card <name>.md.
    """
    if custom or manifest or add_ravdess:
        if feature_set or augment or also_test:
            raise click.UsageError(
                "--features, --augment and --also-test are not used by "
                "custom training (the recipe decides)"
            )
        run_custom(
            data=data,
            manifest=manifest,
            preset=preset,
            classes=_split_list(classes),
            cache_dir=None if no_cache else cache_dir,
            jobs=jobs,
            seed=seed,
            quiet=quiet,
            name=name,
            version=model_version,
            out=out,
            set_default=set_default,
            add_ravdess=add_ravdess,
            holdout=holdout,
            overwrite=overwrite,
        )
        return
    dataset = _read_data(data, manifest)
    common = dict(
        preset=preset or "seed-300",
        feature_set=feature_set,
        classes=_split_list(classes) or None,
        augment=_split_list(augment),
        cache_dir=None if no_cache else cache_dir,
        n_jobs=jobs,
        random_state=seed,
        progress=not quiet,
    )
    try:
        model = train_model(dataset, name=name, version=model_version, **common)
        _report_failed([tuple(f) for f in model.metadata["training"]["failed"]])
        if run_eval and dataset.has_speakers:
            report = evaluate(
                dataset, protocol="speaker", folds=folds, also_test=_split_list(also_test), **common
            )
            model.metadata["metrics"] = _summary(report, plots)
            model.metadata["suggested_uncertain_below"] = report.suggested_uncertain_below()
        elif run_eval:
            click.echo("no speaker information: skipping evaluation", err=True)
        path = save_model(model, out)
        if set_default:
            ModelRegistry(out).set_default(name)
    except AERError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"saved {path} ({model.name} {model.version}, {len(model.labels)} classes)")
    metrics = model.metadata["metrics"]
    if metrics:
        click.echo(f"speaker-independent {metrics['n_folds']}-fold:")
        _echo_headline(metrics)
        click.echo(f"  suggested_uncertain_below {model.metadata['suggested_uncertain_below']}")


def _summary(report: EvaluationReport, plots: str | None) -> dict:
    """The report's summary, with the paths of the plots written to ``plots`` (if given)."""
    summary = report.summary()
    if plots:
        folder = Path(plots)
        folder.mkdir(parents=True, exist_ok=True)
        written = [
            plot_confusion(report, folder / "confusion.png"),
            plot_loss_curves(report, folder / "loss.png"),
        ]
        if "reliability_curve" in summary:
            curves = {summary["preset"]: summary["reliability_curve"]}
            if "reliability_curve_uncalibrated" in summary:
                curves = {
                    "uncalibrated": summary["reliability_curve_uncalibrated"],
                    "calibrated": summary["reliability_curve"],
                }
            written.append(plot_reliability(curves, folder / "reliability.png"))
            written.append(plot_coverage(summary["coverage_curve"], folder / "coverage.png"))
        summary["plots"] = [str(p) for p in written]
    return summary


def _echo_headline(summary: dict) -> None:
    """Accuracy, UAR, macro-F1, ECE and per-condition UAR, one line each."""
    for key in ("accuracy", "uar", "macro_f1"):
        click.echo(f"  {key:<9} {summary[key]:.3f} ± {summary[key + '_std']:.3f}")
    if "ece" in summary:
        floor = summary["ece_noise_floor"]["mean"]
        before = summary.get("ece_uncalibrated")
        extra = f" (uncalibrated {before:.3f})" if before is not None else ""
        click.echo(f"  ECE       {summary['ece']:.3f}{extra}, noise floor {floor:.3f}")
    for cond, c in summary.get("conditions", {}).items():
        click.echo(
            f"  {cond}: accuracy {c['accuracy']:.3f}, UAR {c['uar']:.3f} ± {c['uar_std']:.3f}"
        )


@cli.command("evaluate", epilog=_degradations_help())
@_data_options
@click.option(
    "--protocol",
    type=click.Choice(PROTOCOLS),
    default="speaker",
    show_default=True,
    help="speaker: GroupKFold by speaker; random: the seed's 75/25 random split.",
)
@click.option("--folds", type=int, default=6, show_default=True, help="k for --protocol speaker.")
@click.option(
    "--fold-seed",
    type=int,
    help="Shuffle which speakers share a fold, with this seed (default: unshuffled GroupKFold).",
)
@click.option(
    "--repeats",
    type=int,
    default=5,
    show_default=True,
    help="Number of random splits for --protocol random.",
)
@click.option(
    "--degrade",
    callback=_check_specs,
    help="Degrade TEST audio only, e.g. telephone or noise:20+telephone (specs listed below).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
def evaluate_cmd(data, manifest, preset, feature_set, classes, augment, cache_dir, no_cache,
                 jobs, seed, quiet, also_test, plots, protocol, folds, fold_seed, repeats,
                 degrade, as_json) -> None:  # fmt: skip
    """Cross-validate a preset on a dataset (speaker-independent by default)."""
    dataset = _read_data(data, manifest)
    try:
        report = evaluate(
            dataset,
            preset=preset or "seed-300",
            feature_set=feature_set,
            classes=_split_list(classes) or None,
            protocol=protocol,
            folds=folds,
            fold_seed=fold_seed,
            repeats=repeats,
            degrade=degrade,
            also_test=_split_list(also_test),
            augment=_split_list(augment),
            cache_dir=None if no_cache else cache_dir,
            n_jobs=jobs,
            random_state=seed,
            progress=not quiet,
        )
    except AERError as exc:
        raise click.ClickException(str(exc)) from None
    _report_failed(report.failed)
    summary = _summary(report, plots)
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(
        f"{summary['preset']} on {summary['feature_set']}, {protocol} protocol, "
        f"{summary['n_folds']} splits, {summary['n_files']} files"
        + (f", test audio: {degrade}" if degrade else "")
    )
    _echo_headline(summary)
    click.echo("  per-class recall:")
    for c, r in summary["per_class_recall"].items():
        click.echo(f"    {c:<10} {r:.3f} ± {summary['per_class_recall_std'][c]:.3f}")
    if summary.get("coverage_curve"):
        click.echo("  accuracy vs coverage (answer when confidence >= threshold):")
        for row in summary["coverage_curve"]:
            acc = "-" if row["accuracy"] is None else f"{row['accuracy']:.3f}"
            click.echo(
                f"    >= {row['threshold']:.2f}: coverage {row['coverage']:.3f}, accuracy {acc}"
            )
    for p in summary.get("plots", []):
        click.echo(f"  wrote {p}")


def _table(predictions: list[FilePrediction]) -> str:
    rows = [("file", "label", "conf", "duration", "error")]
    for p in predictions:
        duration = f"{p.duration_s:.2f} s" if p.duration_s is not None else "-"
        if p.ok:
            rows.append((p.path, p.label, f"{p.confidence:.2f}", duration, ""))
        else:
            rows.append((p.path, "-", "-", duration, f"{p.error_code}: {p.error}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r[:4], widths, strict=True)) + "  " + r[4]
        for r in rows
    ).rstrip()


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option(
    "--model",
    "model_name",
    default="default",
    show_default=True,
    help="Model name in --models-dir, or a path to a .skops file.",
)
@click.option(
    "--models-dir",
    type=click.Path(file_okay=False),
    default=str(DEFAULT_MODELS_DIR),
    show_default=True,
)
@click.option("--max-duration", type=float, help="Refuse files longer than this (seconds).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line per file.")
def predict(files, model_name, models_dir, max_duration, as_json) -> None:
    """Classify the emotion of each FILE (whole file). Exit code 1 only if every file failed."""
    try:
        model = ModelRegistry(models_dir).load(model_name)
    except AERError as exc:
        raise click.ClickException(str(exc)) from None
    predictions = predict_files(model, files, max_duration_s=max_duration)
    if as_json:
        for p in predictions:
            click.echo(json.dumps(p.to_dict()))
    else:
        click.echo(f"model {model.name} {model.version}", err=True)
        click.echo(_table(predictions))
    if not any(p.ok for p in predictions):
        raise SystemExit(1)


if __name__ == "__main__":
    cli()
