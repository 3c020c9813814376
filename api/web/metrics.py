"""``/metrics``: the service's Prometheus metrics (outside ``/api/v1``, where scrapers look).

The numbers cover every tenant, so they are the operator's: the caller sends either
``AER_METRICS_TOKEN`` (what Prometheus is given: it can read nothing else) or an admin API key.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, request

from api.store import keys
from api.store import metrics as store_metrics
from api.web.auth import PUBLIC, requires, unauthorized
from api.web.context import db, settings
from api.web.errors import APIError

bp = Blueprint("metrics", __name__)


def _check_caller() -> None:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        raise unauthorized("send AER_METRICS_TOKEN or an admin API key as a Bearer token")
    token = settings().metrics_token
    if token and hmac.compare_digest(given.encode(), token.encode()):
        return
    found = keys.authenticate(db(), given)
    if found is None:
        raise unauthorized("the token is neither AER_METRICS_TOKEN nor a usable API key")
    if not found.can("admin"):
        raise APIError("this API key lacks the 'admin' scope", status=403)


@bp.get("/metrics")
@requires(PUBLIC)  # the view checks its own two kinds of caller
def metrics():
    """Jobs, files, processing speed, queues, workers and webhooks, read at scrape time."""
    _check_caller()
    return Response(store_metrics.render(settings(), db()), content_type=store_metrics.CONTENT_TYPE)
