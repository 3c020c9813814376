"""JSON errors for the HTTP API: one error class, one place that turns errors into responses.

Every error answer has the shape ``{"error": {"code": "...", "message": "..."}}``. Domain errors
raised below the API (``api.store``, ``core``) are mapped here by their ``status`` attribute
(or, for the core error tree, by class), so routes never build error responses by hand.
"""

from __future__ import annotations

import errno
import logging

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from core.errors import (
    AERError,
    AudioError,
    DatasetError,
    FeatureSetError,
    ModelError,
    ModelNotFoundError,
)

log = logging.getLogger(__name__)

#: Stable codes for the HTTP statuses the API answers with.
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_parameters",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
    507: "insufficient_storage",
}
#: ``errno`` values of a full disk or an exhausted quota.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})

# Most specific first: the first matching class gives the status.
_CORE_STATUS: tuple[tuple[type[AERError], int], ...] = (
    (ModelNotFoundError, 422),
    (FeatureSetError, 422),
    (DatasetError, 422),
    (AudioError, 422),
    (ModelError, 500),
)


class APIError(Exception):
    """An error the API answers with: HTTP ``status``, machine ``code`` and a one-line message."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        code: str | None = None,
        details: dict | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code or HTTP_CODES.get(status, "error")
        self.details = details
        self.headers = headers or {}


def invalid(field: str, message: str) -> APIError:
    """A 422 error about one request field."""
    return APIError(f"{field}: {message}", status=422, details={"field": field})


def error_response(
    status: int, code: str, message: str, details: dict | None = None
) -> tuple[Response, int]:
    """Build the JSON error body with its status."""
    body: dict = {"code": code, "message": message}
    if details:
        body["details"] = details
    return jsonify(error=body), status


def _too_large_message() -> str:
    # werkzeug raises the same 413 for a body over MAX_CONTENT_LENGTH and for a form with too
    # many parts (or a text field over MAX_FORM_MEMORY_SIZE): the declared length tells which.
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    length = request.content_length
    if limit and (length is None or length > limit):
        return f"the request is larger than the upload limit of {limit // 2**20} MB"
    parts = current_app.config.get("MAX_FORM_PARTS")
    field_kb = (current_app.config.get("MAX_FORM_MEMORY_SIZE") or 0) // 1000
    return (
        f"the form has more than {parts} parts (AER_MAX_FILES_PER_JOB files and a few "
        f"fields) or a text field over {field_kb} KB"
    )


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an error it was raised from) says the disk or a quota is full."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return True
        if "database or disk is full" in str(getattr(exc, "orig", "") or ""):
            return True  # SQLite's way of saying ENOSPC
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


#: Paths whose errors stay JSON, for programs (the API, Prometheus); others get HTML pages.
MACHINE_PATHS = ("/api/", "/metrics")


def _page(status: int, code: str, message: str):
    """The HTML error page for requests outside the JSON API, when the app has pages."""
    render = current_app.extensions.get("aer.error_page")
    if render is None or request.path.startswith(MACHINE_PATHS):
        return None
    return render(status, code, message)


def _handle_http(exc: HTTPException) -> Response:
    status = exc.code or 500
    message = exc.description or ""
    if status == 413:
        message = _too_large_message()
    page = _page(status, HTTP_CODES.get(status, "error"), message)
    if page is not None:
        return page
    response, _ = error_response(status, HTTP_CODES.get(status, "error"), message)
    response.status_code = status
    # Keep headers such as Allow (405) that werkzeug attaches to the exception.
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _handle_any(exc: Exception) -> tuple[Response, int]:
    response, status = _json_error(exc)
    error = response.get_json()["error"]
    page = _page(status, error["code"], error["message"])
    return (response, status) if page is None else page


def _json_error(exc: Exception) -> tuple[Response, int]:
    if isinstance(exc, APIError):
        response, status = error_response(exc.status, exc.code, exc.message, exc.details)
        response.headers.update(exc.headers)
        return response, status
    status = getattr(exc, "status", None) or getattr(exc, "status_code", None)
    code = getattr(exc, "code", None)
    if isinstance(exc, AERError) and not status:
        status = next((s for cls, s in _CORE_STATUS if isinstance(exc, cls)), 500)
    if is_disk_full(exc):
        log.error("disk full: %r", exc)
        return error_response(507, HTTP_CODES[507], "not enough disk space; try again later")
    if isinstance(status, int) and 400 <= status < 600:
        code = code if isinstance(code, str) else HTTP_CODES.get(status, "error")
        message = getattr(exc, "message", None) or str(exc) or HTTP_CODES.get(status, "error")
        details = getattr(exc, "details", None)
        return error_response(status, code, message, details if isinstance(details, dict) else None)
    log.exception("unhandled error")
    return error_response(500, "internal_error", "internal server error")


def register_error_handlers(app: Flask) -> None:
    """Answer every error of ``app`` as JSON."""
    app.register_error_handler(HTTPException, _handle_http)
    app.register_error_handler(Exception, _handle_any)
