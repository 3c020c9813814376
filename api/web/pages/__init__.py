"""The web dashboard: HTML pages rendered by the app itself at ``/`` (no JSON, no SQL).

Every page and form goes through the ``pages`` blueprint, so one hook guards them all:
:func:`guard` runs before each page request (today it lets everyone in; point it at the login
check to require a session), and templates put :func:`csrf_token` in every form and in the
``X-CSRF-Token`` header of the scripts' API calls (today a stub that returns an empty string).
Pages reach jobs only through :mod:`api.web.pages.access` (the one place for tenancy). They
read through the same store functions and rules as the JSON API, and the scripts in
``static/`` call the JSON API itself for uploads, live progress and label corrections.
"""

from __future__ import annotations

from flask import Blueprint, Flask

bp = Blueprint(
    "pages",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/ui/static",
)


def guard():
    """Run before every page request (pages, their forms, the call audio, the static files);
    return a response to refuse it (e.g. a redirect to the login page), None to let it through.

    Today there is no authentication and everyone passes. Wiring login in: make this call the
    session check (and let the login page itself through).
    """
    return None


def csrf_token() -> str:
    """The CSRF token every form carries (hidden field ``csrf_token``) and every script call
    sends (header ``X-CSRF-Token``, from ``<meta name="csrf-token">``).

    A stub (empty) until login exists: then return the session's token, and check it on the
    pages' POSTs (cancel, delete) and on cookie-authenticated API calls.
    """
    return ""


@bp.before_request
def _before_page():
    return guard()


def init_app(app: Flask) -> None:
    """Register the pages, their error pages and their template globals on ``app``."""
    app.jinja_env.globals.setdefault("csrf_token", csrf_token)  # a login's own token wins
    app.add_template_global(charts.colour, "colour")
    app.add_template_filter(display.duration, "duration")
    app.register_blueprint(bp)
    errors.init_app(app)


# The page modules add their routes to bp.
from api.web.pages import access, calls, charts, display, errors, jobs, models  # noqa: E402, F401
