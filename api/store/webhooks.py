"""Webhooks: subscriptions, signing, and the events of jobs.

A job that ends (succeeded, completed with errors, failed, cancelled), or passes a multiple of
a receiver's ``progress_every``, gets one ``pending`` attempt row per receiver (its
``callback_url`` and each subscription to the event), inserted in the transaction that changed
it; the caller enqueues ``aer.deliver_webhook`` for those rows after the commit. What happens to
an attempt then is :mod:`api.store.deliveries`. Each function takes an open session and never
commits.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from api.store.db import insert_new
from api.store.errors import StoreError
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


# --- subscriptions -----------------------------------------------------------------------------


def create_webhook(
    session: Session,
    *,
    tenant_id: str,
    url: str,
    events: list[str],
    progress_every: int | None = None,
) -> Webhook:
    """Insert a subscription of ``tenant_id`` (its jobs' events) with a fresh secret (readable
    on the returned row only now).

    ``progress_every`` (for ``job.progress``; default :data:`DEFAULT_PROGRESS_EVERY`): how many
    finished files between two progress events.
    """
    if PROGRESS_EVENT in events:
        progress_every = progress_every or DEFAULT_PROGRESS_EVERY
    else:
        progress_every = None
    hook = Webhook(
        id=uuid.uuid4().hex,
        tenant_id=tenant_id,
        url=url,
        events=list(events),
        secret=new_secret(),
        progress_every=progress_every,
        created_at=utcnow(),
    )
    session.add(hook)
    session.flush()
    return hook


def list_webhooks(session: Session, *, tenant_id: str) -> list[Webhook]:
    """The tenant's subscriptions, oldest first."""
    stmt = select(Webhook).where(Webhook.tenant_id == tenant_id)
    return list(session.scalars(stmt.order_by(Webhook.created_at, Webhook.id)))


def get_webhook(session: Session, webhook_id: str, *, tenant_id: str) -> Webhook:
    """The tenant's subscription ``webhook_id``; raises :class:`WebhookNotFoundError` (also
    for another tenant's)."""
    hook = session.get(Webhook, webhook_id)
    if hook is None or hook.tenant_id != tenant_id:
        raise WebhookNotFoundError(f"no webhook {webhook_id!r}")
    return hook


def delete_webhook(session: Session, webhook_id: str, *, tenant_id: str) -> None:
    """Delete a subscription and its delivery record (pending attempts are dropped with it)."""
    hook = get_webhook(session, webhook_id, tenant_id=tenant_id)
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id))
    session.delete(hook)
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
        for h in list_webhooks(session, tenant_id=job.tenant_id)
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
    return insert_new(session, WebhookDelivery, rows, ["delivery", "attempt"])


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
    hooks = list_webhooks(session, tenant_id=job.tenant_id)
    receivers += [(h.id, h.url, h.secret) for h in hooks if event in h.events]
    if not receivers:
        return []
    body = json.dumps(job_payload(session, job, event, utcnow()), separators=(",", ":"))
    rows = [
        _first_attempt(uuid.uuid4().hex, webhook_id, job, event, url, body, secret)
        for webhook_id, url, secret in receivers
    ]
    return _insert_new(session, rows)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")
