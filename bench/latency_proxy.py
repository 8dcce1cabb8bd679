"""A reverse proxy for S3 benchmarks: delays every response and counts S3 operations.

Sits between a server under test and an S3 endpoint (moto, MinIO, Ceph...) on 127.0.0.1::

    python bench/latency_proxy.py --upstream http://127.0.0.1:5000 --latency-ms 20 [--port 0]

It prints ``latency_proxy listening on 127.0.0.1:PORT`` once it accepts connections.  Each
client connection gets its own keep-alive connection upstream, so as many requests are in
flight as the client opens connections (boto3: up to ``max_pool_connections``).  Requests and
responses are forwarded byte for byte (request line, headers including ``Host``, body,
chunked framing), except that ``Expect: 100-continue`` is answered by the proxy itself and
not forwarded.  Each response is held for ``--latency-ms`` before it is written back,
simulating the round trip to a distant S3 region.

Paths starting with ``/__`` are answered locally, never forwarded, and never delayed:

* ``GET /__counts``: JSON ``{"counts": {"GetObject": 3, ...}, "total": 3, "latency_ms": 20,
  "in_flight": 0, "max_in_flight": 16, "forwarded": ..., "upstream_errors": 0}``
* ``POST /__reset``: the same JSON, then every counter is zeroed (``max_in_flight`` too).
* ``POST /__latency?ms=N``: change the delay (0 measures the proxy's own overhead).

Operations are classified from method, path-style path (``/bucket/key``), query and a few
headers, following the S3 API reference's request syntax.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024 * 1024  # refuse anything larger rather than buffer it
MAX_REQUESTS_PER_CONNECTION = 1_000_000
MAX_CHUNKS = 1_000_000
MAX_INTERIM_RESPONSES = 10
IDLE_TIMEOUT_S = 120.0
UPSTREAM_TIMEOUT_S = 60.0
SHUTDOWN_TIMEOUT_S = 2.0
CONTROL_PREFIX = "/__"


# ---------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------

_BUCKET_GET = {
    "uploads": "ListMultipartUploads",
    "versions": "ListObjectVersions",
    "location": "GetBucketLocation",
    "versioning": "GetBucketVersioning",
    "policy": "GetBucketPolicy",
    "acl": "GetBucketAcl",
    "cors": "GetBucketCors",
    "lifecycle": "GetBucketLifecycleConfiguration",
    "tagging": "GetBucketTagging",
    "encryption": "GetBucketEncryption",
}


def classify(method: str, target: str, headers: Mapping[str, str]) -> str:
    """The S3 operation a path-style request is, e.g. ``("GET", "/b/k", {})`` -> ``GetObject``.

    ``headers`` must have lower-case names.  Unknown shapes come back as ``"<METHOD> bucket"``
    or ``"<METHOD> object"`` so that nothing is silently dropped from the counts.
    """
    split = urlsplit(target)
    query = parse_qs(split.query, keep_blank_values=True)
    bucket, _, key = split.path.lstrip("/").partition("/")
    method = method.upper()
    if not bucket:
        return "ListBuckets" if method == "GET" else f"{method} service"
    if not key:
        if method == "GET":
            if query.get("list-type") == ["2"]:
                return "ListObjectsV2"
            for name, op in _BUCKET_GET.items():
                if name in query:
                    return op
            return "ListObjects"
        if method == "HEAD":
            return "HeadBucket"
        if method == "POST" and "delete" in query:
            return "DeleteObjects"
        if method == "PUT":
            return "CreateBucket" if not query else "PutBucket" + "".join(q.capitalize() for q in query)
        if method == "DELETE":
            return "DeleteBucket" if not query else "DeleteBucket" + "".join(q.capitalize() for q in query)
        return f"{method} bucket"
    copy = "x-amz-copy-source" in headers
    if method == "GET":
        if "uploadId" in query:
            return "ListParts"
        if "tagging" in query:
            return "GetObjectTagging"
        if "acl" in query:
            return "GetObjectAcl"
        if "attributes" in query:
            return "GetObjectAttributes"
        return "GetObject"
    if method == "HEAD":
        return "HeadObject"
    if method == "PUT":
        if "partNumber" in query and "uploadId" in query:
            return "UploadPartCopy" if copy else "UploadPart"
        if "tagging" in query:
            return "PutObjectTagging"
        if "acl" in query:
            return "PutObjectAcl"
        return "CopyObject" if copy else "PutObject"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
        if "restore" in query:
            return "RestoreObject"
        return "POST object"
    if method == "DELETE":
        if "uploadId" in query:
            return "AbortMultipartUpload"
        if "tagging" in query:
            return "DeleteObjectTagging"
        return "DeleteObject"
    return f"{method} object"


# ---------------------------------------------------------------------------
# HTTP/1.1 framing
# ---------------------------------------------------------------------------


class BadMessage(Exception):
    """The peer sent something this proxy cannot frame."""


def parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    """First line and header list (names as sent) of a request or response head."""
    first, *lines = head[:-4].decode("latin-1").split("\r\n")
    headers: list[tuple[str, str]] = []
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon:
            raise BadMessage(f"malformed header line {line!r}")
        headers.append((name.strip(), value.strip()))
    return first, headers


def header_map(headers: list[tuple[str, str]]) -> dict[str, str]:
    """Lower-case names to values (the last one wins)."""
    return {name.lower(): value for name, value in headers}


async def read_chunked_raw(reader: asyncio.StreamReader) -> bytes:
    """A chunked body with its framing intact, so it can be forwarded as sent."""
    parts: list[bytes] = []
    total = 0
    for _ in range(MAX_CHUNKS):
        size_line = await reader.readuntil(b"\r\n")
        parts.append(size_line)
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BadMessage(f"bad chunk size line {size_line[:40]!r}") from None
        total += size
        if total > MAX_BODY_BYTES:
            raise BadMessage("chunked body too large")
        if size == 0:
            for _ in range(1000):  # trailers, then the empty line
                line = await reader.readuntil(b"\r\n")
                parts.append(line)
                if line == b"\r\n":
                    return b"".join(parts)
            raise BadMessage("too many trailer lines")
        parts.append(await reader.readexactly(size + 2))
    raise BadMessage("too many chunks")


async def read_body(
    reader: asyncio.StreamReader, headers: dict[str, str], *, allow_until_close: bool
) -> tuple[bytes, bool]:
    """The body as framed by the headers; returns (raw bytes, delimited by connection close)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await read_chunked_raw(reader), False
    if "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise BadMessage(f"bad Content-Length {headers['content-length']!r}") from None
        if not 0 <= length <= MAX_BODY_BYTES:
            raise BadMessage(f"Content-Length {length} out of range")
        return (await reader.readexactly(length) if length else b""), False
    if allow_until_close:
        return await reader.read(MAX_BODY_BYTES), True
    return b"", False


