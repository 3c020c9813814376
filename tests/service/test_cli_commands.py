"""The ``aer`` client commands against the real API app served over HTTP (real SQLite, real
Redis, no worker): folder uploads with progress, short job ids, ``jobs``, ``cancel``,
``results``, ``export --full-precision`` and the refusal of a folder outside the roots."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import uuid
from datetime import timedelta

import pytest
from click.testing import CliRunner

from api.cli import cli
from api.store import jobs, processing
from api.store.db import session_scope
from api.store.tables import Job, utcnow
from core.predict import FilePrediction
from tests.conftest import FIXTURE_CLIPS

CLIPS = sorted(FIXTURE_CLIPS.glob("*.flac"))
CONFIDENCE = 0.5522550105107497

pytestmark = pytest.mark.skipif(len(CLIPS) < 2, reason="fixture clips missing")


@pytest.fixture(scope="module")
def url(app):
    from api.cli.embedded import http_server

    with http_server(app, "127.0.0.1", 0) as base:
        yield base


@pytest.fixture(scope="module", autouse=True)
def _key_in_the_environment(api_key):
    """The CLI reads its API key from AER_API_KEY, as a user's shell would give it."""
    os.environ["AER_API_KEY"] = api_key
    yield
    os.environ.pop("AER_API_KEY", None)


def aer(*args: str, url: str):
    return CliRunner().invoke(cli, [*args, "--url", url])


def seed(api_settings, done: int, *, pending: int = 0, job_id: str | None = None) -> str:
    """A job with ``done`` analysed files and ``pending`` waiting ones (labels calm/sad)."""
    with session_scope(api_settings) as s:
        job = jobs.create_job(
            s,
            source_kind="folder",
            source="/x",
            options={},
            model_name="gone",
            job_id=job_id,
            tenant_id="default",
        )
        entries = [(f"d{i % 2}/{i:04d}.wav", f"/x/{i}") for i in range(done + pending)]
        ids = processing.insert_files(s, job.id, entries, lease_until=utcnow() + timedelta(hours=1))
        for file_id, (rel, _) in zip(ids[:done], entries, strict=False):
            pred = FilePrediction(
                path=rel,
                label="calm",
                confidence=CONFIDENCE,
                probabilities={"calm": CONFIDENCE, "sad": 1 - CONFIDENCE},
                duration_s=3.0001234,
                sample_rate=16000,
                channels=1,
            )
            processing.record_result(s, file_id, pred, "v1")
        processing.finish_enumeration(s, job.id)
        return job.id


def test_submit_uploads_a_folder_recursively_with_progress(url, api_settings, tmp_path):
    calls = tmp_path / "calls"
    for rel, clip in [("d1/call.flac", CLIPS[0]), ("d2/call.flac", CLIPS[1])]:
        (calls / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, calls / rel)
    (calls / "notes.txt").write_text("not audio")
    (calls / ".cache").mkdir()
    shutil.copy(CLIPS[0], calls / ".cache" / "hidden.flac")
    result = aer("submit", str(calls), url=url)
    assert result.exit_code == 0, result.output
    job_id = result.stdout.strip()
    assert "upload" in result.stderr and "2/2 files" in result.stderr
    folder = api_settings.uploads_dir / job_id
    stored = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert stored == ["calls/d1/call.flac", "calls/d2/call.flac"]
    assert (folder / "calls/d2/call.flac").read_bytes() == CLIPS[1].read_bytes()

    quiet = aer("submit", str(calls / "d1"), str(CLIPS[1]), "--quiet", url=url)
    assert quiet.exit_code == 0 and quiet.stderr == ""
    folder = api_settings.uploads_dir / quiet.stdout.strip()
    assert sorted(p.name for p in folder.iterdir()) == [CLIPS[1].name, "d1"]

    (tmp_path / "empty").mkdir()
    result = aer("submit", str(tmp_path / "empty"), url=url)
    assert result.exit_code == 1 and "no audio files" in result.output


