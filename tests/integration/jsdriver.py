"""Run a Node driver from ``tests/js`` against a server and read its checks (one JSON line each).

Skips locally when node or ``tests/js/node_modules`` is missing, but fails under
``CI=true`` (CI must have run ``npm ci --prefix tests/js``).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Set
from dataclasses import dataclass, field
from typing import Any

import pytest

from .processes import REPO, WasProcess, which_or_skip

JS_DIR = REPO / "tests" / "js"
NODE_TIMEOUT = 60.0


def require(ok: bool, missing: str) -> None:
    """Skip locally, but fail under CI (which must have run ``npm ci``)."""
    if ok:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {missing}; CI must run: npm ci --prefix tests/js")
    pytest.skip("run: npm ci --prefix tests/js")


def node_with(*packages: str) -> str:
    """Path to ``node``, once each npm package (``@scope/name``) is installed in tests/js."""
    path = which_or_skip("node", "install Node.js")
    for package in packages:
        require((JS_DIR / "node_modules" / package).is_dir(), "tests/js/node_modules is missing")
    return path


@dataclass
class DriverRun:
    """What a driver printed: its checks, any other stdout lines, and how it ended."""

    returncode: int
    stderr: str
    checks: list[dict[str, Any]] = field(default_factory=list)
    bad_lines: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [c for c in self.checks if c.get("ok") is not True]

    @property
    def names(self) -> set[str]:
        return {str(c.get("check")) for c in self.checks}

    def explain(self, server: WasProcess, expected: Set[str] = frozenset()) -> str:
        missing = sorted(expected - self.names)
        return (
            f"backend {server.backend}, exit code {self.returncode}\n"
            + (f"missing checks: {missing}\n" if missing else "")
            + "\n".join(json.dumps(c, ensure_ascii=False) for c in self.failed or self.checks)
            + (f"\nnon-JSON stdout:\n{chr(10).join(self.bad_lines)}" if self.bad_lines else "")
            + f"\nstderr:\n{self.stderr}"
            + f"\nserver log:\n{server.log_path.read_text(errors='replace')}"
        )

    def assert_all_passed(self, server: WasProcess, expected: Set[str] = frozenset()) -> None:
        """Every check passed, every expected one ran, nothing else was printed, exit 0."""
        explain = self.explain(server, expected)
        assert self.checks, explain
        assert not self.failed, explain
        assert not expected - self.names, explain
        assert not self.bad_lines, explain
        assert self.returncode == 0, explain


def run_driver(node: str, script: str, server: WasProcess, timeout: float = NODE_TIMEOUT) -> DriverRun:
    """``node tests/js/<script> <server url>``, bounded in time."""
    try:
        proc = subprocess.run(
            [node, str(JS_DIR / script), server.url],
            cwd=str(JS_DIR),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout
        pytest.fail(
            f"node {script} timed out after {timeout}s\nstdout:\n{out}\n"
            f"server log:\n{server.log_path.read_text(errors='replace')}"
        )
    run = DriverRun(returncode=proc.returncode, stderr=proc.stderr)
    for line in proc.stdout.splitlines():
        try:
            run.checks.append(json.loads(line))
        except ValueError:
            run.bad_lines.append(line)
    return run
