"""One call (one file of a job): its timeline, summary, labels and an audio player; and the
route that streams the file's stored audio (HTTP range requests, for seeking)."""

from __future__ import annotations

import mimetypes
from pathlib import Path, PurePosixPath

from flask import render_template, send_file

from api.store import jobs, results
from api.store.jobs import is_within
from api.store.objects import is_s3
from api.store.storage import ObjectInfo, Storage, open_storage
from api.store.uploads import upload_key
from api.web.context import db, settings
from api.web.errors import APIError
from api.web.pages import access, bp
from api.web.pages.charts import Lane, timeline_svg
from api.web.pages.display import job_row
from api.web.pages.stored import stream_object
from api.web.serializers import result_row, segment_row
from api.web.views import job_view

#: Most segments one call page draws (a call of several hours at the default segmentation).
MAX_SEGMENTS = 5000
#: Audio types browsers play, whatever this system's ``mimetypes`` says.
AUDIO_TYPES = {
    ".wav": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg", ".ogg": "audio/ogg",
    ".opus": "audio/ogg", ".m4a": "audio/mp4",
}  # fmt: skip
_GONE = "the audio of this call is no longer stored"


def _segments(file_id: int) -> list:
    out, last = [], None
    while len(out) < MAX_SEGMENTS:
        page = jobs.file_segments(db(), file_id, after_id=last, limit=1000)
        if not page:
            break
        out += page
        last = page[-1].id
    return out[:MAX_SEGMENTS]


@bp.get("/jobs/<job_id>/files/<int:file_id>")
def call_page(job_id: str, file_id: int):
    """A call: a lane per channel coloured by emotion, the player, the summary and labels."""
    job = access.find_job(job_id)
    file = results.get_file(db(), job.id, file_id)
    view = job_view(job)
    segments = [segment_row(s, view) for s in _segments(file.id)]
    lanes: dict[int, Lane] = {}
    for seg in segments:
        lane = lanes.setdefault(seg["channel"], Lane(seg["channel"], seg["channel_name"], []))
        lane.segments.append(seg)
    result = result_row(file, view)
    return render_template(
        "pages/call.html",
        job=job_row(job, jobs.file_counts(db(), job.id), file.rel_path),
        result=result,
        segments=segments,
        truncated=len(segments) >= MAX_SEGMENTS,
        timeline=timeline_svg(list(lanes.values()), file.duration_s or 0.0, view.labels),
        labels=view.labels,
        summary=result["summary"],
        finished=job.state not in jobs.ACTIVE_JOB_STATES,
    )


def stored_audio(location: str) -> Path:
    """The audio file at ``location`` if it lies under the uploads folder or an allowed root.

    Raises:
        APIError: 404 when the file has no stored audio any more (deleted, moved).
    """
    path = Path(location).resolve()
    roots = (settings().uploads_dir.resolve(), *settings().allowed_roots)
    if not is_within(path, roots) or not path.is_file():
        raise APIError(_GONE, status=404)
    return path


def stored_object(storage: Storage, job_id: str, location: str) -> ObjectInfo:
    """The object at ``location`` if it is an upload of job ``job_id`` in the bucket of
    ``AER_STORAGE_URL``.

    Raises:
        APIError: 404 when it lies elsewhere, or is no longer stored.
    """
    key = storage.key_of(location)
    info = None
    if key is not None and key.startswith(upload_key(job_id) + "/"):
        info = storage.stat(key)
    if info is None:
        raise APIError(_GONE, status=404)
    return info


def _mimetype(name: str) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    return AUDIO_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


@bp.get("/jobs/<job_id>/files/<int:file_id>/audio")
def call_audio(job_id: str, file_id: int):
    """The file's audio as stored, with range requests (206) so the player can seek: from the
    bucket of ``AER_STORAGE_URL`` for uploads kept there, else from this host's disk."""
    job = access.find_job(job_id)
    file = results.get_file(db(), job.id, file_id)
    storage = open_storage(settings())
    if not storage.local and is_s3(file.path):
        info = stored_object(storage, job.id, file.path)
        return stream_object(storage, info, _mimetype(info.key))
    path = stored_audio(file.path)
    return send_file(path, mimetype=_mimetype(path.name), conditional=True)
