"""What the training task does: claim a training, gather its labelled clips, train the custom
model with ``core.custom`` into the custom models folder (or a private folder, then the bucket
of ``AER_STORAGE_URL``), record the outcome."""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from datetime import timedelta
from pathlib import Path

from api.store import labels, trainings
from api.store.db import session_scope
from api.store.fetch import is_remote, local_copy
from api.store.jobs import is_within
from api.store.models import custom_dir, publish, stored_names
from api.store.settings import Settings
from api.store.storage import open_storage
from api.store.tables import utcnow
from core.errors import AERError, DatasetError

log = logging.getLogger(__name__)
#: Least seconds between two progress writes of one training.
PROGRESS_EVERY_S = 1.0


def run_training(settings: Settings, training_id: str) -> bool:
    """Train the custom model of ``training_id``; False when another worker has it."""
    lease_until = utcnow() + timedelta(seconds=settings.lease_s)
    with session_scope(settings) as session:
        if not trainings.claim_training(session, training_id, lease_until=lease_until):
            return False
        training = trainings.get_training(session, training_id, tenant_id=None)
        name, source, options = training.name, dict(training.source), dict(training.options)
        tenant_id = training.tenant_id
        try:
            clips = _clips(session, settings, source, tenant_id)
        except AERError as exc:
            trainings.fail_training(session, training_id, str(exc))
            return True
    try:
        result = _train(settings, training_id, name, clips, options, tenant_id)
    except AERError as exc:
        _fail(settings, training_id, str(exc))
    except Exception:  # a bug: recorded in the log, reported without internals
        log.exception("training %s failed", training_id)
        _fail(settings, training_id, "internal error while training (see the worker log)")
    else:
        with session_scope(settings) as session:
            trainings.finish_training(
                session, training_id, version=result["version"], metrics=result["metrics"]
            )
        log.info("training %s: model %s trained", training_id, name)
    return True


def _clips(session, settings: Settings, source: dict, tenant_id: str) -> list:
    if "jobs" in source:
        return labels.labelled_clips(session, list(source["jobs"]), tenant_id=tenant_id)
    from core.custom_data import read_clips_manifest

    clips = read_clips_manifest(source["manifest"])
    outside = [c for c in clips if not is_within(Path(c.path).resolve(), settings.allowed_roots)]
    if outside:
        raise labels.InvalidLabelError(
            f"{len(outside)} clips of the manifest lie outside AER_ALLOWED_ROOTS"
        )
    return clips


def _train(
    settings: Settings, training_id: str, name: str, clips: list, options: dict, tenant_id: str
) -> dict:
    from core.artifacts import read_metadata
    from core.custom import train_custom

    last = [0.0]

    def progress(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < PROGRESS_EVERY_S and done not in (0, total):
            return
        last[0] = now
        with session_scope(settings) as session:
            trainings.report_progress(session, training_id, stage, done, total)

    local = open_storage(settings).local
    # With a bucket the model is written to a private folder first, then stored.
    models_dir = custom_dir(settings, tenant_id) if local else settings.temp_dir / training_id
    if not local and name in stored_names(settings, tenant_id):
        raise DatasetError(f"a model named {name!r} exists: pick another name")
    models_dir.mkdir(parents=True, exist_ok=True)
    try:
        with contextlib.ExitStack() as stack:
            result = train_custom(
                _local_clips(settings, clips, stack),
                name=name,
                recipe=options.get("recipe"),
                add_ravdess=settings.ravdess_dir if options.get("add_ravdess") else None,
                holdout=options.get("holdout", 0.25),
                models_dir=models_dir,
                compare_with=settings.default_model,
                n_jobs=1,  # a Celery pool process may not start processes of its own
                progress=progress,
            )
        version = read_metadata(result.model_path).get("version")
        publish(settings, tenant_id, models_dir)
    finally:
        if not local:
            shutil.rmtree(models_dir, ignore_errors=True)
    return {"version": version, "metrics": result.metrics}


def _local_clips(settings: Settings, clips: list, stack: contextlib.ExitStack) -> list:
    """``clips`` with the files in a bucket (or behind a URL) fetched to bounded temporary
    files that live as long as ``stack``."""
    copies: dict[str, str] = {}
    out = []
    for clip in clips:
        path = clip.get("path") if isinstance(clip, dict) else None
        if path is None or not is_remote(path):
            out.append(clip)
            continue
        if path not in copies:
            copies[path] = str(stack.enter_context(local_copy(settings, path)))
        out.append({**clip, "path": copies[path]})
    return out


def _fail(settings: Settings, training_id: str, error: str) -> None:
    with session_scope(settings) as session:
        trainings.fail_training(session, training_id, error)
