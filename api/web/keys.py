"""``/keys``: create, list and revoke API keys (``admin`` scope). A new key's secret is in the
creation answer only; the database holds its hash."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, Response, request

from api.store import audit, keys
from api.store.tables import utcnow
from api.web.auth import principal, tenant
from api.web.context import db
from api.web.schemas import KeyCreated, KeyCreateRequest, KeyList, KeyListQuery
from api.web.serializers import key_json
from api.web.spec import Response as Responses
from api.web.spec import endpoint, errors

bp = Blueprint("keys", __name__)


@bp.post("/keys")
@endpoint(
    json=KeyCreateRequest,
    resp=Responses(HTTP_201=KeyCreated, **errors(400, 422)),
    tags=("keys",),
    scope="admin",
)
def create_key():
    """A new key for the caller's tenant (or ``tenant``, created when new); 201 with the key,
    shown this once."""
    body: KeyCreateRequest = request.context.json
    days = body.expires_in_days
    row, key = keys.create_key(
        db(),
        tenant_id=body.tenant or tenant(),
        name=body.name,
        scopes=body.scopes,
        expires_at=utcnow() + timedelta(days=days) if days else None,
    )
    db().flush()
    audit.record(db(), principal(), "key.create", "key", row.id, tenant_id=row.tenant_id)
    return {**key_json(row), "key": key}, 201


@bp.get("/keys")
@endpoint(
    query=KeyListQuery,
    resp=Responses(HTTP_200=KeyList, **errors(422)),
    tags=("keys",),
    scope="admin",
)
def list_keys():
    """Every key (of every tenant, or of ``tenant``), revoked ones included; no secrets."""
    query: KeyListQuery = request.context.query
    return {"items": [key_json(row) for row in keys.list_keys(db(), tenant_id=query.tenant)]}


@bp.delete("/keys/<int:key_id>")
@endpoint(resp=Responses("HTTP_204", **errors(404)), tags=("keys",), scope="admin")
def revoke_key(key_id: int):
    """Revoke a key: it stops working at once (its row stays, for the record)."""
    keys.revoke_key(db(), key_id)
    audit.record(db(), principal(), "key.revoke", "key", key_id)
    return Response(status=204)
