"""The OpenAPI document is generated from the typed models and matches what the API answers.

Every app the service tests build validates its JSON responses against the document
(``tests/openapi_check.py``); these tests check the document itself, and that each endpoint
answers as documented on its success and its error paths.
"""

from __future__ import annotations

import io

import pytest
from openapi_spec_validator import validate

from tests.openapi_check import openapi_path, response_problem


@pytest.fixture(scope="module")
def document(app) -> dict:
    return app.test_client().get("/api/v1/openapi.json").get_json()


def test_document_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_every_route_is_documented_and_nothing_else(app, document):
    registered: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "system.openapi" or not rule.rule.startswith("/api/v1/"):
            continue  # the document itself, and the web pages (HTML, not the JSON API)
        methods = rule.methods - {"HEAD", "OPTIONS"}
        registered.setdefault(openapi_path(rule.rule), set()).update(m.lower() for m in methods)
    documented = {path: set(item) for path, item in document["paths"].items()}
    assert documented == registered
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation["responses"], (path, method)
            assert operation["summary"], (path, method)


def test_a_wrong_response_is_caught(document):
    """The check that guards the suite can fail."""
    path = "/api/v1/jobs/{job_id}"
    assert response_problem(document, path, "GET", 200, {"id": "x"})
    assert response_problem(document, path, "GET", 418, {})
    assert response_problem(document, "/api/v1/nowhere", "GET", 200, {})
    error = {"error": {"code": "job_not_found", "message": "no job"}}
    assert response_problem(document, path, "GET", 404, error) is None


def test_each_endpoint_answers_as_documented(client, api_root):
    """One request per operation and per documented error; ``client`` validates each answer."""
    data = {"files": [(io.BytesIO(b"RIFF\x24\x00\x00\x00WAVEfmt "), "a.wav")]}
    job = client.post("/api/v1/jobs", data=data, content_type="multipart/form-data")
    assert job.status_code == 202
    job_id = job.get_json()["id"]
    (api_root / "calls").mkdir(exist_ok=True)
    answers = [
        client.post("/api/v1/jobs", json={"folder": str(api_root / "calls")}),
        client.post("/api/v1/jobs", json={"folder": "/etc"}),
        client.post("/api/v1/jobs", json={"folder": str(api_root / "calls"), "channels": "x"}),
        client.post("/api/v1/jobs", data="x", content_type="text/plain"),
        client.post("/api/v1/jobs", data="{", content_type="application/json"),
        client.get("/api/v1/jobs?size=2&state=queued"),
        client.get("/api/v1/jobs?size=0"),
        client.get(f"/api/v1/jobs/{job_id}"),
        client.get("/api/v1/jobs/nope"),
        client.get(f"/api/v1/jobs/{job_id}/results?limit=1"),
        client.get(f"/api/v1/jobs/{job_id}/results?limit=-1"),
        client.get(f"/api/v1/jobs/{job_id}/results.csv?granularity=day"),
        client.get(f"/api/v1/jobs/{job_id}/files/1/segments"),
        client.get("/api/v1/models"),
        client.get("/api/v1/healthz"),
        client.delete(f"/api/v1/jobs/{job_id}"),
        client.delete(f"/api/v1/jobs/{job_id}"),
    ]
    statuses = [a.status_code for a in answers]
    assert statuses == [202, 403, 422, 415, 400, 200, 422, 200, 404, 200, 422, 422, 404, 200,
                        200, 204, 404]  # fmt: skip
