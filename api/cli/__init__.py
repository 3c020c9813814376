"""The ``aer`` command: the core commands (train, evaluate, predict) plus the service commands.

Service commands import Flask, Celery and SQLAlchemy inside their bodies, so ``aer predict``
stays as light as ``python -m core.cli predict``.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import click

from api.store.states import FileState, JobState
from core.cli import cli

DEFAULT_URL = "http://127.0.0.1:8000"
_url_option = click.option(
    "--url", default=DEFAULT_URL, show_default=True, help="Base URL of the AER server."
)
_key_option = click.option(
    "--api-key",
    envvar="AER_API_KEY",
    show_envvar=True,
    help="API key sent as 'Authorization: Bearer'.",
)


def _settings():
    from api.store.settings import load_settings

    try:
        return load_settings()
    except ValueError as exc:  # ConfigError
        raise click.ClickException(str(exc)) from None


def _client(url: str, api_key: str | None = None):
    from api.cli.client import AERClient

    return AERClient(url, api_key=api_key)


def _call(fn, *args, **kwargs):
    """Run a client call, turning its errors into one-line CLI errors."""
    from api.cli.client import ClientError

    try:
        return fn(*args, **kwargs)
    except ClientError as exc:
        raise click.ClickException(str(exc)) from None


# --- database ----------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database named by AER_DATABASE_URL to the newest schema."""
    from api.store.db import upgrade

    settings = _settings()
    upgrade(settings.database_url)
    click.echo(f"database at the newest revision: {_safe_url(settings.database_url)}")
    _bootstrap(settings)


def _bootstrap(settings) -> None:
    """Install the first admin key; print a generated one, once."""
    from api.store.db import session_scope
    from api.store.keys import bootstrap_admin_key

    with session_scope(settings) as session:
        key = bootstrap_admin_key(session, settings)
    if key:
        click.echo(
            f"created an admin API key (shown once, store it now): {key}\n"
            "  use it as 'Authorization: Bearer <key>', or AER_API_KEY for the aer commands",
            err=True,
        )


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# --- the embedded stack --------------------------------------------------------------------------


def _stop_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so ``docker stop`` or systemd shut down cleanly."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--workers", default=2, show_default=True, type=click.IntRange(1), help="Worker processes."
)
@click.option(
    "--allow-root",
    "allow_roots",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A folder that folder jobs (submit --folder) may read, besides AER_ALLOWED_ROOTS "
    "(repeatable).",
)
def serve(host: str, port: int, workers: int, allow_roots: tuple[Path, ...]) -> None:
    """Run the whole service: Redis (unless AER_BROKER_URL is set), migrations, a Celery
    worker pool and the HTTP API. Stops everything on Ctrl-C or SIGTERM."""
    import logging

    from api.cli.embedded import EmbeddedError, embedded_stack
    from api.store.db import upgrade
    from api.store.logs import configure_logging

    settings = _settings()
    configure_logging(settings)  # the worker it starts reads the same AER_LOG_* settings
    logging.getLogger("alembic").setLevel(logging.WARNING)  # no plugin and revision lines
    if allow_roots:
        roots = dict.fromkeys([*settings.allowed_roots, *(p.resolve() for p in allow_roots)])
        settings = settings.model_copy(update={"allowed_roots": tuple(roots)})
    _stop_on_sigterm()
    upgrade(settings.database_url)
    _bootstrap(settings)
    try:
        with embedded_stack(settings, workers=workers, host=host, port=port) as url:
            click.echo(f"AER listening on {url}/api/v1 (data in {settings.data_dir}); Ctrl-C stops")
            click.echo(f"dashboard: {url}/")
            threading.Event().wait()
    except KeyboardInterrupt:
        click.echo("stopped")
    except EmbeddedError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command("beat-health")
