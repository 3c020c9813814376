"""What the tasks do: enumerate a job, process a chunk of files, sweep up lost work.

Each function takes the settings and an ``enqueue(job_id, file_ids)`` callable (the task module
passes one that sends ``aer.process_chunk``), opens short sessions through ``session_scope`` and
changes state only through :mod:`api.store.processing`. Rows are committed before their tasks
are sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import timedelta
from functools import partial
from itertools import islice
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import OperationalError

from api.store import deliveries, jobs, processing, webhooks, workers
from api.store.db import session_scope
from api.store.fetch import FetchError, Prefetch, local_copy
from api.store.quotas import job_file_limit
from api.store.redact import without_paths
from api.store.settings import Settings
from api.store.tables import utcnow
from api.store.uploads import STALE_PART_S, remove_stale_parts
from core.analyze import analyze_file
from core.errors import ModelError
from core.model import EmotionModel
from core.predict import FilePrediction, failed_prediction
from worker.liveness import task_claim
from worker.models import get_model
from worker.notify import send_deliveries
from worker.remote import list_prefix, list_urls
from worker.sources import Listing, SourceError, list_folder
from worker.uploads import list_job_upload, remove_job_extractions

log = logging.getLogger(__name__)

Enqueue = Callable[[str, list[int]], None]
#: File rows inserted (and committed) per statement while enumerating.
INSERT_BATCH = 500
#: Results stored per transaction: at most this many files, or the files of this many seconds.
FLUSH_FILES = 64
FLUSH_S = 1.0


def batched(items: Sequence, size: int) -> list[list]:
    """``items`` cut into lists of at most ``size``."""
    it = iter(items)
    return list(iter(lambda: list(islice(it, size)), []))


def enqueue_in_chunks(
    enqueue: Enqueue, job_id: str, file_ids: Sequence[int], chunk_size: int
) -> int:
    """Send ``file_ids`` as chunks of at most ``chunk_size``; returns how many chunks."""
    chunks = batched(file_ids, chunk_size)
    for chunk in chunks:
        enqueue(job_id, chunk)
    return len(chunks)


def run_enumeration(settings: Settings, job_id: str, enqueue: Enqueue) -> None:
    """List the job's files, insert their rows in committed batches, enqueue them in chunks.

    When the database stops the listing (locked, or its disk full), the claim is given back
    without counting the attempt, and the sweep sends the job again.
    """
    with task_claim(settings, "enumerate") as worker_id:
        try:
            _enumerate(settings, job_id, enqueue, worker_id)
        except OperationalError as exc:
            log.warning("job %s: the database stopped the listing: %s", job_id, exc.orig)
            try:
                with session_scope(settings) as session:
                    processing.release_enumeration(session, job_id, worker_id)
            except OperationalError:  # the claim dies with this task: the sweep takes it back
                log.warning("job %s: could not give the listing back", job_id)


def _enumerate(settings: Settings, job_id: str, enqueue: Enqueue, worker_id: str) -> None:
    with session_scope(settings) as session:
        job = processing.claim_enumeration(
            session,
            job_id,
            worker_id=worker_id,
            lease_s=settings.lease_s,
            max_attempts=settings.max_attempts,
            worker_timeout_s=settings.worker_timeout_s,
        )
        max_files = job_file_limit(session, settings, job.tenant_id) if job else 0
    if job is None:
        log.info("job %s: nothing to enumerate (done, stopped, or held by a live task)", job_id)
        return
    # A second attempt (the first one's task died) also sends the files the first one
    # committed but perhaps never enqueued: a message too many is harmless, none is not.
    rerun = job.attempts > 1
    listed = chunks = 0
    try:
        for batch in _batches(settings, job, max_files):
            with session_scope(settings) as session:
                if processing.active_job(session, job_id) is None:
                    log.info("job %s stopped while listing its files", job_id)
                    return
                lease_until = utcnow() + timedelta(seconds=settings.lease_s)
                ids = processing.insert_files(session, job_id, batch, lease_until=lease_until)
                if rerun:
                    ids = processing.unstarted_files(session, job_id, [rel for rel, _ in batch])
            chunks += enqueue_in_chunks(enqueue, job_id, ids, settings.chunk_size)
            listed += len(batch)
    except SourceError as exc:
        log.warning("job %s failed: %s", job_id, exc)
        _fail(settings, job_id, without_paths(str(exc), settings))
        drop_extractions(settings, job_id)
        return
    with session_scope(settings) as session:
        empty = processing.count_files(session, job_id) == 0
        if not empty:
            processing.finish_enumeration(session, job_id)
    if empty:
        _fail(settings, job_id, "no audio files found")
        log.warning("job %s failed: no audio files found", job_id)
        drop_extractions(settings, job_id)
        return
    log.info("job %s: %s files listed, %s chunks enqueued", job_id, listed, chunks)
    _try_finish(settings, job_id)


def _batches(settings: Settings, job, max_files: int) -> Iterator[list[tuple[str, str]]]:
    """The job's files, ``(rel_path, path)``, in batches to insert: a bucket prefix page by
    page as it is listed; the other sources listed first (their failed archives inserted as
    failed files), then cut into batches of :data:`INSERT_BATCH`.

    Raises:
        SourceError: the source cannot be listed (possibly after some batches).
    """
    options = job.options or {}
    if job.source_kind == "s3":
        yield from list_prefix(
            settings,
            job.source,
            recursive=bool(options.get("recursive", True)),
            pattern=options.get("pattern") or None,
            max_files=max_files,
            page_size=INSERT_BATCH,
        )
        return
    if job.source_kind == "urls":
        yield from batched(list_urls(job.source.splitlines()), INSERT_BATCH)
        return
    listing = _list_sources(settings, job, max_files)
    if listing.failed:
        failed = [
            (rel, path, without_paths(str(exc), settings), exc.code)
            for rel, path, exc in listing.failed
        ]
        with session_scope(settings) as session:
            processing.insert_failed_files(session, job.id, failed)
        for rel, _, error, _ in failed:
            log.warning("job %s: %s failed: %s", job.id, rel, error)
    yield from batched(listing.files, INSERT_BATCH)


def _list_sources(settings: Settings, job, max_files: int) -> Listing:
    options = job.options or {}
    pattern = options.get("pattern") or None
    if job.source_kind == "upload":
        return list_job_upload(settings, job.source, max_files=max_files, pattern=pattern)
    folder = Path(job.source).resolve()
    if not jobs.is_within(folder, settings.allowed_roots):
        raise SourceError(f"folder {job.source!r} is not inside an allowed root")
    files = list_folder(
        folder,
        roots=settings.allowed_roots,
        recursive=bool(options.get("recursive", True)),
        pattern=pattern,
        max_files=max_files,
    )
    return Listing(files)


def run_chunk(settings: Settings, job_id: str, file_ids: Sequence[int], enqueue: Enqueue) -> int:
    """Analyse the chunk's files that still need it; returns how many were processed.

    The files are claimed for this task (:func:`worker.liveness.task_claim`): if its process
    dies, the sweep takes them back once the heartbeat stops, well before the lease ends.
    """
    with task_claim(settings, "chunk") as worker_id:
        return _run_chunk(settings, job_id, file_ids, enqueue, worker_id)


def _run_chunk(
    settings: Settings, job_id: str, file_ids: Sequence[int], enqueue: Enqueue, worker_id: str
) -> int:
    """:func:`run_chunk` for the task ``worker_id``.

    Files never attempted are claimed together in one statement and their results stored in
    batches (:class:`_Results`); files an earlier attempt left unfinished (perhaps the one that
    killed a worker) are claimed and stored one at a time, so a crash costs no other file an
    attempt. A file that fails (bad audio, or an unexpected error) fails alone. On the soft
    time limit, the results so far are stored, the files not yet started are given back and
    enqueued again, and the current one is left to the sweep.
    """
    lease_until = utcnow() + timedelta(seconds=settings.lease_s)
    with session_scope(settings) as session:
        job = processing.active_job(session, job_id)
        if job is None:
            log.info("job %s is not active: skipping %s files", job_id, len(file_ids))
            return 0
        processing.extend_pending_leases(
            session, job_id, file_ids, worker_id=worker_id, lease_until=lease_until
        )
    try:
        options = jobs.analysis_options(job.options)
    except jobs.InvalidOptionsError as exc:
        log.error("job %s failed: %s", job_id, exc)
        _fail(settings, job_id, f"invalid job options: {exc}")
        drop_extractions(settings, job_id)
        return 0
    try:
        model = get_model(settings, job.model_name, job.tenant_id)
    except ModelError as exc:
        log.error("job %s failed: model %r: %s", job_id, job.model_name, exc)
        message = f"model {job.model_name!r} cannot be used: {exc}"
        _fail(settings, job_id, without_paths(message, settings))
        drop_extractions(settings, job_id)
        return 0
    with session_scope(settings) as session:
        processing.mark_job_running(session, job_id, model.version)
        claimed = processing.claim_files(
            session,
            job_id,
            file_ids,
            worker_id=worker_id,
            lease_until=lease_until,
            max_attempts=settings.max_attempts,
            worker_timeout_s=settings.worker_timeout_s,
            first_attempt_only=True,
        )
    taken = {file_id for file_id, _ in claimed}
    retries = [file_id for file_id in file_ids if file_id not in taken]
    results = _Results(settings, job_id, model.version)
    done = 0
    fetches = Prefetch(settings, [path for _, path in claimed])
    try:
        while claimed:
            file_id, path = claimed.pop(0)
            start = time.perf_counter()
            outcome = _analyze_one(
                settings, model, options, job_id, file_id, path, copy=fetches.next
            )
            results.add(file_id, outcome, time.perf_counter() - start)
            done += 1
            results.flush_if_due()
        results.flush()
        while retries:
            if _process_file(settings, model, options, job_id, retries.pop(0), worker_id):
                done += 1
    except SoftTimeLimitExceeded:
        results.flush()  # again if the limit struck during a flush: the first result wins
        with session_scope(settings) as session:
            released = processing.release_files(
                session,
                [file_id for file_id, _ in claimed],
                lease_until=lease_until,
                lease_s=settings.lease_s,
            )
        rest = sorted(released + retries)
        log.warning("job %s: chunk hit its soft time limit, re-enqueueing %s", job_id, rest)
        if rest:
            enqueue(job_id, rest)
        return done
    finally:
        fetches.close()
    _try_finish(settings, job_id)
    return done


class _Results:
    """Results waiting to be stored: one transaction per :data:`FLUSH_FILES` files or
    :data:`FLUSH_S` seconds, whichever comes first, so progress shows and a crash loses little.
    """

    def __init__(self, settings: Settings, job_id: str, model_version: str | None) -> None:
        self.settings = settings
        self.job_id = job_id
        self.model_version = model_version
        self.pending: list[tuple[int, FilePrediction | str]] = []
        self.seconds: dict[int, float] = {}
        self.since = time.monotonic()

    def add(self, file_id: int, outcome: FilePrediction | str, seconds: float) -> None:
        """Queue a file's prediction (or the message of an internal error) and its time."""
        self.pending.append((file_id, outcome))
        self.seconds[file_id] = seconds

    def flush_if_due(self) -> None:
        """:meth:`flush` when enough files or time have gone by."""
        if len(self.pending) >= FLUSH_FILES or time.monotonic() - self.since >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        """Store every queued result in one transaction (each only if its file is unfinished),
        with the ``job.progress`` webhook attempts it makes due; then send those."""
        if self.pending:
            predictions = [(i, out) for i, out in self.pending if not isinstance(out, str)]
            with session_scope(self.settings) as session:
                processing.record_results(session, predictions, self.model_version, self.seconds)
                for file_id, outcome in self.pending:
                    if isinstance(outcome, str):
                        processing.fail_file(session, file_id, outcome, "internal_error")
                attempt_ids = webhooks.record_progress(session, self.job_id)
            self.pending, self.seconds = [], {}
            send_deliveries(attempt_ids)
        self.since = time.monotonic()


