"""The web dashboard: HTML pages rendered by the app itself at ``/`` (no JSON, no SQL).

Every page and form goes through the ``pages`` blueprint, so one hook guards them all:
:func:`guard` runs before each page request and sends a visitor without a login session to the
login page (``api.web.sessions``); templates put the session's CSRF token in every form and in
the ``X-CSRF-Token`` header of the scripts' API calls, which the JSON API accepts with the
session cookie. Pages reach jobs only through :mod:`api.web.pages.access`, which scopes them to
the login's tenant. They
read through the same store functions and rules as the JSON API, and the scripts in
``static/`` call the JSON API itself for uploads, live progress and label corrections.
"""

from __future__ import annotations

from flask import Blueprint, Flask, g, redirect, request, url_for

from api.web.auth import SCOPE_ATTR, SESSION
from api.web.errors import APIError
from api.web.sessions import check_csrf, current_user
from api.web.sessions import csrf_token as session_csrf_token

_UNSAFE = ("POST", "PUT", "PATCH", "DELETE")

bp = Blueprint(
    "pages",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/ui/static",
)


def guard():
    """Run before every page request (pages, their forms, the call audio): a visitor without a
    login goes to the login page; forms need the ``submit`` scope and the session's CSRF token.
    The static files (style and script, no data) are served to anyone."""
    if request.endpoint == "pages.static":
        return None
    user = current_user()
    if user is None:
        return redirect(url_for("sessions.login", next=request.full_path))
    if request.method in _UNSAFE:
        if not user.can("submit"):
            raise APIError("this login lacks the 'submit' scope", status=403)
        check_csrf()
    g.aer_principal = user  # the pages act for the login's key, tenant included
    return None


def csrf_token() -> str:
    """The CSRF token every form carries (hidden field ``csrf_token``) and every script call
    sends (header ``X-CSRF-Token``, from ``<meta name="csrf-token">``): the session's."""
    return session_csrf_token()


@bp.before_request
def _before_page():
    return guard()


def init_app(app: Flask) -> None:
    """Register the pages, their error pages and their template globals on ``app``."""
    app.jinja_env.globals.setdefault("csrf_token", csrf_token)  # a login's own token wins
    app.add_template_global(charts.colour, "colour")
    app.add_template_filter(display.duration, "duration")
    app.add_template_filter(display.filesize, "filesize")
    app.register_blueprint(bp)
    for endpoint, view in app.view_functions.items():
        if endpoint.startswith("pages.") and endpoint != "pages.static":
            setattr(view, SCOPE_ATTR, SESSION)  # the login session, not a key, guards them
    errors.init_app(app)


# The page modules add their routes to bp.
from api.web.pages import access, calls, charts, display, errors, jobs, models  # noqa: E402, F401
