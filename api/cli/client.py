"""A small HTTP client for the AER API, standard library only (for `aer submit`, `status`, ...).

Uploads are streamed from disk with a hand-written multipart encoder, so a multi-gigabyte zip
is never held in memory; CSV exports are streamed to disk the same way.
"""

from __future__ import annotations

import json
import mimetypes
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode
from urllib.request import Request, urlopen

from api.store.states import TERMINAL_JOB_STATES

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL_STATES = frozenset(TERMINAL_JOB_STATES)
_CHUNK = 1 << 16


class ClientError(Exception):
    """The server answered with an error (``status`` is 0 when it could not be reached)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}" if status else message)
        self.status = status
        self.code = code
        self.message = message


def upload_entries(paths: Sequence[str | os.PathLike | tuple[Path, str]]) -> list[tuple[Path, str]]:
    """``(file, upload name)`` for each path: a file under its own name; a folder's audio files
    and zip archives, recursively, named ``<folder name>/<path inside it>`` (hidden files and
    folders skipped), so that ``d1/call.flac`` and ``d2/call.flac`` stay distinct; a
    ``(file, upload name)`` pair as it is.

    Raises:
        ClientError: a folder holds no audio file or archive.
    """
    from api.store.uploads import ARCHIVE_EXTENSIONS, AUDIO_EXTENSIONS  # the server's list

    entries = []
    for item in paths:
        if isinstance(item, tuple):
            entries.append(item)
            continue
        path = Path(item)
        if not path.is_dir():
            entries.append((path, path.name))
            continue
        top = path.resolve().name
        found = []
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                suffix = Path(name).suffix.lower()
                if name.startswith(".") or suffix not in AUDIO_EXTENSIONS | ARCHIVE_EXTENSIONS:
                    continue
                file = Path(dirpath, name)
                rel = file.relative_to(path).as_posix()
                found.append((file, f"{top}/{rel}" if top else rel))
        if not found:
            raise ClientError(0, "no_audio", f"no audio files or zip archives in {str(path)!r}")
        entries += found
    return entries


class Multipart:
    """A streaming ``multipart/form-data`` body: form fields plus files read chunk by chunk.

    ``files`` are ``(field, path)`` or ``(field, path, file name)``. ``on_chunk(nbytes,
    file_done)`` is called as each block of file data is sent, and with ``(0, True)`` after
    each file's last block.
    """

    def __init__(
        self,
        fields: Sequence[tuple[str, str]],
        files: Sequence[tuple[str, Path] | tuple[str, Path, str]],
        *,
        on_chunk: Callable[[int, bool], None] | None = None,
    ):
        self.boundary = uuid.uuid4().hex
        self.on_chunk = on_chunk
        self._parts: list[tuple[bytes, Path | None]] = []
        for name, value in fields:
            head = f'Content-Disposition: form-data; name="{name}"\r\n\r\n{value}'
            self._parts.append((self._head(head), None))
        for name, path, *rest in files:
            upload_name = rest[0] if rest else path.name
            ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            filename = upload_name.translate({ord(c): "_" for c in '"\r\n'})
            head = (
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {ctype}\r\n\r\n"
            )
            self._parts.append((self._head(head), path))
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()

    def _head(self, text: str) -> bytes:
        return f"\r\n--{self.boundary}\r\n{text}".encode()

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @property
    def file_count(self) -> int:
        """How many files the body carries."""
        return sum(path is not None for _, path in self._parts)

    def __len__(self) -> int:
        size = len(self._tail)
        for head, path in self._parts:
            size += len(head) + (path.stat().st_size if path else 0)
        return size

    def __iter__(self) -> Iterator[bytes]:
        report = self.on_chunk or (lambda nbytes, file_done: None)
        for head, path in self._parts:
            yield head
            if path is not None:
                with path.open("rb") as fh:
                    while chunk := fh.read(_CHUNK):
                        yield chunk
                        report(len(chunk), False)
                report(0, True)
        yield self._tail


class AERClient:
    """Talks to one AER server at ``base_url`` (the API lives under ``/api/v1``)."""

    def __init__(
        self, base_url: str = DEFAULT_URL, *, api_key: str | None = None, timeout: float = 60.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    # --- plumbing ----------------------------------------------------------------------------

    def _url(self, path: str, query: dict | None = None) -> str:
        url = path if path.startswith("http") else f"{self.base_url}/api/v1{path}"
        query = {k: v for k, v in (query or {}).items() if v is not None}
        return f"{url}?{urlencode(query)}" if query else url

    def _open(self, request: Request):
        try:
            return urlopen(request, timeout=self.timeout)  # noqa: S310 - URL given by the user
        except HTTPError as exc:
            raise _client_error(exc) from None
        except URLError as exc:
            raise ClientError(
                0, "unreachable", f"cannot reach {self.base_url}: {exc.reason}"
            ) from None

    def send(
        self,
        method: str,
        path: str,
        *,
        query: dict | None = None,
        body: Any = None,
        accept: str = "application/json",
    ):
        """Send one request (the one place every request goes through, with the API key);
        returns the open response. ``body``: a :class:`Multipart`, or anything JSON."""
        data, headers = None, {"Accept": accept, **self._auth}
        if isinstance(body, Multipart):
            data = iter(body)
            headers["Content-Type"] = body.content_type
            headers["Content-Length"] = str(len(body))
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = Request(self._url(path, query), data=data, headers=headers, method=method)
        return self._open(req)

    def request(
        self, method: str, path: str, *, query: dict | None = None, body: Any = None
    ) -> dict | None:
        """Send one request and decode the JSON answer (``None`` for 204)."""
        with self.send(method, path, query=query, body=body) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    # --- API ---------------------------------------------------------------------------------

    def submit_files(
        self,
        paths: Sequence[str | os.PathLike | tuple[Path, str]],
        *,
        model: str | None = None,
        channels: str | None = None,
        segmentation: str | None = None,
        on_chunk: Callable[[int, bool], None] | None = None,
    ) -> dict:
        """Upload audio files, zip archives and folders of them (see :func:`upload_entries`)
        as one job; returns the job (state ``queued``). ``on_chunk`` follows the upload (see
        :class:`Multipart`)."""
        options = {"model": model, "channels": channels, "segmentation": segmentation}
        fields = [(k, v) for k, v in options.items() if v]
        files = [("files", path, name) for path, name in upload_entries(paths)]
        body = Multipart(fields, files, on_chunk=on_chunk)
        return self.request("POST", "/jobs", body=body)

    def submit_folder(self, folder: str, **options: object) -> dict:
        """Start a job over a folder that lies on the server, under one of its allowed roots
        (``options``: ``recursive``, ``pattern``, ``model``, ``channels``, ``segmentation``)."""
        return self.submit_json({"folder": folder}, **options)

    def submit_source(self, source: str, **options: object) -> dict:
        """Start a job over the audio objects under an ``s3://bucket/prefix/`` the server may
        read (its ``AER_ALLOWED_BUCKETS``); ``options`` as for :meth:`submit_folder`."""
        return self.submit_json({"source": source}, **options)

    def submit_urls(self, urls: Sequence[str], **options: object) -> dict:
        """Start a job over https URLs on hosts the server may fetch from (its
        ``AER_ALLOWED_URL_HOSTS``), one file each; ``options``: ``model``, ``channels``,
        ``segmentation``."""
        return self.submit_json({"urls": list(urls)}, **options)

    def submit_json(self, source: dict, **options: object) -> dict:
        """``POST /jobs`` with a JSON body: ``source`` (one of ``folder``, ``source``,
        ``urls``) and the options that are not None."""
        body = source | {k: v for k, v in options.items() if v is not None}
        return self.request("POST", "/jobs", body=body)

    def job(self, job_id: str) -> dict:
        """The job's state, counts and timings (``job_id``: the id or a unique prefix)."""
        return self.request("GET", f"/jobs/{job_id}")

    def cancel(self, job_id: str) -> dict:
        """Stop the job (its results so far are kept); returns the job."""
        return self.request("POST", f"/jobs/{job_id}/cancel")

    def jobs(self, *, state: str | None = None, page: int = 1, size: int = 50) -> dict:
        """One page of jobs, newest first."""
        return self.request("GET", "/jobs", query={"state": state, "page": page, "size": size})

    def results(self, job_id: str, **filters: Any) -> Iterator[dict]:
        """Every per-file result of a job, following the pagination cursor."""
        return self._all_pages(f"/jobs/{job_id}/results", {"limit": 500, **filters})

    def segments(self, job_id: str, file_id: int, **query: Any) -> Iterator[dict]:
        """Every segment of one file of a job, in timeline order, following the cursor."""
        path = f"/jobs/{job_id}/files/{file_id}/segments"
        return self._all_pages(path, {"limit": 1000, **query})

    def _all_pages(self, path: str, query: dict[str, Any]) -> Iterator[dict]:
        """The items of every page of a cursor-paginated listing, lazily."""
        while True:
            page = self.request("GET", path, query=query)
            yield from page["items"]
            if not page.get("next_cursor"):
                return
            query = {**query, "cursor": page["next_cursor"]}

    def export(
        self,
        job_id: str,
        dest: str | os.PathLike | BinaryIO,
        *,
        fmt: str = "csv",
        granularity: str = "file",
        uncertain_below: float | None = None,
        full_precision: bool = False,
    ) -> int:
        """Stream the job's results table (one row per ``file`` or per ``segment``) as ``fmt``
        (``csv``, ``jsonl`` or ``parquet``) into ``dest`` (a path or a binary file); returns
        the bytes written. Numbers are rounded (4 decimals, seconds 3) unless
        ``full_precision``."""
        query = {"granularity": granularity, "uncertain_below": uncertain_below}
        query["precision"] = "full" if full_precision else None
        path = f"/jobs/{job_id}/results.{fmt}"
        written = 0
        with self.send("GET", path, query=query, accept="*/*") as resp, _binary_out(dest) as out:
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
                written += len(chunk)
        return written

    def export_csv(self, job_id: str, dest: str | os.PathLike | BinaryIO, **options: Any) -> int:
        """:meth:`export` as CSV."""
        return self.export(job_id, dest, fmt="csv", **options)

    def start_export(
        self,
        job_id: str,
        destination: str,
        *,
        fmt: str = "csv",
        granularity: str = "file",
        uncertain_below: float | None = None,
        full_precision: bool = False,
    ) -> dict:
        """Ask the server to write the job's results to ``destination`` (``s3://bucket/prefix/``)
        as ``fmt``; returns the queued export (poll it with :meth:`wait_export`)."""
        body = {"destination": destination, "format": fmt, "granularity": granularity}
        body["precision"] = "full" if full_precision else "rounded"
        if uncertain_below is not None:
            body["uncertain_below"] = uncertain_below
        return self.request("POST", f"/jobs/{job_id}/exports", body=body)

    def exports(self, job_id: str) -> list[dict]:
        """The job's bucket exports, oldest first."""
        return self.request("GET", f"/jobs/{job_id}/exports")["items"]

    def wait_export(
        self, export: dict, *, interval: float = 0.5, timeout: float | None = None
    ) -> dict:
        """Poll ``export`` (as :meth:`start_export` returned it) until it is ``done`` or
        ``failed``; returns it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while export["state"] not in ("done", "failed"):
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"export {export['id']} still {export['state']}")
            time.sleep(interval)
            export = self.request("GET", f"/jobs/{export['job_id']}/exports/{export['id']}")
        return export

    def delete(self, job_id: str) -> None:
        """Cancel the job and remove its results and uploads."""
        self.request("DELETE", f"/jobs/{job_id}")

    def models(self) -> list[dict]:
        """The models the server can use."""
        return self.request("GET", "/models")["items"]

    def health(self) -> dict:
        """The server's health report (raises :class:`ClientError` on 503)."""
        return self.request("GET", "/healthz")

    def wait(
        self,
        job_id: str,
        *,
        interval: float = 0.5,
        timeout: float | None = None,
        on_update: Callable[[dict], None] | None = None,
    ) -> dict:
        """Poll until the job reaches a terminal state; ``on_update`` sees every poll."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if on_update:
                on_update(job)
            if job["state"] in TERMINAL_STATES:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['state']} after {timeout} s")
            time.sleep(interval)


@contextmanager
def _binary_out(dest: str | os.PathLike | BinaryIO) -> Iterator[BinaryIO]:
    if hasattr(dest, "write"):
        yield dest
        dest.flush()
    else:
        with open(dest, "wb") as out:
            yield out


def _client_error(exc: HTTPError) -> ClientError:
    try:
        err = json.loads(exc.read())["error"]
        return ClientError(exc.code, err.get("code", "error"), err.get("message", ""))
    except (ValueError, KeyError, TypeError):
        return ClientError(exc.code, "http_error", str(exc.reason))
