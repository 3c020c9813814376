"""``/models``: the models the service can run, their cards, and training custom models from
people's labels (``POST /models``, polled at ``/trainings/{id}``)."""

from __future__ import annotations

from pathlib import PurePath

from flask import Blueprint, request, url_for

from api.store import audit, jobs, trainings
from api.store.models import custom_dir
from api.store.queue import enqueue_training
from api.web.auth import principal, require, tenant
from api.web.context import celery, db, registry, settings
from api.web.errors import APIError, invalid
from api.web.schemas import ModelDetail, ModelList, Training, TrainingRequest
from api.web.serializers import training_json
from api.web.spec import Response as Responses
from api.web.spec import endpoint, errors

bp = Blueprint("models", __name__)
_PUBLIC_MODEL_FIELDS = (
    "name", "version", "labels", "feature_set", "preset", "metrics", "created", "default",
    "available", "reason",
)  # fmt: skip


def _public(entry: dict) -> dict:
    item = {k: entry[k] for k in _PUBLIC_MODEL_FIELDS if k in entry}
    if "metrics" in item:
        item["metrics"] = _public_metrics(item["metrics"])
    return item


def model_list() -> dict:
    """The :class:`~api.web.schemas.ModelList` of the registry as the caller's tenant sees it
    (the dashboard shows it too); a model whose files fail the checks of loading is listed
    ``available: false`` with the reason."""
    items = [_public(entry) for entry in registry().list()]
    return {"items": items, "default": settings().default_model}


def _public_metrics(metrics: dict) -> dict:
    # The training run records where it wrote its plots: names only, not that machine's paths.
    plots = metrics.get("plots")
    if not isinstance(plots, list):
        return metrics
    return {**metrics, "plots": [PurePath(str(p)).name for p in plots]}


def model_detail(name: str) -> dict:
    """The :class:`~api.web.schemas.ModelDetail` of model ``name``; 404 when unknown."""
    models = registry()
    entry = next((e for e in models.list() if e["name"] == name), None)
    if entry is None:
        raise APIError(f"no model {name!r}", status=404, code="model_not_found")
    card = models.resolve(name).with_suffix(".md")  # beside the artifact the name resolves to
    return {**_public(entry), "card": card.read_text(encoding="utf-8") if card.is_file() else None}


@bp.get("/models")
@endpoint(resp=Responses(HTTP_200=ModelList), tags=("models",), scope="read")
def list_models():
    """Models in the registry (shipped, then the tenant's custom ones), with labels, metrics
    and the default (no server paths)."""
    return model_list()


@bp.get("/models/<name>")
@endpoint(resp=Responses(HTTP_200=ModelDetail, **errors(404)), tags=("models",), scope="read")
def get_model(name: str):
    """One model with its card (Markdown): metrics, held-out results, what it was trained on."""
    return model_detail(name)


def _check_request(body: TrainingRequest) -> dict:
    from core.custom import check_name
    from core.errors import DatasetError
    from core.presets import PRESETS

    try:
        check_name(body.name, custom_dir(settings(), tenant()))
    except DatasetError as exc:
        raise APIError(str(exc), status=409, code="model_exists") from None
    if any(e["name"] == body.name for e in registry().list()):
        raise APIError(f"a model named {body.name!r} exists", status=409, code="model_exists")
    if body.recipe is not None and body.recipe not in PRESETS:
        raise invalid("recipe", f"unknown recipe {body.recipe!r}")
    if body.add_ravdess and settings().ravdess_dir is None:
        raise invalid("add_ravdess", "this server has no RAVDESS folder (AER_RAVDESS_DIR)")
    if body.jobs is not None:
        for job_id in body.jobs:
            jobs.get_job(db(), job_id, tenant_id=tenant())
        return {"jobs": body.jobs}
    require("admin")  # a manifest names files on the server
    return {"manifest": str(jobs.check_file(settings(), body.manifest))}


@bp.post("/models")
@endpoint(
    json=TrainingRequest,
    resp=Responses(HTTP_202=Training, **errors(400, 403, 404, 409, 415, 422)),
    tags=("models",),
    scope="submit",
)
def train_model():
    """Train a custom model from corrected labels of jobs (or a server-side manifest): 202 with
    the queued training and its Location; the model joins the registry when it succeeds."""
    body: TrainingRequest = request.context.json
    source = _check_request(body)
    options = {"recipe": body.recipe, "add_ravdess": body.add_ravdess, "holdout": body.holdout}
    training = trainings.create_training(
        db(), name=body.name, source=source, options=options, tenant_id=tenant()
    )
    audit.record(db(), principal(), "model.train", "training", training.id, name=body.name)
    db().commit()  # the worker must find it when the message arrives
    enqueue_training(celery(), training.id)
    location = url_for("models.get_training", training_id=training.id, _external=True)
    return training_json(training), 202, {"Location": location}


@bp.get("/trainings/<training_id>")
@endpoint(resp=Responses(HTTP_200=Training, **errors(404)), tags=("models",), scope="read")
def get_training(training_id: str):
    """A training's state, progress and, once done, its held-out metrics."""
    return training_json(trainings.get_training(db(), training_id, tenant_id=tenant()))
