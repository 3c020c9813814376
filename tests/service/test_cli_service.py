"""The service side of the ``aer`` command: the embedded stack, ``db upgrade`` and the client
commands (``submit --wait``, ``status``, ``export``) against a real running stack."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from api.cli import _demo_key, cli, demo_table, run_demo
from core.samples import demo_folder

FIXTURES = demo_folder()
CLIPS = sorted(FIXTURES.glob("*.flac"))


def test_settings_env_rebuilds_the_settings(tmp_path):
    from api.store.settings import load_settings

    settings = load_settings(
        {
            "AER_DATA_DIR": str(tmp_path),
            "AER_ALLOWED_ROOTS": os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]),
            "AER_CHUNK_SIZE": "7",
            "AER_MAX_DURATION_S": "12.5",
            "AER_CHANNEL_NAMES": "0=left,3=right",
        }
    )
    assert load_settings(settings.as_env()) == settings
    assert settings.as_env()["AER_BROKER_URL"] == ""  # unset: the embedded Redis


def test_db_upgrade_migrates_the_configured_database(tmp_path):
    from api.store.db import current_revision, head_revision

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {"AER_DATA_DIR": str(tmp_path), "AER_DATABASE_URL": url}
    result = CliRunner().invoke(cli, ["db", "upgrade"], env=env)
    assert result.exit_code == 0, result.output
    assert current_revision(url) == head_revision()


@pytest.mark.parametrize("args", [["submit"], ["submit", "--folder", "/data", str(Path(__file__))]])
def test_submit_wants_paths_or_a_folder(args):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "PATHS" in result.output


def test_client_commands_report_an_unreachable_server():
    result = CliRunner().invoke(cli, ["status", "abc", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "cannot reach" in result.output


def test_demo_table_reads_the_true_label_from_the_name():
    results = [
        {"file": "03-01-05-01-02-02-02.flac", "label": "angry", "confidence": 0.91},
        {"file": "x/03-01-01-01-01-02-01.flac", "label": "calm", "confidence": 0.5},
        {"file": "other.wav", "label": None, "confidence": None, "error_code": "not_audio"},
    ]
    table, hits = demo_table(results)
    lines = table.splitlines()
    assert hits == 1 and len(lines) == 4
    assert lines[0].split() == ["file", "true", "predicted", "confidence"]
    assert lines[1].split() == ["03-01-05-01-02-02-02.flac", "angry", "angry", "0.91"]
    assert lines[2].split() == ["other.wav", "?", "-", "not_audio"]


@pytest.mark.skipif(len(CLIPS) < 4, reason="fixture clips missing")
def test_embedded_stack_serves_the_cli_client_and_the_demo(tmp_path, model_labels):
    """One slow test: `aer serve`'s stack (embedded Redis, migrations, a Celery worker, the HTTP
    API), driven by `aer submit --wait`, `aer status`, `aer export` and the demo's code path."""
    import redis

    from api.cli.client import AERClient, ClientError
    from api.cli.embedded import embedded_stack
    from api.store.settings import load_settings

    settings = load_settings(
        {"AER_DATA_DIR": str(tmp_path / "data"), "AER_MODELS_DIR": str(models_dir())}
    )
    assert settings.broker_url is None
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for clip in CLIPS[1:3]:
            zf.write(clip, clip.name)
    runner = CliRunner()
    with embedded_stack(settings, workers=1, worker_log=tmp_path / "worker.log") as url:
        assert settings.embedded_redis_socket.exists()
        health = AERClient(url).health()
        assert health["status"] == "ok"
        key = _demo_key(settings)
        result = runner.invoke(cli, ["status", "nope", "--url", url])  # no key
        assert result.exit_code == 1 and "401" in result.output

        calls = tmp_path / "calls"  # same file name in two folders: kept apart by their paths
        for sub, clip in (("d1", CLIPS[3]), ("d2", CLIPS[4])):
            (calls / sub).mkdir(parents=True)
            shutil.copy(clip, calls / sub / "call.flac")
        args = ["submit", str(CLIPS[0]), str(archive), str(calls), "--url", url, "--api-key", key]
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, repr(result.exception) + result.output + _log(tmp_path)
        job_id = result.stdout.split()[0]
        assert "4/4 files" in result.stderr  # the upload's progress (the zip is one file)

        runner = CliRunner(env={"AER_API_KEY": key})  # the key from the environment
        result = runner.invoke(cli, ["status", job_id[:8], "--follow", "--url", url])
        assert result.exit_code == 0, result.output + _log(tmp_path)
        assert "succeeded, 5 done, 0 failed of 5" in result.stderr

        result = runner.invoke(cli, ["status", job_id[:8], "--url", url])
        assert result.exit_code == 0 and "succeeded" in result.output

        out = tmp_path / "results.csv"
        result = runner.invoke(cli, ["export", job_id, "-o", str(out), "--url", url])
        assert result.exit_code == 0, result.output
        rows = list(csv.DictReader(io.StringIO(out.read_text())))
        assert {r["file"] for r in rows} == {CLIPS[0].name, "calls/d1/call.flac"} | {
            "calls/d2/call.flac"
        } | {f"two.zip/{c.name}" for c in CLIPS[1:3]}
        assert all(len(r["confidence"].split(".")[1]) <= 4 for r in rows)
        result = runner.invoke(cli, ["results", job_id[:10], "--jsonl", "--url", url])
        by_file = {r["file"]: r for r in map(json.loads, result.output.splitlines())}
        assert by_file.keys() == {r["file"] for r in rows}
        assert by_file["calls/d1/call.flac"]["state"] == "done"
        assert [c for c in rows[0] if c.startswith("p_")] == [
            f"p_{label}" for label in model_labels
        ]

        job, results = run_demo(AERClient(url, api_key=key), CLIPS[:4], quiet=True)
        assert job["state"] == "succeeded" and len(results) == 4
        table, hits = demo_table(results)
        assert len(table.splitlines()) == 5 and hits >= 3

        result = runner.invoke(cli, ["status", "nope", "--url", url])
        assert result.exit_code == 1 and "404" in result.output
    # Everything stopped: Redis is gone with its socket, the port is closed.
    assert not settings.embedded_redis_socket.exists()
    with pytest.raises(redis.ConnectionError):
        redis.Redis(unix_socket_path=str(settings.embedded_redis_socket)).ping()
    with pytest.raises(ClientError, match="cannot reach"):
        AERClient(url, timeout=2).health()


