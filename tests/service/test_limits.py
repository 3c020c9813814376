"""Request limits: JSON size and depth, the number of upload parts, a full disk."""

from __future__ import annotations

import os

import pytest

from api.web.bodies import json_depth_exceeds
from tests.service.test_api import WAV_HEADER, error_code


def incoming_parts(settings) -> list[str]:
    incoming = settings.uploads_dir / ".incoming"
    return os.listdir(incoming) if incoming.is_dir() else []


# --- JSON bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "depth", "deeper"),
    [
        (b'{"a": [1, {"b": 2}]}', 3, False),
        (b'{"a": [1, {"b": 2}]}', 2, True),
        (b'{"a": "[[[[[[[[[[[[[["}', 1, False),  # brackets inside strings are text
        (b'{"a": "\\"[[[["}', 1, False),  # so are brackets after an escaped quote
        (b"[" * 100_000 + b"]" * 100_000, 32, True),
        (b"[[],[],{}]", 2, False),
        (b"{not json", 1, False),  # unbalanced: malformed, for the parser to refuse
    ],
)
def test_json_depth(data, depth, deeper):
    assert json_depth_exceeds(data, depth) is deeper


@pytest.mark.parametrize("closed", [True, False])
def test_deep_json_is_400_too_deep(client, closed):
    deep = b"[" * 100_000 + (b"]" * 100_000 if closed else b"")
    body = b'{"folder": "x", "pattern": ' + deep + (b"}" if closed else b"")
    response = client.post("/api/v1/jobs", data=body, content_type="application/json")
    assert response.status_code == 400, response.data
    assert error_code(response) == "too_deep"
    assert "AER_MAX_JSON_DEPTH" in response.get_json()["error"]["message"]


def test_json_over_the_limit_is_413_before_parsing(make_app, api_root):
    client = make_app(max_json_kb=1).test_client()
    body = b'{"folder": "' + b"x" * 2000 + b'"}'
    response = client.post("/api/v1/jobs", data=body, content_type="application/json")
    assert response.status_code == 413, response.data
    assert error_code(response) == "payload_too_large"
    assert "AER_MAX_JSON_KB" in response.get_json()["error"]["message"]
    # a small body still passes the size check (and fails on its folder, as before)
    response = client.post("/api/v1/jobs", json={"folder": str(api_root / "none")})
    assert response.status_code == 422, response.data


def test_json_without_declared_length_is_cut_at_the_limit(make_app):
    from werkzeug.test import EnvironBuilder

    app = make_app(max_json_kb=1)
    body = b'{"folder": "' + b"x" * 4000 + b'"}'
    builder = EnvironBuilder(
        path="/api/v1/jobs", method="POST", data=body, content_type="application/json"
    )
    environ = builder.get_environ()
    del environ["CONTENT_LENGTH"]  # a chunked body: its length is known only once read
    environ["wsgi.input_terminated"] = True
    response = app.test_client().open(environ)
    assert response.status_code == 413, response.data
    assert error_code(response) == "payload_too_large"


# --- upload parts --------------------------------------------------------------------------------


def test_too_many_parts_says_so_and_names_the_limit(make_app, api_settings, tmp_path):
    from api.cli.client import Multipart

    client = make_app(max_files_per_job=5).test_client()
    for i in range(8):
        (tmp_path / f"{i}.wav").write_bytes(WAV_HEADER + b"\x00" * 16)
    body = Multipart([], [("files", p) for p in sorted(tmp_path.glob("*.wav"))])
    response = client.post("/api/v1/jobs", data=b"".join(body), content_type=body.content_type)
    assert response.status_code == 413, response.data
    assert error_code(response) == "too_many_files"
    message = response.get_json()["error"]["message"]
    assert "more than 5 file parts" in message and "AER_MAX_FILES_PER_JOB" in message
    assert "upload limit" not in message
    assert incoming_parts(api_settings) == []


def test_too_many_form_fields_is_not_called_too_large(make_app):
    client = make_app(max_files_per_job=2).test_client()  # werkzeug's limit: 2 + 16 parts
    data = {f"field{i}": "x" for i in range(40)}
    response = client.post("/api/v1/jobs", data=data, content_type="multipart/form-data")
    assert response.status_code == 413, response.data
    message = response.get_json()["error"]["message"]
    assert "more than 18 parts" in message and "upload limit" not in message


# --- a full disk ---------------------------------------------------------------------------------


def test_full_disk_is_507_and_leaves_no_part(make_app, api_settings, tmp_path):
    """``AER_MIN_FREE_MB`` above the disk's free space: every write fails as on a full disk."""
    import shutil

    from api.cli.client import Multipart

    free_mb = shutil.disk_usage(api_settings.data_dir).free // 2**20
    client = make_app(min_free_mb=free_mb + 1024).test_client()
    clip = tmp_path / "clip.wav"
    clip.write_bytes(WAV_HEADER + b"\x00" * 4096)
    api_settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    before = set(os.listdir(api_settings.uploads_dir))
    body = Multipart([], [("files", clip), ("files", clip)])
    response = client.post("/api/v1/jobs", data=b"".join(body), content_type=body.content_type)
    assert response.status_code == 507, response.data
    assert error_code(response) == "insufficient_storage"
    assert str(api_settings.data_dir) not in response.get_data(as_text=True)
    assert incoming_parts(api_settings) == []
    assert set(os.listdir(api_settings.uploads_dir)) - {".incoming"} == before - {".incoming"}
    # with room to spare the same upload passes
    response = (
        make_app(min_free_mb=1)
        .test_client()
        .post("/api/v1/jobs", data=b"".join(body), content_type=body.content_type)
    )
    assert response.status_code == 202, response.data


def test_a_part_whose_last_flush_fails_is_still_removed(tmp_path):
    """A real full disk fails the buffered flush in ``close``: the part must go all the same."""
    from types import SimpleNamespace

    from api.web.uploads import DiskPart, discard_spooled

    part = DiskPart(str(tmp_path / "part-1"))
    part.write(b"x" * 10)
    part._fh.close()
    part._fh = _FailingFlush(part.name)
    discard_spooled(SimpleNamespace(spooled=[part]))
    assert not (tmp_path / "part-1").exists()


class _FailingFlush:
    def __init__(self, name: str) -> None:
        self.name = name

    def close(self) -> None:
        raise OSError(28, "No space left on device")
