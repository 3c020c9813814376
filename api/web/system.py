"""Service-level routes: health and the OpenAPI document."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify, request

from api.store import health, keys
from api.store.alive import live_workers
from api.web.auth import PUBLIC, requires
from api.web.context import db, settings
from api.web.schemas import Health
from api.web.spec import Response as Responses
from api.web.spec import document, endpoint

bp = Blueprint("system", __name__)
log = logging.getLogger(__name__)


def health_details_allowed() -> bool:
    """Whether this request may read why a part is down: driver errors name hosts, ports,
    users and socket paths, so the public answer says only ok or degraded per part, and an
    admin key (sent to this public route as to any other) also gets the reasons."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return False
    try:
        found = keys.authenticate(db(), key.strip())
    except Exception:  # the database itself is down: no way to check the key
        return False
    return found is not None and found.can("admin")


@bp.get("/healthz")
@endpoint(resp=Responses(HTTP_200=Health, HTTP_503=Health), tags=("system",), scope=PUBLIC)
def healthz():
    """200 when the database answers ``SELECT 1`` and the broker answers PING, else 503.

    Each part is ``ok`` or ``degraded``; why a part is degraded is logged, and shown only to
    callers :func:`health_details_allowed` lets see it. ``workers`` is ``degraded`` when no
    worker answers a ping: jobs are accepted and wait (the status says ``degraded``, still 200).
    """
    checks = {
        "database": health.check_database(settings().database_url),
        "broker": health.check_broker(settings().celery_broker_url),
    }
    details = health_details_allowed()
    body = {}
    for name, err in checks.items():
        body[name] = {"ok": err is None, "status": "ok" if err is None else "degraded"}
        if err is not None:
            log.warning("health: %s degraded: %s", name, err)
            if details:
                body[name]["error"] = err
    alive = checks["broker"] is None and live_workers(settings(), enough=1) > 0
    body["workers"] = {"ok": alive, "status": "ok" if alive else "degraded"}
    down = [name for name, err in checks.items() if err is not None]
    if not down:
        return {"status": "ok" if alive else "degraded", "checks": body}
    error = {"code": "unavailable", "message": f"{' and '.join(down)} unavailable"}
    return {"status": "unavailable", "checks": body, "error": error}, 503


@bp.get("/openapi.json")
@requires(PUBLIC)
def openapi():
    """The OpenAPI 3.1 document of this API, generated from its typed models."""
    return jsonify(document())
