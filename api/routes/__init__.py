"""The ``/api/v1`` blueprint and the one place a request opens and closes its database session.

Route modules call :func:`db` for the request's session (opened lazily through
``api.db.session_scope``, committed or rolled back and closed at teardown) and :func:`settings`
for the app's :class:`~api.config.Settings`.
"""

from __future__ import annotations

from celery import Celery
from flask import Blueprint, Flask, Response, current_app, g, request
from sqlalchemy.orm import Session

from api.config import Settings
from api.db import session_scope
from api.routes.uploads import discard_spooled

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def settings() -> Settings:
    """The settings of the running app."""
    return current_app.config["AER_SETTINGS"]


def celery() -> Celery:
    """The app's Celery client, configured from its settings (sends tasks by name only)."""
    return current_app.extensions["aer.celery"]


def db() -> Session:
    """The request's database session (one per request)."""
    if "db_session" not in g:
        scope = session_scope(settings())
        g.db_session = scope.__enter__()
        g.db_scope = scope
    return g.db_session


def _rollback_on_error(response: Response) -> Response:
    # An error answered by a handler is no exception at teardown: undo its writes here.
    if response.status_code >= 400 and "db_session" in g:
        g.db_session.rollback()
    return response


def _close_db(exc: BaseException | None) -> None:
    scope = g.pop("db_scope", None)
    g.pop("db_session", None)
    if scope is not None:  # session_scope commits, or rolls back when given the exception
        scope.__exit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)


def _discard_uploads(exc: BaseException | None) -> None:
    discard_spooled(request)


def init_app(app: Flask) -> None:
    """Register the blueprint and its per-request teardown hooks on ``app``."""
    from api.routes import jobs, results, segments, system  # noqa: F401  (register on bp)
    from worker.celery_app import create_celery

    # The producer side: built from the app's settings, so tests and the embedded stack can
    # point one app at one broker without touching the environment.
    app.extensions["aer.celery"] = create_celery(settings=app.config["AER_SETTINGS"])
    app.register_blueprint(bp)
    app.after_request(_rollback_on_error)
    app.teardown_appcontext(_close_db)
    app.teardown_request(_discard_uploads)