def test_serve_allows_extra_roots_and_starts_quietly(tmp_path):
    """`aer serve --allow-root DIR` in its own process: folder jobs under DIR are accepted,
    others refused; Alembic's plugin lines are not printed."""
    from api.cli.client import AERClient, ClientError

    root = tmp_path / "root"
    root.mkdir()
    env = {**os.environ, "AER_DATA_DIR": str(tmp_path / "data"), "AER_BROKER_URL": ""}
    env["AER_ALLOWED_ROOTS"] = ""
    env["AER_DATABASE_URL"] = f"sqlite:///{tmp_path / 'aer.db'}"
    key = env["AER_BOOTSTRAP_KEY"] = "aer_serve123_" + "k" * 43  # the first start's admin key
    cmd = [sys.executable, "-c", "from api.cli import main; main()", "serve", "--port", "0"]
    cmd += ["--workers", "1", "--allow-root", str(root)]
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = _wait_for_url(proc, log)
        client = AERClient(url, api_key=key)
        job = client.submit_folder(str(root))
        assert job["state"] == "queued"
        with pytest.raises(ClientError, match="AER_ALLOWED_ROOTS") as refused:
            client.submit_folder(str(tmp_path))
        assert refused.value.status == 403
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    text = log.read_text()
    assert "stopped" in text and proc.returncode == 0, text
    assert "plugin" not in text.lower(), text
    assert "Traceback" not in text, text


def _wait_for_url(proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> str:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if line.startswith("AER listening on "):
                return line.split()[3].removesuffix("/api/v1")
        assert proc.poll() is None, log.read_text()
        time.sleep(0.2)
    raise AssertionError("aer serve did not start:\n" + log.read_text())


def models_dir() -> Path:
    from core.registry import DEFAULT_MODELS_DIR

    return Path(os.environ.get("AER_MODELS_DIR") or DEFAULT_MODELS_DIR)


@pytest.fixture
def model_labels() -> list[str]:
    """Labels of the default model (skips when no model is shipped)."""
    from core.errors import ModelError
    from core.registry import ModelRegistry

    registry = ModelRegistry(models_dir())
    try:
        name = registry.resolve().stem
    except ModelError as exc:
        pytest.skip(f"no default model: {exc}")
    return next(e["labels"] for e in registry.list() if e["name"] == name)


def _log(tmp_path: Path) -> str:
    log = tmp_path / "worker.log"
    return "\n--- worker log ---\n" + log.read_text()[-5000:] if log.exists() else ""
