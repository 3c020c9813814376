"""Webhooks through the API (no worker): receivers checked, secrets shown once, subscriptions,
signing, the retry schedule, and the attempts a cancelled job records."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import random

import pytest

from api.store import deliveries, webhooks
from api.store.receivers import ReceiverNotAllowedError, check_receiver
from api.store.settings import load_settings
from core.samples import demo_folder

PRIVATE = [
    "http://127.0.0.1:9/hook",
    "http://localhost/hook",
    "http://[::1]/hook",
    "http://10.1.2.3/hook",
    "http://192.168.0.10/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://[::ffff:127.0.0.1]/hook",
    "http://0.0.0.0/hook",
]


@pytest.fixture
def open_client(make_app):
    """A client of an app that lets receivers live on private addresses (like the tests')."""
    return make_app(webhook_allow_private=True).test_client()


@pytest.mark.parametrize("url", PRIVATE)
def test_private_receivers_are_refused_without_the_setting(client, api_root, url):
    (api_root / "calls").mkdir(exist_ok=True)
    body = {"folder": str(api_root / "calls"), "callback_url": url}
    response = client.post("/api/v1/jobs", json=body)
    assert response.status_code == 422, response.data
    assert response.get_json()["error"]["code"] == "callback_url_not_allowed"
    response = client.post("/api/v1/webhooks", json={"url": url})
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "callback_url_not_allowed"
    with pytest.raises(ReceiverNotAllowedError):
        check_receiver(url, allow_private=False)
    assert check_receiver(url, allow_private=True) == url


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "http://user:pw@127.0.0.1/x", "http://", "not a url"]
)
def test_malformed_receivers_are_refused(open_client, api_root, url):
    (api_root / "calls").mkdir(exist_ok=True)
    response = open_client.post(
        "/api/v1/jobs", json={"folder": str(api_root / "calls"), "callback_url": url}
    )
    assert response.status_code == 422, response.data


def test_callback_secret_is_shown_once(open_client, api_root):
    (api_root / "calls").mkdir(exist_ok=True)
    url = "http://127.0.0.1:9/hook"
    response = open_client.post(
        "/api/v1/jobs", json={"folder": str(api_root / "calls"), "callback_url": url}
    )
    assert response.status_code == 202, response.data
    job = response.get_json()
    assert job["callback_url"] == url and job["callback_secret"].startswith("whsec_")
    again = open_client.get(f"/api/v1/jobs/{job['id']}").get_json()
    assert again["callback_url"] == url and again.get("callback_secret") is None
    assert "callback_url" not in again["options"]
    clip = next(demo_folder().glob("*.flac"))
    form = {"files": [(io.BytesIO(clip.read_bytes()), clip.name)], "callback_url": url}
    upload = open_client.post("/api/v1/jobs", data=form, content_type="multipart/form-data")
    assert upload.status_code == 202, upload.data  # uploads take the field like folder jobs
    assert upload.get_json()["callback_url"] == url
    assert upload.get_json()["callback_secret"] not in (None, job["callback_secret"])
    plain = open_client.post("/api/v1/jobs", json={"folder": str(api_root / "calls")})
    assert plain.get_json()["callback_url"] is None and "callback_secret" not in plain.get_json()


def test_progress_needs_a_callback(open_client, api_root):
    (api_root / "calls").mkdir(exist_ok=True)
    response = open_client.post(
        "/api/v1/jobs", json={"folder": str(api_root / "calls"), "progress_every": 5}
    )
    assert response.status_code == 422 and "callback_url" in response.get_json()["error"]["message"]


def test_subscriptions(open_client):
    created = open_client.post(
        "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/a", "events": ["job.failed"]}
    )
    assert created.status_code == 201, created.data
    hook = created.get_json()
    assert hook["secret"].startswith("whsec_") and hook["events"] == ["job.failed"]
    listed = open_client.get("/api/v1/webhooks").get_json()["items"]
    assert [h["id"] for h in listed if h["id"] == hook["id"]] == [hook["id"]]
    assert all("secret" not in h for h in listed)
    one = open_client.get(f"/api/v1/webhooks/{hook['id']}").get_json()
    assert one["url"] == "http://127.0.0.1:9/a" and "secret" not in one
    page = open_client.get(f"/api/v1/webhooks/{hook['id']}/deliveries").get_json()
    assert page == {"items": [], "next": None}
    every = open_client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/b"})
    assert every.get_json()["events"] == list(webhooks.END_EVENTS)  # progress only when asked
    assert every.get_json()["progress_every"] is None
    progress = open_client.post(
        "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/p", "events": ["job.progress"]}
    )
    assert progress.get_json()["progress_every"] == webhooks.DEFAULT_PROGRESS_EVERY
    open_client.delete(f"/api/v1/webhooks/{progress.get_json()['id']}")
    bad = open_client.post("/api/v1/webhooks", json={"url": "http://x/", "events": ["job.done"]})
    assert bad.status_code == 422
    assert open_client.delete(f"/api/v1/webhooks/{hook['id']}").status_code == 204
    audit = open_client.get("/api/v1/audit?limit=500").get_json()["items"]
    logged = {(e["action"], e["target_id"]) for e in audit}
    assert {("webhook.create", hook["id"]), ("webhook.delete", hook["id"])} <= logged
    assert open_client.delete(f"/api/v1/webhooks/{hook['id']}").status_code == 404
    assert open_client.get(f"/api/v1/webhooks/{hook['id']}/deliveries").status_code == 404
    open_client.delete(f"/api/v1/webhooks/{every.get_json()['id']}")


