"""The sweeper: what it removes on each backend, what it keeps, and ``was-admin sweep``."""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from tests.unit.test_storage_contract import allow
from was_twisted import admin
from was_twisted.config import ConfigError, Settings, settings_from_env
from was_twisted.service import build_service
from was_twisted.storage.base import SpaceRecord
from was_twisted.storage.filesystem import FilesystemBackend
from was_twisted.storage.memory import MemoryBackend
from was_twisted.storage.s3 import S3Backend
from was_twisted.storage.s3_upload import abort
from was_twisted.sweeper import SweeperService, sweep

BUCKET = "was-sweep"
ALICE = "did:key:z6MkAlice"
DAY = 24 * 3600


def record(space_id: str) -> SpaceRecord:
    return SpaceRecord(space_id=space_id, id=f"urn:uuid:{space_id}", controller=ALICE)


def stale_file(path: Path, seconds: float = 2 * DAY) -> Path:
    """A file last written ``seconds`` ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"half an upload")
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))
    return path


# -- filesystem ------------------------------------------------------------------


def test_filesystem_leftovers_go_and_live_data_stays(tmp_path: Path) -> None:
    """Tombstones (any age), temp files older than the bound, empty space dirs go; the rest stays."""
    b = FilesystemBackend(tmp_path)
    b.put_space("s1", lambda current: record("s1"))
    b.write_resource("s1", "/keep", io.BytesIO(b"live"), "text/plain", allow)
    spaces = tmp_path / "spaces"
    tomb = spaces / ".deleting-s2-0123"
    (tomb / "resources").mkdir(parents=True)
    for n in range(50):
        (tomb / "resources" / f"%2F{n}.data").write_bytes(b"x")
    res = spaces / "s1" / "resources"
    stale_file(res / ".tmp-upload1")
    stale_file(spaces / "s1" / ".tmp-meta")
    stale_file(spaces / "s1" / "policies" / ".tmp-policy")
    fresh = stale_file(res / ".tmp-still-arriving", seconds=60)
    (spaces / "crashed-create").mkdir()
    report = sweep(b, DAY)
    assert report.tombstones_removed == 1 and not tomb.exists()
    assert report.temp_files_removed == 3
    assert report.empty_spaces_removed == 1 and not (spaces / "crashed-create").exists()
    assert fresh.exists()
    assert sorted(p.name for p in res.iterdir()) == ["%2Fkeep.data", "%2Fkeep.meta", ".tmp-still-arriving"]
    assert sorted(p.name for p in (spaces / "s1").iterdir()) == ["_meta.json", "policies", "resources"]
    _, got = b.read_resource("s1", "/keep")
    assert got is not None and got.body.read() == b"live"
    got.body.close()
    assert sweep(b, DAY).removed == 0  # a second sweep finds nothing
    assert sweep(b, 1, now=time.time() + 120).temp_files_removed == 1  # the young one, once old


def test_memory_has_nothing_to_sweep() -> None:
    assert sweep(MemoryBackend(), DAY).lines()[0] == "pending space deletes finished: 0"


# -- s3 --------------------------------------------------------------------------


def s3_backend() -> tuple[S3Backend, Any]:
    raw = boto3.client("s3", region_name="us-east-1")
    raw.create_bucket(Bucket=BUCKET)
    b = S3Backend(BUCKET, "pfx/", threads=4)
    b.check()
    b.reindex()
    return b, raw


def uploads(raw: Any) -> list[str]:
    return sorted(u["Key"] for u in raw.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []))


def test_s3_stale_multipart_uploads_are_aborted_under_the_prefix_only(mocked_aws: None) -> None:
    """Uploads older than the bound under {prefix}spaces/ are aborted; young ones and other prefixes stay."""
    b, raw = s3_backend()
    mine = raw.create_multipart_upload(Bucket=BUCKET, Key="pfx/spaces/s1/resources/%2Fbig")
    raw.create_multipart_upload(Bucket=BUCKET, Key="other-app/big")
    # moto reports a fixed Initiated (in 2010): ages are taken from what S3 says.
    (started,) = [t for k, _, t in b.multipart_uploads() if k == mine["Key"]]
    assert sweep(b, DAY, now=started + DAY - 60).uploads_aborted == 0  # young: maybe still uploading
    report = sweep(b, DAY, now=started + DAY + 60)
    assert report.uploads_aborted == 1 and report.failures == []
    assert uploads(raw) == ["other-app/big"]
    assert mine["Key"] not in uploads(raw)
    b.close()


def test_s3_a_failed_abort_is_retried_by_the_next_sweep(mocked_aws: None) -> None:
    """An abort that fails while serving is remembered and retried, whatever its age; a sweep's own too."""
    b, raw = s3_backend()
    up = raw.create_multipart_upload(Bucket=BUCKET, Key="pfx/spaces/s1/resources/%2Fbig")
    failing = {"on": True}

    def refuse(**_: Any) -> None:
        if failing["on"]:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "AbortMultipartUpload")

    b.client.meta.events.register("before-call.s3.AbortMultipartUpload", refuse)
    abort(b, up["Key"], up["UploadId"])
    assert b.failed_aborts == {(up["Key"], up["UploadId"])}
    report = sweep(b, DAY, now=0)
    assert report.uploads_aborted == 0 and len(report.failures) == 1
    assert "aborting the multipart upload" in report.failures[0]
    assert b.failed_aborts == {(up["Key"], up["UploadId"])}  # not forgotten
    failing["on"] = False
    (started,) = [t for _, _, t in b.multipart_uploads()]
    report = sweep(b, DAY, now=started)  # young, but known to be abandoned
    assert report.uploads_aborted == 1 and report.failures == [] and b.failed_aborts == set()
    assert uploads(raw) == []
    b.close()


