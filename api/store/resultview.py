"""How a job's stored results are presented: its model's labels, the ``uncertain`` and
off-domain thresholds and its channel names, gathered once into a :class:`ResultView` (by the
API for a request, by a worker for an export)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from api.store import jobs, results
from api.store.settings import Settings
from api.store.tables import Job
from core.ood import is_uncertain

if TYPE_CHECKING:
    from core.registry import ModelRegistry

#: Decimals of probabilities and confidences, and of seconds, in tables (unless full precision).
PROBABILITY_DIGITS = 4
SECONDS_DIGITS = 3
#: Key of a model's metadata that suggests an ``uncertain`` threshold for its results.
SUGGESTED_KEY = "suggested_uncertain_below"
#: Key of a model's metadata that suggests the ``ood`` score above which audio is off-domain.
SUGGESTED_OOD_KEY = "suggested_ood_above"


@dataclass(frozen=True)
class ResultView:
    """How one job's stored results are presented.

    ``labels`` are the model's classes in its order (probabilities are listed in that order:
    PostgreSQL's JSONB keeps no key order); ``uncertain_below`` is the confidence under which a
    result is flagged ``uncertain``; ``channel_name`` names a channel index; ``full_precision``
    keeps every digit of the tables' numbers (else probabilities have 4 decimals, seconds 3).
    """

    labels: tuple[str, ...]
    uncertain_below: float
    channel_name: Callable[[int], str]
    ood_above: float | None = None
    full_precision: bool = False

    def p(self, value: Any) -> Any:
        """A probability or confidence as tables show it: 4 decimals unless full precision."""
        return _rounded(value, None if self.full_precision else PROBABILITY_DIGITS)

    def s(self, value: Any) -> Any:
        """Seconds as tables show them: 3 decimals (milliseconds) unless full precision."""
        return _rounded(value, None if self.full_precision else SECONDS_DIGITS)

    def uncertain(self, confidence: float | None, ood: float | None = None) -> bool | None:
        """Whether a result is uncertain (None without a result): its ``confidence`` is under
        the threshold, or its audio's ``ood`` score is above ``ood_above`` (off-domain)."""
        if confidence is None:
            return None
        return is_uncertain(
            confidence, ood, uncertain_below=self.uncertain_below, ood_above=self.ood_above
        )

    def ordered(self, values: Mapping[str, float] | None) -> dict[str, float]:
        """``values`` keyed by label, in the model's label order (unknown labels last)."""
        values = values or {}
        out = {label: values[label] for label in self.labels if label in values}
        return out | {k: v for k, v in values.items() if k not in out}

    def summary(self, summary: Mapping[str, Any] | None) -> dict | None:
        """A stored timeline summary (``core.timeline.summarize``) with channel names added."""
        if not summary:
            return None
        out = self._channel_summary(summary)
        if "channels" in summary:
            out["channels"] = [
                {"channel": c["channel"], "channel_name": self.channel_name(c["channel"])}
                | self._channel_summary(c)
                for c in summary["channels"]
            ]
        return out

    def _channel_summary(self, summary: Mapping[str, Any]) -> dict:
        worst = summary.get("most_negative")
        if worst is not None:
            worst = {
                "channel": worst["channel"],
                "channel_name": self.channel_name(worst["channel"]),
                **{k: v for k, v in worst.items() if k != "channel"},
            }
        return {
            "dominant": summary.get("dominant"),
            "shares": self.ordered(summary.get("shares")),
            "speech_s": summary.get("speech_s"),
            "silence_s": summary.get("silence_s"),
            "duration_s": summary.get("duration_s"),
            "n_segments": summary.get("n_segments"),
            "most_negative": worst,
        }


def _rounded(value: Any, digits: int | None) -> Any:
    if digits is None or not isinstance(value, float):
        return value
    return round(value, digits)


def model_metadata(registry: ModelRegistry, model_name: str) -> dict[str, Any]:
    """The metadata of ``model_name`` in ``registry``; empty when it is gone or unreadable."""
    from core.artifacts import read_metadata
    from core.errors import ModelError

    try:
        return read_metadata(registry.resolve(model_name))
    except ModelError:
        return {}


def job_labels(session: Session, job: Job, metadata: Mapping[str, Any]) -> list[str]:
    """Class labels of the job's model, in the model's order: from its ``metadata``; when the
    model is gone, from a stored result instead."""
    if metadata.get("labels"):
        return list(metadata["labels"])
    return list(results.first_probabilities(session, job.id) or {})


def suggested_threshold(metadata: Mapping[str, Any], key: str = SUGGESTED_KEY) -> float | None:
    """The model's suggestion ``key`` when it is a number from 0 to 1."""
    value = metadata.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if math.isfinite(value) and 0.0 <= value <= 1.0:
            return float(value)
    return None


def uncertain_threshold(
    settings: Settings, requested: float | None, metadata: Mapping[str, Any]
) -> float:
    """The first of: the request's ``uncertain_below``, ``AER_UNCERTAIN_BELOW``, the model's
    suggestion, 0.0 (nothing flagged)."""
    for value in (requested, settings.uncertain_below, suggested_threshold(metadata)):
        if value is not None:
            return value
    return 0.0


def ood_threshold(settings: Settings, metadata: Mapping[str, Any]) -> float | None:
    """``AER_OOD_ABOVE``, else the model's ``suggested_ood_above``; None: never off-domain."""
    if settings.ood_above is not None:
        return settings.ood_above
    return suggested_threshold(metadata, SUGGESTED_OOD_KEY)


def channel_mode(job: Job) -> str:
    """The job's ``channels`` option (``mix`` or ``split``; the default when unreadable)."""
    try:
        return jobs.analysis_options(job.options).channels
    except jobs.InvalidOptionsError:  # such a job failed before any result
        return jobs.CHANNEL_MODES[0]


def result_view(
    settings: Settings,
    session: Session,
    job: Job,
    metadata: Mapping[str, Any],
    uncertain_below: float | None = None,
    *,
    full_precision: bool = False,
) -> ResultView:
    """The :class:`ResultView` of ``job`` (whose model has ``metadata``) for someone asking
    ``uncertain_below``."""
    return ResultView(
        labels=tuple(job_labels(session, job, metadata)),
        uncertain_below=uncertain_threshold(settings, uncertain_below, metadata),
        ood_above=ood_threshold(settings, metadata),
        channel_name=functools.partial(jobs.channel_name, settings, channels=channel_mode(job)),
        full_precision=full_precision,
    )
