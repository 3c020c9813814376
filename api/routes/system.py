"""Service-level routes: the model registry, health and the OpenAPI document."""

from __future__ import annotations

import redis
from flask import g, jsonify
from sqlalchemy import text

from api.openapi import openapi_document
from api.routes import bp, db, settings

#: Seconds the health check waits for the broker before calling it down.
BROKER_TIMEOUT_S = 2.0
_PUBLIC_MODEL_FIELDS = (
    "name", "version", "labels", "feature_set", "preset", "metrics", "created", "default", "error"
)  # fmt: skip


def registry():
    """The model registry of the running app (imported late: it pulls in scikit-learn)."""
    from core.registry import ModelRegistry

    return ModelRegistry(settings().models_dir)


@bp.get("/models")
def list_models():
    """Models the service can run (no server paths)."""
    items = [
        {k: entry[k] for k in _PUBLIC_MODEL_FIELDS if k in entry} for entry in registry().list()
    ]
    return jsonify(items=items, default=settings().default_model)


def redis_url(broker_url: str) -> str:
    """The redis-py URL of a Celery broker URL (``redis+socket://`` becomes ``unix://``)."""
    if broker_url.startswith("redis+socket://"):
        return "unix://" + broker_url.removeprefix("redis+socket://")
    return broker_url


def _check_database() -> str | None:
    try:
        db().execute(text("SELECT 1")).scalar_one()
    except Exception as exc:  # any failure means "down"; the message says why
        if "db_session" in g:
            g.db_session.rollback()
        return f"{type(exc).__name__}: {exc}"
    return None


def _check_broker() -> str | None:
    url = redis_url(settings().celery_broker_url)
    try:
        client = redis.Redis.from_url(
            url, socket_timeout=BROKER_TIMEOUT_S, socket_connect_timeout=BROKER_TIMEOUT_S
        )
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # any failure means "down"; the message says why
        return f"{type(exc).__name__}: {exc}"
    return None


@bp.get("/healthz")
def healthz():
    """200 when the database answers ``SELECT 1`` and the broker answers PING, else 503."""
    checks = {"database": _check_database(), "broker": _check_broker()}
    body = {
        name: {"ok": err is None, **({"error": err} if err else {})} for name, err in checks.items()
    }
    down = [name for name, err in checks.items() if err is not None]
    if not down:
        return jsonify(status="ok", checks=body)
    error = {"code": "unavailable", "message": f"{' and '.join(down)} unavailable"}
    return jsonify(status="unavailable", checks=body, error=error), 503


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 document of this API."""
    return jsonify(openapi_document())