def test_s3_pending_deletes_and_stale_index_entries(mocked_aws: None) -> None:
    """A delete killed midway is finished; an index entry of a space with no key (a dead create) goes."""
    b, raw = s3_backend()
    b.put_space("s1", lambda current: record("s1"))
    b.write_resource("s1", "/a", io.BytesIO(b"x"), "text/plain", allow)

    class Killed(BaseException):
        pass

    def die(**_: Any) -> None:
        raise Killed

    b.client.meta.events.register("before-call.s3.DeleteObjects", die)
    with pytest.raises(Killed):
        b.delete_space("s1", allow)
    b.client.meta.events.unregister("before-call.s3.DeleteObjects", die)
    raw.put_object(Bucket=BUCKET, Key="pfx/controllers/did%3Akey%3Az6MkAlice/ghost", Body=b"")
    b.put_space("s2", lambda current: record("s2"))
    first = sweep(b, DAY)
    assert first.deletes_finished == ["s1"]
    assert first.index_entries_removed == 0  # young: its create may be in progress
    report = sweep(b, DAY, now=time.time() + 2 * DAY)
    assert report.deletes_finished == [] and report.index_entries_removed == 1
    keys = sorted(o["Key"] for o in raw.list_objects_v2(Bucket=BUCKET).get("Contents", []))
    assert keys == [
        "pfx/controllers/.indexed",
        "pfx/controllers/did%3Akey%3Az6MkAlice/s2",
        "pfx/spaces/s2/_meta.json",
    ]
    b.close()


def test_s3_sweep_finishes_a_pending_delete(mocked_aws: None) -> None:
    b, raw = s3_backend()
    b.put_space("s1", lambda current: record("s1"))

    def die(**_: Any) -> None:
        raise KeyboardInterrupt

    b.client.meta.events.register("before-call.s3.DeleteObjects", die)
    with pytest.raises(KeyboardInterrupt):
        b.delete_space("s1", allow)
    b.client.meta.events.unregister("before-call.s3.DeleteObjects", die)
    assert b.pending_deletes()[0][0] == "s1"
    stopping = threading.Event()
    stopping.set()  # shutting down: the sweep stops before the next batch, leaving the marker
    report = sweep(b, DAY, stop=stopping)
    assert report.stopped_early and report.deletes_finished == []
    assert b.pending_deletes()[0][0] == "s1" and b.get_space("s1") is None
    report = sweep(b, DAY)
    assert report.deletes_finished == ["s1"]
    assert b.pending_deletes() == [] and b.list_spaces(ALICE) == []
    b.close()


