"""Webhooks: subscriptions, the events of a job's end, signing, and the record of every
delivery attempt.

A job that ends (succeeded, completed with errors, failed, cancelled) gets one ``pending``
attempt row per receiver (its ``callback_url`` and each subscription to the event), inserted
in the transaction that changed its state; the caller enqueues ``aer.deliver_webhook`` for
those rows after the commit. The task claims a row, POSTs it and records the outcome here;
a failure schedules the next attempt with exponential backoff and jitter. Each function takes
an open session and never commits.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import secrets
import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from api.store.errors import StoreError
from api.store.settings import Settings
from api.store.states import DeliveryState, JobState
from api.store.tables import File, Job, Webhook, WebhookDelivery, utcnow

#: The events, by the job state that causes them.
JOB_EVENTS = {
    JobState.SUCCEEDED: "job.succeeded",
    JobState.COMPLETED_WITH_ERRORS: "job.completed_with_errors",
    JobState.FAILED: "job.failed",
    JobState.CANCELLED: "job.cancelled",
}
EVENTS = tuple(JOB_EVENTS.values())
#: Headers of every POST: the signature, the time it covers, the event and the delivery id.
SIGNATURE_HEADER = "X-AER-Signature"
TIMESTAMP_HEADER = "X-AER-Timestamp"
EVENT_HEADER = "X-AER-Event"
DELIVERY_HEADER = "X-AER-Delivery"
#: Largest page of delivery attempts the readers return.
MAX_PAGE = 500


class WebhookNotFoundError(StoreError, LookupError):
    """No subscription has that id."""

    code = "webhook_not_found"
    status = 404


def new_secret() -> str:
    """A fresh signing secret (shown once, to whoever subscribed or submitted the job)."""
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value: ``sha256=`` and the hex HMAC-SHA256, keyed by ``secret``,
    of ``b"<timestamp>." + body`` (see docs/webhooks.md)."""
    message = str(int(timestamp)).encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def retry_delay(settings: Settings, attempt: int, rand: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): the base doubled each time,
    capped, then "equal jitter" (between half and all of it), so receivers that come back are
    not hit by every sender at once."""
    nominal = min(settings.webhook_retry_max_s, settings.webhook_retry_base_s * 2 ** (attempt - 1))
    return nominal / 2 + (rand or random).uniform(0, nominal / 2)


# --- subscriptions -----------------------------------------------------------------------------


def create_webhook(session: Session, *, url: str, events: list[str]) -> Webhook:
    """Insert a subscription with a fresh secret (readable on the returned row only now)."""
    hook = Webhook(
        id=uuid.uuid4().hex, url=url, events=list(events), secret=new_secret(), created_at=utcnow()
    )
    session.add(hook)
    session.flush()
    return hook


def list_webhooks(session: Session) -> list[Webhook]:
    """Every subscription, oldest first."""
    return list(session.scalars(select(Webhook).order_by(Webhook.created_at, Webhook.id)))


def get_webhook(session: Session, webhook_id: str) -> Webhook:
    """The subscription ``webhook_id``; raises :class:`WebhookNotFoundError`."""
    hook = session.get(Webhook, webhook_id)
    if hook is None:
        raise WebhookNotFoundError(f"no webhook {webhook_id!r}")
    return hook


def delete_webhook(session: Session, webhook_id: str) -> None:
    """Delete a subscription and its delivery record (pending attempts are dropped with it)."""
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id))
    session.delete(get_webhook(session, webhook_id))
    session.flush()


# --- events ------------------------------------------------------------------------------------


def job_payload(session: Session, job: Job, event: str, now: datetime) -> dict:
    """The JSON body of a job event: the event, when, and the job with its file counts."""
    rows = session.execute(
        select(File.state, func.count()).where(File.job_id == job.id).group_by(File.state)
    ).all()
    counts = dict(rows)
    return {
        "event": event,
        "created_at": _iso(now),
        "job": {
            "id": job.id,
            "state": job.state,
            "model": {"name": job.model_name, "version": job.model_version},
            "counts": {
                "total": sum(counts.values()),
                **{state: counts.get(state, 0) for state in ("done", "failed")},
            },
            "error": job.error,
            "created_at": _iso(job.created_at),
            "started_at": _iso(job.started_at),
            "finished_at": _iso(job.finished_at),
        },
    }


def record_job_event(session: Session, job_id: str) -> list[int]:
    """Insert the first attempt of the event of the job's (terminal) state for each receiver;
    returns the new rows' ids, to enqueue once the transaction commits."""
    job = session.get(Job, job_id)
    if job is None:
        return []
    session.refresh(job)  # the state was just changed by an UPDATE statement
    event = JOB_EVENTS.get(JobState(job.state))
    if event is None:
        return []
    receivers: list[tuple[str | None, str, str]] = []
    if job.callback_url and job.callback_secret:
        receivers.append((None, job.callback_url, job.callback_secret))
    receivers += [(h.id, h.url, h.secret) for h in list_webhooks(session) if event in h.events]
    if not receivers:
        return []
    now = utcnow()
    body = json.dumps(job_payload(session, job, event, now), separators=(",", ":"))
    rows = [
        WebhookDelivery(
            delivery=uuid.uuid4().hex,
            webhook_id=webhook_id,
            job_id=job.id,
            event=event,
            url=url,
            body=body,
            secret=secret,
            attempt=1,
            state=DeliveryState.PENDING,
            created_at=now,
            due_at=now,
        )
        for webhook_id, url, secret in receivers
    ]
    session.add_all(rows)
    session.flush()
    return [row.id for row in rows]


# --- delivery (worker) -------------------------------------------------------------------------


def claim_attempt(session: Session, delivery_id: int, *, lease_s: float) -> WebhookDelivery | None:
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
    return session.get(WebhookDelivery, delivery_id)


def record_outcome(
    session: Session,
    settings: Settings,
    delivery_id: int,
    *,
    status_code: int | None,
    error: str | None,
) -> tuple[int, float] | None:
    """Record an attempt's outcome; after a failure, insert the next attempt (unless it was the
    last). Returns ``(next attempt's id, seconds until it is due)``, or None."""
    row = session.get(WebhookDelivery, delivery_id)
    if row is None or row.state != DeliveryState.SENDING:
        return None  # deleted with its subscription, or recorded already
    now = utcnow()
    row.status_code, row.error = status_code, error
    if error is None and status_code is not None and 200 <= status_code < 300:
        row.state = DeliveryState.DELIVERED
        return None
    if row.attempt >= settings.webhook_max_attempts:
        row.state = DeliveryState.GAVE_UP
        return None
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
    return following.id, delay


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


# --- the record (API) --------------------------------------------------------------------------


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


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")
