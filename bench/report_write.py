"""Write the benchmark report: a Markdown page, an RST table for README.rst, PNG charts and JSON.

``bench/report.py`` measures and hands its result (a plain dict, the schema below) to
``write_report``; this module only formats, so a test can feed it a small synthetic result.

Schema (every figure a list holds one value per round; the writer takes medians)::

    {"meta": {"date", "command", "machine": {"cpu", "cores", "ram_gib"}, "versions": {...},
              "rounds", "duration_s", "warmup_s", "latency_ms", "load_before", "load_after", "note"},
     "small": [{"backend", "concurrency", "baseline",            # baseline: a BASELINES key
                "ours": {"rps": [...], "p50_ms": [...], "p99_ms": [...], "cpu_ms_per_req": [...],
                         "errors", "peak_rss_mib", "other_cpu_pct": [...]},
                "existing": {same keys} | {"rps": [...], "cpu_ms_per_req": [...] or []}}],
     "large": {"s3": "moto ...", "rows": [large_bench rows]} | None,
     "failures": {"what": "why"}}
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

#: What the existing server's figure in a row is, in words (the report says it for every row).
BASELINES = {
    "measured": (
        'the existing server\'s memory backend (its release, "wallet-attached-storage-server" in '
        "Versions), measured in this run"
    ),
    "head-filesystem": (
        'the existing server\'s git head ("wallet-attached-storage-server git head" in Versions: '
        "its version and commit) on its filesystem backend in a fresh directory, measured in this "
        "run in the same alternating rounds; like for like in work done, not in durability: see "
        "bench/README.rst for what each writes to disk and whether it flushes before answering"
    ),
    "memory-upper-bound": (
        "the existing server's memory backend, measured in this run: it has no filesystem backend "
        "in 0.1.0, and its memory backend is an upper bound for its filesystem speed"
    ),
    "constant": (
        "not run: 0.1.0 has no S3 backend; the req/s is bench/s3_bench.py's constant (15 req/s, measured "
        "earlier from the existing server's source with 20 ms of S3 latency) and the CPU per request "
        "the figure issue 10 gives for it (about 6.4 ms), neither measured in this run, so these "
        "rows' ratios compare this run with earlier ones (a busy machine during this run is "
        "to ours' disadvantage)"
    ),
    "missing": "not measured: the existing server did not start (see Not measured)",
}
SHORT = {
    "measured": "release, memory",
    "head-filesystem": "git head, filesystem",
    "memory-upper-bound": "its memory (upper bound)",
    "constant": "constant",
    "missing": "none",
}
#: Baselines measured in this run (drawn plain); the others are stand-ins (drawn hatched).
MEASURED = {"measured", "head-filesystem"}
#: Which existing-server process a run's baseline was measured on (for its peak RSS).
PROCESS = {"measured": "release", "memory-upper-bound": "release", "head-filesystem": "git head"}
OURS_COLOR, EXISTING_COLOR = "#1f77b4", "#bbbbbb"


def median(values: list[float]) -> float | None:
    """The median, or None when there is no value."""
    return statistics.median(values) if values else None


def fmt(value: float | None, digits: int = 0) -> str:
    """A number with thousands separators, or an en dash when absent."""
    return "–" if value is None else f"{value:,.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    return "–" if a is None or not b else f"{a / b:.2f}x"


def row_figures(row: dict[str, Any]) -> dict[str, Any]:
    """The medians and ratios one table line shows."""
    ours, existing = row["ours"], row.get("existing") or {}
    o_rps, e_rps = median(ours["rps"]), median(existing.get("rps", []))
    o_cpu, e_cpu = median(ours["cpu_ms_per_req"]), median(existing.get("cpu_ms_per_req", []))
    return {
        "label": f"{row['backend']} c{row['concurrency']}",
        "ours_rps": o_rps,
        "ours_rounds": " / ".join(fmt(v) for v in ours["rps"]),
        "existing_rps": e_rps,
        "rps_ratio": ratio(o_rps, e_rps),
        "p50": median(ours["p50_ms"]),
        "p99": median(ours["p99_ms"]),
        "ours_cpu": o_cpu,
        "existing_cpu": e_cpu,
        "cpu_ratio": ratio(o_cpu, e_cpu),
        "errors": ours["errors"] + existing.get("errors", 0),
        "baseline": row["baseline"],
        "other_cpu": median(ours.get("other_cpu_pct", [])),
    }


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub Markdown table: the first and last columns (words) left-aligned, numbers right."""
    align = ["---" if i in (0, len(header) - 1) else "---:" for i in range(len(header))]
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def rst_table(rows: list[list[str]]) -> str:
    """An RST simple table (the first row is the header)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    rule = "  ".join("=" * w for w in widths)
    text = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join([rule, text[0], rule, *text[1:], rule])


SMALL_HEADER = [
    "backend",
    "conc",
    "ours req/s",
    "existing req/s",
    "ours/existing",
    "ours p50 / p99 ms",
    "ours CPU ms/req",
    "existing CPU ms/req",
    "CPU ours/existing",
    "errors",
    "existing figure",
]


def small_cells(f: dict[str, Any], row: dict[str, Any]) -> list[str]:
    return [
        row["backend"],
        str(row["concurrency"]),
        fmt(f["ours_rps"]),
        fmt(f["existing_rps"]),
        f["rps_ratio"],
        f"{fmt(f['p50'], 1)} / {fmt(f['p99'], 1)}",
        fmt(f["ours_cpu"], 2),
        fmt(f["existing_cpu"], 2),
        f["cpu_ratio"],
        str(f["errors"]),
        SHORT[row["baseline"]],
    ]


def large_cells(r: dict[str, Any]) -> list[str]:
    return [
        f"{r['size_mib']} MiB",
        f"{r['ours_put']:.2f} / {r['direct_put']:.2f}",
        ratio(r["ours_put"], r["direct_put"]),
        f"{r['ours_get']:.2f} / {r['direct_get']:.2f}",
        ratio(r["ours_get"], r["direct_get"]),
        f"{r['ours_put_cpu']:.2f} / {r['ours_get_cpu']:.2f}",
        f"+{r['peak_rss_growth_mib']:.0f}",
    ]


LARGE_HEADER = [
    "size",
    "PUT s ours / boto3",
    "PUT ratio",
    "GET s ours / boto3",
    "GET ratio",
    "ours CPU s PUT / GET",
    "ours RSS growth MiB",
]


def markdown(result: dict[str, Any]) -> str:
    """The whole report as Markdown."""
    meta = result["meta"]
    m, v = meta["machine"], meta["versions"]
    out = [
        "# was-twisted vs. the existing server: benchmark report",
        "",
        f"Made {meta['date']} with `{meta['command']}`.",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']:.1f} GiB RAM; load average "
        f"{meta['load_before']} before, {meta['load_after']} after.",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        f"- Workload: 1 KiB PUT then GET of a new path, a fresh signature per request, one keep-alive "
        f"connection per client; {meta['rounds']} alternating round(s) of {meta['warmup_s']:g} s warm-up + "
        f"{meta['duration_s']:g} s per cell; every figure is the median over the rounds. S3 rows: "
        f"{meta['latency_ms']:g} ms added to every S3 response by bench/latency_proxy.py.",
        "- CPU ms/req: the server process's CPU time (user + system) in the measured window divided "
        "by the requests it served.",
    ]
    if meta.get("note"):
        out.append(f"- Note: {meta['note']}")
    rows = [(row_figures(r), r) for r in result["small"]]
    out += ["", "## Small requests", "", md_table(SMALL_HEADER, [small_cells(f, r) for f, r in rows]), ""]
    out.append("Ours req/s in each round: " + "; ".join(f"{f['label']}: {f['ours_rounds']}" for f, _ in rows))
    others = [f"{f['label']} {fmt(f['other_cpu'])} %" for f, _ in rows if f["other_cpu"] is not None]
    if others:
        out += [
            "",
            "CPU used by processes this run did not start (% of one core, median): " + ", ".join(others),
        ]
    out += ["", "What the existing server's figure is, per row:", ""]
    for key in dict.fromkeys(r["baseline"] for r in result["small"]):
        labels = ", ".join(f["label"] for f, r in rows if r["baseline"] == key)
        out.append(f"- {labels}: {BASELINES[key]}.")
    large = result.get("large")
    if large and large.get("rows"):
        out += [
            "",
            "## Large objects",
            "",
            f"Ours on the s3 backend ({large['s3']}, no added latency) against boto3 going straight to the "
            "same S3 server (the existing server cannot store to S3; its memory backend holds whole "
            "bodies in RAM). Best of the rounds.",
            "",
            md_table(LARGE_HEADER, [large_cells(r) for r in large["rows"]]),
        ]
    rss = [
        f"{r['backend']} {fmt(r['ours'].get('peak_rss_mib'))}"
        for r in result["small"]
        if r["concurrency"] == 16
    ]
    existing_rss = {  # one figure per existing process: the release (memory rows, upper bound), the head
        PROCESS[r["baseline"]]: r["existing"]["peak_rss_mib"]
        for r in result["small"]
        if r["baseline"] in PROCESS and (r.get("existing") or {}).get("peak_rss_mib")
    }
    out += ["", "Peak RSS of ours (MiB, VmHWM at the end of its section): " + ", ".join(rss)]
    if len(existing_rss) == 1:
        out[-1] += f"; the existing server: {fmt(next(iter(existing_rss.values())))}."
    elif existing_rss:
        out[-1] += "; the existing server: " + ", ".join(f"{fmt(v)} ({k})" for k, v in existing_rss.items())
        out[-1] += "."
    samples = [
        f"- {row_figures(r)['label']} {who}: {sample}"
        for r in result["small"]
        for who in ("ours", "existing")
        for sample in (r.get(who) or {}).get("error_samples", [])
    ]
    if samples:
        out += ["", "Error samples:", "", *samples]
    if result.get("failures"):
        out += ["", "## Not measured", ""]
        out += [f"- {what}: {why.splitlines()[0] if why else ''}" for what, why in result["failures"].items()]
    out += ["", "## Charts", "", "![requests per second](throughput.png)", "", "![CPU per request](cpu.png)"]
    if large and large.get("rows"):
        out += ["", "![large objects](large.png)"]
    return "\n".join(out) + "\n"


def rst_summary(result: dict[str, Any]) -> str:
    """The small-request table as RST, for README.rst."""
    header = [
        "backend",
        "conc",
        "ours req/s",
        "existing",
        "ratio",
        "ours CPU ms/req",
        "existing CPU",
        "existing is",
    ]
    body = []
    for r in result["small"]:
        f = row_figures(r)
        body.append(
            [
                r["backend"],
                str(r["concurrency"]),
                fmt(f["ours_rps"]),
                fmt(f["existing_rps"]),
                f["rps_ratio"],
                fmt(f["ours_cpu"], 2),
                fmt(f["existing_cpu"], 2),
                SHORT[r["baseline"]],
            ]
        )
    return rst_table([header, *body]) + "\n"


def _bars(ax: Any, labels: list[str], ours: list[float | None], existing: list[float | None],
          hatched: list[bool], ylabel: str, log: bool) -> None:  # fmt: skip
    """Grouped bars, ours beside the existing server; stand-in figures hatched."""
    width = 0.38
    xs = range(len(labels))
    o = [v or 0 for v in ours]
    e = [v or 0 for v in existing]
    ax.bar([x - width / 2 for x in xs], o, width, color=OURS_COLOR, label="ours")
    bars = ax.bar([x + width / 2 for x in xs], e, width, color=EXISTING_COLOR, label="existing server")
    for bar, hatch in zip(bars, hatched, strict=True):
        if hatch:
            bar.set_hatch("//")
    for x, a, b in zip(xs, ours, existing, strict=True):
        if a and b:
            ax.annotate(f"{a / b:.2f}x", (x, max(a, b)), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs), labels, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.legend(title="hatched: a stand-in figure (see the table)", title_fontsize=7, fontsize=8)


def charts(result: dict[str, Any], out_dir: Path) -> list[Path]:
    """throughput.png, cpu.png and (with large objects) large.png; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = [row_figures(r) for r in result["small"]]
    labels = [f"{f['label']}\nvs {SHORT[f['baseline']]}" for f in figs]  # which existing figure each bar is
    hatched = [f["baseline"] not in MEASURED for f in figs]
    date = result["meta"]["date"][:10]
    written = []
    for name, key_o, key_e, ylabel, log in (
        ("throughput.png", "ours_rps", "existing_rps", "requests/s (log scale)", True),
        ("cpu.png", "ours_cpu", "existing_cpu", "server CPU ms per request", False),
    ):
        fig, ax = plt.subplots(figsize=(9, 4.5))
        _bars(ax, labels, [f[key_o] for f in figs], [f[key_e] for f in figs], hatched, ylabel, log)
        ax.set_title(f"1 KiB signed PUT+GET, median of {result['meta']['rounds']} round(s), {date}")
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=100)
        plt.close(fig)
        written.append(out_dir / name)
    large = result.get("large")
    if large and large.get("rows"):
        rows = large["rows"]
        fig, ax = plt.subplots(figsize=(7, 4))
        labels = [f"{op} {r['size_mib']} MiB" for r in rows for op in ("PUT", "GET")]
        ours = [r[f"ours_{op}"] for r in rows for op in ("put", "get")]
        direct = [r[f"direct_{op}"] for r in rows for op in ("put", "get")]
        _bars(ax, labels, ours, direct, [False] * len(labels), "seconds (lower is better)", False)
        ax.legend(["ours (s3 backend)", "boto3 straight to S3"], fontsize=8)
        ax.set_title(f"Large objects on {large['s3']}, {date}")
        fig.tight_layout()
        fig.savefig(out_dir / "large.png", dpi=100)
        plt.close(fig)
        written.append(out_dir / "large.png")
    return written


