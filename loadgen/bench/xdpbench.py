"""loadgen bench --udp-pps (the default --udp-path xdp): page_pool's refill strategy under a lean receive path.

What it measures
----------------
rpcsrv runs with `--udp --udp-xdp VERDICT --udp-recycle RECYCLE`: its
receive thread is the compiled loop (rpcsrv/xprt/_udpfast.pyx: recvmmsg
batches into page_pool pages, NULL calls answered or dropped in C). The
compiled flood (loadgen/flood/xdpflood.py) sends NFSv3 NULL calls from --clients
processes at most --udp-rate datagrams/s each. With recycle `release` (the
default) every datagram's page goes back to the page allocator, as a page
redirected out of the pool (XDP_REDIRECT, what the 5.13 figures measured),
so every datagram needs a fresh page and the refill strategy is on the hot
path; the per-datagram cost left around it is a few hundred ns to a few us,
not the Python path's ~14 us, so a difference of ~15 ns per page can show.

Datagrams/s (calls_per_s) is what the XDP figures are: packets per second
one receive core sustains, here datagrams per second of the receive
thread's CPU time in its batches. On a shared 2-core machine the wall-clock
rate (wall_calls_per_s, datagrams per second of wall time the loop ran
with the strategy, preemptions included) measures the scheduler as much as
the loop; it is in the JSON for completeness. The waits (poll, coalescing
sleep) are charged to no strategy (rpcsrv/xprt/_udpfast.pyx).

Design: by default (--udp-interleave 16) one server per round rotates the
refill strategy every 16 receive batches (its cache flushed at each switch)
and charges the receive thread's CPU time (CLOCK_THREAD_CPUTIME_ID) and
datagrams to the strategy in use: all three see the same load, so the
machine's other work does not fall on one of them. The measured window of
a round is cut into --udp-block second blocks (scrapes of the server's
/metrics); each block gives, per strategy, rx CPU ns per datagram and
datagrams/s (datagrams / wall time with that strategy). With
--udp-interleave 0 each strategy gets its own server per round (rounds
interleaved, the order rotating) and a block is a whole run.

Statistics (self-contained here): per strategy the mean over blocks with a
Student-t 95 % CI; against single the paired per-block differences, their
mean and 95 % CI; for datagrams/s the ratio of means and the CI of the
paired relative difference. The prediction beside the live delta is
python -m alloc.poolbench's per-page cost difference (release case: every
page new) x the pages the pool handed out per datagram (cache hits plus
slow-path pages, from the nfsbulk_pool_* counters; 1 with recycle release).
That ratio is taken over each server's whole flood, between a scrape
before the flood starts and one once the loop is idle after it: the pool's
and the loop's counters are read by two collectors at slightly different
moments, and while datagrams arrive a scrape can catch a batch counted by
one and not yet by the other. Idle, the two agree up to the receive ring's
pre-filled pages.

This module imports neither alloc nor rpcsrv (poolbench runs as a subprocess).
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import sys
import tempfile
import time

from . import ci
from .harness import BenchError, bench_outcome, bench_root, start_udp_server
from ..common.serverproc import leaked_pages
from .strategies import KERNEL_XDP
from ..flood.udpflood import FloodError as UdpFloodError, mount_root
from ..flood.xdpflood import FloodError, XdpFlood, getattr_call, null_call

POOL_STRATEGIES = ("single", "list", "array")
LABELS = {"single": "Single page", "list": "Bulk list", "array": "Bulk array"}
KERNEL_LABELS = {"single": "Baseline", "list": "List", "array": "Array"}
SCHEMA = "nfsbulk-udp-pps-xdp/1"


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with df degrees of freedom (two-sided 95 %); nan below 1
    (one block: no interval). The table is loadgen.bench.ci's."""
    return ci.t975(df) if df >= 1 else float("nan")


def mean_ci(xs) -> tuple[float, list]:
    """(mean, [low, high]) with a Student-t 95 % CI; NaNs dropped; one value gives a NaN interval."""
    xs = [x for x in xs if x == x]
    if not xs:
        return float("nan"), [float("nan"), float("nan")]
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return m, [float("nan"), float("nan")]
    h = t975(len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))
    return m, [m - h, m + h]


