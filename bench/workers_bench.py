"""Worker processes: ``--workers 2`` against one process, side by side, on S3 with added latency.

One command, one run::

    python bench/workers_bench.py [--s3 ceph|moto] [--workers 2] [--duration 5] [--rounds 2] [--latency-ms 20]

Starts an S3 server (Ceph RGW when installed, else moto, which is itself the limit at ~180
req/s of ours: see the S3 results) and ``bench/latency_proxy.py`` in front of it (every S3 response delayed
by ``--latency-ms``), then, ``--rounds`` times, one ``twistd -n was`` (today's single process) and
one ``twistd -n was --workers N`` (a parent and N children on one port), each measured with
``bench/run.py``'s signed 1 KiB PUT+GET workload at concurrency 16.  The two configurations
alternate so that the machine's other load falls on both; the spread between rounds is the noise.
``ours CPU`` sums every process of a configuration (the parent and its children).  Every process
it starts is stopped before it exits.  See the last section of ``bench/README.rst``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from run import WARMUP_S, _interrupt, proc_cpu_s, provision, run_workload, stop, table
from s3_bench import (
    BUCKET,
    S3_START_TIMEOUT_S,
    S3_STARTERS,
    Proc,
    ceph_available,
    ours_command,
    spawn,
    start_proxy,
    system_busy_s,
    wait_for_line,
    wait_ready,
)
from wallet_attached_storage_client import Ed25519Signer

CONCURRENCY = 16
_CHILD = re.compile(r"worker (\d+) started \(pid (\d+)\)")


def child_pids(parent: Proc) -> list[int]:
    """The pids of the parent's children now serving (the latest start of each index)."""
    return list({int(i): int(pid) for i, pid in _CHILD.findall(parent.log_text())}.values())


def start(workers: int, proxy_port: int, s3: Any, log_dir: Path, name: str) -> tuple[Proc, list[int]]:
    """One configuration on ``tcp:0``; its pids (the parent's first)."""
    cmd, env = ours_command(proxy_port, s3, "tcp:0:interface=127.0.0.1")
    if workers > 1:
        cmd += ["--workers", str(workers)]
    proc = spawn(name, cmd, env, log_dir)
    wait_ready(proc)
    if workers > 1:
        wait_for_line(proc, rf"all {workers} workers are serving")
    return proc, [proc.popen.pid, *(child_pids(proc) if workers > 1 else [])]


def measure(proc: Proc, pids: list[int], duration: float) -> dict[str, Any]:
    """c16 PUT+GET over one fresh space; CPU of ``pids`` and of the whole machine in the window."""
    signer = Ed25519Signer()
    space = str(uuid.uuid4())
    asyncio.run(provision(proc.port, space, signer))

    async def go() -> Any:
        marks: dict[str, float] = {}

        async def sampler() -> None:
            await asyncio.sleep(WARMUP_S)
            marks.update(cpu0=sum(map(proc_cpu_s, pids)), sys0=system_busy_s(), t0=time.perf_counter())
            await asyncio.sleep(duration)
            marks.update(cpu1=sum(map(proc_cpu_s, pids)), sys1=system_busy_s(), t1=time.perf_counter())

        res, _ = await asyncio.gather(
            run_workload("ours", proc.port, pids[-1], space, signer, CONCURRENCY, duration), sampler()
        )
        wall = marks["t1"] - marks["t0"]
        return res, 100 * (marks["cpu1"] - marks["cpu0"]) / wall, 100 * (marks["sys1"] - marks["sys0"]) / wall

    res, ours_cpu, machine_cpu = asyncio.run(go())
    return {
        "rps": res.rps,
        "p50_ms": res.p50_ms,
        "p99_ms": res.p99_ms,
        "errors": res.errors,
        "ours_cpu_pct": ours_cpu,
        "machine_cpu_pct": machine_cpu,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--s3",
        choices=("moto", "ceph"),
        help="S3 server (default: ceph if installed: moto caps ours at ~180 req/s)",
    )
    ap.add_argument("--workers", type=int, default=2, help="workers of the second configuration")
    ap.add_argument("--duration", type=float, default=5.0, help="measured seconds per cell")
    ap.add_argument("--rounds", type=int, default=2, help="times each configuration is measured")
    ap.add_argument("--latency-ms", type=float, default=20.0, help="delay the proxy adds to each S3 response")
    args = ap.parse_args(argv)
    if not (2 <= args.workers <= 8 and 0 < args.duration <= 120 and 1 <= args.rounds <= 10):
        ap.error("--workers must be in 2..8, --duration in (0, 120], --rounds in 1..10")
    if args.s3 is None:
        args.s3 = "ceph" if ceph_available() else "moto"
    elif args.s3 == "ceph" and not ceph_available():
        ap.error("--s3 ceph needs the Ceph binaries on PATH (.ci/install-s3-servers)")
    signal.signal(signal.SIGTERM, _interrupt)
    configs = [("1 process (today)", 1), (f"--workers {args.workers}", args.workers)]
    cells: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in configs}
    with tempfile.TemporaryDirectory(prefix="was-workers-bench-") as tmp:
        log_dir = Path(tmp)
        s3 = S3_STARTERS[args.s3](log_dir / "s3", timeout=S3_START_TIMEOUT_S)
        started: list[Proc] = []
        try:
            s3.create_bucket(BUCKET)
            proxy = start_proxy(s3, args.latency_ms, log_dir)
            started.append(proxy)
            for round_ in range(1, args.rounds + 1):
                for label, workers in configs:
                    print(f"round {round_}: {label} ...", file=sys.stderr, flush=True)
                    proc, pids = start(workers, proxy.port, s3, log_dir, f"ours-{workers}-{round_}")
                    started.append(proc)
                    try:
                        cells[label].append(measure(proc, pids, args.duration))
                    finally:
                        stop(proc.popen)
        finally:
            for proc in reversed(started):
                stop(proc.popen)
            s3.stop()
    rows = [
        [
            "configuration",
            "req/s per round",
            "median req/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "ours CPU %",
            "machine CPU %",
        ]
    ]
    for label, runs in cells.items():
        rows.append(
            [
                label,
                " / ".join(f"{r['rps']:.0f}" for r in runs),
                f"{statistics.median(r['rps'] for r in runs):.0f}",
                f"{statistics.median(r['p50_ms'] for r in runs):.1f}",
                f"{statistics.median(r['p99_ms'] for r in runs):.1f}",
                str(sum(r["errors"] for r in runs)),
                f"{statistics.median(r['ours_cpu_pct'] for r in runs):.0f}",
                f"{statistics.median(r['machine_cpu_pct'] for r in runs):.0f}",
            ]
        )
    print(
        f"{args.s3} + {args.latency_ms:g} ms S3 latency, signed 1 KiB PUT+GET, concurrency {CONCURRENCY}, "
        f"{args.duration:g} s per cell after {WARMUP_S:g} s warm-up, {args.rounds} rounds alternating"
    )
    print(table(rows))
    return 0 if all(r["errors"] == 0 for runs in cells.values() for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
