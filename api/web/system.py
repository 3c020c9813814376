"""Service-level routes: health and the OpenAPI document."""

from __future__ import annotations

from flask import Blueprint, jsonify

from api.store import health
from api.web.auth import PUBLIC, requires
from api.web.context import settings
from api.web.schemas import Health
from api.web.spec import Response as Responses
from api.web.spec import document, endpoint

bp = Blueprint("system", __name__)


@bp.get("/healthz")
@endpoint(resp=Responses(HTTP_200=Health, HTTP_503=Health), tags=("system",), scope=PUBLIC)
def healthz():
    """200 when the database answers ``SELECT 1`` and the broker answers PING, else 503."""
    checks = {
        "database": health.check_database(settings().database_url),
        "broker": health.check_broker(settings().celery_broker_url),
    }
    body = {
        name: {"ok": err is None, **({"error": err} if err else {})} for name, err in checks.items()
    }
    down = [name for name, err in checks.items() if err is not None]
    if not down:
        return {"status": "ok", "checks": body}
    error = {"code": "unavailable", "message": f"{' and '.join(down)} unavailable"}
    return {"status": "unavailable", "checks": body, "error": error}, 503


@bp.get("/openapi.json")
@requires(PUBLIC)
def openapi():
    """The OpenAPI 3.1 document of this API, generated from its typed models."""
    return jsonify(document())
