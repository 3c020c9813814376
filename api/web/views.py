"""How a job's stored results are shown: its model's labels, the ``uncertain`` threshold and
its channel names, gathered once per request into a :class:`~api.web.serializers.ResultView`;
and the per-segment CSV lines that use it."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from typing import Any

from api.store import jobs, results
from api.store.tables import Job
from api.web.context import db, registry, settings
from api.web.serializers import ResultView, csv_text, segment_csv_header, segment_csv_row

#: Key of a model's metadata that suggests an ``uncertain`` threshold for its results.
SUGGESTED_KEY = "suggested_uncertain_below"
#: A job whose share of off-domain files reaches this gets ``domain.warning``.
OOD_WARNING_SHARE = 0.25
#: Key of a model's metadata that suggests the ``ood`` score above which audio is off-domain.
SUGGESTED_OOD_KEY = "suggested_ood_above"


def model_metadata(model_name: str) -> dict[str, Any]:
    """The metadata of registry model ``model_name``; empty when it is gone or unreadable."""
    from core.artifacts import read_metadata
    from core.errors import ModelError

    try:
        return read_metadata(registry().resolve(model_name))
    except ModelError:
        return {}


def job_labels(job: Job, metadata: dict[str, Any] | None = None) -> list[str]:
    """Class labels of the job's model, in the model's order.

    Taken from the model's metadata; when the model is gone, from a stored result instead.
    """
    metadata = model_metadata(job.model_name) if metadata is None else metadata
    if metadata.get("labels"):
        return list(metadata["labels"])
    return list(results.first_probabilities(db(), job.id) or {})


def suggested_threshold(metadata: dict[str, Any], key: str = SUGGESTED_KEY) -> float | None:
    """The model's suggestion ``key`` when it is a number from 0 to 1."""
    value = metadata.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if math.isfinite(value) and 0.0 <= value <= 1.0:
            return float(value)
    return None


def uncertain_threshold(requested: float | None, metadata: dict[str, Any]) -> float:
    """The first of: the request's ``uncertain_below``, ``AER_UNCERTAIN_BELOW``, the model's
    suggestion, 0.0 (nothing flagged)."""
    for value in (requested, settings().uncertain_below, suggested_threshold(metadata)):
        if value is not None:
            return value
    return 0.0


def ood_threshold(metadata: dict[str, Any]) -> float | None:
    """``AER_OOD_ABOVE``, else the model's ``suggested_ood_above``; None: never off-domain."""
    if settings().ood_above is not None:
        return settings().ood_above
    return suggested_threshold(metadata, SUGGESTED_OOD_KEY)


def channel_mode(job: Job) -> str:
    """The job's ``channels`` option (``mix`` or ``split``; the default when unreadable)."""
    try:
        return jobs.analysis_options(job.options).channels
    except jobs.InvalidOptionsError:  # such a job failed before any result
        return jobs.CHANNEL_MODES[0]


def domain_summary(job: Job) -> dict:
    """How much of a job's audio lies outside what its model was trained on
    (:class:`api.web.schemas.DomainSummary`)."""
    above = ood_threshold(model_metadata(job.model_name))
    scored, outside = results.ood_counts(db(), job.id, above)
    share = outside / scored if scored else None
    return {
        "ood_above": above,
        "scored": scored,
        "out_of_domain": outside,
        "share": None if share is None else round(share, 4),
        "warning": share is not None and share >= OOD_WARNING_SHARE,
    }


def job_view(job: Job, uncertain_below: float | None = None) -> ResultView:
    """The :class:`ResultView` of ``job`` for a request asking ``uncertain_below``."""
    metadata = model_metadata(job.model_name)
    return ResultView(
        labels=tuple(job_labels(job, metadata)),
        uncertain_below=uncertain_threshold(uncertain_below, metadata),
        ood_above=ood_threshold(metadata),
        channel_name=functools.partial(jobs.channel_name, settings(), channels=channel_mode(job)),
    )


#: Segments read per query while streaming the per-segment CSV (memory is bounded by this).
SEGMENT_CSV_BATCH = 2000


def segment_csv_lines(job_id: str, view: ResultView) -> Iterator[str]:
    """The per-segment CSV of a job, one keyset batch of segments at a time."""
    yield csv_text([], segment_csv_header(view.labels))
    session, last = db(), None
    while True:
        page = jobs.job_segments(session, job_id, after_id=last, limit=SEGMENT_CSV_BATCH)
        if not page:
            session.commit()
            return
        text = csv_text(segment_csv_row(rel_path, seg, view) for rel_path, seg in page)
        last = page[-1][1].id
        session.commit()  # end the read transaction between batches: writers need not wait
        yield text
