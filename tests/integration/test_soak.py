"""The soak (issue 9), shortened to 60 s: twistd on s3 (moto over HTTP), 32 clients, no error, flat RSS.

The full 10-minute soak is ``python bench/soak.py``; this runs the same code for 60 s with a 15 s
warm-up.  How RSS is compared, and why that does not flake, is in bench/soak.py's docstring; the
first two tests pin the comparison itself on made-up samples.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("was_bench_soak", ROOT / "bench" / "soak.py")
assert _spec is not None and _spec.loader is not None
soak = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(soak)

MIB = 1024  # samples are in KiB


def verdict(samples: list[tuple[float, int]], errors: int = 0) -> dict[str, Any]:
    return soak.judge(
        {"rss_samples": samples, "errors": errors, "requests": 1000}, warmup_s=15, duration_s=60
    )


def test_a_steady_process_with_spikes_and_a_warm_up_climb_passes() -> None:
    climb = [(t, (80 + t) * MIB) for t in range(15)]  # +15 MiB during the warm-up: not counted
    steady = [(t, 96 * MIB + (700 if t % 7 == 0 else 0)) for t in range(15, 61)]  # allocator wobble
    steady[30] = (45, 101 * MIB)  # one 5 MiB spike late in the run
    result = verdict(climb + steady)
    assert result["passed"], result
    assert result["rss_end_kib"] == 96 * MIB and result["rss_growth"] < 0.01


def test_a_leak_or_an_error_fails() -> None:
    leak = [(t, 96 * MIB + t * 300) for t in range(61)]  # 300 KiB/s: end - max(first half) = 6 MiB
    result = verdict(leak)
    assert not result["passed"] and result["rss_growth"] > 0.05
    assert not verdict([(t, 96 * MIB) for t in range(61)], errors=1)["passed"]


def test_the_full_soak_sees_a_slower_leak() -> None:
    """10 minutes, 60 s warm-up: 30 KiB/s (too slow for 60 s) is caught."""
    leak = [(t, 96 * MIB + t * 30) for t in range(601)]
    assert verdict(leak[:61])["passed"]  # the same leak over 60 s passes...
    result = soak.judge({"rss_samples": leak, "errors": 0, "requests": 1000}, warmup_s=60, duration_s=600)
    assert not result["passed"] and result["rss_growth"] > 0.05  # ...the full soak does not


@pytest.mark.integration
def test_soak_60s_on_s3_over_http(tmp_path: Path) -> None:
    result = soak.run(60, concurrency=32, workdir=tmp_path)
    print(soak.summary(result))  # the figures, with -s or on failure
    assert result["errors"] == 0, result["error_samples"]
    assert result["server_alive"] and result["log_tracebacks"] == 0
    assert result["requests"] >= 300, result["by_op"]
    assert set(result["by_op"]) == {"PUT", "GET", "DELETE", "LIST"}
    assert result["expected_404"] > 0  # deletes happened and were seen
    assert result["rss_growth"] < 0.05, soak.summary(result)
    assert result["passed"]
