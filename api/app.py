"""The Flask app factory: ``create_app(settings)`` (``gunicorn "api.app:create_app()"``)."""

from __future__ import annotations

from flask import Flask

from api import routes
from api.config import Settings, load_settings
from api.errors import register_error_handlers
from api.routes.uploads import UploadRequest


def create_app(settings: Settings | None = None) -> Flask:
    """Build the API app for ``settings`` (read from ``AER_*`` variables when None)."""
    settings = settings or load_settings()
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
    routes.init_app(app)
    return app
