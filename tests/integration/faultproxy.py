"""A fault-injecting HTTP proxy between the server under test and an S3 endpoint (moto's server).

Standard-library asyncio only.  Requests are forwarded byte for byte, one
keep-alive upstream connection per client connection; ``Expect:
100-continue`` is answered by the proxy itself.  While a fault mode is on,
each S3 request is hit with probability ``rate``:

* ``slowdown``: answered ``503 SlowDown`` (S3's XML) without being forwarded;
* ``internal``: answered ``500 InternalError`` without being forwarded;
* ``reset``: the client connection is reset (RST), half the time before the
  request is forwarded, half the time after S3 did it (the answer is lost:
  a retried conditional write then meets its own object);
* ``stall``: no answer for ``stall`` seconds (longer than the server's read
  timeout), then the connection closes; before or after forwarding, likewise;
* ``truncate``: S3's answer with its real ``Content-Length`` but only half
  its body (or, with no body, half its header block), then the connection closes.

Switch faults at run time with ``FaultProxy.set_faults`` (in-process) or
``POST /__faults?mode=truncate&rate=0.3&stall=2`` (``mode=off`` stops them);
``GET /__faults`` answers the counts as JSON.  Paths under ``/__`` are never
forwarded.  Run alone: ``python tests/integration/faultproxy.py --upstream
http://127.0.0.1:5000`` prints ``faultproxy listening on 127.0.0.1:PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import socket
import struct
import threading
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlsplit

MODES = ("slowdown", "internal", "reset", "stall", "truncate")
MAX_HEAD = 64 * 1024
IDLE_TIMEOUT = 60.0
_ERROR_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
    "<Message>{message}</Message><RequestId>faultproxy</RequestId></Error>"
)
_CANNED = {
    "slowdown": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
    "internal": (500, "Internal Server Error", "InternalError", "We encountered an internal error."),
}


class _Closed(Exception):
    """The peer closed the connection before a whole message came."""


def _headers(head: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        out[name.decode("latin-1").strip().lower()] = value.decode("latin-1").strip()
    return out


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    """One message's head up to and including the blank line; ``None`` at a clean EOF."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise _Closed() from exc
    except asyncio.LimitOverrunError as exc:
        raise _Closed() from exc


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str], until_eof: bool) -> bytes:
    """The body as framed on the wire (chunked framing kept), by Content-Length, chunks or EOF."""
    try:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raw = bytearray()
            while True:
                line = await reader.readuntil(b"\r\n")
                raw += line
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while (trailer := await reader.readuntil(b"\r\n")) != b"\r\n":
                        raw += trailer
                    raw += b"\r\n"
                    return bytes(raw)
                raw += await reader.readexactly(size + 2)
        if "content-length" in headers:
            return await reader.readexactly(int(headers["content-length"]))
        return await reader.read() if until_eof else b""
    except asyncio.IncompleteReadError as exc:
        raise _Closed() from exc


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0), as a crashed or overloaded peer does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """The proxy, served by its own event loop on a thread; ``url`` once started."""

    def __init__(self, upstream: str, *, seed: int | None = None, stall: float = 3.0) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.mode: str | None = None
        self.rate = 0.0
        self.stall = stall
        #: Only requests whose target contains this are hit (``""``: all).
        self.only = ""
        self.counts: Counter[str] = Counter()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- control ----------------------------------------------------------------

    def set_faults(
        self, mode: str | None, rate: float = 0.3, stall: float | None = None, only: str = ""
    ) -> None:
        """Turn a fault mode on (``rate``: the fraction of requests hit), or off with ``None``.

        ``only``: hit only requests whose target (path and query) contains it.
        """
        if mode is not None and mode not in MODES:
            raise ValueError(f"unknown fault mode {mode!r}; one of {MODES}")
        with self._lock:
            self.mode, self.rate, self.only = mode, rate if mode else 0.0, only
            if stall is not None:
                self.stall = stall

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "mode": self.mode,
                "rate": self.rate,
                "stall": self.stall,
                "only": self.only,
                "counts": dict(self.counts),
            }

    def _pick(self, target: str) -> str | None:
        """The fault for this request (``reset-after``, ``stall-before``, ...), or ``None``."""
        with self._lock:
            self.counts["requests"] += 1
            if self.mode is None or self.only not in target or self._random.random() >= self.rate:
                return None
            fault = self.mode
            if fault in ("reset", "stall"):
                fault += self._random.choice(("-before", "-after"))
            self.counts[fault] += 1
            return fault

    # -- life -------------------------------------------------------------------

    def start(self) -> FaultProxy:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop

            async def serve() -> None:
                self._server = await asyncio.start_server(self._client, "127.0.0.1", 0, limit=MAX_HEAD)
                self.port = self._server.sockets[0].getsockname()[1]
                ready.set()

            loop.run_until_complete(serve())
            loop.run_forever()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="faultproxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("faultproxy did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            loop.stop()

        asyncio.run_coroutine_threadsafe(close(), loop)
        self._thread.join(10)
        self._loop = None

    def __enter__(self) -> FaultProxy:
        return self.start() if self._loop is None else self

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- serving ----------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                head = await asyncio.wait_for(_read_head(reader), IDLE_TIMEOUT)
                if head is None:
                    return
                request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
                method, target = request_line.split(" ")[:2]
                headers = _headers(head)
                if target.startswith("/__"):
                    await self._control(method, target, writer)
                    continue
                if headers.get("expect", "").lower() == "100-continue":
                    head = b"\r\n".join(
                        ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"expect:")
                    )
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = await _read_body(reader, headers, until_eof=False)
                fault = self._pick(target)
                if fault in _CANNED:
                    status, reason, code, message = _CANNED[fault]
                    xml = _ERROR_XML.format(code=code, message=message).encode()
                    writer.write(
                        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
                        f"Content-Length: {len(xml)}\r\n\r\n".encode()
                        + xml
                    )
                    await writer.drain()
                    continue
                if fault == "reset-before":
                    _reset(writer)
                    return
                if fault == "stall-before":
                    await asyncio.sleep(self.stall)
                    writer.transport.abort()
                    return
                upstream, answer_head, answer_body = await self._exchange(upstream, method, head + body)
                if fault == "reset-after":
                    _reset(writer)
                    return
                if fault == "stall-after":
                    await asyncio.sleep(self.stall)
                    writer.transport.abort()
                    return
                if fault == "truncate":
                    if answer_body:
                        writer.write(answer_head + answer_body[: len(answer_body) // 2])
                    else:
                        writer.write(answer_head[: len(answer_head) // 2])
                    await writer.drain()
                    _reset(writer)
                    return
                writer.write(answer_head + answer_body)
                await writer.drain()
        except (_Closed, ConnectionError, TimeoutError, OSError, ValueError):
            writer.transport.abort()
        finally:
            self._writers.discard(writer)
            if upstream is not None:
                upstream[1].transport.abort()
            if not writer.is_closing():
                writer.close()

    async def _exchange(
        self, upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None, method: str, request: bytes
    ) -> tuple[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None, bytes, bytes]:
        """Send ``request`` upstream (reconnecting once if the kept-alive connection went stale)."""
        for attempt in range(2):
            if upstream is None:
                upstream = await asyncio.open_connection(*self.upstream, limit=MAX_HEAD)
            up_reader, up_writer = upstream
            try:
                up_writer.write(request)
                await up_writer.drain()
                while True:
                    head = await _read_head(up_reader)
                    if head is None:
                        raise _Closed()
                    if not head.startswith(b"HTTP/1.1 1") and not head.startswith(b"HTTP/1.0 1"):
                        break  # skip interim 1xx answers
                headers = _headers(head)
                status = int(head.split(b" ", 2)[1])
                no_body = method == "HEAD" or status in (204, 304)
                close = headers.get("connection", "").lower() == "close" or head.startswith(b"HTTP/1.0")
                body = b"" if no_body else await _read_body(up_reader, headers, until_eof=True)
                if close or (
                    not no_body and "content-length" not in headers and "transfer-encoding" not in headers
                ):
                    up_writer.transport.abort()
                    upstream = None
                return upstream, head, body
            except (_Closed, ConnectionError):
                up_writer.transport.abort()
                upstream = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _control(self, method: str, target: str, writer: asyncio.StreamWriter) -> None:
        parts = urlsplit(target)
        status = "200 OK"
        if parts.path == "/__faults" and method == "POST":
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            mode = query.get("mode", "off")
            try:
                self.set_faults(
                    None if mode == "off" else mode,
                    float(query.get("rate", "0.3")),
                    float(query["stall"]) if "stall" in query else None,
                    query.get("only", ""),
                )
            except ValueError:
                status = "400 Bad Request"
        elif parts.path != "/__faults":
            status = "404 Not Found"
        doc = json.dumps(self.snapshot()).encode()
        head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(doc)}\r\n\r\n"
        writer.write(head.encode() + doc)
        await writer.drain()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="the S3 endpoint, e.g. http://127.0.0.1:5000")
    parser.add_argument("--mode", choices=MODES, default=None)
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--stall", type=float, default=3.0)
    args = parser.parse_args()
    proxy = FaultProxy(args.upstream, stall=args.stall).start()
    proxy.set_faults(args.mode, args.rate)
    print(f"faultproxy listening on 127.0.0.1:{proxy.port}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        proxy.stop()


if __name__ == "__main__":
    main()
