"""The model registry the service uses: the shipped models, then the tenant's custom ones."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from api.store.settings import Settings

if TYPE_CHECKING:
    from core.registry import ModelRegistry


def custom_dir(settings: Settings, tenant_id: str) -> Path:
    """Where the custom models of ``tenant_id`` live (``AER_CUSTOM_MODELS_DIR/<tenant>``)."""
    return settings.custom_models_dir / tenant_id


def registry(settings: Settings, tenant_id: str | None = None) -> ModelRegistry:
    """Models of ``AER_MODELS_DIR``, then the custom models of ``tenant_id`` (none without a
    tenant): a tenant sees its own custom models only. Imported late: the registry pulls in
    scikit-learn."""
    from core.registry import ModelRegistry

    extra = () if tenant_id is None else (custom_dir(settings, tenant_id),)
    return ModelRegistry(settings.models_dir, extra=extra)
