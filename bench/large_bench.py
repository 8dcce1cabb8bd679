"""Large objects on the s3 backend: was-twisted vs. boto3 straight to the same S3 server, in one run.

One command::

    python bench/large_bench.py [--sizes 256,1024] [--repeat 1] [--json out.json]

It starts moto's S3 server (``tests/integration/s3servers.py``) and ``twistd -n was`` with
``WAS_STORAGE_BACKEND=s3`` on it, then for each size (MiB) times, side by side:

* PUT: a signed ``PUT`` with ``Content-Length`` through twistd, vs. boto3 ``upload_fileobj`` of
  the same bytes to the same server (boto3's defaults: 8 MiB parts, 10 threads);
* GET: a signed ``GET`` through twistd read to its end, vs. ``get_object`` read to its end;
  and the time to the first body byte of each.

The bytes come from the same generator for both (a random MiB repeated, never held whole), and
are read in 1 MiB blocks on the client side for both.  It also reports twistd's peak RSS growth
over its idle RSS (``VmHWM``), whether twistd opened any regular file while the bodies went
through (its ``/proc/PID/fd``, sampled every 20 ms; ``TMPDIR`` points at an empty directory that
must stay empty), and that no multipart upload was left on the bucket.  See ``bench/README.rst``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(1, str(REPO_ROOT))
from run import peak_rss_kib, proc_cpu_s, ratio, signed, table  # noqa: E402
from wallet_attached_storage_client import Ed25519Signer  # noqa: E402

from tests.integration.processes import WasProcess  # noqa: E402
from tests.integration.s3servers import S3Server, start_moto  # noqa: E402

MIB = 1 << 20
BLOCK = os.urandom(MIB)
PREFIX = "large/"


class Pattern(io.RawIOBase):
    """``size`` bytes of ``BLOCK`` repeated, produced as they are read (never held whole)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), self.size - self.pos)
        done = 0
        while done < n:
            offset = (self.pos + done) % MIB
            k = min(n - done, MIB - offset)
            view[done : done + k] = BLOCK[offset : offset + k]
            done += k
        self.pos += n
        return n


def vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class FileWatch:
    """Samples the regular files a process has open (temporary files show up here)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        fd_dir = Path(f"/proc/{self.pid}/fd")
        while not self._stop.wait(0.02):
            try:
                for fd in fd_dir.iterdir():
                    try:
                        target = os.readlink(fd)
                    except OSError:
                        continue
                    if target.startswith("/") and not target.startswith(("/dev/", "/proc/")):
                        self.seen.add(target)
            except OSError:
                return

    def __enter__(self) -> FileWatch:
        self.baseline = {os.readlink(fd) for fd in Path(f"/proc/{self.pid}/fd").iterdir()}
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def opened(self) -> list[str]:
        return sorted(self.seen - self.baseline)


def read_all(stream: Any) -> tuple[float, int]:
    """(seconds to the first byte, bytes read): the stream read in 1 MiB blocks."""
    started = time.perf_counter()
    first = stream.read(1)
    ttfb = time.perf_counter() - started
    total = len(first)
    while chunk := stream.read(MIB):
        total += len(chunk)
    return ttfb, total


class Ours:
    """Requests to twistd, one keep-alive connection."""

    def __init__(self, url: str, signer: Ed25519Signer, space: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=600, blocksize=MIB)
        self.signer = signer
        self.space = space

    def put(self, key: str, size: int) -> float:
        path = f"/space/{self.space}/{key}"
        headers = {"content-length": str(size), "content-type": "application/octet-stream"}
        headers.update(signed(self.signer, "PUT", path))
        started = time.perf_counter()
        self.conn.request("PUT", path, body=Pattern(size), headers=headers)
        r = self.conn.getresponse()
        r.read()
        if r.status != 204:
            raise RuntimeError(f"PUT {path}: {r.status}")
        return time.perf_counter() - started

    def get(self, key: str, size: int) -> tuple[float, float]:
        path = f"/space/{self.space}/{key}"
        started = time.perf_counter()
        self.conn.request("GET", path, headers=signed(self.signer, "GET", path))
        r = self.conn.getresponse()
        first_started = time.perf_counter()
        ttfb, total = read_all(r)
        if r.status != 200 or total != size:
            raise RuntimeError(f"GET {path}: {r.status}, {total} bytes")
        return time.perf_counter() - started, first_started - started + ttfb


class Direct:
    """boto3 straight to the S3 server."""

    def __init__(self, s3: S3Server, bucket: str) -> None:
        self.client = s3.client()
        self.bucket = bucket

    def put(self, key: str, size: int) -> float:
        started = time.perf_counter()
        self.client.upload_fileobj(Pattern(size), self.bucket, f"direct/{key}")
        return time.perf_counter() - started

    def get(self, key: str, size: int) -> tuple[float, float]:
        started = time.perf_counter()
        obj = self.client.get_object(Bucket=self.bucket, Key=f"direct/{key}")
        first_started = time.perf_counter()
        ttfb, total = read_all(obj["Body"])
        if total != size:
            raise RuntimeError(f"get_object: {total} bytes")
        return time.perf_counter() - started, first_started - started + ttfb


@contextlib.contextmanager
def cpu_of(cells: dict[str, float], name: str, *pids: int) -> Iterator[None]:
    """CPU seconds meanwhile: twistd's (``{name}_cpu``, first of two pids), the S3 server's (``_s3_cpu``)."""
    names = [f"{name}_cpu", f"{name}_s3_cpu"][-len(pids) :]
    before = [proc_cpu_s(p) for p in pids]
    yield
    for label, p, b in zip(names, pids, before, strict=True):
        cells[label] = proc_cpu_s(p) - b


def provision(url: str, signer: Ed25519Signer) -> str:
    sid = str(uuid.uuid4())
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    body = json.dumps({"id": f"urn:uuid:{sid}", "controller": signer.controller})
    conn.request("PUT", f"/space/{sid}", body=body, headers=signed(signer, "PUT", f"/space/{sid}"))
    r = conn.getresponse()
    r.read()
    if r.status != 201:
        raise RuntimeError(f"provisioning: {r.status}")
    return sid


def measure(sizes: list[int], repeat: int, workdir: Path) -> dict[str, Any]:
    s3 = start_moto(workdir / "moto")
    try:
        bucket = s3.create_bucket()
        tmpdir = workdir / "twistd-tmp"
        tmpdir.mkdir()
        env = {
            **s3.env(),
            "WAS_STORAGE_BACKEND": "s3",
            "WAS_STORAGE_BUCKET": bucket,
            "WAS_STORAGE_PREFIX": PREFIX,
            "WAS_ACCESS_LOG": "off",
            "WAS_MAX_UPLOAD_BYTES": str(max(sizes) * MIB + 1),
            "TMPDIR": str(tmpdir),
        }
        with WasProcess(env, workdir / "twistd.log") as was:
            assert was.proc is not None
            pid = was.proc.pid
            s3_pid = s3._procs[0].pid
            signer = Ed25519Signer()
            ours = Ours(was.url, signer, provision(was.url, signer))
            direct = Direct(s3, bucket)
            ours.put("warm", 1024)  # imports and connections: not part of the baseline growth
            ours.get("warm", 1024)
            idle = vm_kib(pid, "VmRSS")
            rows = []
            with FileWatch(pid) as watch:
                for size_mib in sizes:
                    size = size_mib * MIB
                    best: dict[str, float] = {}
                    for _ in range(repeat):
                        key = f"obj-{size_mib}"
                        cells: dict[str, float] = {}
                        with cpu_of(cells, "direct_put", s3_pid):
                            cells["direct_put"] = direct.put(key, size)
                        with cpu_of(cells, "ours_put", pid, s3_pid):
                            cells["ours_put"] = ours.put(key, size)
                        with cpu_of(cells, "direct_get", s3_pid):
                            cells["direct_get"], cells["direct_ttfb"] = direct.get(key, size)
                        with cpu_of(cells, "ours_get", pid, s3_pid):
                            cells["ours_get"], cells["ours_ttfb"] = ours.get(key, size)
                        for name, value in cells.items():
                            best[name] = min(best.get(name, value), value)
                    best["size_mib"] = size_mib
                    best["peak_rss_growth_mib"] = (peak_rss_kib(pid) - idle) / 1024
                    rows.append(best)
            uploads = s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
            return {
                "rows": rows,
                "idle_rss_mib": idle / 1024,
                "files_opened": watch.opened,
                "tmpdir_entries": sorted(p.name for p in tmpdir.iterdir()),
                "multipart_uploads_left": len(uploads),
                "repeat": repeat,
            }
    finally:
        s3.stop()


def report(result: dict[str, Any]) -> str:
    header = [
        "size",
        "PUT ours s",
        "PUT direct s",
        "PUT ratio",
        "GET ours s",
        "GET direct s",
        "GET ratio",
        "1st byte ours ms",
        "1st byte direct ms",
        "1st byte ratio",
        "RSS growth MiB",
        "twistd CPU s PUT/GET",
        "S3 CPU s PUT ours/direct",
        "S3 CPU s GET ours/direct",
    ]
    rows = [header]
    for r in result["rows"]:
        rows.append(
            [
                f"{r['size_mib']} MiB",
                f"{r['ours_put']:.2f}",
                f"{r['direct_put']:.2f}",
                ratio(r["ours_put"], r["direct_put"]),
                f"{r['ours_get']:.2f}",
                f"{r['direct_get']:.2f}",
                ratio(r["ours_get"], r["direct_get"]),
                f"{r['ours_ttfb'] * 1000:.1f}",
                f"{r['direct_ttfb'] * 1000:.1f}",
                ratio(r["ours_ttfb"], r["direct_ttfb"]),
                f"+{r['peak_rss_growth_mib']:.0f}",
                f"{r['ours_put_cpu']:.2f} / {r['ours_get_cpu']:.2f}",
                f"{r['ours_put_s3_cpu']:.2f} / {r['direct_put_s3_cpu']:.2f}",
                f"{r['ours_get_s3_cpu']:.2f} / {r['direct_get_s3_cpu']:.2f}",
            ]
        )
    lines = [
        table(rows),
        "",
        f"twistd idle RSS {result['idle_rss_mib']:.0f} MiB; best of {result['repeat']} per cell.",
        f"Files twistd opened during the run: {result['files_opened'] or 'none'}.",
        f"Entries in twistd's TMPDIR: {result['tmpdir_entries'] or 'none'}.",
        f"Multipart uploads left on the bucket: {result['multipart_uploads_left']}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,1024", help="object sizes in MiB, comma-separated")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size; the best is reported")
    parser.add_argument("--json", help="write the raw figures here")
    parser.add_argument("--keep-logs", metavar="DIR", help="copy twistd's and the S3 server's logs here")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    with tempfile.TemporaryDirectory(prefix="was-large-bench-") as tmp:
        try:
            result = measure(sizes, args.repeat, Path(tmp))
        finally:
            if args.keep_logs:
                keep = Path(args.keep_logs)
                keep.mkdir(parents=True, exist_ok=True)
                for log in (Path(tmp) / "twistd.log", Path(tmp) / "moto" / "moto.log"):
                    if log.exists():
                        shutil.copy(log, keep / log.name)
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
