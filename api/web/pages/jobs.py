"""The jobs pages: the list (``/``), the new-job form and one job with its results table; the
cancel and delete forms."""

from __future__ import annotations

from flask import redirect, render_template, request, url_for

from api.store import jobs, results
from api.store.states import ACTIVE_JOB_STATES, ExportState, JobState
from api.web.context import db, settings
from api.web.models import model_list
from api.web.pages import access, bp
from api.web.pages.charts import distribution_svg
from api.web.pages.display import job_name, job_row, job_source
from api.web.pages.query import JobsFilter, ResultsFilter
from api.web.serializers import export_json, result_row
from api.web.views import domain_summary, job_view

#: Jobs per page of the list, results per page of a job's table.
JOBS_PER_PAGE = 25
RESULTS_PER_PAGE = 50
#: The download and export formats, by extension, as the pages name them.
FORMAT_NAMES = {"csv": "CSV", "jsonl": "JSON Lines", "parquet": "Parquet"}
#: The tables a job's results come as: one row per file or per segment.
GRANULARITIES = {"file": "files", "segment": "segments"}


@bp.get("/")
def job_list():
    """Every job, newest first: state, live progress, rate, ETA, model, created; filters."""
    query = JobsFilter.from_args(request.args)
    offset = (query.page - 1) * JOBS_PER_PAGE
    rows, total = access.list_jobs(
        offset=offset, limit=JOBS_PER_PAGE, state=query.state, search=query.q
    )
    ids = [job.id for job in rows]
    counts, firsts = jobs.counts_by_job(db(), ids), jobs.first_files(db(), ids)
    return render_template(
        "pages/jobs.html",
        jobs=[job_row(job, counts[job.id], firsts.get(job.id)) for job in rows],
        query=query,
        total=total,
        states=list(JobState),
        more=offset + len(rows) < total,
    )


@bp.get("/jobs/new")
def new_job():
    """The forms to submit a job through the JSON API: uploads, a bucket prefix or a list of
    URLs (when the server allows any), a server-side folder."""
    current = settings()
    return render_template(
        "pages/new_job.html",
        models=model_list()["items"],  # what GET /api/v1/models lists, custom models included
        channel_names=dict(current.channel_names),
        max_upload_mb=current.max_upload_mb,
        max_files=current.max_files_per_job,
        folders_allowed=bool(current.allowed_roots),
        buckets=[f"s3://{allowed.rstrip('/')}/" for allowed in current.allowed_buckets],
        url_hosts=list(current.allowed_url_hosts),
    )


@bp.get("/jobs/<job_id>")
def job_page(job_id: str):
    """One job: live counts and progress, its emotion distribution and its results table."""
    job = access.find_job(job_id)
    view = job_view(job)
    query = ResultsFilter.from_args(request.args, view.labels)
    rows, next_id = results.result_page(
        db(),
        job.id,
        limit=RESULTS_PER_PAGE,
        label=query.label,
        min_confidence=query.min_confidence,
        uncertain_below=view.uncertain_below if query.uncertain else None,
        ood_above=view.ood_above,
        state="failed" if query.failed else None,
        order=query.sort,
        after_id=query.after_id,
        after_confidence=query.after_confidence,
    )
    next_args = None
    if next_id is not None:
        next_args = query.next_args(rows[-1].confidence, rows[-1].id)
    distribution = results.label_counts(db(), job.id)
    counts = jobs.file_counts(db(), job.id)
    first = jobs.first_files(db(), [job.id]).get(job.id)
    buckets = [f"s3://{allowed.rstrip('/')}/" for allowed in settings().allowed_buckets]
    exports = [export_json(export) for export in access.list_exports(job.id)]
    exports.sort(key=lambda export: export["created_at"], reverse=True)  # newest first
    return render_template(
        "pages/job.html",
        job=job_row(job, counts, first),
        view=view,
        rows=[result_row(row, view) for row in rows],
        query=query,
        next_args=next_args,
        chart=distribution_svg(distribution, view.labels),
        distribution=distribution,
        active=job.state in ACTIVE_JOB_STATES,
        domain=domain_summary(job),
        source=job_source(job),
        downloads=downloads(job.id),
        buckets=buckets,
        exports=exports,
        exports_pending=any(e["state"] in _PENDING_EXPORTS for e in exports),
        formats=FORMAT_NAMES,
        granularities=GRANULARITIES,
    )


_PENDING_EXPORTS = (ExportState.QUEUED, ExportState.RUNNING)


def downloads(job_id: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """The job's result downloads: for files and for segments, (format name, URL) each."""
    tables = []
    for granularity, name in GRANULARITIES.items():
        args = {"granularity": granularity} if granularity != "file" else {}  # file: the default
        links = [
            (label, url_for("results.export_results", job_id=job_id, fmt=fmt, **args))
            for fmt, label in FORMAT_NAMES.items()
        ]
        tables.append((name, links))
    return tables


@bp.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str):
    """Cancel a queued or running job (the form asks for a confirmation first)."""
    job = access.cancel_job(job_id)
    return redirect(url_for("pages.job_page", job_id=job.id, notice="cancel"), 303)


@bp.post("/jobs/<job_id>/delete")
def delete_job(job_id: str):
    """Delete a job, its results and its uploaded audio (after a confirmation)."""
    job = access.find_job(job_id)
    name = job_name(job, jobs.first_files(db(), [job.id]).get(job.id))
    access.delete_job(job.id)
    return redirect(url_for("pages.job_list", deleted=name), 303)