@click.option(
    "--max-age",
    default=600.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Seconds within which the beat schedule file must have been written.",
)
def beat_health(max_age: float) -> None:
    """Exit 0 when Celery beat wrote its schedule file in the last MAX_AGE seconds (a
    container health check; beat saves the file every 3 minutes and after each run)."""
    from api.store.health import beat_schedule_age

    age = beat_schedule_age(_settings())
    if age is None or age > max_age:
        where = "no schedule file" if age is None else f"schedule file {age:.0f} s old"
        raise click.ClickException(f"beat unhealthy: {where}")
    click.echo(f"beat ok: schedule file {age:.0f} s old")


def _watch(client, job: dict, *, quiet: bool = False) -> dict:
    """Poll ``job`` to its end with a progress bar of finished files."""
    from tqdm import tqdm

    with tqdm(total=0, unit="file", disable=quiet, desc=f"job {job['id'][:8]}") as bar:

        def update(current: dict) -> None:
            counts = current["counts"]
            bar.total = counts["total"]
            bar.n = counts["done"] + counts["failed"]
            bar.set_postfix_str(current["state"])

        return _call(client.wait, job["id"], on_update=update)


def _summary(job: dict) -> str:
    c = job["counts"]
    line = (
        f"job {job['id']}: {job['state']}, {c['done']} done, {c['failed']} failed of {c['total']}"
    )
    return line + (f" ({job['error']})" if job.get("error") else "")


def _true_label(name: str) -> str:
    from core.datasets import parse_ravdess_name
    from core.errors import DatasetError

    try:
        return parse_ravdess_name(name).emotion
    except DatasetError:
        return "?"


def demo_table(results: list[dict]) -> tuple[str, int]:
    """The demo's table (file, true label, predicted label, confidence) and the hit count."""
    rows = [("file", "true", "predicted", "confidence")]
    hits = 0
    for r in sorted(results, key=lambda r: r["file"]):
        truth = _true_label(r["file"])
        hits += r["label"] == truth
        conf = f"{r['confidence']:.2f}" if r["confidence"] is not None else r["error_code"]
        rows.append((r["file"], truth, r["label"] or "-", conf))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines), hits


def _upload(client, paths, *, quiet: bool = False, **options) -> dict:
    """Upload ``paths`` (files, archives, folders) as one job, with a progress bar of bytes
    and files sent."""
    from tqdm import tqdm

    from api.cli.client import upload_entries

    entries = _call(upload_entries, paths)
    total = sum(path.stat().st_size for path, _ in entries)
    files = len(entries)
    with tqdm(
        total=total, unit="B", unit_scale=True, unit_divisor=1024, disable=quiet, desc="upload"
    ) as bar:
        sent = 0
        bar.set_postfix_str(f"0/{files} files")

        def on_chunk(nbytes: int, file_done: bool) -> None:
            nonlocal sent
            bar.update(nbytes)
            if file_done:
                sent += 1
                bar.set_postfix_str(f"{sent}/{files} files")

        return _call(client.submit_files, entries, on_chunk=on_chunk, **options)


def run_demo(client, files: list[Path], *, quiet: bool = False) -> tuple[dict, list[dict]]:
    """Upload ``files`` as one job, follow it to its end; returns the job and its results."""
    job = _upload(client, files, quiet=True)
    click.echo(f"submitted {len(files)} clips as job {job['id']}", err=True)
    job = _watch(client, job, quiet=quiet)
    return job, list(_call(client.results, job["id"]))


