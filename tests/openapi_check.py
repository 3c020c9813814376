"""Validate real API responses against the app's generated OpenAPI document.

:func:`check_responses` hooks an app so that every JSON response of a documented route is
validated against the schema the document gives for its path, method and status; a response
that does not match, or a status the document does not list, fails the test that caused it.
The service tests install it on every app they build, so the whole suite checks the document.
"""

from __future__ import annotations

import re
from functools import cache

from flask import Flask, Response, request
from jsonschema import Draft202012Validator

#: Statuses any route may answer without listing them (server faults, werkzeug's own).
UNLISTED = {405, 500}


def openapi_path(rule: str) -> str:
    """A werkzeug rule as an OpenAPI path: ``/jobs/<int:file_id>`` becomes ``/jobs/{file_id}``."""
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule)


@cache
def _validator(document_id: int, ref: str) -> Draft202012Validator:
    document = _documents[document_id]
    return Draft202012Validator({"$ref": ref, "components": document["components"]})


_documents: dict[int, dict] = {}


def response_problem(document: dict, path: str, method: str, status: int, body) -> str | None:
    """Why ``body`` (a JSON value answered with ``status``) does not match the document."""
    operation = document["paths"].get(path, {}).get(method.lower())
    if operation is None:
        return f"{method} {path} is not documented"
    answer = operation["responses"].get(str(status))
    if answer is None:
        return None if status in UNLISTED else f"{method} {path}: status {status} not documented"
    schema = answer.get("content", {}).get("application/json", {}).get("schema")
    if schema is None:
        return f"{method} {path} {status}: documented without a JSON body, answered one"
    _documents[id(document)] = document
    errors = sorted(_validator(id(document), schema["$ref"]).iter_errors(body), key=str)
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path)
        return f"{method} {path} {status}: {errors[0].message} at {where or 'the root'}"
    return None


def check_responses(app: Flask) -> Flask:
    """Make every JSON response of ``app`` on a documented route fail loudly on a mismatch."""
    from api.web.spec import document

    def check(response: Response) -> Response:
        automatic = request.method in ("HEAD", "OPTIONS")  # answered by Flask, not by a view
        if request.url_rule is None or not response.is_json or automatic:
            return response
        with app.app_context():
            doc = document()
        path = openapi_path(request.url_rule.rule)
        if path not in doc["paths"]:
            return response
        problem = response_problem(doc, path, request.method, response.status_code,
                                   response.get_json())  # fmt: skip
        assert problem is None, problem
        return response

    app.after_request(check)
    return app
