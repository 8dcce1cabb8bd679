"""bench/report_write.py turns a result into the Markdown, RST and PNG files the README shows."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("report_write", ROOT / "bench" / "report_write.py")
assert _spec is not None and _spec.loader is not None
report_write = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report_write)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def series(rps: list[float], cpu: float, errors: int = 0) -> dict[str, Any]:
    n = len(rps)
    return {
        "rps": rps,
        "p50_ms": [1.0] * n,
        "p99_ms": [3.0] * n,
        "cpu_ms_per_req": [cpu] * n,
        "other_cpu_pct": [5.0] * n,
        "errors": errors,
        "error_samples": [],
        "peak_rss_mib": 70.0,
    }


def synthetic() -> dict[str, Any]:
    existing = series([1000.0, 1100.0, 900.0], 0.8)
    return {
        "meta": {
            "date": "2026-12-04 17:00 UTC",
            "command": "python bench/report.py --rounds 3",
            "machine": {"cpu": "Test CPU 9000", "cores": 2, "ram_gib": 8.0},
            "versions": {
                "Python": "3.11.7",
                "was-twisted": "abc1234",
                "wallet-attached-storage-server": "0.1.0",
            },
            "rounds": 3,
            "duration_s": 10.0,
            "warmup_s": 1.0,
            "latency_ms": 20.0,
            "load_before": "1.0 1.0 1.0",
            "load_after": "2.0 1.5 1.0",
            "note": "the machine was shared",
        },
        "small": [
            {
                "backend": "memory",
                "concurrency": 16,
                "baseline": "measured",
                "ours": series([1400.0, 1600.0, 1500.0], 0.6),
                "existing": existing,
            },
            {
                "backend": "filesystem",
                "concurrency": 16,
                "baseline": "memory-upper-bound",
                "ours": series([500.0, 400.0, 450.0], 1.2, errors=2),
                "existing": existing,
            },
            {
                "backend": "s3 ceph",
                "concurrency": 16,
                "baseline": "constant",
                "ours": series([150.0, 170.0, 160.0], 4.5),
                "existing": {"rps": [15.0], "cpu_ms_per_req": [], "errors": 0},
            },
        ],  # fmt: skip
        "large": {
            "s3": "moto 5.2.5",
            "rows": [
                {
                    "size_mib": 64,
                    "ours_put": 2.0,
                    "direct_put": 1.6,
                    "ours_get": 0.5,
                    "direct_get": 0.25,
                    "ours_put_cpu": 0.4,
                    "ours_get_cpu": 0.1,
                    "peak_rss_growth_mib": 40.0,
                },
            ],  # fmt: skip
        },
        "failures": {"s3 moto": "moto did not start\nlog tail"},
    }


def test_markdown_has_the_medians_ratios_baselines_and_provenance(tmp_path: Path) -> None:
    paths = report_write.write_report(synthetic(), tmp_path)
    md = (tmp_path / "report.md").read_text()
    table = [line for line in md.splitlines() if line.startswith(("| memory", "| filesystem", "| s3"))]
    rows = {" ".join(cell.strip() for cell in line.strip("|").split("|")[:2]): line for line in table}
    # memory: medians 1,500 vs 1,000 req/s -> 1.50x; CPU 0.60 vs 0.80 -> 0.75x
    assert "| 1,500 | 1,000 | 1.50x |" in rows["memory 16"]
    assert "| 0.60 | 0.80 | 0.75x |" in rows["memory 16"]
    assert "| 450 | 1,000 | 0.45x |" in rows["filesystem 16"]
    assert rows["filesystem 16"].endswith("| 2 | its memory (upper bound) |")
    # s3: the constant, no CPU figure for the existing server, so no CPU ratio
    assert "| 160 | 15 | 10.67x |" in rows["s3 ceph 16"]
    assert "| 4.50 | – | – |" in rows["s3 ceph 16"]
    assert "upper bound for its filesystem speed" in md
    assert "bench/s3_bench.py's constant" in md
    for needle in ("2026-12-04 17:00 UTC", "python bench/report.py --rounds 3", "Test CPU 9000", "2 cores",
                   "8.0 GiB", "was-twisted abc1234", "wallet-attached-storage-server 0.1.0",
                   "the machine was shared", "filesystem c16: 500 / 400 / 450"):  # fmt: skip
        assert needle in md
    assert "| 64 MiB | 2.00 / 1.60 | 1.25x | 0.50 / 0.25 | 2.00x |" in md
    assert "- s3 moto: moto did not start" in md and "log tail" not in md
    for png in ("throughput.png", "cpu.png", "large.png"):
        assert f"]({png})" in md
        data = (tmp_path / png).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000
        assert tmp_path / png in paths
    assert json.loads((tmp_path / "results.json").read_text())["meta"]["rounds"] == 3


def test_rst_summary_is_a_simple_table(tmp_path: Path) -> None:
    report_write.write_report(synthetic(), tmp_path, with_charts=False)
    lines = (tmp_path / "summary.rst").read_text().splitlines()
    assert lines[0] == lines[2] == lines[-1] and set(lines[0]) == {"=", " "}
    assert lines[1].split()[:3] == ["backend", "conc", "ours"]
    assert lines[3].split()[:5] == ["memory", "16", "1,500", "1,000", "1.50x"]
    assert len(lines) == 3 + 3 + 1
    assert not (tmp_path / "throughput.png").exists()


def test_readme_shows_the_committed_report() -> None:
    """README.rst's "Benchmark report" shows bench/results/: its charts exist and its table is the summary."""
    readme = (ROOT / "README.rst").read_text()
    section = readme.split("Benchmark report\n~~~~~~~~~~~~~~~~\n", 1)[1].split("\nDevelopment\n", 1)[0]
    images = [
        line.split("::", 1)[1].strip() for line in section.splitlines() if line.startswith(".. image::")
    ]
    assert images == ["bench/results/throughput.png", "bench/results/cpu.png", "bench/results/large.png"]
    for image in images:
        assert (ROOT / image).read_bytes().startswith(PNG_MAGIC)
    assert (ROOT / "bench" / "results" / "summary.rst").read_text() in section
    made = json.loads((ROOT / "bench" / "results" / "results.json").read_text())["meta"]["date"]
    assert f"Made {made} with" in section


def test_update_readme_rewrites_only_the_marked_part(tmp_path: Path) -> None:
    readme = tmp_path / "README.rst"
    readme.write_text(
        f"Intro\n\n{report_write.README_BEGIN}\n\nold table\n\n{report_write.README_END}\n\nAfter\n"
    )
    assert report_write.update_readme(readme, synthetic())
    text = readme.read_text()
    assert text.startswith("Intro\n\n") and text.endswith(f"{report_write.README_END}\n\nAfter\n")
    assert "old table" not in text and report_write.rst_summary(synthetic()) in text + "\n"
    assert (
        "Made 2026-12-04 17:00 UTC with ``python bench/report.py --rounds 3`` on Test CPU 9000"
        in " ".join(text.split())
    )
    assert "64 MiB PUT 2.00 s (boto3 straight to S3: 1.60 s, 1.25x)" in " ".join(text.split())
    assert all(len(line) <= 110 for line in text.splitlines())
    plain = tmp_path / "plain.rst"
    plain.write_text("no markers\n")
    assert not report_write.update_readme(plain, synthetic())
    assert plain.read_text() == "no markers\n"
