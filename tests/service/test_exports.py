"""Results as CSV, JSON Lines and Parquet downloads, and exports of them to a bucket.

A real worker (real Redis, SQLite and PostgreSQL) writes the exports to a real S3-compatible
server (moto in server mode); the downloads and the exported objects are read back with the
csv and json modules and pyarrow and compared row by row.
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from datetime import timedelta

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from api.store import exports, jobs, processing
from api.store.db import session_scope
from api.store.objects import s3_client
from api.store.tables import Export, Job, utcnow
from core.predict import FilePrediction, SegmentPrediction
from tests.auth import authenticated, create_key
from tests.openapi_check import check_responses

#: Allowed in the worker's AER_ALLOWED_BUCKETS but never created: uploads to it fail.
GONE = f"aer-gone-{uuid.uuid4().hex[:12]}"
FORMATS = ("csv", "jsonl", "parquet")


@pytest.fixture(scope="module")
def export_bucket(s3_server) -> str:
    name = f"aer-exports-{uuid.uuid4().hex[:12]}"
    s3_client().create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def settings_env(settings_env, export_bucket) -> dict[str, str]:
    """The service's variables, with the export bucket (and one that is missing) allowed."""
    return {**settings_env, "AER_ALLOWED_BUCKETS": f"{export_bucket},{GONE}"}


@pytest.fixture(scope="module")
def app(settings, celery_worker):
    from api.store.db import get_engine
    from api.web.app import create_app

    app = authenticated(check_responses(create_app(settings)), create_key(settings))
    app.config["TESTING"] = True
    yield app
    get_engine(settings.database_url).dispose()  # close pooled connections before the drop


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def labels(default_model) -> list[str]:
    return list(default_model.labels)


def seed_job(settings, labels: list[str], *, finished: bool = True) -> str:
    """A job of the ``default`` tenant with two analysed files (two segments each, one
    channel-split) and a failed one; finished unless ``finished`` is False."""
    with session_scope(settings) as s:
        job = jobs.create_job(
            s,
            source_kind="folder",
            source="/nowhere",
            options={"channels": "split"},
            model_name=settings.default_model,
            tenant_id="default",
        )
        names = ["a.wav", "sub/b.wav", "broken.wav"]
        entries = [(name, f"/nowhere/{name}") for name in names]
        ids = processing.insert_files(s, job.id, entries, lease_until=utcnow() + timedelta(hours=1))
        for n, (file_id, name) in enumerate(zip(ids[:2], names, strict=False)):
            conf = 0.55225501051 + n / 10
            probs = {lab: conf if i == n else (1 - conf) / (len(labels) - 1)
                     for i, lab in enumerate(labels)}  # fmt: skip
            segments = [
                SegmentPrediction(ch, 0.1234567 * ch, 2.5 + ch, labels[n], conf, probs)
                for ch in (0, 1)
            ]
            pred = FilePrediction(
                path=name,
                label=labels[n],
                confidence=conf,
                probabilities=probs,
                duration_s=3.0001234,
                sample_rate=16000,
                channels=2,
                segments=segments,
            )
            processing.record_result(s, file_id, pred, "test-version")
        failed = FilePrediction(
            names[2], None, None, {}, None, None, None, "not audio", "not_audio"
        )
        processing.record_result(s, ids[2], failed, "test-version")
        processing.finish_enumeration(s, job.id)
        if finished:
            processing.try_finish_job(s, job.id)
        return job.id


