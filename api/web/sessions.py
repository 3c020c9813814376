"""Logging in to the web pages: an API key is given once to ``POST /login``, then a signed
session cookie (HttpOnly, SameSite=Lax, Secure over https) carries the login.

The session holds the key's id, never the key: each page load checks that the key is still
usable, so revoking a key ends its sessions. Form posts carry a CSRF token kept in the session
(:func:`csrf_token` for templates; :func:`login_required` checks it on every unsafe method).
The cookie is signed with ``AER_SECRET_KEY``, or a key generated once into the data folder.
"""

from __future__ import annotations

import functools
import hmac
import os
import secrets
from collections.abc import Callable
from datetime import timedelta
from html import escape
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, g, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface

from api.store import keys
from api.store.keys import Principal
from api.store.settings import Settings
from api.web.auth import PUBLIC, SESSION, requires
from api.web.context import db
from api.web.errors import APIError

bp = Blueprint("sessions", __name__)
#: File of the data folder holding the generated session secret when AER_SECRET_KEY is unset.
SECRET_FILE = "secret_key"
SESSION_LIFETIME = timedelta(hours=12)
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def secret_key(settings: Settings) -> str:
    """``AER_SECRET_KEY``, else the one in ``<data dir>/secret_key`` (created, mode 0600)."""
    if settings.secret_key:
        return settings.secret_key
    path = settings.data_dir / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # several API processes may start at once: the first one writes it
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_secret(path)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(48))
    return _read_secret(path)


def _read_secret(path: Path) -> str:
    text = path.read_text().strip()
    if len(text) < 32:
        raise RuntimeError(f"{path} holds no usable secret; delete it to generate a new one")
    return text


class _SessionInterface(SecureCookieSessionInterface):
    """Secure cookies when ``AER_COOKIE_SECURE`` says so or, unset, when the request is https."""

    def get_cookie_secure(self, app: Flask) -> bool:
        configured = app.config["AER_SETTINGS"].cookie_secure
        return request.is_secure if configured is None else configured


def csrf_token() -> str:
    """The session's CSRF token (created on first use), for forms of the web pages."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def check_csrf() -> None:
    """Raise a 400 unless the form's ``csrf_token`` matches the session's."""
    sent = request.form.get("csrf_token", "")
    expected = session.get("csrf", "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise APIError("the form's CSRF token is missing or stale; reload the page", status=400)


def current_user() -> Principal | None:
    """The principal of the logged-in session, or None (also when its key stopped working)."""
    if "aer_user" in g:
        return g.aer_user
    key_id = session.get("key_id")
    user = keys.principal_of(db(), key_id) if isinstance(key_id, int) else None
    g.aer_user = user
    return user


def login_required(scope: str = "read") -> Callable[[Callable], Callable]:
    """Decorate a web page: logged-in users whose key holds ``scope`` only (others are sent to
    the login page, or get a 403), with the CSRF check on every unsafe method."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def page(*args: Any, **kwargs: Any) -> Any:
            user = current_user()
            if user is None:
                return redirect(url_for("sessions.login", next=request.full_path))
            if not user.can(scope):
                raise APIError(f"this login lacks the {scope!r} scope", status=403)
            if request.method in _UNSAFE:
                check_csrf()
            return view(*args, **kwargs)

        return requires(SESSION)(page)

    return decorate


_FORM = """<!doctype html><html lang="en"><meta charset="utf-8"><title>AER: log in</title>
<h1>AER</h1>{error}<form method="post" action="{action}">
<input type="hidden" name="csrf_token" value="{token}">
<input type="hidden" name="next" value="{next}">
<label>API key <input type="password" name="key" autocomplete="off" required></label>
<button type="submit">Log in</button></form></html>"""


def _form(error: str = "", status: int = 200) -> tuple[str, int, dict[str, str]]:
    html = _FORM.format(
        error=f"<p role=alert>{escape(error)}</p>" if error else "",
        action=escape(url_for("sessions.login")),
        token=escape(csrf_token()),
        next=escape(_safe_next(request.values.get("next"))),
    )
    return html, status, {"Content-Type": "text/html; charset=utf-8"}


def _safe_next(target: str | None) -> str:
    # Only a path of this site: no scheme, no host, no protocol-relative //host.
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"


@bp.get("/login")
@requires(PUBLIC)
def login_page():
    """The login form."""
    return _form()


@bp.post("/login")
@requires(PUBLIC)
def login():
    """Log in with an API key (form fields ``key``, ``csrf_token``, optional ``next``)."""
    check_csrf()
    principal = keys.authenticate(db(), request.form.get("key", "").strip())
    if principal is None:
        return _form("That key is unknown, revoked or expired.", 401)
    session.clear()  # a fresh session (and CSRF token) for the new login
    session.permanent = True
    session["key_id"] = principal.key_id
    csrf_token()
    return redirect(_safe_next(request.form.get("next")), code=303)


@bp.post("/logout")
@requires(SESSION)
def logout():
    """End the session (form field ``csrf_token``)."""
    check_csrf()
    session.clear()
    return redirect(url_for("sessions.login"), code=303)


def init_app(app: Flask) -> None:
    """Sign ``app``'s session cookies and register the login routes."""
    app.secret_key = secret_key(app.config["AER_SETTINGS"])
    app.session_interface = _SessionInterface()
    app.config.update(
        SESSION_COOKIE_NAME="aer_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
    )
    app.jinja_env.globals["csrf_token"] = csrf_token  # {{ csrf_token() }} in page forms
    app.register_blueprint(bp)


__all__ = ["check_csrf", "csrf_token", "current_user", "login_required", "secret_key"]
