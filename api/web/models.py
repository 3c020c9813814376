"""``/models``: the models the service can run."""

from __future__ import annotations

from flask import Blueprint

from api.web.context import registry, settings
from api.web.schemas import ModelList
from api.web.spec import Response as Responses
from api.web.spec import endpoint

bp = Blueprint("models", __name__)
_PUBLIC_MODEL_FIELDS = (
    "name", "version", "labels", "feature_set", "preset", "metrics", "created", "default", "error"
)  # fmt: skip


@bp.get("/models")
@endpoint(resp=Responses(HTTP_200=ModelList), tags=("models",), scope="read")
def list_models():
    """Models in the registry, with labels, metrics and the default (no server paths)."""
    items = [
        {k: entry[k] for k in _PUBLIC_MODEL_FIELDS if k in entry} for entry in registry().list()
    ]
    return {"items": items, "default": settings().default_model}