def _analyze_one(
    settings: Settings,
    model: EmotionModel,
    options: jobs.AnalysisOptions,
    job_id: str,
    file_id: int,
    path: str,
    copy: Callable[[str], AbstractContextManager[Path]] | None = None,
) -> FilePrediction | str:
    """The file's prediction, or the message of an unexpected error (a bug or a resource
    problem, not bad audio: it fails this file only). A file in a bucket or behind a URL is
    fetched to a bounded temporary file first (by ``copy``, e.g. :meth:`Prefetch.next`); one
    that cannot be fetched fails alone."""
    try:
        with (copy or partial(local_copy, settings))(path) as local:
            prediction = analyze(settings, model, str(local), options)
        return replace(prediction, path=path)
    except FetchError as exc:
        log.warning("job %s file %s: %s", job_id, file_id, exc)
        return failed_prediction(path, None, exc)
    except SoftTimeLimitExceeded:
        raise
    except Exception as exc:
        log.exception("job %s file %s (%s): unexpected error", job_id, file_id, path)
        return without_paths(f"internal error: {exc!r}", settings)


def _process_file(
    settings: Settings,
    model: EmotionModel,
    options: jobs.AnalysisOptions,
    job_id: str,
    file_id: int,
    worker_id: str,
) -> bool:
    with session_scope(settings) as session:
        path = processing.claim_file(
            session,
            job_id,
            file_id,
            worker_id=worker_id,
            lease_s=settings.lease_s,
            max_attempts=settings.max_attempts,
            worker_timeout_s=settings.worker_timeout_s,
        )
    if path is None:
        return False
    results = _Results(settings, job_id, model.version)
    start = time.perf_counter()
    outcome = _analyze_one(settings, model, options, job_id, file_id, path)
    results.add(file_id, outcome, time.perf_counter() - start)
    results.flush()  # result, segments and summary: one transaction
    return True


