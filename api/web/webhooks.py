"""``/webhooks``: subscribe to job events, list and delete subscriptions, and read the record of
delivery attempts (of a subscription, or of a job's events).

Subscriptions belong to the tenant of the key that made them and get that tenant's jobs' events
only; another tenant's subscription reads as no subscription. Subscribing and unsubscribing
need ``admin`` (a subscription receives every job of the tenant), reading needs ``read``."""

from __future__ import annotations

from flask import Blueprint, Response, request, url_for

from api.store import audit, deliveries, jobs, webhooks
from api.store.receivers import check_receiver
from api.web.auth import principal, tenant
from api.web.context import db, settings
from api.web.schemas import DeliveryPage, DeliveryQuery, WebhookList, WebhookRequest
from api.web.schemas import Webhook as WebhookModel
from api.web.serializers import delivery_json, webhook_json
from api.web.spec import Response as Responses
from api.web.spec import endpoint, errors

bp = Blueprint("webhooks", __name__)


@bp.post("/webhooks")
@endpoint(
    json=WebhookRequest,
    resp=Responses(HTTP_201=WebhookModel, **errors(400, 413, 415, 422)),
    tags=("webhooks",),
    scope="admin",
)
def create_webhook():
    """Subscribe ``url`` to ``events``: 201 with the signing ``secret``, shown this once."""
    body: WebhookRequest = request.context.json
    url = check_receiver(body.url.strip(), allow_private=settings().webhook_allow_private)
    hook = webhooks.create_webhook(
        db(),
        tenant_id=tenant(),
        url=url,
        events=list(dict.fromkeys(body.events)),
        progress_every=body.progress_every,
    )
    audit.record(db(), principal(), "webhook.create", "webhook", hook.id, url=hook.url)
    location = url_for("webhooks.get_webhook", webhook_id=hook.id, _external=True)
    return webhook_json(hook, with_secret=True), 201, {"Location": location}


@bp.get("/webhooks")
@endpoint(resp=Responses(HTTP_200=WebhookList), tags=("webhooks",), scope="read")
def list_webhooks():
    """Every subscription (without secrets)."""
    hooks = webhooks.list_webhooks(db(), tenant_id=tenant())
    return {"items": [webhook_json(hook) for hook in hooks]}


@bp.get("/webhooks/<webhook_id>")
@endpoint(resp=Responses(HTTP_200=WebhookModel, **errors(404)), tags=("webhooks",), scope="read")
def get_webhook(webhook_id: str):
    """One subscription (without its secret)."""
    return webhook_json(webhooks.get_webhook(db(), webhook_id, tenant_id=tenant()))


@bp.delete("/webhooks/<webhook_id>")
@endpoint(resp=Responses("HTTP_204", **errors(404)), tags=("webhooks",), scope="admin")
def delete_webhook(webhook_id: str):
    """Unsubscribe: no more events, pending attempts dropped, its record deleted."""
    webhooks.delete_webhook(db(), webhook_id, tenant_id=tenant())
    audit.record(db(), principal(), "webhook.delete", "webhook", webhook_id)
    return Response(status=204)


def _page(endpoint_name: str, query: DeliveryQuery, **filters) -> dict:
    rows = deliveries.attempts(db(), after_id=query.cursor, limit=query.limit, **filters)
    more = len(rows) == query.limit
    args = {"cursor": rows[-1].id, "limit": query.limit} if more else None
    return {
        "items": [delivery_json(row) for row in rows],
        "next": url_for(endpoint_name, **filters, **args) if args else None,
    }


@bp.get("/webhooks/<webhook_id>/deliveries")
@endpoint(
    query=DeliveryQuery,
    resp=Responses(HTTP_200=DeliveryPage, **errors(404, 422)),
    tags=("webhooks",),
    scope="read",
)
def webhook_deliveries(webhook_id: str):
    """The subscription's delivery attempts, oldest first (cursor pagination)."""
    webhooks.get_webhook(db(), webhook_id, tenant_id=tenant())
    return _page("webhooks.webhook_deliveries", request.context.query, webhook_id=webhook_id)


@bp.get("/jobs/<job_id>/webhooks")
@endpoint(
    query=DeliveryQuery,
    resp=Responses(HTTP_200=DeliveryPage, **errors(404, 409, 422)),
    tags=("webhooks",),
    scope="read",
)
def job_deliveries(job_id: str):
    """Delivery attempts of the job's events (its callback and subscriptions), oldest first."""
    job = jobs.find_job(db(), job_id, tenant_id=tenant())
    return _page("webhooks.job_deliveries", request.context.query, job_id=job.id)
