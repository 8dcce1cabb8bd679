"""The sweeper: what crashes and failed aborts leave behind, removed at start-up and then periodically.

On S3, under the configured prefix only: pending space deletes
(``storage/s3_delete.py``) are finished, multipart uploads older than
``WAS_SWEEP_AGE`` are aborted (and any abort that failed while serving is
retried on the next sweep, whatever its age), and controller-index entries
of spaces with no key at all (a create that died) are dropped.  On the
filesystem: tombstones of interrupted deletes, stale temp files and empty
space directories (``storage/filesystem_sweep.py``).  Memory keeps nothing.

A sweep is blocking work: the service runs it in the storage pool, one at a
time, and ``was-admin sweep`` runs one by hand.  With ``--workers`` only
worker 0 sweeps.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from .storage.base import StorageError

log = Logger("was_twisted.sweeper")


@dataclass
class SweepReport:
    """What one sweep did; ``failures`` are retried by the next sweep."""

    deletes_finished: list[str] = field(default_factory=list)
    uploads_aborted: int = 0
    index_entries_removed: int = 0
    tombstones_removed: int = 0
    temp_files_removed: int = 0
    empty_spaces_removed: int = 0
    failures: list[str] = field(default_factory=list)
    stopped_early: bool = False

    def lines(self) -> list[str]:
        """One line per kind of leftover, for ``was-admin sweep`` and the log."""
        out = [
            f"pending space deletes finished: {len(self.deletes_finished)}"
            + (f" ({', '.join(self.deletes_finished)})" if self.deletes_finished else ""),
            f"multipart uploads aborted: {self.uploads_aborted}",
            f"stale index entries removed: {self.index_entries_removed}",
            f"tombstone directories removed: {self.tombstones_removed}",
            f"stale temporary files removed: {self.temp_files_removed}",
            f"empty space directories removed: {self.empty_spaces_removed}",
        ]
        out += [f"failed (retried next sweep): {why}" for why in self.failures]
        if self.stopped_early:
            out.append("stopped early (shutting down); the rest waits for the next sweep")
        return out

    @property
    def removed(self) -> int:
        return (
            len(self.deletes_finished)
            + self.uploads_aborted
            + self.index_entries_removed
            + self.tombstones_removed
            + self.temp_files_removed
            + self.empty_spaces_removed
        )


def sweep(
    backend: Any, age: float, now: float | None = None, stop: threading.Event | None = None
) -> SweepReport:
    """One sweep of ``backend`` (blocking); leftovers younger than ``age`` seconds are kept."""
    from .storage.filesystem import FilesystemBackend

    now = time.time() if now is None else now
    stop = stop or threading.Event()
    report = SweepReport()
    if isinstance(backend, FilesystemBackend):
        from .storage.filesystem_sweep import sweep_filesystem

        done = sweep_filesystem(backend._root, now - age)
        report.tombstones_removed = done.tombstones
        report.temp_files_removed = done.temp_files
        report.empty_spaces_removed = done.empty_spaces
        return report
    try:
        from .storage.s3 import S3Backend
    except ImportError:  # no boto3: no S3 backend to sweep
        return report
    if isinstance(backend, S3Backend):
        _sweep_s3(backend, now - age, report, stop)
    return report


def _sweep_s3(backend: Any, older_than: float, report: SweepReport, stop: threading.Event) -> None:
    """Each step on its own: one failing (S3 down, a permission missing) does not stop the others."""
    try:
        for space_id, _ in backend.pending_deletes():
            if stop.is_set():
                report.stopped_early = True
                return
            try:
                if backend.finish_delete(space_id, stop.is_set):
                    if stop.is_set():
                        report.stopped_early = True
                        return
                    report.deletes_finished.append(space_id)
            except StorageError as exc:
                report.failures.append(f"finishing the delete of space {space_id}: {exc}")
    except StorageError as exc:
        report.failures.append(f"listing pending deletes: {exc}")
    _abort_uploads(backend, older_than, report, stop)
    try:
        for quoted, space_id in list(backend.stale_index_entries(older_than)):
            backend.drop_index_entry(quoted, space_id)
            report.index_entries_removed += 1
    except StorageError as exc:
        report.failures.append(f"stale index entries: {exc}")


def _abort_uploads(backend: Any, older_than: float, report: SweepReport, stop: threading.Event) -> None:
    failed: set[tuple[str, str]] = backend.failed_aborts
    retry = set(failed)
    try:
        stale = [(key, uid) for key, uid, started in backend.multipart_uploads() if started < older_than]
    except StorageError as exc:
        report.failures.append(f"listing multipart uploads: {exc}")
        stale = []
    for key, upload_id in sorted(retry | set(stale)):
        if stop.is_set():
            report.stopped_early = True
            return
        try:
            backend.abort_upload(key, upload_id)
        except StorageError as exc:
            failed.add((key, upload_id))
            report.failures.append(f"aborting the multipart upload of {key}: {exc}")
            continue
        failed.discard((key, upload_id))
        report.uploads_aborted += 1


class SweeperService(Service):
    """Sweeps in the storage pool at start-up, then every ``interval`` seconds; one sweep at a time."""

    def __init__(self, backend: Any, reactor: Any, pool: ThreadPool, interval: float, age: float) -> None:
        self.backend = backend
        self.reactor = reactor
        self.pool = pool
        self.interval = interval
        self.age = age
        self.stop_event = threading.Event()
        self.running_sweep: defer.Deferred[Any] | None = None
        self.loop = task.LoopingCall(self.sweep_once)
        self.loop.clock = reactor

    def startService(self) -> None:
        super().startService()
        self.stop_event.clear()
        self.loop.start(self.interval, now=True)

    def stopService(self) -> defer.Deferred[Any] | None:
        """Ask a sweep in progress to stop at its next step, and wait for it: the pool stops after us."""
        super().stopService()
        self.stop_event.set()
        if self.loop.running:
            self.loop.stop()
        return self.running_sweep

    def sweep_once(self) -> defer.Deferred[Any] | None:
        if self.running_sweep is not None:
            return None  # the last one is still going (a large pending delete): skip this turn
        d = self.running_sweep = deferToThreadPool(
            self.reactor, self.pool, sweep, self.backend, self.age, None, self.stop_event
        )
        d.addCallbacks(self._report, self._failed)
        d.addBoth(self._done)
        return None

    def _report(self, report: SweepReport) -> None:
        if report.removed or report.failures:
            for line in report.lines():
                log.info("sweep: {line}", line=line)
        for why in report.failures:
            log.warn("sweep: {why}", why=why)

    def _failed(self, failure: Failure) -> None:
        log.failure("sweep failed; the next one tries again", failure)

    def _done(self, _: object) -> None:
        self.running_sweep = None
