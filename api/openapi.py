"""The OpenAPI 3.1 document of the AER API, written by hand (``GET /api/v1/openapi.json``).

``tests/service/test_api.py`` checks that every route registered on the app appears here with
its methods, so a new route cannot ship undocumented.
"""

from __future__ import annotations

from typing import Any

from api.jobs import CHANNEL_MODES, SEGMENTATIONS
from api.schemas import FILE_STATES, GRANULARITIES, JOB_STATES

API_PREFIX = "/api/v1"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict:
    return _json(_ref("Error"), description)


def _query(name: str, schema: dict, description: str) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "Job id as returned by POST /jobs.",
}
_FILE_ID = {
    "name": "file_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer"},
    "description": "File id: `id` of a per-file result.",
}
_UNCERTAIN_BELOW = _query(
    "uncertain_below",
    {"type": "number", "minimum": 0, "maximum": 1},
    "Flag results with a confidence below this as `uncertain` (default: AER_UNCERTAIN_BELOW, "
    "else the model's suggested_uncertain_below, else 0 = never).",
)


def _cursor_page(default_limit: int) -> list[dict]:
    """The ``cursor`` and ``limit`` parameters of a cursor-paginated listing."""
    return [
        _query("cursor", {"type": "string"}, "next_cursor of the previous page."),
        _query(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": 1000, "default": default_limit},
            "Page size.",
        ),
    ]


