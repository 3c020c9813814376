"""Enqueue the webhook attempts a state change inserted (after its transaction committed)."""

from __future__ import annotations

from api.store.queue import enqueue_deliveries
from worker.celery_app import app


def send_deliveries(delivery_ids: list[int]) -> None:
    """Send ``aer.deliver_webhook`` for each committed attempt row (the sweep sends any that a
    broker outage kept back)."""
    if delivery_ids:
        enqueue_deliveries(app, delivery_ids)
