"""Models loaded once per worker process, keyed by model name and version.

A name (or ``"default"``) is resolved on every chunk, which only reads a small JSON file, so a
new default or a retrained model is picked up without restarting workers.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from api.store.models import registry
from api.store.settings import Settings
from core.artifacts import load_model, read_metadata
from core.model import EmotionModel

log = logging.getLogger(__name__)

#: How many models one worker process keeps loaded.
MAX_LOADED = 4

_loaded: OrderedDict[tuple[str, str], EmotionModel] = OrderedDict()


def get_model(settings: Settings, name: str, tenant_id: str | None = None) -> EmotionModel:
    """The model ``name`` as ``tenant_id`` sees the registry (its custom models included),
    loaded on first use in this process.

    Raises:
        ModelError: the model does not exist or cannot be loaded.
    """
    path = registry(settings, tenant_id).resolve(name)
    meta = read_metadata(path)
    key = (str(path), str(meta.get("version")))
    model = _loaded.get(key)
    if model is None:
        log.info("loading model %s version %s from %s", meta.get("name"), key[1], path)
        model = _loaded[key] = load_model(path)
        while len(_loaded) > MAX_LOADED:
            _loaded.popitem(last=False)
    _loaded.move_to_end(key)
    return model