def test_a_refused_folder_says_how_to_allow_it(url, tmp_path):
    result = aer("submit", "--folder", str(tmp_path), url=url)
    assert result.exit_code == 1
    assert "403" in result.output and "AER_ALLOWED_ROOTS" in result.output
    assert "--allow-root" in result.output


def test_commands_take_a_unique_prefix_of_the_job_id(url, api_settings):
    stem = uuid.uuid4().hex[:7]
    first = seed(api_settings, 1, job_id=stem + "0" + "0" * 24)
    seed(api_settings, 1, job_id=stem + "1" + "0" * 24)
    result = aer("status", stem + "0", url=url)
    assert result.exit_code == 0, result.output
    assert f"job {first}:" in result.output
    result = aer("status", stem, url=url)
    assert result.exit_code == 1 and "409" in result.output and "several jobs" in result.output
    for command in ("results", "export", "cancel"):
        assert aer(command, stem + "0", url=url).exit_code == 0, command
    assert aer("status", stem[:5], url=url).exit_code == 1  # too short to look up


def test_jobs_lists_newest_first_and_filters_by_state(url, api_settings):
    older, newer = seed(api_settings, 1, pending=1), seed(api_settings, 1, pending=1)
    with session_scope(api_settings) as s:
        jobs.cancel_job(s, older, tenant_id="default")
    result = aer("jobs", "--limit", "500", url=url)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["id", "state", "done", "failed", "model", "created"]
    ids = [line.split()[0] for line in lines[1:]]
    assert ids.index(newer) < ids.index(older)
    row = next(line.split() for line in lines if line.startswith(newer))
    assert row[1:5] == ["queued", "1/2", "0", "gone"]
    cancelled = aer("jobs", "--state", "cancelled", "--limit", "500", url=url).output
    assert older in cancelled and newer not in cancelled
    page = json.loads(aer("jobs", "--json", "--limit", "1", url=url).output)
    assert len(page["items"]) == 1 and page["total"] >= 2
    assert aer("jobs", "--state", "done", url=url).exit_code == 2


def test_cancel_stops_the_job_and_keeps_its_results(url, api_settings):
    job_id = seed(api_settings, 2, pending=3)
    result = aer("cancel", job_id[:8], url=url)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"job {job_id}: cancelled, 2 done, 0 failed of 5")
    with session_scope(api_settings) as s:
        assert s.get(Job, job_id).state == "cancelled"
    jsonl = aer("results", job_id, "--jsonl", "--state", "done", url=url).output
    assert len(jsonl.splitlines()) == 2
    assert aer("cancel", "0123456789abcdef", url=url).exit_code == 1


def test_results_follow_every_page_as_a_table_or_json_lines(url, api_settings):
    job_id = seed(api_settings, 505, pending=2)  # more than one page of 500
    result = aer("results", job_id, "--jsonl", url=url)
    assert result.exit_code == 0, result.output
    items = [json.loads(line) for line in result.output.splitlines()]
    assert len(items) == 507 and len({i["id"] for i in items}) == 507
    assert items[0]["file"] == "d0/0000.wav" and items[0]["confidence"] == CONFIDENCE
    lines = aer("results", job_id, "--state", "pending", url=url).output.splitlines()
    assert lines[0].split() == ["file", "state", "label", "confidence", "uncertain", "error"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["d1/0505.wav", "pending", "-"],
        ["d0/0506.wav", "pending", "-"],
    ]
    table = aer("results", job_id, url=url).output.splitlines()
    assert len(table) == 508 and table[1].split()[:4] == ["d0/0000.wav", "done", "calm", "0.552"]


