"""The query strings of the pages: the job list's filters and the results table's filters,
sort and keyset cursor. Anything unreadable falls back to the default (a page never 422s)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from api.store.results import RESULT_ORDERS
from api.store.states import JobState

MAX_ID = 2**62


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        number = int(value or "")
    except ValueError:
        return default
    return number if low <= number <= high else default


def _fraction(value: str | None) -> float | None:
    try:
        number = float(value or "")
    except ValueError:
        return None
    return number if math.isfinite(number) and 0.0 <= number <= 1.0 else None


@dataclass(frozen=True)
class JobsFilter:
    """``/?state=&q=&page=``."""

    state: str | None = None
    q: str | None = None
    page: int = 1

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> JobsFilter:
        state = args.get("state") or None
        q = (args.get("q") or "").strip()[:200] or None
        return cls(
            state=state if state in set(JobState) else None,
            q=q,
            page=_int(args.get("page"), 1, 1, 1_000_000),
        )

    def args(self, **changes) -> dict:
        """The query string of this filter with ``changes`` (empty values left out)."""
        return {k: v for k, v in (asdict(self) | changes).items() if v not in (None, "", 1)}


@dataclass(frozen=True)
class ResultsFilter:
    """``/jobs/<id>?label=&min_confidence=&uncertain=1&failed=1&sort=&after=``.

    ``after`` is the keyset cursor: the last file id (sort by id) or ``<confidence>:<id>``.
    """

    label: str | None = None
    min_confidence: float | None = None
    uncertain: bool = False
    failed: bool = False
    sort: str = "id"
    after_id: int | None = None
    after_confidence: float | None = None

    @classmethod
    def from_args(cls, args: Mapping[str, str], labels: Sequence[str]) -> ResultsFilter:
        sort = args.get("sort") if args.get("sort") in RESULT_ORDERS else "id"
        label = args.get("label") or None
        after_id, after_confidence = _cursor(args.get("after") or "", sort)
        return cls(
            label=label if label in labels else None,
            min_confidence=_fraction(args.get("min_confidence")),
            uncertain=args.get("uncertain") == "1",
            failed=args.get("failed") == "1",
            sort=sort,
            after_id=after_id,
            after_confidence=after_confidence,
        )

    @property
    def filtered(self) -> bool:
        """Whether any filter (not the sort) is set."""
        return bool(self.label or self.min_confidence is not None or self.uncertain or self.failed)

    def args(self) -> dict:
        """The query string of this filter and sort, first page."""
        args = {
            "label": self.label,
            "min_confidence": self.min_confidence,
            "uncertain": "1" if self.uncertain else None,
            "failed": "1" if self.failed else None,
            "sort": None if self.sort == "id" else self.sort,
        }
        return {k: v for k, v in args.items() if v is not None}

    def next_args(self, confidence: float | None, file_id: int) -> dict:
        """The query string of the page after the row ``(confidence, file_id)``."""
        after = str(file_id) if self.sort == "id" else f"{confidence!r}:{file_id}"
        return self.args() | {"after": after}


def _cursor(raw: str, sort: str) -> tuple[int | None, float | None]:
    if sort == "id":
        number = _int(raw, -1, 0, MAX_ID)
        return (number if number >= 0 else None), None
    confidence, _, file_id = raw.rpartition(":")
    number, value = _int(file_id, -1, 0, MAX_ID), _fraction(confidence)
    if number < 0 or value is None:
        return None, None
    return number, value