@cli.command()
@click.option(
    "--clips",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Folder of audio clips to classify (default: the 16 RAVDESS clips shipped with AER).",
)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1))
def demo(clips: Path | None, workers: int) -> None:
    """Classify the bundled sample clips end to end through the embedded stack (upload,
    queue, worker, results) in a throwaway data folder, and print a results table."""
    import logging
    import tempfile

    from core.samples import demo_folder

    clips = clips or demo_folder()
    from api.cli.embedded import EmbeddedError, embedded_stack

    files = sorted(p for p in clips.iterdir() if p.is_file() and p.suffix.lower() != ".md")
    if not files:
        raise click.ClickException(f"no clips in {clips}")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no per-request lines
    settings = _settings()
    _stop_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="aer-demo-") as tmp:
        data_dir = Path(tmp)
        settings = settings.model_copy(
            update={
                "data_dir": data_dir,
                "database_url": f"sqlite:///{data_dir / 'aer.db'}",
                "broker_url": None,
            }
        )
        click.echo(f"starting the embedded stack ({workers} workers) in {data_dir} ...", err=True)
        try:
            with embedded_stack(
                settings, workers=workers, worker_log=data_dir / "worker.log"
            ) as url:
                click.echo(f"AER is up at {url}/api/v1", err=True)
                job, results = run_demo(_client(url, _demo_key(settings)), files)
        except EmbeddedError as exc:
            raise click.ClickException(str(exc)) from None
    table, hits = demo_table(results)
    click.echo(table)
    click.echo(_summary(job))
    model = job["model"]
    click.echo(
        f"model {model['name']} {model['version']}: {hits}/{len(results)} match the true label"
    )
    click.echo("(these clips are part of the model's training data: a smoke test, not a score)")
    if job["state"] not in ("succeeded", "completed_with_errors"):
        sys.exit(1)


def _demo_key(settings) -> str:
    """A submit-and-read key of the demo's throwaway database."""
    from api.store.db import session_scope
    from api.store.keys import create_key
    from api.store.tables import DEFAULT_TENANT

    with session_scope(settings) as session:
        _, key = create_key(
            session, tenant_id=DEFAULT_TENANT, name="aer demo", scopes=("read", "submit")
        )
    return key


# --- client commands ----------------------------------------------------------------------------


