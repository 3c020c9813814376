"""The Flask app factory: ``create_app(settings)`` (``gunicorn "api.web.app:create_app()"``)."""

from __future__ import annotations

from flask import Flask

from api.store.logs import configure_logging
from api.store.settings import Settings, load_settings
from api.web import (
    audit,
    auth,
    context,
    exports,
    jobs,
    keys,
    labels,
    metrics,
    models,
    pages,
    results,
    segments,
    sessions,
    system,
    tracing,
)
from api.web import webhooks as webhook_routes
from api.web.errors import register_error_handlers
from api.web.uploads import UploadRequest

#: Every path of the JSON API starts with this.
API_PREFIX = "/api/v1"
BLUEPRINTS = (
    jobs.bp,
    results.bp,
    exports.bp,
    segments.bp,
    labels.bp,
    models.bp,
    keys.bp,
    audit.bp,
    webhook_routes.bp,
    system.bp,
)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the API app for ``settings``.

    Without ``settings`` (gunicorn's ``create_app()``), they are read from the ``AER_*``
    variables and the process's logging is configured from them too; a caller that passes
    settings (tests, ``aer serve``) configures logging itself.
    """
    if settings is None:
        settings = load_settings()
        configure_logging(settings)
    app = Flask("aer")
    app.request_class = UploadRequest  # uploads are spooled to disk next to their destination
    app.config.update(
        AER_SETTINGS=settings,
        AER_UPLOAD_DIR=str(settings.uploads_dir),
        MAX_CONTENT_LENGTH=settings.max_upload_mb * 1024 * 1024,
        # Many files in one upload: werkzeug's default of 1000 parts would refuse large batches.
        MAX_FORM_PARTS=settings.max_files_per_job + 16,
    )
    app.json.sort_keys = False
    register_error_handlers(app)
    context.init_app(app)
    tracing.init_app(app)  # first: the request id is set before anything logs
    auth.init_app(app)
    sessions.init_app(app)  # the web pages' login, at the root
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint, url_prefix=API_PREFIX)
    pages.init_app(app)  # the dashboard at /
    app.register_blueprint(metrics.bp)
    return app
