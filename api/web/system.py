"""Service-level routes: health and the OpenAPI document."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify

from api.store import health
from api.store.workers import live_workers
from api.web.context import settings
from api.web.schemas import Health
from api.web.spec import Response as Responses
from api.web.spec import document, endpoint

bp = Blueprint("system", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
@endpoint(resp=Responses(HTTP_200=Health, HTTP_503=Health), tags=("system",))
def healthz():
    """200 when the database answers ``SELECT 1`` and the broker answers PING (``degraded``
    when no worker answers a ping: jobs wait), else 503. Errors name no host or socket."""
    checks = {
        "database": health.check_database(settings().database_url),
        "broker": health.check_broker(settings().celery_broker_url),
    }
    for name, err in checks.items():
        if err is not None:
            log.warning("health: %s unavailable: %s", name, err)
    body = {
        name: {"ok": err is None, **({"error": _public(err)} if err else {})}
        for name, err in checks.items()
    }
    alive = checks["broker"] is None and live_workers(settings(), enough=1) > 0
    body["workers"] = {"ok": True} if alive else {"ok": False, "error": "no worker answered"}
    down = [name for name, err in checks.items() if err is not None]
    if not down:
        return {"status": "ok" if alive else "degraded", "checks": body}
    error = {"code": "unavailable", "message": f"{' and '.join(down)} unavailable"}
    return {"status": "unavailable", "checks": body, "error": error}, 503


def _public(error: str) -> str:
    # Exception messages may name hosts, ports or socket paths: the public body keeps the type.
    return error.split(":", 1)[0]


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 document of this API, generated from its typed models."""
    return jsonify(document())
