"""Per-tenant quotas on submission: queued or running jobs (429), files per job and uploaded
bytes held (413), each error naming the quota and its setting; a tenant's own limits win."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from api.store import quotas
from api.store.db import session_scope
from api.store.tables import Tenant
from core.samples import demo_folder
from tests.auth import bearer, create_key

FIXTURES = demo_folder()
CLIPS = sorted(FIXTURES.glob("*.flac"))
pytestmark = pytest.mark.skipif(len(CLIPS) < 2, reason="fixture clips missing")


def upload(client, key: str, *clips: Path):
    data = {"files": [(io.BytesIO(c.read_bytes()), c.name) for c in clips]}
    return client.post("/api/v1/jobs", data=data, headers=bearer(key))


def quota_error(response, status: int) -> dict:
    assert response.status_code == status, response.data
    error = response.get_json()["error"]
    assert error["code"] == "quota_exceeded"
    return error["details"]


def test_active_jobs_quota_is_429_and_per_tenant(make_app, api_settings):
    client = make_app(tenant_max_active_jobs=2).test_client()
    key = create_key(api_settings, tenant="q-active", scopes=("read", "submit"))
    jobs = [upload(client, key, CLIPS[0]) for _ in range(2)]
    assert [r.status_code for r in jobs] == [202, 202]
    details = quota_error(upload(client, key, CLIPS[0]), 429)
    assert details == {"quota": "max_active_jobs", "setting": "AER_TENANT_MAX_ACTIVE_JOBS"}
    other = create_key(api_settings, tenant="q-active-other", scopes=("read", "submit"))
    assert upload(client, other, CLIPS[0]).status_code == 202  # another tenant's own count
    # A finished (here: deleted) job frees its place.
    assert (
        client.delete(f"/api/v1/jobs/{jobs[0].get_json()['id']}", headers=bearer(key)).status_code
        == 204
    )
    assert upload(client, key, CLIPS[0]).status_code == 202


def test_files_per_job_quota_is_413(make_app, api_settings):
    client = make_app(tenant_max_files_per_job=1).test_client()
    key = create_key(api_settings, tenant="q-files", scopes=("read", "submit"))
    details = quota_error(upload(client, key, CLIPS[0], CLIPS[1]), 413)
    assert details == {"quota": "max_files_per_job", "setting": "AER_TENANT_MAX_FILES_PER_JOB"}
    assert upload(client, key, CLIPS[0]).status_code == 202


def test_stored_bytes_quota_counts_what_the_tenant_holds(make_app, api_settings):
    client = make_app(tenant_max_stored_mb=1).test_client()
    key = create_key(api_settings, tenant="q-bytes", scopes=("read", "submit"))
    size = CLIPS[0].stat().st_size
    fits = max(1, (2**20 // size))  # this many copies fit in 1 MB
    for _ in range(fits):
        assert upload(client, key, CLIPS[0]).status_code == 202
    details = quota_error(upload(client, key, CLIPS[0]), 413)
    assert details == {"quota": "max_stored_mb", "setting": "AER_TENANT_MAX_STORED_MB"}


def test_a_tenants_own_limit_overrides_the_default(make_app, api_settings):
    client = make_app(tenant_max_files_per_job=10).test_client()
    key = create_key(api_settings, tenant="q-own", scopes=("read", "submit"))
    with session_scope(api_settings) as session:
        session.get(Tenant, "q-own").max_files_per_job = 1
    quota_error(upload(client, key, CLIPS[0], CLIPS[1]), 413)
    with session_scope(api_settings) as session:
        assert quotas.job_file_limit(session, api_settings, "q-own") == 1
        assert quotas.job_file_limit(session, api_settings, "default") == 10_000


def test_tenants_quota_cli_sets_and_clears_a_tenants_limits(api_settings):
    from click.testing import CliRunner

    from api.cli import cli

    runner = CliRunner(env={"AER_DATA_DIR": str(api_settings.data_dir),
                            "AER_DATABASE_URL": api_settings.database_url})  # fmt: skip
    result = runner.invoke(cli, ["tenants", "quota", "q-cli", "--max-active-jobs", "3"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "max_active_jobs\t3",
        "max_files_per_job\tdefault",
        "max_stored_mb\tdefault",
    ]
    with session_scope(api_settings) as session:
        assert quotas.limit(session, api_settings, "q-cli", "max_active_jobs") == 3
    result = runner.invoke(cli, ["tenants", "quota", "q-cli", "--max-active-jobs", "0"])
    assert result.stdout.splitlines()[0] == "max_active_jobs\tdefault"
    with session_scope(api_settings) as session:
        assert quotas.limit(session, api_settings, "q-cli", "max_active_jobs") == 100
