"""Where and with what a benchmark ran: the machine, the versions, the load (for bench/report.py)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from s3_bench import s3_version

REPO_ROOT = Path(__file__).resolve().parent.parent


def machine() -> dict[str, Any]:
    """CPU model, cores and RAM, from /proc."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kib = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
    except (OSError, StopIteration, ValueError):
        mem_kib = 0
    return {"cpu": cpu, "cores": os.cpu_count() or 0, "ram_gib": mem_kib / (1 << 20)}


def _dist(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def git_describe() -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.stdout.strip() or "?"


def versions(s3_kinds: list[str], existing_head: str | None = None) -> dict[str, str]:
    """Python, Twisted, boto3, ours (git describe), the existing server (the release installed here
    and, when measured, its git head: ``existing_head()``), uvicorn and the S3 servers."""
    found = {
        "Python": platform.python_version(),
        "Twisted": _dist("twisted"),
        "boto3": _dist("boto3"),
        "was-twisted": git_describe(),
        "wallet-attached-storage-server": _dist("wallet-attached-storage-server"),
        "uvicorn": _dist("uvicorn"),
    }
    if existing_head:
        found["wallet-attached-storage-server git head"] = existing_head
    for kind in s3_kinds:
        found[kind] = s3_version(kind).split(" ", 1)[1]
    return found


#: Run by the existing server's own interpreter (stdlib only): its version and where it was installed from.
_HEAD_PROBE = """
import importlib.metadata, json, urllib.parse
import was_server._storage_filesystem
dist = importlib.metadata.distribution("wallet-attached-storage-server")
url = json.loads(dist.read_text("direct_url.json") or "{}").get("url", "")
src = urllib.parse.unquote(url[len("file://"):]) if url.startswith("file://") else ""
print(json.dumps({"version": dist.version, "source": src}))
"""


def _git(source: Path, *args: str) -> str:
    try:
        out = subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def existing_head(python: str) -> str:
    """Which existing server ``python`` runs: its version and commit, as the report prints them.

    The commit is its checkout's ``git rev-parse HEAD`` (``-dirty`` with local changes) when it was
    pip-installed from a git checkout, else the first line of a ``REVISION`` file there, else
    "commit unknown".  Raises ``ValueError`` (one sentence) when ``python`` has no
    ``was_server`` with a filesystem backend.
    """
    try:
        out = subprocess.run([python, "-c", _HEAD_PROBE], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ValueError(f"{python} could not be run ({exc})") from None
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise ValueError(f"{python} has no wallet-attached-storage-server with a filesystem backend ({last})")
    found = json.loads(out.stdout)
    source = Path(found["source"]) if found["source"] else None
    commit = "commit unknown (not installed from a local checkout)"
    if source is not None:
        # Only the checkout's own repository counts, not one that happens to contain it.
        top = _git(source, "rev-parse", "--show-toplevel")
        sha = _git(source, "rev-parse", "--short=12", "HEAD") if top and Path(top) == source.resolve() else ""
        if sha:
            dirty = "-dirty" if _git(source, "status", "--porcelain", "--untracked-files=no") else ""
            commit = f"git {sha}{dirty}"
        elif (source / "REVISION").is_file():
            commit = (source / "REVISION").read_text().strip().splitlines()[0]
        else:
            commit = "commit unknown (not a git checkout, no REVISION file)"
        commit += f", from {source}"
    return f"{found['version']} at {commit}"


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())
