"""The model registry the service uses: the shipped models, then the tenant's custom ones.

Custom models live in the storage folder ``models/<tenant>`` (:mod:`api.store.storage`):
locally that is ``AER_CUSTOM_MODELS_DIR/<tenant>`` itself; with a bucket, each process keeps a
private copy in ``<data dir>/cache/models/<tenant>``, brought up to date (changed objects only)
whenever the tenant's registry is built, and :func:`publish` stores a freshly trained model.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from api.store.settings import Settings
from api.store.storage import Storage, open_storage

if TYPE_CHECKING:
    from core.registry import ModelRegistry

#: Storage folder of every tenant's custom models.
MODELS = "models"


def model_key(tenant_id: str) -> str:
    """The storage folder of the custom models of ``tenant_id``."""
    return f"{MODELS}/{tenant_id}"


def custom_dir(settings: Settings, tenant_id: str) -> Path:
    """The local folder of the custom models of ``tenant_id``: ``AER_CUSTOM_MODELS_DIR/<tenant>``,
    or with a bucket this process's copy of them (see :func:`sync`)."""
    if settings.storage_url:
        return settings.data_dir / "cache" / MODELS / tenant_id
    return settings.custom_models_dir / tenant_id


def sync(settings: Settings, tenant_id: str) -> Path:
    """:func:`custom_dir` of ``tenant_id``, first made to match the bucket: objects whose size
    or time differs are downloaded (each to a temporary file, then renamed: a reader never sees
    half a file), files gone from the bucket are removed; artifacts' JSON come last, so that a
    model is never listed before its ``.skops``."""
    folder = custom_dir(settings, tenant_id)
    storage = open_storage(settings)
    if storage.local:
        return folder
    head = len(model_key(tenant_id)) + 1
    stored = {info.key[head:]: info for info in storage.list(model_key(tenant_id))}
    stored = {rel: info for rel, info in stored.items() if _safe(rel)}
    for rel in sorted(stored, key=lambda r: (r.endswith(".json"), r)):
        info, path = stored[rel], folder / rel
        stamp = info.modified.timestamp()
        try:
            st = path.stat()
            if st.st_size == info.size and st.st_mtime == stamp:
                continue
        except FileNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=".sync-", suffix=".tmp")
        os.close(fd)
        try:
            storage.download(info.key, Path(name))
            os.utime(name, (stamp, stamp))
            os.replace(name, path)
        finally:
            Path(name).unlink(missing_ok=True)
    for path in folder.rglob("*") if folder.is_dir() else ():
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel not in stored and not path.name.startswith(".sync-"):
            path.unlink(missing_ok=True)
    return folder


def _safe(rel: str) -> bool:
    parts = PurePosixPath(rel).parts
    return bool(parts) and not any(p in ("..", ".") or p.startswith(".") for p in parts)


def publish(settings: Settings, tenant_id: str, folder: Path) -> None:
    """Store the files a training wrote in ``folder`` as custom models of ``tenant_id`` (the
    ``.json`` of an artifact last: its arrival is what lists the model); ``folder`` is emptied.
    Locally nothing moves: trainings write into :func:`custom_dir` itself."""
    storage: Storage = open_storage(settings)
    if storage.local:
        return
    files = sorted(
        (p for p in folder.rglob("*") if p.is_file()), key=lambda p: (p.suffix == ".json", p)
    )
    for path in files:
        storage.put_file(f"{model_key(tenant_id)}/{path.relative_to(folder).as_posix()}", path)


def stored_names(settings: Settings, tenant_id: str) -> set[str]:
    """Names of the custom models of ``tenant_id`` in the storage (an artifact's stem)."""
    storage = open_storage(settings)
    head = len(model_key(tenant_id)) + 1
    return {
        PurePosixPath(info.key[head:]).stem
        for info in storage.list(model_key(tenant_id))
        if "/" not in info.key[head:] and info.key.endswith((".json", ".skops"))
    }


def registry(settings: Settings, tenant_id: str | None = None) -> ModelRegistry:
    """Models of ``AER_MODELS_DIR``, then the custom models of ``tenant_id`` (none without a
    tenant): a tenant sees its own custom models only. Imported late: the registry pulls in
    scikit-learn."""
    from core.registry import ModelRegistry

    extra = () if tenant_id is None else (sync(settings, tenant_id),)
    return ModelRegistry(settings.models_dir, extra=extra)
