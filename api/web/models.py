"""``/models``: the models the service can run."""

from __future__ import annotations

from pathlib import PurePath

from flask import Blueprint

from api.web.context import registry, settings
from api.web.schemas import ModelList
from api.web.spec import Response as Responses
from api.web.spec import endpoint

bp = Blueprint("models", __name__)
_PUBLIC_MODEL_FIELDS = (
    "name", "version", "labels", "feature_set", "preset", "metrics", "created", "default",
    "available", "reason",
)  # fmt: skip


@bp.get("/models")
@endpoint(resp=Responses(HTTP_200=ModelList), tags=("models",))
def list_models():
    """Models in the registry, with labels, metrics and the default (no server paths); a model
    whose files fail the checks of loading is listed ``available: false`` with the reason."""
    items = [
        {k: entry[k] for k in _PUBLIC_MODEL_FIELDS if k in entry} for entry in registry().list()
    ]
    for item in items:
        if "metrics" in item:
            item["metrics"] = _public_metrics(item["metrics"])
    return {"items": items, "default": settings().default_model}


def _public_metrics(metrics: dict) -> dict:
    # The training run records where it wrote its plots: names only, not that machine's paths.
    plots = metrics.get("plots")
    if not isinstance(plots, list):
        return metrics
    return {**metrics, "plots": [PurePath(str(p)).name for p in plots]}
