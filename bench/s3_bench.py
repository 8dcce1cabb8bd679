"""S3 benchmark: was-twisted over moto and/or Ceph, behind a proxy that adds S3-like latency.

One command, one run::

    python bench/s3_bench.py [--s3 moto|ceph|both] [--processes 1,2] [--duration 10] [--latency-ms 20]

For each S3 server in turn (moto's stand-alone server; a throwaway single-node Ceph whose RADOS
Gateway checks SigV4 signatures), it starts that server, ``bench/latency_proxy.py`` in front of
it (delays every response, counts S3 requests by operation) and ``twistd -n was`` with
``WAS_STORAGE_BACKEND=s3`` talking to the proxy, then measures the S3 server's own capacity,
signed 1 KiB PUT+GET throughput at concurrency 1 and 16, ``/health`` latency under load, listing
200 of 1,200 spaces, and the S3 requests each API operation makes; then stops all three before
the next S3 server starts.  The throughput is measured once per ``--processes`` count: N > 1 starts
N ``twistd`` processes sharing one ``reuseport:`` port (the kernel spreads connections across
them); everything else uses the single process.  Every process it starts is stopped before it
exits.  The S3 servers come from ``tests/integration/s3servers.py``.  See the last section of
``bench/README.rst``.

The load generator, the signing and the table format are ``bench/run.py``'s, imported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import http.client
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from run import (
    BODY,
    IO_TIMEOUT_S,
    LOADGEN_BUSY_PCT,
    START_TIMEOUT_S,
    WARMUP_S,
    Conn,
    _interrupt,
    free_port,
    peak_rss_kib,
    percentile,
    proc_cpu_s,
    provision,
    ratio,
    run_workload,
    server_command,
    signed,
    stop,
    table,
)
from wallet_attached_storage_client import Ed25519Signer

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(1, str(REPO_ROOT))  # after bench/ (for ``run``): ``tests.integration.s3servers``
from tests.integration.s3servers import S3Server, ceph_available, start_ceph, start_moto  # noqa: E402

S3_KINDS = ("moto", "ceph")
S3_STARTERS = {"moto": start_moto, "ceph": start_ceph}
S3_START_TIMEOUT_S = 90.0
BUCKET = "was-bench"
PREFIX = "bench/"

#: The existing (FastAPI) server's figures over S3 with 20 ms latency, measured from its source.
EXISTING_RPS = 15.0
EXISTING_HEALTH_MAX_MS = 2600.0
EXISTING_LIST_REQUESTS = 201
EXISTING_LIST_MS = 5400.0
EXISTING_OPS: dict[str, str] = {
    "resource write (new)": "3 (GetObject + HeadObject on _meta.json, PutObject)",
    "list spaces (200 own of 1,200)": "201",
}

#: Goals.
GOAL_SCALING = 8.0
GOAL_VS_EXISTING = 10.0
GOAL_HEALTH_P99_MS = 50.0
GOAL_LIST_REQUESTS = 1
GOAL_LIST_MS = 100.0

PROVISION_CONCURRENCY = 16
HEALTH_INTERVAL_S = 0.05
IDLE_HEALTH_SAMPLES = 40
LIST_REPEATS = 5
PROXY_CHECK_SEQUENTIAL = 200
PROXY_CHECK_THREADS = 16
PROXY_CHECK_PER_THREAD = 40
LOG_ANOMALY = re.compile(r"Traceback|Unhandled|CRITICAL|\bERROR\b|\berror\b|failed|Exception", re.I)
MAX_LOG_LINES = 30
PR_SET_PDEATHSIG = 1
OTHER_BUSY_PCT = 20  # CPU used by processes this benchmark did not start
MAX_PROCESSES = 8
INDEX_INCOMPLETE = "s3: the controller index is incomplete"
INDEX_DONE = r"s3: index built|s3: building the index failed"


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------


@dataclass
class Proc:
    """A subprocess whose combined output goes to a file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0

    def log_text(self) -> str:
        """Everything it printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, n: int = 25) -> str:
        """Last lines of its output, for error messages."""
        return "\n".join(self.log_text().splitlines()[-n:])


def _die_with_parent() -> None:
    """Linux only: the child gets SIGTERM if this process dies without running its ``finally``."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(name: str, cmd: list[str], env: dict[str, str], log_dir: Path) -> Proc:
    """Start ``cmd`` with stdout and stderr to ``log_dir/name.log``."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            cmd,
            env=env,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    return Proc(name, popen, log_path)


def wait_for_line(proc: Proc, pattern: str, timeout: float = START_TIMEOUT_S) -> re.Match[str]:
    """Poll the process's output until ``pattern`` matches a line (bounded by ``timeout``)."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = regex.search(proc.log_text())
        if match:
            return match
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with code {proc.popen.returncode}:\n{proc.tail()}")
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} did not print /{pattern}/ within {timeout:.0f}s:\n{proc.tail()}")


def http_status(port: int, method: str, path: str, timeout: float = 2.0) -> int:
    """One plain HTTP request; returns the status (raises OSError/HTTPException on failure)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def wait_http(proc: Proc, path: str, ok: tuple[int, ...] | None = None) -> None:
    """Poll until the process answers ``GET path`` (with a status in ``ok`` if given)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with code {proc.popen.returncode}:\n{proc.tail()}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            status = http_status(proc.port, "GET", path)
            if ok is None or status in ok:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not answer GET {path} within {START_TIMEOUT_S:.0f}s:\n{proc.tail()}")


def s3_pids(s3: S3Server) -> list[int]:
    """The S3 server's processes (moto: one; Ceph: monitor, OSD and radosgw)."""
    return [p.pid for p in s3._procs]


def s3_cpu_s(s3: S3Server) -> float:
    """CPU seconds used so far by every process of the S3 server."""
    return sum(proc_cpu_s(pid) for pid in s3_pids(s3))


