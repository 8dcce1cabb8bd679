"""Start and stop the real ``twistd -n was`` process for end-to-end tests.

The process listens on ``tcp:0`` (the kernel picks a free port, no race) and
the port is read back from its log.  It runs the working tree's code: the
repository root goes first on ``PYTHONPATH``, which is also where Twisted
looks for ``twisted/plugins/was_plugin.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TWISTD = str(Path(sys.executable).with_name("twistd"))
_STARTED = re.compile(rb"WASSite starting on (\d+)")


def which_or_skip(tool: str, install: str) -> str:
    """The path of ``tool``: skipped locally when it is missing, a failure under ``CI=true``.

    ``.ci/run`` installs every tool the tests need, so in CI a missing one is a broken set-up.
    """
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {tool} is not on PATH; .ci/run must {install}")
        pytest.skip(f"{tool} is not installed: {install}")
    return path


def _base_env() -> dict[str, str]:
    """This environment without ``AWS_*`` and ``WAS_*``: a test never reaches a developer's real S3."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WAS_"))}


class WasProcess:
    """One ``twistd -n was`` process; ``url`` is its base URL once started."""

    def __init__(
        self, env: dict[str, str], log_path: Path, listen: str = "tcp:0:interface=127.0.0.1"
    ) -> None:
        self.listen = listen
        self.env = {**_base_env(), **env, "PYTHONPATH": str(REPO)}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.backend = env.get("WAS_STORAGE_BACKEND", "filesystem")

    def start(self, timeout: float = 30.0) -> WasProcess:
        log = open(self.log_path, "ab")
        start_at = log.tell()
        self.proc = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", "was", "--listen", self.listen],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(self.log_path.parent),
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(start_at)
                match = _STARTED.search(f.read())
            if match:
                self.url = f"http://127.0.0.1:{int(match.group(1))}"
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"twistd did not start; log:\n{self.log_path.read_text(errors='replace')}")

    def __enter__(self) -> WasProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited in ``timeout`` seconds."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        code = self.proc.returncode
        self.proc = None
        return code


def run_twistd(env: dict[str, str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run ``twistd -n was`` expecting it to stop by itself (start-up errors)."""
    return subprocess.run(
        [TWISTD, "-n", "--pidfile=", "was", "--listen", "tcp:0:interface=127.0.0.1"],
        env={**_base_env(), **env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
