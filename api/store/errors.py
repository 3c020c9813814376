"""Errors of the store. Each carries the HTTP ``status`` the API answers it with and a stable
``code``, so the web layer maps them without knowing each one."""

from __future__ import annotations

from core.errors import AERError


class StoreError(AERError):
    """Root of the store's errors."""

    code = "store_error"
    status = 500
