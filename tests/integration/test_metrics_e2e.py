"""End to end: ``twistd -n was --metrics ...``, the real Python client, then a scrape of ``/metrics``."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from wallet_attached_storage_client import Ed25519Signer, StorageClient

from .processes import TWISTD, WasProcess

_METRICS_STARTED = re.compile(rb"MetricsSite starting on (\d+)")
_API_STARTED = re.compile(rb"WASSite starting on (\d+)")


class MeteredProcess(WasProcess):
    """``WasProcess`` started with ``--metrics``; ``metrics_url`` is read back from the log."""

    metrics_url = ""

    def start(self, timeout: float = 30.0) -> MeteredProcess:
        with open(self.log_path, "ab") as log:
            start_at = log.tell()
            self.proc = subprocess.Popen(
                [TWISTD, "-n", "--pidfile=", "was", "--listen", self.listen]
                + ["--metrics", "tcp:0:interface=127.0.0.1"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(self.log_path.parent),
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(start_at)
                text = f.read()
            api, metrics = _API_STARTED.search(text), _METRICS_STARTED.search(text)
            if api and metrics:
                self.url = f"http://127.0.0.1:{int(api.group(1))}"
                self.metrics_url = f"http://127.0.0.1:{int(metrics.group(1))}/metrics"
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"twistd did not start; log:\n{self.log_path.read_text(errors='replace')}")


@pytest.fixture
def metered(tmp_path: Path) -> Iterator[MeteredProcess]:
    env = {
        "WAS_STORAGE_BACKEND": "filesystem",
        "WAS_STORAGE_ROOT_DIR": str(tmp_path / "data"),
        "WAS_THREADS": "4",
    }
    with MeteredProcess(env, tmp_path / "twistd.log") as server:
        yield server


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = httpx.get(url)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def sample(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.integration
def test_metrics_after_python_client_requests(metered: MeteredProcess) -> None:
    """Counts by route template, storage calls, the storage pool's gauges and process metrics."""
    signer = Ed25519Signer()
    with StorageClient(metered.url) as client:
        space = client.space(signer=signer)
        body = json.dumps({"id": space.id, "controller": signer.controller}).encode()
        assert space.put(body, "application/json").status_code == 201
        for name in ("a.txt", "b.txt"):
            assert space.resource(f"/notes/{name}").put(b"twelve bytes", "text/plain").status_code == 204
        got = space.resource("/notes/a.txt").get()
        assert got.status_code == 200 and got.content == b"twelve bytes"
        assert space.resource("/notes/none.txt").get().status_code == 404
    assert httpx.get(metered.url + "/health").status_code == 200

    samples = scrape(metered.metrics_url)
    requests = {
        labels: value for (name, labels), value in samples.items() if name == "was_http_requests_total"
    }
    assert requests == {
        (("method", "PUT"), ("route", "/space/{id}"), ("status", "201")): 1,
        (("method", "PUT"), ("route", "/space/{id}/{path}"), ("status", "204")): 2,
        (("method", "GET"), ("route", "/space/{id}/{path}"), ("status", "200")): 1,
        (("method", "GET"), ("route", "/space/{id}/{path}"), ("status", "404")): 1,
        (("method", "GET"), ("route", "/health"), ("status", "200")): 1,
    }
    duration = "was_http_request_duration_seconds_count"
    assert sample(samples, duration, route="/space/{id}/{path}", method="PUT") == 2
    assert sample(samples, "was_http_problems_total", status="404") == 1
    assert sample(samples, "was_http_request_bytes_total") == len(body) + 2 * 12
    assert sample(samples, "was_http_response_bytes_total") > 12
    calls = {labels: value for (name, labels), value in samples.items() if name == "was_storage_calls_total"}
    assert calls == {
        (("operation", "put_space"), ("outcome", "ok")): 1,
        (("operation", "write_resource"), ("outcome", "ok")): 2,
        (("operation", "read_resource"), ("outcome", "ok")): 2,
    }
    assert sample(samples, "was_pool_threads", pool="was-storage") == 4
    assert sample(samples, "was_pool_threads", pool="was-zcap") == 2
    assert sample(samples, "was_pool_busy_threads", pool="was-storage") == 0
    assert sample(samples, "was_pool_backlog", pool="was-storage") == 0
    assert sample(samples, "was_shed_requests_total", pool="was-storage") == 0
    assert sample(samples, "process_resident_memory_bytes") > 0
    assert space.id.split(":")[-1] not in httpx.get(metered.metrics_url).text

    # A scrape is not itself counted, and the API port has no /metrics.
    again = scrape(metered.metrics_url)
    assert sample(again, "was_http_requests_total", route="/health", method="GET", status="200") == 1
    assert httpx.get(metered.url + "/metrics").status_code == 404
