"""``/audit``: what the keys of a tenant did to its data, newest first (admins only)."""

from __future__ import annotations

from flask import Blueprint, request, url_for

from api.store import audit
from api.web.auth import tenant
from api.web.context import db
from api.web.schemas import AuditPage, AuditQuery
from api.web.serializers import iso
from api.web.spec import Response as Responses
from api.web.spec import endpoint, errors

bp = Blueprint("audit", __name__)


@bp.get("/audit")
@endpoint(
    query=AuditQuery,
    resp=Responses(HTTP_200=AuditPage, **errors(422)),
    tags=("audit",),
    scope="admin",
)
def list_events():
    """Who created, downloaded, relabelled, trained, cancelled and deleted what, and when: the
    caller's tenant (or ``tenant``), newest first, ``cursor`` for older ones."""
    query: AuditQuery = request.context.query
    rows, cursor = audit.events(
        db(),
        tenant_id=query.tenant or tenant(),
        before_id=query.cursor,
        limit=query.limit,
        action=query.action,
    )
    args = query.model_dump(exclude_none=True, mode="json")
    return {
        "items": [
            {
                "id": row.id,
                "at": iso(row.at),
                "tenant": row.tenant_id,
                "key_id": row.key_id,
                "key_prefix": row.key_prefix,
                "action": row.action,
                "target_kind": row.target_kind,
                "target_id": row.target_id,
                "detail": row.detail,
            }
            for row in rows
        ],
        "next_cursor": None if cursor is None else str(cursor),
        "links": {
            "next": None
            if cursor is None
            else url_for("audit.list_events", **(args | {"cursor": cursor})),
        },
    }
