"""loadgen bench --curve: latency against offered load, per strategy and per peer.

Design:

1. **Calibration.** Per profile, every entry (a strategy or a --peer) runs once closed loop, in
   an order shuffled from the seed; its ops/s is the entry's maximum rate M.
2. **Rounds.** Each round runs every (entry, percentage) point once open loop at that percentage
   of the entry's M (``loadgen run --rate``), in an order shuffled afresh from (seed, profile,
   round), the profiles' runs alternating, as the other bench rounds.
3. **Per point**, over the rounds: median and 95 % CI (loadgen/bench/ci.py) of the offered and achieved
   ops/s, the p50/p90/p99/p99.9 latency of all operations counted from the intended start
   (coordinated omission corrected), the service-time p99, and the server CPU per op; per
   operation the medians of its percentiles.
4. **The knee** of an entry: the last point, in increasing load, that still achieves at least
   KNEE_ACHIEVED of what it offered and whose p99 is at most KNEE_P99_FACTOR times the p99 of the
   lightest point; beyond it the queue, not the service, sets the latency.

Pure orchestration over loadgen/bench/harness.py (one run = one fresh rpcsrv or the peer, the load,
the server's CPU over the measured window); tables and JSON are built here; the plot is
loadgen/bench/benchplot.py's plot_curve. Single-threaded.
"""

from __future__ import annotations

import time

from . import ci
from .harness import peer_run, strategy_run

__all__ = ["parse_points", "run_curve", "curve_result", "format_curve", "KNEE_ACHIEVED", "KNEE_P99_FACTOR",
           "MAX_POINT_PCT"]

#: a point beyond the knee achieves less than this share of what it offered ...
KNEE_ACHIEVED = 0.95
#: ... or its p99 is more than this many times the lightest point's. For an M/M/1 queue the response
#: time is S / (1 - load): 5x at 80 % load, where queueing has clearly taken over (at 3x, 67 %, the
#: rule split single and array on noise in the README's run: 12.36 ms against a bound of 12.02)
KNEE_P99_FACTOR = 5.0
#: the largest percentage --curve takes (far above the maximum the latency only measures the backlog)
MAX_POINT_PCT = 400
#: the figures of a point, with their JSON names (seconds become milliseconds in the table)
_LAT = (("p50", "p50_seconds"), ("p90", "p90_seconds"), ("p99", "p99_seconds"), ("p999", "p999_seconds"))


def parse_points(text: str):
    """[percentages] (ints, increasing) from "10,25,50,100,110", or a usage message (str)."""
    out = []
    for tok in (t.strip().rstrip("%") for t in text.split(",") if t.strip()):
        try:
            v = int(tok)
        except ValueError:
            return "--curve: %r is not a percentage (use e.g. 10,25,50,75,90,100,110)" % tok
        if not 1 <= v <= MAX_POINT_PCT:
            return "--curve: %d %% is outside 1..%d" % (v, MAX_POINT_PCT)
        if v in out:
            return "--curve: %d %% given twice" % v
        out.append(v)
    return sorted(out) if out else "--curve: no percentage given"


def _one(name: str, settings: dict, opts: dict, root: str, tell) -> dict:
    if name in settings["peers"]:
        return peer_run(name, settings["peers"][name], settings["peer_pids"].get(name), opts, tell)
    return strategy_run(name, root, opts, tell)


def _profile_opts(opts: dict, settings: dict, prof: str) -> dict:
    popts = dict(opts, profile=prof)
    loadfiles = settings["load"].get("loadfiles", {})
    if prof in loadfiles:
        popts["loadfile"] = loadfiles[prof]
    return popts


def _timed(run_fn, prog, prof: str, head: str) -> dict:
    prog.say("%s: starting; about %.0f s left%s" % (head, prog.left(),
                                                    "" if any(prog.durations.values()) else " (a guess)"))
    t0, started = time.monotonic(), time.time()
    run = run_fn(lambda what: prog.say("%s: %s" % (head, what)))
    run["start_unix"] = started
    run["wall_seconds"] = time.monotonic() - t0
    prog.durations[prof].append(run["wall_seconds"])
    return run


