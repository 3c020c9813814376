"""The dashboard in a real browser (headless Chromium driven by selenium) against a real stack:
the test Redis, a real Celery worker, SQLite and the app served by werkzeug over HTTP.

One user's way through it: upload 8 clips and a zip of 8 more, watch the job finish, filter the
results table, open a call, play a segment (the audio answers 200/206 with audio bytes), correct
labels, download the CSV and compare it with the API's, delete the job after confirming. An
analyst starts a job over a bucket prefix (a real S3-compatible server, moto) and exports its
results to the bucket from the job page.

Set ``AER_SCREENSHOTS=docs/screenshots`` to save a PNG of each page there (README's images).
Chromium and chromedriver come from Debian (``apt-get install chromium chromium-driver``);
without them the test is skipped, except in CI, where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.samples import demo_clips
from tests.auth import create_key

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOTS = os.environ.get("AER_SCREENSHOTS")
WAIT_S = 120


@pytest.fixture(scope="module")
def database_url(tmp_path_factory) -> Iterator[str]:
    """SQLite only: the browser flows do not depend on the database kind (the page and store
    tests cover both), and CI's two cores have a few minutes for them."""
    from api.store.db import upgrade

    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'aer.db'}"
    upgrade(url)
    yield url


@pytest.fixture(scope="module")
def calls_bucket(s3_server) -> str:
    """A bucket on the test S3 server that jobs may read and export to."""
    from api.store.objects import s3_client

    name = f"aer-browser-{uuid.uuid4().hex[:12]}"
    s3_client().create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def settings_env(settings_env, calls_bucket) -> dict[str, str]:
    """The service's variables with :func:`calls_bucket` allowed (the worker reads it too), and
    one URL host (never fetched from here: only the URL form's refusals are tried)."""
    return {
        **settings_env,
        "AER_ALLOWED_BUCKETS": calls_bucket,
        "AER_ALLOWED_URL_HOSTS": "media.example.com",
    }


@pytest.fixture(scope="module")
def base_url(settings, celery_worker) -> Iterator[str]:
    """The app over the worker's settings, served over HTTP on 127.0.0.1."""
    from api.cli.embedded import http_server
    from api.store.db import get_engine
    from api.web.app import create_app

    with http_server(create_app(settings), "127.0.0.1", 0) as url:
        yield url
    get_engine(settings.database_url).dispose()


#: The admin key the browser logs in with, and the direct API calls send.
KEYS: dict[str, str] = {}


@pytest.fixture(scope="module")
def browser(tmp_path_factory, base_url, settings):
    """Headless Chromium at a laptop's size, downloading into a temporary folder, logged in to
    the dashboard with an admin key (through the login form, as a person would)."""
    if not (CHROMIUM and CHROMEDRIVER):
        message = "chromium and chromedriver are not installed (apt-get install chromium-driver)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(message)
        pytest.skip(message)
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1366,900", "--autoplay-policy=no-user-gesture-required",
                     "--mute-audio", "--disable-gpu"):  # fmt: skip
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.downloads = downloads
    driver.set_script_timeout(30)
    KEYS["admin"] = create_key(settings)
    driver.get(base_url + "/")  # not logged in: the login page
    from selenium.webdriver.common.by import By

    assert "/login" in driver.current_url
    driver.find_element(By.NAME, "key").send_keys(KEYS["admin"])
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(driver, lambda d: "/login" not in d.current_url, what="the login")
    yield driver
    driver.quit()


def wait(driver, condition, timeout: float = WAIT_S, what: str = "the page"):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # The pages re-render parts of themselves while they poll: an element found just before a
    # re-render is stale by the time it is read, so the condition is simply tried again.
    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, timeout, poll_frequency=0.2, ignored_exceptions=ignored).until(
        condition, message=f"waited {timeout:.0f} s for {what}"
    )


def shot(driver, name: str, height: int | None = None) -> None:
    """Save a PNG of the page when ``AER_SCREENSHOTS`` names a folder."""
    if not SCREENSHOTS:
        return
    folder = Path(SCREENSHOTS)
    folder.mkdir(parents=True, exist_ok=True)
    full = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1366, min(height or full + 40, 2400))
    driver.save_screenshot(str(folder / f"{name}.png"))
    driver.set_window_size(1366, 900)