def analyze(
    settings: Settings, model: EmotionModel, path: str, options: jobs.AnalysisOptions
) -> FilePrediction:
    """:func:`core.analyze.analyze_file` with the job's options; never raises for bad audio."""
    return analyze_file(
        model,
        path,
        channels=options.channels,
        segmentation=options.segmentation,
        max_duration_s=settings.max_duration_s,
    )


def _try_finish(settings: Settings, job_id: str) -> None:
    with session_scope(settings) as session:
        finished = processing.try_finish_job(session, job_id)
        attempt_ids = webhooks.record_job_event(session, job_id) if finished else []
    if finished:
        log.info("job %s finished", job_id)
        drop_extractions(settings, job_id)
    send_deliveries(attempt_ids)


def _fail(settings: Settings, job_id: str, error: str) -> None:
    """Fail the job, with its webhook events in the same transaction, then send them."""
    with session_scope(settings) as session:
        failed = processing.fail_job(session, job_id, error)
        attempt_ids = webhooks.record_job_event(session, job_id) if failed else []
    send_deliveries(attempt_ids)


def drop_extractions(settings: Settings, job_id: str) -> None:
    """Delete the extracted zip contents of an ended job (unless ``AER_KEEP_EXTRACTED``): its
    results are stored, and the zips themselves stay until the audio retention."""
    if not settings.keep_extracted:
        remove_job_extractions(settings, job_id)


