"""What ``aer.deliver_webhook`` does: one signed POST of one attempt, recorded.

The receiver's host is resolved and checked again right before the POST (a name that pointed
outside at submission may point inside now), and the connection goes to the address just
checked. Redirects are not followed: a 3xx counts as a failed attempt.
"""

from __future__ import annotations

import http.client
import logging
import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from api.store import deliveries, webhooks
from api.store.db import session_scope
from api.store.logs import log_context
from api.store.receivers import ReceiverNotAllowedError, resolve_receiver
from api.store.settings import Settings

log = logging.getLogger(__name__)

#: ``enqueue(delivery_id, delay_s)``: send the next attempt (the task module's).
EnqueueAttempt = Callable[[int, float], None]
USER_AGENT = "AER-Webhooks/1"


def post(
    url: str, body: bytes, headers: dict[str, str], *, timeout: float, allow_private: bool
) -> int:
    """POST ``body`` to ``url`` through a freshly checked address; returns the HTTP status.

    Raises:
        ReceiverNotAllowedError: the host now resolves to a refused address.
        OSError: the connection failed or timed out.
    """
    scheme, host, port, address = resolve_receiver(url, allow_private=allow_private)
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
    connection = cls(host, port, timeout=timeout)
    # Connect to the checked address; TLS still verifies (and SNI still names) the host.
    connection._create_connection = lambda _addr, *args, **kw: socket.create_connection(
        (address, port), *args, **kw
    )
    try:
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        response.read(64 * 1024)  # a little of the answer, so the receiver sees a clean close
        return response.status
    finally:
        connection.close()


def run_delivery(settings: Settings, delivery_id: int, enqueue: EnqueueAttempt) -> str | None:
    """Make one attempt if it is due and unclaimed; returns its state afterwards, or None."""
    lease_s = settings.webhook_timeout_s * 2 + 30  # then the sweep takes it back
    with session_scope(settings) as session:
        attempt = deliveries.claim_attempt(session, delivery_id, lease_s=lease_s)
    if attempt is None:
        return None
    with log_context(job_id=attempt.job_id):
        status_code, error = _send(settings, attempt)
        with session_scope(settings) as session:
            outcome = deliveries.record_outcome(
                session, settings, delivery_id, status_code=status_code, error=error
            )
        where = f"webhook {attempt.delivery} attempt {attempt.attempt} ({attempt.event})"
        if error:
            log.warning("%s: %s", where, error)
        else:
            log.info("%s: HTTP %s", where, status_code)
    if outcome.next_id is not None:
        enqueue(outcome.next_id, outcome.delay_s)
    return outcome.state


def _send(settings: Settings, attempt: deliveries.Attempt) -> tuple[int | None, str | None]:
    """POST a signed attempt; returns its HTTP status (if any) and why it failed (if it did)."""
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        webhooks.EVENT_HEADER: attempt.event,
        webhooks.DELIVERY_HEADER: attempt.delivery,
        webhooks.TIMESTAMP_HEADER: str(timestamp),
        webhooks.SIGNATURE_HEADER: webhooks.sign(attempt.secret, timestamp, attempt.body),
    }
    try:
        status_code = post(
            attempt.url,
            attempt.body,
            headers,
            timeout=settings.webhook_timeout_s,
            allow_private=settings.webhook_allow_private,
        )
    except ReceiverNotAllowedError as exc:
        return None, f"refused: {exc}"
    except (OSError, http.client.HTTPException) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return status_code, None if 200 <= status_code < 300 else f"HTTP {status_code}"