# --------------------------------------------------------------------------- one server
def _by_strategy(m: dict) -> dict:
    """{strategy: {datagrams, cpu_s, wall_s}} from one scrape of the compiled loop's counters."""
    out, verdicts = {}, {}
    for (name, labels), v in m.items():
        lab = dict(labels)
        s = lab.get("strategy")
        if s is None:
            continue
        acc = out.setdefault(s, {"datagrams": 0.0, "cpu_s": 0.0, "wall_s": 0.0, "batches": 0.0})
        if name == "nfsbulk_udp_xdp_batches_total":
            acc["batches"] += v
        elif name == "nfsbulk_udp_xdp_datagrams_total":
            acc["datagrams"] += v
            verdicts[lab.get("verdict", "?")] = verdicts.get(lab.get("verdict", "?"), 0) + v
        elif name == "nfsbulk_udp_xdp_rx_cpu_seconds_total":
            acc["cpu_s"] += v
        elif name == "nfsbulk_udp_xdp_rx_wall_seconds_total":
            acc["wall_s"] += v
    # pages the pool handed out: cache hits + slow-path calls that got a page (each serves one)
    pages = sum(v for (n, _), v in m.items() if n in ("nfsbulk_pool_alloc_fast_total", "nfsbulk_pool_alloc_slow_total"))
    pages -= sum(v for (n, _), v in m.items() if n == "nfsbulk_pool_alloc_empty_total")
    return {"strategies": out, "pages_served": pages, "verdicts": verdicts}


def _counts(scrape: dict) -> tuple[float, float]:
    """(datagrams of every strategy, pages served) of one scrape."""
    return sum(v["datagrams"] for v in scrape["strategies"].values()), scrape["pages_served"]


def _idle_scrape(srv, patience: float = 5.0) -> tuple[dict, bool]:
    """A scrape once the loop has stopped counting (two in a row, 50 ms apart, agree on datagrams
    and pages), and whether it did stop within `patience` seconds (else the last scrape)."""
    prev = _by_strategy(srv.scrape())
    deadline = time.monotonic() + patience
    while True:
        time.sleep(0.05)                              # polling interval of a condition with a deadline
        cur = _by_strategy(srv.scrape())
        if _counts(cur) == _counts(prev):
            return cur, True
        if time.monotonic() > deadline:
            return cur, False
        prev = cur


def _block(a: dict, b: dict, strategies) -> dict:
    """Per strategy figures of the block between scrapes a and b."""
    out = {}
    for s in strategies:
        x, y = a["strategies"].get(s, {}), b["strategies"].get(s, {})
        n = y.get("datagrams", 0) - x.get("datagrams", 0)
        cpu = y.get("cpu_s", 0) - x.get("cpu_s", 0)
        wall = y.get("wall_s", 0) - x.get("wall_s", 0)
        nb = y.get("batches", 0) - x.get("batches", 0)
        out[s] = {"datagrams": n, "batches": nb, "rx_cpu_ns_per_datagram": cpu * 1e9 / n if n > 0 else float("nan"),
                  "calls_per_s": n / cpu if cpu > 0 else float("nan"),
                  "wall_calls_per_s": n / wall if wall > 0 else float("nan")}
    return out


