"""What CORS and metrics cost: the memory benchmark with both off, and with both on, side by side.

Two ``twistd -n was`` processes on the memory backend, both started before the
first round: "bare" (``WAS_CORS_ORIGINS=off``, no ``--metrics``) and "full"
(the default ``WAS_CORS_ORIGINS=*``, ``--metrics`` on a port of its own,
scraped once a second while the load runs, as Prometheus would).  The signed
1 KiB PUT+GET workload of ``bench/run.py`` (every request carries an
``Origin``, as a browser wallet's would) runs against each in alternating
rounds, so drift on a shared machine hits both alike.  The goal (issue 8):
"full" within 3% of "bare" at concurrency 16.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from wallet_attached_storage_client import Ed25519Signer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as base  # noqa: E402  (bench/run.py: the load generator and process helpers)

ORIGIN = "https://wallet.example"


def _signed_with_origin(signer: Ed25519Signer, method: str, path: str) -> dict[str, str]:
    headers = _plain_signed(signer, method, path)
    headers["Origin"] = ORIGIN
    return headers


_plain_signed = base.signed
base.signed = _signed_with_origin  # type: ignore[assignment]  # every workload request comes from a page


class Server:
    """One memory-backed twistd; ``metrics`` is the port of its metrics listener (0: none)."""

    def __init__(self, name: str, full: bool) -> None:
        self.name = name
        self.port = base.free_port()
        self.metrics = base.free_port() if full else 0
        cmd, env = base.server_command("ours", self.port)
        env["WAS_CORS_ORIGINS"] = "*" if full else "off"
        if full:
            cmd += ["--metrics", f"tcp:{self.metrics}:interface=127.0.0.1"]
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=base.REPO_ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        base.wait_until_up("ours", self.port, self.proc)
        self.signer = Ed25519Signer()
        self.space = str(uuid.uuid4())
        asyncio.run(base.provision(self.port, self.space, self.signer))

    def scrape_while(self, seconds: float) -> threading.Thread:
        """Scrape /metrics once a second for ``seconds`` (nothing to do without metrics)."""

        def scrape() -> None:
            end = time.monotonic() + seconds
            while self.metrics and time.monotonic() < end:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=5) as r:
                    r.read()
                time.sleep(1)

        thread = threading.Thread(target=scrape, daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        base.stop(self.proc)
        self.log.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=5.0, help="measured seconds per cell")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument(
        "--control", action="store_true", help="A/A control: both servers bare (shows the bench's own bias)"
    )
    args = ap.parse_args(argv)
    servers = [Server("bare", full=False), Server("full", full=not args.control)]
    rps: dict[str, list[float]] = {s.name: [] for s in servers}
    cpu: dict[str, list[float]] = {s.name: [] for s in servers}
    try:
        for round_no in range(args.rounds):
            order = servers if round_no % 2 == 0 else list(reversed(servers))
            for s in order:
                scraper = s.scrape_while(base.WARMUP_S + args.duration)
                result: Any = asyncio.run(
                    base.run_workload(
                        s.name, s.port, s.proc.pid, s.space, s.signer, args.concurrency, args.duration
                    )
                )
                scraper.join()
                if result.errors:
                    print(f"{s.name}: {result.errors} errors: {result.error_samples}", file=sys.stderr)
                    return 1
                rps[s.name].append(result.rps)
                cpu[s.name].append(result.server_cpu_pct)
                print(
                    f"round {round_no + 1}: {s.name} {result.rps:,.0f} req/s, server CPU "
                    f"{result.server_cpu_pct:.0f}%, load generator {result.loadgen_cpu_pct:.0f}%",
                    file=sys.stderr,
                )
    finally:
        for s in servers:
            s.stop()
    bare, full = statistics.median(rps["bare"]), statistics.median(rps["full"])
    print(f"concurrency {args.concurrency}, {args.rounds} rounds of {args.duration:g} s, medians:")
    second = "bare again (A/A control)" if args.control else "full (CORS *, metrics on, scraped 1/s)"
    print(f"  bare (CORS off, no metrics): {bare:,.0f} req/s")
    print(f"  {second}: {full:,.0f} req/s")
    print(f"  second/bare: {full / bare:.3f}x" + ("" if args.control else " (goal >= 0.97x)"))
    print(f"  every round, bare: {[round(x) for x in rps['bare']]}, full: {[round(x) for x in rps['full']]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
