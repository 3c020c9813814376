"""A stored object served to the browser from the bucket of ``AER_STORAGE_URL``: the bytes a
range request asks for, streamed block by block (never the whole object in memory), with the
entity tag for conditional requests."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Response, request
from werkzeug.datastructures import ContentRange

from api.store.storage import ObjectInfo, Storage


def _body(storage: Storage, key: str, start: int, stop: int) -> Iterator[bytes]:
    if stop > start:
        yield from storage.read_range(key, start, stop - 1)


def stream_object(storage: Storage, info: ObjectInfo, mimetype: str) -> Response:
    """The object ``info`` as a 200, a 206 for one satisfiable byte range, a 416 for a range
    past its end, or a 304 when the browser's copy is current (``If-None-Match``)."""
    etag = info.etag or f"{info.size:x}"
    if request.if_none_match.contains(etag):
        response = Response(status=304)
        response.set_etag(etag)
        return response
    start, stop, status = 0, info.size, 200
    wanted = request.range
    if wanted is not None and (not request.if_range.etag or request.if_range.etag == etag):
        span = wanted.range_for_length(info.size)
        if span is None:
            response = Response(status=416)
            response.content_range = ContentRange("bytes", None, None, info.size)
            return response
        (start, stop), status = span, 206
    response = Response(
        _body(storage, info.key, start, stop),
        status=status,
        mimetype=mimetype,
        direct_passthrough=True,
    )
    response.content_length = stop - start
    response.accept_ranges = "bytes"
    response.set_etag(etag)
    response.last_modified = info.modified
    if status == 206:
        response.content_range = ContentRange("bytes", start, stop, info.size)
    return response
