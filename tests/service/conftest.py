"""Fixtures for the Flask app: settings over a real migrated SQLite database, ``app``, ``client``.

The API tests need a real broker (POST /jobs enqueues) but no worker: jobs stay ``queued`` and
file rows are written through :mod:`api.store.processing`, exactly as the worker would write them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.auth import authenticated, create_key
from tests.openapi_check import check_responses


@pytest.fixture(scope="module")
def api_root(tmp_path_factory) -> Path:
    """The one allowed root of :func:`api_settings`."""
    return tmp_path_factory.mktemp("api-root").resolve()


@pytest.fixture(scope="module")
def api_settings(redis_server, api_root, tmp_path_factory):
    """Settings for the API tests: SQLite migrated by ``api.store.db.upgrade``, the session
    Redis."""
    from api.store.db import upgrade
    from api.store.settings import load_settings
    from core.registry import DEFAULT_MODELS_DIR

    data_dir = tmp_path_factory.mktemp("api-data").resolve()
    settings = load_settings(
        {
            "AER_DATA_DIR": str(data_dir),
            "AER_DATABASE_URL": f"sqlite:///{data_dir / 'aer.db'}",
            "AER_BROKER_URL": redis_server,
            "AER_ALLOWED_ROOTS": str(api_root),
            "AER_MODELS_DIR": os.environ.get("AER_MODELS_DIR") or str(DEFAULT_MODELS_DIR),
        }
    )
    upgrade(settings.database_url)
    return settings


@pytest.fixture(scope="module")
def api_key(api_settings) -> str:
    """An admin API key of the ``default`` tenant, which the test clients send."""
    return create_key(api_settings)


@pytest.fixture(scope="module")
def app(api_settings, api_key):
    """The API app over :func:`api_settings`; its test clients send :func:`api_key`."""
    from api.web.app import create_app

    app = authenticated(check_responses(create_app(api_settings)), api_key)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app):
    """A test client of :func:`app`."""
    return app.test_client()


@pytest.fixture
def make_app(api_settings, api_key) -> Callable[..., object]:
    """``make_app(**changes)``: an app over :func:`api_settings` with some fields replaced."""
    from api.web.app import create_app

    def make(**changes):
        app = check_responses(create_app(api_settings.model_copy(update=changes)))
        authenticated(app, api_key)
        app.config["TESTING"] = True
        return app

    return make
