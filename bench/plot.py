#!/usr/bin/env python3
"""The plots of a benchmark run (deploy/local/bench.sh), from its results directory.

  unlock_latency_cdf.png        latency CDF of unlocks per concurrency: latch API (solid)
                                and pgbench running the same statement (dashed)
  unlock_throughput.png         throughput vs concurrency, latch vs pgbench, unlocks and
                                check-ins (median, min-max bars)
  open_loop_cdf.png             latency CDF at the open-loop rate, latch vs pgbench
  pipeline_lag.png              commit->stream and commit->delivered p50/p99 vs offered load

Each is kept small (< 100 KB). Needs matplotlib; bench.sh installs it when missing.
usage: plot.py --dir bench-results/<run>
"""

import argparse
import os
import statistics

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from bench import get_path as get, read_results  # noqa: E402  (bench/bench.py, beside this file)

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def by_case(records, stage, metric):
    out = {}
    for r in records:
        if r.get("stage") == stage and isinstance(get(r, metric), (int, float)):
            out.setdefault(r["case"], []).append((r["rep"], get(r, metric)))
    return out


def median_rep(pairs):
    """The repetition whose value is the median (the lower one of an even count)."""
    ordered = sorted(pairs, key=lambda p: p[1])
    return ordered[(len(ordered) - 1) // 2][0]


def read_cdf(path):
    xs, ys = [], []
    if not os.path.exists(path):
        return xs, ys
    with open(path, encoding="utf-8") as src:
        next(src, None)
        for line in src:
            value, percentile, _ = line.strip().split(",")
            q = float(percentile) / 100.0
            if 0.0 < q < 0.9999 and float(value) > 0:
                xs.append(float(value))
                ys.append(q)
    return xs, ys


def cdf_axes(ax, title):
    ax.set_xscale("log")
    ax.set_yscale("logit")
    ax.set_yticks([0.1, 0.5, 0.9, 0.99, 0.999])
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y * 100:g}%"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda *_: ""))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("requests at or below")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)


def save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    size = os.path.getsize(path)
    print(f"  {os.path.basename(path)}: {size // 1024} KB")
    if size > 100 * 1024:
        raise SystemExit(f"{path} is {size} bytes, over the 100 KB budget")


def plot_unlock_cdf(run, records, out):
    api = by_case(records, "api_unlock", "throughput_rps")
    pg = by_case(records, "pg_unlock", "throughput")
    if not api:
        return
    cases = sorted(api, key=lambda c: int(c.lstrip("c")))
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    for i, case in enumerate(cases):
        color = COLORS[i % len(COLORS)]
        xs, ys = read_cdf(os.path.join(run, "raw", f"api_unlock_{case}_r{median_rep(api[case])}.cdf.csv"))
        if xs:
            ax.plot(xs, ys, color=color, lw=1.6, label=f"latch API, C={case.lstrip('c')}")
        if case in pg:
            xs, ys = read_cdf(os.path.join(run, "raw", f"pg_unlock_{case}_r{median_rep(pg[case])}.cdf.csv"))
            if xs:
                ax.plot(xs, ys, color=color, lw=1.2, ls="--", label=f"pgbench, C={case.lstrip('c')}")
    cdf_axes(ax, "Unlock latency, closed loop (median repetition of each)")
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    save(fig, os.path.join(out, "unlock_latency_cdf.png"))


def plot_throughput(records, out):
    api = by_case(records, "api_unlock", "throughput_rps")
    pg = by_case(records, "pg_unlock", "throughput")
    if not api:
        return
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    for label, data, color, marker, style in (
        ("pgbench (latch's unlock statement)", pg, COLORS[1], "s", "-"),
        ("latch API (POST /v1/unlock)", api, COLORS[0], "o", "-"),
        ("pgbench (latch's check-in statement)", by_case(records, "pg_checkin", "throughput"), COLORS[1], "s", ":"),
        ("latch API (POST /v1/check-ins)", by_case(records, "api_checkin", "throughput_rps"), COLORS[0], "o", ":"),
    ):
        if not data:
            continue
        cases = sorted(data, key=lambda c: int(c.lstrip("c")))
        xs = [int(c.lstrip("c")) for c in cases]
        meds = [statistics.median(v for _, v in data[c]) for c in cases]
        lows = [m - min(v for _, v in data[c]) for m, c in zip(meds, cases)]
        highs = [max(v for _, v in data[c]) - m for m, c in zip(meds, cases)]
        ax.errorbar(xs, meds, yerr=[lows, highs], color=color, marker=marker, capsize=3, lw=1.5, ls=style, label=label)
    ax.set_xscale("log", base=2)
    ticks = sorted({int(c.lstrip("c")) for c in api})
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:,.0f}"))
    ax.set_xlabel("concurrency (clients / simulated readers)")
    ax.set_ylabel("requests (transactions) per second")
    ax.set_title("Write throughput vs concurrency (median, min–max)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, os.path.join(out, "unlock_throughput.png"))


def plot_open_loop(run, records, out):
    api = by_case(records, "api_open", "latency_ms.p99")
    pg = by_case(records, "pg_open", "latency_ms.p99")
    if not api:
        return
    case = next(iter(api))
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    xs, ys = read_cdf(os.path.join(run, "raw", f"api_open_r{median_rep(api[case])}.cdf.csv"))
    if xs:
        ax.plot(xs, ys, color=COLORS[0], lw=1.6, label="latch API")
    if case in pg:
        xs, ys = read_cdf(os.path.join(run, "raw", f"pg_open_r{median_rep(pg[case])}.cdf.csv"))
        if xs:
            ax.plot(xs, ys, color=COLORS[1], lw=1.2, ls="--", label="pgbench -R")
    cdf_axes(ax, f"Unlock latency, open loop at {case.lstrip('r')}/s (from when each was due)")
    ax.legend(fontsize=8, loc="lower right")
    save(fig, os.path.join(out, "open_loop_cdf.png"))


def plot_pipeline(records, out):
    runs = [r for r in records if r.get("stage") == "pipeline"]
    if not runs:
        return
    loads = sorted({r["offered"] for r in runs})
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    series = [
        ("commit→stream", "stream", COLORS[2]),
        ("commit→legacy", "legacy", COLORS[0]),
        ("commit→webhooks", "webhooks", COLORS[3]),
    ]
    for label, key, color in series:
        for q, style in (("p50", "-"), ("p99", "--")):
            xs, ys = [], []
            for load in loads:
                values = [
                    get(r, f"{key}.{q}_ms") for r in runs if r["offered"] == load and get(r, f"{key}.{q}_ms") is not None
                ]
                if values:
                    xs.append(load)
                    ys.append(max(statistics.median(values), 0.01))
            if xs:
                ax.plot(xs, ys, color=color, ls=style, marker="o", ms=3, lw=1.4, label=f"{label} {q}")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    ax.set_xlabel("offered load (check-ins + check-outs per second)")
    ax.set_ylabel("lag (ms, log scale)")
    ax.set_title("Pipeline lag vs offered load (median of repetitions)", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, ncol=3)
    save(fig, os.path.join(out, "pipeline_lag.png"))


def main():
    parser = argparse.ArgumentParser(description="plots of a latch benchmark run")
    parser.add_argument("--dir", required=True)
    args = parser.parse_args()
    records = read_results(os.path.join(args.dir, "results.jsonl"))
    out = os.path.join(args.dir, "plots")
    os.makedirs(out, exist_ok=True)
    plot_unlock_cdf(args.dir, records, out)
    plot_throughput(records, out)
    plot_open_loop(args.dir, records, out)
    plot_pipeline(records, out)


if __name__ == "__main__":
    main()