def run_curve(settings: dict, opts: dict, root: str, prog, state: dict) -> None:
    """Calibrate, then run the rounds, filling state[profile] = {"max": {entry: run},
    "points": {entry: {pct: [runs]}}, "orders": [...]} as runs finish (an interruption keeps
    what finished)."""
    names = list(settings["strategies"]) + list(settings["peers"])
    profiles = settings["profiles"]
    points = settings["curve"]
    arrival = settings["arrival"]
    for prof in profiles:
        state[prof].setdefault("max", {})
        state[prof].setdefault("points", {n: {p: [] for p in points} for n in names})
        state[prof].setdefault("orders", [])
    orders = {prof: ci.round_order(names, settings["seed"], -1, prof + "/max") for prof in profiles}
    for k in range(len(names)):
        for prof in profiles:
            name = orders[prof][k]
            head = "%s calibration, %s closed loop (%d/%d)" % (prof, name, k + 1, len(names))
            run = _timed(lambda tell: _one(name, settings, _profile_opts(opts, settings, prof), root, tell),
                         prog, prof, head)
            state[prof]["max"][name] = run
            prog.say("%s: maximum %.0f ops/s" % (head, run["ops_per_s"]))
    keys = ["%s@%d%%" % (n, p) for n in names for p in points]
    for r in range(settings["rounds"]):
        order = {}
        for prof in profiles:
            order[prof] = ci.round_order(keys, settings["seed"], r, prof + "/curve")
            state[prof]["orders"].append(order[prof])
        for k in range(len(keys)):
            for prof in profiles:
                key = order[prof][k]
                name, _, pct = key.rpartition("@")
                pct = int(pct.rstrip("%"))
                rate = state[prof]["max"][name]["ops_per_s"] * pct / 100.0
                if rate <= 0:
                    continue
                popts = dict(_profile_opts(opts, settings, prof), rate=rate, arrival=arrival)
                head = "%s round %d/%d, %s at %d %% = %.0f ops/s (%d/%d)" % (
                    prof, r + 1, settings["rounds"], name, pct, rate, k + 1, len(keys))
                run = _timed(lambda tell: _one(name, settings, popts, root, tell), prog, prof, head)
                run["round"] = r
                run["pct"] = pct
                state[prof]["points"][name][pct].append(run)
                ol = run.get("open_loop") or {}
                prog.say("%s: achieved %.0f ops/s, p99 %.3f ms" % (
                    head, run["ops_per_s"], (ol.get("all") or {}).get("p99_seconds", 0.0) * 1e3))


def _point(runs: list) -> dict:
    """Medians and CIs of one (entry, percentage) point over its rounds."""
    def fig(get):
        return ci.summary([get(r) for r in runs])

    def ol(r):
        return r.get("open_loop") or {}
    out = {"rounds_done": len(runs), "rate": fig(lambda r: ol(r).get("rate")),
           "offered_ops_per_s": fig(lambda r: ol(r).get("offered_ops_per_second")),
           "achieved_ops_per_s": fig(lambda r: r.get("ops_per_s")),
           "server_cpu_us_per_op": fig(lambda r: r.get("server_cpu_us_per_op")),
           "behind": sum(1 for r in runs if ol(r).get("behind")),
           "lag_end_seconds": fig(lambda r: ol(r).get("lag_end_seconds"))}
    for short, key in _LAT:
        out[short + "_seconds"] = fig(lambda r, key=key: (ol(r).get("all") or {}).get(key))
    out["service_p99_seconds"] = fig(lambda r: (ol(r).get("service_all") or {}).get("p99_seconds"))
    ops = sorted({op for r in runs for op in (ol(r).get("ops") or {})})
    out["ops"] = {op: {short + "_seconds": ci.summary([((ol(r).get("ops") or {}).get(op) or {}).get(key)
                                                       for r in runs])["median"] for short, key in _LAT}
                  for op in ops}
    return out


