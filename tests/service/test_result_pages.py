"""The store's readers behind the dashboard, on SQLite and PostgreSQL: keyset pages of results
by confidence (both directions, ties by id, NULLs left out), the ``uncertain`` filter, label
counts, job search by name, folder or id, and each job's first file."""

from __future__ import annotations

import pytest
from sqlalchemy import insert

from api.store import jobs, results
from api.store.db import session_scope
from api.store.tables import File
from api.web.serializers import ResultView

N = 300


@pytest.fixture(scope="module")
def store_settings(database_url, tmp_path_factory):
    from api.store.settings import load_settings

    data = tmp_path_factory.mktemp("data")
    return load_settings({"AER_DATA_DIR": str(data), "AER_DATABASE_URL": database_url})


@pytest.fixture(scope="module")
def seeded(store_settings) -> dict:
    """A job of 300 files (confidences with ties, some failed without one) and two others."""
    with session_scope(store_settings) as s:
        job = jobs.create_job(
            s, source_kind="upload", source="/u/x", options={"name": "Calls 50%_off"},
            model_name="aer8",
            tenant_id="default",
        )  # fmt: skip
        other = jobs.create_job(
            s,
            source_kind="folder",
            source="/srv/Calls/Tuesday",
            options={},
            model_name="aer8",
            tenant_id="default",
        )
        rows = []
        for i in range(N):
            failed = i % 10 == 9
            rows.append({
                "job_id": job.id, "rel_path": f"b/{i:04d}.wav", "path": "/x",
                "state": "failed" if failed else "done",
                "label": None if failed else ("sad", "happy", "angry")[i % 3],
                "confidence": None if failed else (i * 37 % 20) / 20,
                "ood": None if i % 4 == 0 else (i * 13 % 10) / 10,  # also on failed files
            })  # fmt: skip
        rows.append({"job_id": other.id, "rel_path": "a.wav", "path": "/y", "state": "done",
                     "label": "sad", "confidence": 0.5})  # fmt: skip
        s.execute(insert(File), rows)
        return {"job": job.id, "other": other.id}


def uncertain(row: File, uncertain_below: float, ood_above: float | None = None, **_) -> bool:
    """The API's rule: what ``ResultView.uncertain`` says of the row."""
    view = ResultView(labels=(), uncertain_below=uncertain_below, ood_above=ood_above,
                      channel_name=str)  # fmt: skip
    return bool(view.uncertain(row.confidence, row.ood))


def every_page(s, job_id: str, limit: int, **filters) -> list[File]:
    out, after_id, after_confidence = [], None, None
    while True:
        rows, next_id = results.result_page(
            s, job_id, after_id=after_id, after_confidence=after_confidence, limit=limit, **filters
        )
        out += rows
        if next_id is None:
            return out
        assert next_id == rows[-1].id
        after_id, after_confidence = rows[-1].id, rows[-1].confidence


@pytest.mark.parametrize("order", ["id", "confidence", "-confidence"])
@pytest.mark.parametrize(
    "filters",
    [{}, {"label": "sad"}, {"uncertain_below": 0.3}, {"uncertain_below": 0.3, "ood_above": 0.8}],
)
def test_keyset_pages_list_each_file_once_in_order(store_settings, seeded, order, filters):
    with session_scope(store_settings) as s:
        rows = every_page(s, seeded["job"], 7, order=order, **filters)
        everything = every_page(s, seeded["job"], 1000)
    wanted = [
        r for r in everything
        if (order == "id" or r.confidence is not None)
        and r.label == filters.get("label", r.label)
        and ("uncertain_below" not in filters or uncertain(r, **filters))
    ]  # fmt: skip
    if order != "id":
        wanted.sort(key=lambda r: (r.confidence, r.id), reverse=order.startswith("-"))
    assert [r.id for r in rows] == [r.id for r in wanted] and wanted
    assert len(everything) == N


def test_unknown_orders_are_refused(store_settings, seeded):
    with session_scope(store_settings) as s, pytest.raises(ValueError):
        results.result_page(s, seeded["job"], after_id=None, limit=5, order="label")


def test_label_counts(store_settings, seeded):
    with session_scope(store_settings) as s:
        counts = results.label_counts(s, seeded["job"])
    assert counts == {"sad": 90, "angry": 90, "happy": 90}
    assert list(counts) == sorted(counts)  # ties by label


@pytest.mark.parametrize(
    ("search", "expected"),
    [("calls 50%", {"job"}), ("50%_", {"job"}), ("%", {"job"}), ("s_5", set()), ("_off", {"job"}),
     ("calls", {"job", "other"}), ("tuesday", {"other"}), ("nothing", set())],
)  # fmt: skip
def test_jobs_are_found_by_name_folder_or_id(store_settings, seeded, search, expected):
    with session_scope(store_settings) as s:
        mine = {seeded["job"]: "job", seeded["other"]: "other"}
        rows, total = jobs.list_jobs(s, tenant_id="default", offset=0, limit=500, search=search)
        found = {mine[j.id] for j in rows if j.id in mine}
        assert found == expected
        by_id, _ = jobs.list_jobs(
            s, tenant_id="default", offset=0, limit=5, search=seeded["other"][:12].upper()
        )
        assert [j.id for j in by_id] == [seeded["other"]]


def test_first_files(store_settings, seeded):
    with session_scope(store_settings) as s:
        firsts = jobs.first_files(s, [seeded["job"], seeded["other"], "nope"])
    assert firsts == {seeded["job"]: "b/0000.wav", seeded["other"]: "a.wav"}
