"""python -m alloc.bench: what it costs to refill the holes of a page array, per array size.

Each sample releases `holes` pages of a full page array of `slots` slots with one
free_pages_bulk() (the reply pages a request released: slots [1, 1 + holes),
or every slot for `all`), then refills them with one strategy through the public
Python API exactly as the server calls it; the two are timed separately. That
is one nfsd thread's steady state: its own array, its own per-thread list.
(--arrays N > 1 cycles N arrays per sample, so N * holes pages pass through
the per-thread list at once and spill into the buddy lists.) The array sizes
(--slots) are those of a server's maximum payload: 259 (rq_pages for 1 MiB
before Linux 6.16, the seed's), 260 and 1028 (svc_serv_maxpages() for 1 MiB
and 4 MiB); the question is how each strategy's cost grows with the array
when the holes do not.

Timing: perf_counter_ns around each step. The cost of an empty step (the
clock reads, the call and the loop over the arrays, measured as a `null`
strategy in the same rounds) is subtracted and reported as
timer_overhead_ns. Strategies are interleaved inside every round, the
starting strategy rotating, so drift on a shared machine hits all alike;
figures are medians over rounds.

Strategies: the svc_alloc_arg table of alloc.strategies. single, list,
array, range and nfree run compiled (Allocator.svc_refill from C, one call
per sample: what rpcsrv's fast path runs); single-py runs the Python loop
through the public API (what a Python server would pay per hole). Slots
visited per call are reported beside the times.
"""

from __future__ import annotations

import argparse
import gc
import platform
import signal
import statistics
import sys
import threading
import time

import alloc
import clikit
from alloc.benchmeta import host_meta
from alloc.strategies import STRATEGIES as SVC_STRATEGIES
from alloc.strategies import Holes

STRATEGIES = tuple(SVC_STRATEGIES)
#: hole counts per sample; "all" is every slot of the array
HOLES = (1, 16, 64, "all")
#: array sizes: the seed's 259, and svc_serv_maxpages() for 1 MiB and 4 MiB
SLOTS = (alloc.RPCSVC_MAXPAGES, alloc.svc_serv_maxpages(1 << 20), alloc.svc_serv_maxpages(4 << 20))
NSLOTS = alloc.RPCSVC_MAXPAGES


def _window(holes: int, nslots: int):
    start = 0 if holes >= nslots else 1
    return start, start + holes


def _no_memory(seq):
    raise MemoryError("arena exhausted")


def make_refill(strategy: str, allocator, holes: int, nslots: int = NSLOTS):
    """Return fn(arrays) -> slots visited, refilling every array's holes with `strategy` (no
    timing inside). The holes are a reply's released range [start, stop)."""
    start, stop = _window(holes, nslots)
    if strategy not in SVC_STRATEGIES:
        raise ValueError("unknown strategy %r" % strategy)
    lst = allocator.page_list()
    sid = SVC_STRATEGIES[strategy].compiled
    if sid is not None:
        refill_c = allocator.svc_refill_compiled

        def refill(arrays):
            n = 0
            for arr in arrays:
                n += refill_c(sid, arr, start, stop, lst, 0, start, stop)
            return n
        return refill
    fn = SVC_STRATEGIES[strategy].refill
    h = Holes()

    def refill(arrays):
        h.scanned = 0
        for arr in arrays:
            h.clear()
            h.released(start, stop)
            fn(allocator, arr, lst, h, _no_memory)
        return h.scanned
    return refill


def _null(arrays):
    for arr in arrays:
        pass


def make_free(allocator, holes: int, nslots: int = NSLOTS):
    """Return fn(arrays) releasing every array's holes with one free_pages_bulk() each."""
    start, stop = _window(holes, nslots)
    free_bulk = allocator.free_pages_bulk

    def release(arrays):
        for arr in arrays:
            free_bulk(arr, start, stop)
    return release


def _holes_for(holes_list, nslots):
    out = []
    for h in holes_list:
        n = nslots if h == "all" else int(h)
        if n <= nslots and n not in out:
            out.append(n)
    return out