def run_server(strategies, start_strategy: str, root: str, opts: dict) -> tuple[list, dict]:
    """One server and one flood; returns (blocks, totals) over the measured window."""
    export = tempfile.mkdtemp(prefix="xdp-", dir=root)
    extra = ["--udp", "--pool-strategy", start_strategy, "--udp-threads", "1", "--udp-recycle", opts["udp_recycle"],
             "--udp-xdp", opts["verdict"], "--udp-interleave", str(opts["interleave"]),
             "--udp-coalesce-us", str(opts["coalesce_us"])]
    srv = start_udp_server(export, opts, extra)
    flood = None
    try:
        port = srv.port
        nblocks = max(1, int(round(opts["time"] / opts["block"])))
        templates = [null_call()]
        if opts["op"] != "null":
            ga = getattr_call(mount_root("127.0.0.1", port, export))
            templates = [ga] if opts["op"] == "getattr" else [null_call(), ga]
        before = _by_strategy(srv.scrape())           # no flood yet: the loop is idle
        flood = XdpFlood("127.0.0.1", port, procs=opts["clients"], rate=opts["rate"], drain=opts["verdict"] == "tx",
                         duration=opts["warmup"] + nblocks * opts["block"] + 0.5, templates=templates).start()
        t0 = time.monotonic()
        time.sleep(opts["warmup"])                    # a benchmark's schedule, not a test's synchronisation
        scrapes = [_by_strategy(srv.scrape())]
        for k in range(nblocks):
            delay = t0 + opts["warmup"] + (k + 1) * opts["block"] - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            scrapes.append(_by_strategy(srv.scrape()))
        fl = flood.wait()
        flood = None
        after, idle = _idle_scrape(srv)
    except (FloodError, UdpFloodError) as e:
        raise BenchError("UDP flood: %s" % e)
    finally:
        if flood is not None:
            flood.stop()
        code, err = srv.stop()
        shutil.rmtree(export, ignore_errors=True)
    if code != 0:
        raise BenchError("rpcsrv exited with status %d: %s" % (code, err[-1500:]))
    leaked = leaked_pages(err)
    if leaked != 0:
        raise BenchError("rpcsrv left %d allocator pages allocated after the flood" % leaked)
    blocks = [_block(a, b, strategies) for a, b in zip(scrapes, scrapes[1:])]
    first, last = scrapes[0], scrapes[-1]
    dg = sum(last["strategies"].get(s, {}).get("datagrams", 0) - first["strategies"].get(s, {}).get("datagrams", 0)
             for s in strategies)
    verdicts = {k: int(v - first["verdicts"].get(k, 0)) for k, v in last["verdicts"].items()}
    whole = [b - a for a, b in zip(_counts(before), _counts(after))]
    return blocks, {"datagrams": dg, "verdicts": verdicts, "flood": fl, "pages_leaked": leaked,
                    "flood_datagrams": whole[0], "flood_pages_served": whole[1], "idle_at_end": idle}


# --------------------------------------------------------------------------- figures
def summarize(blocks: list, strategies, pb: dict | None, pages_per_datagram: float) -> tuple[dict, dict]:
    res, comp = {}, {}
    for s in strategies:
        cpu = [b[s]["rx_cpu_ns_per_datagram"] for b in blocks]
        pps = [b[s]["calls_per_s"] for b in blocks]
        m, ci = mean_ci(cpu)
        pm, pci = mean_ci(pps)
        wm, wci = mean_ci([b[s].get("wall_calls_per_s", float("nan")) for b in blocks])
        res[s] = {"calls_per_s": pm, "calls_per_s_ci95": pci, "wall_calls_per_s": wm, "wall_calls_per_s_ci95": wci,
                  "rx_cpu_ns_per_datagram": m,
                  "rx_cpu_ns_per_datagram_ci95": ci, "datagrams": int(sum(b[s]["datagrams"] for b in blocks)),
                  "datagrams_per_batch": (sum(b[s]["datagrams"] for b in blocks)
                                          / max(1, sum(b[s].get("batches", 0) for b in blocks))),
                  "blocks": len(blocks)}
    rel = (pb or {}).get("ns_per_page", {}).get("release", {})
    base = res.get("single")
    for s in strategies:
        if s == "single" or base is None:
            continue
        d = [b[s]["rx_cpu_ns_per_datagram"] - b["single"]["rx_cpu_ns_per_datagram"] for b in blocks]
        dm, dci = mean_ci(d)
        r = [b[s]["calls_per_s"] / b["single"]["calls_per_s"] - 1 for b in blocks if b["single"]["calls_per_s"] > 0]
        rm, rci = mean_ci(r)
        pred = (rel[s] - rel["single"]) * pages_per_datagram if s in rel and "single" in rel else float("nan")
        comp[s] = {
            "rx_cpu_ns_per_datagram": {"delta": dm, "delta_ci95": dci, "predicted_delta": pred,
                                       "live_over_predicted": dm / pred if pred else float("nan"),
                                       "delta_pct": dm / base["rx_cpu_ns_per_datagram"] * 100},
            "calls_per_s": {"ratio": res[s]["calls_per_s"] / base["calls_per_s"] if base["calls_per_s"] else
                            float("nan"), "delta_pct": rm * 100, "delta_pct_ci95": [x * 100 for x in rci]},
        }
    return res, comp


