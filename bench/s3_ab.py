"""Two source trees of was-twisted side by side on one S3 server: CPU per request and req/s.

Profiling a change on a busy machine needs the before and the after in the same run,
alternating, so that other load hits both alike::

    python bench/s3_ab.py --base /tmp/was-main [--s3 ceph] [--rounds 3] [--duration 8] \
        [--concurrency 16] [--processes 1] [--env WAS_SPACE_CACHE_SECONDS=5]

It starts the S3 server and ``latency_proxy.py`` once (``s3_bench.py``'s), then per round
``twistd -n was`` from ``--base`` and from this tree in turn (alternating which goes first),
each on a fresh space, and measures ``run.py``'s workload (1 KiB PUT of a new path, then GET).
CPU per request is the twistd processes' own CPU time over the measured window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from run import WARMUP_S, _interrupt, free_port, provision, stop
from s3_bench import (
    BUCKET,
    S3_START_TIMEOUT_S,
    S3_STARTERS,
    ProxyControl,
    ours_command,
    spawn,
    start_proxy,
    wait_ready,
    workload,
)
from wallet_attached_storage_client import Ed25519Signer

REPO_ROOT = Path(__file__).resolve().parent.parent


def start_tree(
    tree: Path, n: int, proxy_port: int, s3: Any, log_dir: Path, env_extra: dict[str, str]
) -> list[Any]:
    """``n`` twistd processes importing was_twisted from ``tree``."""
    port = free_port() if n > 1 else 0
    listen = f"reuseport:{port}:interface=127.0.0.1" if n > 1 else "tcp:0:interface=127.0.0.1"
    cmd, env = ours_command(proxy_port, s3, listen)
    env["PYTHONPATH"] = str(tree)
    env.update(env_extra)
    procs = []
    try:
        for i in range(n):
            proc = spawn(f"{tree.name}-{uuid.uuid4().hex[:6]}-{i}", cmd, env, log_dir)
            procs.append(proc)
            wait_ready(proc, port)
    except BaseException:
        for proc in procs:
            stop(proc.popen)
        raise
    return procs


def measure(procs: list[Any], concurrency: int, duration: float, ctl: ProxyControl) -> dict[str, Any]:
    signer = Ed25519Signer()
    space = str(uuid.uuid4())
    asyncio.run(provision(procs[0].port, space, signer))
    ctl.reset()
    res, per_process = asyncio.run(workload(procs, space, signer, concurrency, duration))
    snap = ctl.counts()
    cpu_ms = 10 * res.server_cpu_pct / res.rps if res.rps else 0.0
    return {
        "rps": res.rps,
        "cpu_ms_per_req": cpu_ms,
        "cpu_pct": res.server_cpu_pct,
        "per_process": per_process,
        "errors": res.errors,
        "error_samples": res.error_samples[:3],
        "p50_ms": res.p50_ms,
        "s3_service_ms": snap["upstream_mean_ms"],
        "s3_per_req": snap["total"] / ((WARMUP_S + duration) * res.rps) if res.rps else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, required=True, help="the other source tree (e.g. an export of main)")
    ap.add_argument("--s3", choices=tuple(S3_STARTERS), default="ceph")
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for both trees' twistd")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    env_extra = dict(e.split("=", 1) for e in args.env)
    trees = {"base": args.base.resolve(), "new": REPO_ROOT}
    signal.signal(signal.SIGTERM, _interrupt)
    results: dict[str, list[dict[str, Any]]] = {"base": [], "new": []}
    with tempfile.TemporaryDirectory(prefix="was-s3-ab-") as tmp:
        log_dir = Path(tmp)
        s3 = S3_STARTERS[args.s3](log_dir / "s3", timeout=S3_START_TIMEOUT_S)
        procs: list[Any] = []
        try:
            s3.create_bucket(BUCKET)
            proxy = start_proxy(s3, args.latency_ms, log_dir)
            procs.append(proxy)
            ctl = ProxyControl(proxy.port)
            for r in range(args.rounds):
                order = ["base", "new"] if r % 2 == 0 else ["new", "base"]
                for name in order:
                    group = start_tree(trees[name], args.processes, proxy.port, s3, log_dir, env_extra)
                    try:
                        row = measure(group, args.concurrency, args.duration, ctl)
                    finally:
                        for p in group:
                            stop(p.popen)
                    results[name].append(row)
                    print(
                        f"round {r + 1} {name}: {row['rps']:.1f} req/s, "
                        f"{row['cpu_ms_per_req']:.2f} ms CPU/req, "
                        f"{row['cpu_pct']:.0f}% CPU, S3/req {row['s3_per_req']:.2f}, "
                        f"S3 answers in {row['s3_service_ms']:.1f} ms + latency, errors {row['errors']} "
                        f"{row['error_samples']}",
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            for p in reversed(procs):
                stop(p.popen)
            s3.stop()
    for name, rows in results.items():
        rounds = ", ".join("{:.0f}/{:.2f}".format(r["rps"], r["cpu_ms_per_req"]) for r in rows)
        print(
            f"{name}: median {statistics.median(r['rps'] for r in rows):.1f} req/s, "
            f"{statistics.median(r['cpu_ms_per_req'] for r in rows):.2f} ms CPU/req "
            f"(rounds req/s/ms: {rounds})"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
