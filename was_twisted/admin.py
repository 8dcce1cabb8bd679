"""Operator commands: ``was-admin`` (or ``python -m was_twisted.admin``).

Client commands (``keygen``, ``provision``, ``put``, ``get``, ``ls``, ``rm``,
``share``, ``check``) live in ``cli/``; storage maintenance runs here.

``reindex`` makes the S3 controller index match the space records: it adds
the spaces of a bucket written by the existing server, and removes entries a
crash left behind.  The server also runs it by itself at start-up when the
bucket has no complete index; this command is for after a crash, or to do it
once before opening the doors.
"""

from __future__ import annotations

import argparse
import sys

from .cli.commands import add_commands, run
from .config import ConfigError, settings_from_env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="was-admin", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("reindex", help="rebuild the S3 index of spaces by controller")
    add_commands(sub)
    args = parser.parse_args(argv)
    if args.command != "reindex":
        return run(args)
    try:
        settings = settings_from_env()
        if settings.backend != "s3":
            raise ConfigError("reindex applies to WAS_STORAGE_BACKEND=s3 only.")
        from .service import make_s3_backend

        backend = make_s3_backend(settings)
    except ConfigError as exc:
        print(f"was: {exc}", file=sys.stderr)
        return 2
    from .storage.s3 import S3Backend

    assert isinstance(backend, S3Backend)
    try:
        added, removed = backend.reindex()
    finally:
        backend.close()
    print(f"index rebuilt: {added} entries added, {removed} removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
