#!/usr/bin/python3
"""Turns runtime_bench's JSON and asyncio_runtime.py's lines into one table with ratios."""
import json
import statistics
import sys


def per_op_ns(run):
    """Nanoseconds per item (or per iteration when the benchmark counts no items)."""
    if "items_per_second" in run:
        return 1e9 / run["items_per_second"]
    scale = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}[run["time_unit"]]
    return run["real_time"] * scale


def fmt(ns):
    return f"{ns:,.1f}" if ns < 100 else f"{ns:,.0f}"


def main(cotask_path, asyncio_path):
    with open(cotask_path) as f:
        report = json.load(f)
    cotask = {}
    for run in report["benchmarks"]:
        if run.get("run_type") != "iteration":
            continue
        name = run["run_name"].removeprefix("BM_")
        cotask.setdefault(name, []).append(per_op_ns(run))
    asyncio = {}
    with open(asyncio_path) as f:
        for line in f:
            row = json.loads(line)
            asyncio[row["name"]] = row["ns_per_op"]

    ctx = report["context"]
    print(f"machine: {ctx.get('num_cpus')} cpus @ {ctx.get('mhz_per_cpu')} MHz, "
          f"{ctx.get('host_name')}, {ctx.get('date')}")
    print(f"{'benchmark':42} {'cotask ns/op median (min-max)':>32} "
          f"{'asyncio ns/op median':>22} {'asyncio/cotask':>15}")
    for name, figures in cotask.items():
        m = statistics.median(figures)
        line = f"{name:42} {fmt(m):>10} ({fmt(min(figures))}-{fmt(max(figures))})".ljust(76)
        base = name.split("/")[0]
        if base in asyncio:
            a = statistics.median(asyncio[base])
            line += f" {fmt(a):>22} {a / m:>14.1f}x"
        print(line)
        print(f"RESULT {name} cotask_ns_per_op={m:.1f}" +
              (f" asyncio_ns_per_op={statistics.median(asyncio[base]):.1f}"
               f" ratio={statistics.median(asyncio[base]) / m:.1f}" if base in asyncio else ""))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
