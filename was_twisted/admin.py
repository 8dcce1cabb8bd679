"""Operator commands: ``was-admin`` (or ``python -m was_twisted.admin``).

Client commands (``keygen``, ``provision``, ``put``, ``get``, ``ls``, ``rm``,
``share``, ``check``) live in ``cli/``; storage maintenance runs here:

``reindex`` makes the S3 controller index match the space records: it adds
the spaces of a bucket written by the existing server, and removes entries a
crash left behind.  The server also runs it by itself at start-up when the
bucket has no complete index; this command is for after a crash, or to do it
once before opening the doors.

``sweep`` removes what crashes left behind, once, as the server does at
start-up and every ``WAS_SWEEP_INTERVAL`` (``sweeper.py``): pending space
deletes, stale multipart uploads and index entries (S3), tombstones, stale
temporary files and empty space directories (filesystem).  It prints what it
did, and exits 1 if something could not be removed (the next sweep retries).

``adopt-collections`` creates a collection record for every top-level
container a space already uses (``/space/S/c/...``), so that data written
before (by the existing server, or by us without strict collections) keeps
taking writes once ``WAS_STRICT_COLLECTIONS=on``.  It never changes a
resource and never replaces a collection that exists.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field

from .cli.commands import add_commands, run
from .config import ConfigError, Settings, settings_from_env
from .errors import InvalidId, ReservedId
from .storage.base import Backend, Condition, PreconditionFailed, SpaceRecord


@dataclass
class Adopted:
    """What ``adopt_collections`` did in one space."""

    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    #: Top-level names that cannot be collection ids (not URL-safe, or reserved), with why.
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _allow(space: SpaceRecord | None) -> None:
    """The operator acts with the storage's own authority."""


def top_level_containers(backend: Backend, space_id: str) -> list[str]:
    """The first segments of every resource path with more than one segment, sorted."""
    paths = backend.list_resources(space_id, "/", _allow)
    return sorted({path[1:].split("/", 1)[0] for path, _ in paths if "/" in path[1:]})


def adopt_collections(backend: Backend, space_id: str, now: float | None = None) -> Adopted:
    """Create the missing collection records of one space's top-level containers."""
    from .operations.collection_model import (
        COLLECTIONS,
        DEFAULT_BACKEND,
        CollectionBody,
        check_collection_id,
        collection_record,
    )

    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if now is None else now))
    done = Adopted()
    for name in top_level_containers(backend, space_id):
        try:
            check_collection_id(name)
        except (InvalidId, ReservedId) as exc:
            done.skipped.append((name, exc.detail))
            continue
        wanted = CollectionBody(
            id=name, name=None, backend=DEFAULT_BACKEND, generator=None, generator_origin=None
        )
        record = collection_record(name, wanted, None, None, stamp)
        try:
            backend.put_record(space_id, COLLECTIONS, name, record, _allow, Condition(if_none_match=True))
        except PreconditionFailed:
            done.existing.append(name)
            continue
        done.created.append(name)
    return done


def all_space_ids(backend: Backend, settings: Settings) -> list[str]:
    """Every space id in the data directory or bucket (dot-names, a delete's leftovers, skipped)."""
    if settings.backend == "s3":
        from .storage.s3 import S3Backend

        assert isinstance(backend, S3Backend)
        return sorted(sid for sid in backend._scan_space_ids() if sid and not sid.startswith("."))
    spaces_dir = os.path.join(settings.root_dir, "spaces")
    return sorted(
        entry.name for entry in os.scandir(spaces_dir) if entry.is_dir() and not entry.name.startswith(".")
    )


def _reindex(settings: Settings) -> int:
    if settings.backend != "s3":
        raise ConfigError("reindex applies to WAS_STORAGE_BACKEND=s3 only.")
    from .service import make_s3_backend
    from .storage.s3 import S3Backend

    backend = make_s3_backend(settings)
    assert isinstance(backend, S3Backend)
    try:
        added, removed = backend.reindex()
    finally:
        backend.close()
    print(f"index rebuilt: {added} entries added, {removed} removed")
    return 0


def _sweep(settings: Settings, age: int | None) -> int:
    if settings.backend == "memory":
        print("memory storage keeps nothing across restarts: nothing to sweep")
        return 0
    from .service import make_backend
    from .sweeper import sweep

    backend = make_backend(settings)
    try:
        report = sweep(backend, settings.sweep_age if age is None else age)
    finally:
        backend.close()
    for line in report.lines():
        print(line)
    return 1 if report.failures else 0


def _adopt(settings: Settings, space_ids: list[str], every: bool) -> int:
    if settings.backend == "memory":
        raise ConfigError(
            "adopt-collections needs WAS_STORAGE_BACKEND=filesystem or s3 (memory keeps nothing)."
        )
    if not space_ids and not every:
        raise ConfigError("adopt-collections needs space ids, or --all.")
    from .service import make_backend

    backend = make_backend(settings)
    try:
        targets = all_space_ids(backend, settings) if every else space_ids
        for space_id in targets:
            if backend.get_space(space_id) is None:
                print(f"space {space_id}: no such space", file=sys.stderr)
                continue
            done = adopt_collections(backend, space_id)
            line = f"space {space_id}: {len(done.created)} collections created"
            if done.created:
                line += " (" + ", ".join(done.created) + ")"
            line += f", {len(done.existing)} already there"
            print(line)
            for name, why in done.skipped:
                print(f"space {space_id}: skipped {name!r}: {why}")
    finally:
        backend.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="was-admin", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("reindex", help="rebuild the S3 index of spaces by controller")
    sweep = sub.add_parser(
        "sweep",
        help="remove what crashes left: pending space deletes, stale multipart uploads and temp files",
    )
    sweep.add_argument(
        "--age",
        type=int,
        default=None,
        metavar="SECONDS",
        help="keep uploads and temp files younger than this (default: WAS_SWEEP_AGE, 86400)",
    )
    adopt = sub.add_parser(
        "adopt-collections",
        help="create collection records for the top-level containers spaces already use "
        "(before turning WAS_STRICT_COLLECTIONS on)",
    )
    adopt.add_argument("space_ids", nargs="*", metavar="SPACE_ID")
    adopt.add_argument("--all", action="store_true", help="every space in the data directory or bucket")
    add_commands(sub)
    args = parser.parse_args(argv)
    if args.command not in ("reindex", "sweep", "adopt-collections"):
        return run(args)
    try:
        settings = settings_from_env()
        if args.command == "reindex":
            return _reindex(settings)
        if args.command == "sweep":
            if args.age is not None and args.age < 0:
                raise ConfigError("sweep --age must be 0 or more seconds.")
            return _sweep(settings, args.age)
        return _adopt(settings, args.space_ids, args.all)
    except ConfigError as exc:
        print(f"was: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
