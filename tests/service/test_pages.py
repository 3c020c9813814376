"""The dashboard's pages through the Flask test client, over a real migrated SQLite database:
every page renders, fails readably, loads nothing from another host; the results table pages
by keyset (no OFFSET, one bounded statement per page, also 100,000 files deep); the call's audio
is streamed with range requests; cancel and delete forms; the guard hook and the Markdown."""

from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy import event, insert, select

from api.store import jobs
from api.store.db import get_engine, session_scope
from api.store.tables import Export, File, Job, Segment, utcnow
from core.samples import demo_clips
from tests.auth import login, page_token

LABELS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
#: An absolute URL to a host other than this machine.
EXTERNAL = re.compile(r"\b(?:https?|wss?):(?://)?(?!(?:localhost|127\.0\.0\.1)\b)[\w.-]+", re.I)


def summary(dominant: str, worst: str) -> dict:
    shares = {dominant: 0.75, worst: 0.25}
    return {
        "dominant": dominant, "shares": shares, "speech_s": 2.5, "silence_s": 0.8,
        "duration_s": 3.3, "n_segments": 2,
        "most_negative": {"channel": 0, "start_s": 1.5, "end_s": 3.0, "label": worst, "score": 0.6},
    }  # fmt: skip


@pytest.fixture
def client(app, api_key):
    """A test client logged in to the pages with the tests' admin key."""
    return login(app.test_client(), api_key)


@pytest.fixture(scope="module")
def seeded(api_settings) -> dict:
    """A finished job of 6 files (4 done, 2 failed, segments on the first), its audio stored
    in the uploads folder like an upload's, and a running job."""
    clip = demo_clips()[0]
    with session_scope(api_settings) as s:
        job = jobs.create_job(
            s, source_kind="upload", source="x", options={"name": "Monday calls"},
            model_name="aer8",
            tenant_id="default",
        )  # fmt: skip
        job.state, job.started_at, job.finished_at = "completed_with_errors", utcnow(), utcnow()
        folder = api_settings.uploads_dir / job.id
        folder.mkdir(parents=True)
        shutil.copy(clip, folder / "call-0.flac")
        specs = [("happy", 0.91), ("sad", 0.35), ("angry", 0.62), ("happy", 0.48)]
        files = []
        for i, (label, confidence) in enumerate(specs):
            files.append(
                File(
                    job_id=job.id,
                    rel_path=f"call-{i}.flac",
                    path=str(folder / f"call-{i}.flac"),
                    state="done",
                    label=label,
                    confidence=confidence,
                    duration_s=3.3,
                    probabilities={label: confidence},
                    processed_at=utcnow(),
                    segment_count=2,
                    summary=summary(label, "angry"),
                    ood=0.999 if i == 0 else 0.01,
                )  # fmt: skip
            )
        files.append(File(job_id=job.id, rel_path="broken.wav", path=str(folder / "broken.wav"),
                          state="failed", error="cannot decode: not a WAV file",
                          error_code="decode_error"))  # fmt: skip
        files.append(File(job_id=job.id, rel_path="<b>odd</b>.wav", path="/elsewhere/odd.wav",
                          state="failed", error="<script>alert(1)</script>",
                          error_code="decode_error"))  # fmt: skip
        s.add_all(files)
        s.flush()
        first = files[0]
        s.add_all([
            Segment(file_id=first.id, job_id=job.id, channel=0, start_s=0.2, end_s=1.4,
                    label="happy", confidence=0.9, probabilities={"happy": 0.9}),
            Segment(file_id=first.id, job_id=job.id, channel=0, start_s=1.5, end_s=3.0,
                    label="angry", confidence=0.3, probabilities={"angry": 0.3}),
        ])  # fmt: skip
        running = jobs.create_job(
            s,
            source_kind="folder",
            source="/data/tuesday",
            options={},
            model_name="aer8",
            tenant_id="default",
        )
        running.state, running.started_at = "running", utcnow()
        s.add(File(job_id=running.id, rel_path="a.wav", path="/data/tuesday/a.wav"))
        s.flush()
        return {
            "job": job.id, "running": running.id, "files": [f.id for f in files],
            "clip": clip, "folder": folder,
        }  # fmt: skip


