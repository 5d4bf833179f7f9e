#!/usr/bin/env python3
"""The soak benchmark's report: from the samples (CSV) and the totals (JSON beside it), the plot
(PNG) and the summary (Markdown). soak.py calls it at the end of a run; run it again on a kept CSV
to redraw:

    .venv/bin/python bench/soak_report.py bench/results/soak-2026-12-07.csv

The memory trend is a least-squares line over the second half of the run (after the warm-up:
caches, pools and the allocator's arenas fill during the first minutes), in MB per hour.
Needs matplotlib: pip install -e ".[bench]".
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections import Counter
from typing import Any

import numpy as np

MEMORY = (("rss_mb", "RSS"), ("pss_mb", "PSS"), ("uss_mb", "USS"))


def load(csv_path: str) -> dict[str, np.ndarray]:
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {name: np.array([float(r[name]) for r in rows]) for name in rows[0]}


def slope_per_hour(t_s: np.ndarray, values: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(MB/hour, intercept, mask) of the least-squares line over the second half of the run."""
    half = t_s >= t_s[-1] / 2
    if half.sum() < 2:
        return 0.0, float(values[-1]), half
    slope, intercept = np.polyfit(t_s[half], values[half], 1)
    return float(slope * 3600), float(intercept), half


def plot(data: dict[str, np.ndarray], meta: dict[str, Any], png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    minutes = data["t_s"] / 60
    fig, (mem, files, load, errors) = plt.subplots(4, 1, figsize=(10, 12), sharex=True,
                                                   gridspec_kw={"height_ratios": [3, 2, 2, 2]})
    fig.suptitle(f"lockgate soak, {meta['started']}: {meta['rate']:g} req/s mixed traffic, "
                 f"{meta['workers']} worker(s), {meta['duration_s'] / 60:.0f} min")
    for key, label in MEMORY:
        slope, intercept, half = slope_per_hour(data["t_s"], data[key])
        line = mem.plot(minutes, data[key], label=f"{label} (second half: {slope:+.1f} MB/hour)")
        fit = intercept + slope / 3600 * data["t_s"][half]
        mem.plot(minutes[half], fit, linestyle="--", color=line[0].get_color(), linewidth=1)
    mem.axvspan(minutes[-1] / 2, minutes[-1], color="grey", alpha=0.08, label="fitted (dashed)")
    mem.set_ylabel("gateway process tree, MB")
    mem.set_ylim(bottom=0)
    mem.legend(loc="lower right")
    for key, label in (("fds", "open fds"), ("sockets", "sockets"),
                       ("tcp_established", "TCP established"),
                       ("tcp_inbound", "of them from clients"), ("tcp_close_wait", "TCP close-wait"),
                       ("threads", "threads"), ("in_flight", "requests in flight (client)")):
        files.plot(minutes, data[key], label=label)
    files.set_ylabel("count")
    files.set_ylim(bottom=0)
    files.legend(loc="lower left", ncol=3, fontsize="small")
    interval = np.diff(data["t_s"], prepend=0)
    load.plot(minutes, data["req_per_s"], label="requests/s")
    load.plot(minutes, data["ok"] / interval, label="200/s")
    load.plot(minutes, data["cpu_pct"], color="grey", linestyle=":", label="gateway CPU, % of a core")
    load.plot(minutes, data["p99_ms"] / 10, color="black", linewidth=0.8,
              label="p99 of non-streamed 200s, 10 ms")
    load.set_ylim(bottom=0)
    load.legend(loc="lower left", ncol=2, fontsize="small")
    top = 1.0
    for key, label in (("r429", "429 (limits, budget)"), ("r4xx", "all 4xx"), ("r5xx", "5xx"),
                       ("stream_errors", "streams ending in an error event"),
                       ("client_errors", "client-side failures")):
        errors.plot(minutes, data[key] / interval, label=label)
        top = max(top, float((data[key] / interval).max()))
    errors.set_ylabel("per second")
    errors.set_ylim(0, top * 1.6)  # room for the legend above the lines
    errors.legend(loc="upper right", ncol=2, fontsize="small")
    errors.set_xlabel("minutes")
    for axes in (mem, files, load, errors):
        axes.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)


