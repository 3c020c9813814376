"""Running a bucket export (``aer.export_results``): the job's results table is written to a
temporary file under ``AER_DATA_DIR/tmp`` in the export's format, batch by batch, then uploaded
with boto3's managed transfer (multipart for a large file) and deleted.

The destination is checked against ``AER_ALLOWED_BUCKETS`` again here: the list may have
changed since the export was asked for. Anything that stops the upload (a bucket that is gone,
refused credentials, a full disk) marks the export ``failed`` with the reason.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from api.store import exports, formats, jobs, models, resultview, tabular
from api.store.db import session_scope
from api.store.errors import StoreError
from api.store.objects import S3Address, check_bucket, s3_client
from api.store.settings import Settings

log = logging.getLogger(__name__)


def run_export(settings: Settings, export_id: str) -> str | None:
    """Write export ``export_id`` to its bucket; returns its final state (None when another
    worker finished it already or it is gone)."""
    with session_scope(settings) as session:
        try:
            export = exports.get_export(session, export_id, tenant_id=None)
        except exports.ExportNotFoundError:
            return None  # its job was deleted meanwhile
        if not exports.claim_export(session, export_id):
            return None
        address = S3Address(exports.bucket_of(export), export.object_key)
        fmt, job_id, tenant_id = export.format, export.job_id, export.tenant_id
        options = dict(export.options or {})
    folder = settings.temp_dir
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, suffix=f".{fmt}", delete=False) as tmp:
        path = Path(tmp.name)
    try:
        check_bucket(settings, address)
        size = _write(settings, job_id, tenant_id, fmt, options, path)
        s3_client().upload_file(str(path), address.bucket, address.key)
    except Exception as exc:  # noqa: BLE001 - any reason the upload failed is the export's
        reason = _reason(exc, path, address)
        log.warning("export %s of job %s to %s failed: %s", export_id, job_id, address, reason)
        with session_scope(settings) as session:
            exports.fail_export(session, export_id, reason)
        return "failed"
    finally:
        path.unlink(missing_ok=True)
    with session_scope(settings) as session:
        exports.finish_export(session, export_id, size=size)
    log.info("export %s of job %s: %s bytes to %s", export_id, job_id, size, address)
    return "done"


def _write(
    settings: Settings, job_id: str, tenant_id: str, fmt: str, options: dict, path: Path
) -> int:
    """Write the job's table to ``path``; returns its size."""
    with session_scope(settings) as session:
        job = jobs.get_job(session, job_id, tenant_id=tenant_id)
        metadata = resultview.model_metadata(models.registry(settings, tenant_id), job.model_name)
        view = resultview.result_view(
            settings,
            session,
            job,
            metadata,
            options.get("uncertain_below"),
            full_precision=options.get("precision") == "full",
        )
        granularity = options.get("granularity", "file")
        table = tabular.result_table(lambda: session, job.id, view, granularity)
        return formats.write_file(table, fmt, path)


def _reason(exc: Exception, path: Path, address: S3Address) -> str:
    """A one-line reason for the export's record (without the temporary file's path)."""
    if isinstance(exc, StoreError):
        return str(exc)
    text = str(exc).replace(str(path), "the export") or type(exc).__name__
    return f"upload to {address} failed: {text}"
