"""Serve the wallet page from one origin on 127.0.0.1 and collect the report it POSTs back.

The page's origin (this server's port) differs from the WAS server's, so
every request the page makes to WAS is cross-origin and goes through CORS.
"""

from __future__ import annotations

import json
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

PAGE_DIR = Path(__file__).resolve().parent
FILES = {"/index.html": "text/html; charset=utf-8", "/wallet.js": "text/javascript; charset=utf-8"}


class _Handler(BaseHTTPRequestHandler):
    server: _PageHTTPServer

    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        content_type = FILES.get(path)
        if content_type is None:
            self.send_error(404)
            return
        body = (PAGE_DIR / path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        if self.path != "/result":
            self.send_error(404)
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(204)
        self.end_headers()
        self.server.reports.put(json.loads(body))

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test prints what matters when it fails."""


class _PageHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    reports: queue.Queue[dict[str, Any]]


class PageServer:
    """The page's origin: ``origin`` is ``http://127.0.0.1:<port>`` once started."""

    def __init__(self) -> None:
        self.httpd = _PageHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.reports = queue.Queue()
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="page-server", daemon=True)

    def start(self) -> PageServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def page_url(self, was_url: str) -> str:
        return f"{self.origin}/index.html?was={quote(was_url, safe='')}"

    def report(self, timeout: float) -> dict[str, Any] | None:
        """The page's report, or ``None`` if none came within ``timeout`` seconds."""
        try:
            return self.httpd.reports.get(timeout=timeout)
        except queue.Empty:
            return None
