"""The models page: the registry (shipped then custom models), the default marked, each model's
card rendered from its Markdown (escaped)."""

from __future__ import annotations

from flask import render_template

from api.web.models import model_detail, model_list
from api.web.pages import bp
from api.web.pages.markdown import render


@bp.get("/models")
def models_page():
    """Every model of the registry with its card, as ``GET /api/v1/models/{name}`` gives it."""
    listing = model_list()
    models = []
    for entry in listing["items"]:
        detail = model_detail(entry["name"])
        models.append(detail | {"card_html": render(detail["card"]) if detail["card"] else None})
    return render_template("pages/models.html", models=models, default=listing["default"])
