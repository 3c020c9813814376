"""Error pages: every failure of a page (or of an unknown address outside the JSON API) is
answered with a readable HTML page, never a traceback. The JSON API keeps its JSON errors."""

from __future__ import annotations

from flask import Flask, render_template

from api.store import health
from api.web.context import settings

TITLES = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed here",
    409: "Not now",
    413: "Too large",
    415: "Not audio",
    422: "Cannot do that",
    500: "Something went wrong",
    503: "The service is degraded",
}


def _degraded() -> str | None:
    """Which part of the service is down, if any (asked only after an unexpected error)."""
    down = [
        name
        for name, problem in (
            ("the database", health.check_database(settings().database_url)),
            ("the queue broker", health.check_broker(settings().celery_broker_url)),
        )
        if problem
    ]
    return " and ".join(down) or None


def error_page(status: int, code: str, message: str):
    """The HTML answer for an error of a page; an unexpected 500 becomes a 503 naming the part
    of the service that is down, when one is."""
    if status >= 500:
        down = _degraded()
        if down:
            status = 503
            message = f"{down} cannot be reached; the dashboard will work again once it is back."
        elif status == 500:
            message = "An unexpected error happened. It has been logged; please try again."
    title = TITLES.get(status, "Error")
    body = render_template("pages/error.html", status=status, title=title, message=message)
    return body, status


def init_app(app: Flask) -> None:
    """Let :mod:`api.web.errors` answer errors outside the JSON API with :func:`error_page`."""
    app.extensions["aer.error_page"] = error_page
