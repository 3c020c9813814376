"""The one Celery app of AER: ``celery -A worker.celery_app worker [-B]``.

The app is configured lazily, from :func:`api.store.settings.load_settings`, the first time
Celery reads its configuration, so importing this module reads no settings and opens no
connection. Workers are therefore configured by ``AER_*`` environment variables, like the rest
of the service.

Delivery is at-least-once: tasks are acknowledged after they finish, a message whose worker
died goes back to the queue, and the database (not a result backend) records what was done.
"""

from __future__ import annotations

from celery import Celery, platforms, signals

from api.store.db import dispose_engines
from api.store.logs import configure_logging
from api.store.queue import CHUNK_QUEUE, CONTROL_QUEUE, QUEUES, celery_config, create_celery
from api.store.settings import load_settings

__all__ = ["CHUNK_QUEUE", "CONTROL_QUEUE", "QUEUES", "app", "celery_config", "create_celery"]

app = Celery("aer", include=["worker.tasks"])


@app.on_configure.connect
def _configure(sender: Celery, **_kwargs) -> None:
    sender.conf.update(celery_config(load_settings()))


@signals.setup_logging.connect
def _setup_logging(**_kwargs) -> None:
    # Connected, so Celery leaves the root logger to AER's one configuration.
    configure_logging(load_settings())


@signals.celeryd_init.connect
def _worker_starting(**_kwargs) -> None:
    # The data directory holds the schedule file of an embedded beat (``worker -B``).
    load_settings().data_dir.mkdir(parents=True, exist_ok=True)


@signals.worker_process_init.connect
def _after_fork(**_kwargs) -> None:
    # Connections pooled before the fork belong to the parent process.
    dispose_engines()


@signals.beat_embedded_init.connect
def _beat_dies_with_worker(**_kwargs) -> None:
    # The pool processes get SIGKILL when the worker dies (Celery sets it); the embedded beat
    # (``worker -B``) does not, and would run on alone after a ``kill -9`` of the worker.
    platforms.set_pdeathsig("SIGKILL")
