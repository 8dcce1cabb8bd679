"""Side-by-side benchmark: was-twisted ("ours") against the FastAPI reference server.

One command starts each server in turn on a free 127.0.0.1 port, provisions a space, drives a
signed 1 KiB PUT+GET workload at concurrency 1 and 16, and prints a table (req/s, p50/p99,
errors, CPU, peak RSS) plus the ours/reference ratios.  See ``bench/README.rst``.

The load generator runs in this process (the servers are subprocesses) and uses raw asyncio
keep-alive HTTP/1.1 so that it stays cheap; its CPU use is printed so a reader can tell whether
it, rather than the server, was the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from wallet_attached_storage_client import Ed25519Signer, create_authorization_header

REPO_ROOT = Path(__file__).resolve().parent.parent
CONCURRENCIES = (1, 16)
WARMUP_S = 1.0
BODY = os.urandom(1024)
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
IO_TIMEOUT_S = 10.0
MAX_ERROR_BODIES = 5
LOADGEN_BUSY_PCT = 85  # above this the client, not the server, may be the limit
MAX_CONSECUTIVE_FAILURES = 50  # a worker gives up rather than spin on a dead server
#: ``WAS_STORAGE_BACKEND`` for ours (``--ours-backend``); filesystem gets a fresh temp data directory.
OURS_BACKEND = "memory"


# ---------------------------------------------------------------------------
# Minimal HTTP/1.1 keep-alive client (cheap enough not to be the bottleneck)
# ---------------------------------------------------------------------------


class Conn:
    """One keep-alive connection; reconnects lazily after errors or ``Connection: close``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.host_header = f"127.0.0.1:{port}"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        """Close the socket; errors while closing are irrelevant to the measurement."""
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, bytes]:
        """Send one request and read the full response; returns (status, body)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host_header}", f"Content-Length: {len(body)}"]
        lines.extend(f"{k}: {v}" for k, v in headers.items())
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        resp_headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            resp_headers[name.strip().lower()] = value.strip()
        if "content-length" in resp_headers:
            data = await self.reader.readexactly(int(resp_headers["content-length"]))
        elif resp_headers.get("transfer-encoding", "").lower() == "chunked":
            data = await self._read_chunked()
        elif status in (204, 304) or 100 <= status < 200:
            data = b""
        else:  # body delimited by close
            data = await self.reader.read()
            await self.close()
            return status, data
        if resp_headers.get("connection", "").lower() == "close":
            await self.close()
        return status, data

    async def _read_chunked(self) -> bytes:
        """Decode a chunked body (neither server should send one, but don't hang if it does)."""
        assert self.reader is not None
        parts: list[bytes] = []
        for _ in range(1_000_000):
            size = int((await self.reader.readline()).split(b";")[0].strip(), 16)
            if size == 0:
                while (await self.reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                break
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)
        return b"".join(parts)


def signed(signer: Ed25519Signer, method: str, path: str) -> dict[str, str]:
    """Fresh Authorization header per request, exactly as real clients build it."""
    return {"Authorization": create_authorization_header(signer=signer, method=method, url=path)}


# ---------------------------------------------------------------------------
# Workload
# ---------------------------------------------------------------------------


@dataclass
class Result:
    """Raw figures for one (server, concurrency) cell."""

    server: str
    concurrency: int
    duration_s: float
    requests: int = 0
    errors: int = 0
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    loadgen_cpu_pct: float = 0.0
    server_cpu_pct: float = 0.0
    error_samples: list[str] = field(default_factory=list)


def proc_cpu_s(pid: int) -> float:
    """utime+stime of a process in seconds, from /proc (0 if unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def percentile(sorted_vals: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_vals:
        return 0.0
    idx = min(len(sorted_vals) - 1, max(0, round(pct / 100 * len(sorted_vals) + 0.5) - 1))
    return sorted_vals[idx]


async def run_workload(
    name: str, port: int, pid: int, space: str, signer: Ed25519Signer, concurrency: int, duration: float
) -> Result:
    """Run PUT+GET pairs from ``concurrency`` workers; only the post-warm-up window is counted."""
    res = Result(server=name, concurrency=concurrency, duration_s=duration)
    latencies: list[float] = []
    counter = iter(range(10**9))
    loop_start = time.perf_counter()
    measure_start = loop_start + WARMUP_S
    measure_end = measure_start + duration
    marks: dict[str, float] = {}

    def record(t0: float, t1: float, status: int, body: bytes, what: str) -> None:
        if t0 < measure_start or t1 > measure_end:
            return
        latencies.append(t1 - t0)
        if not 200 <= status < 300:
            res.errors += 1
            if len(res.error_samples) < MAX_ERROR_BODIES:
                res.error_samples.append(f"{what} -> {status}: {body[:300]!r}")

    async def worker() -> None:
        conn = Conn(port)
        failures = 0
        try:
            while time.perf_counter() < measure_end and failures < MAX_CONSECUTIVE_FAILURES:
                path = f"/space/{space}/bench/{next(counter)}"
                for method, body in (("PUT", BODY), ("GET", b"")):
                    headers = signed(signer, method, path)
                    if method == "PUT":
                        headers["Content-Type"] = "application/octet-stream"
                    t0 = time.perf_counter()
                    try:
                        status, data = await asyncio.wait_for(
                            conn.request(method, path, headers, body), IO_TIMEOUT_S
                        )
                        failures = 0
                    except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                        await conn.close()
                        failures += 1
                        status, data = 599, repr(exc).encode()
                    record(t0, time.perf_counter(), status, data, f"{method} {path}")
        finally:
            await conn.close()

    async def marker() -> None:
        await asyncio.sleep(max(0.0, measure_start - time.perf_counter()))
        marks["cpu0"], marks["srv0"], marks["t0"] = time.process_time(), proc_cpu_s(pid), time.perf_counter()
        await asyncio.sleep(max(0.0, measure_end - time.perf_counter()))
        marks["cpu1"], marks["srv1"], marks["t1"] = time.process_time(), proc_cpu_s(pid), time.perf_counter()

    await asyncio.gather(marker(), *(worker() for _ in range(concurrency)))
    wall = marks["t1"] - marks["t0"]
    latencies.sort()
    res.requests = len(latencies)
    res.rps = res.requests / duration
    res.p50_ms = percentile(latencies, 50) * 1000
    res.p99_ms = percentile(latencies, 99) * 1000
    res.loadgen_cpu_pct = 100 * (marks["cpu1"] - marks["cpu0"]) / wall
    res.server_cpu_pct = 100 * (marks["srv1"] - marks["srv0"]) / wall
    return res


async def provision(port: int, space: str, signer: Ed25519Signer) -> None:
    """Create the space the workload writes into; any non-2xx aborts this server's run."""
    conn = Conn(port)
    path = f"/space/{space}"
    body = json.dumps({"id": f"urn:uuid:{space}", "controller": signer.controller}).encode()
    headers = signed(signer, "PUT", path)
    headers["Content-Type"] = "application/json"
    try:
        status, data = await asyncio.wait_for(conn.request("PUT", path, headers, body), IO_TIMEOUT_S)
    finally:
        await conn.close()
    if not 200 <= status < 300:
        raise RuntimeError(f"provisioning {path} failed: {status} {data[:300]!r}")


# ---------------------------------------------------------------------------
# Server processes
# ---------------------------------------------------------------------------


def free_port() -> int:
    """Ask the kernel for an unused loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_command(name: str, port: int, python: str | None = None) -> tuple[list[str], dict[str, str]]:
    """Command line and environment for each server: the reference in memory, ours on ``OURS_BACKEND``.

    ``python``: the interpreter that runs the reference (default this one), so that a checkout of
    the existing server in a venv of its own can be measured beside the release installed here.
    """
    env = dict(os.environ)
    if name == "reference":
        cmd = [
            python or sys.executable,
            "-m",
            "uvicorn",
            "was_server:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
    elif name == "ours":
        twistd = str(Path(sys.executable).parent / "twistd")
        cmd = [twistd, "-n", "--pidfile=", "was", "--listen", f"tcp:{port}:interface=127.0.0.1"]
        env["WAS_STORAGE_BACKEND"] = OURS_BACKEND
        if OURS_BACKEND == "filesystem" and port:
            root = tempfile.mkdtemp(prefix="was-bench-")
            atexit.register(shutil.rmtree, root, True)
            env["WAS_STORAGE_ROOT_DIR"] = root
        env["WAS_ACCESS_LOG"] = "off"
        # Let twistd find the plugin even when the project is not pip-installed.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    else:
        raise ValueError(f"unknown server {name!r} (expected 'ours' or 'reference')")
    return cmd, env


def wait_until_up(name: str, port: int, proc: subprocess.Popen[bytes]) -> None:
    """Poll until the server answers any HTTP response (bounded by START_TIMEOUT_S)."""
    path = "/health" if name == "ours" else "/spaces/"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode} before answering")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", path)
            status = conn.getresponse().status
            if name != "ours" or status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer GET {path} within {START_TIMEOUT_S:.0f}s")


def peak_rss_kib(pid: int) -> int:
    """VmHWM (peak resident set) of a live process in KiB, 0 if unavailable."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate, wait, then kill: the server must never outlive the benchmark."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(STOP_TIMEOUT_S)


def tail(log: IO[bytes], n: int = 20) -> str:
    """Last lines of a server's captured output, for error reports."""
    log.flush()
    log.seek(0)
    return "\n".join(log.read().decode(errors="replace").splitlines()[-n:])


def bench_server(name: str, duration: float) -> dict[str, Any]:
    """Start one server, run every concurrency against it, and always stop it."""
    port = free_port()
    cmd, env = server_command(name, port)
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            cmd, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        try:
            try:
                wait_until_up(name, port, proc)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}\n--- {name} output ---\n{tail(log)}") from None
            signer = Ed25519Signer()
            space = str(uuid.uuid4())
            asyncio.run(provision(port, space, signer))
            results = []
            for c in CONCURRENCIES:
                print(
                    f"  {name}: concurrency {c} ({WARMUP_S:.0f}s warm-up + {duration:g}s) ...",
                    file=sys.stderr,
                    flush=True,
                )
                results.append(asyncio.run(run_workload(name, port, proc.pid, space, signer, c, duration)))
            rss = peak_rss_kib(proc.pid)
            if proc.poll() is not None:
                raise RuntimeError(f"{name} died during the run\n{tail(log)}")
        finally:
            stop(proc)
    return {
        "server": name,
        "port": port,
        "command": cmd,
        "peak_rss_kib": rss,
        "results": [asdict(r) for r in results],
    }


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def table(rows: list[list[str]]) -> str:
    """An RST "simple table": readable on a terminal and pasteable into docs as-is."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    rule = "  ".join("=" * w for w in widths)
    fmt = [
        (
            "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        ).rstrip()
        for r in rows
    ]
    return "\n".join([rule, fmt[0], rule, *fmt[1:], rule])


def report(runs: list[dict[str, Any]], duration: float) -> str:
    """Per-cell figures, ratios ours/reference where both ran, and memory."""
    title = (
        f"WAS benchmark: 1 KiB signed PUT+GET pairs, {duration:g}s per cell after {WARMUP_S:g}s warm-up, "
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, ours on {OURS_BACKEND} storage"
    )
    out = [title, ""]
    rows = [["server", "conc", "req/s", "p50 ms", "p99 ms", "errors", "server CPU%", "loadgen CPU%"]]
    for run in runs:
        for r in run["results"]:
            rows.append(
                [
                    run["server"],
                    str(r["concurrency"]),
                    f"{r['rps']:.0f}",
                    f"{r['p50_ms']:.2f}",
                    f"{r['p99_ms']:.2f}",
                    str(r["errors"]),
                    f"{r['server_cpu_pct']:.0f}",
                    f"{r['loadgen_cpu_pct']:.0f}",
                ]
            )
    out.append(table(rows))
    by_name = {run["server"]: run for run in runs}
    if "ours" in by_name and "reference" in by_name:
        ours, ref = by_name["ours"], by_name["reference"]
        rows = [["conc", "req/s ours/ref", "p50 ours/ref", "p99 ours/ref"]]
        for o, f in zip(ours["results"], ref["results"], strict=True):
            rows.append(
                [
                    str(o["concurrency"]),
                    ratio(o["rps"], f["rps"]),
                    ratio(o["p50_ms"], f["p50_ms"]),
                    ratio(o["p99_ms"], f["p99_ms"]),
                ]
            )
        out += [
            "",
            "Ratios (req/s: higher is better for ours; latency: lower is better for ours)",
            "",
            table(rows),
        ]
    out += [
        "",
        table(
            [
                ["server", "peak RSS MiB"],
                *[[run["server"], f"{run['peak_rss_kib'] / 1024:.1f}"] for run in runs],
            ]
        ),
    ]
    busy = [r for run in runs for r in run["results"] if r["loadgen_cpu_pct"] > LOADGEN_BUSY_PCT]
    if busy:
        warning = (
            f"WARNING: load generator above {LOADGEN_BUSY_PCT}% of a core in {len(busy)} cell(s); "
            "those req/s may be limited by the client, not the server."
        )
        out += ["", warning]
    for run in runs:
        for r in run["results"]:
            for sample in r["error_samples"]:
                out.append(f"error sample {run['server']} c={r['concurrency']}: {sample}")
    return "\n".join(out)


def ratio(a: float, b: float) -> str:
    """a/b formatted, or n/a when b is zero."""
    return f"{a / b:.2f}x" if b else "n/a"


def _interrupt(signum: int, frame: object) -> None:
    """Turn SIGTERM into KeyboardInterrupt: unwinding runs the ``finally`` that stops servers."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the requested servers one after another so they never compete for the 2 cores."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per (server, concurrency)")
    ap.add_argument("--servers", default="ours,reference", help="comma list of: ours, reference")
    ap.add_argument("--json", type=Path, help="write raw figures here")
    ap.add_argument(
        "--ours-backend",
        choices=("memory", "filesystem"),
        default="memory",
        help="ours' storage (filesystem: a fresh temp directory; WAS_FSYNC etc. pass through)",
    )
    args = ap.parse_args(argv)
    global OURS_BACKEND
    OURS_BACKEND = args.ours_backend
    signal.signal(signal.SIGTERM, _interrupt)  # so `finally` still stops the servers
    if not 0 < args.duration <= 600:
        ap.error("--duration must be in (0, 600]")
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    for n in names:
        server_command(n, 0)  # validate names before starting anything
    runs: list[dict[str, Any]] = []
    failures: dict[str, str] = {}
    for name in names:
        print(f"benchmarking {name} ...", file=sys.stderr, flush=True)
        try:
            runs.append(bench_server(name, args.duration))
        except RuntimeError as exc:
            failures[name] = str(exc)
            print(f"{name} FAILED: {exc}", file=sys.stderr, flush=True)
    if runs:
        print(report(runs, args.duration))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "duration_s": args.duration,
                    "warmup_s": WARMUP_S,
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "runs": runs,
                    "failures": failures,
                },
                indent=2,
            )
            + "\n"
        )
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        sys.exit(130)