def _round(r, points, frees, pas, strategies, refills, clock, free_samples, samples, scanned, null_samples):
    """One round: every (slots, holes) point, every strategy once, the first rotating with r."""
    for n, h in points:
        release = frees[(n, h)]
        arrs = pas[n]
        k = len(strategies)
        for i in range(k):
            s = strategies[(i + r) % k]
            refill = refills[(s, n, h)]
            t0 = clock()
            release(arrs)
            t1 = clock()
            v = refill(arrs)
            t2 = clock()
            _null(arrs)
            t3 = clock()
            free_samples[(n, h)].append(t1 - t0)
            samples[(s, n, h)].append(t2 - t1)
            scanned[(s, n, h)] = v
            null_samples.append(t3 - t2)
        for arr in arrs:
            if arr.count_empty():
                raise AssertionError("a refill left holes")


def run(rounds: int = 1000, arrays: int = 1, arena_mib: int = 1024, holes_list=HOLES,
        strategies=STRATEGIES, progress=None, slots_list=(NSLOTS,)) -> dict:
    """Run the benchmark; returns the JSON-ready result dict (results[slots][strategy][holes]).

    An interrupt (SIGINT, or SIGTERM through clikit) ends it after the last whole round: the
    result covers the rounds that finished (config.rounds_done) and is marked interrupted; with
    none finished, KeyboardInterrupt goes on up."""
    allocator = alloc.Allocator(arena_mib, debug=False)
    pas = {n: [allocator.page_array(n) for _ in range(arrays)] for n in slots_list}
    for n, arrs in pas.items():
        for arr in arrs:
            while allocator.alloc_pages_bulk_array(n, arr) < n:
                pass
    points = [(n, h) for n in slots_list for h in _holes_for(holes_list, n)]
    refills = {(s, n, h): make_refill(s, allocator, h, n) for s in strategies for n, h in points}
    frees = {(n, h): make_free(allocator, h, n) for n, h in points}
    samples = {k: [] for k in refills}
    scanned = {k: 0 for k in refills}
    free_samples = {k: [] for k in frees}
    null_samples = []
    clock = time.perf_counter_ns
    gc_was = gc.isenabled()
    gc.disable()
    done, interrupted = 0, False
    # SIGINT/SIGTERM only mark the stop; the loop ends at the next round's edge. A KeyboardInterrupt
    # raised wherever the signal lands could be swallowed on the way ("Exception ignored" in a
    # callback from compiled code), and the run would go on to its last round.
    stop = []
    restore = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            restore[sig] = signal.signal(sig, lambda signum, frame: stop.append(signum))
    try:
        for r in range(rounds):
            if stop:
                raise KeyboardInterrupt
            _round(r, points, frees, pas, strategies, refills, clock, free_samples, samples, scanned, null_samples)
            done = r + 1
            if progress and (r == 0 or (r + 1) % max(1, rounds // 10) == 0):
                progress(r + 1, rounds)         # the first round too: the run is under way
        if stop:
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        # a round cut short is dropped whole: every round appends one sample per key
        interrupted = True
        k = len(strategies)
        for key in samples:
            del samples[key][done:]
        for key in free_samples:
            del free_samples[key][done * k:]
        del null_samples[done * k * len(points):]
    finally:
        for sig, handler in restore.items():
            signal.signal(sig, handler)
        if gc_was:
            gc.enable()
    st = allocator.stats()
    for arrs in pas.values():
        for arr in arrs:
            allocator.free_pages_bulk(arr)
    if not done:
        raise KeyboardInterrupt
    overhead = statistics.median(null_samples)

    def per_call(xs):
        return max(0.0, (statistics.median(xs) - overhead) / arrays)

    results = {}
    for n, h in points:
        per = results.setdefault(str(n), {})
        for s in strategies:
            med = per_call(samples[(s, n, h)])
            per.setdefault(s, {})[str(h)] = {"ns_per_call": round(med, 1), "ns_per_page": round(med / h, 2),
                                             "slots_scanned": scanned[(s, n, h)] // arrays}
    return {
        "schema": "nfsbulk-alloc-bench/3",
        "meta": host_meta(),
        "page_size": alloc.PAGE_SIZE,
        "results": results,
        "free": {str(n): {str(h): {"ns_per_call": round(per_call(free_samples[(n, h)]), 1)}
                          for m, h in points if m == n} for n in slots_list},
        "timer_overhead_ns": overhead,
        "interrupted": interrupted,
        "config": {"rounds": rounds, "rounds_done": done, "arrays_per_sample": arrays, "arena_mib": arena_mib,
                   "slots": list(slots_list), "implementation": alloc.IMPLEMENTATION,
                   "python": sys.version.split()[0], "machine": platform.machine(),
                   "zones": {z: {k: v[k] for k in ("pages", "batch", "high", "watermarks")}
                             for z, v in st["zones"].items()}},
        "allocator_counters": {k: st[k] for k in ("calls", "pages", "fallbacks", "failures", "drain_all")},
    }


def checks(res: dict) -> list[tuple[str, float, str, bool]]:
    """The seed's targets, on the 259-slot array, as (name, value, target, met)."""
    r = res["results"].get(str(NSLOTS), {})
    out = []

    def get(s, h, k="ns_per_call"):
        return r.get(s, {}).get(str(h), {}).get(k)

    if get("array", 259) is not None:
        v = get("array", 259) / 1000
        out.append(("array @259 us/call", v, "<= 2.0", v <= 2.0))
    if get("array", 16) is not None:
        v = get("array", 16) / 1000
        out.append(("array @16 us/call", v, "<= 0.4", v <= 0.4))
    for h, target in ((259, 10), (16, 4)):
        if get("single-py", h) and get("array", h):
            v = get("single-py", h) / get("array", h)
            out.append(("single-py/array @%d" % h, v, ">= %g" % target, v >= target))
    if get("array", 64, "ns_per_page") and get("single", 64, "ns_per_page"):
        v = get("array", 64, "ns_per_page") / get("single", 64, "ns_per_page")
        out.append(("array/single per page @64", v, "<= 0.6", v <= 0.6))
    return out


def format_table(res: dict) -> str:
    lines = []
    for n, r in res["results"].items():
        holes = sorted({int(h) for s in r.values() for h in s})
        head = "%-9s" % "strategy" + "".join("%22s" % ("%d holes" % h) for h in holes) + "   slots visited"
        lines.append("svc_alloc_arg refill of a %s-slot page array, median ns per call (ns per page)" % n)
        lines.append(head)
        lines.append("-" * len(head))
        for s, per in r.items():
            cells = "".join("%22s" % ("%.0f (%.1f)" % (per[str(h)]["ns_per_call"], per[str(h)]["ns_per_page"]))
                            for h in holes)
            visited = "/".join(str(per[str(h)]["slots_scanned"]) for h in holes)
            lines.append("%-9s" % s + cells + "   " + visited)
        lines.append("%-9s" % "free" + "".join("%22s" % ("%.0f" % res["free"][n][str(h)]["ns_per_call"])
                                               for h in holes))
        if "single" in r:
            lines.append("ratio single / strategy (per call):")
            for s in r:
                if s == "single":
                    continue
                lines.append("%-9s" % s + "".join(
                    "%22s" % ("%.2fx" % (r["single"][str(h)]["ns_per_call"] / r[s][str(h)]["ns_per_call"])
                              if r[s][str(h)]["ns_per_call"] else "n/a") for h in holes))
        lines.append("")
    if len(res["results"]) > 1:
        lines.append("the same holes in a larger array (ns per call, largest / smallest array):")
        sizes = list(res["results"])
        small, large = res["results"][sizes[0]], res["results"][sizes[-1]]
        for s in small:
            common = [h for h in small[s] if h in large.get(s, {}) and int(h) < int(sizes[0])]
            lines.append("%-9s" % s + "".join(
                "%22s" % ("%d holes %.2fx" % (int(h), large[s][h]["ns_per_call"] / small[s][h]["ns_per_call"])
                          if small[s][h]["ns_per_call"] else "n/a") for h in common))
        lines.append("")
    lines.append("(timer overhead of %.0f ns per sample subtracted; %d rounds, %d array(s) per sample)"
                 % (res["timer_overhead_ns"], res["config"]["rounds"], res["config"]["arrays_per_sample"]))
    lines.append("kernel (Chuck Lever, NFSv3 256 KB r/w, 5.13 v6 series): single 25.007 us, list 6.258 us, "
                 "array 4.590 us per call (5.45x); page_bench04: 199 vs 110 cycles/page at 64 (0.55)")
    checked = checks(res)
    if checked:
        lines.append("")
        lines.append("targets (the %d-slot array):" % NSLOTS)
        for name, v, target, met in checked:
            lines.append("  %-30s %8.3f  %-8s %s" % (name, v, target, "met" if met else "NOT MET"))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m alloc.bench",
        description="Time refilling the holes of page arrays of several sizes with each allocation strategy "
                    "(single, list, array, range, nfree compiled; single-py through the Python API); print a "
                    "table and optionally write JSON. SIGINT or SIGTERM ends it after the last whole round; "
                    "what finished is printed and written, marked interrupted (exit 130).")
    clikit.add_version(p, "alloc.bench")
    p.add_argument("--rounds", type=clikit.int_arg(1, 10**9, "rounds"), default=1000,
                   help="interleaved rounds; medians over them (default 1000)")
    p.add_argument("--arrays", type=clikit.int_arg(1, 4096, "arrays"), default=1,
                   help="page arrays cycled per timed sample, time divided by this (default 1: one "
                        "thread's steady state; more spills pages from the per-thread list)")
    p.add_argument("--arena-mib", type=clikit.int_arg(1, 1 << 20, "MiB"), default=1024,
                   help="allocator arena size in MiB (default 1024: batch 63, high 378 as the kernel's)")
    p.add_argument("--slots", default=",".join(map(str, SLOTS)),
                   help="comma-separated page-array sizes, each 8..%d (default %s: the seed's 259, and "
                        "svc_serv_maxpages() for 1 MiB and 4 MiB payloads)"
                        % (alloc.svc_serv_maxpages(alloc.MAX_BLOCK_SIZE), ",".join(map(str, SLOTS))))
    p.add_argument("--holes", default=",".join(map(str, HOLES)),
                   help="comma-separated hole counts, or all for every slot of the array (default 1,16,64,all); "
                        "counts larger than an array are skipped for it")
    p.add_argument("--strategies", default=",".join(STRATEGIES),
                   help="comma-separated subset of %s" % ",".join(STRATEGIES))
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE (checked before the run)")
    a = p.parse_args(argv)
    err = clikit.probe_output("--json", a.json)
    if err:
        p.error(err)
    try:
        slots = tuple(int(x) for x in a.slots.split(","))
    except ValueError:
        p.error("--slots: comma-separated integers expected")
    top = alloc.svc_serv_maxpages(alloc.MAX_BLOCK_SIZE)
    if any(not 8 <= n <= top for n in slots):
        p.error("--slots: each must be in 8..%d" % top)
    holes = []
    for x in a.holes.split(","):
        x = x.strip()
        if x == "all":
            holes.append("all")
            continue
        try:
            holes.append(int(x))
        except ValueError:
            p.error("--holes: comma-separated integers or all expected")
    if any(h != "all" and not 1 <= h <= max(slots) for h in holes):
        p.error("--holes: each must be in 1..%d (the largest --slots) or all" % max(slots))
    strategies = tuple(s.strip() for s in a.strategies.split(","))
    bad = [s for s in strategies if s not in STRATEGIES]
    if bad:
        p.error("--strategies: unknown %s (choose from %s)" % (",".join(bad), ",".join(STRATEGIES)))
    if a.arena_mib * 256 < a.arrays * sum(slots) * 2:
        p.error("--arena-mib too small for %d arrays of each size (%s pages)" % (a.arrays, ",".join(map(str, slots))))

    def progress(done, total):
        print("  round %d/%d" % (done, total), file=sys.stderr, flush=True)

    print("alloc.bench: %d rounds x %d arrays, slots %s, strategies %s, holes %s (%s allocator)"
          % (a.rounds, a.arrays, ",".join(map(str, slots)), ",".join(strategies), ",".join(map(str, holes)),
             alloc.IMPLEMENTATION), file=sys.stderr, flush=True)
    res = run(a.rounds, a.arrays, a.arena_mib, tuple(holes), strategies, progress, slots)
    print(format_table(res))
    if a.json:
        clikit.write_json(a.json, res)
        print("\nJSON written to %s" % a.json)
    if res["interrupted"]:
        print("alloc.bench: interrupted after %d of %d rounds; the figures above cover those"
              % (res["config"]["rounds_done"], a.rounds), file=sys.stderr)
        return clikit.EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(clikit.run_main("alloc.bench", main))
