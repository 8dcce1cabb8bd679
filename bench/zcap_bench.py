"""zCap benchmark: one 1 KiB GET signed three ways, side by side, against one was-twisted process.

One command, one run::

    python bench/zcap_bench.py [--duration 5] [--rounds 3] [--fresh 200] [--json out.json]

It starts ``twistd -n was`` (memory backend) on a free port, creates a space and one 1 KiB
resource, has ``bench/delegate.mjs`` (Digital Bazaar's ezcap) delegate GET on the space
root -> B -> C, then measures GET of the resource at concurrency 16 and 1 with a fresh signature
per request, in three modes: ``controller`` (the Python client's plain Cavage signature),
``root`` (the controller invokes the root zCap, headers as http-signature-zcap-invoke makes
them) and ``delegated`` (C invokes the chain's tail).  The modes alternate within each round
so drift hits all three alike.  Then ``/health`` is probed while never-seen chains stream in,
to show uncached verification does not stall other requests.  See ``bench/README.rst``.

The load generator, the signing, the server start and the table format are ``bench/run.py``'s,
imported; the invocation headers are ``tests/invoke.py``'s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from run import (
    BODY,
    CONCURRENCIES,
    IO_TIMEOUT_S,
    LOADGEN_BUSY_PCT,
    MAX_CONSECUTIVE_FAILURES,
    MAX_ERROR_BODIES,
    WARMUP_S,
    Conn,
    _interrupt,
    free_port,
    peak_rss_kib,
    percentile,
    proc_cpu_s,
    provision,
    server_command,
    signed,
    stop,
    table,
    tail,
    wait_until_up,
)
from wallet_attached_storage_client import Ed25519Signer

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(1, str(REPO_ROOT))  # after bench/ (for ``run``): ``tests.invoke``
from tests.invoke import invoke  # noqa: E402

MODES = ("controller", "root", "delegated")
#: Goals for req/s against the controller signature's, at concurrency 16.
GOALS = {"root": 0.9, "delegated": 0.8}
GOAL_CONCURRENCY = 16
HEALTH_INTERVAL_S = 0.05
IDLE_HEALTH_SAMPLES = 40
NODE_TIMEOUT_S = 300.0
DELEGATION_LIFETIME_S = 3 * 3600
RESOURCE = "bench/r1k"

Headers = Callable[[], dict[str, str]]


# ---------------------------------------------------------------------------
# Keys and delegations
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Parties:
    """A (the space's controller), B and C, with the delegations delegate.mjs made for them."""

    a: Ed25519Signer
    b: Ed25519Signer
    c: Ed25519Signer
    chain: dict[str, Any]
    fresh: list[dict[str, Any]]
    node_seconds: float
    libraries: dict[str, str]


def signer_from_seed(seed: bytes) -> Ed25519Signer:
    """The same did:key Ed25519VerificationKey2020.generate({seed}) makes in JavaScript."""
    return Ed25519Signer(Ed25519PrivateKey.from_private_bytes(seed))


def make_delegations(space_url: str, fresh: int) -> Parties:
    """Run delegate.mjs with new random seeds; check it derived the DIDs we did."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not on PATH (bench/delegate.mjs needs Node 20 and tests/js/node_modules)")
    seeds = {name: os.urandom(32) for name in "abc"}
    request = {
        "target": space_url,
        "seeds": {name: seed.hex() for name, seed in seeds.items()},
        "fresh": fresh,
        "expires_s": DELEGATION_LIFETIME_S,
    }
    proc = subprocess.run(
        [node, str(BENCH_DIR / "delegate.mjs")],
        input=json.dumps(request).encode(),
        capture_output=True,
        cwd=REPO_ROOT,
        timeout=NODE_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"bench/delegate.mjs failed ({proc.returncode}):\n{proc.stderr.decode()[-2000:]}")
    out = json.loads(proc.stdout)
    signers = {name: signer_from_seed(seed) for name, seed in seeds.items()}
    for name, signer in signers.items():
        if out["keys"][name]["key_id"] != signer.id:
            raise RuntimeError(
                f"delegate.mjs derived {out['keys'][name]['key_id']} from seed {name}, we {signer.id}"
            )
    return Parties(
        a=signers["a"],
        b=signers["b"],
        c=signers["c"],
        chain=out["chain"],
        fresh=out["fresh"],
        node_seconds=float(out["seconds"]),
        libraries=out["libraries"],
    )


def zcap_headers(headers: dict[str, str]) -> dict[str, str]:
    """``invoke()``'s headers without ``host``: ``Conn`` sends the same Host itself."""
    return {k: v for k, v in headers.items() if k != "host"}


def header_makers(parties: Parties, path: str, url: str) -> dict[str, Headers]:
    """Per mode, a function giving a freshly signed set of headers for GET ``url``."""
    return {
        "controller": lambda: signed(parties.a, "GET", path),
        "root": lambda: zcap_headers(invoke(parties.a, "GET", url)),
        "delegated": lambda: zcap_headers(invoke(parties.c, "GET", url, capability=parties.chain)),
    }


def wrong_invoker(parties: Parties, url: str) -> Headers:
    """The chain invoked by B, its delegator but not its controller: a server must refuse it."""
    return lambda: zcap_headers(invoke(parties.b, "GET", url, capability=parties.chain))


# ---------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------


async def get(conn: Conn, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """One GET; a connection failure is status 599 with the exception as body."""
    try:
        return await asyncio.wait_for(conn.request("GET", path, headers), IO_TIMEOUT_S)
    except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
        await conn.close()
        return 599, repr(exc).encode()


async def put_resource(port: int, signer: Ed25519Signer, path: str) -> None:
    """The 1 KiB resource every mode reads."""
    conn = Conn(port)
    headers = {**signed(signer, "PUT", path), "Content-Type": "application/octet-stream"}
    try:
        status, data = await asyncio.wait_for(conn.request("PUT", path, headers, BODY), IO_TIMEOUT_S)
    finally:
        await conn.close()
    if not 200 <= status < 300:
        raise RuntimeError(f"PUT {path} failed: {status} {data[:300]!r}")


@dataclass
class Preflight:
    """One request per mode before measuring: refusals stop the run; the first delegated one is cold."""

    statuses: dict[str, int] = field(default_factory=dict)
    refusals: dict[str, str] = field(default_factory=dict)
    cold_delegated_ms: float = 0.0
    warm_delegated_ms: float = 0.0
    #: The chain invoked by B, who delegated it but is not its controller: must not be 200.
    wrong_invoker_status: int = 0


async def preflight(port: int, path: str, makers: dict[str, Headers], wrong_invoker: Headers) -> Preflight:
    """Each mode must read the resource; the delegated chain is timed uncached, then cached."""
    result = Preflight()
    conn = Conn(port)
    try:
        for mode in MODES:
            t0 = time.perf_counter()
            status, data = await get(conn, path, makers[mode]())
            elapsed = (time.perf_counter() - t0) * 1000
            result.statuses[mode] = status
            if status != 200 or data != BODY:
                result.refusals[mode] = f"{status}: {data[:500].decode(errors='replace')}"
            if mode == "delegated":
                result.cold_delegated_ms = elapsed
                t0 = time.perf_counter()
                await get(conn, path, makers[mode]())
                result.warm_delegated_ms = (time.perf_counter() - t0) * 1000
        result.wrong_invoker_status, _ = await get(conn, path, wrong_invoker())
    finally:
        await conn.close()
    return result


# ---------------------------------------------------------------------------
# The side-by-side workload
# ---------------------------------------------------------------------------


@dataclass
class Cell:
    """One (round, mode, concurrency) measurement; ``latencies`` stay out of the JSON."""

    round: int
    mode: str
    concurrency: int
    duration_s: float
    requests: int = 0
    errors: int = 0
    server_cpu_s: float = 0.0
    loadgen_cpu_s: float = 0.0
    wall_s: float = 0.0
    error_samples: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        del out["latencies"]
        out["rps"] = self.requests / self.duration_s
        return out


async def measure(
    port: int, pid: int, path: str, make: Headers, cell: Cell, concurrency: int, duration: float
) -> None:
    """GET ``path`` from ``concurrency`` keep-alive workers; only the post-warm-up window counts."""
    start = time.perf_counter()
    measure_start = start + WARMUP_S
    measure_end = measure_start + duration
    marks: dict[str, float] = {}

    async def worker() -> None:
        conn = Conn(port)
        failures = 0
        try:
            while time.perf_counter() < measure_end and failures < MAX_CONSECUTIVE_FAILURES:
                headers = make()
                t0 = time.perf_counter()
                status, data = await get(conn, path, headers)
                t1 = time.perf_counter()
                failures = failures + 1 if status == 599 else 0
                if t0 < measure_start or t1 > measure_end:
                    continue
                cell.latencies.append(t1 - t0)
                if status != 200 or data != BODY:
                    cell.errors += 1
                    if len(cell.error_samples) < MAX_ERROR_BODIES:
                        cell.error_samples.append(f"GET {path} -> {status}: {data[:300]!r}")
        finally:
            await conn.close()

    async def marker() -> None:
        await asyncio.sleep(max(0.0, measure_start - time.perf_counter()))
        marks["cpu0"], marks["srv0"], marks["t0"] = time.process_time(), proc_cpu_s(pid), time.perf_counter()
        await asyncio.sleep(max(0.0, measure_end - time.perf_counter()))
        marks["cpu1"], marks["srv1"], marks["t1"] = time.process_time(), proc_cpu_s(pid), time.perf_counter()

    await asyncio.gather(marker(), *(worker() for _ in range(concurrency)))
    cell.requests = len(cell.latencies)
    cell.server_cpu_s = marks["srv1"] - marks["srv0"]
    cell.loadgen_cpu_s = marks["cpu1"] - marks["cpu0"]
    cell.wall_s = marks["t1"] - marks["t0"]


def run_rounds(
    port: int, pid: int, path: str, makers: dict[str, Headers], rounds: int, duration: float
) -> list[Cell]:
    """Every round measures each concurrency in every mode, the mode order rotating per round."""
    cells: list[Cell] = []
    for r in range(rounds):
        order = MODES[r % len(MODES) :] + MODES[: r % len(MODES)]
        for concurrency in sorted(CONCURRENCIES, reverse=True):
            for mode in order:
                print(
                    f"  round {r + 1}/{rounds} c{concurrency} {mode} "
                    f"({WARMUP_S:g}s warm-up + {duration:g}s) ...",
                    file=sys.stderr,
                    flush=True,
                )
                cell = Cell(round=r + 1, mode=mode, concurrency=concurrency, duration_s=duration)
                asyncio.run(measure(port, pid, path, makers[mode], cell, concurrency, duration))
                cells.append(cell)
    return cells


def aggregate(cells: list[Cell]) -> list[dict[str, Any]]:
    """Per (mode, concurrency): totals over the rounds, latencies pooled."""
    rows: list[dict[str, Any]] = []
    for concurrency in sorted(CONCURRENCIES, reverse=True):
        for mode in MODES:
            mine = [c for c in cells if c.mode == mode and c.concurrency == concurrency]
            if not mine:
                continue
            lat = sorted(x for c in mine for x in c.latencies)
            requests = sum(c.requests for c in mine)
            seconds = sum(c.duration_s for c in mine)
            wall = sum(c.wall_s for c in mine) or seconds
            server_cpu = sum(c.server_cpu_s for c in mine)
            rates = [c.requests / c.duration_s for c in mine]
            rows.append(
                {
                    "mode": mode,
                    "concurrency": concurrency,
                    "rounds": len(mine),
                    "requests": requests,
                    "rps": requests / seconds,
                    "rps_min": min(rates),
                    "rps_max": max(rates),
                    "p50_ms": percentile(lat, 50) * 1000,
                    "p99_ms": percentile(lat, 99) * 1000,
                    "errors": sum(c.errors for c in mine),
                    "server_cpu_pct": 100 * server_cpu / wall,
                    "server_cpu_ms_per_req": 1000 * server_cpu / requests if requests else 0.0,
                    "loadgen_cpu_pct": 100 * sum(c.loadgen_cpu_s for c in mine) / wall,
                    "error_samples": [s for c in mine for s in c.error_samples][:MAX_ERROR_BODIES],
                }
            )
    return rows


def goals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """req/s of root and delegated over controller's, per concurrency; goals apply at c16."""
    by = {(r["mode"], r["concurrency"]): r for r in rows}
    out: list[dict[str, Any]] = []
    for concurrency in sorted(CONCURRENCIES, reverse=True):
        base = by.get(("controller", concurrency))
        for mode, goal in GOALS.items():
            row = by.get((mode, concurrency))
            if base is None or row is None or not base["rps"]:
                continue
            value = row["rps"] / base["rps"]
            applies = concurrency == GOAL_CONCURRENCY
            out.append(
                {
                    "ratio": f"{mode}/controller",
                    "concurrency": concurrency,
                    "rps_ratio": value,
                    "cpu_per_req_ratio": (
                        row["server_cpu_ms_per_req"] / base["server_cpu_ms_per_req"]
                        if base["server_cpu_ms_per_req"]
                        else 0.0
                    ),
                    "goal": goal if applies else None,
                    "met": value >= goal if applies else None,
                }
            )
    return out


# ---------------------------------------------------------------------------
# /health while uncached chains stream in
# ---------------------------------------------------------------------------


async def probe_health(port: int, done: asyncio.Event, max_samples: int) -> tuple[list[float], list[str]]:
    """GET /health every ~50 ms on its own connection until ``done`` (s3_bench's probe needs boto3)."""
    conn = Conn(port)
    latencies: list[float] = []
    errors: list[str] = []
    try:
        for _ in range(max_samples):
            if done.is_set():
                break
            t0 = time.perf_counter()
            status, body = await get(conn, "/health", {})
            elapsed = time.perf_counter() - t0
            latencies.append(elapsed)
            if status != 200:
                errors.append(f"GET /health -> {status}: {body[:200]!r}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), max(0.0, HEALTH_INTERVAL_S - elapsed))
    finally:
        await conn.close()
    return latencies, errors


def latency_summary(name: str, latencies: list[float], errors: list[str]) -> dict[str, Any]:
    lat = sorted(latencies)
    return {
        "condition": name,
        "samples": len(lat),
        "p50_ms": percentile(lat, 50) * 1000,
        "p99_ms": percentile(lat, 99) * 1000,
        "max_ms": lat[-1] * 1000 if lat else 0.0,
        "errors": len(errors),
        "error_samples": errors[:MAX_ERROR_BODIES],
    }


async def fresh_stream(
    port: int, pid: int, path: str, url: str, parties: Parties, concurrency: int
) -> dict[str, Any]:
    """/health idle, then while ``concurrency`` loops each invoke a never-seen chain per request."""
    never = asyncio.Event()
    idle = latency_summary("idle", *await probe_health(port, never, IDLE_HEALTH_SAMPLES))
    queue = list(reversed(parties.fresh))
    invocations: list[float] = []
    errors: list[str] = []
    done = asyncio.Event()

    async def loop() -> None:
        conn = Conn(port)
        try:
            while queue:
                headers = zcap_headers(invoke(parties.c, "GET", url, capability=queue.pop()))
                t0 = time.perf_counter()
                status, data = await get(conn, path, headers)
                invocations.append(time.perf_counter() - t0)
                if status != 200 or data != BODY:
                    errors.append(f"GET {path} (fresh chain) -> {status}: {data[:300]!r}")
        finally:
            await conn.close()

    async def loops() -> None:
        try:
            await asyncio.gather(*(loop() for _ in range(concurrency)))
        finally:
            done.set()

    cpu0, t0 = proc_cpu_s(pid), time.perf_counter()
    _, (lat, health_errors) = await asyncio.gather(loops(), probe_health(port, done, 10**6))
    cpu, wall = proc_cpu_s(pid) - cpu0, time.perf_counter() - t0
    during = latency_summary(f"{len(invocations)} fresh chains, {concurrency} at a time", lat, health_errors)
    fresh = latency_summary("uncached delegated GET", invocations, errors)
    fresh["per_s"] = len(invocations) / wall if wall else 0.0
    fresh["server_cpu_ms_per_req"] = 1000 * cpu / len(invocations) if invocations else 0.0
    fresh["server_cpu_pct"] = 100 * cpu / wall if wall else 0.0
    return {"health_idle": idle, "health_during": during, "fresh": fresh}


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def report(data: dict[str, Any]) -> str:
    """The side-by-side table, the ratios, and /health under uncached verification."""
    out = [
        f"zCap benchmark: GET of one 1 KiB resource (memory backend), fresh signature per request; "
        f"{data['rounds']} round(s) x {data['duration_s']:g}s per cell after {WARMUP_S:g}s warm-up, modes "
        f"alternating; python {data['python']}, {data['cpus']} CPUs",
        "",
    ]
    rows = [
        [
            "mode",
            "conc",
            "req/s",
            "per round",
            "p50 ms",
            "p99 ms",
            "errors",
            "server CPU%",
            "CPU ms/req",
            "loadgen CPU%",
        ]
    ]
    for r in data["results"]:
        rows.append(
            [
                r["mode"],
                str(r["concurrency"]),
                f"{r['rps']:.0f}",
                f"{r['rps_min']:.0f}-{r['rps_max']:.0f}",
                f"{r['p50_ms']:.2f}",
                f"{r['p99_ms']:.2f}",
                str(r["errors"]),
                f"{r['server_cpu_pct']:.0f}",
                f"{r['server_cpu_ms_per_req']:.3f}",
                f"{r['loadgen_cpu_pct']:.0f}",
            ]
        )
    out.append(table(rows))
    rows = [["ratio", "conc", "req/s", "CPU/req", "goal", "met"]]
    for g in data["goals"]:
        rows.append(
            [
                g["ratio"],
                str(g["concurrency"]),
                f"{g['rps_ratio']:.2f}x",
                f"{g['cpu_per_req_ratio']:.2f}x",
                f">= {g['goal']}x" if g["goal"] is not None else "",
                {True: "yes", False: "NO", None: ""}[g["met"]],
            ]
        )
    out += ["", table(rows)]
    pre = data["preflight"]
    out += [
        "",
        f"delegated chain (root -> B -> C, made by ezcap in {data['node_seconds']:.2f}s with the "
        f"{data['fresh_count']} fresh ones): first request {pre['cold_delegated_ms']:.1f} ms "
        f"(uncached), second {pre['warm_delegated_ms']:.1f} ms; invoked by B instead of C: "
        f"{pre['wrong_invoker_status']}",
    ]
    stream = data.get("stream")
    if stream is not None:
        rows = [["/health", "samples", "p50 ms", "p99 ms", "max ms", "errors"]]
        for h in (stream["health_idle"], stream["health_during"]):
            rows.append(
                [
                    h["condition"],
                    str(h["samples"]),
                    f"{h['p50_ms']:.2f}",
                    f"{h['p99_ms']:.2f}",
                    f"{h['max_ms']:.2f}",
                    str(h["errors"]),
                ]
            )
        f = stream["fresh"]
        out += [
            "",
            table(rows),
            "",
            f"uncached delegated GETs: {f['samples']} at {f['per_s']:.1f}/s, p50 {f['p50_ms']:.1f} ms, "
            f"p99 {f['p99_ms']:.1f} ms, server CPU {f['server_cpu_ms_per_req']:.1f} ms each "
            f"({f['server_cpu_pct']:.0f}% of a core), {f['errors']} errors",
        ]
    out += ["", f"server peak RSS {data['peak_rss_kib'] / 1024:.1f} MiB"]
    out += [f"WARNING: {w}" for w in warnings(data)]
    return "\n".join(out)


def warnings(data: dict[str, Any]) -> list[str]:
    """A busy client, errors, and anything the server logged that looks wrong."""
    found: list[str] = []
    if data["preflight"]["wrong_invoker_status"] == 200:
        found.append("the chain invoked by B (not its controller) was served: is the chain checked at all?")
    for r in data["results"]:
        cell = f"{r['mode']} c{r['concurrency']}"
        if r["loadgen_cpu_pct"] > LOADGEN_BUSY_PCT:
            found.append(f"load generator at {r['loadgen_cpu_pct']:.0f}% of a core in {cell}: client-bound")
        found += [f"error {cell}: {s}" for s in r["error_samples"]]
    stream = data.get("stream")
    if stream is not None:
        for part in stream.values():
            found += [f"{part['condition']}: {s}" for s in part["error_samples"]]
    found += [f"server log: {line}" for line in data["log_anomalies"]]
    return found


def log_anomalies(text: str) -> list[str]:
    """Lines of the server's output that are not routine start/stop chatter."""
    words = ("Traceback", "Unhandled", "CRITICAL", "ERROR", "Exception")
    return [line for line in text.splitlines() if any(w in line for w in words)][:20]


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Start the server, provision, delegate, measure; the server is always stopped."""
    port = free_port()
    cmd, env = server_command("ours", port)
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            cmd, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        try:
            try:
                wait_until_up("ours", port, proc)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}\n--- twistd output ---\n{tail(log)}") from None
            space = str(uuid.uuid4())
            origin = f"http://127.0.0.1:{port}"
            path = f"/space/{space}/{RESOURCE}"
            url = origin + path
            print(f"delegating with ezcap ({args.fresh} fresh chains too) ...", file=sys.stderr, flush=True)
            parties = make_delegations(f"{origin}/space/{space}", args.fresh)
            asyncio.run(provision(port, space, parties.a))
            asyncio.run(put_resource(port, parties.a, path))
            makers = header_makers(parties, path, url)
            pre = asyncio.run(preflight(port, path, makers, wrong_invoker(parties, url)))
            data: dict[str, Any] = {
                "duration_s": args.duration,
                "rounds": args.rounds,
                "warmup_s": WARMUP_S,
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "command": cmd,
                "libraries": parties.libraries,
                "node_seconds": parties.node_seconds,
                "fresh_count": len(parties.fresh),
                "preflight": asdict(pre),
            }
            if pre.refusals:
                data["log_tail"] = tail(log, 40)
                return data
            cells = run_rounds(port, proc.pid, path, makers, args.rounds, args.duration)
            data["cells"] = [c.summary() for c in cells]
            data["results"] = aggregate(cells)
            data["goals"] = goals(data["results"])
            if parties.fresh:
                print(f"  /health while {len(parties.fresh)} fresh chains stream in ...", file=sys.stderr)
                data["stream"] = asyncio.run(
                    fresh_stream(port, proc.pid, path, url, parties, args.fresh_concurrency)
                )
            data["peak_rss_kib"] = peak_rss_kib(proc.pid)
            if proc.poll() is not None:
                raise RuntimeError(f"twistd died during the run\n{tail(log)}")
            data["log_anomalies"] = log_anomalies(tail(log, 10**6))
            return data
        finally:
            stop(proc)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--duration", type=float, default=5.0, help="measured seconds per (round, mode, concurrency)"
    )
    ap.add_argument("--rounds", type=int, default=3, help="rounds, each measuring every mode (default 3)")
    ap.add_argument(
        "--fresh", type=int, default=200, help="never-seen chains for the /health check (0: skip)"
    )
    ap.add_argument("--fresh-concurrency", type=int, default=1, help="loops invoking fresh chains at once")
    ap.add_argument("--json", type=Path, help="write raw figures here")
    args = ap.parse_args(argv)
    if not 0 < args.duration <= 600:
        ap.error("--duration must be in (0, 600]")
    if not 1 <= args.rounds <= 50:
        ap.error("--rounds must be in [1, 50]")
    if not 0 <= args.fresh <= 5000 or not 1 <= args.fresh_concurrency <= 64:
        ap.error("--fresh must be in [0, 5000] and --fresh-concurrency in [1, 64]")
    signal.signal(signal.SIGTERM, _interrupt)  # so `finally` still stops the server
    print("starting twistd -n was (memory backend) ...", file=sys.stderr, flush=True)
    try:
        data = bench(args)
    except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    if args.json:
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    refusals = data["preflight"]["refusals"]
    if refusals:
        print("The server refused the invocations (nothing was measured):")
        for mode, answer in refusals.items():
            print(f"  {mode}: {answer}")
        print(f"--- twistd output ---\n{data['log_tail']}")
        return 1
    print(report(data))
    return 0 if all(g["met"] is not False for g in data["goals"]) else 2


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; server stopped", file=sys.stderr)
        sys.exit(130)