def write_report(result: dict[str, Any], out_dir: Path, with_charts: bool = True) -> list[Path]:
    """report.md, summary.rst, results.json and the charts in ``out_dir``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "report.md", out_dir / "summary.rst", out_dir / "results.json"]
    paths[0].write_text(markdown(result))
    paths[1].write_text(rst_summary(result))
    paths[2].write_text(json.dumps(result, indent=2) + "\n")
    if with_charts:
        paths += charts(result, out_dir)
    return paths


README_BEGIN = ".. report: begin (bench/report.py rewrites this part)"
README_END = ".. report: end"


def readme_part(result: dict[str, Any]) -> str:
    """The dated paragraph and the table README.rst shows, between its two markers."""
    meta, m = result["meta"], result["meta"]["machine"]
    others = [v for r in result["small"] for v in r["ours"].get("other_cpu_pct", [])]
    busy = (
        f"; other processes used {min(others):.0f}-{max(others):.0f}% of a core during the cells"
        if others
        else ""
    )
    text = f"Made {meta['date']} with ``{meta['command']}`` on {m['cpu']}, {m['cores']} cores{busy}. " + (
        meta.get("note") or ""
    )
    large = (result.get("large") or {}).get("rows") or []
    if large:
        r = large[-1]
        text += (
            f" Large objects on s3 ({result['large']['s3']}): {r['size_mib']} MiB PUT {r['ours_put']:.2f} s "
            f"(boto3 straight to S3: {r['direct_put']:.2f} s, {ratio(r['ours_put'], r['direct_put'])}), "
            f"GET {r['ours_get']:.2f} s ({r['direct_get']:.2f} s, {ratio(r['ours_get'], r['direct_get'])})."
        )
    words, lines, line = text.split(), [], ""
    for word in words:  # wrapped at 78 columns, as the rest of README.rst
        if line and len(line) + 1 + len(word) > 78:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\n".join([README_BEGIN, "", *lines, "", rst_summary(result).rstrip("\n"), "", README_END])


def update_readme(readme: Path, result: dict[str, Any]) -> bool:
    """Replace the part between the markers in ``readme``; False when it has no markers."""
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        return False
    head, rest = text.split(README_BEGIN, 1)
    tail = rest.split(README_END, 1)[1]
    readme.write_text(head + readme_part(result) + tail)
    return True
