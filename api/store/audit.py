"""The audit log: one row per thing a key did to a tenant's data, readable by admins.

Views record what they did with :func:`record` in the same transaction as the change, so an
action that is rolled back leaves no row, and one that is committed always has one.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.store.keys import Principal
from api.store.tables import AuditEvent, utcnow

#: What the log records.
ACTIONS = (
    "job.create",
    "job.cancel",
    "job.delete",
    "results.download",
    "results.export",
    "label.set",
    "label.clear",
    "model.train",
    "key.create",
    "key.revoke",
    "webhook.create",
    "webhook.delete",
)


def record(
    session: Session,
    who: Principal | None,
    action: str,
    target_kind: str,
    target_id: str | int,
    *,
    tenant_id: str | None = None,
    **detail,
) -> AuditEvent:
    """Add an event: ``who`` (None: the service itself) did ``action`` to a target."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    event = AuditEvent(
        at=utcnow(),
        tenant_id=tenant_id or (who.tenant_id if who else "default"),
        key_id=who.key_id if who else None,
        key_prefix=who.prefix if who else None,
        action=action,
        target_kind=target_kind,
        target_id=str(target_id),
        detail=detail or None,
    )
    session.add(event)
    return event


def events(
    session: Session,
    *,
    tenant_id: str | None,
    before_id: int | None = None,
    limit: int = 100,
    action: str | None = None,
) -> tuple[list[AuditEvent], int | None]:
    """Events newest first (of one tenant, or all with None); returns (events, next cursor)."""
    stmt = select(AuditEvent)
    if tenant_id is not None:
        stmt = stmt.where(AuditEvent.tenant_id == tenant_id)
    if action is not None:
        stmt = stmt.where(AuditEvent.action == action)
    if before_id is not None:
        stmt = stmt.where(AuditEvent.id < before_id)
    rows = list(session.scalars(stmt.order_by(AuditEvent.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more else None)