def run_sweep(
    settings: Settings,
    enqueue: Enqueue,
    enqueue_enumeration: Callable[[str], None],
    *,
    queue_idle: bool,
    control_idle: bool = False,
    messages_lost: bool = False,
) -> dict[str, int]:
    """Give up on files out of attempts; re-enqueue files and enumerations whose task is gone
    (``AER_WORKER_TIMEOUT_S``) or whose lease expired; delete upload parts abandoned by a
    crashed API process.

    Pending files are only re-enqueued when ``queue_idle`` (no chunk waiting in the broker): a
    pending file with an expired lease is then certainly not waiting in the queue. A job nobody
    claimed is sent again after ``AER_WORKER_TIMEOUT_S`` when ``control_idle`` (no listing
    waits), else after a lease. ``messages_lost`` (the broker restarted empty): every pending
    file and unclaimed listing is sent again at once.
    """
    stale_parts = remove_stale_parts(settings.uploads_dir, older_than_s=STALE_PART_S)
    timeout_s = settings.worker_timeout_s
    with session_scope(settings) as session:
        workers.prune(session, timeout_s=max(timeout_s, settings.lease_s))
    with session_scope(settings) as session:
        gave_up = processing.give_up_files(
            session, max_attempts=settings.max_attempts, worker_timeout_s=timeout_s
        )
    with session_scope(settings) as session:
        requeue = processing.expired_files(
            session,
            lease_s=settings.lease_s,
            max_attempts=settings.max_attempts,
            worker_timeout_s=timeout_s,
            include_pending=queue_idle,
            messages_lost=messages_lost,
        )
    with session_scope(settings) as session:
        abandoned: list[str] = []
        stalled = processing.stalled_enumerations(
            session,
            lease_s=settings.lease_s,
            max_attempts=settings.max_attempts,
            worker_timeout_s=timeout_s,
            unclaimed_after_s=timeout_s if control_idle else settings.lease_s,
            messages_lost=messages_lost,
            gave_up=abandoned,
        )
        attempt_ids = [
            i for job_id in abandoned for i in webhooks.record_job_event(session, job_id)
        ]
    send_deliveries(attempt_ids)
    with session_scope(settings) as session:
        late_attempts = deliveries.due_attempts(session, grace_s=settings.sweep_interval_s)
    send_deliveries(late_attempts)
    for job_id, file_ids in requeue.items():
        enqueue_in_chunks(enqueue, job_id, file_ids, settings.chunk_size)
    for job_id in stalled:
        enqueue_enumeration(job_id)
    for job_id in gave_up:
        _try_finish(settings, job_id)
    counts = {
        "gave_up_jobs": len(gave_up),
        "requeued_files": sum(len(ids) for ids in requeue.values()),
        "requeued_enumerations": len(stalled),
        "stale_upload_parts": stale_parts,
        "late_webhook_attempts": len(late_attempts),
    }
    if any(counts.values()):
        log.warning("sweep: %s", counts)
    return counts
