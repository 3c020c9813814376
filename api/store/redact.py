"""Server paths kept out of what clients see: error messages stored for jobs and files name the
file (as the job lists it), never the data directory, the upload folder or the models folder."""

from __future__ import annotations

import re

from api.store.settings import Settings


def without_paths(message: str, settings: Settings) -> str:
    """``message`` with the service's folders taken out.

    A path inside a job's upload folder (or its folder in the bucket) becomes the file's path
    in the job (``<uploads>/<job id>/a.zip/b.wav`` -> ``a.zip/b.wav``); one inside the models folder
    becomes the file name; anything else under the data directory becomes ``<data dir>/...``.
    """
    folders = [str(settings.uploads_dir)]
    folders += [f"{settings.storage_url}/uploads"] if settings.storage_url else []
    for uploads in folders:
        message = re.sub(re.escape(uploads) + r"/[0-9a-f]{32}/?", "", message)
    models = str(settings.models_dir)
    message = message.replace(models + "/", "").replace(models, "<models dir>")
    return message.replace(str(settings.data_dir), "<data dir>")
