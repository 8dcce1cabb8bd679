"""Resource paths: the one-regex shortcut for plain ASCII paths agrees with the full checks."""

from __future__ import annotations

import pytest

from was_twisted import ids
from was_twisted.errors import InvalidId

PATHS = [
    "/", "/a", "/a/", "/a/b", "/a/b/", "/a b/c~d_e-f.g", "/.a", "/a/.b/..c", "/...", "/a/...", "/%2F",
    "/a?b", "/a#b", "/a//b", "//", "/a/./b", "/a/../b", "/.", "/..", "/./", "/../", "/a/.", "/a/..",
    "/a\x00b", "/a\x1fb", "/a\x7fb", "/a\tb", "/é", "/a/\u2028", "/\ud800", "/" + "a" * 1023,
    "/" + "a" * 1024, "/" + "é" * 600, "/a/b/c/d/e/f/g/h",
]  # fmt: skip


def _full_check(path: str) -> str | None:
    """The verdict without the shortcut: the path, or the error message."""
    saved = ids._PLAIN_PATH
    ids._PLAIN_PATH = ids.re.compile(r"(?!)")  # never matches
    try:
        return ids.check_resource_path(path)
    except InvalidId as exc:
        return str(exc)
    finally:
        ids._PLAIN_PATH = saved


@pytest.mark.parametrize("path", PATHS)
def test_shortcut_agrees_with_the_full_checks(path: str) -> None:
    try:
        fast: str | None = ids.check_resource_path(path)
    except InvalidId as exc:
        fast = str(exc)
    assert fast == _full_check(path)


def test_plain_paths_take_the_shortcut_and_traversal_does_not() -> None:
    assert ids._PLAIN_PATH.fullmatch("/notes/2026/a.txt")
    for bad in ("/a/../b", "/..", "/a/.", "/a//b", "/a\x7f"):
        assert not ids._PLAIN_PATH.fullmatch(bad)