class Links(HTMLParser):
    """Every attribute value and inline script/style text of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.values: list[str] = []
        self._raw = False

    def handle_starttag(self, tag, attrs):
        self.values += [value or "" for _, value in attrs]
        self._raw = tag in ("script", "style")

    def handle_endtag(self, tag):
        self._raw = False

    def handle_data(self, data):
        if self._raw:
            self.values.append(data)


def page_urls(seeded) -> list[str]:
    job, file_id = seeded["job"], seeded["files"][0]
    return [
        "/", "/?state=running", "/?q=monday", "/jobs/new", "/models", f"/jobs/{job}",
        f"/jobs/{job}?failed=1", f"/jobs/{job}?sort=confidence", f"/jobs/{seeded['running']}",
        f"/jobs/{job}/files/{file_id}", f"/jobs/{job}/files/{seeded['files'][4]}",
        "/no/such/page", f"/jobs/{job}/files/999999",
    ]  # fmt: skip


def test_every_page_renders_as_html(client, seeded):
    for url in page_urls(seeded):
        response = client.get(url)
        assert response.mimetype == "text/html", url
        assert response.status_code in (200, 404), (url, response.status_code)
        text = response.get_data(as_text=True)
        assert "<main" in text and "Traceback" not in text, url


def test_no_page_loads_anything_from_another_host(client, seeded):
    scanned = 0
    for url in page_urls(seeded):
        parser = Links()
        parser.feed(client.get(url).get_data(as_text=True))
        assert not [v for v in parser.values if EXTERNAL.search(v) or v.startswith("//")], url
        scanned += 1
    static = Path(__file__).resolve().parents[2] / "api" / "web" / "pages" / "static"
    for path in static.iterdir():
        body = client.get(f"/ui/static/{path.name}")
        assert body.status_code == 200
        assert not EXTERNAL.search(body.get_data(as_text=True)), path.name
        body.close()
    assert scanned and EXTERNAL.search('<script src="https://cdn.example.org/x.js">')
    assert not EXTERNAL.search("fetch('http://127.0.0.1:5000/api/v1/jobs')")


def test_jobs_list_filters_and_names(client, seeded):
    text = client.get("/").get_data(as_text=True)
    assert "Monday calls" in text and "tuesday" in text  # a folder job is named by its folder
    only_running = client.get("/?state=running").get_data(as_text=True)
    assert "tuesday" in only_running and "Monday calls" not in only_running
    found = client.get("/?q=MONDAY").get_data(as_text=True)
    assert "Monday calls" in found and "tuesday" not in found
    assert f'data-poll="/api/v1/jobs/{seeded["running"]}"' in only_running
    assert "No jobs match" in client.get("/?q=nothing-like-this").get_data(as_text=True)
    api = client.get("/api/v1/jobs?q=monday").get_json()
    assert [j["id"] for j in api["items"]] == [seeded["job"]]


def rows_of(text: str) -> list[str]:
    return re.findall(r'<tr data-file="(\d+)">', text)


def test_results_table_filters_sorts_and_escapes(client, make_app, seeded, api_key):
    job, ids = seeded["job"], seeded["files"]
    text = client.get(f"/jobs/{job}").get_data(as_text=True)
    assert rows_of(text) == [str(i) for i in ids]
    assert "cannot decode: not a WAV file" in text  # the reason of a failed file
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;" in text
    assert "Emotion distribution of 4 files" in text
    failed = client.get(f"/jobs/{job}?failed=1").get_data(as_text=True)
    assert rows_of(failed) == [str(ids[4]), str(ids[5])]
    happy = client.get(f"/jobs/{job}?label=happy").get_data(as_text=True)
    assert rows_of(happy) == [str(ids[0]), str(ids[3])]
    confident = client.get(f"/jobs/{job}?min_confidence=0.6").get_data(as_text=True)
    assert rows_of(confident) == [str(ids[0]), str(ids[2])]
    strict = login(make_app(ood_above=0.9).test_client(), api_key)
    for app_client in (client, strict):
        uncertain = app_client.get(f"/jobs/{job}?uncertain=1").get_data(as_text=True)
        api = app_client.get(f"/api/v1/jobs/{job}/results").get_json()["items"]
        flagged = [str(r["id"]) for r in api if r["uncertain"]]
        assert rows_of(uncertain) == flagged and flagged  # the API's rule
    assert str(ids[0]) in flagged and "off-domain</span>" in uncertain  # confident, off-domain
    lowest = client.get(f"/jobs/{job}?sort=confidence").get_data(as_text=True)
    assert rows_of(lowest) == [str(ids[i]) for i in (1, 3, 2, 0)]
    highest = client.get(f"/jobs/{job}?sort=-confidence").get_data(as_text=True)
    assert rows_of(highest) == [str(ids[i]) for i in (0, 2, 3, 1)]
    junk = client.get(f"/jobs/{job}?sort=drop&after=x:y&min_confidence=nan&label=<x>")
    assert junk.status_code == 200 and len(rows_of(junk.get_data(as_text=True))) == 6


def test_call_page_has_timeline_player_summary_and_label_forms(client, seeded):
    job, file_id = seeded["job"], seeded["files"][0]
    text = client.get(f"/jobs/{job}/files/{file_id}").get_data(as_text=True)
    assert f'src="/jobs/{job}/files/{file_id}/audio"' in text
    assert text.count('class="seg"') == 1 and text.count('class="seg uncertain"') == 1
    assert 'data-start="1.5" data-end="3.0"' in text
    assert "Dominant emotion" in text and "Most negative" in text and "Silence" in text
    assert f'data-api="/api/v1/jobs/{job}/files/{file_id}/label"' in text
    assert re.search(rf'data-api="/api/v1/jobs/{job}/files/{file_id}/segments/\d+/label"', text)
    failed = client.get(f"/jobs/{job}/files/{seeded['files'][4]}").get_data(as_text=True)
    assert "This file failed: cannot decode: not a WAV file" in failed


def test_audio_is_streamed_with_range_requests(client, seeded):
    job, ids = seeded["job"], seeded["files"]
    clip = seeded["clip"].read_bytes()
    whole = client.get(f"/jobs/{job}/files/{ids[0]}/audio")
    assert whole.status_code == 200 and whole.data == clip and whole.mimetype == "audio/flac"
    assert whole.headers["Accept-Ranges"] == "bytes"
    part = client.get(f"/jobs/{job}/files/{ids[0]}/audio", headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206 and part.data == clip[100:1100]
    assert part.headers["Content-Range"] == f"bytes 100-1099/{len(clip)}"
    gone = client.get(f"/jobs/{job}/files/{ids[1]}/audio")  # never stored
    assert gone.status_code == 404 and "no longer stored" in gone.get_data(as_text=True)
    outside = client.get(f"/jobs/{job}/files/{ids[5]}/audio")  # a path outside every root
    assert outside.status_code == 404
    other_job = client.get(f"/jobs/{seeded['running']}/files/{ids[0]}/audio")
    assert other_job.status_code == 404


def test_errors_are_readable_pages_and_the_api_keeps_json(client, seeded):
    missing = client.get("/jobs/nope")
    assert missing.status_code == 404 and missing.mimetype == "text/html"
    assert "no job &#39;nope&#39;" in missing.get_data(as_text=True)
    assert client.get("/jobs/nope/delete").status_code == 405
    api = client.get("/api/v1/jobs/nope")
    assert api.status_code == 404 and api.get_json()["error"]["code"] == "job_not_found"


def test_a_degraded_service_says_which_part_is_down(make_app, api_settings, client):
    down = make_app(database_url="postgresql+psycopg://nobody@127.0.0.1:1/none").test_client()
    cookie = client.get_cookie("aer_session")  # logged in; the same data dir: the same secret
    down.set_cookie(cookie.key, cookie.value)
    response = down.get("/")
    text = response.get_data(as_text=True)
    assert response.status_code == 503 and response.mimetype == "text/html"
    assert "The service is degraded" in text and "the database cannot be reached" in text
    assert "Traceback" not in text and "psycopg" not in text
    get_engine(api_settings.database_url)  # the usual database is untouched


def test_the_guard_hook_covers_every_page(client, seeded, monkeypatch):
    from flask import abort

    from api.web import pages

    monkeypatch.setattr(pages, "guard", lambda: abort(403))
    for url in page_urls(seeded)[:-2]:
        response = client.get(url)
        assert response.status_code == 403 and "Not allowed" in response.get_data(as_text=True)
    assert client.post(f"/jobs/{seeded['job']}/delete").status_code == 403
    assert client.get("/api/v1/jobs").status_code == 200  # the JSON API is not a page


def test_cancel_and_delete_forms(client, api_settings, seeded):
    with session_scope(api_settings) as s:
        job = jobs.create_job(
            s, source_kind="upload", source="x", options={}, model_name="aer8", tenant_id="default"
        )
        job_id = job.id
    (api_settings.uploads_dir / job_id).mkdir(parents=True)
    assert client.post(f"/jobs/{job_id}/cancel").status_code == 400  # no CSRF token
    form = {"csrf_token": page_token(client)}
    response = client.post(f"/jobs/{job_id}/cancel", data=form)
    assert response.status_code == 303 and response.location == f"/jobs/{job_id}?notice=cancel"
    assert "The job is cancelled." in client.get(response.location).get_data(as_text=True)
    response = client.post(f"/jobs/{job_id}/delete", data=form)
    assert response.status_code == 303 and response.location.startswith("/?deleted=")
    with session_scope(api_settings) as s:
        assert s.get(Job, job_id) is None
    assert not (api_settings.uploads_dir / job_id).exists()
    assert client.post(f"/jobs/{job_id}/delete", data=form).status_code == 404


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "–"), (0.4, "0 s"), (59.4, "59 s"), (61, "1 min 1 s"), (7322, "2 h 02 min")],
)
def test_durations_read_like_a_person_says_them(seconds, text):
    from api.web.pages.display import duration

    assert duration(seconds) == text


def test_model_cards_are_rendered_escaped():
    from api.web.pages.markdown import render

    html = render(
        "# Card\n\n| a | b |\n| --- | --- |\n| `x<y` | **bold** |\n\n- one\n- *two*\n\n"
        "<img src=x onerror=alert(1)> see https://example.org\n\n```\n<b>\n```"
    )
    assert "<h2>Card</h2>" in html and "<th>a</th>" in html and "<code>x&lt;y</code>" in html
    assert "<strong>bold</strong>" in html and "<li><em>two</em></li>" in html
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<pre><code>&lt;b&gt;</code></pre>" in html and "<a " not in html


def test_new_job_offers_the_apis_models_and_the_channel_names(client):
    models = client.get("/api/v1/models").get_json()["items"]
    text = client.get("/jobs/new").get_data(as_text=True)
    offered = re.findall(r'<option value="([^"]+)"[^>]*>[^<]*\(', text.split("up-segmentation")[0])
    assert offered == [m["name"] for m in models]
    default = next(m["name"] for m in models if m["default"])
    assert re.search(rf'<option value="{default}" selected>', text)
    assert "0 = agent, 1 = customer" in text and 'data-max-mb="512"' in text


def test_models_page_marks_the_default_and_shows_cards(client):
    models = client.get("/api/v1/models").get_json()["items"]
    text = client.get("/models").get_data(as_text=True)
    for model in models:
        assert f'id="model-{model["name"]}"' in text
    default = next(m["name"] for m in models if m["default"])
    assert re.search(rf'href="#model-{default}">{default}</a> <span class="tag default">', text)
    assert "<table>" in text  # the cards' Markdown tables


# --- the results table at 100,000 files ----------------------------------------------------------

BIG = 100_000


@pytest.fixture(scope="module")
def big_job(api_settings) -> str:
    """A finished job of 100,000 files (and a neighbour job, so filters must hold)."""
    with session_scope(api_settings) as s:
        job = jobs.create_job(
            s,
            source_kind="folder",
            source="/big",
            options={},
            model_name="aer8",
            tenant_id="default",
        )
        job.state = "succeeded"
        rows = [
            {"job_id": job.id, "rel_path": f"{i:06d}.wav", "path": f"/big/{i:06d}.wav",
             "state": "done", "label": LABELS[i % 8], "confidence": (i * 7919 % 1000) / 1000}
            for i in range(BIG)
        ]  # fmt: skip
        s.execute(insert(File), rows)
        return job.id


def statements_of(app, settings, get) -> tuple[list[str], object]:
    """The SQL run by ``get()`` and its result; fails on any OFFSET but SQLite's ``OFFSET 0``
    after a LIMIT."""
    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, *args):
        if statement.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE", "DELETE")):
            seen.append((statement, parameters))  # not the driver's own (PRAGMA on connecting)

    engine = get_engine(settings.database_url)
    event.listen(engine, "before_cursor_execute", record)
    try:
        result = get()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    for statement, parameters in seen:
        if "OFFSET" in statement.upper():
            assert statement.rstrip().endswith("OFFSET ?") and parameters[-1] == 0, statement
    return [statement for statement, _ in seen], result


@pytest.mark.parametrize("sort", ["id", "confidence", "-confidence"])
def test_deep_result_pages_are_keyset_pages(app, client, api_settings, big_job, sort):
    first = client.get(f"/jobs/{big_job}?sort={sort}").get_data(as_text=True)
    follow = re.search(r'rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    cursor = follow.split("after=")[1]
    with session_scope(api_settings) as s:  # a cursor 90 % of the way into the job
        deep = s.execute(
            select(File.id, File.confidence).where(File.job_id == big_job).order_by(File.id)
        ).all()[int(BIG * 0.9)]
    deep_cursor = str(deep.id) if sort == "id" else f"{deep.confidence!r}:{deep.id}"
    urls = [f"/jobs/{big_job}?sort={sort}", follow, follow.replace(cursor, deep_cursor)]
    counts = []
    for url in urls:
        statements, page = statements_of(app, api_settings, lambda u=url: client.get(u))
        text = page.get_data(as_text=True)
        assert page.status_code == 200 and len(rows_of(text)) == 50, (page.status_code, text[-800:])
        # (the login's key lookup, and its last-use stamp once a minute, are not the page's)
        counts.append(len([q for q in statements if "api_keys" not in q]))
        page_query = [q for q in statements if "FROM files" in q and "LIMIT" in q]
        assert len(page_query) == 1, statements  # the page itself: one bounded query
        with get_engine(api_settings.database_url).connect() as conn:
            plan = conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT * FROM files WHERE job_id = ? ORDER BY id LIMIT 51",
                (big_job,),
            ).all()
        assert not [row for row in plan if row[-1].startswith("SCAN files")], plan
    assert counts[0] == counts[1] == counts[2]  # as many statements on page 1800 as on page 1


@pytest.mark.parametrize("order", ["id", "confidence", "-confidence"])
def test_keyset_pages_cover_the_job_in_order(api_settings, big_job, order):
    from api.store.results import result_page

    with session_scope(api_settings) as s:
        key = File.id if order == "id" else File.confidence
        key = key.desc() if order.startswith("-") else key
        tie = File.id.desc() if order.startswith("-") else File.id
        truth = s.scalars(
            select(File.id).where(File.job_id == big_job, File.label == "sad").order_by(key, tie)
        ).all()
        seen, after_id, after_confidence = [], None, None
        while True:
            rows, next_id = result_page(
                s, big_job, after_id=after_id, after_confidence=after_confidence, limit=1000,
                label="sad", order=order,
            )  # fmt: skip
            seen += [row.id for row in rows]
            if next_id is None:
                break
            after_id, after_confidence = rows[-1].id, rows[-1].confidence
        assert seen == list(truth) and len(seen) == BIG // 8


# --- jobs from a bucket or URLs; downloads and bucket exports --------------------------------

REMOTE = {"allowed_buckets": ("calls", "reports/aer"), "allowed_url_hosts": ("*.example.com",)}


def test_new_job_offers_buckets_and_urls_only_when_allowed(client, make_app, api_key):
    text = client.get("/jobs/new").get_data(as_text=True)
    assert 'id="bucket-form"' not in text and 'id="urls-form"' not in text
    allowed = login(make_app(**REMOTE).test_client(), api_key)
    text = allowed.get("/jobs/new").get_data(as_text=True)
    assert 'id="bucket-form"' in text and 'id="urls-form"' in text
    assert "<code>s3://calls/</code>, <code>s3://reports/aer/</code>" in text
    assert '<option value="s3://calls/">' in text and "<code>*.example.com</code>" in text
    for form in ("bucket", "urls"):
        assert f'id="{form}-form" class="job-form" data-api="/api/v1/jobs"' in text
    for field in ("source", "bucket-pattern", "urls", "s3-name", "url-model"):  # labelled
        assert f'<label for="{field}">' in text and f'id="{field}"' in text
    only_urls = login(make_app(allowed_url_hosts=("media.example.com",)).test_client(), api_key)
    text = only_urls.get("/jobs/new").get_data(as_text=True)
    assert 'id="bucket-form"' not in text and 'id="urls-form"' in text


def test_the_pages_refused_sources_come_back_as_the_apis_errors(make_app, api_key):
    """What the forms' script sends (session cookie, X-CSRF-Token, JSON) and what it shows."""
    page = login(make_app(**REMOTE).test_client(), api_key)
    del page.environ_base["HTTP_AUTHORIZATION"]  # the login session only, as in a browser
    token = page_token(page)
    refused = [
        ("source", "s3://elsewhere/calls/", 403, "source_not_allowed"),
        ("source", "s3://Not_A_Bucket/x/", 400, "bad_source"),
        ("urls", ["https://evil.example.org/a.wav"], 403, "source_not_allowed"),
        ("urls", ["http://media.example.com/a.wav"], 400, "bad_source"),
    ]
    for field, value, status, code in refused:
        response = page.post("/api/v1/jobs", json={field: value}, headers={"X-CSRF-Token": token})
        assert (response.status_code, response.get_json()["error"]["code"]) == (status, code)
    no_token = page.post("/api/v1/jobs", json={"source": "s3://calls/x/"})
    assert no_token.status_code == 403  # the session alone is not enough
    script = page.get("/ui/static/aer.js").get_data(as_text=True)
    assert '"source_not_allowed"' in script and '"bad_source"' in script


