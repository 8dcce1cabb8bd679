"""JSON-lines logging for journald."""

from __future__ import annotations

import io
import json

from twisted.logger import Logger
from twisted.python.failure import Failure

from was_twisted.logs import JSONLinesObserver


def test_events_become_one_json_object_per_line() -> None:
    """An event is one line of JSON with its message, level, fields and, for failures, the traceback."""
    out = io.StringIO()
    log = Logger(namespace="was.test", observer=JSONLinesObserver(out))
    log.info("request {request_id} took {ms} ms", request_id="abc123", ms=5)
    try:
        raise ValueError("boom")
    except ValueError:
        log.failure("request {request_id} failed", Failure(), request_id="def456")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == "request abc123 took 5 ms" and first["level"] == "info"
    assert first["request_id"] == "abc123" and first["namespace"] == "was.test"
    assert second["level"] == "critical" and "ValueError: boom" in second["traceback"]