def test_cancelling_a_job_records_its_event(open_client, api_root):
    (api_root / "calls").mkdir(exist_ok=True)
    hook = open_client.post(
        "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/c", "events": ["job.cancelled"]}
    ).get_json()
    other = open_client.post(
        "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/d", "events": ["job.succeeded"]}
    ).get_json()
    job = open_client.post(
        "/api/v1/jobs",
        json={"folder": str(api_root / "calls"), "callback_url": "http://127.0.0.1:9/job"},
    ).get_json()
    assert open_client.delete(f"/api/v1/jobs/{job['id']}").status_code == 204
    # The job is gone, its record of deliveries is not: readable through the subscription.
    items = open_client.get(f"/api/v1/webhooks/{hook['id']}/deliveries").get_json()["items"]
    assert [(d["event"], d["attempt"], d["job_id"]) for d in items] == [
        ("job.cancelled", 1, job["id"])
    ]
    assert items[0]["state"] in ("pending", "sending", "failed", "gave_up")  # no worker here
    assert open_client.get(f"/api/v1/webhooks/{other['id']}/deliveries").get_json()["items"] == []
    assert open_client.delete(f"/api/v1/jobs/{job['id']}").status_code == 404
    for h in (hook, other):
        open_client.delete(f"/api/v1/webhooks/{h['id']}")


def test_signature_is_hmac_sha256_of_timestamp_and_body():
    body = json.dumps({"event": "job.succeeded"}).encode()
    expected = hmac.new(b"whsec_k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert webhooks.sign("whsec_k", 1700000000, body) == f"sha256={expected}"
    assert webhooks.sign("whsec_k", 1700000001, body) != f"sha256={expected}"


def test_default_retries_last_about_a_day(tmp_path):
    settings = load_settings({"AER_DATA_DIR": str(tmp_path)})
    rand = random.Random(0)
    delays = [
        deliveries.retry_delay(settings, attempt, rand)
        for attempt in range(1, settings.webhook_max_attempts)
    ]
    for attempt, delay in enumerate(delays, 1):
        nominal = min(
            settings.webhook_retry_max_s, settings.webhook_retry_base_s * 2 ** (attempt - 1)
        )
        assert nominal / 2 <= delay <= nominal
    assert delays[0] < 60 and max(delays) <= settings.webhook_retry_max_s
    assert 16 * 3600 < sum(delays) < 36 * 3600


def test_a_tenants_events_reach_its_own_subscriptions_only(api_settings):
    from api.store.db import session_scope
    from api.store.jobs import cancel, create_job

    with session_scope(api_settings) as session:
        mine = webhooks.create_webhook(
            session, tenant_id="default", url="http://127.0.0.1:9/m", events=["job.cancelled"]
        )
        theirs = webhooks.create_webhook(
            session, tenant_id="other", url="http://127.0.0.1:9/t", events=["job.cancelled"]
        )
        job = create_job(
            session,
            source_kind="folder",
            source="/nowhere",
            options={},
            model_name="m",
            tenant_id="default",
        )
        _, attempt_ids = cancel(session, job.id, tenant_id="default")
        rows = deliveries.attempts(session, job_id=job.id)
        assert [row.id for row in rows] == attempt_ids
        assert [row.webhook_id for row in rows] == [mine.id]
        assert deliveries.attempts(session, webhook_id=theirs.id) == []
        _, again = cancel(session, job.id, tenant_id="default")
        assert again == []  # a job already cancelled sends nothing more
        with pytest.raises(webhooks.WebhookNotFoundError):
            webhooks.get_webhook(session, theirs.id, tenant_id="default")


def test_each_attempt_checks_the_receiver_again(api_settings):
    """An address allowed at submission but private at delivery (DNS rebinding, or the setting
    turned off since) is refused by the attempt itself, before any connection."""
    from api.store.db import session_scope
    from api.store.jobs import cancel, create_job
    from worker.webhooks import run_delivery

    with session_scope(api_settings) as session:
        job = create_job(
            session,
            source_kind="folder",
            source="/nowhere",
            options={},
            model_name="m",
            tenant_id="default",
            callback_url="http://127.0.0.1:9/rebound",  # as if it had resolved outside
        )
        cancel(session, job.id, tenant_id="default")
        callback = [r for r in deliveries.attempts(session, job_id=job.id) if not r.webhook_id]
        attempt_id = callback[0].id  # the job's own callback (subscriptions may add more)
    scheduled = []
    state = run_delivery(api_settings, attempt_id, lambda *a: scheduled.append(a))
    assert state == "failed" and len(scheduled) == 1  # retried later, like any failure
    with session_scope(api_settings) as session:
        row, following = [
            r for r in deliveries.attempts(session, job_id=job.id) if not r.webhook_id
        ]
    assert row.error.startswith("refused:") and row.status_code is None
    assert following.attempt == 2 and following.id == scheduled[0][0]
    assert run_delivery(api_settings, attempt_id, scheduled.append) is None  # claimed once