def test_job_page_links_every_download(client, seeded):
    from api.store.formats import FORMATS
    from api.web.pages.jobs import FORMAT_NAMES

    assert tuple(FORMAT_NAMES) == FORMATS  # a format the API gains is named on the page
    job = seeded["job"]
    text = client.get(f"/jobs/{job}").get_data(as_text=True)
    for fmt, name in (("csv", "CSV"), ("jsonl", "JSON Lines"), ("parquet", "Parquet")):
        files = f"/api/v1/jobs/{job}/results.{fmt}"
        assert f'href="{files}" download>{name} (files)</a>' in text
        assert f'href="{files}?granularity=segment" download>{name} (segments)</a>' in text
        assert client.get(files).status_code == 200
    assert 'id="export-form"' not in text and "Export to a bucket" not in text
    assert '<dd class="source">uploaded files</dd>' in text


def test_job_page_exports_to_allowed_buckets_and_lists_exports(make_app, api_key, seeded,
                                                               api_settings):  # fmt: skip
    from api.store import exports

    page = login(make_app(**REMOTE).test_client(), api_key)
    job = seeded["job"]
    text = page.get(f"/jobs/{job}").get_data(as_text=True)
    assert f'id="export-form" class="inline-form" data-api="/api/v1/jobs/{job}/exports"' in text
    assert 'value="s3://calls/"' in text and "<code>s3://reports/aer/</code>" in text
    assert 'name="format"' in text and '<option value="parquet">Parquet</option>' in text
    assert '<table class="exports"' not in text  # none yet
    running = page.get(f"/jobs/{seeded['running']}").get_data(as_text=True)
    assert 'id="export-form"' not in running and "once the job has finished" in running

    allowed = api_settings.model_copy(update=REMOTE)
    with session_scope(api_settings) as s:
        row = s.get(Job, job)
        done = exports.create_export(s, allowed, row, destination="s3://reports/aer/",
                                     fmt="parquet", options={"granularity": "segment"})  # fmt: skip
        done.state = "running"
        s.flush()
        exports.finish_export(s, done.id, size=3 * 1024)
        queued = exports.create_export(
            s, allowed, row, destination="s3://calls/out.csv", fmt="csv", options={}
        )
        ids = done.id, queued.id
    text = page.get(f"/jobs/{job}").get_data(as_text=True)
    assert f'data-exports-poll="/api/v1/jobs/{job}/exports"' in text  # one is still queued
    rows = dict(re.findall(r'<tr data-export="(\w+)">(.*?)</tr>', text, re.S))
    assert set(rows) == set(ids)
    assert f"s3://reports/aer/aer-{job}-segments.parquet" in rows[ids[0]]
    assert "Parquet, segments" in rows[ids[0]] and "3.0 kB" in rows[ids[0]]
    assert 'state-done" data-field="state">done' in rows[ids[0]]
    assert "s3://calls/out.csv" in rows[ids[1]] and "CSV, files" in rows[ids[1]]
    assert 'state-queued" data-field="state">queued' in rows[ids[1]]
    # Without buckets allowed any more the record stays, the form goes.
    plain = login(make_app().test_client(), api_key).get(f"/jobs/{job}").get_data(as_text=True)
    assert 'id="export-form"' not in plain and ids[0] in plain
    with session_scope(api_settings) as s:
        for export_id in ids:
            s.delete(s.get(Export, export_id))


def test_jobs_from_a_bucket_or_urls_are_named_by_their_source():
    from api.store.tables import Job as JobRow
    from api.web.pages.display import job_name, job_source

    s3 = JobRow(id="j1", source_kind="s3", source="s3://calls/2026-12/",
                options={"pattern": "*.wav", "recursive": False})  # fmt: skip
    assert job_name(s3, "a.wav") == "s3://calls/2026-12/"
    assert job_source(s3) == "s3://calls/2026-12/ (*.wav, this level only)"
    urls = JobRow(
        id="j2",
        source_kind="urls",
        options={},
        source="https://a.example.com/x.wav?sig=secret\nhttps://b.example.com/y.wav",
    )
    assert job_name(urls, None) == "a.example.com and 1 more host"
    assert job_source(urls) == "2 URLs on a.example.com, b.example.com"
    assert "secret" not in job_source(urls) + job_name(urls, None)
    one = JobRow(id="j3", source_kind="urls", options={}, source="https://a.example.com/x.wav")
    assert (job_name(one, "a.example.com/x.wav"), job_source(one)) == (
        "a.example.com", "1 URL on a.example.com")  # fmt: skip