def api(base_url: str, path: str):
    request = urllib.request.Request(
        base_url + path, headers={"Authorization": f"Bearer {KEYS['admin']}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
        return (
            json.loads(body) if response.headers.get_content_type() == "application/json" else body
        )


def no_script_errors(driver) -> None:
    """No script error and no failed request so far (the log is emptied by reading it)."""
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


@pytest.fixture(scope="module")
def upload(tmp_path_factory) -> list[str]:
    """8 clips as they are and a zip of the 8 others plus a stereo call (agent and customer
    taking turns, from :func:`tests.service.test_timeline_worker.write_call`)."""
    from tests.service.test_timeline_worker import write_call

    clips = demo_clips()
    assert len(clips) >= 16
    folder = tmp_path_factory.mktemp("upload")
    write_call(folder / "call.wav")
    archive = folder / "more-calls.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for clip in clips[8:16]:
            zf.write(clip, f"more/{clip.name}")
        zf.write(folder / "call.wav", "more/call.wav")
    return [str(clip) for clip in clips[:8]] + [str(archive)]


def test_a_user_goes_through_the_dashboard(browser, base_url, upload, settings):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select

    driver = browser
    # --- submit a job: 8 clips and a zip, through the JSON API with upload progress ----------
    driver.get(base_url + "/jobs/new")
    driver.find_element(By.ID, "files").send_keys("\n".join(upload))
    wait(driver, lambda d: "9 file(s)" in d.find_element(By.ID, "selection").text, 10)
    driver.find_element(By.ID, "up-name").send_keys("Browser test calls")
    driver.find_element(By.CSS_SELECTOR, "#upload-form input[name=channels][value=split]").click()
    shot(driver, "new-job")
    driver.find_element(By.CSS_SELECTOR, "#upload-form button[type=submit]").click()
    wait(driver, lambda d: "/jobs/" in d.current_url and "/new" not in d.current_url, 60, "upload")
    job_id = driver.current_url.rstrip("/").rsplit("/", 1)[-1]

    # --- watch it finish: the page polls the API and reloads once the job is done ------------
    wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#job-status .state").text
         in ("succeeded", "completed with errors"), what="the job to finish")  # fmt: skip
    wait(driver, ec.presence_of_element_located((By.CSS_SELECTOR, "svg.chart")), 20, "chart")
    job = api(base_url, f"/api/v1/jobs/{job_id}")
    assert job["state"] == "succeeded" and job["counts"]["done"] == 17, job
    assert job["options"]["name"] == "Browser test calls"
    status = driver.find_element(By.ID, "job-status").text
    assert "17 done, 0 failed, 0 to do, 17 in all" in status
    assert driver.find_element(By.CSS_SELECTOR, "#job-status progress").get_attribute("value") in (
        "100", "100.0")  # fmt: skip
    shot(driver, "job")

    # --- the jobs list shows it, found by name ---------------------------------------------
    driver.get(base_url + "/?q=browser+test")
    row = driver.find_element(By.CSS_SELECTOR, f'tr[data-job="{job_id}"]')
    assert "Browser test calls" in row.text and "succeeded" in row.text

    # --- on a phone's width the pages reflow: only the tables scroll sideways ----------------
    for width, height in ((1366, 900), (390, 844)):
        driver.set_window_size(width, height)
        for path in ("/", f"/jobs/{job_id}", "/jobs/new", "/models"):
            driver.get(base_url + path)
            assert driver.execute_script(
                "return document.documentElement.scrollWidth <= window.innerWidth"
            ), (width, path)
    if SCREENSHOTS:
        driver.save_screenshot(str(Path(SCREENSHOTS) / "new-job-narrow.png"))
    driver.set_window_size(1366, 900)

    # --- filter the table by a label the API reports -----------------------------------------
    results = api(base_url, f"/api/v1/jobs/{job_id}/results?limit=100")["items"]
    call = next(r for r in results if r["file"].endswith("call.wav"))
    label = call["label"]
    expected = sorted(r["file"] for r in results if r["label"] == label)
    driver.get(base_url + f"/jobs/{job_id}")
    Select(driver.find_element(By.NAME, "label")).select_by_value(label)
    driver.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
    wait(driver, lambda d: f"label={label}" in d.current_url, 10, "the filter")
    cells = driver.find_elements(By.CSS_SELECTOR, "table.results tbody tr td:first-child")
    assert sorted(c.text for c in cells) == expected

    # --- open the stereo call: a lane per channel; play a segment from its middle -----------
    driver.find_element(By.LINK_TEXT, call["file"]).click()
    wait(driver, ec.presence_of_element_located((By.CSS_SELECTOR, "svg.timeline rect.seg")), 20)
    lanes = driver.find_element(By.CSS_SELECTOR, "svg.timeline").text
    assert "agent" in lanes and "customer" in lanes
    audio_url = driver.find_element(By.ID, "player").get_attribute("src")
    bars = driver.find_elements(By.CSS_SELECTOR, "svg.timeline rect.seg")
    assert len(bars) == call["segment_count"] > 4
    segment = bars[len(bars) // 2]
    start = float(segment.get_attribute("data-start"))
    end = float(segment.get_attribute("data-end"))
    assert start > 5
    driver.execute_script(
        "arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))", segment
    )
    wait(driver, lambda d: d.execute_script(
        "const p = document.getElementById('player'); return p.currentTime >= arguments[0] "
        "&& p.readyState >= 2", start), 30, "the player to reach the segment")  # fmt: skip
    assert f"Playing {start:.1f}–{end:.1f} s" in driver.find_element(By.ID, "now-playing").text
    statuses = driver.execute_script(
        "return performance.getEntriesByType('resource').filter(e => e.name === arguments[0])"
        ".map(e => [e.responseStatus, e.transferSize])", audio_url)  # fmt: skip
    answered = [(status, size) for status, size in statuses if status]  # 0: aborted by the
    assert answered and {s for s, _ in answered} <= {200, 206}, statuses  # player to seek
    assert sum(n for _, n in answered) > 1000  # audio bytes came
    ranged = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {headers: {Range: 'bytes=0-3'}}).then(async r => done("
        "[r.status, r.headers.get('Content-Type'), Array.from(new Uint8Array("
        "await r.arrayBuffer()))]))", audio_url)  # fmt: skip
    assert ranged == [206, "audio/wav", list(b"RIFF")]
    shot(driver, "call")
    other = bars[1]  # by keyboard: a segment is focusable and plays on Enter
    driver.execute_script("arguments[0].focus()", other)
    ActionChains(driver).send_keys(Keys.ENTER).perform()
    other_start = float(other.get_attribute("data-start"))
    wait(driver, lambda d: f"Playing {other_start:.1f}" in d.find_element(By.ID, "now-playing")
         .text, 10, "Enter to play the focused segment")  # fmt: skip

    # --- correct the call's label and a segment's, stored through the JSON API -------------
    file_id = int(audio_url.rstrip("/").split("/")[-2])
    labels = api(base_url, f"/api/v1/jobs/{job_id}/results?limit=1")["labels"]
    corrected = next(x for x in labels if x != label)
    Select(driver.find_element(By.ID, "file-label")).select_by_value(corrected)
    driver.find_element(By.CSS_SELECTOR, "form.label-form button[type=submit]").click()
    wait(driver, lambda d: f"saved: {corrected}" in d.find_element(
        By.CSS_SELECTOR, "form.label-form .status").text, 20, "the label")  # fmt: skip
    seg_form = driver.find_elements(By.CSS_SELECTOR, "table.segments form.label-form")[0]
    Select(seg_form.find_element(By.NAME, "label")).select_by_value(corrected)
    seg_form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(driver, lambda d: "saved" in seg_form.find_element(By.CLASS_NAME, "status").text, 20)
    result = next(r for r in api(base_url, f"/api/v1/jobs/{job_id}/results?limit=100")["items"]
                  if r["id"] == file_id)  # fmt: skip
    assert result["corrected_label"] == corrected
    segments = api(base_url, f"/api/v1/jobs/{job_id}/files/{file_id}/segments")["items"]
    assert segments[0]["corrected_label"] == corrected

    # --- download the CSV and compare it with the API's ----------------------------------------
    driver.get(base_url + f"/jobs/{job_id}")
    driver.find_element(By.LINK_TEXT, "CSV (files)").click()
    csv_path = driver.downloads / f"aer-{job_id}.csv"
    wait(driver, lambda d: csv_path.is_file() and csv_path.stat().st_size > 0, 30, "the CSV")
    time.sleep(0.2)  # Chromium renames the finished download into place; let it settle
    assert csv_path.read_bytes() == api(base_url, f"/api/v1/jobs/{job_id}/results.csv")
    assert corrected in csv_path.read_text()

    # --- the models page; then delete the job after confirming ------------------------------
    driver.get(base_url + "/models")
    assert "default" in driver.find_element(By.CSS_SELECTOR, "span.tag.default").text
    shot(driver, "models", height=900)
    driver.get(base_url + f"/jobs/{job_id}")
    driver.find_element(By.CSS_SELECTOR, "button.danger").click()
    alert = wait(driver, ec.alert_is_present(), 10, "the confirmation")
    assert "cannot be undone" in alert.text
    alert.dismiss()  # changing one's mind keeps the job
    assert api(base_url, f"/api/v1/jobs/{job_id}")["id"] == job_id
    driver.find_element(By.CSS_SELECTOR, "button.danger").click()
    wait(driver, ec.alert_is_present(), 10, "the confirmation").accept()
    wait(driver, lambda d: "deleted=" in d.current_url, 20, "the deletion")
    assert "was deleted" in driver.find_element(By.CSS_SELECTOR, "p.notice").text
    no_script_errors(driver)
    driver.get(base_url + f"/jobs/{job_id}")
    assert "Not found" in driver.find_element(By.TAG_NAME, "h1").text


def test_progress_on_the_jobs_list_is_live(browser, base_url, settings):
    """A running job's row follows the database without a reload (the files are held by a
    task whose heartbeat is far ahead, so the worker's sweep leaves them to this test)."""
    from datetime import timedelta

    from selenium.webdriver.common.by import By
    from sqlalchemy import update

    from api.store import jobs
    from api.store.db import session_scope
    from api.store.tables import File, Job, Worker, utcnow

    with session_scope(settings) as s:
        later = utcnow() + timedelta(hours=1)
        s.add(Worker(id="browser-test", hostname="test", pid=0, task="test", last_seen=later))
        job = jobs.create_job(
            s, source_kind="upload", source="x", options={"name": "Live progress"},
            model_name="aer8",
            tenant_id="default",
        )  # fmt: skip
        job.state, job.enumerated = "running", True
        job.started_at = utcnow() - timedelta(seconds=10)
        lease = utcnow() + timedelta(hours=1)
        s.add_all(
            File(
                job_id=job.id,
                rel_path=f"{i}.wav",
                path="/nowhere",
                state="running",
                lease_expires_at=lease,
                claimed_by="browser-test",
            )  # fmt: skip
            for i in range(2)
        )
        job_id = job.id
        _other_jobs(s)
    driver = browser
    driver.get_log("browser")  # forget what earlier tests left in the log
    driver.get(base_url + "/?q=live+progress")
    row = driver.find_element(By.CSS_SELECTOR, f'tr[data-job="{job_id}"]')

    def field(name: str) -> str:
        row = driver.find_element(By.CSS_SELECTOR, f'tr[data-job="{job_id}"]')
        return row.find_element(By.CSS_SELECTOR, f'[data-field="{name}"]').text

    assert (field("finished"), field("total"), field("percent")) == ("0", "2", "0 %")
    with session_scope(settings) as s:
        s.execute(update(File).where(File.job_id == job_id, File.rel_path == "0.wav")
                  .values(state="done", processed_at=utcnow()))  # fmt: skip
    wait(driver, lambda d: field("percent") == "50 %", 20, "the row to show 50 %")
    assert field("finished") == "1" and field("rate") != "–" and field("eta").endswith(" s")
    row = driver.find_element(By.CSS_SELECTOR, f'tr[data-job="{job_id}"]')  # re-rendered
    bar = row.find_element(By.CSS_SELECTOR, '[data-field="progress"]')
    assert float(bar.get_attribute("value")) == 50
    if SCREENSHOTS:
        driver.get(base_url + "/")
        shot(driver, "jobs", height=600)
        driver.get(base_url + "/?q=live+progress")
        row = driver.find_element(By.CSS_SELECTOR, f'tr[data-job="{job_id}"]')
    with session_scope(settings) as s:
        s.execute(update(File).where(File.job_id == job_id).values(state="done"))
        s.execute(update(Job).where(Job.id == job_id)
                  .values(state="succeeded", finished_at=utcnow()))  # fmt: skip
    wait(driver, lambda d: field("state") == "succeeded", 20, "the row to show succeeded")
    assert field("percent") == "100 %" and row.get_attribute("data-poll") is None
    no_script_errors(driver)


def _other_jobs(s) -> None:
    """Finished jobs beside the live one, so that the jobs page's screenshot shows a few."""
    from api.store import jobs
    from api.store.tables import File, utcnow

    for name, state, done, failed in (("Monday calls", "completed_with_errors", 41, 2),
                                      ("Escalations week 48", "succeeded", 12, 0),
                                      ("Old archive", "failed", 0, 0)):  # fmt: skip
        job = jobs.create_job(
            s,
            source_kind="upload",
            source="x",
            options={"name": name},
            model_name="aer8",
            tenant_id="default",
        )
        job.state, job.enumerated, job.started_at, job.finished_at = state, True, utcnow(), utcnow()
        job.error = "the folder could not be listed" if state == "failed" else None
        s.add_all(
            File(
                job_id=job.id,
                rel_path=f"{i}.wav",
                path="/nowhere",
                processed_at=utcnow(),
                state="done" if i < done else "failed",
            )  # fmt: skip
            for i in range(done + failed)
        )


def test_a_server_folder_job_and_a_refused_folder(browser, base_url, settings, allowed_root):
    """The folder form answers with the API's own error, then starts a job on an allowed
    folder."""
    from selenium.webdriver.common.by import By

    folder = allowed_root / "calls-friday"
    folder.mkdir()
    for clip in demo_clips()[:2]:
        shutil.copy(clip, folder / clip.name)
    driver = browser
    driver.get_log("browser")
    driver.get(base_url + "/jobs/new")
    path = driver.find_element(By.ID, "folder")
    path.send_keys("/etc")
    driver.find_element(By.CSS_SELECTOR, "#folder-form button[type=submit]").click()
    wait(driver, lambda d: d.find_element(By.ID, "folder-error").text, 20, "the refusal")
    assert "AER_ALLOWED_ROOTS" in driver.find_element(By.ID, "folder-error").text
    path.clear()
    path.send_keys(str(folder))
    driver.find_element(By.CSS_SELECTOR, "#folder-form button[type=submit]").click()
    wait(driver, lambda d: "/jobs/new" not in d.current_url, 20, "the job page")
    wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#job-status .state").text
         == "succeeded", what="the folder job to finish")  # fmt: skip
    assert driver.find_element(By.TAG_NAME, "h1").text == "calls-friday"  # named by its folder
    assert len(driver.find_elements(By.CSS_SELECTOR, "table.results tbody tr")) == 2


def test_a_bucket_prefix_job_and_an_export_to_the_bucket(browser, base_url, calls_bucket):
    """The bucket form answers a refused bucket with the API's error, then runs a job over a
    prefix (a pattern, no deeper keys); the job page exports its segments as Parquet to the
    bucket, and lists the export until it is done and the object is there."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from api.store.objects import s3_client

    client, clips = s3_client(), demo_clips()
    for key, clip in (("calls/friday/a.flac", clips[0]), ("calls/friday/b.flac", clips[1]),
                      ("calls/friday/notes.txt", None), ("calls/friday/deep/c.flac", clips[2]),
                      ("calls/thursday/d.flac", clips[3])):  # fmt: skip
        body = clip.read_bytes() if clip else b"not audio"
        client.put_object(Bucket=calls_bucket, Key=key, Body=body)
    driver = browser
    driver.get(base_url + "/jobs/new")
    help_text = driver.find_element(By.ID, "bucket-help").text
    assert f"s3://{calls_bucket}/" in help_text
    source = driver.find_element(By.ID, "source")
    source.send_keys("s3://elsewhere-bucket/calls/")
    driver.find_element(By.CSS_SELECTOR, "#bucket-form button[type=submit]").click()
    wait(driver, lambda d: d.find_element(By.ID, "bucket-error").text, 20, "the refusal")
    error = driver.find_element(By.ID, "bucket-error").text
    assert error.startswith("Not allowed on this server:") and "AER_ALLOWED_BUCKETS" in error
    urls = driver.find_element(By.ID, "urls")  # the URL form answers the same way
    for pasted, why in (("https://calls.example.org/a.wav", "Not allowed on this server:"),
                        ("http://media.example.com/a.wav", "Not a valid address:")):  # fmt: skip
        urls.clear()
        urls.send_keys(f"  {pasted}\n\n")
        driver.find_element(By.CSS_SELECTOR, "#urls-form button[type=submit]").click()
        wait(driver, lambda d, why=why: d.find_element(By.ID, "urls-error").text.startswith(why),
             20, "the URL's refusal")  # fmt: skip
    assert "AER_ALLOWED_URL_HOSTS" not in driver.find_element(By.ID, "urls-error").text
    driver.get_log("browser")  # the 403s are logged as failed requests: forget them
    source.clear()
    source.send_keys(f"s3://{calls_bucket}/calls/friday")  # the page need not end it in /
    driver.find_element(By.ID, "bucket-pattern").send_keys("*.flac")
    driver.find_element(By.CSS_SELECTOR, "#bucket-form input[name=recursive]").click()
    driver.find_element(By.CSS_SELECTOR, "#bucket-form button[type=submit]").click()
    wait(driver, lambda d: "/jobs/new" not in d.current_url, 20, "the job page")
    job_id = driver.current_url.rstrip("/").rsplit("/", 1)[-1]
    wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#job-status .state").text
         == "succeeded", what="the bucket job to finish")  # fmt: skip
    assert driver.find_element(By.TAG_NAME, "h1").text == f"s3://{calls_bucket}/calls/friday/"
    source_fact = driver.find_element(By.CSS_SELECTOR, "#job-status dd.source").text
    assert source_fact == f"s3://{calls_bucket}/calls/friday/ (*.flac, this level only)"
    cells = driver.find_elements(By.CSS_SELECTOR, "table.results tbody tr td:first-child")
    assert sorted(c.text for c in cells) == ["a.flac", "b.flac"]

    # --- export the segments as Parquet: a refused bucket first, then the job's own -----------
    form = driver.find_element(By.ID, "export-form")
    destination = form.find_element(By.NAME, "destination")
    assert destination.get_attribute("value") == f"s3://{calls_bucket}/"
    destination.clear()
    destination.send_keys("s3://elsewhere-bucket/reports/")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(driver, lambda d: d.find_element(By.ID, "export-error").text, 20, "the refusal")
    assert "Not allowed on this server:" in driver.find_element(By.ID, "export-error").text
    driver.get_log("browser")
    destination.clear()
    destination.send_keys(f"s3://{calls_bucket}/reports/")
    Select(form.find_element(By.NAME, "format")).select_by_visible_text("Parquet")
    Select(form.find_element(By.NAME, "granularity")).select_by_value("segment")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    row = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "table.exports tr[data-export]"),
               20, "the export's row")[0]  # fmt: skip
    key = f"reports/aer-{job_id}-segments.parquet"
    assert f"s3://{calls_bucket}/{key}" in row.text and "Parquet, segments" in row.text
    wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "table.exports [data-field=state]")
         .text == "done", what="the export to be done")  # fmt: skip
    exported = api(base_url, f"/api/v1/jobs/{job_id}/exports")["items"]
    assert [(e["state"], e["object"]) for e in exported] == [("done", f"s3://{calls_bucket}/{key}")]
    head = client.head_object(Bucket=calls_bucket, Key=key)
    assert head["ContentLength"] == exported[0]["bytes"] > 0
    size = driver.find_element(By.CSS_SELECTOR, "table.exports [data-field=bytes]").text
    assert size.endswith(("B", "kB", "MB")) and size[0].isdigit()
    no_script_errors(driver)