@cli.command()
@click.argument("paths", nargs=-1)
@click.option(
    "--folder", help="A folder ON THE SERVER (under one of its allowed roots) instead of uploads."
)
@click.option(
    "--urls-file",
    type=click.File("r"),
    help="A file of https URLs, one a line ('-': standard input), instead of PATHS.",
)
@click.option("--pattern", help="File name pattern for --folder and s3:// jobs, e.g. '*.wav'.")
@click.option("--no-recursive", is_flag=True, help="Only the top level of --folder or s3://.")
@click.option("--model", help="Model name (default: the server's default model).")
@click.option(
    "--channels", type=click.Choice(["mix", "split"]), help="Mix stereo down, or split channels."
)
@click.option(
    "--segmentation",
    type=click.Choice(["vad", "fixed", "none"]),
    help="Cut long files by speech activity, fixed windows, or not at all.",
)
@click.option("--wait", is_flag=True, help="Poll with a progress bar until the job ends.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@_url_option
@_key_option
def submit(
    paths,
    folder,
    urls_file,
    pattern,
    no_recursive,
    model,
    channels,
    segmentation,
    wait,
    quiet,
    url,
    api_key,
) -> None:
    """Submit audio files, zip archives and folders of them (PATHS, uploaded); or a
    server-side --folder; or one s3://bucket/prefix/ (its audio objects); or https URLs
    (PATHS or --urls-file): the server reads those itself, if its allow-lists let it.

    A folder's audio files and zips are uploaded recursively, named by their path from the
    folder (its name included: calls/d1/a.flac). Prints the job id; with --wait, exits 1
    unless the job succeeded (possibly with errors).
    """
    if bool(folder) == bool(paths or urls_file):
        raise click.UsageError(
            "give either PATHS (files, one s3://bucket/prefix/ or URLs), --urls-file or --folder"
        )
    entries = [*paths, *(_url_lines(urls_file) if urls_file else ())]
    s3 = [e for e in entries if e.startswith("s3://")]
    web = [e for e in entries if e.startswith(("https://", "http://"))]
    if urls_file and len(web) != len(entries) or not entries and not folder:
        raise click.UsageError("--urls-file takes URLs only (at least one)")
    if s3 and len(entries) > 1 or web and len(web) != len(entries):
        raise click.UsageError("give local PATHS, or one s3:// prefix, or URLs: not a mix")
    if (pattern or no_recursive) and not (folder or s3):
        raise click.UsageError("--pattern and --no-recursive apply to --folder and s3:// jobs")
    options = {"model": model, "channels": channels, "segmentation": segmentation}
    client = _client(url, api_key)
    if folder or s3:
        submit_one = client.submit_folder if folder else client.submit_source
        where = folder or s3[0]
        job = _call(submit_one, where, recursive=not no_recursive, pattern=pattern, **options)
    elif web:
        job = _call(client.submit_urls, web, **options)
    else:
        local = [click.Path(exists=True, path_type=Path).convert(p, None, None) for p in paths]
        job = _upload(client, local, quiet=quiet, **options)
    click.echo(job["id"])
    if wait:
        _follow(client, job, quiet=quiet)


def _url_lines(stream) -> list[str]:
    """The URLs of a ``--urls-file``: one a line, blank lines and ``#`` comments skipped."""
    try:
        lines = [line.strip() for line in stream]
    except UnicodeDecodeError:
        raise click.BadParameter("not a text file of URLs", param_hint="--urls-file") from None
    return [line for line in lines if line and not line.startswith("#")]


def _follow(client, job: dict, *, quiet: bool) -> None:
    """Watch ``job`` to its end, print its summary; exit 1 unless it succeeded."""
    job = _watch(client, job, quiet=quiet)
    click.echo(_summary(job), err=True)
    if job["state"] not in ("succeeded", "completed_with_errors"):
        sys.exit(1)


_JOB_ID_HELP = "JOB_ID is the job's id or a unique prefix of it (6 hex digits or more)."


@cli.command(epilog=_JOB_ID_HELP)
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@click.option(
    "--follow", is_flag=True, help="Show progress until the job ends (exit 1 unless it succeeded)."
)
@_url_option
@_key_option
def status(job_id: str, as_json: bool, follow: bool, url: str, api_key: str | None) -> None:
    """Show a job's state, counts and progress."""
    client = _client(url, api_key)
    job = _call(client.job, job_id)
    if follow:
        _follow(client, job, quiet=False)
        return
    if as_json:
        click.echo(json.dumps(job, indent=2))
        return
    click.echo(_summary(job))
    click.echo(f"  model {job['model']['name']} {job['model']['version'] or ''}".rstrip())
    click.echo(f"  {job['percent']:.1f} % done, created {job['created_at']}")
    if job.get("files_per_second"):
        eta = f", about {job['eta_s']:.0f} s left" if job.get("eta_s") is not None else ""
        click.echo(f"  {job['files_per_second']:.2f} files/s{eta}")


def table(rows: list[tuple], header: tuple[str, ...]) -> str:
    """Left-aligned text columns."""
    rows = [header, *[tuple("" if c is None else str(c) for c in row) for row in rows]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


@cli.command("jobs")
@click.option(
    "--state", type=click.Choice([s.value for s in JobState]), help="Only jobs in this state."
)
@click.option(
    "--limit", default=20, show_default=True, type=click.IntRange(1, 500), help="Newest N jobs."
)
@click.option("--json", "as_json", is_flag=True, help="Print the page of jobs as JSON.")
@_url_option
@_key_option
def jobs_cmd(state: str | None, limit: int, as_json: bool, url: str, api_key: str | None) -> None:
    """List jobs, newest first."""
    page = _call(_client(url, api_key).jobs, state=state, size=limit)
    if as_json:
        click.echo(json.dumps(page, indent=2))
        return
    rows = [
        (
            j["id"],
            j["state"],
            f"{j['counts']['done']}/{j['counts']['total']}",
            j["counts"]["failed"],
            j["model"]["name"],
            j["created_at"],
        )
        for j in page["items"]
    ]
    click.echo(table(rows, ("id", "state", "done", "failed", "model", "created")))
    if page["total"] > len(rows):
        click.echo(f"({len(rows)} of {page['total']} jobs; --limit shows more)", err=True)


@cli.command(epilog=_JOB_ID_HELP)
@click.argument("job_id")
@_url_option
@_key_option
def cancel(job_id: str, url: str, api_key: str | None) -> None:
    """Stop a queued or running job; the results it has so far are kept."""
    click.echo(_summary(_call(_client(url, api_key).cancel, job_id)))


@cli.command("results", epilog=_JOB_ID_HELP)
@click.argument("job_id")
@click.option("--jsonl", is_flag=True, help="One JSON object per file (JSON Lines).")
@click.option(
    "--state", type=click.Choice([s.value for s in FileState]), help="Only the files in this state."
)
@_url_option
@_key_option
def results_cmd(job_id: str, jsonl: bool, state: str | None, url: str, api_key: str | None) -> None:
    """Print a job's per-file results, every page: a table, or JSON Lines."""
    items = _client(url, api_key).results(job_id, state=state)
    if jsonl:
        _call(lambda: [click.echo(json.dumps(i, ensure_ascii=False)) for i in items])
        return
    items = _call(list, items)
    rows = [
        (
            r["file"],
            r["state"],
            r["label"] or "-",
            "" if r["confidence"] is None else f"{r['confidence']:.3f}",
            {True: "yes", False: "no"}.get(r["uncertain"], ""),
            r["error_code"],
        )
        for r in items
    ]
    click.echo(table(rows, ("file", "state", "label", "confidence", "uncertain", "error")))


@cli.command("export", epilog=_JOB_ID_HELP)
@click.argument("job_id")
@click.option("-o", "--output", default="-", show_default=True, help="File to write ('-': stdout).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl", "parquet"]),
    default="csv",
    show_default=True,
    help="CSV, JSON Lines (one object per row) or Parquet: the same columns in each.",
)
@click.option(
    "--to",
    "destination",
    metavar="s3://BUCKET/PREFIX/",
    help="Have the server write the export to this bucket (allowed by AER_ALLOWED_BUCKETS) "
    "instead of downloading it, and wait until it is written.",
)
@click.option(
    "--granularity",
    type=click.Choice(["file", "segment"]),
    default="file",
    show_default=True,
    help="One row per file, or one row per classified segment (timelines).",
)
@click.option(
    "--uncertain-below",
    type=click.FloatRange(0.0, 1.0),
    help="Flag rows less confident than this as uncertain (default: the server's).",
)
@click.option(
    "--full-precision",
    is_flag=True,
    help="Every digit (default: probabilities to 4 decimals, seconds to 3).",
)
@_url_option
@_key_option
def export_cmd(
    job_id: str,
    output: str,
    fmt: str,
    destination: str | None,
    granularity: str,
    uncertain_below: float | None,
    full_precision: bool,
    url: str,
    api_key: str | None,
) -> None:
    """Download a job's results (one row per file or per segment, one column per class) as
    CSV, JSON Lines or Parquet; or, with --to, export them to a bucket."""
    client = _client(url, api_key)
    options = {
        "fmt": fmt,
        "granularity": granularity,
        "uncertain_below": uncertain_below,
        "full_precision": full_precision,
    }
    if destination is not None:
        export = _call(client.start_export, job_id, destination, **options)
        export = _call(client.wait_export, export)
        if export["state"] != "done":
            raise click.ClickException(f"export {export['id']} failed: {export['error']}")
        click.echo(f"wrote {export['object']} ({export['bytes']} bytes)", err=True)
        return
    dest = sys.stdout.buffer if output == "-" else output
    size = _call(client.export, job_id, dest, **options)
    if output != "-":
        click.echo(f"wrote {output} ({size} bytes)", err=True)