def per_hop(head: bytes, *, close: bool) -> bytes:
    """A response head with its connection-management headers made ours (RFC 9110 7.6.1).

    ``Connection`` and the headers it names apply to one hop only.  moto (werkzeug's dev
    server) answers ``Connection: close`` to every request; S3 keeps connections open.
    Passing that header on would make the client open a new connection per S3 request,
    so it is dropped and the client side stays open unless the client asked to close.
    """
    status_line, headers = parse_head(head)
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == "connection"
        for token in value.split(",")
    }
    drop = named | {"connection", "keep-alive", "proxy-connection"}
    if not close and not (named or any(n.lower() in drop for n, _ in headers)):
        return head
    kept = [f"{n}: {v}" for n, v in headers if n.lower() not in drop]
    if close:
        kept.append("Connection: close")
    return ("\r\n".join([status_line, *kept]) + "\r\n\r\n").encode("latin-1")


def wants_close(headers: dict[str, str], version: str) -> bool:
    """Whether the sender will close the connection after this message."""
    connection = headers.get("connection", "").lower()
    if "close" in connection:
        return True
    return version == "HTTP/1.0" and "keep-alive" not in connection


# ---------------------------------------------------------------------------
# The proxy
# ---------------------------------------------------------------------------


class Upstream:
    """One keep-alive connection to the S3 endpoint, opened lazily and reopened after errors."""

    def __init__(self, host: str, port: int, stats: LatencyProxy) -> None:
        self.host = host
        self.port = port
        self.stats = stats
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        """Close the socket; errors while closing do not matter."""
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def exchange(self, method: str, raw_request: bytes) -> tuple[bytes, bytes, bool]:
        """Send one request; returns (raw response head, raw body, body delimited by close).

        A request sent on a reused connection that the server had already closed is retried
        once on a fresh connection (nothing was received, so nothing was processed).
        """
        for attempt in (1, 2):
            fresh = self.writer is None
            if fresh:
                self.stats.upstream_connects += 1
                self.reader, self.writer = await asyncio.open_connection(
                    self.host, self.port, limit=MAX_HEAD_BYTES
                )
            assert self.reader is not None and self.writer is not None
            try:
                self.writer.write(raw_request)
                await self.writer.drain()
                head = await self.reader.readuntil(b"\r\n\r\n")
            except (ConnectionError, asyncio.IncompleteReadError):
                await self.close()
                if fresh or attempt == 2:
                    raise
                continue
            for _ in range(MAX_INTERIM_RESPONSES):  # skip 100 Continue and other 1xx
                if not head.startswith(b"HTTP/1.1 1") and not head.startswith(b"HTTP/1.0 1"):
                    break
                head = await self.reader.readuntil(b"\r\n\r\n")
            status_line, headers = parse_head(head)
            version, status = status_line.split(" ", 2)[:2]
            hmap = header_map(headers)
            if method == "HEAD" or status in ("204", "304"):
                body, until_close = b"", False
            else:
                body, until_close = await read_body(self.reader, hmap, allow_until_close=True)
            if until_close or wants_close(hmap, version):
                await self.close()
            return head, body, until_close
        raise AssertionError("unreachable")