def as_csv(value) -> str:
    """A JSON Lines value as the CSV writes it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def read_table(fmt: str, body: bytes) -> list[dict]:
    """A table in ``fmt`` as a list of rows (CSV cells stay text)."""
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(body.decode())))
    if fmt == "jsonl":
        return [json.loads(line) for line in body.decode().splitlines()]
    return pq.read_table(io.BytesIO(body)).to_pylist()


def download(client, job_id: str, fmt: str, query: str = "") -> bytes:
    response = client.get(f"/api/v1/jobs/{job_id}/results.{fmt}{query}")
    assert response.status_code == 200, response.data
    return response.get_data()


def wait_export(client, export: dict, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while export["state"] not in ("done", "failed"):
        if time.monotonic() > deadline:
            pytest.fail(f"export still {export['state']} after {timeout} s")
        time.sleep(0.2)
        response = client.get(export["links"]["self"])
        assert response.status_code == 200, response.data
        export = response.get_json()
    return export


# --- downloads ----------------------------------------------------------------------------


@pytest.mark.parametrize("granularity", ["file", "segment"])
def test_downloads_in_every_format_hold_the_same_rows(client, settings, labels, granularity):
    job_id = seed_job(settings, labels)
    query = f"?granularity={granularity}"
    suffix = "-segments" if granularity == "segment" else ""
    media = {"csv": "text/csv", "jsonl": "application/x-ndjson"}
    media["parquet"] = "application/vnd.apache.parquet"
    for fmt in FORMATS:
        response = client.get(f"/api/v1/jobs/{job_id}/results.{fmt}{query}")
        assert response.status_code == 200 and response.mimetype == media[fmt]
        disposition = response.headers["Content-Disposition"]
        assert f'filename="aer-{job_id}{suffix}.{fmt}"' in disposition
        body = response.get_data()  # read the streamed body whole, which ends its request
        response.close()
        if fmt == "parquet":  # sent from a file, its size known
            assert response.content_length == len(body)
    rows = {fmt: read_table(fmt, download(client, job_id, fmt, query)) for fmt in FORMATS}
    expected = 3 if granularity == "file" else 4  # no segment for the failed file
    assert len(rows["csv"]) == expected
    assert rows["parquet"] == rows["jsonl"]  # typed values, exactly the same
    for csv_row, json_row in zip(rows["csv"], rows["jsonl"], strict=True):
        assert list(json_row) == list(csv_row)  # the same columns, in the same order
        assert {k: as_csv(v) for k, v in json_row.items()} == csv_row
    first = rows["jsonl"][0]
    assert [k for k in first if k.startswith("p_")] == [f"p_{label}" for label in labels]
    assert isinstance(first["uncertain"], bool) and isinstance(first["confidence"], float)
    if granularity == "file":
        assert [r["file"] for r in rows["jsonl"]] == ["a.wav", "sub/b.wav", "broken.wav"]
        assert first["confidence"] == 0.5523  # rounded as in the CSV
        assert rows["jsonl"][2]["error_code"] == "not_audio"
        assert rows["jsonl"][2][f"p_{labels[0]}"] is None
    else:
        assert [r["channel_name"] for r in rows["jsonl"][:2]] == ["agent", "customer"]


def test_full_precision_applies_to_every_format(client, settings, labels):
    job_id = seed_job(settings, labels)
    for fmt in ("jsonl", "parquet"):
        (row, *_) = read_table(fmt, download(client, job_id, fmt, "?precision=full"))
        assert row["confidence"] == 0.55225501051 and row["duration_s"] == 3.0001234


def test_an_unknown_format_is_a_400(client, settings, labels):
    job_id = seed_job(settings, labels)
    response = client.get(f"/api/v1/jobs/{job_id}/results.xlsx")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "unknown_format"
    assert client.get("/api/v1/jobs/nope/results.jsonl").status_code == 404


# --- exports to a bucket ------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_to_a_bucket_through_the_worker(client, settings, labels, export_bucket, fmt):
    job_id = seed_job(settings, labels)
    body = {"destination": f"s3://{export_bucket}/reports/", "format": fmt}
    body["granularity"] = "segment" if fmt == "jsonl" else "file"
    response = client.post(f"/api/v1/jobs/{job_id}/exports", json=body)
    assert response.status_code == 202, response.data
    export = response.get_json()
    assert export["state"] == "queued" and response.headers["Location"].endswith(export["id"])
    suffix = "-segments" if fmt == "jsonl" else ""
    key = f"reports/aer-{job_id}{suffix}.{fmt}"
    assert export["object"] == f"s3://{export_bucket}/{key}"
    done = wait_export(client, export)
    assert done["state"] == "done", done["error"]
    assert done["error"] is None and done["finished_at"]
    stored = s3_client().get_object(Bucket=export_bucket, Key=key)["Body"].read()
    assert done["bytes"] == len(stored)
    downloaded = download(client, job_id, fmt, f"?granularity={body['granularity']}")
    assert read_table(fmt, stored) == read_table(fmt, downloaded)
    listed = client.get(f"/api/v1/jobs/{job_id}/exports").get_json()["items"]
    assert [(e["id"], e["state"]) for e in listed] == [(export["id"], "done")]


def test_an_export_to_an_object_key_writes_that_object(client, settings, labels, export_bucket):
    job_id = seed_job(settings, labels)
    destination = f"s3://{export_bucket}/named/{job_id}.csv"
    response = client.post(f"/api/v1/jobs/{job_id}/exports", json={"destination": destination})
    done = wait_export(client, response.get_json())
    assert done["state"] == "done" and done["object"] == destination
    stored = s3_client().get_object(Bucket=export_bucket, Key=f"named/{job_id}.csv")
    assert stored["Body"].read() == download(client, job_id, "csv")


def test_an_export_to_a_bucket_that_does_not_exist_fails_with_the_reason(client, settings, labels):
    job_id = seed_job(settings, labels)
    body = {"destination": f"s3://{GONE}/x/", "format": "parquet"}
    response = client.post(f"/api/v1/jobs/{job_id}/exports", json=body)
    assert response.status_code == 202
    failed = wait_export(client, response.get_json())
    assert failed["state"] == "failed" and failed["bytes"] is None
    assert "NoSuchBucket" in failed["error"] and GONE in failed["error"]
    assert not list(settings.temp_dir.glob("*.parquet"))  # the temporary file is gone


def test_exports_are_refused_outside_the_allowed_buckets(client, settings, labels, bucket):
    job_id = seed_job(settings, labels)
    url = f"/api/v1/jobs/{job_id}/exports"
    response = client.post(url, json={"destination": f"s3://{bucket}/x/"})
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "source_not_allowed"
    response = client.post(url, json={"destination": "https://example.com/x/"})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "bad_source"
    response = client.post(url, json={"destination": "s3://x/", "format": "xlsx"})
    assert response.status_code == 422
    assert client.get(url).get_json()["items"] == []


def test_an_unfinished_job_cannot_be_exported(client, settings, labels, export_bucket):
    job_id = seed_job(settings, labels, finished=False)
    body = {"destination": f"s3://{export_bucket}/x/"}
    response = client.post(f"/api/v1/jobs/{job_id}/exports", json=body)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "job_not_finished"


def test_deleting_a_job_deletes_its_exports(client, settings, labels, export_bucket):
    job_id = seed_job(settings, labels)
    body = {"destination": f"s3://{export_bucket}/deleted/"}
    export = client.post(f"/api/v1/jobs/{job_id}/exports", json=body).get_json()
    wait_export(client, export)
    assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 204
    with session_scope(settings) as s:
        assert s.scalar(select(func.count()).where(Export.job_id == job_id)) == 0
    assert client.get(f"/api/v1/jobs/{job_id}/exports").status_code == 404


def test_the_sweep_sends_an_export_whose_message_was_lost(client, settings, labels, export_bucket):
    job_id = seed_job(settings, labels)
    with session_scope(settings) as s:
        export = exports.create_export(
            s,
            settings,
            s.get(Job, job_id),
            destination=f"s3://{export_bucket}/lost/",
            fmt="csv",
            options={},
        )
        export.created_at = utcnow() - timedelta(seconds=settings.lease_s + 1)
        export_id = export.id  # never enqueued: as if the broker had lost the message
    done = wait_export(client, client.get(f"/api/v1/jobs/{job_id}/exports/{export_id}").get_json())
    assert done["state"] == "done"
    assert s3_client().head_object(Bucket=export_bucket, Key=f"lost/aer-{job_id}.csv")


# --- the CLI ------------------------------------------------------------------------------


def test_cli_downloads_a_format_and_exports_to_a_bucket(app, settings, labels, export_bucket,
                                                       tmp_path, monkeypatch):  # fmt: skip
    from api.cli import cli
    from api.cli.embedded import http_server

    job_id = seed_job(settings, labels)
    monkeypatch.setenv("AER_API_KEY", create_key(settings))
    with http_server(app, "127.0.0.1", 0) as url:
        out = tmp_path / "results.parquet"
        args = ["export", job_id, "--format", "parquet", "-o", str(out), "--url", url]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert [r["file"] for r in pq.read_table(out).to_pylist()][:2] == ["a.wav", "sub/b.wav"]
        to = f"s3://{export_bucket}/cli/"
        args = ["export", job_id, "--format", "jsonl", "--to", to, "--url", url]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert f"wrote {to}aer-{job_id}.jsonl" in result.stderr
        stored = s3_client().get_object(Bucket=export_bucket, Key=f"cli/aer-{job_id}.jsonl")
        assert len(stored["Body"].read().splitlines()) == 3
        result = CliRunner().invoke(cli, [*args[:4], "--to", f"s3://{GONE}/", "--url", url])
        assert result.exit_code == 1 and "NoSuchBucket" in result.output
