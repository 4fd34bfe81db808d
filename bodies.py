"""JSON request bodies, read strictly: UTF-8 ``application/json``, an object, bounded nesting.

Pure functions of the Content-Type header and the raw bytes, so every hostile
body can be tested without a server. ``json.loads`` on bytes would guess
UTF-16/32 and recurse without bound (a RecursionError, i.e. a 500); here the
bytes must be UTF-8 and nesting is measured before anything is parsed.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32  # objects and arrays inside each other; order bodies need 2


class BodyError(ValueError):
    """A body the API refuses: ``status`` 400 or 415, ``code`` for the error shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def parse_json_object(
    content_type: str | None, raw: bytes, also_accept: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The body as a dict, or BodyError saying what is wrong with it."""
    _check_content_type(content_type, also_accept)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError(400, "invalid_body", "the body is not UTF-8 text") from None
    if text.startswith("\ufeff"):
        raise BodyError(
            400, "invalid_body", "the body starts with a byte order mark; send plain UTF-8 JSON"
        )
    if nesting_depth(text) > MAX_DEPTH:
        raise BodyError(400, "invalid_body", f"the JSON nests deeper than {MAX_DEPTH} levels")
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise BodyError(400, "invalid_body", f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BodyError(400, "invalid_body", "the request body must be a JSON object")
    return body


def _check_content_type(content_type: str | None, also_accept: tuple[str, ...]) -> None:
    mimetype, _, params = (content_type or "").partition(";")
    mimetype = mimetype.strip().lower()
    if mimetype != "application/json" and mimetype not in also_accept:
        raise BodyError(
            415,
            "unsupported_media_type",
            "send the body as 'Content-Type: application/json' (UTF-8)",
        )
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise BodyError(
                415,
                "unsupported_media_type",
                f"charset {value.strip()[:40]!r}: JSON bodies must be UTF-8",
            )


def nesting_depth(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` outside strings (no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest
