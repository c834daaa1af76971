"""The PNG of `loadgen bench --plot`: what was run, throughput and svc_alloc_arg cost with CIs.

`--curve` draws plot_curve instead: latency against achieved ops/s.

One column per profile, five panels: ops/s per strategy and peer (median, 95 % CI error bars);
server CPU us per op, the steadier figure (median, 95 % CI); svc_alloc_arg us per call (median,
95 % CI) beside the kernel's bars on a log axis (the kernel's 25 us would flatten the live
sub-microsecond bars on a linear one); the paired ratios against the baseline with their 95 %
CIs, the verdicts of the table (a forest plot: a CI that crosses 1 is no significant
difference); the svc_alloc_arg latency distribution over all rounds (calls per bucket), its axis
fitted to the buckets that hold 99.9 % of the calls (a handful of calls stalled by a busy
machine would stretch it a thousandfold).
The title names the profile(s), clients, window, rounds and date. Reads the bench JSON document
only (so a saved file can be plotted again); matplotlib with the Agg backend, no display.
"""

from __future__ import annotations

from .benchreport import _size
from .strategies import label

__all__ = ["plot", "plot_sweep", "plot_curve"]


def _err(median, ci):
    """matplotlib yerr pair (below, above) of a median and its CI (zeros when there is none)."""
    if median is None or ci is None:
        return (0.0, 0.0)
    return (max(0.0, median - ci[0]), max(0.0, ci[1] - median))


def _log(axis) -> None:
    """Plain-number labels on a log axis, as many as its span leaves room for: 0.7, 1, 1.5, 2, 3, 5
    within about a decade, 1, 2, 5 within three, decades beyond (matplotlib's default labels every
    minor tick as 3x10^-1 on a short axis, and they overlap). Call it once the data are drawn."""
    import math

    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    lo, hi = sorted(axis.get_view_interval())
    decades = math.log10(hi / lo) if lo > 0 and hi > 0 else 99.0
    subs = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0) if decades <= 1.3 else (1.0, 2.0, 5.0) if decades <= 3.0 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: "%g" % v))
    axis.set_minor_formatter(NullFormatter())


def _hist(rounds):
    """[(bucket upper bound in us, calls)] summed over rounds, cumulative counts undone; +Inf dropped."""
    acc = {}
    for r in rounds:
        prev = 0.0
        for le, c in r.get("histogram") or []:
            if le == "+Inf" or le is None:
                continue
            acc[le] = acc.get(le, 0.0) + (c - prev)
            prev = c
    return sorted((le * 1e6, n) for le, n in acc.items())


#: the ratios the forest plot shows, with their colours (the table's verdict columns)
_FOREST = (("ops_per_s", "ops/s", "C0"), ("server_cpu_us_per_op", "server CPU per op", "C1"),
           ("svc_alloc_arg_us_per_call", "svc_alloc_arg µs per call", "C3"))