def checks(res: dict, comp: dict) -> dict:
    """The issue's acceptance, read off the figures (None where a strategy is missing)."""
    if "array" not in comp or "list" not in comp:
        return {}
    a, l_ = comp["array"]["rx_cpu_ns_per_datagram"], comp["list"]["rx_cpu_ns_per_datagram"]
    ratio = a["live_over_predicted"]
    return {"array_below_single_ci_excludes_zero": a["delta_ci95"][1] < 0,
            "list_between_array_and_single": a["delta"] <= l_["delta"] <= 0,
            "array_live_within_2x_of_prediction": 0.5 <= ratio <= 2.0 if ratio == ratio else False}


def _ci(ci, fmt="%.1f") -> str:
    return "[%s, %s]" % (fmt % ci[0], fmt % ci[1])


def format_table(doc: dict) -> str:
    o, res, comp = doc["config"], doc["pool_strategies"], doc["pool_comparisons"]
    lines = ["", "== page_pool under the compiled UDP receive loop: NFSv3 %s flood (%d processes, <= %s/s each), "
             "verdict %s, recycle %s, %s; %d round(s) x %d block(s) of %g s after %g s warmup ==" % (
                 {"null": "NULL", "getattr": "root GETATTR", "mix": "NULL + root GETATTR"}[o.get("op", "null")],
                 o["clients"], format(int(o["rate"]), ","), o["verdict"], o["udp_recycle"],
                 "strategies rotated every %d batches" % o["interleave"] if o["interleave"] else "a server per strategy",
                 o["rounds"], doc["blocks_per_round"], o["block"], o["warmup"]), ""]
    lines.append("  %-12s %12s %10s %11s %22s %24s %11s %8s" % (
        "pool", "dgrams/s/core", "vs single", "rx ns/dgram", "95% CI", "delta vs single [95% CI]", "predicted",
        "live/pred"))
    for s, v in res.items():
        c = comp.get(s)
        if c is None:
            lines.append("  %-12s %12s %10s %11.1f %22s %24s %11s %8s" % (
                LABELS[s], format(round(v["calls_per_s"]), ","), "", v["rx_cpu_ns_per_datagram"],
                _ci(v["rx_cpu_ns_per_datagram_ci95"]), "", "", ""))
            continue
        rc = c["rx_cpu_ns_per_datagram"]
        lines.append("  %-12s %12s %+9.2f%% %11.1f %22s %+7.1f %-16s %+8.1f ns %8.2f" % (
            LABELS[s], format(round(v["calls_per_s"]), ","), (c["calls_per_s"]["ratio"] - 1) * 100,
            v["rx_cpu_ns_per_datagram"], _ci(v["rx_cpu_ns_per_datagram_ci95"]), rc["delta"], _ci(rc["delta_ci95"]),
            rc["predicted_delta"], rc["live_over_predicted"]))
    lines.append("  pool pages per datagram: %.3f; prediction = poolbench release ns/page (strategy - single) x that"
                 % doc["pages_per_datagram"])
    lines.append("  datagrams per recvmmsg batch (of at most 64): %s" % ", ".join(
        "%s %.1f" % (s, v["datagrams_per_batch"]) for s, v in res.items()))
    lines.append("  dgrams/s/core: datagrams per second of receive-thread CPU (the XDP sense of pps); wall-clock "
                 "rates: %s" % ", ".join("%s %s/s" % (s, format(round(v["wall_calls_per_s"]), ","))
                                         for s, v in res.items() if v["wall_calls_per_s"] == v["wall_calls_per_s"]))
    lines.append("")
    lines.append("  XDP form (packets/s and delta against single):")
    lines.append("  %-12s %14s %10s %22s   %-10s %12s %10s" % ("ours", "dgrams/s/core", "vs single", "95% CI of delta",
                                                               "kernel", "XDP-RX pps", "vs single"))
    for s, v in res.items():
        c = comp.get(s)
        k = KERNEL_XDP.get(s)
        kd = (k / KERNEL_XDP["single"] - 1) * 100 if k else float("nan")
        lines.append("  %-12s %14s %10s %22s   %-10s %12s %+9.2f%%" % (
            LABELS[s], format(round(v["calls_per_s"]), ","),
            "%+.2f%%" % ((c["calls_per_s"]["ratio"] - 1) * 100) if c else "",
            _ci(c["calls_per_s"]["delta_pct_ci95"], "%+.2f%%") if c else "", KERNEL_LABELS[s],
            format(k, ",") if k else "-", kd))
    if doc.get("checks"):
        lines.append("  checks: " + "; ".join("%s: %s" % (k.replace("_", " "), "yes" if v else "NO")
                                             for k, v in doc["checks"].items()))
    pb = doc.get("poolbench")
    if pb:
        lines.append("  page_pool alone (python -m alloc.poolbench, release case, median of %d rounds): %s" % (
            pb["rounds"], "; ".join("%s %.1f ns/page" % (s, ns) for s, ns in pb["ns_per_page"]["release"].items())))
    lines.append("  flood: %s datagrams sent, %s send errors, %s replies; server: %s datagrams in the windows (%s)" % (
        format(doc["flood"]["sent"], ","), format(doc["flood"]["send_errors"], ","),
        format(doc["flood"]["replies"], ","), format(int(doc["datagrams"]), ","),
        ", ".join("%s %s" % (k, format(v, ",")) for k, v in sorted(doc.get("verdicts", {}).items()))))
    return "\n".join(lines)


