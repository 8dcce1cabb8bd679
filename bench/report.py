"""The benchmark report: every comparison with the existing server in one run, as Markdown and charts.

One command::

    python bench/report.py                    # ~8 minutes: 3 rounds of 10 s cells, results in bench/results/
    python bench/report.py --quick --out /tmp/r   # smoke run, ~1 minute
    python bench/report.py --s3 '' --large-sizes '' --existing-head-python ~/venv-head/bin/python

It measures, side by side, ``twistd -n was`` ("ours") and the existing server
(``wallet-attached-storage-server`` 0.1.0 from PyPI under uvicorn, which has only a memory backend;
with ``--existing-head-python`` also its git head, which has a filesystem backend):

* memory and filesystem: ours (memory; filesystem in a fresh directory, durable as shipped) and
  the existing server's memory backend (and, when given, its git head on its filesystem backend
  in a fresh directory), all started once and measured in alternating rounds (the order rotates
  every round) at concurrency 1 and 16;
* s3 on moto and on Ceph RGW, each behind ``bench/latency_proxy.py`` adding 20 ms to every S3
  response: ours, against ``bench/s3_bench.py``'s constant for the existing server;
* large objects: ``bench/large_bench.py`` (ours on s3 against boto3 straight to moto).

The workload, CPU sampling and process handling are ``bench/run.py``'s and ``bench/s3_bench.py``'s,
imported; the writing is ``bench/report_write.py``'s.  See ``bench/README.rst``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from large_bench import measure as measure_large
from report_env import existing_head, load_average, machine, versions
from report_write import update_readme, write_report
from run import (
    REPO_ROOT,
    WARMUP_S,
    _interrupt,
    free_port,
    peak_rss_kib,
    proc_cpu_s,
    provision,
    run_workload,
    server_command,
    stop,
    wait_until_up,
)
from s3_bench import (
    BUCKET,
    EXISTING_RPS,
    S3_START_TIMEOUT_S,
    S3_STARTERS,
    Proc,
    ceph_available,
    s3_pids,
    s3_version,
    start_ours,
    start_proxy,
    system_busy_s,
)
from wallet_attached_storage_client import Ed25519Signer

CONCURRENCIES = (1, 16)
DEFAULT_OUT = (REPO_ROOT / "bench" / "results").resolve()
#: The existing server's CPU per small request on S3, as issue 10 gives it (not measured here).
EXISTING_S3_CPU_MS = 6.4


# ---------------------------------------------------------------------------
# One cell
# ---------------------------------------------------------------------------


def cell(port: int, pid: int, space: str, signer: Ed25519Signer, conc: int, duration: float,
         started_pids: list[int]) -> dict[str, Any]:  # fmt: skip
    """run.py's workload once; ``other_cpu_pct``: the machine's CPU not used by ``started_pids`` or us."""
    busy0, mine0, bench0, t0 = (
        system_busy_s(),
        sum(map(proc_cpu_s, started_pids)),
        time.process_time(),
        time.time(),
    )
    res = asyncio.run(run_workload("x", port, pid, space, signer, conc, duration))
    wall = time.time() - t0
    mine = sum(map(proc_cpu_s, started_pids)) - mine0 + time.process_time() - bench0
    return {
        "rps": res.rps,
        "p50_ms": res.p50_ms,
        "p99_ms": res.p99_ms,
        "cpu_ms_per_req": 10 * res.server_cpu_pct / res.rps if res.rps else 0.0,
        "errors": res.errors,
        "error_samples": res.error_samples,
        "other_cpu_pct": max(0.0, 100 * (system_busy_s() - busy0 - mine) / wall),
    }


def empty_series() -> dict[str, Any]:
    return {"rps": [], "p50_ms": [], "p99_ms": [], "cpu_ms_per_req": [], "other_cpu_pct": [], "errors": 0,
            "error_samples": [], "peak_rss_mib": 0.0}  # fmt: skip


def add(series: dict[str, Any], figures: dict[str, Any]) -> None:
    for key in ("rps", "p50_ms", "p99_ms", "cpu_ms_per_req", "other_cpu_pct"):
        series[key].append(figures[key])
    series["errors"] += figures["errors"]
    series["error_samples"] = (series["error_samples"] + figures["error_samples"])[:5]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Memory and filesystem: three local servers, alternating rounds
# ---------------------------------------------------------------------------


class Local:
    """One server on a free port with one provisioned space."""

    def __init__(
        self, name: str, kind: str, env: dict[str, str], workdir: Path, python: str | None = None
    ) -> None:
        self.name = name
        self.port = free_port()
        cmd, base_env = server_command(kind, self.port, python)
        self.log_path = workdir / f"{name}.log"
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd, env={**base_env, **env}, cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        try:
            wait_until_up(kind, self.port, self.proc)
            self.signer = Ed25519Signer()
            self.space = str(uuid.uuid4())
            asyncio.run(provision(self.port, self.space, self.signer))
        except RuntimeError as exc:
            stop(self.proc)
            raise RuntimeError(
                f"{name}: {exc}\n{self.log_path.read_text(errors='replace')[-2000:]}"
            ) from None
        except BaseException:
            stop(self.proc)
            raise
        self.series = {c: empty_series() for c in CONCURRENCIES}


def bench_local(args: argparse.Namespace, workdir: Path, failures: dict[str, str]) -> list[dict[str, Any]]:
    """Ours on memory and on filesystem, the existing server (memory) and, when given, its git head
    (filesystem), in alternating rounds.

    The filesystem rows' baseline is the head on its filesystem backend when it runs, else the
    release's memory backend as an upper bound; the memory rows' is the release's memory backend.
    """
    (workdir / "fs-data").mkdir(parents=True)
    servers: list[Local] = []
    try:
        servers.append(Local("ours-memory", "ours", {"WAS_STORAGE_BACKEND": "memory"}, workdir))
        servers.append(
            Local(
                "ours-filesystem",
                "ours",
                {"WAS_STORAGE_BACKEND": "filesystem", "WAS_STORAGE_ROOT_DIR": str(workdir / "fs-data")},
                workdir,
            )
        )
        try:
            servers.append(Local("existing", "reference", {}, workdir))
        except (RuntimeError, OSError) as exc:  # ours is still measured; the report says why not it
            failures["the existing server"] = str(exc)
        if args.existing_head_python:
            head_data = workdir / "head-fs-data"
            head_data.mkdir()
            head_env = {"WAS_STORAGE_BACKEND": "filesystem", "WAS_STORAGE_ROOT_DIR": str(head_data)}
            try:
                servers.append(
                    Local("existing-head", "reference", head_env, workdir, python=args.existing_head_python)
                )
            except (RuntimeError, OSError) as exc:  # as above; its rows fall back to the upper bound
                failures["the existing server's git head"] = str(exc)
        pids = [s.proc.pid for s in servers]
        for rnd in range(args.rounds):
            order = servers[rnd % len(servers) :] + servers[: rnd % len(servers)]
            for conc in CONCURRENCIES:
                for s in order:
                    log(f"round {rnd + 1}/{args.rounds}: {s.name} c{conc} ...")
                    add(
                        s.series[conc], cell(s.port, s.proc.pid, s.space, s.signer, conc, args.duration, pids)
                    )
        for s in servers:
            if s.proc.poll() is not None:
                raise RuntimeError(f"{s.name} died during the run")
            for series in s.series.values():
                series["peak_rss_mib"] = peak_rss_kib(s.proc.pid) / 1024
    finally:
        for s in servers:
            stop(s.proc)
    by_name = {s.name: s for s in servers}
    release, head = by_name.get("existing"), by_name.get("existing-head")
    missing: tuple[str, Local | None] = ("missing", None)
    baselines = {"memory": ("measured", release) if release else missing}
    if head:
        baselines["filesystem"] = ("head-filesystem", head)
    else:
        baselines["filesystem"] = ("memory-upper-bound", release) if release else missing
    rows = []
    for backend, (baseline, existing) in baselines.items():
        for conc in CONCURRENCIES:
            rows.append(
                {
                    "backend": backend,
                    "concurrency": conc,
                    "baseline": baseline,
                    "ours": by_name[f"ours-{backend}"].series[conc],
                    "existing": existing.series[conc] if existing else None,
                }
            )
    return rows


# ---------------------------------------------------------------------------
# S3: ours behind the latency proxy, against the existing server's constant
# ---------------------------------------------------------------------------


def bench_s3(kind: str, args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    """One S3 server, the proxy, one ``twistd``; rounds of c1 and c16; everything stopped after."""
    procs: list[Proc] = []
    s3 = None
    workdir.mkdir(parents=True)
    try:
        log(f"[{kind}] starting the S3 server, the latency proxy and ours ...")
        s3 = S3_STARTERS[kind](workdir / "s3", timeout=S3_START_TIMEOUT_S)
        s3.create_bucket(BUCKET)
        proxy = start_proxy(s3, args.latency_ms, workdir)
        procs.append(proxy)
        (ours,) = start_ours(1, proxy.port, s3, workdir, procs)
        signer, space = Ed25519Signer(), str(uuid.uuid4())
        asyncio.run(provision(ours.port, space, signer))
        pids = [ours.popen.pid, proxy.popen.pid, *s3_pids(s3)]
        series = {c: empty_series() for c in CONCURRENCIES}
        for rnd in range(args.rounds):
            for conc in CONCURRENCIES:
                log(f"[{kind}] round {rnd + 1}/{args.rounds}: ours c{conc} ...")
                add(series[conc], cell(ours.port, ours.popen.pid, space, signer, conc, args.duration, pids))
        if ours.popen.poll() is not None:
            raise RuntimeError(f"ours died during the run:\n{ours.tail()}")
        for s in series.values():
            s["peak_rss_mib"] = peak_rss_kib(ours.popen.pid) / 1024
    finally:
        for proc in reversed(procs):
            stop(proc.popen)
        if s3 is not None:
            s3.stop()
    existing = {"rps": [EXISTING_RPS], "cpu_ms_per_req": [EXISTING_S3_CPU_MS], "errors": 0}
    return [
        {
            "backend": f"s3 {kind}",
            "concurrency": c,
            "baseline": "constant",
            "ours": series[c],
            "existing": existing,
        }
        for c in CONCURRENCIES
    ]


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds; figures are medians")
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per cell")
    ap.add_argument("--latency-ms", type=float, default=20.0, help="added to every S3 response")
    ap.add_argument(
        "--s3",
        default=None,
        help="comma list of moto, ceph (default: both if Ceph is installed; empty: none, so with "
        "--large-sizes '' only the memory and filesystem section runs)",
    )
    ap.add_argument(
        "--large-sizes", help="large-object sizes in MiB, comma list (default 64,256; empty: none)"
    )
    ap.add_argument(
        "--existing-head-python",
        metavar="PYTHON",
        help="the interpreter of a venv holding the existing server's git head (pip install -e CHECKOUT): "
        "it runs on its filesystem backend and becomes the filesystem rows' baseline",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 round of 2 s cells (overrides --rounds and --duration), 16 MiB objects",
    )
    ap.add_argument("--note", default="", help="a sentence printed at the top of the report")
    ap.add_argument(
        "--from-json", type=Path, help="measure nothing: rewrite the report from this results.json"
    )
    ap.add_argument(
        "--no-readme",
        action="store_true",
        help="leave README.rst alone (else updated when --out is bench/results)",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.duration = 1, 2.0
    if args.large_sizes is None:
        args.large_sizes = "16" if args.quick else "64,256"
    if args.s3 is None:
        args.s3 = "moto,ceph" if ceph_available() else "moto"
    args.s3_kinds = [k.strip() for k in args.s3.split(",") if k.strip()]
    if not set(args.s3_kinds) <= set(S3_STARTERS):
        ap.error("--s3 takes a comma list of: moto, ceph")
    if "ceph" in args.s3_kinds and not ceph_available():
        ap.error("--s3 ceph needs the Ceph binaries on PATH (.ci/install-s3-servers)")
    if not (1 <= args.rounds <= 10 and 0 < args.duration <= 120 and 0 <= args.latency_ms <= 1000):
        ap.error("--rounds must be in 1..10, --duration in (0, 120], --latency-ms in [0, 1000]")
    try:
        args.sizes = [int(s) for s in args.large_sizes.split(",") if s.strip()]
    except ValueError:
        ap.error("--large-sizes must be a comma list of MiB, such as 64,256")
    args.existing_head = None
    if args.existing_head_python and not args.from_json:
        # Absolute (the servers run in the work directory) but not resolved: a venv's python is a symlink.
        args.existing_head_python = os.path.abspath(os.path.expanduser(args.existing_head_python))
        try:
            args.existing_head = existing_head(args.existing_head_python)
        except ValueError as exc:
            ap.error(f"--existing-head-python: {exc}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        ap.error("matplotlib is missing: pip install -r bench/requirements.txt")
    return args


def publish(result: dict[str, Any], args: argparse.Namespace) -> None:
    """The files in ``--out``; README.rst's table too when they are the ones it shows."""
    for path in write_report(result, args.out):
        log(f"wrote {path}")
    if not args.no_readme and args.out.resolve() == DEFAULT_OUT:
        if update_readme(REPO_ROOT / "README.rst", result):
            log("updated README.rst's Benchmark report table")
        else:
            log("README.rst has no report markers: its table was not updated")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.from_json:
        publish(json.loads(args.from_json.read_text()), args)
        return 0
    signal.signal(signal.SIGTERM, _interrupt)  # so every `finally` stops its processes
    command = "python bench/report.py" + "".join(
        " " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    result: dict[str, Any] = {
        "meta": {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": command,
            "machine": machine(),
            "versions": versions(args.s3_kinds, args.existing_head),
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": WARMUP_S,
            "latency_ms": args.latency_ms,
            "load_before": load_average(),
            "note": args.note,
        },
        "small": [],
        "large": None,
        "failures": {},
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="was-report-") as tmp:
        work = Path(tmp)
        sections: list[tuple[str, Any]] = [
            ("memory and filesystem", lambda: bench_local(args, work / "local", result["failures"]))
        ]
        sections += [(f"s3 {k}", lambda k=k: bench_s3(k, args, work / k)) for k in args.s3_kinds]
        for what, run_section in sections:
            try:
                result["small"] += run_section()
            except Exception as exc:  # any one section's failure (boto3's too) must not lose the others
                log(f"{what} FAILED: {exc!r}")
                result["failures"][what] = str(exc) or repr(exc)
        if args.sizes:
            log(f"large objects {args.sizes} MiB, best of {args.rounds} ...")
            try:
                (work / "large").mkdir()
                large = measure_large(args.sizes, args.rounds, work / "large")
                result["large"] = {"s3": s3_version("moto"), **large}
            except Exception as exc:  # as above
                log(f"large objects FAILED: {exc!r}")
                result["failures"]["large objects"] = str(exc) or repr(exc)
    result["meta"]["load_after"] = load_average()
    result["meta"]["run_minutes"] = (time.monotonic() - started) / 60
    publish(result, args)
    print((args.out / "report.md").read_text())
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; every process stopped", file=sys.stderr)
        sys.exit(130)
