"""Where and with what a benchmark ran: the machine, the versions, the load (for bench/report.py)."""

from __future__ import annotations

import importlib.metadata
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


def versions(s3_kinds: list[str]) -> dict[str, str]:
    """Python, Twisted, boto3, ours (git describe), the existing server, uvicorn and the S3 servers."""
    found = {
        "Python": platform.python_version(),
        "Twisted": _dist("twisted"),
        "boto3": _dist("boto3"),
        "was-twisted": git_describe(),
        "wallet-attached-storage-server": _dist("wallet-attached-storage-server"),
        "uvicorn": _dist("uvicorn"),
    }
    for kind in s3_kinds:
        found[kind] = s3_version(kind).split(" ", 1)[1]
    return found


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())