def plot(path: str, doc: dict) -> None:
    """Two panels: the rx CPU per datagram deltas against single (95 % CIs) beside the prediction;
    datagrams/s per receive core against single beside the kernel's XDP-RX figures."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    res, comp = doc["pool_strategies"], doc["pool_comparisons"]
    names = list(res)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    others = [s for s in names if s in comp]
    d = [comp[s]["rx_cpu_ns_per_datagram"]["delta"] for s in others]
    err = [[v - comp[s]["rx_cpu_ns_per_datagram"]["delta_ci95"][0] for s, v in zip(others, d)],
           [comp[s]["rx_cpu_ns_per_datagram"]["delta_ci95"][1] - v for s, v in zip(others, d)]]
    a1.bar(others, d, yerr=err, capsize=6, color="#5b8def", label="live: paired delta (95% CI)")
    a1.plot(others, [comp[s]["rx_cpu_ns_per_datagram"]["predicted_delta"] for s in others], "kD",
            label="poolbench x pages/datagram")
    a1.axhline(0, color="k", lw=0.8)
    a1.set_ylabel("rx CPU ns per datagram, minus single's")
    a1.set_title("compiled UDP receive loop (single: %.0f ns/datagram), recycle=%s" % (
        res["single"]["rx_cpu_ns_per_datagram"], doc["config"]["udp_recycle"]), fontsize=10)
    a1.legend(loc="lower left")
    x = range(len(names))
    ours = [(comp[s]["calls_per_s"]["ratio"] - 1) * 100 if s in comp else 0.0 for s in names]
    kern = [(KERNEL_XDP[s] / KERNEL_XDP["single"] - 1) * 100 for s in names]
    a2.bar([i - 0.2 for i in x], ours, width=0.4, label="ours: datagrams/s per receive core")
    a2.bar([i + 0.2 for i in x], kern, width=0.4, label="kernel XDP-RX pps")
    a2.set_xticks(list(x))
    a2.set_xticklabels(names)
    a2.axhline(0, color="k", lw=0.8)
    a2.set_ylabel("% vs single")
    a2.set_title("XDP form: packets/s against single")
    a2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(args, poolbench) -> int:
    strategies = [s.strip() for s in args.pool_strategies.split(",") if s.strip()]
    if not strategies or any(s not in POOL_STRATEGIES for s in strategies) or "single" not in strategies:
        print("loadgen bench: --pool-strategies takes %s (single included: the baseline)" % ",".join(POOL_STRATEGIES),
              file=sys.stderr)
        return 2
    if args.udp_interleave and set(strategies) != set(POOL_STRATEGIES):
        print("loadgen bench: --udp-interleave rotates all three strategies; use --udp-interleave 0 for a subset",
              file=sys.stderr)
        return 2
    if args.clients < 1 or args.rounds < 1 or args.time <= 0 or args.warmup < 0 or args.udp_block <= 0 \
            or args.udp_interleave < 0 or not 0 < args.udp_rate <= 1e7 or args.udp_threads != 1:
        print("loadgen bench: --clients, --rounds >= 1, --time, --udp-block > 0, --udp-interleave >= 0, "
              "--udp-rate in (0, 1e7], --udp-threads 1 with --udp-path xdp", file=sys.stderr)
        return 2
    opts = {"clients": args.clients, "time": args.time, "warmup": args.warmup, "rounds": args.rounds,
            "threads": args.threads, "arena_mib": args.arena_mib, "udp_recycle": args.udp_recycle,
            "verdict": args.udp_verdict, "rate": args.udp_rate, "interleave": args.udp_interleave,
            "block": args.udp_block, "coalesce_us": args.udp_coalesce_us, "path": "xdp", "op": args.udp_op or "null",
            "pool_strategies": strategies}
    root, tmp = bench_root(args.export, "nfsbulk-xdpbench-")
    if root is None:
        print("loadgen bench: --export %s is not a directory" % args.export, file=sys.stderr)
        return 2
    blocks, totals = [], []
    n = len(strategies)
    with bench_outcome(tmp) as outcome:
        for r in range(args.rounds):
            if args.udp_interleave:
                print("bench: udp-pps (xdp) round %d/%d, strategies rotated in one server" % (r + 1, args.rounds),
                      file=sys.stderr, flush=True)
                b, t = run_server(strategies, "single", root, opts)
                blocks += b
                totals.append(t)
            else:
                per = {}
                for s in [strategies[(k + r) % n] for k in range(n)]:
                    print("bench: udp-pps (xdp) round %d/%d, pool strategy %s" % (r + 1, args.rounds, s),
                          file=sys.stderr, flush=True)
                    b, t = run_server([s], s, root, opts)
                    totals.append(t)
                    tot_n = sum(x[s]["datagrams"] for x in b)
                    per[s] = {"datagrams": tot_n,
                              "rx_cpu_ns_per_datagram": statistics.fmean(
                                  [x[s]["rx_cpu_ns_per_datagram"] for x in b if x[s]["datagrams"]] or [float("nan")]),
                              "calls_per_s": statistics.fmean([x[s]["calls_per_s"] for x in b])}
                blocks.append(per)
        pb = poolbench()
    if outcome.code:
        return outcome.code
    dg = sum(t["datagrams"] for t in totals)
    fdg = sum(t["flood_datagrams"] for t in totals)
    ppd = sum(t["flood_pages_served"] for t in totals) / fdg if fdg else float("nan")
    res, comp = summarize(blocks, strategies, pb, ppd)
    flood = {k: sum(t["flood"][k] for t in totals) for k in ("sent", "send_errors", "replies", "bad_replies")}
    verdicts = {}
    for t in totals:
        for k, v in t["verdicts"].items():
            verdicts[k] = verdicts.get(k, 0) + v
    doc = {"schema": SCHEMA, "config": opts, "pool_strategies": res, "pool_comparisons": comp,
           "checks": checks(res, comp),
           "pages_per_datagram": ppd, "pages_per_datagram_over": {
               "datagrams": int(fdg), "pages_served": int(sum(t["flood_pages_served"] for t in totals)),
               "servers": len(totals), "idle_at_end": all(t["idle_at_end"] for t in totals)},
           "datagrams": dg, "verdicts": verdicts, "blocks_per_round": len(blocks) // args.rounds,
           "blocks": blocks, "flood": flood, "kernel": {"xdp_rx_pps": KERNEL_XDP}, "poolbench": pb,
           "xdp_table": [{"strategy": s, "calls_per_s": v["calls_per_s"],
                          "vs_single_pct": (comp[s]["calls_per_s"]["ratio"] - 1) * 100 if s in comp else 0.0,
                          "kernel_pps": KERNEL_XDP.get(s),
                          "kernel_vs_single_pct": (KERNEL_XDP[s] / KERNEL_XDP["single"] - 1) * 100}
                         for s, v in res.items()],
           "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    print(format_table(doc), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1, default=lambda x: None)
            f.write("\n")
        print("\nJSON written to %s" % args.json)
    if args.plot:
        try:
            plot(args.plot, doc)
            print("plot written to %s" % args.plot)
        except ImportError:
            print("loadgen bench: --plot needs matplotlib", file=sys.stderr)
            return 1
    return 0
