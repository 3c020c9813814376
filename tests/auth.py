"""API keys for the service tests: create one in a test database, and make an app's test
clients send it (``Authorization: Bearer``) on every request."""

from __future__ import annotations

from datetime import datetime

from flask import Flask
from flask.testing import FlaskClient

ALL_SCOPES = ("read", "submit", "admin")


def create_key(
    settings,
    *,
    tenant: str = "default",
    scopes: tuple[str, ...] = ALL_SCOPES,
    name: str = "test",
    expires_at: datetime | None = None,
) -> str:
    """A new key of ``tenant`` in the database of ``settings`` (migrated); returns the key."""
    from api.store.db import session_scope
    from api.store.keys import create_key as store_create_key

    with session_scope(settings) as session:
        _, key = store_create_key(
            session, tenant_id=tenant, name=name, scopes=scopes, expires_at=expires_at
        )
    return key


def bearer(key: str) -> dict[str, str]:
    """The request header that carries ``key``."""
    return {"Authorization": f"Bearer {key}"}


def authenticated(app: Flask, key: str) -> Flask:
    """Make every ``app.test_client()`` send ``key`` unless a request sets its own header."""

    class Client(FlaskClient):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"

    app.test_client_class = Client
    return app