def knee(points: dict):
    """The knee's percentage (see the module), or None when no point has figures."""
    pcts = [p for p in sorted(points) if points[p]["p99_seconds"]["median"]]
    if not pcts:
        return None
    base = points[pcts[0]]["p99_seconds"]["median"]
    last = None
    for p in pcts:
        f = points[p]
        offered, achieved = f["offered_ops_per_s"]["median"], f["achieved_ops_per_s"]["median"]
        if offered and achieved is not None and achieved < KNEE_ACHIEVED * offered:
            break
        if f["p99_seconds"]["median"] > KNEE_P99_FACTOR * base:
            break
        last = p
    return last


def curve_result(out: dict, settings: dict) -> dict:
    """One profile's curve: per entry its closed-loop maximum, every point's figures, the knee."""
    res = {"rounds_done": len(out.get("orders", [])), "orders": out.get("orders", []), "entries": {}}
    for name, pts in out.get("points", {}).items():
        m = out.get("max", {}).get(name)
        if m is None:
            continue
        figs = {p: _point(rs) for p, rs in pts.items() if rs}
        res["entries"][name] = {
            "peer": name in settings["peers"], "max_ops_per_s": m["ops_per_s"],
            "max_server_cpu_us_per_op": m.get("server_cpu_us_per_op"), "calibration": m,
            "points": {str(p): f for p, f in figs.items()}, "knee_pct": knee(figs),
            "rounds": {str(p): rs for p, rs in pts.items()},
        }
    return res


def _g(ms: float) -> str:
    """A millisecond figure with 4 significant digits (0.2561, 24.76, 652.1, 8356)."""
    return "%.4g" % ms if ms < 1e4 else "%.0f" % ms


def _ms(s):
    return "n/a" if not s or s.get("median") is None else _g(s["median"] * 1e3)


def _ms_ci(s):
    if not s or s.get("median") is None:
        return "n/a"
    c = s.get("ci95")
    return _g(s["median"] * 1e3) + ("" if not c else " [%s, %s]" % (_g(c[0] * 1e3), _g(c[1] * 1e3)))


def _n(s, fmt="%.0f"):
    return "n/a" if not s or s.get("median") is None else fmt % s["median"]


def format_curve(profile: str, res: dict, settings: dict) -> str:
    """The human table of one profile's curve."""
    load = settings["load"]
    lines = ["", "== %s: latency against offered load; %d clients, open loop (%s arrivals), %d round(s) of %g s "
             "after %g s warmup per point, order shuffled per round (seed %d); median [95 %% CI]; latency from "
             "the intended start ==" % (profile, load["clients"], settings["arrival"], res["rounds_done"],
                                        load["time"], load["warmup"], settings["seed"]),
             "", "  %-12s %6s %9s %9s %9s %9s %24s %9s %9s %10s" % (
                 "", "load", "offered", "achieved", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "svc p99",
                 "CPU us/op")]
    for name, e in res["entries"].items():
        lines.append("  %-12s %6s %9.0f %9s %9s %9s %24s %9s %9s %10s" % (
            ("peer " + name) if e["peer"] else name, "max", e["max_ops_per_s"], "(closed", "loop)", "", "", "", "",
            "n/a" if e["max_server_cpu_us_per_op"] is None else "%.1f" % e["max_server_cpu_us_per_op"]))
        for p in sorted(e["points"], key=int):
            f = e["points"][p]
            mark = " <- knee" if e["knee_pct"] is not None and int(p) == e["knee_pct"] else ""
            behind = " (behind in %d/%d)" % (f["behind"], f["rounds_done"]) if f["behind"] else ""
            lines.append("  %-12s %5s%% %9s %9s %9s %9s %24s %9s %9s %10s%s%s" % (
                "", p, _n(f["offered_ops_per_s"]), _n(f["achieved_ops_per_s"]), _ms(f["p50_seconds"]),
                _ms(f["p90_seconds"]), _ms_ci(f["p99_seconds"]), _ms(f["p999_seconds"]),
                _ms(f["service_p99_seconds"]), _n(f["server_cpu_us_per_op"], "%.1f"), mark, behind))
    lines.append("")
    lines.append("  knee: the last point achieving >= %d %% of its offered rate with p99 <= %g x the lightest "
                 "point's; 'svc p99' is the service time's p99 (not corrected)" % (KNEE_ACHIEVED * 100,
                                                                                   KNEE_P99_FACTOR))
    return "\n".join(lines)