# -- settings and was-admin sweep -------------------------------------------------------


def test_sweep_settings_are_validated() -> None:
    assert settings_from_env({}).sweep_interval == 3600 and settings_from_env({}).sweep_age == DAY
    assert settings_from_env({"WAS_SWEEP_INTERVAL": "0"}).sweep_interval == 0
    with pytest.raises(ConfigError, match="WAS_SWEEP_INTERVAL must be a whole number"):
        settings_from_env({"WAS_SWEEP_INTERVAL": "1h"})
    with pytest.raises(ConfigError, match="WAS_SWEEP_AGE must be between 1 and"):
        settings_from_env({"WAS_SWEEP_AGE": "0"})


def test_admin_sweep_prints_what_it_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WAS_STORAGE_BACKEND", "filesystem")
    monkeypatch.setenv("WAS_STORAGE_ROOT_DIR", str(tmp_path))
    (tmp_path / "spaces" / ".deleting-x-1" / "resources").mkdir(parents=True)
    assert admin.main(["sweep"]) == 0
    out = capsys.readouterr().out
    assert "tombstone directories removed: 1" in out
    assert not (tmp_path / "spaces" / ".deleting-x-1").exists()
    monkeypatch.setenv("WAS_STORAGE_BACKEND", "memory")
    assert admin.main(["sweep"]) == 0
    assert "nothing to sweep" in capsys.readouterr().out


# -- the service ---------------------------------------------------------------------------


class InlinePool:
    """A thread pool that runs each call at once, on this thread (``deferToThreadPool``'s contract)."""

    def __init__(self) -> None:
        self.calls = 0
        self.hold: list[Any] = []

    def callInThreadWithCallback(self, onResult: Any, f: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N802, N803
        self.calls += 1
        try:
            result = f(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the Deferred
            onResult(False, Failure(exc))
            return
        onResult(True, result)


class InlineReactor(Clock):
    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N802
        f(*args, **kwargs)


def test_service_sweeps_at_start_up_then_every_interval(tmp_path: Path) -> None:
    b = FilesystemBackend(tmp_path)
    reactor, pool = InlineReactor(), InlinePool()
    service = SweeperService(b, reactor, pool, interval=3600, age=DAY)  # type: ignore[arg-type]
    (tmp_path / "spaces" / ".deleting-a-1").mkdir(parents=True)
    service.startService()
    assert pool.calls == 1 and not (tmp_path / "spaces" / ".deleting-a-1").exists()
    (tmp_path / "spaces" / ".deleting-b-2").mkdir()
    reactor.advance(3599)
    assert pool.calls == 1
    reactor.advance(1)
    assert pool.calls == 2 and not (tmp_path / "spaces" / ".deleting-b-2").exists()
    assert service.stopService() is None and service.stop_event.is_set()
    reactor.advance(7200)
    assert pool.calls == 2


def test_service_skips_a_turn_while_a_sweep_runs_and_stop_waits_for_it() -> None:
    reactor = InlineReactor()
    service = SweeperService(MemoryBackend(), reactor, InlinePool(), interval=10, age=DAY)  # type: ignore[arg-type]
    pending: defer.Deferred[Any] = defer.Deferred()
    service.running_sweep = pending
    service.sweep_once()
    assert service.running_sweep is pending  # no second sweep at once
    stopped = service.stopService()
    assert stopped is pending and service.stop_event.is_set()


def test_only_worker_zero_sweeps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With --workers, children 1.. build no sweeper; a single process or worker 0 does."""
    settings = Settings(backend="filesystem", root_dir=str(tmp_path))

    def sweepers() -> int:
        top = build_service(settings, MemoryReactorClock(), ["tcp:0:interface=127.0.0.1"])
        return sum(isinstance(s, SweeperService) for s in top)

    assert sweepers() == 1
    monkeypatch.setenv("WAS_WORKER_INDEX", "0")
    assert sweepers() == 1
    monkeypatch.setenv("WAS_WORKER_INDEX", "1")
    assert sweepers() == 0
    monkeypatch.delenv("WAS_WORKER_INDEX")
    settings = Settings(backend="filesystem", root_dir=str(tmp_path), sweep_interval=0)
    assert sweepers() == 0
