"""What a request handler needs from its app: the settings, the request's database session,
the Celery producer and the model registry, plus the hooks that close the session and discard
unused upload parts when a request ends.

The session is opened lazily through :func:`api.store.db.session_scope` and committed (or rolled
back, on an error answer or an exception) and closed at teardown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from celery import Celery
from flask import Flask, Response, current_app, g, request

from api.store import models
from api.store.db import session_scope
from api.store.queue import create_celery
from api.store.settings import Settings
from api.web.uploads import discard_spooled

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from core.registry import ModelRegistry


def settings() -> Settings:
    """The settings of the running app."""
    return current_app.config["AER_SETTINGS"]


def celery() -> Celery:
    """The app's Celery producer, configured from its settings (sends tasks by name only)."""
    return current_app.extensions["aer.celery"]


def registry() -> ModelRegistry:
    """The model registry as the request's tenant sees it: the shipped models, then its own
    custom ones (the shipped ones only where no key was checked)."""
    principal = g.get("aer_principal")
    return models.registry(settings(), principal.tenant_id if principal else None)


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
    """Attach the producer and the per-request teardown hooks to ``app``."""
    # The producer is built from the app's settings, so tests and the embedded stack can point
    # one app at one broker without touching the environment.
    app.extensions["aer.celery"] = create_celery(app.config["AER_SETTINGS"])
    app.after_request(_rollback_on_error)
    app.teardown_appcontext(_close_db)
    app.teardown_request(_discard_uploads)