def s3_version(kind: str) -> str:
    """``moto 5.x`` or ``Ceph 16.2.x`` (``?`` if unknown)."""
    if kind == "moto":
        try:
            import moto

            return f"moto {moto.__version__}"
        except ImportError:
            return "moto ?"
    try:
        out = subprocess.run(["ceph", "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    match = re.search(r"ceph version (\S+)", out)
    return f"Ceph {match.group(1) if match else '?'} RGW"


def start_proxy(s3: S3Server, latency_ms: float, log_dir: Path) -> Proc:
    """``latency_proxy.py`` in its own process (its CPU is then measurable and off our GIL)."""
    cmd = [
        sys.executable,
        str(BENCH_DIR / "latency_proxy.py"),
        "--upstream",
        s3.endpoint_url,
        "--latency-ms",
        str(latency_ms),
    ]
    proc = spawn("latency_proxy", cmd, dict(os.environ), log_dir)
    proc.port = int(wait_for_line(proc, r"listening on 127\.0\.0\.1:(\d+)").group(1))
    return proc


def ours_command(proxy_port: int, s3: S3Server, listen: str) -> tuple[list[str], dict[str, str]]:
    """``twistd -n was --listen LISTEN`` on S3 through the proxy, and its environment."""
    cmd, env = server_command("ours", 0)  # tcp:0:interface=127.0.0.1, PYTHONPATH, access log off
    if cmd[-2] != "--listen":
        raise RuntimeError(f"unexpected command from run.server_command: {cmd}")
    cmd[-1] = listen
    env = s3.process_env(env)  # no AWS_* of the caller's; the S3 server's keys (Ceph checks them)
    env.update(
        WAS_STORAGE_BACKEND="s3",
        WAS_STORAGE_BUCKET=BUCKET,
        WAS_STORAGE_PREFIX=PREFIX,
        AWS_ENDPOINT_URL_S3=f"http://127.0.0.1:{proxy_port}",
        WAS_ACCESS_LOG="off",
    )
    return cmd, env


def wait_ready(proc: Proc, port: int = 0) -> None:
    """Until it listens (on ``port`` if given), answers /health and has built the index if it had to.

    twistd listens (``WASSite starting on``) in ``privilegedStartService``, then runs every
    ``startService`` (where a process that finds the index incomplete says so; one that finds it
    complete says nothing), then the reactor: once a process alone on its port has answered
    /health, the line is there if it will ever be.  Processes started after the first of a
    ``reuseport`` group find the index complete (the first built it); their /health may be
    answered by another process of the group.
    """
    proc.port = int(wait_for_line(proc, r"WASSite starting on (\d+)").group(1))
    if port and proc.port != port:
        raise RuntimeError(
            f"{proc.name} listens on {proc.port}, not on the shared port {port}:\n{proc.tail()}"
        )
    wait_http(proc, "/health", ok=(200,))
    if INDEX_INCOMPLETE in proc.log_text():
        wait_for_line(proc, INDEX_DONE)
        if "s3: building the index failed" in proc.log_text():
            raise RuntimeError(f"{proc.name} could not build its S3 index:\n{proc.tail()}")


def start_ours(n: int, proxy_port: int, s3: S3Server, log_dir: Path, started: list[Proc]) -> list[Proc]:
    """``n`` ``twistd -n was`` processes on S3 through the proxy; each is appended to ``started`` at once.

    n == 1: one process on ``tcp:0``.  n > 1: all on one free ``reuseport:`` port; the first is
    started alone and waited for (it builds the index if the bucket lacks one), then the others,
    which find the index complete.
    """
    if n == 1:
        port, names = 0, ["ours"]
        listen = "tcp:0:interface=127.0.0.1"
    else:
        port, names = free_port(), [f"ours-{n}p-{i}" for i in range(1, n + 1)]
        listen = f"reuseport:{port}:interface=127.0.0.1"
    cmd, env = ours_command(proxy_port, s3, listen)
    first = spawn(names[0], cmd, env, log_dir)
    started.append(first)
    wait_ready(first, port)
    rest: list[Proc] = []
    for name in names[1:]:
        proc = spawn(name, cmd, env, log_dir)
        started.append(proc)
        rest.append(proc)
    for proc in rest:
        wait_ready(proc, port)
    return [first, *rest]


def pids_of(procs: list[Proc]) -> list[int]:
    return [p.popen.pid for p in procs]


def cpu_of(pids: list[int]) -> float:
    """CPU seconds used so far by all these processes."""
    return sum(proc_cpu_s(pid) for pid in pids)


def s3_client(endpoint_url: str, s3: S3Server, pool: int = 10, secret_key: str | None = None) -> Any:
    """A boto3 client for the S3 server (directly or through the proxy), path-style, its keys."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key if secret_key is None else secret_key,
        region_name=s3.region,
        config=Config(
            s3={"addressing_style": "path"},
            max_pool_connections=pool,
            retries={"mode": "standard", "max_attempts": 1},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


class ProxyControl:
    """The proxy's local ``/__`` endpoints."""

    def __init__(self, port: int) -> None:
        self.port = port

    def _call(self, method: str, path: str) -> dict[str, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request(method, path)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if resp.status != 200:
            raise RuntimeError(f"proxy {method} {path} -> {resp.status}: {data[:200]!r}")
        return dict(json.loads(data))

    def counts(self) -> dict[str, Any]:
        return self._call("GET", "/__counts")

    def reset(self) -> dict[str, Any]:
        return self._call("POST", "/__reset")

    def set_latency(self, ms: float) -> None:
        self._call("POST", f"/__latency?ms={ms:g}")


def system_busy_s() -> float:
    """CPU seconds all processes on the machine have used (from /proc/stat), 0 if unreadable."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def describe_counts(counts: dict[str, int]) -> str:
    """``{"GetObject": 2, "PutObject": 1}`` -> ``"2 GetObject, 1 PutObject"``."""
    return ", ".join(f"{n} {op}" for op, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))) or "-"


# ---------------------------------------------------------------------------
# 0. The proxy itself: overhead at 0 ms, delay at N ms, concurrency
# ---------------------------------------------------------------------------


def time_sequential(client: Any, n: int) -> list[float]:
    """Latencies (s) of ``n`` sequential 1 KiB GetObject calls, after 10 unmeasured ones."""
    out: list[float] = []
    for i in range(n + 10):
        t0 = time.perf_counter()
        client.get_object(Bucket=BUCKET, Key="probe/1k")["Body"].read()
        if i >= 10:
            out.append(time.perf_counter() - t0)
    return sorted(out)


def time_concurrent(client: Any, threads: int, per_thread: int) -> tuple[float, int, list[str]]:
    """(wall seconds, requests, errors) for ``threads`` threads doing sequential GetObjects."""
    errors: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(per_thread):
            try:
                client.get_object(Bucket=BUCKET, Key="probe/1k")["Body"].read()
            except Exception as exc:  # noqa: BLE001 - reported, not hidden
                with lock:
                    errors.append(repr(exc)[:200])

    pool = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=120)
    return time.perf_counter() - t0, threads * per_thread, errors


def check_signatures(s3: S3Server, proxy: Proc) -> dict[str, Any]:
    """Signed requests pass through the proxy unchanged, and a wrong signature is refused.

    Ceph's gateway recomputes every SigV4 signature from the method, path, query, ``Host`` and
    body it receives: a proxy that changed any of them would get 403 SignatureDoesNotMatch for
    the good key too.  moto accepts any signature, so there the wrong key is expected to pass.
    """
    via_url = f"http://127.0.0.1:{proxy.port}"
    good = s3_client(via_url, s3)
    bad = s3_client(via_url, s3, secret_key=s3.secret_key + "x")
    key = "probe/signed key with spaces+plus"  # exercises the path's percent-encoding
    result: dict[str, Any] = {"good_key": "", "wrong_key": "", "ok": False}
    try:
        try:
            good.put_object(Bucket=BUCKET, Key=key, Body=BODY)
            same = good.get_object(Bucket=BUCKET, Key=key)["Body"].read() == BODY
            good.delete_object(Bucket=BUCKET, Key=key)
            result["good_key"] = "PUT/GET/DELETE 200" + ("" if same else ", body differs")
        except ClientError as exc:
            result["good_key"] = str(exc)[:200]
            same = False
        try:
            bad.head_bucket(Bucket=BUCKET)
            result["wrong_key"] = "accepted"
        except ClientError as exc:
            result["wrong_key"] = f"{exc.response['Error'].get('Code', '?')} (refused)"
        refused = result["wrong_key"] != "accepted"
        result["ok"] = same and (refused or s3.name == "moto")
    finally:
        good.close()
        bad.close()
    return result


def check_proxy(s3: S3Server, proxy: Proc, ctl: ProxyControl, latency_ms: float) -> dict[str, Any]:
    """What the proxy adds: nothing much at 0 ms, ``latency_ms`` when on, and no serialisation.

    The 16-thread direct figure is the S3 server's own capacity on this machine.
    """
    direct = s3_client(s3.endpoint_url, s3)
    via = s3_client(f"http://127.0.0.1:{proxy.port}", s3, pool=PROXY_CHECK_THREADS + 2)
    direct.put_object(Bucket=BUCKET, Key="probe/1k", Body=BODY)
    rows: list[dict[str, Any]] = []

    def seq(label: str, client: Any, n: int) -> None:
        lat = time_sequential(client, n)
        rows.append(
            {
                "path": label,
                "requests": n,
                "p50_ms": percentile(lat, 50) * 1000,
                "p99_ms": percentile(lat, 99) * 1000,
            }
        )

    try:
        seq("direct", direct, PROXY_CHECK_SEQUENTIAL)
        ctl.set_latency(0)
        seq("proxy 0 ms", via, PROXY_CHECK_SEQUENTIAL)
        concurrent: list[dict[str, Any]] = []
        for label, client, ms in (
            ("direct", direct, None),
            ("proxy 0 ms", via, 0.0),
            (f"proxy {latency_ms:g} ms", via, latency_ms),
        ):
            if ms is not None:
                ctl.set_latency(ms)
            ctl.reset()
            cpu0, s3_cpu0 = proc_cpu_s(proxy.popen.pid), s3_cpu_s(s3)
            wall, n, errors = time_concurrent(client, PROXY_CHECK_THREADS, PROXY_CHECK_PER_THREAD)
            cpu, s3_cpu = proc_cpu_s(proxy.popen.pid) - cpu0, s3_cpu_s(s3) - s3_cpu0
            snap = ctl.counts()
            concurrent.append(
                {
                    "path": label,
                    "threads": PROXY_CHECK_THREADS,
                    "requests": n,
                    "rps": n / wall,
                    "s3_cpu_pct": 100 * s3_cpu / wall,
                    "errors": len(errors),
                    "error_samples": errors[:3],
                    "max_in_flight": snap["max_in_flight"] if ms is not None else None,
                    "proxy_cpu_us_per_request": 1e6 * cpu / n if ms is not None else None,
                }
            )
        seq(f"proxy {latency_ms:g} ms", via, PROXY_CHECK_SEQUENTIAL // 2)
    finally:
        ctl.set_latency(latency_ms)
        direct.delete_object(Bucket=BUCKET, Key="probe/1k")
        direct.close()
        via.close()
    return {"sequential": rows, "concurrent": concurrent}


# ---------------------------------------------------------------------------
# 1. Throughput and /health under load
# ---------------------------------------------------------------------------


@dataclass
class Health:
    """GET /health latencies sampled on their own connection."""

    condition: str
    processes: int = 1
    samples: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, condition: str, latencies: list[float], errors: list[str], processes: int = 1) -> Health:
        lat = sorted(latencies)
        return cls(
            condition=condition,
            processes=processes,
            samples=len(lat),
            p50_ms=percentile(lat, 50) * 1000,
            p99_ms=percentile(lat, 99) * 1000,
            max_ms=(lat[-1] * 1000) if lat else 0.0,
            errors=len(errors),
            error_samples=errors[:5],
        )


async def probe_health(
    port: int, stop_event: asyncio.Event, max_samples: int
) -> tuple[list[float], list[str]]:
    """GET /health every ~50 ms until ``stop_event`` (or ``max_samples``)."""
    conn = Conn(port)
    latencies: list[float] = []
    errors: list[str] = []
    try:
        for _ in range(max_samples):
            if stop_event.is_set():
                break
            t0 = time.perf_counter()
            try:
                status, body = await asyncio.wait_for(conn.request("GET", "/health", {}), IO_TIMEOUT_S)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                await conn.close()
                status, body = 599, repr(exc).encode()
            elapsed = time.perf_counter() - t0
            latencies.append(elapsed)
            if status != 200:
                errors.append(f"GET /health -> {status}: {body[:200]!r}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_event.wait(), max(0.0, HEALTH_INTERVAL_S - elapsed))
    finally:
        await conn.close()
    return latencies, errors


async def idle_health(port: int) -> Health:
    """/health with nothing else running: the floor."""
    never = asyncio.Event()
    lat, errors = await probe_health(port, never, IDLE_HEALTH_SAMPLES)
    return Health.of("idle", lat, errors)


async def workload(
    ours: list[Proc], space: str, signer: Ed25519Signer, concurrency: int, duration: float
) -> Any:
    """run.py's workload against the (shared) port; ``server_cpu_pct`` summed over every process.

    run.py samples one pid over the measured window; a sampler here sleeps to the same instants
    (warm-up end, measured end) and reads every process, kept per process too.
    """
    pids = pids_of(ours)
    start = time.perf_counter()
    marks: dict[str, Any] = {}

    async def sampler() -> None:
        await asyncio.sleep(max(0.0, start + WARMUP_S - time.perf_counter()))
        marks["cpu0"], marks["t0"] = [proc_cpu_s(pid) for pid in pids], time.perf_counter()
        await asyncio.sleep(max(0.0, start + WARMUP_S + duration - time.perf_counter()))
        marks["cpu1"], marks["t1"] = [proc_cpu_s(pid) for pid in pids], time.perf_counter()

    res, _ = await asyncio.gather(
        run_workload("ours", ours[0].port, pids[0], space, signer, concurrency, duration), sampler()
    )
    wall = marks["t1"] - marks["t0"]
    per_process = [100 * (b - a) / wall for a, b in zip(marks["cpu0"], marks["cpu1"], strict=True)]
    res.server_cpu_pct = sum(per_process)
    return res, per_process


async def load_with_health(
    ours: list[Proc], space: str, signer: Ed25519Signer, concurrency: int, duration: float
) -> tuple[Any, Health]:
    """The run.py workload, with /health probed on a separate connection meanwhile."""
    stop_event = asyncio.Event()

    async def load() -> Any:
        try:
            return await workload(ours, space, signer, concurrency, duration)
        finally:
            stop_event.set()

    max_samples = int((WARMUP_S + duration + 2 * IO_TIMEOUT_S) / HEALTH_INTERVAL_S) + 10
    result, (lat, errors) = await asyncio.gather(load(), probe_health(ours[0].port, stop_event, max_samples))
    return result, Health.of(f"c{concurrency} PUT+GET load", lat, errors, len(ours))


def bench_throughput(
    ours: list[Proc], s3: S3Server, proxy: Proc, ctl: ProxyControl, duration: float
) -> tuple[list[dict[str, Any]], list[Health]]:
    """Concurrency 1 and 16 over one space; CPU of every process; /health during c16 (idle: 1 process)."""
    n = len(ours)
    pids = pids_of(ours)
    port = ours[0].port  # every process of a group listens on the same port
    signer = Ed25519Signer()
    space = str(uuid.uuid4())
    asyncio.run(provision(port, space, signer))
    healths = [asyncio.run(idle_health(port))] if n == 1 else []
    results: list[dict[str, Any]] = []
    for c in (1, 16):
        print(
            f"  throughput, {n} process{'es' if n > 1 else ''}, c{c} "
            f"({WARMUP_S:g}s warm-up + {duration:g}s) ...",
            file=sys.stderr,
            flush=True,
        )
        ctl.reset()
        t0 = time.perf_counter()
        s3_0, proxy0 = s3_cpu_s(s3), proc_cpu_s(proxy.popen.pid)
        ours0, bench0, system0 = cpu_of(pids), time.process_time(), system_busy_s()
        if c == 16:
            (res, per_process), health = asyncio.run(load_with_health(ours, space, signer, c, duration))
            healths.append(health)
        else:
            res, per_process = asyncio.run(workload(ours, space, signer, c, duration))
        wall = time.perf_counter() - t0
        snap = ctl.counts()
        s3_cpu = s3_cpu_s(s3) - s3_0
        mine = (
            s3_cpu
            + proc_cpu_s(proxy.popen.pid)
            - proxy0
            + cpu_of(pids)
            - ours0
            + time.process_time()
            - bench0
        )
        row = asdict(res)
        row.update(
            processes=n,
            ours_cpu_pct_per_process=per_process,
            s3_cpu_pct=100 * s3_cpu / wall,
            proxy_cpu_pct=100 * (proc_cpu_s(proxy.popen.pid) - proxy0) / wall,
            s3_requests=snap["counts"],
            s3_rps=snap["total"] / wall,
            s3_max_in_flight=snap["max_in_flight"],
            s3_service_ms=snap["upstream_mean_ms"],
            other_cpu_pct=max(0.0, 100 * (system_busy_s() - system0 - mine) / wall),
            ours_cpu_ms_per_request=(10 * row["server_cpu_pct"] / res.rps) if res.rps else 0.0,
            s3_upstream_errors=snap["upstream_errors"],
        )
        results.append(row)
    return results, healths


# ---------------------------------------------------------------------------
# 2. Listing and S3 requests per operation
# ---------------------------------------------------------------------------


async def call(
    port: int, signer: Ed25519Signer, method: str, path: str, body: bytes = b"", content_type: str = ""
) -> tuple[int, bytes, float]:
    """One signed request on a fresh connection; returns (status, body, milliseconds)."""
    conn = Conn(port)
    headers = signed(signer, method, path)
    if content_type:
        headers["Content-Type"] = content_type
    try:
        t0 = time.perf_counter()
        status, data = await asyncio.wait_for(conn.request(method, path, headers, body), IO_TIMEOUT_S)
        return status, data, (time.perf_counter() - t0) * 1000
    finally:
        await conn.close()


def space_body(space: str, signer: Ed25519Signer) -> bytes:
    return json.dumps({"id": f"urn:uuid:{space}", "controller": signer.controller}).encode()


async def provision_many(
    port: int, jobs: list[tuple[Ed25519Signer, str]], concurrency: int
) -> tuple[int, list[str], float]:
    """Create every space through the API, ``concurrency`` at a time; (created, errors, seconds)."""
    todo: Iterator[tuple[Ed25519Signer, str]] = iter(jobs)
    created = 0
    errors: list[str] = []

    async def worker() -> None:
        nonlocal created
        conn = Conn(port)
        try:
            for signer, space in todo:  # shared iterator: each job taken once; ends with the list
                path = f"/space/{space}"
                headers = signed(signer, "PUT", path)
                headers["Content-Type"] = "application/json"
                try:
                    status, data = await asyncio.wait_for(
                        conn.request("PUT", path, headers, space_body(space, signer)), IO_TIMEOUT_S
                    )
                except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    await conn.close()
                    status, data = 599, repr(exc).encode()
                if status == 201:
                    created += 1
                else:
                    errors.append(f"PUT {path} -> {status}: {data[:300]!r}")
        finally:
            await conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return created, errors, time.perf_counter() - t0


def bench_listing(ours: Proc, ctl: ProxyControl, others: int, own: int) -> tuple[dict[str, Any], Any]:
    """``others`` spaces of other DIDs and ``own`` of one DID, then that DID's GET /spaces/."""
    print(f"  provisioning {others} + {own} spaces ...", file=sys.stderr, flush=True)
    owner = Ed25519Signer()
    mine = [str(uuid.uuid4()) for _ in range(own)]
    jobs = [(Ed25519Signer(), str(uuid.uuid4())) for _ in range(others)] + [(owner, s) for s in mine]
    jobs.sort(key=lambda job: job[1])  # interleave owners, as real traffic would
    ctl.reset()
    created, errors, seconds = asyncio.run(provision_many(ours.port, jobs, PROVISION_CONCURRENCY))
    provision_counts = ctl.counts()
    calls: list[dict[str, Any]] = []
    for _ in range(LIST_REPEATS):
        ctl.reset()
        status, data, ms = asyncio.run(call(ours.port, owner, "GET", "/spaces/"))
        snap = ctl.counts()
        total_items: int | None = None
        matching = 0
        with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
            doc = json.loads(data)
            total_items = int(doc["totalItems"])
            wanted = set(mine)
            matching = sum(1 for item in doc["items"] if str(item["id"]).removeprefix("urn:uuid:") in wanted)
        calls.append(
            {
                "status": status,
                "ms": ms,
                "total_items": total_items,
                "items_matching": matching,
                "s3_requests": snap["total"],
                "s3_counts": snap["counts"],
                "s3_service_ms": snap["upstream_mean_ms"] * snap["total"],
                "body_sample": None if status == 200 else data[:300].decode(errors="replace"),
            }
        )
    listing = {
        "spaces_other": others,
        "spaces_own": own,
        "created": created,
        "provision_errors": len(errors),
        "provision_error_samples": errors[:5],
        "provision_s": seconds,
        "provision_rps": (others + own) / seconds if seconds else 0.0,
        "provision_s3_counts": provision_counts["counts"],
        "calls": calls,
        "first_ms": calls[0]["ms"],
        "median_ms": statistics.median(c["ms"] for c in calls),
    }
    return listing, owner


def bench_operations(ours: Proc, ctl: ProxyControl, listing: dict[str, Any]) -> list[dict[str, Any]]:
    """S3 requests the proxy sees for single API calls (counters reset before each)."""
    signer = Ed25519Signer()
    sid = str(uuid.uuid4())
    base = f"/space/{sid}"
    octet = "application/octet-stream"
    steps: list[tuple[str | None, str, str, bytes, str, tuple[int, ...]]] = [
        ("create space", "PUT", base, space_body(sid, signer), "application/json", (201,)),
        ("resource write (new)", "PUT", f"{base}/r/1", BODY, octet, (200, 201, 204)),
        ("resource write (overwrite)", "PUT", f"{base}/r/1", BODY, octet, (200, 201, 204)),
        ("resource read", "GET", f"{base}/r/1", b"", "", (200,)),
        ("resource read (missing)", "GET", f"{base}/r/missing", b"", "", (404,)),
        ("list resources (1)", "GET", f"{base}/", b"", "", (200,)),
        ("list spaces (1 own)", "GET", "/spaces/", b"", "", (200,)),
        (None, "PUT", f"{base}/r/2", BODY, octet, (200, 201, 204)),
        (None, "PUT", f"{base}/r/3", BODY, octet, (200, 201, 204)),
        (None, "PUT", f"{base}/r/4", BODY, octet, (200, 201, 204)),
        ("delete resource", "DELETE", f"{base}/r/4", b"", "", (200, 204)),
        ("delete space (3 resources)", "DELETE", base, b"", "", (200, 204)),
    ]
    rows: list[dict[str, Any]] = []
    for label, method, path, body, ctype, expected in steps:
        ctl.reset()
        status, data, ms = asyncio.run(call(ours.port, signer, method, path, body, ctype))
        snap = ctl.counts()
        if label is None:
            if status not in expected:
                raise RuntimeError(f"setup {method} {path} -> {status}: {data[:300]!r}")
            continue
        rows.append(
            {
                "operation": label,
                "request": f"{method} {path.replace(sid, '{id}')}",
                "status": status,
                "expected_status": status in expected,
                "ms": ms,
                "s3_requests": snap["total"],
                "s3_counts": snap["counts"],
                "body_sample": None if status in expected else data[:300].decode(errors="replace"),
            }
        )
    first = listing["calls"][0]
    rows.append(
        {
            "operation": f"list spaces ({listing['spaces_own']} own of "
            f"{listing['spaces_own'] + listing['spaces_other']:,})",
            "request": "GET /spaces/",
            "status": first["status"],
            "expected_status": first["status"] == 200,
            "ms": first["ms"],
            "s3_requests": first["s3_requests"],
            "s3_counts": first["s3_counts"],
            "body_sample": first["body_sample"],
        }
    )
    return rows


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def log_anomalies(text: str) -> list[str]:
    """Lines of our twistd log that look like errors (it should have none)."""
    return [line for line in text.splitlines() if LOG_ANOMALY.search(line)][:MAX_LOG_LINES]


def tp(run: dict[str, Any], processes: int, concurrency: int) -> dict[str, Any]:
    """The throughput row for that number of our processes and that concurrency."""
    return next(
        r for r in run["throughput"] if r["processes"] == processes and r["concurrency"] == concurrency
    )


def s3_ceiling(run: dict[str, Any]) -> dict[str, Any]:
    """The API req/s the S3 server alone allows: its direct capacity over S3 requests per API request."""
    direct = next(r for r in run["proxy_check"]["concurrent"] if r["path"] == "direct")
    ops = {r["operation"]: r["s3_requests"] for r in run["operations"]}
    per_request = (ops.get("resource write (new)", 0) + ops.get("resource read", 0)) / 2
    ceiling = direct["rps"] / per_request if per_request else 0.0
    c16 = {n: tp(run, n, 16) for n in run["process_counts"]}
    return {
        "s3_direct_rps": direct["rps"],
        "s3_direct_cpu_pct": direct["s3_cpu_pct"],
        "s3_requests_per_api_request": per_request,
        "ceiling_rps": ceiling,
        "c16_s3_rps": {n: r["s3_rps"] for n, r in c16.items()},
        "c16_s3_service_ms": {n: r["s3_service_ms"] for n, r in c16.items()},
        "c16_pct_of_ceiling": {n: 100 * r["rps"] / ceiling if ceiling else 0.0 for n, r in c16.items()},
    }


def goals(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal, the figure measured and whether it was met (all with one process of ours)."""
    c1, c16 = tp(run, 1, 1), tp(run, 1, 16)
    under_load = next(h for h in run["health"] if h["processes"] == 1 and h["condition"].startswith("c16"))
    first = run["listing"]["calls"][0]
    scaling = c16["rps"] / c1["rps"] if c1["rps"] else 0.0
    vs_existing = c16["rps"] / EXISTING_RPS
    return [
        {
            "goal": f"c16 / c1 req/s >= {GOAL_SCALING:g}x",
            "measured": f"{scaling:.1f}x",
            "met": scaling >= GOAL_SCALING,
        },
        {
            "goal": f"c16 / existing {EXISTING_RPS:g} req/s >= {GOAL_VS_EXISTING:g}x",
            "measured": f"{vs_existing:.1f}x",
            "met": vs_existing >= GOAL_VS_EXISTING,
        },
        {
            "goal": f"/health p99 under c16 load < {GOAL_HEALTH_P99_MS:g} ms "
            f"(existing: max {EXISTING_HEALTH_MAX_MS / 1000:g} s)",
            "measured": f"p99 {under_load['p99_ms']:.1f} ms, max {under_load['max_ms']:.1f} ms",
            "met": under_load["p99_ms"] < GOAL_HEALTH_P99_MS and under_load["errors"] == 0,
        },
        {
            "goal": f"list 200 of 1,200: totalItems 200, <= {GOAL_LIST_REQUESTS} S3 request, "
            f"< {GOAL_LIST_MS:g} ms (existing: {EXISTING_LIST_REQUESTS}, {EXISTING_LIST_MS / 1000:g} s)",
            "measured": f"totalItems {first['total_items']}, {first['s3_requests']} S3, {first['ms']:.1f} ms",
            "met": first["total_items"] == run["listing"]["spaces_own"]
            and first["s3_requests"] <= GOAL_LIST_REQUESTS
            and first["ms"] < GOAL_LIST_MS,
        },
    ]


def _cols(data: dict[str, Any], fmt: Any) -> list[str]:
    """One cell per S3 server, in run order."""
    return [fmt(run) for run in data["servers"].values()]


def report(data: dict[str, Any]) -> str:
    """Every section as RST simple tables, with a column (or leading ``S3`` column) per S3 server."""
    runs: dict[str, dict[str, Any]] = data["servers"]
    names = list(runs)
    lat = data["latency_ms"]
    out = [
        f"WAS S3 benchmark: was-twisted over {', '.join(r['version'] for r in runs.values())} behind a "
        f"{lat:g} ms latency proxy; 1 KiB signed PUT+GET pairs, {data['duration_s']:g}s per "
        f"cell after {WARMUP_S:g}s warm-up; python {data['python']}, {data['cpus']} CPUs; "
        "each S3 server measured on its own, one after the other",
        "",
        "S3 servers (start-up, and signed requests through the proxy)",
        "",
        table(
            [["S3", "version", "processes", "start s", "good key via proxy", "wrong key via proxy"]]
            + [
                [
                    name,
                    r["version"],
                    str(r["processes"]),
                    f"{r['startup_s']:.1f}",
                    r["signatures"]["good_key"],
                    r["signatures"]["wrong_key"],
                ]
                for name, r in runs.items()
            ]
        ),
        "",
        "Proxy check: sequential 1 KiB GetObject from boto3 in the bench process (ms)",
        "",
    ]
    seq_rows = [["path"] + [f"{n} {q}" for n in names for q in ("p50", "p99")]]
    for k, row in enumerate(next(iter(runs.values()))["proxy_check"]["sequential"]):
        cells = [row["path"]]
        for r in runs.values():
            other = r["proxy_check"]["sequential"][k]
            cells += [f"{other['p50_ms']:.2f}", f"{other['p99_ms']:.2f}"]
        seq_rows.append(cells)
    out.append(table(seq_rows))
    out += [
        "",
        f"S3 server capacity and proxy cost: {PROXY_CHECK_THREADS} boto3 threads, 1 KiB GetObject, one "
        'client ("direct" is the S3 server alone: its capacity on this machine)',
        "",
    ]
    out.append(
        table(
            [["S3", "path", "requests", "req/s", "S3 CPU %", "errors", "max in flight", "proxy CPU us/req"]]
            + [
                [
                    name,
                    r["path"],
                    str(r["requests"]),
                    f"{r['rps']:.0f}",
                    f"{r['s3_cpu_pct']:.0f}",
                    str(r["errors"]),
                    "-" if r["max_in_flight"] is None else str(r["max_in_flight"]),
                    "-" if r["proxy_cpu_us_per_request"] is None else f"{r['proxy_cpu_us_per_request']:.0f}",
                ]
                for name, run in runs.items()
                for r in run["proxy_check"]["concurrent"]
            ]
        )
    )
    out += [
        "",
        f"Throughput (ours, S3 backend, {lat:g} ms added per S3 response; CPU in % of one core; procs: "
        "twistd processes sharing one reuseport port, 1 = one process on its own port; ours CPU is "
        "their sum, ours CPU/proc each one's)",
        "",
    ]
    rows = [
        [
            "S3",
            "procs",
            "conc",
            "req/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "ours CPU",
            "ours CPU/proc",
            "loadgen CPU",
            "S3 CPU",
            "proxy CPU",
            "other CPU",
            "S3 req/s",
            "S3 in flight",
            "S3 ms",
            "ours CPU ms/req",
        ]
    ]
    for name, run in runs.items():
        for r in run["throughput"]:
            rows.append(
                [
                    name,
                    str(r["processes"]),
                    str(r["concurrency"]),
                    f"{r['rps']:.0f}",
                    f"{r['p50_ms']:.1f}",
                    f"{r['p99_ms']:.1f}",
                    str(r["errors"]),
                    f"{r['server_cpu_pct']:.0f}",
                    "+".join(f"{x:.0f}" for x in r["ours_cpu_pct_per_process"]),
                    f"{r['loadgen_cpu_pct']:.0f}",
                    f"{r['s3_cpu_pct']:.0f}",
                    f"{r['proxy_cpu_pct']:.0f}",
                    f"{r['other_cpu_pct']:.0f}",
                    f"{r['s3_rps']:.0f}",
                    f"{r['s3_max_in_flight']}",
                    f"{r['s3_service_ms']:.1f}",
                    f"{r['ours_cpu_ms_per_request']:.1f}",
                ]
            )
    out.append(table(rows))
    counts: list[int] = data["process_counts"]
    ratio_rows = [["ratio", *names, "goal"]]
    for n in counts:
        procs = f"{n} proc{'s' if n > 1 else ''}"
        ratio_rows += [
            [
                f"ours c16 ({procs}) / ours c1 (1 proc)",
                *_cols(data, lambda r, n=n: ratio(tp(r, n, 16)["rps"], tp(r, 1, 1)["rps"])),
                f">= {GOAL_SCALING:g}x",
            ],
            [
                f"ours c16 ({procs}) / existing ({EXISTING_RPS:g} req/s)",
                *_cols(data, lambda r, n=n: ratio(tp(r, n, 16)["rps"], EXISTING_RPS)),
                f">= {GOAL_VS_EXISTING:g}x",
            ],
        ]
    out += [
        "",
        table(ratio_rows),
        "",
        "c1 is one connection, so it is bound by the latency and reaches one process whatever the "
        "count: every c16 row is divided by the c1 of one process.",
        "",
    ]
    for name, run in runs.items():
        ceil = run["ceiling"]
        reached = "; ".join(
            f"{n} proc{'s' if n > 1 else ''} {ceil['c16_pct_of_ceiling'][n]:.0f}% "
            f"({ceil['c16_s3_rps'][n]:.0f} S3 req/s, {name} answering in "
            f"{ceil['c16_s3_service_ms'][n]:.1f} ms on average before the added latency)"
            for n in counts
        )
        out.append(
            f"* {name} alone ({PROXY_CHECK_THREADS} boto3 threads, no proxy, no latency) served "
            f"{ceil['s3_direct_rps']:.0f} S3 req/s using {ceil['s3_direct_cpu_pct']:.0f}% of a core "
            "(near 100% or more: CPU-bound; well below: bound by its own per-request latency); "
            f"at {ceil['s3_requests_per_api_request']:g} S3 requests per API request that caps ours at "
            f"~{ceil['ceiling_rps']:.0f} req/s on this machine; c16 reached: {reached}."
        )
    out += [
        "",
        f"GET /health every {HEALTH_INTERVAL_S * 1000:g} ms on its own connection (idle: 1 process only)",
        "",
    ]
    out.append(
        table(
            [["S3", "procs", "condition", "samples", "p50 ms", "p99 ms", "max ms", "errors"]]
            + [
                [
                    name,
                    str(h["processes"]),
                    h["condition"],
                    str(h["samples"]),
                    f"{h['p50_ms']:.2f}",
                    f"{h['p99_ms']:.2f}",
                    f"{h['max_ms']:.2f}",
                    str(h["errors"]),
                ]
                for name, run in runs.items()
                for h in run["health"]
            ]
        )
    )
    first_listing = next(iter(runs.values()))["listing"]
    out += [
        "",
        f"Listing: {first_listing['spaces_other']:,} spaces of other DIDs + {first_listing['spaces_own']} of "
        f"one DID, created through the API at concurrency {PROVISION_CONCURRENCY}; then GET /spaces/ "
        f"signed by that DID, {LIST_REPEATS} times (1 process of ours, as below)",
        "",
    ]
    list_rows = [
        [
            "server",
            "creates/s",
            "created",
            "errors",
            "totalItems",
            "first ms",
            f"median of {LIST_REPEATS} ms",
            "S3 requests per call",
            "of first: S3 ms",
        ]
    ]
    for name, run in runs.items():
        listing = run["listing"]
        first = listing["calls"][0]
        list_rows.append(
            [
                f"ours on {name}",
                f"{listing['provision_rps']:.0f}",
                str(listing["created"]),
                str(listing["provision_errors"]),
                str(first["total_items"]),
                f"{first['ms']:.1f}",
                f"{listing['median_ms']:.1f}",
                "/".join(sorted({str(c["s3_requests"]) for c in listing["calls"]})),
                f"{first['s3_service_ms']:.1f}",
            ]
        )
    list_rows.append(
        ["existing", "-", "-", "-", "200", f"{EXISTING_LIST_MS:.0f}", "-", str(EXISTING_LIST_REQUESTS), "-"]
    )
    out.append(table(list_rows))
    out += [
        "",
        "S3 requests per API operation (1 process; proxy counters reset before each single call)",
        "",
    ]
    op_rows = [["operation", *(f"{n} S3 req" for n in names), *(f"{n} ms" for n in names), "which",
                "existing server"]]  # fmt: skip
    runs_ops = [run["operations"] for run in runs.values()]
    for k, r in enumerate(runs_ops[0]):
        same = [ops[k] for ops in runs_ops]
        which = describe_counts(r["s3_counts"])
        for name, other in zip(names[1:], same[1:], strict=True):
            if other["s3_counts"] != r["s3_counts"]:
                which += f" ({name}: {describe_counts(other['s3_counts'])})"
        op_rows.append(
            [
                r["operation"],
                *(
                    str(o["s3_requests"]) + ("" if o["expected_status"] else f" ({o['status']}!)")
                    for o in same
                ),
                *(f"{o['ms']:.1f}" for o in same),
                which,
                EXISTING_OPS.get(r["operation"], "-"),
            ]
        )
    out.append(table(op_rows))
    out += ["", "Goals (1 process of ours)", ""]
    goal_rows = [["goal", *(h for n in names for h in (n, "met"))]]
    for k, g in enumerate(next(iter(runs.values()))["goals"]):
        cells = [g["goal"]]
        for run in runs.values():
            other = run["goals"][k]
            cells += [other["measured"], "yes" if other["met"] else "NO"]
        goal_rows.append(cells)
    out.append(table(goal_rows))
    warnings: list[str] = []
    for name, run in runs.items():
        warnings.extend(f"{name}: {w}" for w in run_warnings(run))
    if warnings:
        out += ["", "Warnings and errors", ""] + [f"* {w}" for w in warnings]
    out += ["", "ours peak RSS (VmHWM, MiB, per process; 1 process: after the listing too)", ""]
    for name, run in runs.items():
        out.append(
            f"* {name}: "
            + "; ".join(
                f"{n} proc{'s' if n > 1 else ''}: "
                + ", ".join(f"{kib / 1024:.1f}" for kib in run["ours_peak_rss_kib"][n])
                for n in counts
            )
        )
    return "\n".join(out)


def run_warnings(run: dict[str, Any]) -> list[str]:
    """Everything odd in one S3 server's run."""
    warnings: list[str] = []
    if not run["signatures"]["ok"]:
        warnings.append(f"signature check through the proxy: {run['signatures']}")
    for r in run["proxy_check"]["concurrent"]:
        warnings.extend(f"proxy check {r['path']}: {e}" for e in r["error_samples"])
    for r in run["throughput"]:
        cell = f"c{r['concurrency']} ({r['processes']} proc{'s' if r['processes'] > 1 else ''})"
        if r["loadgen_cpu_pct"] > LOADGEN_BUSY_PCT:
            warnings.append(f"load generator at {r['loadgen_cpu_pct']:.0f}% of a core in {cell}")
        for sample in r["error_samples"]:
            warnings.append(f"error {cell}: {sample}")
        if r["other_cpu_pct"] > OTHER_BUSY_PCT:
            warnings.append(
                f"other processes on this machine used {r['other_cpu_pct']:.0f}% of a core during "
                f"{cell}: its figures are low; rerun on a quiet machine"
            )
        if r["s3_upstream_errors"]:
            warnings.append(f"proxy: {r['s3_upstream_errors']} upstream errors in {cell}")
    for h in run["health"]:
        warnings.extend(f"health {h['condition']} ({h['processes']} procs): {s}" for s in h["error_samples"])
    listing = run["listing"]
    warnings.extend(f"provisioning: {s}" for s in listing["provision_error_samples"])
    for c in listing["calls"]:
        if c["body_sample"]:
            warnings.append(f"GET /spaces/ -> {c['status']}: {c['body_sample']}")
    for r in run["operations"]:
        if r["body_sample"]:
            warnings.append(f"{r['request']} -> {r['status']}: {r['body_sample']}")
    warnings.extend(f"ours log: {line}" for line in run["ours_log_anomalies"])
    return warnings


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def run_one(kind: str, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    """Start one S3 server, the proxy and ours; measure everything; stop all three whatever happens."""
    log_dir.mkdir(parents=True, exist_ok=True)
    procs: list[Proc] = []
    s3: S3Server | None = None
    try:
        print(f"[{kind}] starting the S3 server ...", file=sys.stderr, flush=True)
        s3 = S3_STARTERS[kind](log_dir / "s3", timeout=S3_START_TIMEOUT_S)
        s3.create_bucket(BUCKET)
        proxy = start_proxy(s3, args.latency_ms, log_dir)
        procs.append(proxy)
        ctl = ProxyControl(proxy.port)
        print(f"[{kind}] checking signatures and the proxy ...", file=sys.stderr, flush=True)
        signatures = check_signatures(s3, proxy)
        if not signatures["ok"]:
            raise RuntimeError(f"signed requests through the proxy to {kind} failed: {signatures}")
        proxy_check = check_proxy(s3, proxy, ctl, args.latency_ms)
        throughput: list[dict[str, Any]] = []
        health: list[Health] = []
        peak_rss: dict[int, list[int]] = {}
        anomalies: list[str] = []
        for n in args.processes:
            print(f"[{kind}] starting {n} x ours (twistd, S3 backend) ...", file=sys.stderr, flush=True)
            group = start_ours(n, proxy.port, s3, log_dir, procs)
            try:
                rows, healths = bench_throughput(group, s3, proxy, ctl, args.duration)
                throughput += rows
                health += healths
                if n == 1:  # listing and per-operation counts: one process is enough
                    listing, _ = bench_listing(group[0], ctl, args.other_spaces, args.own_spaces)
                    print(f"[{kind}]   S3 requests per operation ...", file=sys.stderr, flush=True)
                    operations = bench_operations(group[0], ctl, listing)
                for proc in group:
                    if proc.popen.poll() is not None:
                        raise RuntimeError(f"{proc.name} died during the run:\n{proc.tail()}")
                peak_rss[n] = [peak_rss_kib(proc.popen.pid) for proc in group]
                for proc in group:
                    anomalies += [f"{proc.name}: {line}" for line in log_anomalies(proc.log_text())]
            finally:
                for proc in reversed(group):  # before the next count starts; `procs` holds them too
                    stop(proc.popen)
        if not s3.running:
            raise RuntimeError(f"{kind} died during the run")
        run: dict[str, Any] = {
            "s3": kind,
            "version": s3_version(kind),
            "processes": len(s3_pids(s3)),
            "process_counts": list(args.processes),
            "startup_s": s3.startup_seconds,
            "signatures": signatures,
            "proxy_check": proxy_check,
            "throughput": throughput,
            "health": [asdict(h) for h in health],
            "listing": listing,
            "operations": operations,
            "ours_peak_rss_kib": peak_rss,
            "ours_log_anomalies": anomalies[:MAX_LOG_LINES],
        }
        run["ceiling"] = s3_ceiling(run)
        run["goals"] = goals(run)
        return run
    finally:
        for proc in reversed(procs):
            stop(proc.popen)
        if s3 is not None:
            s3.stop()


def run_all(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    """Every selected S3 server, one after the other (never two at once: they would share the CPUs)."""
    kinds = list(S3_KINDS) if args.s3 == "both" else [args.s3]
    return {
        "duration_s": args.duration,
        "warmup_s": WARMUP_S,
        "latency_ms": args.latency_ms,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "process_counts": list(args.processes),
        "servers": {kind: run_one(kind, args, log_dir / kind) for kind in kinds},
        "existing": {
            "rps": EXISTING_RPS,
            "health_max_ms": EXISTING_HEALTH_MAX_MS,
            "list_requests": EXISTING_LIST_REQUESTS,
            "list_ms": EXISTING_LIST_MS,
            "ops": EXISTING_OPS,
        },
    }


def keep_logs(log_dir: Path, dest: Path) -> None:
    """Copy every ``*.log`` and ``*.out`` under ``log_dir`` to ``dest`` (path flattened)."""
    dest.mkdir(parents=True, exist_ok=True)
    for pattern in ("*.log", "*.out"):
        for log in log_dir.rglob(pattern):
            if log.is_file():
                (dest / "-".join(log.relative_to(log_dir).parts)).write_bytes(log.read_bytes())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per concurrency")
    ap.add_argument("--latency-ms", type=float, default=20.0, help="delay the proxy adds to each S3 response")
    ap.add_argument("--json", type=Path, help="write raw figures here")
    ap.add_argument("--other-spaces", type=int, default=1000, help="spaces owned by other DIDs (listing)")
    ap.add_argument("--own-spaces", type=int, default=200, help="spaces owned by the listing DID")
    ap.add_argument(
        "--s3",
        choices=("moto", "ceph", "both"),
        help="S3 server(s) to measure, one after the other (default: both if Ceph is installed, else moto)",
    )
    ap.add_argument(
        "--processes",
        default="1,2",
        help="comma list of twistd process counts for the throughput run; must include 1 (default 1,2)",
    )
    ap.add_argument("--keep-logs", type=Path, help="copy the S3, proxy and twistd logs into this directory")
    args = ap.parse_args(argv)
    if args.s3 is None:
        args.s3 = "both" if ceph_available() else "moto"
        if args.s3 == "moto":
            print(
                "note: Ceph is not installed (.ci/install-s3-servers), so only moto is measured",
                file=sys.stderr,
                flush=True,
            )
    elif args.s3 in ("ceph", "both") and not ceph_available():
        ap.error(f"--s3 {args.s3} needs the Ceph binaries on PATH (.ci/install-s3-servers)")
    if not 0 < args.duration <= 600:
        ap.error("--duration must be in (0, 600]")
    try:
        args.processes = sorted({int(x) for x in args.processes.split(",") if x.strip()})
    except ValueError:
        ap.error("--processes must be a comma list of integers, such as 1,2")
    if 1 not in args.processes or not all(1 <= n <= MAX_PROCESSES for n in args.processes):
        ap.error(
            f"--processes must include 1 (the listing, the operations and every ratio's c1 use one "
            f"process) and stay within 1..{MAX_PROCESSES}"
        )
    if not 0 <= args.latency_ms <= 1000:
        ap.error("--latency-ms must be in [0, 1000]")
    if not (0 <= args.other_spaces <= 20_000 and 1 <= args.own_spaces <= 5_000):
        ap.error("--other-spaces must be in [0, 20000] and --own-spaces in [1, 5000]")
    signal.signal(signal.SIGTERM, _interrupt)  # so `finally` still stops every process
    with tempfile.TemporaryDirectory(prefix="was-s3-bench-") as tmp:
        log_dir = Path(tmp)
        try:
            data = run_all(args, log_dir)
        except (RuntimeError, OSError, ClientError) as exc:
            print(f"FAILED: {exc}", file=sys.stderr, flush=True)
            return 1
        finally:
            if args.keep_logs:
                keep_logs(log_dir, args.keep_logs)
    print(report(data))
    if args.json:
        args.json.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return 0 if all(g["met"] for run in data["servers"].values() for g in run["goals"]) else 2


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; every process stopped", file=sys.stderr)
        sys.exit(130)
