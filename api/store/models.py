"""The model registry the service uses: the shipped models, then the custom ones."""

from __future__ import annotations

from typing import TYPE_CHECKING

from api.store.settings import Settings

if TYPE_CHECKING:
    from core.registry import ModelRegistry


def registry(settings: Settings) -> ModelRegistry:
    """Models of ``AER_MODELS_DIR``, then those trained through the service
    (``AER_CUSTOM_MODELS_DIR``). Imported late: the registry pulls in scikit-learn."""
    from core.registry import ModelRegistry

    return ModelRegistry(settings.models_dir, extra=(settings.custom_models_dir,))
