"""Webhook delivery attempts: claimed and recorded by the worker, re-sent by the sweep, read by
the API and the metrics.

Each attempt is a ``webhook_deliveries`` row; a failed one schedules the next (exponential
backoff with jitter) until ``AER_WEBHOOK_MAX_ATTEMPTS``. Each function takes an open session
and never commits.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from api.store.settings import Settings
from api.store.states import DeliveryState
from api.store.tables import WebhookDelivery, utcnow

#: Largest page of delivery attempts :func:`attempts` returns.
MAX_PAGE = 500


@dataclass(frozen=True)
class Attempt:
    """What a worker needs to make one claimed attempt."""

    id: int
    delivery: str
    job_id: str | None
    event: str
    url: str
    body: bytes
    secret: str
    attempt: int


@dataclass(frozen=True)
class Outcome:
    """An attempt's state once recorded (None: its row is gone), and the next attempt's id and
    delay when there is one."""

    state: str | None
    next_id: int | None = None
    delay_s: float = 0.0


def retry_delay(settings: Settings, attempt: int, rand: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): the base doubled each time,
    capped, then "equal jitter" (between half and all of it), so receivers that come back are
    not hit by every sender at once."""
    nominal = min(settings.webhook_retry_max_s, settings.webhook_retry_base_s * 2 ** (attempt - 1))
    return nominal / 2 + (rand or random).uniform(0, nominal / 2)


def claim_attempt(session: Session, delivery_id: int, *, lease_s: float) -> Attempt | None:
    """pending -> sending for a due attempt (``due_at`` pushed back by ``lease_s``, so the sweep
    re-sends an attempt whose worker died); None when another worker has it or it is not due."""
    now = utcnow()
    result = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.state == DeliveryState.PENDING,
            WebhookDelivery.due_at <= now,
        )
        .values(
            state=DeliveryState.SENDING,
            attempted_at=now,
            due_at=now + timedelta(seconds=lease_s),
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return None
    row = session.get(WebhookDelivery, delivery_id)
    return Attempt(
        id=row.id,
        delivery=row.delivery,
        job_id=row.job_id,
        event=row.event,
        url=row.url,
        body=row.body.encode(),
        secret=row.secret,
        attempt=row.attempt,
    )


def record_outcome(
    session: Session,
    settings: Settings,
    delivery_id: int,
    *,
    status_code: int | None,
    error: str | None,
) -> Outcome:
    """Record an attempt's outcome (a 2xx ``status_code`` and no ``error``: delivered); after a
    failure, insert the next attempt unless it was the last."""
    row = session.get(WebhookDelivery, delivery_id)
    if row is None or row.state != DeliveryState.SENDING:
        # Deleted with its subscription, or recorded already.
        return Outcome(None if row is None else row.state)
    now = utcnow()
    row.status_code, row.error = status_code, error
    if error is None and status_code is not None and 200 <= status_code < 300:
        row.state = DeliveryState.DELIVERED
        return Outcome(row.state)
    if row.attempt >= settings.webhook_max_attempts:
        row.state = DeliveryState.GAVE_UP
        return Outcome(row.state)
    delay = retry_delay(settings, row.attempt)
    row.state = DeliveryState.FAILED
    row.next_retry_at = now + timedelta(seconds=delay)
    following = WebhookDelivery(
        delivery=row.delivery,
        webhook_id=row.webhook_id,
        job_id=row.job_id,
        event=row.event,
        url=row.url,
        body=row.body,
        secret=row.secret,
        attempt=row.attempt + 1,
        state=DeliveryState.PENDING,
        created_at=now,
        due_at=row.next_retry_at,
    )
    session.add(following)
    session.flush()
    return Outcome(row.state, following.id, delay)


def due_attempts(session: Session, *, grace_s: float = 0.0, limit: int = 1000) -> list[int]:
    """Attempts the sweep must (re-)enqueue: pending ones due ``grace_s`` ago or more (their
    message was lost, or they were too far off for a countdown), and ``sending`` ones whose
    worker died (lease expired; set back to pending)."""
    now = utcnow()
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.state == DeliveryState.SENDING, WebhookDelivery.due_at < now)
        .values(state=DeliveryState.PENDING, due_at=now)
        .execution_options(synchronize_session=False)
    )
    return list(
        session.scalars(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.state == DeliveryState.PENDING,
                WebhookDelivery.due_at <= now - timedelta(seconds=grace_s),
            )
            .order_by(WebhookDelivery.due_at)
            .limit(limit)
        )
    )


def attempts(
    session: Session,
    *,
    job_id: str | None = None,
    webhook_id: str | None = None,
    after_id: int | None = None,
    limit: int = 100,
) -> list[WebhookDelivery]:
    """One keyset page of attempts (oldest first) of a job's events or of a subscription."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
    stmt = select(WebhookDelivery)
    if job_id is not None:
        stmt = stmt.where(WebhookDelivery.job_id == job_id)
    if webhook_id is not None:
        stmt = stmt.where(WebhookDelivery.webhook_id == webhook_id)
    if after_id is not None:
        stmt = stmt.where(WebhookDelivery.id > after_id)
    return list(session.scalars(stmt.order_by(WebhookDelivery.id).limit(limit)))


def counts_by_state(session: Session) -> dict[str, int]:
    """Attempts in each state (the metrics)."""
    rows = session.execute(
        select(WebhookDelivery.state, func.count()).group_by(WebhookDelivery.state)
    ).all()
    return {state.value: 0 for state in DeliveryState} | dict(rows)