class LatencyProxy:
    """Counts, delays and forwards; one instance serves every client connection."""

    def __init__(self, upstream_host: str, upstream_port: int, latency_ms: float) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.latency_s = latency_ms / 1000
        self.counts: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.forwarded = 0
        self.upstream_errors = 0
        self.upstream_s = 0.0
        self.upstream_max_s = 0.0
        self.client_connections = 0
        self.upstream_connects = 0
        self.connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    def snapshot(self) -> dict[str, Any]:
        """The counters as JSON-able data."""
        return {
            "counts": dict(sorted(self.counts.items())),
            "total": sum(self.counts.values()),
            "latency_ms": self.latency_s * 1000,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "forwarded": self.forwarded,
            "upstream_errors": self.upstream_errors,
            "upstream_mean_ms": 1000 * self.upstream_s / self.forwarded if self.forwarded else 0.0,
            "upstream_max_ms": 1000 * self.upstream_max_s,
            "client_connections": self.client_connections,
            "upstream_connects": self.upstream_connects,
        }

    def reset(self) -> None:
        """Zero every counter (the in-flight figure is live, so it is kept)."""
        self.counts.clear()
        self.max_in_flight = self.in_flight
        self.forwarded = 0
        self.upstream_errors = 0
        self.upstream_s = self.upstream_max_s = 0.0
        self.client_connections = self.upstream_connects = 0

    def control(self, method: str, target: str) -> tuple[int, dict[str, Any]]:
        """Answer ``/__counts``, ``/__reset`` and ``/__latency`` locally."""
        split = urlsplit(target)
        if split.path == "/__counts" and method == "GET":
            return 200, self.snapshot()
        if split.path == "/__reset" and method == "POST":
            snap = self.snapshot()
            self.reset()
            return 200, snap
        if split.path == "/__latency" and method == "POST":
            try:
                ms = float(parse_qs(split.query).get("ms", [""])[0])
            except ValueError:
                return 400, {"error": "ms must be a number"}
            if not 0 <= ms <= 10_000:
                return 400, {"error": "ms must be between 0 and 10000"}
            self.latency_s = ms / 1000
            return 200, self.snapshot()
        return 404, {"error": f"no control endpoint {method} {split.path}"}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one client connection until it closes, is idle too long, or misbehaves."""
        upstream = Upstream(self.upstream_host, self.upstream_port, self)
        self.client_connections += 1
        task = asyncio.current_task()
        if task is not None:
            self.connections[task] = writer
        try:
            for _ in range(MAX_REQUESTS_PER_CONNECTION):
                try:
                    async with asyncio.timeout(IDLE_TIMEOUT_S):  # no extra task, unlike wait_for
                        head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
                    return
                if not await self.one_request(head, reader, writer, upstream):
                    return
        except (BadMessage, asyncio.LimitOverrunError, ValueError) as exc:
            print(f"latency_proxy: dropping a connection: {exc!r}", file=sys.stderr, flush=True)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if task is not None:
                self.connections.pop(task, None)
            await upstream.close()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def one_request(
        self,
        head: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: Upstream,
    ) -> bool:
        """Forward one request and its response; returns whether the connection stays open."""
        request_line, headers = parse_head(head)
        method, target, version = request_line.split(" ", 2)
        hmap = header_map(headers)
        if hmap.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            headers = [(n, v) for n, v in headers if n.lower() != "expect"]
            head = ("\r\n".join([request_line, *(f"{n}: {v}" for n, v in headers)]) + "\r\n\r\n").encode(
                "latin-1"
            )
        body, _ = await read_body(reader, hmap, allow_until_close=False)
        keep_open = not wants_close(hmap, version)
        if target.startswith(CONTROL_PREFIX):
            status, doc = self.control(method, target)
            payload = json.dumps(doc).encode()
            writer.write(
                f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
            return keep_open
        self.counts[classify(method, target, hmap)] += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        t0 = time.perf_counter()
        try:
            try:
                async with asyncio.timeout(UPSTREAM_TIMEOUT_S):
                    resp_head, resp_body, until_close = await upstream.exchange(method, head + body)
                elapsed = time.perf_counter() - t0
                self.upstream_s += elapsed
                self.upstream_max_s = max(self.upstream_max_s, elapsed)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, BadMessage, ValueError) as exc:
                await upstream.close()
                self.upstream_errors += 1
                message = f"latency_proxy: upstream failed: {exc!r}".encode()
                writer.write(
                    b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                    b"Content-Length: " + str(len(message)).encode() + b"\r\n\r\n" + message
                )
                await writer.drain()
                return False
            if self.latency_s > 0:
                await asyncio.sleep(self.latency_s)
            self.forwarded += 1
        finally:
            self.in_flight -= 1
        if until_close:  # a body that ends with the upstream's close must end with ours
            writer.write(resp_head + resp_body)
            await writer.drain()
            return False
        writer.write(per_hop(resp_head, close=not keep_open) + resp_body)
        await writer.drain()
        return keep_open


async def serve(upstream: str, latency_ms: float, host: str, port: int) -> None:
    """Listen until SIGTERM or SIGINT."""
    split = urlsplit(upstream)
    if split.scheme != "http" or not split.hostname:
        raise SystemExit(f"latency_proxy: --upstream must be http://HOST:PORT, not {upstream!r}")
    proxy = LatencyProxy(split.hostname, split.port or 80, latency_ms)
    server = await asyncio.start_server(proxy.handle, host, port, limit=MAX_HEAD_BYTES, backlog=1024)
    bound = server.sockets[0].getsockname()
    print(f"latency_proxy listening on {bound[0]}:{bound[1]}", flush=True)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    async with server:
        await done.wait()
        server.close()
        # Close client sockets so each handler ends normally (no cancelled-task noise on exit).
        tasks = list(proxy.connections)
        for writer in list(proxy.connections.values()):
            writer.transport.abort()
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_TIMEOUT_S)


def main(argv: list[str] | None = None) -> int:
    """Parse options and run the proxy."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", required=True, help="the S3 endpoint, http://HOST:PORT")
    ap.add_argument("--latency-ms", type=float, default=20.0, help="delay added to every response")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    args = ap.parse_args(argv)
    if not 0 <= args.latency_ms <= 10_000:
        ap.error("--latency-ms must be between 0 and 10000")
    asyncio.run(serve(args.upstream, args.latency_ms, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