def test_export_rounds_unless_full_precision(url, api_settings, tmp_path):
    job_id = seed(api_settings, 1)
    rows = {}
    for flag in ("", "--full-precision"):
        out = tmp_path / f"export{flag}.csv"
        result = aer("export", job_id, "-o", str(out), *([flag] if flag else []), url=url)
        assert result.exit_code == 0, result.output
        (rows[flag],) = csv.DictReader(io.StringIO(out.read_text()))
    assert (rows[""]["confidence"], rows[""]["p_sad"]) == ("0.5523", "0.4477")
    assert rows[""]["duration_s"] == "3.0"
    assert rows["--full-precision"]["confidence"] == repr(CONFIDENCE)
    assert rows["--full-precision"]["duration_s"] == "3.0001234"


def test_status_follow_shows_progress_until_the_job_ends(url, api_settings):
    job_id = seed(api_settings, 3)
    with session_scope(api_settings) as s:
        s.get(Job, job_id).state = "succeeded"
    result = aer("status", job_id[:8], "--follow", url=url)
    assert result.exit_code == 0, result.output
    assert f"job {job_id[:8]}" in result.stderr  # the progress bar
    assert f"job {job_id}: succeeded, 3 done, 0 failed of 3" in result.stderr
    with session_scope(api_settings) as s:
        s.get(Job, job_id).state = "failed"
    assert aer("status", job_id, "--follow", url=url).exit_code == 1


@pytest.fixture
def object_url(make_app):
    """A server that lets jobs read the bucket ``calls`` and URLs of ``media.example.com``."""
    from api.cli.embedded import http_server

    app = make_app(allowed_buckets=("calls",), allowed_url_hosts=("media.example.com",))
    with http_server(app, "127.0.0.1", 0) as base:
        yield base


def _job(api_settings, output: str) -> Job:
    with session_scope(api_settings) as s:
        return s.get(Job, output.strip().splitlines()[-1])


def test_submit_a_bucket_prefix_or_urls(object_url, api_settings, tmp_path):
    result = aer("submit", "s3://calls/2026-12", "--pattern", "*.wav", url=object_url)
    assert result.exit_code == 0, result.output
    job = _job(api_settings, result.output)
    assert (job.source_kind, job.source) == ("s3", "s3://calls/2026-12/")
    assert job.options["pattern"] == "*.wav" and job.options["recursive"] is True

    urls = [f"https://media.example.com/{n}.wav" for n in ("a", "b", "c")]
    result = aer("submit", *urls[:2], url=object_url)
    assert result.exit_code == 0, result.output
    assert _job(api_settings, result.output).source.splitlines() == urls[:2]
    listed = tmp_path / "urls.txt"
    listed.write_text(f"# calls of the day\n{urls[1]}\n\n{urls[2]}\n")
    result = aer("submit", urls[0], "--urls-file", str(listed), url=object_url)
    assert result.exit_code == 0, result.output
    assert _job(api_settings, result.output).source.splitlines() == urls


def test_submit_refuses_sources_it_cannot_send(object_url, tmp_path):
    result = aer("submit", "s3://archive/2026/", url=object_url)
    assert result.exit_code == 1
    assert "403" in result.output and "AER_ALLOWED_BUCKETS" in result.output
    result = aer("submit", "https://elsewhere.example.com/a.wav", url=object_url)
    assert result.exit_code == 1 and "AER_ALLOWED_URL_HOSTS" in result.output
    clip = str(CLIPS[0])
    paths = tmp_path / "paths.txt"
    paths.write_text(f"https://media.example.com/a.wav\n{clip}\n")
    for args in (
        ("s3://calls/a/", clip),
        ("s3://calls/a/", "s3://calls/b/"),
        ("s3://calls/a/", "https://media.example.com/a.wav"),
        ("https://media.example.com/a.wav", clip),
        (clip, "--pattern", "*.wav"),
        ("https://media.example.com/a.wav", "--no-recursive"),
        ("--urls-file", clip),
        ("--urls-file", str(paths)),
        ("--folder", str(tmp_path), "s3://calls/a/"),
        (str(tmp_path / "missing.wav"),),
    ):
        result = aer("submit", *args, url=object_url)
        assert result.exit_code == 2, (args, result.output)
