"""How a job's stored results are shown to a request: its model's metadata (from the registry
the request's tenant sees), gathered once per request into a
:class:`~api.store.resultview.ResultView`, and how much of the job lies off-domain."""

from __future__ import annotations

from typing import Any

from api.store import results, resultview
from api.store.resultview import ResultView
from api.store.tables import Job
from api.web.context import db, registry, settings

#: A job whose share of off-domain files reaches this gets ``domain.warning``.
OOD_WARNING_SHARE = 0.25


def model_metadata(model_name: str) -> dict[str, Any]:
    """The metadata of registry model ``model_name``; empty when it is gone or unreadable."""
    return resultview.model_metadata(registry(), model_name)


def domain_summary(job: Job) -> dict:
    """How much of a job's audio lies outside what its model was trained on
    (:class:`api.web.schemas.DomainSummary`)."""
    above = resultview.ood_threshold(settings(), model_metadata(job.model_name))
    scored, outside = results.ood_counts(db(), job.id, above)
    share = outside / scored if scored else None
    return {
        "ood_above": above,
        "scored": scored,
        "out_of_domain": outside,
        "share": None if share is None else round(share, 4),
        "warning": share is not None and share >= OOD_WARNING_SHARE,
    }


def job_view(
    job: Job, uncertain_below: float | None = None, *, full_precision: bool = False
) -> ResultView:
    """The :class:`ResultView` of ``job`` for a request asking ``uncertain_below``."""
    metadata = model_metadata(job.model_name)
    return resultview.result_view(
        settings(), db(), job, metadata, uncertain_below, full_precision=full_precision
    )
