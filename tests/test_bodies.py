"""Strict JSON bodies: UTF-8 application/json objects with bounded nesting (no server)."""

from __future__ import annotations

import json

import pytest

from bodies import MAX_DEPTH, BodyError, nesting_depth, parse_json_object


def test_a_plain_order_body_parses():
    body = parse_json_object(
        "application/json; charset=UTF-8",
        b'{"symbol": "AAPL", "quantity": 1, "note": "caf\xc3\xa9"}',
    )
    assert body == {"symbol": "AAPL", "quantity": 1, "note": "café"}


@pytest.mark.parametrize(
    "text, depth",
    [
        ("{}", 1),
        ("[]", 1),
        ('{"a": [1, {"b": 2}]}', 3),
        ('"[[[["', 0),
        ('{"a": "}]]]\\"[[["}', 1),
        ('[{"x": "\\\\"}, [[]]]', 3),
        ("1", 0),
    ],
)
def test_nesting_ignores_brackets_inside_strings(text, depth):
    assert nesting_depth(text) == depth


def test_nesting_at_the_limit_passes_and_one_more_is_refused():
    at_limit = '{"a":' * (MAX_DEPTH - 1) + "[]" + "}" * (MAX_DEPTH - 1)
    assert nesting_depth(at_limit) == MAX_DEPTH
    assert parse_json_object("application/json", at_limit.encode())
    over = '{"a":' * MAX_DEPTH + "[]" + "}" * MAX_DEPTH
    with pytest.raises(BodyError) as err:
        parse_json_object("application/json", over.encode())
    assert err.value.status == 400 and "deeper than" in err.value.message


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/xml",
        None,
        "",
        "application/json; charset=latin-1",
        "application/json-patch+json",
    ],
)
def test_other_media_types_are_415(content_type):
    with pytest.raises(BodyError) as err:
        parse_json_object(content_type, b"{}")
    assert err.value.status == 415


def test_text_plain_only_where_asked_for():
    assert parse_json_object("text/plain", b'{"a": 1}', also_accept=("text/plain",)) == {"a": 1}


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps({"a": 1}).encode("utf-16"),
        json.dumps({"a": 1}).encode("utf-32-le"),
        b"\xef\xbb\xbf{}",
        b"\xff\xfe",
        b'{"a": "\xe9"}',
        b"",
        b"[1]",
        b"null",
        b'"x"',
        b"{",
    ],
)
def test_non_utf8_or_non_objects_are_400(raw):
    with pytest.raises(BodyError) as err:
        parse_json_object("application/json", raw)
    assert err.value.status == 400