# --- API keys -----------------------------------------------------------------------------------


@cli.group()
def keys() -> None:
    """API keys, on the database directly (AER_DATABASE_URL)."""


@keys.command("create")
@click.option("--name", required=True, help="What the key is for (shown in lists).")
@click.option(
    "--scopes",
    default="read,submit",
    show_default=True,
    help="Comma-separated: read, submit, admin.",
)
@click.option(
    "--tenant", default="default", show_default=True, help="The key's tenant (created if new)."
)
@click.option("--expires-days", type=click.IntRange(1, 3650), help="Expire after N days.")
def keys_create(name: str, scopes: str, tenant: str, expires_days: int | None) -> None:
    """Create a key and print it (shown this once; only its hash is stored)."""
    from datetime import timedelta

    from api.store.db import session_scope
    from api.store.keys import create_key
    from api.store.tables import utcnow

    expires = utcnow() + timedelta(days=expires_days) if expires_days else None
    with session_scope(_settings()) as session, _store_errors():
        row, key = create_key(
            session, tenant_id=tenant, name=name, scopes=scopes, expires_at=expires
        )
    click.echo(key)
    click.echo(f"key {row.id} ({row.prefix}) of tenant {row.tenant_id}: {row.scopes}", err=True)


@keys.command("list")
@click.option("--tenant", help="Only this tenant's keys.")
def keys_list(tenant: str | None) -> None:
    """List keys (never their secrets): id, prefix, tenant, scopes, state, last use, name."""
    from api.store.db import session_scope
    from api.store.keys import list_keys

    def iso(value) -> str | None:
        return value.isoformat(timespec="seconds") if value else None

    with session_scope(_settings()) as session:
        rows = list_keys(session, tenant_id=tenant)
    for row in rows:
        state = "revoked" if row.revoked_at else f"expires {iso(row.expires_at) or 'never'}"
        used = iso(row.last_used_at) or "never used"
        click.echo(
            f"{row.id}\taer_{row.prefix}\t{row.tenant_id}\t{row.scopes.replace(' ', ',')}"
            f"\t{state}\t{used}\t{row.name}"
        )