_CHANNELS = {
    "type": "string",
    "enum": list(CHANNEL_MODES),
    "default": CHANNEL_MODES[0],
    "description": "mix: mix stereo down to one signal; split: analyse each channel.",
}
_SEGMENTATION = {
    "type": "string",
    "enum": list(SEGMENTATIONS),
    "default": SEGMENTATIONS[0],
    "description": "How long files are cut before classification (speech activity, fixed "
    "windows, or the whole file).",
}
_NULL_NUM = {"type": ["number", "null"]}
_NULL_INT = {"type": ["integer", "null"]}
_NULL_STR = {"type": ["string", "null"]}
_NULL_TIME = {"type": ["string", "null"], "format": "date-time"}
_PROBABILITIES = {
    "type": "object",
    "additionalProperties": {"type": "number"},
    "description": "One probability per class, in the model's label order.",
}
_UNCERTAIN = {
    "type": ["boolean", "null"],
    "description": "confidence < uncertain_below (null without a result).",
}
_CHANNEL_NAME = {
    "type": "string",
    "description": "From AER_CHANNEL_NAMES for split jobs (default 0=agent, 1=customer, else "
    "'channel <n>'); 'mix' for mixed-down jobs.",
}
_TIMELINE = {
    "dominant": {**_NULL_STR, "description": "Label holding the most speech time."},
    "shares": {
        "type": "object",
        "additionalProperties": {"type": "number"},
        "description": "Share of segment time per label (model order); sums to 1 with speech.",
    },
    "speech_s": {"type": "number"},
    "silence_s": {"type": "number"},
    "duration_s": {"type": "number"},
    "n_segments": {"type": "integer"},
    "most_negative": {
        "type": ["object", "null"],
        "description": "Segment with the highest summed angry+fearful+sad+disgust probability.",
        "properties": {
            "channel": {"type": "integer"},
            "channel_name": {"type": "string"},
            "start_s": {"type": "number"},
            "end_s": {"type": "number"},
            "label": {"type": "string"},
            "score": {"type": "number"},
        },
    },
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "examples": ["not_found", "invalid_parameters"]},
                    "message": {"type": "string"},
                    "details": {"type": "object"},
                },
            }
        },
    },
    "FolderJob": {
        "type": "object",
        "required": ["folder"],
        "additionalProperties": False,
        "properties": {
            "folder": {
                "type": "string",
                "description": "Folder on the server; must lie under one of AER_ALLOWED_ROOTS.",
            },
            "recursive": {"type": "boolean", "default": True},
            "pattern": {"type": "string", "examples": ["*.wav"], "description": "File name glob."},
            "model": {
                "type": "string",
                "description": "Model name (GET /models); default model if absent.",
            },
            "channels": _CHANNELS,
            "segmentation": _SEGMENTATION,
        },
    },
    "UploadJob": {
        "type": "object",
        "required": ["files"],
        "properties": {
            "files": {
                "type": "array",
                "items": {"type": "string", "contentMediaType": "application/octet-stream"},
                "description": "Audio files and/or .zip archives of audio files.",
            },
            "model": {"type": "string"},
            "channels": _CHANNELS,
            "segmentation": _SEGMENTATION,
        },
    },
    "Counts": {
        "type": "object",
        "properties": {k: {"type": "integer"} for k in ("total", *FILE_STATES)},
    },
    "Job": {
        "type": "object",
        "required": ["id", "state", "counts", "percent"],
        "properties": {
            "id": {"type": "string"},
            "state": {"type": "string", "enum": list(JOB_STATES)},
            "source": {
                "type": "object",
                "properties": {"kind": {"type": "string", "enum": ["upload", "folder"]}},
            },
            "options": {"type": "object"},
            "model": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "version": _NULL_STR},
            },
            "counts": _ref("Counts"),
            "percent": {"type": "number", "minimum": 0, "maximum": 100},
            "files_per_second": {**_NULL_NUM, "description": "While running."},
            "eta_s": {**_NULL_NUM, "description": "Estimated seconds left, while running."},
            "error": _NULL_STR,
            "created_at": {"type": "string", "format": "date-time"},
            "started_at": _NULL_TIME,
            "finished_at": _NULL_TIME,
            "links": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
    "JobPage": {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": _ref("Job")},
            "page": {"type": "integer"},
            "size": {"type": "integer"},
            "total": {"type": "integer"},
            "links": {"type": "object", "additionalProperties": _NULL_STR},
        },
    },
    "Result": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "file": {
                "type": "string",
                "description": "Path relative to the job's folder or upload.",
            },
            "state": {"type": "string", "enum": list(FILE_STATES)},
            "duration_s": _NULL_NUM,
            "sample_rate": _NULL_INT,
            "channels": _NULL_INT,
            "label": _NULL_STR,
            "confidence": _NULL_NUM,
            "uncertain": _UNCERTAIN,
            "probabilities": _PROBABILITIES,
            "attempts": {"type": "integer"},
            "error": _NULL_STR,
            "error_code": _NULL_STR,
            "processed_at": _NULL_TIME,
            "model_version": _NULL_STR,
            "segment_count": {**_NULL_INT, "description": "Segments stored for the file."},
            "summary": {**_ref("Summary"), "description": "Null until the file is done."},
            "links": {
                "type": "object",
                "properties": {"segments": {"type": "string", "description": "Its timeline."}},
            },
        },
    },
    "Summary": {
        "type": ["object", "null"],
        "description": "Timeline summary of the file's segments; `channels` only when split.",
        "properties": {
            **_TIMELINE,
            "channels": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "channel": {"type": "integer"},
                        "channel_name": _CHANNEL_NAME,
                        **_TIMELINE,
                    },
                },
            },
        },
    },
    "Segment": {
        "type": "object",
        "properties": {
            "id": {"type": "integer", "description": "Cursor position."},
            "channel": {"type": "integer", "description": "0-based; always 0 when mixed."},
            "channel_name": _CHANNEL_NAME,
            "start_s": {"type": "number"},
            "end_s": {"type": "number"},
            "label": {"type": "string"},
            "confidence": {"type": "number"},
            "uncertain": _UNCERTAIN,
            "probabilities": _PROBABILITIES,
        },
    },
    "SegmentPage": {
        "type": "object",
        "properties": {
            "job_id": {"type": "string"},
            "file_id": {"type": "integer"},
            "file": {"type": "string"},
            "state": {"type": "string", "enum": list(FILE_STATES)},
            "segment_count": _NULL_INT,
            "labels": {"type": "array", "items": {"type": "string"}},
            "uncertain_below": {"type": "number"},
            "items": {"type": "array", "items": _ref("Segment")},
            "next_cursor": {**_NULL_STR, "description": "Pass as ?cursor= for the next page."},
            "links": {"type": "object", "additionalProperties": _NULL_STR},
        },
    },
    "ResultPage": {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": _ref("Result")},
            "next_cursor": {**_NULL_STR, "description": "Pass as ?cursor= for the next page."},
            "labels": {"type": "array", "items": {"type": "string"}},
            "uncertain_below": {"type": "number", "description": "The threshold applied."},
            "links": {"type": "object", "additionalProperties": _NULL_STR},
        },
    },
    "Model": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "version": _NULL_STR,
            "labels": {"type": "array", "items": {"type": "string"}},
            "feature_set": _NULL_STR,
            "metrics": {"type": "object"},
            "default": {"type": "boolean"},
        },
    },
    "Health": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["ok", "unavailable"]},
            "checks": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "properties": {"ok": {"type": "boolean"}, "error": {"type": "string"}},
                },
            },
        },
    },
}