def markdown(data: dict[str, np.ndarray], totals: dict[str, int], by_kind: dict[str, dict[str, int]],
             meta: dict[str, Any], png: str) -> str:
    t = data["t_s"]
    served = sum(v for k, v in totals.items() if k != "skipped")
    lines = [
        f"# Soak, {meta['started']}",
        "",
        f"`bench/soak.py --duration {meta['duration_s']:g} --rate {meta['rate']:g} "
        f"--workers {meta['workers']}`{' (limits in Redis)' if meta['redis'] else ''}; "
        f"samples every {meta['interval_s']:g} s; {served} requests in {t[-1]:.0f} s "
        f"({served / t[-1]:.1f} req/s). CPU, median, % of a core: gateway "
        f"{np.median(data['cpu_pct']):.0f}, this client {np.median(data['client_cpu_pct']):.0f}, "
        f"mock upstream {np.median(data['mock_cpu_pct']):.0f}; "
        f"machine load average {data['loadavg'].min():.1f}-{data['loadavg'].max():.1f} (2 cores, shared).",
        "",
        f"![soak plot]({os.path.basename(png)})",
        "",
        "| | start | end | peak | slope, second half |",
        "|---|---|---|---|---|",
    ]
    for key, label in MEMORY:
        slope = slope_per_hour(t, data[key])[0]
        lines.append(f"| {label}, MB | {data[key][0]:.1f} | {data[key][-1]:.1f} | {data[key].max():.1f} "
                     f"| {slope:+.2f} MB/hour |")
    for key, label in (("fds", "open fds"), ("sockets", "sockets"),
                       ("tcp_established", "TCP established"), ("tcp_inbound", "of them from clients"),
                       ("tcp_close_wait", "TCP close-wait"), ("threads", "threads")):
        lines.append(f"| {label} | {data[key][0]:.0f} | {data[key][-1]:.0f} | {data[key].max():.0f} | |")
    lines += ["", f"Non-streamed 200s, per-interval p50 {np.median(data['p50_ms']):.1f} ms "
              f"(median), p99 {np.median(data['p99_ms']):.1f} ms (median), {data['p99_ms'].max():.0f} ms "
              "(worst interval).", "", "Outcomes by status:", ""]
    lines.append(", ".join(f"{k}: {v}" for k, v in sorted(totals.items())))
    lines += ["", "| kind | share | outcomes |", "|---|---|---|"]
    for kind, outcomes in by_kind.items():
        lines.append(f"| {kind} | {meta['mix'].get(kind, '')} % | "
                     + ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items())) + " |")
    if meta.get("heap_snapshots"):
        lines += ["", "Heap snapshots on (tracemalloc): memory and speed are not comparable with other runs."]
    if meta.get("extra_env"):
        lines += ["", f"Gateway started with extra environment: {', '.join(meta['extra_env'])}."]
    return "\n".join(lines) + "\n"


def report(csv_path: str, totals: Counter[str] | None = None,
           by_kind: Counter[tuple[str, str]] | None = None, meta: dict[str, Any] | None = None) -> None:
    """Writes the JSON of totals (when given), the PNG and the Markdown beside ``csv_path``."""
    stem = csv_path.removesuffix(".csv")
    if totals is not None and by_kind is not None and meta is not None:
        kinds: dict[str, dict[str, int]] = {}
        for (kind, outcome), n in sorted(by_kind.items()):
            kinds.setdefault(kind, {})[outcome] = n
        with open(stem + ".json", "w") as f:
            json.dump({"meta": meta, "totals": dict(totals), "by_kind": kinds}, f, indent=1)
    with open(stem + ".json") as f:
        saved = json.load(f)
    data = load(csv_path)
    plot(data, saved["meta"], stem + ".png")
    with open(stem + ".md", "w") as f:
        f.write(markdown(data, saved["totals"], saved["by_kind"], saved["meta"], stem + ".png"))
    for key, label in MEMORY:
        slope = slope_per_hour(data["t_s"], data[key])[0]
        print(f"{label}: start {data[key][0]:.1f} MB, end {data[key][-1]:.1f} MB, "
              f"peak {data[key].max():.1f} MB, second half {slope:+.2f} MB/hour")
    print(f"fds: start {data['fds'][0]:.0f}, end {data['fds'][-1]:.0f}; wrote {stem}.png and .md")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    report(sys.argv[1])
