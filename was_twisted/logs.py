"""Log observers for ``twistd --logger``: JSON lines on stdout, for journald and log shippers.

Use: ``twistd -n --logger=was_twisted.logs.json_lines was``.  Each event is
one compact JSON object: time, level, namespace, the formatted message, the
event's own scalar fields (``request_id``, ``method`` ...) and, for a
failure, its traceback (for the operator's log, never for a client).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import IO, Any

from twisted.logger import ILogObserver, formatEvent
from zope.interface import implementer

_SCALARS = (str, int, float, bool)


@implementer(ILogObserver)
class JSONLinesObserver:
    """Writes one JSON object per event, one per line."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def __call__(self, event: dict[str, Any]) -> None:
        level = event.get("log_level")
        record: dict[str, Any] = {
            "time": datetime.fromtimestamp(event.get("log_time", 0), UTC).isoformat(timespec="milliseconds"),
            "level": getattr(level, "name", "info"),
            "namespace": event.get("log_namespace", "-"),
            "message": formatEvent(event),
        }
        for key, value in event.items():
            if not key.startswith(("log_", "_")) and key not in record and isinstance(value, _SCALARS):
                record[key] = value
        failure = event.get("log_failure")
        if failure is not None:
            record["traceback"] = failure.getTraceback()
        self._out.write(json.dumps(record, default=str) + "\n")
        self._out.flush()


def json_lines() -> ILogObserver:
    """The observer ``--logger`` names: JSON lines on stdout."""
    return JSONLinesObserver(sys.stdout)
