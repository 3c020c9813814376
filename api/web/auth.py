"""Who a request acts for: ``Authorization: Bearer <key>`` on every route, checked before the
view runs, and the scope each view needs.

A view states its scope with ``endpoint(scope=...)`` (or :func:`requires`); a view that states
none needs ``admin``, so a new route is closed until someone opens it. :data:`PUBLIC` views
take no key; :data:`SESSION` views (web pages) check the login session themselves
(:mod:`api.web.sessions`). A missing, malformed, unknown, revoked or expired key is a 401 with
``WWW-Authenticate: Bearer``; a key without the scope is a 403.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import Flask, current_app, g, request

from api.store import keys
from api.store.keys import Principal
from api.web.context import db
from api.web.errors import APIError

#: Attribute of a view function naming the scope it needs.
SCOPE_ATTR = "aer_scope"
#: Scope of views anyone may call (health, the OpenAPI document, the login page).
PUBLIC = "public"
#: Scope of web pages that check the login session instead of a key.
SESSION = "session"
#: Scope of a view that states none.
DEFAULT_SCOPE = "admin"
#: Flask's own endpoints that are public.
_PUBLIC_ENDPOINTS = frozenset({"static"})

F = TypeVar("F", bound=Callable)


def requires(scope: str) -> Callable[[F], F]:
    """Mark a view as needing ``scope`` (one of :data:`api.store.keys.SCOPES`, :data:`PUBLIC`
    or :data:`SESSION`)."""

    def mark(view: F) -> F:
        setattr(view, SCOPE_ATTR, scope)
        return view

    return mark


def view_scope(app: Flask, endpoint: str) -> str:
    """The scope the view of ``endpoint`` needs."""
    if endpoint in _PUBLIC_ENDPOINTS:
        return PUBLIC
    return getattr(app.view_functions[endpoint], SCOPE_ATTR, DEFAULT_SCOPE)


def principal() -> Principal:
    """The authenticated principal of the request (only inside a key-checked view)."""
    return g.aer_principal


def tenant() -> str:
    """The tenant of the request's key."""
    return principal().tenant_id


def require(scope: str) -> None:
    """Raise the 403 unless the request's key holds ``scope`` (for checks inside a view)."""
    if not principal().can(scope):
        raise APIError(
            f"this API key lacks the {scope!r} scope", status=403, details={"scope": scope}
        )


def unauthorized(message: str) -> APIError:
    """The 401 answered without a usable key."""
    return APIError(message, status=401, headers={"WWW-Authenticate": 'Bearer realm="aer"'})


def _authenticate() -> None:
    if request.endpoint is None:  # no route: routing answers 404 or 405
        return
    scope = view_scope(current_app, request.endpoint)
    if scope in (PUBLIC, SESSION):
        return
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise unauthorized("send an API key: 'Authorization: Bearer <key>'")
    found = keys.authenticate(db(), key.strip())
    if found is None:
        raise unauthorized("the API key is unknown, revoked or expired")
    g.aer_principal = found
    require(scope)


def init_app(app: Flask) -> None:
    """Check the key and scope of every request to ``app`` before its view runs."""
    app.before_request(_authenticate)
