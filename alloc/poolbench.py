"""python -m alloc.poolbench: ns per page from a PagePool by refill strategy (a C loop, no Python per page).

Two cases, as page_pool meets them:
  release  every page leaves the pool's reach (XDP_REDIRECT in 5.13): the pages are
           handed back to the allocator in untimed batches, so every page timed is
           new and the slow path (1 or 64 pages per refill) runs on the timed path;
  direct   every page is recycled into the cache at once (XDP_DROP): the fast path.
Rounds interleave the strategies; the figure is the median. --json prints a document.
Time is the thread's CPU time by default (--clock thread: a busy machine's
preemptions are not counted); --clock wall times with CLOCK_MONOTONIC.
Beside ours: Jesper Dangaard Brouer's page_bench04_bulk (kernel-reference.md, Figures).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import clikit
from alloc import Allocator
from alloc._pool import STRATEGIES, PagePool
from alloc.benchmeta import host_meta

#: page_bench04_bulk v5, ns per page: single 55.472; array at bulk 64 30.6 (cycles 110 at ~3.6 GHz)
KERNEL_NS = {"single": 55.472, "array": 30.6}


def measure(pages: int = 1_000_000, rounds: int = 5, arena_mib: int = 64, modes=("release", "direct"),
            clock: str = "thread") -> dict:
    alloc = Allocator(arena_mib)
    out = {m: {s: [] for s in STRATEGIES} for m in modes}
    slow = {m: {s: 0 for s in STRATEGIES} for m in modes}
    for r in range(rounds):
        order = [STRATEGIES[(k + r) % len(STRATEGIES)] for k in range(len(STRATEGIES))]
        for mode in modes:
            for s in order:
                pool = PagePool(alloc, s)
                pool.time_alloc(min(pages, 100_000), mode, clock=clock)          # warm the per-thread lists
                ns, n, slow_calls = pool.time_alloc(pages, mode, clock=clock)
                pool.close()
                out[mode][s].append(ns)
                slow[mode][s] = slow_calls
    alloc.drain_all()
    left = alloc.stats()["allocated"]
    alloc.check()
    return {"schema": "nfsbulk-poolbench/2", "meta": host_meta(), "pages": pages, "rounds": rounds,
            "allocated_after": left, "clock": clock,
            "ns_per_page": {m: {s: statistics.median(v) for s, v in d.items()} for m, d in out.items()},
            "slow_calls": slow, "all": out, "kernel_ns_per_page": KERNEL_NS}


def format_table(doc: dict) -> str:
    lines = ["page_pool microbenchmark: ns per page from the pool (C loop, %s time, median of %d rounds of %s pages)"
             % ({"thread": "thread CPU", "wall": "wall"}.get(doc.get("clock"), "?"), doc["rounds"],
                format(doc["pages"], ","))]
    for mode, d in doc["ns_per_page"].items():
        base = d.get("single")
        parts = []
        for s, ns in d.items():
            parts.append("%s %.1f ns%s" % (s, ns, "" if s == "single" else " (%.2fx faster)" % (base / ns)))
        lines.append("  %-8s %s  [slow-path calls: %s]" % (mode + ":", "; ".join(parts), ", ".join(
            "%s %s" % (s, format(v, ",")) for s, v in doc["slow_calls"][mode].items())))
    lines.append("  kernel (page_bench04_bulk v5): single %.1f ns; array at bulk 64 %.1f ns (%.2fx)"
                 % (KERNEL_NS["single"], KERNEL_NS["array"], KERNEL_NS["single"] / KERNEL_NS["array"]))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m alloc.poolbench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    clikit.add_version(p, "alloc.poolbench")
    p.add_argument("--pages", type=clikit.int_arg(1, 10**9, "pages"), default=1_000_000,
                   help="pages timed per strategy, mode and round (default 1,000,000)")
    p.add_argument("--rounds", type=clikit.int_arg(1, 10**6, "rounds"), default=5,
                   help="interleaved rounds; the figure is the median (default 5)")
    p.add_argument("--clock", choices=("thread", "wall"), default="thread",
                   help="thread: the thread's CPU time (default; robust on a busy machine); wall: CLOCK_MONOTONIC")
    p.add_argument("--json", action="store_true", help="print the JSON document instead of the table")
    a = p.parse_args(argv)
    doc = measure(a.pages, a.rounds, clock=a.clock)
    print(json.dumps(doc) if a.json else format_table(doc))
    return 0 if doc["allocated_after"] == 0 else 1


if __name__ == "__main__":
    sys.exit(clikit.run_main("alloc.poolbench", main))
