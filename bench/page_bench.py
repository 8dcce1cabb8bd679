"""Pagination on S3: the first page of a 100,000-resource container, at 20 ms of S3 latency.

One command::

    python bench/page_bench.py [--s3 moto|ceph] [--resources 100000] [--latency-ms 20] [--repeats 5]
                               [--json out.json]

It starts moto's S3 server (or Ceph's RADOS Gateway), ``bench/latency_proxy.py`` in front of
it (delays every response, counts S3 requests by operation) and ``twistd -n was`` with
``WAS_STORAGE_BACKEND=s3`` behind the proxy (all three from ``bench/s3_bench.py``), creates one
space through the API, writes ``--resources`` objects straight into the S3 server under that
space's ``resources/`` prefix (the layout the server reads, as if written through it), then times
signed ``GET /space/{id}/big/`` (the first page, default ``limit``) and the page its ``next``
names, with the S3 requests each one made.  Goal: one ListObjectsV2 (beside the space record's
GetObject, in parallel) and < 200 ms.  It also times the same ListObjectsV2 asked of the S3
server directly: moto scans every key of the bucket for each LIST, so on moto that, not this
server, bounds the page's time at this size.
Every process it starts is stopped before it exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from s3_bench import (
    BUCKET,
    PREFIX,
    S3_START_TIMEOUT_S,
    Proc,
    ProxyControl,
    call,
    s3_client,
    space_body,
    start_ours,
    start_proxy,
    stop,
)
from wallet_attached_storage_client import Ed25519Signer

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(1, str(BENCH_DIR.parent))
from tests.integration.s3servers import S3Server, ceph_available, start_ceph, start_moto  # noqa: E402

JSON = "application/json"
GOAL_MS = 200.0
GOAL_LISTS = 1
FILL_THREADS = 8  # moto is one process: more threads only load the shared machine


def fill(s3: S3Server, space_id: str, n: int) -> float:
    """``n`` one-byte objects at ``/big/{i:06d}`` straight into the S3 server; returns the seconds it took."""
    client = s3_client(s3.endpoint_url, s3, pool=FILL_THREADS)
    root = f"{PREFIX}spaces/{space_id}/resources/"

    def put(i: int) -> None:
        client.put_object(Bucket=BUCKET, Key=root + quote(f"/big/{i:06d}", safe=""), Body=b"x")

    t0 = time.perf_counter()
    with ThreadPoolExecutor(FILL_THREADS) as pool:
        for done, _ in enumerate(pool.map(put, range(n)), 1):
            if done % 10000 == 0:
                print(f"  {done} objects ...", file=sys.stderr, flush=True)
    return time.perf_counter() - t0


def direct_list_ms(s3: S3Server, space_id: str, repeats: int) -> float:
    """The S3 server's own time for the first page's ListObjectsV2, asked directly (no proxy): median ms."""
    client = s3_client(s3.endpoint_url, s3)
    prefix = f"{PREFIX}spaces/{space_id}/resources/" + quote("/big/", safe="")
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        client.list_objects_v2(Bucket=BUCKET, Prefix=prefix, MaxKeys=101)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def measure(port: int, ctl: ProxyControl, signer: Ed25519Signer, path: str) -> dict[str, Any]:
    ctl.reset()
    status, data, ms = asyncio.run(call(port, signer, "GET", path))
    counts = ctl.counts()
    doc = json.loads(data) if status == 200 else {}
    return {
        "path": path,
        "status": status,
        "ms": ms,
        "items": len(doc.get("items", [])),
        "next": doc.get("next"),
        "s3_requests": counts["total"],
        "s3_counts": counts["counts"],
    }


def run(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    procs: list[Proc] = []
    s3: S3Server | None = None
    try:
        print(f"starting {args.s3}, the proxy and ours ...", file=sys.stderr, flush=True)
        starter = start_ceph if args.s3 == "ceph" else start_moto
        s3 = starter(log_dir / "s3", timeout=S3_START_TIMEOUT_S)
        s3.create_bucket(BUCKET)
        proxy = start_proxy(s3, args.latency_ms, log_dir)
        procs.append(proxy)
        ctl = ProxyControl(proxy.port)
        [ours] = start_ours(1, proxy.port, s3, log_dir, procs)
        signer = Ed25519Signer()
        space_id = str(uuid.uuid4())
        status, data, _ = asyncio.run(
            call(
                ours.port,
                signer,
                "PUT",
                f"/space/{space_id}",
                space_body(space_id, signer),
                "application/json",
            )
        )
        if status != 201:
            raise RuntimeError(f"creating the space failed: {status} {data[:300]!r}")
        print(f"writing {args.resources} objects into {args.s3} ...", file=sys.stderr, flush=True)
        fill_s = fill(s3, space_id, args.resources)
        list_ms = direct_list_ms(s3, space_id, args.repeats)
        first = [measure(ours.port, ctl, signer, f"/space/{space_id}/big/") for _ in range(args.repeats)]
        following: list[dict[str, Any]] = []
        if first[0]["next"]:
            parts = urlsplit(first[0]["next"])
            nxt = parts.path + "?" + parts.query
            following = [measure(ours.port, ctl, signer, nxt) for _ in range(args.repeats)]
        return {
            "s3": args.s3,
            "resources": args.resources,
            "latency_ms": args.latency_ms,
            "fill_s": fill_s,
            "s3_list_direct_ms": list_ms,
            "first_page": first,
            "next_page": following,
            "first_median_ms": statistics.median(m["ms"] for m in first),
            "next_median_ms": statistics.median(m["ms"] for m in following) if following else None,
        }
    finally:
        for proc in reversed(procs):
            stop(proc.popen)
        if s3 is not None:
            s3.stop()


def report(result: dict[str, Any]) -> bool:
    """Print the figures; True when every goal is met."""
    ok = True
    print(f"\n{result['s3']}: {result['resources']} resources, {result['latency_ms']:g} ms of S3 latency")
    print(f"the S3 server's own ListObjectsV2 (MaxKeys=101, direct): {result['s3_list_direct_ms']:.1f} ms\n")
    for label, key in (("first page", "first_page"), ("next page", "next_page")):
        for m in result[key]:
            lists = m["s3_counts"].get("ListObjectsV2", 0)
            print(
                f"{label:10}  {m['status']}  {m['ms']:7.1f} ms  {m['items']:4d} items  "
                f"next={'yes' if m['next'] else 'no '}  S3: {m['s3_counts']}"
            )
            ok = ok and m["status"] == 200 and lists == GOAL_LISTS and m["ms"] < GOAL_MS
    first, following = result["first_median_ms"], result["next_median_ms"] or 0.0
    print(
        f"\nmedian: first page {first:.1f} ms, next page {following:.1f} ms"
        f" (goal: {GOAL_LISTS} ListObjectsV2, < {GOAL_MS:g} ms): {'met' if ok else 'NOT met'}"
    )
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--s3", choices=("moto", "ceph"), default="moto")
    ap.add_argument("--resources", type=int, default=100_000)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path, help="write the raw figures here")
    args = ap.parse_args(argv)
    if args.s3 == "ceph" and not ceph_available():
        ap.error("Ceph RGW is not installed: sudo bash .ci/install-s3-servers")
    with tempfile.TemporaryDirectory(prefix="was-page-bench-") as tmp:
        result = run(args, Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if report(result) else 1


if __name__ == "__main__":
    sys.exit(main())
