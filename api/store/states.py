"""The states of jobs and files: the one home of these values (the tables, the API's models,
the HTTP client and the tests all use these). No imports beyond the standard library, so the
HTTP client can use them too."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    FAILED = "failed"
    CANCELLED = "cancelled"


class FileState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class TrainingState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ExportState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class DeliveryState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"
    GAVE_UP = "gave_up"


DELIVERY_STATES = tuple(DeliveryState)
EXPORT_STATES = tuple(ExportState)
#: Job states in which work may still happen.
ACTIVE_JOB_STATES = (JobState.QUEUED, JobState.RUNNING)
#: Job states a job ends in.
TERMINAL_JOB_STATES = tuple(s for s in JobState if s not in ACTIVE_JOB_STATES)
#: File states that still need a worker.
UNFINISHED_FILE_STATES = (FileState.PENDING, FileState.RUNNING)