@keys.command("revoke")
@click.argument("key")
def keys_revoke(key: str) -> None:
    """Revoke KEY (its id or its prefix, e.g. aer_ab12cd34): it stops working at once."""
    from api.store.db import session_scope
    from api.store.keys import revoke_key

    with session_scope(_settings()) as session, _store_errors():
        row = revoke_key(session, key)
    click.echo(f"revoked key {row.id} (aer_{row.prefix}) of tenant {row.tenant_id}")


@keys.command("generate")
def keys_generate() -> None:
    """Print a fresh random key without storing it (e.g. for AER_BOOTSTRAP_KEY)."""
    from api.store.keys import generate_key

    click.echo(generate_key())


@cli.group()
def tenants() -> None:
    """Tenants' own quotas, on the database directly (defaults: AER_TENANT_*)."""


@tenants.command("quota")
@click.argument("tenant")
@click.option("--max-active-jobs", type=click.IntRange(0), help="0: back to the default.")
@click.option("--max-files-per-job", type=click.IntRange(0), help="0: back to the default.")
@click.option("--max-stored-mb", type=click.IntRange(0), help="0: back to the default.")
def tenants_quota(tenant: str, **limits: int | None) -> None:
    """Set TENANT's own quotas (the tenant is created when new) and print them."""
    from api.store.db import session_scope
    from api.store.quotas import QUOTAS, set_limits

    given = {name: value for name, value in limits.items() if value is not None}
    with session_scope(_settings()) as session, _store_errors():
        row = set_limits(session, tenant, **given)
        own = {name: getattr(row, name) for name in QUOTAS}
    for name, value in own.items():
        click.echo(f"{name}\t{value if value is not None else 'default'}")


@contextmanager
def _store_errors():
    from api.store.errors import StoreError

    try:
        yield
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None


def main() -> None:
    """Entry point of the ``aer`` script."""
    cli()
