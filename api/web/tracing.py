"""Request ids: every request gets one (its ``X-Request-ID`` header when it sends a sane one,
else a fresh one), echoed back in the answer and carried by every log record written while it
is handled, along with the id of the job it is about."""

from __future__ import annotations

import logging
import re
import uuid

from flask import Flask, Response, g, request

from api.store import logs

HEADER = "X-Request-ID"
_SANE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
log = logging.getLogger("aer.http")


def bind_job(job_id: str) -> None:
    """Log records of the rest of this request carry ``job_id`` (a job just created)."""
    logs.job_id.set(job_id)


def _start() -> None:
    given = request.headers.get(HEADER, "")
    g.request_id = given if _SANE.fullmatch(given) else uuid.uuid4().hex
    job_id = (request.view_args or {}).get("job_id")
    # Reset at teardown: a gunicorn worker thread serves many requests in one context.
    g.log_tokens = (logs.request_id.set(g.request_id), logs.job_id.set(job_id))


def _finish(response: Response) -> Response:
    if "request_id" in g:
        response.headers[HEADER] = g.request_id
        log.info("%s %s %s", request.method, request.path, response.status_code)
    return response


def _reset(_exc: BaseException | None) -> None:
    tokens = g.pop("log_tokens", None)
    if tokens is not None:
        logs.request_id.reset(tokens[0])
        logs.job_id.reset(tokens[1])


def init_app(app: Flask) -> None:
    """Give every request of ``app`` its id and log its outcome."""
    app.before_request(_start)
    app.after_request(_finish)
    app.teardown_request(_reset)
