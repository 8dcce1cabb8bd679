"""The header parsers every conditional route shares: If-Match / If-None-Match, Range, If-Range."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from was_twisted.errors import InvalidRequestBody
from was_twisted.storage.base import ByteRange, Condition
from was_twisted.web.preconditions import parse_condition
from was_twisted.web.ranges import if_range_holds, parse_range


@pytest.mark.parametrize(
    ("if_match", "if_none_match", "expected"),
    [
        (None, None, None),
        ("*", None, Condition(if_match=("*",))),
        ('"a"', None, Condition(if_match=('"a"',))),
        (' "a" , W/"b",, "c" ', None, Condition(if_match=('"a"', 'W/"b"', '"c"'))),
        (None, "*", Condition(if_none_match=True)),
        ('"a"', " * ", Condition(if_match=('"a"',), if_none_match=True)),
    ],
)
def test_conditions(if_match: str | None, if_none_match: str | None, expected: Condition | None) -> None:
    """Entity tags keep their quotes (compared strongly); * and empty list elements as RFC 9110 says."""
    assert parse_condition(if_match, if_none_match) == expected


@pytest.mark.parametrize(
    ("if_match", "if_none_match"),
    [("a", None), ('"a", *', None), ("", None), (",", None), ('"a"b', None), (None, '"a"'), (None, "")],
)
def test_malformed_conditions(if_match: str | None, if_none_match: str | None) -> None:
    with pytest.raises(InvalidRequestBody):
        parse_condition(if_match, if_none_match)


def test_too_many_tags() -> None:
    with pytest.raises(InvalidRequestBody):
        parse_condition(",".join(['"x"'] * 65), None)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-9", ByteRange(first=0, last=9)),
        ("bytes=5-", ByteRange(first=5)),
        ("bytes=-5", ByteRange(suffix=5)),
        ("Bytes = 1-1 ", ByteRange(first=1, last=1)),
        ("bytes=0-1,3-4", None),
        ("bytes=9-1", None),
        ("bytes=-", None),
        ("pages=1-2", None),
        ("bytes=1-2-3", None),
        ("bytes=" + "9" * 19 + "-", None),
        (None, None),
    ],
)
def test_parse_range(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header) == expected


@pytest.mark.parametrize(
    ("wanted", "size", "span"),
    [
        (ByteRange(first=0, last=9), 5, (0, 4)),
        (ByteRange(first=5), 5, None),
        (ByteRange(suffix=0), 5, None),
        (ByteRange(suffix=9), 5, (0, 4)),
        (ByteRange(first=0), 0, None),
        (ByteRange(suffix=1), 0, None),
    ],
)
def test_resolve(wanted: ByteRange, size: int, span: tuple[int, int] | None) -> None:
    assert wanted.resolve(size) == span


def test_if_range() -> None:
    """A strong ETag must equal; a date must equal Last-Modified to the second; else no range."""
    assert if_range_holds(None, None, None)
    assert if_range_holds('"e"', '"e"', None)
    assert not if_range_holds('W/"e"', '"e"', None)
    assert not if_range_holds('"f"', '"e"', None)
    assert if_range_holds(formatdate(1000, usegmt=True), None, 1000.7)
    assert not if_range_holds(formatdate(999, usegmt=True), None, 1000.0)
    assert not if_range_holds("yesterday", None, 1000.0)
    assert not if_range_holds(formatdate(1000, usegmt=True), '"e"', None)
