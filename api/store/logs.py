"""Logging, configured in one place for the API, ``aer serve`` and the Celery workers.

``AER_LOG_FORMAT=json`` writes one JSON object per line; either format carries the id of the
HTTP request (``X-Request-ID``) and of the job being worked on, from context variables that
the request hooks and the worker tasks set (:func:`log_context`).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO

from api.store.settings import Settings

request_id: ContextVar[str | None] = ContextVar("aer_request_id", default=None)
job_id: ContextVar[str | None] = ContextVar("aer_job_id", default=None)
_VARS = {"request_id": request_id, "job_id": job_id}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(ids)s %(message)s"
#: LogRecord attributes that are not extra fields.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "ids", *_VARS}


@contextmanager
def log_context(**ids: str | None) -> Iterator[None]:
    """Within the block, log records carry these ids (``request_id``, ``job_id``)."""
    tokens = [(_VARS[name], _VARS[name].set(value)) for name, value in ids.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class ContextFilter(logging.Filter):
    """Puts the context's ``request_id`` and ``job_id`` on every record (unless set already)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _VARS.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        shown = [f"{n}={getattr(record, n)}" for n in _VARS if getattr(record, n, None)]
        record.ids = f" [{' '.join(shown)}]" if shown else ""
        return True


class JSONFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, ids, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **{name: getattr(record, name, None) for name in _VARS},
        }
        entry |= {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(settings: Settings, stream: IO[str] | None = None) -> logging.Handler:
    """Send the root logger's records, with their ids, to ``stream`` (stderr) in the format and
    at the level of ``settings``; replaces the handlers set before. Returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    if settings.log_format == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    return handler