def _forest(ax, comparisons: dict, baseline, prof: str) -> None:
    """Paired ratios against the baseline with 95 % CIs, one row per (entry, figure)."""
    rows = []
    for name, figs in comparisons.items():
        for key, what, colour in _FOREST:
            c = figs.get(key) or {}
            if c.get("ratio") is not None:
                rows.append(("%s: %s" % (label(name), what), c["ratio"], c.get("ci95"), colour))
    if not rows:
        ax.text(0.5, 0.5, "no paired ratios (one entry, or too few rounds)", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return
    ys = list(range(len(rows)))[::-1]
    for y, (_, ratio, ci, colour) in zip(ys, rows):
        lo, hi = _err(ratio, ci)
        ax.errorbar([ratio], [y], xerr=[[lo], [hi]], fmt="o", color=colour, capsize=4)
    ax.axvline(1.0, color="0.4", lw=1, ls="--")
    ax.set_xscale("log")
    _log(ax.xaxis)
    ax.set_yticks(ys, [r[0] for r in rows], fontsize=8)
    ax.set_xlabel("ratio to %s (paired, 95 %% CI, log axis)\na CI crossing 1: no significant difference"
                  % (label(baseline) if baseline else "the baseline"))
    ax.set_title("the verdicts: paired ratios against %s, %s" % (label(baseline) if baseline else "baseline", prof))


def plot(path: str, doc: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    profiles = list(doc["profiles"])
    st = doc["settings"]
    load = st["load"]
    fig, axes = plt.subplots(5, len(profiles), figsize=(7 * len(profiles), 21), squeeze=False)
    rounds = ", ".join("%s %d" % (p, doc["profiles"][p]["rounds_done"]) for p in profiles)
    fig.suptitle("loadgen bench %s: %d clients, %g s measured after %g s warmup\nrounds %s; %s UTC%s" % (
        "+".join(profiles), load["clients"], load["time"], load["warmup"], rounds, doc["meta"]["timestamp"][:16].replace("T", " "),
        " (interrupted)" if doc.get("interrupted") else ""), fontsize=11)
    for col, prof in enumerate(profiles):
        res = doc["profiles"][prof]
        names = list(res["strategies"])
        entries = [(label(n), res["strategies"][n]) for n in names] + \
                  [("peer " + n, v) for n, v in res["peers"].items()]
        ax = axes[0][col]
        xs = list(range(len(entries)))
        med = [v["ops_per_s"] or 0.0 for _, v in entries]
        err = list(zip(*[_err(v["ops_per_s"], v["ops_per_s_ci95"]) for _, v in entries])) or [[], []]
        ax.bar(xs, med, 0.6, yerr=err, capsize=4, color=["C0"] * len(names) + ["C2"] * len(res["peers"]))
        ax.set_xticks(xs, [n for n, _ in entries], rotation=15)
        ax.set_ylabel("ops/s (median, 95 % CI)")
        ax.set_title("throughput, %s" % prof)
        ax = axes[1][col]
        xs = list(range(len(entries)))
        med = [v.get("server_cpu_us_per_op") or 0.0 for _, v in entries]
        err = list(zip(*[_err(v.get("server_cpu_us_per_op"), v.get("server_cpu_us_per_op_ci95"))
                         for _, v in entries])) or [[], []]
        ax.bar(xs, med, 0.6, yerr=err, capsize=4, color=["C1"] * len(names) + ["C2"] * len(res["peers"]))
        ax.set_xticks(xs, [n for n, _ in entries], rotation=15)
        ax.set_ylabel("server CPU µs per op (median, 95 % CI)")
        ax.set_title("server CPU per operation, %s (lower is better)" % prof)
        ax = axes[2][col]
        xs = list(range(len(names)))
        ours = [res["strategies"][s]["svc_alloc_arg_us_per_call"] or 0.0 for s in names]
        err = list(zip(*[_err(res["strategies"][s]["svc_alloc_arg_us_per_call"],
                              res["strategies"][s]["svc_alloc_arg_us_per_call_ci95"]) for s in names])) or [[], []]
        kern = [(doc["kernel"].get(s) or {}).get("kernel_us") for s in names]
        ax.bar([x - 0.2 for x in xs], ours, 0.4, yerr=err, capsize=4, label="nfsbulk (live, 95 % CI)")
        ax.bar([x + 0.2 for x in xs], [k if k is not None else 0.0 for k in kern], 0.4,
               label="kernel 5.13 (Chuck Lever)")
        ax.set_xticks(xs, [label(s) for s in names], rotation=15)
        ax.set_yscale("log")
        _log(ax.yaxis)
        ax.set_ylabel("svc_alloc_arg µs per call (log)")
        ax.set_title("svc_alloc_arg cost, %s" % prof)
        ax.legend()
        _forest(axes[3][col], res.get("comparisons") or {}, st.get("baseline"), prof)
        ax = axes[4][col]
        lo, hi = None, None
        for s in names:
            pts = _hist(res["strategies"][s]["rounds"])
            total = sum(n for _, n in pts)
            used = [i for i, (_, n) in enumerate(pts) if n > 0]
            if not used:
                continue
            acc, last = 0.0, used[-1]
            for i, (_, n) in enumerate(pts):     # the axis ends where 99.9 % of the calls are in
                acc += n
                if acc >= 0.999 * total:
                    last = i
                    break
            pts = pts[max(0, used[0] - 1):last + 2]
            lo = min(lo, pts[0][0]) if lo is not None else pts[0][0]
            hi = max(hi, pts[-1][0]) if hi is not None else pts[-1][0]
            ax.step([p[0] for p in pts], [p[1] for p in pts], where="pre", label=label(s))
        ax.set_xscale("log")
        if lo is not None:
            ax.set_xlim(lo, hi)
        _log(ax.xaxis)
        ax.set_xlabel("svc_alloc_arg time (µs, bucket upper bound)\nthe axis spans 99.9 % of the calls")
        ax.set_ylabel("calls per bucket (all rounds)")
        ax.set_title("svc_alloc_arg latency distribution, %s" % prof)
        ax.legend()
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_sweep(path: str, doc: dict) -> None:
    """The --max-block-size sweep: per profile (I/O size) one column; top, svc_alloc_arg us per call
    against the page-array slots, one line per strategy (median, 95 % CI); middle, slots visited
    per call; bottom, server CPU us per op. The cost against array size (x) and I/O size (columns)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    st = doc["settings"]
    blocks = st["blocks"]
    profiles = list(doc["profiles"])
    fig, axes = plt.subplots(3, len(profiles), figsize=(5.5 * len(profiles), 11), squeeze=False)
    fig.suptitle("loadgen bench sweep: --max-block-size %s; %d clients, %g s after %g s warmup; %s UTC" % (
        ",".join(_size(b) for b in blocks), st["load"]["clients"], st["load"]["time"],
        st["load"]["warmup"], doc["meta"]["timestamp"][:16].replace("T", " ")), fontsize=11)
    rows = (("svc_alloc_arg_us_per_call", "svc_alloc_arg us per call", True),
            ("slots_scanned_per_call", "slots visited per call", False),
            ("server_cpu_us_per_op", "server CPU us per op", True))
    for col, prof in enumerate(profiles):
        res = doc["profiles"][prof]
        for row, (fig_key, title, with_ci) in enumerate(rows):
            ax = axes[row][col]
            for k, strat in enumerate(st["strategies"]):
                xs, ys, lo, hi = [], [], [], []
                for name, v in res["strategies"].items():
                    if name.partition("@")[0] != strat or v.get(fig_key) is None:
                        continue
                    xs.append(v.get("pages_per_worker") or 0)
                    ys.append(v[fig_key])
                    e = _err(v[fig_key], v.get(fig_key + "_ci95") if with_ci else None)
                    lo.append(e[0])
                    hi.append(e[1])
                if xs:
                    order = sorted(range(len(xs)), key=xs.__getitem__)
                    ax.errorbar([xs[i] for i in order], [ys[i] for i in order],
                                yerr=[[lo[i] for i in order], [hi[i] for i in order]], marker="o", capsize=3,
                                label=label(strat), color="C%d" % k)
            ax.set_title("%s: %s" % (prof, title), fontsize=10)
            ax.set_xlabel("page-array slots (svc_serv_maxpages of --max-block-size)")
            ax.grid(alpha=0.3)
            if row == 0 and col == 0:
                ax.legend(fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_curve(path: str, doc: dict) -> None:
    """The --curve figure: per profile one column; top, p99 latency from the intended start (log
    axis, ms) against achieved ops/s, one line per strategy or peer, with 95 % CI bars, p50 dashed
    in the same colour, the knee circled; bottom, server CPU us per op against achieved ops/s."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    st = doc["settings"]
    curves = doc["curve"]
    profiles = list(curves)
    fig, axes = plt.subplots(2, len(profiles), figsize=(6.5 * len(profiles), 9.5), squeeze=False,
                             gridspec_kw={"height_ratios": [2, 1]})
    fig.suptitle("loadgen bench --curve %s: %d clients, open loop (%s arrivals)\n%g s per point after %g s "
                 "warmup, %s; %s UTC%s" % (
                     ",".join("%d%%" % p for p in st["curve"]), st["load"]["clients"], st["arrival"],
                     st["load"]["time"], st["load"]["warmup"],
                     ", ".join("%s %d rounds" % (p, curves[p]["rounds_done"]) for p in profiles),
                     doc["meta"]["timestamp"][:16].replace("T", " "),
                     " (interrupted)" if doc.get("interrupted") else ""), fontsize=10)
    for col, prof in enumerate(profiles):
        ax, cpu = axes[0][col], axes[1][col]
        seen = []          # every median drawn: the axis fits them (a 2-round CI can span 10 decades)
        for k, (name, e) in enumerate(curves[prof]["entries"].items()):
            pts = sorted(e["points"].items(), key=lambda kv: int(kv[0]))
            pts = [(p, f) for p, f in pts if f["achieved_ops_per_s"]["median"] and f["p99_seconds"]["median"]]
            if not pts:
                continue
            colour = "C%d" % k
            who = ("peer " + name) if e["peer"] else label(name)
            xs = [f["achieved_ops_per_s"]["median"] for _, f in pts]
            p99 = [f["p99_seconds"]["median"] * 1e3 for _, f in pts]
            err = list(zip(*[_err(f["p99_seconds"]["median"] * 1e3,
                                  [c * 1e3 for c in f["p99_seconds"]["ci95"]] if f["p99_seconds"]["ci95"] else None)
                             for _, f in pts]))
            ax.errorbar(xs, p99, yerr=err, marker="o", capsize=3, color=colour, label="%s p99" % who)
            p50 = [f["p50_seconds"]["median"] * 1e3 for _, f in pts]
            ax.plot(xs, p50, linestyle="--", marker=".", color=colour, alpha=0.7, label="%s p50" % who)
            seen += p99 + [v for v in p50 if v > 0]
            for (p, f), x, y in zip(pts, xs, p99):
                ax.annotate("%s%%" % p, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7,
                            color=colour)
                if e["knee_pct"] is not None and int(p) == e["knee_pct"]:
                    ax.plot([x], [y], marker="o", markersize=16, markerfacecolor="none", markeredgewidth=2,
                            color=colour)
            cx = [(f["achieved_ops_per_s"]["median"], f["server_cpu_us_per_op"]["median"]) for _, f in pts
                  if f["server_cpu_us_per_op"]["median"]]
            if cx:
                cpu.plot([a for a, _ in cx], [b for _, b in cx], marker="o", color=colour, label=who)
        ax.set_yscale("log")
        if seen:
            ax.set_ylim(min(seen) / 2, max(seen) * 3)
        ax.set_title("%s: latency from the intended start (knee circled)" % prof, fontsize=10)
        ax.set_xlabel("achieved ops/s")
        ax.set_ylabel("ms (log)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
        cpu.set_title("%s: server CPU us per op" % prof, fontsize=10)
        cpu.set_xlabel("achieved ops/s")
        cpu.grid(alpha=0.3)
        if cpu.lines:
            cpu.legend(fontsize=7)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=90)
    plt.close(fig)
