"""``/metrics``: the service's Prometheus metrics (outside ``/api/v1``, where scrapers look)."""

from __future__ import annotations

from flask import Blueprint, Response

from api.store import metrics as store_metrics
from api.web.context import settings

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics():
    """Jobs, files, processing speed, queues, workers and webhooks, read at scrape time."""
    return Response(store_metrics.render(settings()), mimetype=None,
                    content_type=store_metrics.CONTENT_TYPE)  # fmt: skip