PATHS: dict[str, Any] = {
    "/jobs": {
        "post": {
            "summary": "Submit a job: uploaded files/zips, or a folder on the server",
            "operationId": "createJob",
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {"schema": _ref("UploadJob")},
                    "application/json": {"schema": _ref("FolderJob")},
                },
            },
            "responses": {
                "202": {
                    **_json(_ref("Job"), "Accepted; work is queued (state 'queued')."),
                    "headers": {"Location": {"schema": {"type": "string"}}},
                },
                "400": _error("Malformed body."),
                "403": _error("Folder outside the allowed roots."),
                "413": _error("Upload larger than AER_MAX_UPLOAD_MB."),
                "415": _error("An upload is not audio nor a zip, or the body type is wrong."),
                "422": _error("Invalid parameter (unknown model, missing folder, ...)."),
            },
        },
        "get": {
            "summary": "List jobs, newest first",
            "operationId": "listJobs",
            "parameters": [
                _query("page", {"type": "integer", "minimum": 1, "default": 1}, "Page number."),
                _query(
                    "size",
                    {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                    "Page size.",
                ),
                _query(
                    "state",
                    {"type": "string", "enum": list(JOB_STATES)},
                    "Only jobs in this state.",
                ),
            ],
            "responses": {
                "200": _json(_ref("JobPage"), "One page of jobs."),
                "422": _error("Bad query."),
            },
        },
    },
    "/jobs/{job_id}": {
        "parameters": [_JOB_ID],
        "get": {
            "summary": "A job's state, counts, progress and timings",
            "operationId": "getJob",
            "responses": {"200": _json(_ref("Job"), "The job."), "404": _error("Unknown job.")},
        },
        "delete": {
            "summary": "Cancel a job and delete its results and uploaded audio",
            "operationId": "deleteJob",
            "responses": {"204": {"description": "Deleted."}, "404": _error("Unknown job.")},
        },
    },
    "/jobs/{job_id}/results": {
        "parameters": [_JOB_ID],
        "get": {
            "summary": "Per-file results, by file id (cursor pagination)",
            "operationId": "getResults",
            "parameters": [
                *_cursor_page(100),
                _query("label", {"type": "string"}, "Only files predicted as this label."),
                _query(
                    "min_confidence",
                    {"type": "number", "minimum": 0, "maximum": 1},
                    "Confidence floor.",
                ),
                _query(
                    "state",
                    {"type": "string", "enum": list(FILE_STATES)},
                    "Only files in this state.",
                ),
                _UNCERTAIN_BELOW,
            ],
            "responses": {
                "200": _json(_ref("ResultPage"), "One page of results."),
                "404": _error("Unknown job."),
                "422": _error("Bad query."),
            },
        },
    },
    "/jobs/{job_id}/files/{file_id}/segments": {
        "parameters": [_JOB_ID, _FILE_ID],
        "get": {
            "summary": "A file's emotion timeline: its segments in timeline order (channel, "
            "then start), by segment id (cursor pagination)",
            "operationId": "getSegments",
            "parameters": [
                *_cursor_page(200),
                _UNCERTAIN_BELOW,
            ],
            "responses": {
                "200": _json(_ref("SegmentPage"), "One page of segments."),
                "404": _error("Unknown job, or no such file in this job."),
                "422": _error("Bad query."),
            },
        },
    },
    "/jobs/{job_id}/results.csv": {
        "parameters": [_JOB_ID],
        "get": {
            "summary": "Every result as CSV, streamed: one row per file (default) or per segment",
            "description": "granularity=file: file, state, duration_s, sample_rate, channels, "
            "label, confidence, p_<label> per class, error, error_code, processed_at, "
            "model_version, uncertain, segment_count, dominant, speech_s, silence_s. "
            "granularity=segment: file, file_id, channel, channel_name, start_s, end_s, label, "
            "confidence, p_<label> per class, uncertain.",
            "operationId": "exportResults",
            "parameters": [
                _query(
                    "granularity",
                    {"type": "string", "enum": list(GRANULARITIES), "default": GRANULARITIES[0]},
                    "One row per file or one row per segment.",
                ),
                _UNCERTAIN_BELOW,
            ],
            "responses": {
                "200": {
                    "description": "CSV file.",
                    "content": {"text/csv": {"schema": {"type": "string"}}},
                },
                "404": _error("Unknown job."),
                "422": _error("Bad query."),
            },
        },
    },
    "/models": {
        "get": {
            "summary": "Models available to jobs",
            "operationId": "listModels",
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "items": {"type": "array", "items": _ref("Model")},
                            "default": {"type": "string"},
                        },
                    },
                    "The registry.",
                )
            },
        }
    },
    "/healthz": {
        "get": {
            "summary": "Database (SELECT 1) and broker (Redis PING) health",
            "operationId": "health",
            "responses": {
                "200": _json(_ref("Health"), "Everything answers."),
                "503": _json(_ref("Health"), "A part is down; `checks` says which."),
            },
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document",
            "operationId": "openapi",
            "responses": {"200": {"description": "OpenAPI 3.1 document."}},
        }
    },
}


def openapi_document() -> dict:
    """The OpenAPI 3.1 document (paths relative to the ``/api/v1`` server)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "AER — bulk speech emotion recognition",
            "version": "1",
            "description": "Submit folders or uploads of speech recordings, poll the job, "
            "fetch per-file emotion labels and per-segment timelines as JSON or CSV.",
        },
        "servers": [{"url": API_PREFIX}],
        "paths": PATHS,
        "components": {"schemas": SCHEMAS},
    }
