"""loadgen bench --udp-pps: the seed's page_pool table (XDP-RX packets/s) as RPC calls/s over UDP.

Two paths (--udp-path): xdp, the default, is loadgen/bench/xdpbench.py (the server's
compiled receive loop under a compiled flood, where the refill strategy
shows); python, described below, is the per-datagram Python path, where it
does not (Python costs ~14 us per datagram, the strategy ~15 ns per page).

For each round and each page_pool refill strategy (single, list, array;
interleaved, the order rotating every round) it starts `python -m rpcsrv
--udp --pool-strategy S` on a free port, floods it with RPC calls over UDP
from --clients processes (loadgen/flood/udpflood.py: a window of outstanding
calls each, no retransmission, lost calls counted), scrapes the server's
/metrics when the warmup ends and when the measured window ends, and stops
the server (its report of allocator pages still allocated is checked).
Figures are medians over rounds: calls/s (replies received in the window /
window), and the pool's slow-path refills and pages from the allocator over
the same window (nfsbulk_pool_alloc_slow_total, ..._pages_from_allocator_total).

The default recycle mode is `release`: a datagram's pages go back to the
page allocator after the reply, as a page redirected out of the pool
(XDP_REDIRECT to veth, the case the 5.13 figures measured), so every
datagram needs a fresh page and the refill strategy is on the hot path.
`--udp-recycle direct` shows the recycling case, where the allocator is
almost never called and the strategies cannot differ.

Beside the live table it prints the kernel's XDP-RX figures and, from
`python -m alloc.poolbench` (a subprocess: loadgen imports neither alloc nor
rpcsrv), the pool's own cost per page by strategy with no Python per page.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile

from .harness import BenchError, bench_outcome, bench_root, start_udp_server
from ..common.meta import build_meta
from ..common.outputs import check_path, write_json
from ..common.serverproc import leaked_pages
from .strategies import KERNEL_XDP
from ..flood.udpflood import OPS, FloodError, mount_root, run_flood

POOL_STRATEGIES = ("single", "list", "array")
LABELS = {"single": "Single page", "list": "Bulk list", "array": "Bulk array"}
KERNEL_LABELS = {"single": "Baseline", "list": "List", "array": "Array"}


def add_arguments(p) -> None:
    g = p.add_argument_group("--udp-pps: page_pool strategies under an RPC-over-UDP flood (uses --clients, "
                             "--time, --warmup, --rounds, --threads, --arena-mib, --json)")
    g.add_argument("--udp-pps", action="store_true",
                   help="run the page_pool table instead of the svc_alloc_arg one: RPC calls/s over UDP per "
                        "pool refill strategy, with the kernel's XDP-RX figures beside")
    g.add_argument("--pool-strategies", default=",".join(POOL_STRATEGIES),
                   help="comma-separated page_pool strategies (default single,list,array)")
    g.add_argument("--udp-op", choices=OPS, default=None,
                   help="calls to flood: null, getattr (of the export root) or mix (alternating; with the xdp "
                        "path: half the flood processes each). Default: mix for --udp-path python, null for xdp")
    g.add_argument("--udp-window", type=int, default=32, help="outstanding calls per flood process (default 32)")
    g.add_argument("--udp-threads", type=int, default=1,
                   help="server UDP receive threads (default 1: more share one GIL and make the figures bimodal)")
    g.add_argument("--udp-recycle", choices=("direct", "ring", "release"), default="release",
                   help="where the server puts a datagram's pages after the reply (default release: "
                        "back to the allocator, as XDP_REDIRECT; see loadgen/bench/udpbench.py)")
    g.add_argument("--udp-path", choices=("xdp", "python"), default="xdp",
                   help="xdp (default): the server's compiled receive loop (--udp-xdp) under the compiled "
                        "NULL flood, rx CPU per datagram with 95%% CIs (loadgen/bench/xdpbench.py); python: the "
                        "per-datagram Python path under the windowed flood (this module)")
    g.add_argument("--udp-verdict", choices=("drop", "tx"), default="drop",
                   help="xdp path: what the loop does with the NULL calls: drop (XDP_DROP, default: the leanest "
                        "path) or tx (answered from C with sendmmsg, XDP_TX)")
    g.add_argument("--udp-procs", type=int, default=2, help="xdp path: flood processes (default 2)")
    g.add_argument("--udp-rate", type=float, default=2e6,
                   help="xdp path: datagrams/s per flood process at most (default 2000000; up to 1e7)")
    g.add_argument("--udp-interleave", type=int, default=16, metavar="BATCHES",
                   help="xdp path: rotate the refill strategy in one server every BATCHES receive batches "
                        "(default 16); 0: a server per strategy per round")
    g.add_argument("--udp-coalesce-us", type=int, default=200, metavar="US",
                   help="xdp path: the server waits US microseconds after a receive batch that did not fill "
                        "(interrupt coalescing; default 200, 0: none)")
    g.add_argument("--udp-block", type=float, default=1.0,
                   help="xdp path: seconds per statistics block (default 1; blocks are the CI's samples)")


def _sum(m: dict, name: str, **labels) -> float:
    """Sum of samples named `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, lab), v in m.items() if n == name and want <= set(lab))


def window(m0: dict, m1: dict, strategy: str) -> dict:
    d = lambda n, **kw: _sum(m1, n, strategy=strategy, **kw) - _sum(m0, n, strategy=strategy, **kw)  # noqa: E731
    refills = int(d("nfsbulk_pool_alloc_slow_total"))
    pages = int(d("nfsbulk_pool_pages_from_allocator_total"))
    return {
        "refills": refills,
        "pages_from_allocator": pages,
        "pages_per_refill": pages / refills if refills else float("nan"),
        "fast": int(d("nfsbulk_pool_alloc_fast_total")),
        "recycled": int(d("nfsbulk_pool_recycled_total")),
        "released": int(d("nfsbulk_pool_released_total")),
        "alloc_empty": int(d("nfsbulk_pool_alloc_empty_total")),
        "server_requests": int(_sum(m1, "nfsbulk_rpc_requests_total") - _sum(m0, "nfsbulk_rpc_requests_total")),
        "udp_drops": int(sum(_sum(m1, "nfsbulk_rpc_errors_total", reason=r) - _sum(m0, "nfsbulk_rpc_errors_total",
                                                                                    reason=r)
                             for r in ("udp_no_page", "udp_oversize"))),
    }


def one_run(strategy: str, root: str, opts: dict) -> dict:
    export = tempfile.mkdtemp(prefix="udp-%s-" % strategy, dir=root)
    extra = ["--udp", "--pool-strategy", strategy, "--udp-threads", str(opts["udp_threads"]),
             "--udp-recycle", opts["udp_recycle"]]
    srv = start_udp_server(export, opts, extra)
    scrapes = {}
    try:
        port = srv.port
        fh = mount_root("127.0.0.1", port, export) if opts["op"] != "null" else None

        def on_phase(phase):
            scrapes[phase] = srv.scrape()
        res = run_flood("127.0.0.1", port, procs=opts["clients"], window=opts["window"], op=opts["op"], fh=fh,
                        warmup=opts["warmup"], duration=opts["time"], on_phase=on_phase)
    except FloodError as e:
        raise BenchError("UDP flood against --pool-strategy %s: %s" % (strategy, e))
    finally:
        try:
            code, err = srv.stop()
        finally:
            shutil.rmtree(export, ignore_errors=True)
    leaked = leaked_pages(err)
    if code != 0:
        raise BenchError("rpcsrv --pool-strategy %s exited with status %d: %s" % (strategy, code, err[-1500:]))
    if leaked != 0:
        raise BenchError("rpcsrv --pool-strategy %s left %d allocator pages allocated" % (strategy, leaked))
    out = window(scrapes["run"], scrapes["end"], strategy)
    out.update(calls_per_s=res["calls_per_s"], replies=res["replies"], sent=res["sent"], lost=res["lost"],
               errors=res["errors"], mean_latency_us=res["mean_latency_us"], pages_leaked=leaked)
    return out


def poolbench(python=sys.executable) -> dict | None:
    """python -m alloc.poolbench --json in a subprocess (None if it cannot run)."""
    try:
        r = subprocess.run([python, "-m", "alloc.poolbench", "--json", "--rounds", "5"], capture_output=True,
                           timeout=300, text=True)
        return json.loads(r.stdout) if r.returncode == 0 else None
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def _median(rs, key):
    vals = [r[key] for r in rs if r[key] == r[key]]
    return statistics.median(vals) if vals else float("nan")


def format_table(res: dict, opts: dict, pb: dict | None) -> str:
    st = res
    lines = ["", "== RPC over UDP on page_pool pages: %d flood processes x %d outstanding %s calls, %d receive "
             "thread(s), recycle=%s; %d round(s) of %g s after %g s warmup, medians ==" % (
                 opts["clients"], opts["window"], opts["op"], opts["udp_threads"], opts["udp_recycle"],
                 opts["rounds"], opts["time"], opts["warmup"]), ""]
    lines.append("  %-12s %11s %10s %8s %14s %14s %8s %12s" % (
        "pool", "calls/s", "vs single", "lost", "slow refills", "pages alloc'd", "pg/refill", "cache hits"))
    base = st.get("single", {}).get("calls_per_s")
    for s, v in st.items():
        delta = (v["calls_per_s"] / base - 1) * 100 if base else float("nan")
        lines.append("  %-12s %11s %+9.2f%% %8s %14s %14s %8.1f %12s" % (
            LABELS[s], format(round(v["calls_per_s"]), ","), delta, format(v["lost"], ","),
            format(v["refills"], ","), format(v["pages_from_allocator"], ","), v["pages_per_refill"],
            format(v["fast"], ",")))
    lines.append("  per round calls/s: " + "; ".join(
        "%s %s" % (s, ", ".join(format(round(r["calls_per_s"]), ",") for r in v["rounds"])) for s, v in st.items()))
    lines.append("kernel page_pool XDP-RX (mlx5 100G, veth redirect; packets/s, v6 patch 9/9):")
    for s, pps in KERNEL_XDP.items():
        lines.append("  %-12s %11s %+9.2f%%" % (KERNEL_LABELS[s], format(pps, ","),
                                                (pps / KERNEL_XDP["single"] - 1) * 100))
    if pb:
        lines.append("page_pool alone (python -m alloc.poolbench: a C loop, no Python per page; median of %d rounds):"
                     % pb["rounds"])
        for mode, d in pb["ns_per_page"].items():
            b = d.get("single")
            lines.append("  %-8s " % (mode + ":") + "; ".join(
                "%s %.1f ns/page%s" % (s, ns, "" if s == "single" else " (%+.1f ns vs single)" % (ns - b))
                for s, ns in d.items()))
        if base:
            rel = pb["ns_per_page"].get("release", {})
            if "single" in rel and "array" in rel:
                per_call_ns = 1e9 / base     # the receive threads share one GIL: calls are serialised
                lines.append("  what that is worth here: %.1f ns per datagram saved by array, against about %.0f ns "
                             "of server wall time per call (1 / calls/s of single): %.3f%% expected" % (
                                 rel["single"] - rel["array"], per_call_ns,
                                 (rel["single"] - rel["array"]) / per_call_ns * 100))
    return "\n".join(lines)


def main(args) -> int:
    err = check_path("--json", args.json, allow_stdout=True)
    if err:
        print("loadgen bench: %s" % err, file=sys.stderr)
        return 2
    if args.udp_path == "xdp":
        from .xdpbench import main as xdp_main
        args.clients = args.udp_procs
        return xdp_main(args, poolbench)
    strategies = [s.strip() for s in args.pool_strategies.split(",") if s.strip()]
    if not strategies or any(s not in POOL_STRATEGIES for s in strategies):
        print("loadgen bench: --pool-strategies takes %s" % ",".join(POOL_STRATEGIES), file=sys.stderr)
        return 2
    if args.clients < 1 or args.rounds < 1 or args.time <= 0 or args.warmup < 0 or args.udp_window < 1 \
            or args.udp_threads < 1:
        print("loadgen bench: --clients, --rounds, --udp-window, --udp-threads must be >= 1 and --time > 0",
              file=sys.stderr)
        return 2
    opts = {"clients": args.clients, "time": args.time, "warmup": args.warmup, "rounds": args.rounds,
            "threads": args.threads, "arena_mib": args.arena_mib, "window": args.udp_window, "op": args.udp_op or "mix",
            "udp_threads": args.udp_threads, "udp_recycle": args.udp_recycle}
    root, tmp = bench_root(args.export, "nfsbulk-udpbench-")
    if root is None:
        print("loadgen bench: --export %s is not a directory" % args.export, file=sys.stderr)
        return 2
    runs = {s: [] for s in strategies}
    n = len(strategies)
    with bench_outcome(tmp) as outcome:
        for r in range(args.rounds):
            for s in [strategies[(k + r) % n] for k in range(n)]:
                left = (args.rounds * n - r * n) * (args.time + args.warmup + 3)
                print("bench: udp-pps round %d/%d, pool strategy %s (about %d s left)" % (r + 1, args.rounds, s, left),
                      file=sys.stderr, flush=True)
                runs[s].append(one_run(s, root, opts))
        pb = poolbench()
    if outcome.code:
        return outcome.code
    res = {}
    for s in strategies:
        rs = runs[s]
        res[s] = {k: _median(rs, k) for k in ("calls_per_s", "pages_per_refill", "mean_latency_us")}
        for k in ("refills", "pages_from_allocator", "fast", "lost", "replies", "recycled", "released",
                  "alloc_empty", "udp_drops", "server_requests"):
            res[s][k] = int(_median(rs, k))
        res[s]["rounds"] = rs
    text = sys.stderr if args.json == "-" else sys.stdout
    print(format_table(res, opts, pb), file=text, flush=True)
    if args.json:
        doc = {"schema": "nfsbulk-udp-pps/2", "meta": build_meta(), "config": dict(opts, pool_strategies=strategies),
               "pool_strategies": res, "kernel": {"xdp_rx_pps": KERNEL_XDP}, "poolbench": pb}
        write_json(args.json, doc)
        if args.json != "-":
            print("\nJSON written to %s" % args.json)
    return 0
