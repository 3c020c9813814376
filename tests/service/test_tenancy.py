"""Who may call what: every route of the app against keys of every kind, and the keys
themselves (hashing, expiry, revocation, last use, the first admin key, the ``aer keys`` CLI).

The matrix is checked against the app's url_map: a new route without a row fails
:func:`test_every_route_has_a_row`.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from api.store import exports, keys, processing, trainings, webhooks
from api.store.db import session_scope, upgrade
from api.store.jobs import create_job
from api.store.tables import ApiKey, Job, Segment, utcnow
from core.predict import FilePrediction, SegmentPrediction
from core.samples import demo_folder
from tests.auth import bearer, create_key

FIXTURES = demo_folder()
CLIP = next(iter(sorted(FIXTURES.glob("*.flac"))), None)
pytestmark = pytest.mark.skipif(CLIP is None, reason="fixture clips missing")

#: The callers of the matrix, in the order of each row's statuses.
CALLERS = ("none", "expired", "revoked", "read_only", "other_tenant", "other_admin", "owner")


@pytest.fixture(scope="module")
def callers(api_settings, api_key) -> dict[str, dict[str, str]]:
    """The request headers of each caller. ``owner`` is the admin key of the ``default``
    tenant that owns the seeded jobs; ``other_*`` belong to the tenant ``other``."""
    revoked = create_key(api_settings, name="revoked")
    with session_scope(api_settings) as session:
        keys.revoke_key(session, keys.parse_key(revoked)[0])
    expired = create_key(api_settings, name="expired", expires_at=utcnow() - timedelta(seconds=1))
    return {
        "none": {},
        "expired": bearer(expired),
        "revoked": bearer(revoked),
        "read_only": bearer(create_key(api_settings, scopes=("read",), name="read only")),
        "other_tenant": bearer(create_key(api_settings, tenant="other", scopes=("read", "submit"))),
        "other_admin": bearer(create_key(api_settings, tenant="other", name="other admin")),
        "owner": bearer(api_key),
    }


def seed_job(settings, tenant: str = "default") -> tuple[str, int]:
    """A job of ``tenant`` with one file that has a result; returns (job id, file id)."""
    with session_scope(settings) as session:
        job = create_job(
            session,
            source_kind="folder",
            source="/nowhere",
            options={},
            model_name="default",
            tenant_id=tenant,
        )
        lease = utcnow() + timedelta(hours=1)
        (file_id,) = processing.insert_files(session, job.id, [("a.wav", "/a")], lease_until=lease)
        result = FilePrediction(
            path="a.wav",
            label="x",
            confidence=1.0,
            probabilities={"x": 1.0},
            duration_s=1.0,
            sample_rate=16000,
            channels=1,
            segments=[SegmentPrediction(0, 0.0, 1.0, "x", 1.0, {"x": 1.0})],
        )
        processing.record_result(session, file_id, result, "test")
        processing.finish_enumeration(session, job.id)
        processing.try_finish_job(session, job.id)  # finished: its results take labels
        return job.id, file_id


@dataclass(frozen=True)
class Row:
    """One request of the matrix and the status each caller gets, in :data:`CALLERS` order."""

    rule: str
    method: str
    statuses: tuple[int, ...]
    #: ``request(client, headers, context) -> response``
    send: Callable
    variant: str = ""


def _upload(client, headers, ctx):
    data = {"files": [(io.BytesIO(CLIP.read_bytes()), CLIP.name)]}
    return client.post("/api/v1/jobs", data=data, headers=headers)


def _folder(client, headers, ctx):
    return client.post("/api/v1/jobs", json={"folder": str(ctx["root"])}, headers=headers)


def _get(path: str):
    def send(client, headers, ctx):
        return client.get(path.format(**ctx), headers=headers)

    return send


def _delete_job(client, headers, ctx):
    job_id, _ = seed_job(ctx["settings"])  # a job per request: the owner's delete succeeds
    return client.delete(f"/api/v1/jobs/{job_id}", headers=headers)


def _create_key(client, headers, ctx):
    return client.post("/api/v1/keys", json={"name": "n", "scopes": ["read"]}, headers=headers)


def _revoke_key(client, headers, ctx):
    key = create_key(ctx["settings"], name="to revoke")
    with session_scope(ctx["settings"]) as session:
        key_id = keys.find_key(session, keys.parse_key(key)[0]).id
    return client.delete(f"/api/v1/keys/{key_id}", headers=headers)


def _post(path: str):
    def send(client, headers, ctx):
        return client.post(path, data={}, headers=headers)

    return send


def _send(method: str, path: str, body: dict | None = None):
    def send(client, headers, ctx):
        return client.open(path.format(**ctx), method=method, json=body, headers=headers)

    return send


def _model(client, headers, ctx):
    from core.registry import ModelRegistry

    name = ModelRegistry(ctx["settings"].models_dir).resolve().stem
    return client.get(f"/api/v1/models/{name}", headers=headers)


def _train(client, headers, ctx):
    body = {"name": f"m{uuid.uuid4().hex[:8]}", "jobs": [ctx["job_id"]]}
    return client.post("/api/v1/models", json=body, headers=headers)


def _training(client, headers, ctx):
    with session_scope(ctx["settings"]) as session:
        source = {"jobs": [ctx["job_id"]]}
        training = trainings.create_training(
            session, name="t", source=source, options={}, tenant_id="default"
        )
    return client.get(f"/api/v1/trainings/{training.id}", headers=headers)


#: A bucket the export rows allow (nothing is written to it: no worker runs here).
EXPORT_BUCKET = "aer-tenancy-exports"


def _create_export(client, headers, ctx):
    app = client.application
    settings = app.config["AER_SETTINGS"]
    app.config["AER_SETTINGS"] = settings.model_copy(update={"allowed_buckets": (EXPORT_BUCKET,)})
    try:
        body = {"destination": f"s3://{EXPORT_BUCKET}/x/"}
        return client.post(EXPORTS.format(**ctx), json=body, headers=headers)
    finally:
        app.config["AER_SETTINGS"] = settings


def _get_export(client, headers, ctx):
    settings = ctx["settings"].model_copy(update={"allowed_buckets": (EXPORT_BUCKET,)})
    with session_scope(settings) as session:
        job = session.get(Job, ctx["job_id"])
        export = exports.create_export(
            session, settings, job, destination=f"s3://{EXPORT_BUCKET}/", fmt="csv", options={}
        )
        path = f"{EXPORTS.format(**ctx)}/{export.id}"
    return client.get(path, headers=headers)


def _hook(ctx) -> str:
    """A subscription of the ``default`` tenant (a new one per request)."""
    with session_scope(ctx["settings"]) as session:
        hook = webhooks.create_webhook(
            session, tenant_id="default", url="http://127.0.0.1:9/hook", events=["job.failed"]
        )
        return hook.id


def _hook_request(method: str, suffix: str = ""):
    def send(client, headers, ctx):
        path = f"/api/v1/webhooks/{_hook(ctx)}{suffix}"
        return client.open(path, method=method, headers=headers)

    return send


NO_KEY = (401, 401, 401)
JOB = "/api/v1/jobs/{job_id}"
EXPORTS = JOB + "/exports"
JOB_PAGE = "/jobs/{job_id}"
FILE_LABEL = JOB + "/files/{file_id}/label"
SEGMENT_LABEL = JOB + "/files/{file_id}/segments/{segment_id}/label"
#: A request that needs ``submit`` on a job of the owner's: others do not see the job at all.
OWNED = (*NO_KEY, 403, 404, 404)
ROWS = (
    Row("/api/v1/jobs", "POST", (*NO_KEY, 403, 202, 202, 202), _upload, "upload"),
    Row("/api/v1/jobs", "POST", (*NO_KEY, 403, 403, 202, 202), _folder, "folder"),
    Row("/api/v1/jobs", "GET", (*NO_KEY, 200, 200, 200, 200), _get("/api/v1/jobs")),
    Row("/api/v1/jobs/<job_id>", "GET", (*NO_KEY, 200, 404, 404, 200), _get(JOB)),
    Row("/api/v1/jobs/<job_id>", "DELETE", (*NO_KEY, 403, 404, 404, 204), _delete_job),
    Row(
        "/api/v1/jobs/<job_id>/results",
        "GET",
        (*NO_KEY, 200, 404, 404, 200),
        _get(JOB + "/results"),
    ),
    *(
        Row(
            "/api/v1/jobs/<job_id>/results.<fmt>",
            "GET",
            (*NO_KEY, 200, 404, 404, 200),
            _get(JOB + f"/results.{fmt}"),
            fmt,
        )
        for fmt in ("csv", "jsonl", "parquet")
    ),
    Row("/api/v1/jobs/<job_id>/exports", "POST", (*OWNED, 202), _create_export),
    Row("/api/v1/jobs/<job_id>/exports", "GET", (*NO_KEY, 200, 404, 404, 200), _get(EXPORTS)),
    Row(
        "/api/v1/jobs/<job_id>/exports/<export_id>",
        "GET",
        (*NO_KEY, 200, 404, 404, 200),
        _get_export,
    ),
    Row(
        "/api/v1/jobs/<job_id>/files/<int:file_id>/segments",
        "GET",
        (*NO_KEY, 200, 404, 404, 200),
        _get(JOB + "/files/{file_id}/segments"),
    ),
    Row("/api/v1/jobs/<job_id>/cancel", "POST", (*OWNED, 200), _send("POST", JOB + "/cancel")),
    Row(
        "/api/v1/jobs/<job_id>/files/<int:file_id>/label",
        "PUT",
        (*OWNED, 200),
        _send("PUT", FILE_LABEL, {"label": "calm"}),
    ),
    Row(
        "/api/v1/jobs/<job_id>/files/<int:file_id>/label",
        "DELETE",
        (*OWNED, 200),
        _send("DELETE", FILE_LABEL),
    ),
    Row(
        "/api/v1/jobs/<job_id>/files/<int:file_id>/segments/<int:segment_id>/label",
        "PUT",
        (*OWNED, 200),
        _send("PUT", SEGMENT_LABEL, {"label": "calm"}),
    ),
    Row(
        "/api/v1/jobs/<job_id>/files/<int:file_id>/segments/<int:segment_id>/label",
        "DELETE",
        (*OWNED, 200),
        _send("DELETE", SEGMENT_LABEL),
    ),
    Row("/api/v1/models", "GET", (*NO_KEY, 200, 200, 200, 200), _get("/api/v1/models")),
    Row("/api/v1/models/<name>", "GET", (*NO_KEY, 200, 200, 200, 200), _model),
    Row("/api/v1/models", "POST", (*OWNED, 202), _train),
    Row("/api/v1/trainings/<training_id>", "GET", (*NO_KEY, 200, 404, 404, 200), _training),
    Row("/api/v1/keys", "POST", (*NO_KEY, 403, 403, 201, 201), _create_key),
    Row("/api/v1/keys", "GET", (*NO_KEY, 403, 403, 200, 200), _get("/api/v1/keys")),
    Row("/api/v1/audit", "GET", (*NO_KEY, 403, 403, 200, 200), _get("/api/v1/audit")),
    Row("/api/v1/keys/<int:key_id>", "DELETE", (*NO_KEY, 403, 403, 204, 204), _revoke_key),
    # A loopback receiver is refused (422) once the key may subscribe: the matrix checks the key.
    Row(
        "/api/v1/webhooks",
        "POST",
        (*NO_KEY, 403, 403, 422, 422),
        _send("POST", "/api/v1/webhooks", {"url": "http://127.0.0.1:9/hook"}),
    ),
    Row("/api/v1/webhooks", "GET", (*NO_KEY, 200, 200, 200, 200), _get("/api/v1/webhooks")),
    Row(
        "/api/v1/webhooks/<webhook_id>", "GET", (*NO_KEY, 200, 404, 404, 200), _hook_request("GET")
    ),
    Row(
        "/api/v1/webhooks/<webhook_id>",
        "DELETE",
        (*NO_KEY, 403, 403, 404, 204),
        _hook_request("DELETE"),
    ),
    Row(
        "/api/v1/webhooks/<webhook_id>/deliveries",
        "GET",
        (*NO_KEY, 200, 404, 404, 200),
        _hook_request("GET", "/deliveries"),
    ),
    Row(
        "/api/v1/jobs/<job_id>/webhooks",
        "GET",
        (*NO_KEY, 200, 404, 404, 200),
        _get(JOB + "/webhooks"),
    ),
    # Every tenant's numbers: an admin key (admins manage every tenant's keys already).
    Row("/metrics", "GET", (*NO_KEY, 403, 403, 200, 200), _get("/metrics")),
    Row("/api/v1/healthz", "GET", (200,) * 7, _get("/api/v1/healthz")),
    Row("/api/v1/openapi.json", "GET", (200,) * 7, _get("/api/v1/openapi.json")),
    # Web pages: the login form is public; posts without a CSRF token are refused.
    Row("/login", "GET", (200,) * 7, _get("/login")),
    Row("/login", "POST", (400,) * 7, _post("/login")),
    Row("/logout", "POST", (400,) * 7, _post("/logout")),
    Row("/static/<path:filename>", "GET", (404,) * 7, _get("/static/nothing.css")),
    # Dashboard pages take the login session, not keys: without one, each sends to the login.
    *(
        Row(rule, method, (302,) * 7, _send(method, path))
        for rule, method, path in (
            ("/", "GET", "/"),
            ("/jobs/new", "GET", "/jobs/new"),
            ("/models", "GET", "/models"),
            ("/jobs/<job_id>", "GET", JOB_PAGE),
            ("/jobs/<job_id>/files/<int:file_id>", "GET", JOB_PAGE + "/files/{file_id}"),
            (
                "/jobs/<job_id>/files/<int:file_id>/audio",
                "GET",
                JOB_PAGE + "/files/{file_id}/audio",
            ),
            ("/jobs/<job_id>/cancel", "POST", JOB_PAGE + "/cancel"),
            ("/jobs/<job_id>/delete", "POST", JOB_PAGE + "/delete"),
        )
    ),
    Row("/ui/static/<path:filename>", "GET", (200,) * 7, _get("/ui/static/aer.css")),
)


def test_every_route_has_a_row(app):
    routes = {
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert routes == {(row.rule, row.method) for row in ROWS}


@pytest.mark.parametrize(
    "row", ROWS, ids=[f"{r.method} {r.rule} {r.variant}".strip() for r in ROWS]
)
def test_matrix(app, api_settings, api_root, callers, row):
    job_id, file_id = seed_job(api_settings)
    with session_scope(api_settings) as session:
        segment_id = session.scalar(select(Segment.id).where(Segment.file_id == file_id))
    ctx = {"job_id": job_id, "file_id": file_id, "segment_id": segment_id}
    ctx |= {"settings": api_settings, "root": api_root}
    (api_root / "a.wav").write_bytes(CLIP.read_bytes())
    client = app.test_client()
    got = {}
    for caller, expected in zip(CALLERS, row.statuses, strict=True):
        headers = {"Authorization": ""} | callers[caller]  # "none" overrides the client's key
        response = row.send(client, headers, ctx)
        response.get_data()  # read a streamed body whole, and end its request
        response.close()
        got[caller] = response.status_code
        if response.status_code == 401:
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert response.get_json()["error"]["code"] == "unauthorized"
        if response.status_code == 404 and expected == 404 and row.rule.startswith("/api/v1/jobs"):
            # Another tenant's job reads exactly like no job at all.
            assert response.get_json()["error"]["code"] in ("job_not_found", "file_not_found")
    assert got == dict(zip(CALLERS, row.statuses, strict=True))


def test_other_tenants_jobs_are_not_listed(app, api_settings, callers):
    mine, _ = seed_job(api_settings)
    theirs, _ = seed_job(api_settings, tenant="other")
    client = app.test_client()
    listed = {
        caller: {job["id"] for job in client.get(
            "/api/v1/jobs?size=500", headers=callers[caller]
        ).get_json()["items"]}
        for caller in ("owner", "other_tenant", "other_admin")
    }  # fmt: skip
    assert mine in listed["owner"] and theirs not in listed["owner"]
    assert theirs in listed["other_tenant"] and mine not in listed["other_tenant"]
    assert listed["other_admin"] == listed["other_tenant"]  # admin is no way round tenancy


def test_submitted_jobs_belong_to_the_key_tenant(app, api_settings, callers):
    client = app.test_client()
    response = _upload(client, callers["other_tenant"], {})
    assert response.status_code == 202
    job_id = response.get_json()["id"]
    with session_scope(api_settings) as session:
        assert session.get(Job, job_id).tenant_id == "other"
    assert client.get(f"/api/v1/jobs/{job_id}", headers=callers["owner"]).status_code == 404
    assert client.get(f"/api/v1/jobs/{job_id}", headers=callers["other_tenant"]).status_code == 200


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer ", "Basic abc", "Bearer aer_nothing", "Bearer aer_abcd1234_" + "x" * 43],
)
def test_malformed_or_unknown_keys_are_401(app, header):
    response = app.test_client().get("/api/v1/jobs", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_key_with_the_right_prefix_and_a_wrong_secret_is_refused(app, api_key):
    prefix, secret = keys.parse_key(api_key)
    forged = f"aer_{prefix}_{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}"
    response = app.test_client().get("/api/v1/jobs", headers=bearer(forged))
    assert response.status_code == 401


# --- keys ----------------------------------------------------------------------------------------


def test_the_database_never_holds_the_secret(api_settings):
    key = create_key(api_settings, name="secret check")
    prefix, secret = keys.parse_key(key)
    with session_scope(api_settings) as session:
        row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
        values = [str(getattr(row, c.key)) for c in ApiKey.__table__.columns]
    assert row.secret_hash == keys.hash_secret(secret) != secret
    assert not any(secret in value for value in values)
    db_file = Path(api_settings.database_url.removeprefix("sqlite:///"))
    for path in (db_file, db_file.with_name(db_file.name + "-wal")):
        if path.exists():
            assert secret.encode() not in path.read_bytes()


def test_keys_api_shows_the_secret_once(client, api_settings):
    response = client.post(
        "/api/v1/keys",
        json={"name": "ci", "scopes": ["read", "submit"], "tenant": "acme", "expires_in_days": 30},
    )
    assert response.status_code == 201
    created = response.get_json()
    assert created["tenant"] == "acme" and created["scopes"] == ["read", "submit"]
    assert created["key"].startswith(f"aer_{created['prefix']}_") and created["active"]
    listed = client.get("/api/v1/keys?tenant=acme").get_json()["items"]
    assert [k["id"] for k in listed] == [created["id"]]
    assert "key" not in listed[0] and created["key"] not in str(listed)
    # The new key works for its tenant, until it is revoked.
    headers = bearer(created["key"])
    assert client.get("/api/v1/jobs", headers=headers).status_code == 200
    assert client.delete(f"/api/v1/keys/{created['id']}").status_code == 204
    assert client.get("/api/v1/jobs", headers=headers).status_code == 401
    listed = client.get("/api/v1/keys?tenant=acme").get_json()["items"]
    assert listed[0]["revoked_at"] and not listed[0]["active"]
    assert client.delete("/api/v1/keys/999999").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "scopes": []},
        {"name": "x", "scopes": ["root"]},
        {"name": "", "scopes": ["read"]},
        {"name": "x", "scopes": ["read"], "tenant": "Bad Tenant"},
        {"name": "x", "scopes": ["read"], "expires_in_days": 0},
    ],
)
def test_keys_api_rejects_bad_requests(client, body):
    assert client.post("/api/v1/keys", json=body).status_code == 422


def test_last_use_is_recorded_at_most_once_a_minute(api_settings):
    key = create_key(api_settings, name="last use")
    prefix = keys.parse_key(key)[0]

    def authenticate_and_read():
        with session_scope(api_settings) as session:
            assert keys.authenticate(session, key) is not None
        with session_scope(api_settings) as session:
            return session.scalar(select(ApiKey.last_used_at).where(ApiKey.prefix == prefix))

    first = authenticate_and_read()
    assert first is not None
    assert authenticate_and_read() == first  # within the minute: no write
    with session_scope(api_settings) as session:
        row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
        row.last_used_at = first - keys.LAST_USED_RESOLUTION
    assert authenticate_and_read() > first - keys.LAST_USED_RESOLUTION


def test_bootstrap_creates_one_admin_key(tmp_path):
    from api.store.settings import load_settings

    settings = load_settings({"AER_DATA_DIR": str(tmp_path)})
    upgrade(settings.database_url)
    with session_scope(settings) as session:
        key = keys.bootstrap_admin_key(session, settings)
    assert key is not None
    with session_scope(settings) as session:
        principal = keys.authenticate(session, key)
        assert principal.scopes == {"read", "submit", "admin"}
        assert principal.tenant_id == "default"
        assert keys.bootstrap_admin_key(session, settings) is None  # one exists now
        keys.revoke_key(session, principal.key_id)
    with session_scope(settings) as session:  # the last admin key revoked: a new one
        assert keys.bootstrap_admin_key(session, settings) not in (None, key)


def test_bootstrap_key_from_the_environment(tmp_path):
    from api.store.settings import load_settings

    chosen = keys.generate_key()
    settings = load_settings({"AER_DATA_DIR": str(tmp_path), "AER_BOOTSTRAP_KEY": chosen})
    upgrade(settings.database_url)
    for _ in range(2):  # idempotent: installed once, never printed
        with session_scope(settings) as session:
            assert keys.bootstrap_admin_key(session, settings) is None
    with session_scope(settings) as session:
        assert keys.authenticate(session, chosen).can("admin")
        assert len(keys.list_keys(session)) == 1


def test_db_upgrade_prints_the_first_admin_key_once(tmp_path):
    env = {"AER_DATA_DIR": str(tmp_path), "AER_BOOTSTRAP_KEY": ""}
    first = CliRunner().invoke(_cli(), ["db", "upgrade"], env=env)
    assert first.exit_code == 0, first.output
    printed = re.findall(r"aer_[a-z0-9]{8}_[A-Za-z0-9_-]{32,}", first.stderr)
    assert len(printed) == 1
    second = CliRunner().invoke(_cli(), ["db", "upgrade"], env=env)
    assert second.exit_code == 0 and "aer_" not in second.output
    from api.store.settings import load_settings

    with session_scope(load_settings(env)) as session:
        assert keys.authenticate(session, printed[0]).can("admin")


def test_keys_cli_creates_lists_and_revokes(tmp_path):
    env = {"AER_DATA_DIR": str(tmp_path), "AER_BOOTSTRAP_KEY": ""}
    runner = CliRunner(env=env)
    assert runner.invoke(_cli(), ["db", "upgrade"]).exit_code == 0
    args = ["keys", "create", "--name", "nightly", "--scopes", "read", "--tenant", "acme"]
    created = runner.invoke(_cli(), [*args, "--expires-days", "7"])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    prefix = keys.parse_key(key)[0]
    listed = runner.invoke(_cli(), ["keys", "list", "--tenant", "acme"])
    assert listed.exit_code == 0
    (line,) = listed.stdout.splitlines()
    assert line.split("\t")[1:4] == [f"aer_{prefix}", "acme", "read"]
    assert line.endswith("nightly") and key not in listed.output
    revoked = runner.invoke(_cli(), ["keys", "revoke", f"aer_{prefix}"])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert "revoked" in runner.invoke(_cli(), ["keys", "list", "--tenant", "acme"]).stdout
    from api.store.settings import load_settings

    with session_scope(load_settings(env)) as session:
        assert keys.authenticate(session, key) is None
    bad = runner.invoke(_cli(), ["keys", "create", "--name", "x", "--scopes", "root"])
    assert bad.exit_code == 1 and "scopes must be some of" in bad.output
    assert runner.invoke(_cli(), ["keys", "revoke", "12345"]).exit_code == 1
    generated = runner.invoke(_cli(), ["keys", "generate"]).stdout.strip()
    assert keys.parse_key(generated) is not None


def _cli():
    from api.cli import cli

    return cli


def test_migration_gives_existing_jobs_to_the_default_tenant(empty_database_url):
    """Jobs from before tenancy keep their files and belong to ``default`` (and back down)."""
    from sqlalchemy import text

    from api.store.db import downgrade, make_engine

    url = empty_database_url
    upgrade(url, "0002")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO jobs (id, state, source_kind, source, options, model_name,"
                " created_at) VALUES ('j1', 'succeeded', 'folder', '/x', '{}', 'm',"
                " CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(text("INSERT INTO files (job_id, rel_path, path) VALUES ('j1', 'a', '/x/a')"))
    engine.dispose()
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT tenant_id, stored_bytes FROM jobs")).all() == [
            ("default", 0)
        ]
        assert conn.execute(text("SELECT count(*) FROM files")).scalar() == 1
        assert conn.execute(text("SELECT id FROM tenants")).scalars().all() == ["default"]
    engine.dispose()
    downgrade(url, "0002")
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM files")).scalar() == 1
    engine.dispose()


def test_the_audit_log_says_who_did_what(app, api_settings, callers):
    """Creating, downloading, relabelling and deleting are logged with the key that did it;
    an admin reads their own tenant's log, not another's."""
    client = app.test_client()
    owner, other = callers["owner"], callers["other_admin"]
    job_id, file_id = seed_job(api_settings)
    data = {"files": [(io.BytesIO(CLIP.read_bytes()), CLIP.name)]}
    created = client.post("/api/v1/jobs", data=data, headers=owner).get_json()["id"]
    client.get(f"/api/v1/jobs/{job_id}/results.csv", headers=owner).get_data()
    client.put(f"/api/v1/jobs/{job_id}/files/{file_id}/label", json={"label": "calm"},
               headers=owner)  # fmt: skip
    assert client.delete(f"/api/v1/jobs/{job_id}", headers=owner).status_code == 204
    events = client.get("/api/v1/audit?limit=500", headers=owner).get_json()["items"]
    mine = [(e["action"], e["target_id"]) for e in events]
    for done in [("job.create", created), ("results.download", job_id), ("label.set", job_id),
                 ("job.delete", job_id)]:  # fmt: skip
        assert done in mine
    assert {e["key_prefix"] for e in events} >= {owner["Authorization"].split("_")[1]}
    newest = [e["action"] for e in events[:4]]
    assert newest == ["job.delete", "label.set", "results.download", "job.create"]
    theirs = client.get("/api/v1/audit", headers=other).get_json()["items"]
    assert not {e["target_id"] for e in theirs} & {job_id, created}
    page = client.get("/api/v1/audit?limit=2&action=job.create", headers=owner).get_json()
    assert len(page["items"]) <= 2 and all(e["action"] == "job.create" for e in page["items"])
