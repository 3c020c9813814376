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
from api.store.states import DeliveryState, FileState, JobState
from api.store.tables import File, Job, Webhook, WebhookDelivery, utcnow

#: The events, by the job state that causes them.
JOB_EVENTS = {
    JobState.SUCCEEDED: "job.succeeded",
    JobState.COMPLETED_WITH_ERRORS: "job.completed_with_errors",
    JobState.FAILED: "job.failed",
    JobState.CANCELLED: "job.cancelled",
}
#: Sent every ``progress_every`` finished files of a running job (to receivers that ask).
PROGRESS_EVENT = "job.progress"
#: What a subscription gets when it names no events: every job's end.
END_EVENTS = tuple(JOB_EVENTS.values())
EVENTS = (*END_EVENTS, PROGRESS_EVENT)
#: ``progress_every`` of a subscription to ``job.progress`` that gives none.
DEFAULT_PROGRESS_EVERY = 100
#: The job option that asks its callback for progress events.
PROGRESS_OPTION = "callback_progress_every"
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


def create_webhook(
    session: Session, *, url: str, events: list[str], progress_every: int | None = None
) -> Webhook:
    """Insert a subscription with a fresh secret (readable on the returned row only now).

    ``progress_every`` (for ``job.progress``; default :data:`DEFAULT_PROGRESS_EVERY`): how many
    finished files between two progress events.
    """
    if PROGRESS_EVENT in events:
        progress_every = progress_every or DEFAULT_PROGRESS_EVERY
    else:
        progress_every = None
    hook = Webhook(
        id=uuid.uuid4().hex,
        url=url,
        events=list(events),
        secret=new_secret(),
        progress_every=progress_every,
        created_at=utcnow(),
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


def _first_attempt(
    delivery: str, webhook_id: str | None, job: Job, event: str, url: str, body: str, secret: str
) -> dict:
    now = utcnow()
    return {
        "delivery": delivery,
        "webhook_id": webhook_id,
        "job_id": job.id,
        "event": event,
        "url": url,
        "body": body,
        "secret": secret,
        "attempt": 1,
        "state": DeliveryState.PENDING.value,
        "created_at": now,
        "due_at": now,
    }


def record_progress(session: Session, job_id: str) -> list[int]:
    """Insert a ``job.progress`` attempt for each receiver that asked for one every N files and
    whose next multiple of N the job's finished files reached; returns the new rows' ids.

    The delivery id is derived from (job, receiver, multiple), so concurrent chunks crossing the
    same multiple insert it once; a chunk that jumps several multiples sends the last one.
    """
    job = session.get(Job, job_id)
    if job is None:
        return []
    receivers: list[tuple[str | None, str, str, int]] = []
    every = (job.options or {}).get(PROGRESS_OPTION)
    if job.callback_url and job.callback_secret and every:
        receivers.append((None, job.callback_url, job.callback_secret, int(every)))
    receivers += [
        (h.id, h.url, h.secret, h.progress_every)
        for h in list_webhooks(session)
        if PROGRESS_EVENT in h.events and h.progress_every
    ]
    if not receivers:
        return []
    finished = session.scalar(
        select(func.count()).where(
            File.job_id == job_id, File.state.in_((FileState.DONE, FileState.FAILED))
        )
    )
    rows = []
    body = None
    for webhook_id, url, secret, n in receivers:
        mark = (finished or 0) // n
        if mark == 0:
            continue
        if body is None:
            payload = job_payload(session, job, PROGRESS_EVENT, utcnow())
            body = json.dumps(payload, separators=(",", ":"))
        key = uuid.uuid5(uuid.NAMESPACE_URL, f"aer:{job_id}:{webhook_id}:{n}:{mark}").hex
        rows.append(_first_attempt(key, webhook_id, job, PROGRESS_EVENT, url, body, secret))
    return _insert_new(session, rows)


def _insert_new(session: Session, rows: list[dict]) -> list[int]:
    """Insert attempt rows whose (delivery, attempt) is new; returns the ids inserted."""
    if not rows:
        return []
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(WebhookDelivery).on_conflict_do_nothing(index_elements=["delivery", "attempt"])
    return list(session.scalars(stmt.returning(WebhookDelivery.id), rows).all())


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
    body = json.dumps(job_payload(session, job, event, utcnow()), separators=(",", ":"))
    rows = [
        _first_attempt(uuid.uuid4().hex, webhook_id, job, event, url, body, secret)
        for webhook_id, url, secret in receivers
    ]
    return _insert_new(session, rows)


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
