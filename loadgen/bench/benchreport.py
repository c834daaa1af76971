"""From runs to figures, comparisons and text: the summaries of `loadgen bench` (pure, no I/O).

A profile's result: per strategy (and per peer) the median of every figure over its rounds with
a 95 % CI (loadgen/bench/ci.py), and per non-baseline entry a comparison against the baseline: for
ops/s, svc_alloc_arg us per call and server CPU us per op, the paired ratio over rounds, its
95 % CI and the verdict. Per-op client latency percentiles (p50, p90, p99, p99.9) come from the
load generator's fine histograms merged over the rounds.

The text is the table of the seed's figures with spreads, then the verdict lines; the JSON
names are those listed in README ("JSON names").
"""

from __future__ import annotations

import statistics

from . import ci
from ..run.stats import PERCENTILES, OpStats
from .strategies import KERNEL_XDP, label

__all__ = ["summarize", "compare_all", "format_profile", "format_sweep", "verdict_lines", "FIGURES", "COMPARED"]

#: (figure, higher is better, text heading) of every run
FIGURES = (("ops_per_s", True, "ops/s"), ("mb_per_s", True, "MB/s"),
           ("svc_alloc_arg_us_per_call", False, "svc_alloc_arg us/call"),
           ("server_cpu_us_per_op", False, "server CPU us/op"))
#: the figures compared against the baseline
COMPARED = ("ops_per_s", "svc_alloc_arg_us_per_call", "server_cpu_us_per_op")
_HIGHER = {f: h for f, h, _ in FIGURES}
_HEADING = {f: t for f, _, t in FIGURES}


def _median(runs, key):
    vals = [r.get(key) for r in runs]
    vals = [v for v in vals if v is not None and v == v]
    return statistics.median(vals) if vals else None


def op_percentiles(runs) -> dict:
    """{op: {count, p50_seconds, p90_seconds, p99_seconds, p999_seconds, max_seconds}} over all runs."""
    merged = {}
    for r in runs:
        for op, d in (r.get("op_latency") or {}).items():
            s = OpStats.from_json(d)
            if op in merged:
                merged[op].merge(s)
            else:
                merged[op] = s
    out = {}
    for op, s in sorted(merged.items()):
        out[op] = {"count": s.count, "max_seconds": s.max}
        for name, q in PERCENTILES:
            out[op][name + "_seconds"] = s.quantile(q)
    return out


def summarize(runs: list, peer: bool = False) -> dict:
    """Medians and 95 % CIs of one strategy's (or peer's) runs."""
    out = {"rounds_done": len(runs)}
    for key, _, _ in FIGURES:
        if peer and key == "svc_alloc_arg_us_per_call":
            continue
        s = ci.summary([r.get(key) for r in runs])
        out[key] = s["median"]
        out[key + "_ci95"] = s["ci95"]
    keys = ("svc_alloc_arg_cpu_share", "calls", "pages_per_call", "slots_scanned_per_call", "waits", "p50_us",
            "p99_us", "pages_per_worker", "bytes_per_worker", "max_io") if not peer else ()
    for key in keys:
        out[key] = _median(runs, key)
    out["ops"] = op_percentiles(runs)
    return out


def compare_all(runs: dict, baseline: str) -> dict:
    """{name: {figure: {ratio, ci95, verdict, n}}} of every entry but the baseline, paired by round."""
    base = {r["round"]: r for r in runs.get(baseline, [])}
    out = {}
    for name, rs in runs.items():
        if name == baseline:
            continue
        out[name] = {}
        for fig in COMPARED:
            pairs = [(r.get(fig), base[r["round"]].get(fig)) for r in rs if r["round"] in base]
            pr = ci.paired_ratio(pairs)
            v = ci.verdict(pr["ci95"], _HIGHER[fig]) if pr["ratio"] is not None else "n/a"
            out[name][fig] = {"ratio": pr["ratio"], "ci95": pr["ci95"], "verdict": v, "n": pr["n"]}
    return out


def _num(x, fmt="%.3f"):
    return "n/a" if x is None else fmt % x


def _ci(c, fmt="%.3f"):
    return "[n/a]" if c is None else "[" + fmt % c[0] + ", " + fmt % c[1] + "]"


def _big(x):
    return "n/a" if x is None else format(round(x), ",")


def format_profile(profile: str, res: dict, settings: dict, kernel: dict) -> str:
    """The human table of one profile."""
    st, peers = res["strategies"], res["peers"]
    load = settings["load"]
    lines = ["", "== %s: %d clients, %d round(s) of %g s after %g s warmup; order shuffled per round (seed %d); "
             "median [95 %% CI] ==" % (profile, load["clients"], res["rounds_done"], load["time"], load["warmup"],
                                        settings["seed"])]
    if settings.get("server", {}).get("fast_path") == "off":
        lines.append("rpcsrv on its Python reference path (--fast-path off): every strategy refills through "
                     "the Python API")
    if res.get("stop_reason") and res["stop_reason"] != "rounds":
        lines.append("rounds: %d, stopped because %s" % (res["rounds_done"], res["stop_reason"]))
    lines.append("")
    lines.append("  %-13s %22s %8s %26s %24s %9s" % ("", "ops/s", "MB/s", "svc_alloc_arg us/call",
                                                    "server CPU us/op", "svc/CPU"))
    rows = [(n, v, False) for n, v in st.items()] + [(n, v, True) for n, v in peers.items()]
    for name, v, peer in rows:
        share = v.get("svc_alloc_arg_cpu_share")
        lines.append("  %-13s %8s %-13s %8s %8s %-17s %7s %-16s %9s" % (
            ("peer " + name) if peer else label(name), _big(v["ops_per_s"]), _ci(v["ops_per_s_ci95"], "%.0f"),
            _num(v["mb_per_s"], "%.1f"),
            _num(v.get("svc_alloc_arg_us_per_call")), _ci(v.get("svc_alloc_arg_us_per_call_ci95")) if not peer else "",
            _num(v["server_cpu_us_per_op"], "%.1f"), _ci(v["server_cpu_us_per_op_ci95"], "%.1f"),
            "n/a" if share is None else "%.1f%%" % (share * 100)))
    lines.append("")
    lines.append("svc_alloc_arg, this server (medians over rounds):")
    for name, v in st.items():
        lines.append("  %-13s %s us per call over %s calls (pages/call %s, slots visited/call %s, waits %s, "
                     "p50 %s us, p99 %s us; %s slots a worker)" % (
                         label(name) + ":", _num(v["svc_alloc_arg_us_per_call"]), _big(v["calls"]),
                         _num(v["pages_per_call"], "%.1f"), _num(v.get("slots_scanned_per_call"), "%.1f"),
                         _big(v["waits"]), _num(v["p50_us"], "%.2f"), _num(v["p99_us"], "%.2f"),
                         _big(v.get("pages_per_worker"))))
    lines.append("svc_alloc_arg, the kernel (Chuck Lever, 5.13 series, NFSv3 256 KB r/w, KASAN server):")
    for name, k in kernel.items():
        if k.get("kernel_us") is None:
            lines.append("  %-13s no kernel figure (%s)" % (label(name) + ":", k.get("kernel") or "-"))
        else:
            lines.append("  %-13s %.3f us per call over %s calls (%s)" % (
                label(name) + ":", k["kernel_us"], format(k["kernel_calls"], ","), k.get("kernel")))
    lines.append("client latency per op (ms; all rounds merged): p50 / p90 / p99 / p99.9")
    for name, v, peer in rows:
        ops = sorted(v["ops"].items(), key=lambda kv: -kv[1]["count"])[:4]
        lines.append("  %-13s " % (("peer " + name) if peer else label(name)) + "; ".join(
            "%s %s" % (op, " / ".join("%.3f" % (d[p + "_seconds"] * 1e3) for p, _ in PERCENTILES)) for op, d in ops))
    lines.append("kernel page_pool XDP-RX (the seed's second user; packets/s, not NFS ops):")
    for s, pps in KERNEL_XDP.items():
        lines.append("  %-13s %12s %+9.2f%%" % ({"single": "Baseline", "list": "List", "array": "Array"}[s],
                                               format(pps, ","), (pps / KERNEL_XDP["single"] - 1) * 100))
    return "\n".join(lines)


def verdict_lines(profile: str, res: dict, baseline: str) -> list:
    """One line per compared entry: ratio to the baseline, its 95 % CI and the verdict, per figure."""
    out = []
    for name, figs in res["comparisons"].items():
        parts = []
        for fig in COMPARED:
            c = figs[fig]
            if c["ratio"] is None:
                continue
            parts.append("%s x%.3f %s %s" % (_HEADING[fig], c["ratio"], _ci(c["ci95"]), c["verdict"]))
        out.append("verdict %s: %s vs %s: %s" % (profile, name, figs.get("against", baseline), "; ".join(parts)))
    return out


def format_sweep(results: dict, settings: dict) -> str:
    """The --max-block-size sweep in one table: per profile (I/O size) and strategy, each array
    size's svc_alloc_arg us per call, pages and slots per call, server CPU us/op and memory per
    worker, with the ratio to the first size and its verdict."""
    blocks = settings["blocks"]
    first = _size(blocks[0])
    lines = ["", "== sweep: the page array against the maximum payload (ratios against %s, paired over rounds) =="
             % first, "  %-9s %-9s %6s %6s %24s %9s %9s %22s %12s" % (
                 "profile", "strategy", "block", "slots", "svc_alloc_arg us/call", "pages", "visited",
                 "server CPU us/op", "per worker")]
    for prof, res in results.items():
        for st in settings["strategies"]:
            for b in blocks:
                name = "%s@%s" % (st, _size(b))
                v = res["strategies"].get(name)
                if v is None:
                    continue
                c = res["comparisons"].get(name, {})

                def rat(fig):
                    x = c.get(fig)
                    if not x or x["ratio"] is None:
                        return ""
                    tag = {ci.FASTER: "faster", ci.SLOWER: "slower", ci.SAME: "n.s."}.get(x["verdict"], "?")
                    return " x%.2f %s" % (x["ratio"], tag)
                per_worker = v.get("bytes_per_worker")
                lines.append("  %-9s %-9s %6s %6s %10s%-14s %9s %9s %8s%-14s %12s" % (
                    prof, st, _size(b), _big(v.get("pages_per_worker")), _num(v.get("svc_alloc_arg_us_per_call")),
                    rat("svc_alloc_arg_us_per_call"), _num(v.get("pages_per_call"), "%.1f"),
                    _num(v.get("slots_scanned_per_call"), "%.1f"), _num(v.get("server_cpu_us_per_op"), "%.1f"),
                    rat("server_cpu_us_per_op"), "n/a" if per_worker is None else "%d KiB" % (per_worker // 1024)))
    return "\n".join(lines)


def _size(n: int) -> str:
    for suf, m in (("M", 1 << 20), ("K", 1 << 10)):
        if n % m == 0:
            return "%d%s" % (n // m, suf)
    return str(n)
