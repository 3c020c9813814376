"""JSON request bodies read within limits: size checked before the body is read, nesting depth
checked before it is parsed, so neither a huge nor a deeply nested body reaches the parser."""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Request

from api.web.errors import APIError

#: A JSON string (its brackets are not structure).
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
#: Every byte but the four brackets, deleted before the depth is measured.
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
#: Empty pairs: one pass of ``sub`` removes one level (pairs it uncovers wait for the next).
_INNERMOST = re.compile(rb"\[\]|\{\}")


def json_depth_exceeds(data: bytes, max_depth: int) -> bool:
    """Whether ``data`` nests arrays and objects more than ``max_depth`` deep.

    Each pass removes the innermost empty pairs, in C; balanced brackets left after
    ``max_depth`` passes are deeper than that. Unbalanced ones are left to the parser.
    """
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    for _ in range(max_depth):
        if not brackets:
            return False
        brackets = _INNERMOST.sub(b"", brackets)
    opened = brackets.count(b"[") + brackets.count(b"{")
    return bool(brackets) and 2 * opened == len(brackets)


def read_json(request: Request, *, max_bytes: int, max_depth: int) -> Any:
    """The parsed JSON body of ``request``.

    Raises:
        APIError: 413 ``payload_too_large`` over ``max_bytes`` (before anything is read when
            the length is declared); 400 ``too_deep`` nested deeper than ``max_depth``;
            400 ``bad_request`` not JSON.
    """
    limit_kb = max_bytes // 1024
    too_large = APIError(
        f"the JSON body is larger than the limit of {limit_kb} KB (AER_MAX_JSON_KB)",
        status=413,
        code="payload_too_large",
    )
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large
    data = request.stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise too_large
    too_deep = APIError(
        f"the JSON body nests deeper than {max_depth} levels (AER_MAX_JSON_DEPTH)",
        status=400,
        code="too_deep",
    )
    if json_depth_exceeds(data, max_depth):
        raise too_deep
    try:
        return json.loads(data)
    except RecursionError:  # unbalanced and deep: the parser gave up before seeing the end
        raise too_deep from None
    except ValueError:
        raise APIError("the body is not valid JSON", status=400) from None
