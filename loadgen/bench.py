"""loadgen bench: rpcsrv's svc_alloc_arg strategies (and peer servers) compared under the same load.

Design of the comparison: each round runs every strategy and every peer once per profile, in an
order shuffled afresh from (--seed, profile, round) (ci.round_order; the seed and the orders are
in the JSON); the profiles' runs alternate. A run is loadgen/harness.py: a fresh `python -m rpcsrv --strategy S`,
the load, /metrics and /proc read at the edges of the measured window. Per strategy: medians
and 95 % CIs over rounds; per non-baseline entry: ratios to the baseline (`--baseline`, default
single) with 95 % CIs and verdicts (loadgen/ci.py names the method). `--target-ci PCT` keeps
adding rounds until every ratio's CI half-width is under PCT % or `--max-rounds` is reached.

The strategies are the server's own (`python -m rpcsrv --list-strategies`); the default is all
of them. `--udp-pps` runs the page_pool table instead (loadgen/udpbench.py; this module calls
down into it, it never imports this one).

Nothing lost: output paths are checked before the first server starts (loadgen/outputs.py);
the servers run in their own process group, so Ctrl-C reaches only this process, which stops
the current run cleanly, prints and writes what finished (marked interrupted) and exits 130.

Single-threaded. Imports neither alloc nor rpcsrv: the server is an outside process.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
import time

from . import ci, udpbench
from .benchreport import COMPARED, compare_all, format_profile, summarize, verdict_lines
from .harness import BenchError, Interrupted, peer_run, strategy_run
from .meta import SCHEMA_BENCH, build_meta
from .outputs import Outputs, check_path
from .strategies import StrategyError, load as load_strategies
from .workloads import DEFAULT_CLIENT_TXT

__all__ = ["add_arguments", "main"]

PROFILES = ("rw256k", "dbench")


def add_arguments(p) -> None:
    p.add_argument("--strategies", default="all",
                   help="comma-separated svc_alloc_arg strategies, or all (default: every strategy "
                        "`python -m rpcsrv --list-strategies` prints)")
    p.add_argument("--baseline", default="single",
                   help="the strategy, or the --peer, the others are compared against (default single); a peer "
                        "as the baseline compares servers, e.g. two builds of rpcsrv run as --peer before= and "
                        "--peer after=")
    p.add_argument("--profile", default="rw256k,dbench",
                   help="comma-separated: rw256k (sequential 256 KiB NFSv3 READ/WRITE), dbench "
                        "(the default dbench workload: client.txt, see --dbench-lines) and any loadfile "
                        "as NAME=PATH or PATH (named after the file), e.g. nfs3=/path/to/nfs_3.load "
                        "(default: rw256k,dbench)")
    p.add_argument("--clients", type=int, default=4, help="client processes per run (default 4)")
    p.add_argument("--time", type=float, default=10.0, help="measured seconds per run (default 10)")
    p.add_argument("--warmup", type=float, default=2.0, help="warmup seconds per run (default 2)")
    p.add_argument("--rounds", type=int, default=3,
                   help="rounds; each runs every strategy and peer once in a shuffled order (default 3)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the shuffled orders (default: a random one, printed and kept in the JSON)")
    p.add_argument("--target-ci", type=float, default=None, metavar="PCT",
                   help="after --rounds, keep adding rounds until every ratio's 95%% CI half-width is under "
                        "PCT %% of the ratio, or --max-rounds is reached; the output says which")
    p.add_argument("--max-rounds", type=int, default=10, metavar="N",
                   help="the cap on rounds with --target-ci (default 10)")
    p.add_argument("--threads", type=int, default=8, help="rpcsrv worker threads (default 8)")
    p.add_argument("--arena-mib", type=int, default=256, help="rpcsrv allocator arena (default 256)")
    p.add_argument("--fast-path", choices=("on", "off"), default="on",
                   help="rpcsrv's request path: on, the compiled one (the default), or off, the Python "
                        "reference path, where every strategy refills through the Python API")
    p.add_argument("--rw-file-size", type=int, default=8 << 20, help="rw256k: bytes per file (default 8 MiB)")
    p.add_argument("--rw-files", type=int, default=4, help="rw256k: files per client (default 4)")
    p.add_argument("--dbench-lines", type=int, default=60000, metavar="N",
                   help="dbench profile: replay the first N lines of client.txt (default 60000: a run of the "
                        "default settings reaches about a sixth of them, and each client parses only these, "
                        "not all 458,000; 0 = the whole file)")
    p.add_argument("--export", metavar="DIR",
                   help="directory under which each run gets a fresh export (default: a temporary directory)")
    p.add_argument("--peer", action="append", default=[], metavar="NAME=URL",
                   help="also run the same load against another NFSv3 server in every round (repeatable), "
                        "e.g. ganesha=nfs://127.0.0.1/srv/x?nfsport=20490&mountport=20491")
    p.add_argument("--peer-pid", action="append", default=[], metavar="NAME=PID",
                   help="the process of peer NAME, so its CPU per op is measured as rpcsrv's is (repeatable)")
    p.add_argument("--json", metavar="FILE",
                   help="write every figure, the rounds and the raw histograms as JSON (- for stdout)")
    p.add_argument("--output-format", choices=("text", "json"), default="text",
                   help="json: the JSON document on stdout and the human table on stderr (default text)")
    p.add_argument("--plot", metavar="FILE",
                   help="write a PNG: throughput and svc_alloc_arg us per call with CIs, the kernel's bars, "
                        "latency distributions")
    udpbench.add_arguments(p)


def _usage(msg: str) -> int:
    print("loadgen bench: %s" % msg, file=sys.stderr)
    return 2


def _parse(args):
    """Validated settings, or a usage message (str)."""
    for flag, path, std in (("--json", args.json, True), ("--plot", args.plot, False)):
        err = check_path(flag, path, allow_stdout=std)
        if err:
            return err
    if args.export and not os.path.isdir(args.export):
        return "--export %s: not a directory" % args.export
    if args.clients < 1 or args.rounds < 1 or args.time <= 0 or args.warmup < 0 or args.threads < 1 \
            or args.dbench_lines < 0:
        return "--clients, --rounds, --threads must be >= 1, --time > 0, --warmup and --dbench-lines >= 0"
    if args.target_ci is not None and (args.target_ci <= 0 or args.max_rounds < max(2, args.rounds)):
        return "--target-ci must be > 0 and --max-rounds >= --rounds (and >= 2)"
    profiles, loadfiles = [], {}
    for spec in (s.strip() for s in args.profile.split(",") if s.strip()):
        if spec in PROFILES:
            profiles.append(spec)
            continue
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = os.path.splitext(os.path.basename(spec))[0], spec
        if not name or name in PROFILES or name in loadfiles or not os.path.isfile(path):
            return ("--profile takes rw256k, dbench and loadfiles as NAME=PATH or PATH; %r is neither "
                    "(no such file, or the name is taken)" % spec)
        profiles.append(name)
        loadfiles[name] = os.path.abspath(path)
    if not profiles:
        return "--profile takes rw256k, dbench and loadfiles as NAME=PATH or PATH"
    try:
        table = load_strategies()
    except StrategyError as e:
        return str(e)
    known = [s["name"] for s in table]
    strategies = known if args.strategies == "all" else [s.strip() for s in args.strategies.split(",") if s.strip()]
    bad = [s for s in strategies if s not in known]
    if bad or not strategies:
        return "unknown strategy %s (choose from %s)" % (",".join(bad), ",".join(known))
    peers, pids = {}, {}
    for spec in args.peer:
        name, sep, url = spec.partition("=")
        if not sep or not name or not url.startswith("nfs://") or name in strategies or name in peers:
            return "--peer wants NAME=nfs://... with a NAME not already used, got %r" % spec
        peers[name] = url
    for spec in args.peer_pid:
        name, sep, pid = spec.partition("=")
        if not sep or name not in peers or not pid.isdigit() or not os.path.exists("/proc/%s" % pid):
            return "--peer-pid wants NAME=PID of a running process and a NAME given to --peer, got %r" % spec
        pids[name] = int(pid)
    if args.baseline not in strategies and args.baseline not in peers:
        return "--baseline %s is neither among the strategies run (%s) nor a --peer" % (
            args.baseline, ",".join(strategies))
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    return {
        "profiles": profiles, "strategies": strategies, "baseline": args.baseline, "seed": seed,
        "rounds": args.rounds, "target_ci_pct": args.target_ci,
        "max_rounds": args.max_rounds if args.target_ci is not None else args.rounds,
        "peers": peers, "peer_pids": pids,
        "server": {"threads": args.threads, "arena_mib": args.arena_mib, "fast_path": args.fast_path,
                   "listen": "127.0.0.1:0"},
        "load": {"clients": args.clients, "time": args.time, "warmup": args.warmup,
                 "rw_file_size": args.rw_file_size, "rw_files": args.rw_files,
                 "dbench_loadfile": DEFAULT_CLIENT_TXT if os.path.exists(DEFAULT_CLIENT_TXT) else None,
                 "dbench_lines": args.dbench_lines or None, "loadfiles": loadfiles},
        "kernel": {s["name"]: {k: s.get(k) for k in ("summary", "kernel", "kernel_us", "kernel_calls")}
                   for s in table if s["name"] in strategies},
    }


class Progress:
    """Progress lines on stderr: profile, round, entry, phase, and the ETA from the runs so far.

    A run's expected length is the mean of the finished runs of its profile; before any, the
    mean overhead (server start, mount, setup, stop) seen in other profiles plus warmup + time;
    before any run at all, a guess of FIRST_GUESS_OVERHEAD s (said so). The profiles' runs
    alternate, so every profile's run length is known after the first few runs."""

    #: seconds of start, mount, setup and stop per run before any was measured: 1.2 s measured
    #: per run of the default `make bench` on the 2-core VM (3 s, the earlier guess, put the first
    #: line 22 % above the truth; every later line was within 4.3 %)
    FIRST_GUESS_OVERHEAD = 1.5

    def __init__(self, settings):
        self.s = settings
        self.window = settings["load"]["time"] + settings["load"]["warmup"]
        self.durations = {p: [] for p in settings["profiles"]}
        self.entries = len(settings["strategies"]) + len(settings["peers"])

    def _per_run(self, prof):
        d = self.durations[prof]
        if d:
            return sum(d) / len(d)
        over = [x - self.window for p in self.durations.values() for x in p]
        return self.window + (sum(over) / len(over) if over else self.FIRST_GUESS_OVERHEAD)

    def left(self):
        """Seconds left for the planned rounds (--rounds; --target-ci may add more)."""
        planned = self.s["rounds"] * self.entries
        return sum(max(0, planned - len(self.durations[p])) * self._per_run(p) for p in self.s["profiles"])

    def say(self, msg):
        print("bench: " + msg, file=sys.stderr, flush=True)


def run_rounds(settings: dict, opts: dict, root: str, prog: Progress, state: dict) -> None:
    """Run the rounds, filling state[profile] (runs, orders, stop reason) as runs finish. A round
    runs every entry once per profile, each profile in its own shuffled order, the profiles' runs
    alternating (so drift hits them alike and the ETA knows every profile after a few runs)."""
    names = settings["strategies"] + list(settings["peers"])
    profiles = settings["profiles"]
    for prof in profiles:
        state[prof].setdefault("runs", {n: [] for n in names})
        state[prof].setdefault("orders", [])
    target = settings["target_ci_pct"]
    r = 0
    while True:
        if r >= settings["rounds"]:
            reason = "rounds"
            if target is not None:
                hw = max(_max_half_width(compare_all(state[p]["runs"], settings["baseline"])) for p in profiles)
                if hw <= target:
                    reason = "target-ci reached (largest CI half-width %.1f %% <= %g %%)" % (hw, target)
                elif r >= settings["max_rounds"]:
                    reason = "max-rounds reached (largest CI half-width %.1f %% > %g %%)" % (hw, target)
                else:
                    reason = None
                for p in profiles:
                    state[p]["max_ci_half_width_pct"] = hw
            if reason:
                for p in profiles:
                    state[p]["stop_reason"] = reason
                return
        orders = {}
        for prof in profiles:
            orders[prof] = ci.round_order(names, settings["seed"], r, prof)
            state[prof]["orders"].append(orders[prof])
        # the profiles' runs alternate (rw256k, dbench, rw256k, ...), each profile in its own order
        queue = [(prof, k, orders[prof][k]) for k in range(len(names)) for prof in profiles]
        for prof, k, name in queue:
            popts = dict(opts, profile=prof)
            loadfiles = settings["load"].get("loadfiles", {})
            if prof in loadfiles:                           # a loadfile profile: that file, whole
                popts["loadfile"] = loadfiles[prof]
            head = "%s round %d/%d, %s (%d/%d)" % (prof, r + 1, max(settings["rounds"], r + 1), name, k + 1,
                                                   len(names))
            prog.say("%s: starting; about %.0f s left%s" % (head, prog.left(),
                                                            "" if any(prog.durations.values()) else " (a guess)"))
            t0, started = time.monotonic(), time.time()
            tell = lambda what, head=head: prog.say("%s: %s" % (head, what))  # noqa: E731
            if name in settings["peers"]:
                run = peer_run(name, settings["peers"][name], settings["peer_pids"].get(name), popts, tell)
            else:
                run = strategy_run(name, root, popts, tell)
            run["round"] = r
            run["start_unix"] = started
            run["wall_seconds"] = time.monotonic() - t0
            state[prof]["runs"][name].append(run)
            prog.durations[prof].append(run["wall_seconds"])
            prog.say("%s: done in %.1f s, %.0f ops/s" % (head, run["wall_seconds"], run["ops_per_s"]))
        r += 1


def _max_half_width(comparisons: dict) -> float:
    hw = [ci.half_width_pct(c["ratio"], c["ci95"]) for figs in comparisons.values() for f, c in figs.items()
          if f in COMPARED and c["ratio"] is not None]
    return max(hw) if hw else float("inf")


def profile_result(out: dict, settings: dict) -> dict:
    runs = out.get("runs", {})
    res = {"rounds_done": len(out.get("orders", [])), "orders": out.get("orders", []),
           "stop_reason": out.get("stop_reason"), "strategies": {}, "peers": {}}
    for name, rs in runs.items():
        peer = name in settings["peers"]
        d = summarize(rs, peer=peer)
        d["rounds"] = rs
        res["peers" if peer else "strategies"][name] = d
    res["comparisons"] = compare_all(runs, settings["baseline"])
    return res


def main(args) -> int:
    if getattr(args, "udp_pps", False):          # the page_pool table: RPC calls/s over UDP (udpbench.py)
        return udpbench.main(args)
    settings = _parse(args)
    if isinstance(settings, str):
        return _usage(settings)
    outs = Outputs(args.json, args.output_format)
    opts = dict(settings["load"], threads=settings["server"]["threads"], arena_mib=settings["server"]["arena_mib"],
                fast_path=settings["server"]["fast_path"])
    root = tmp = None
    if args.export:
        root = os.path.abspath(args.export)
    else:
        tmp = root = tempfile.mkdtemp(prefix="nfsbulk-bench-")
    load = settings["load"]
    if "dbench" in settings["profiles"] and load["dbench_loadfile"] and load["dbench_lines"]:
        fd, opts["loadfile"] = tempfile.mkstemp(prefix="nfsbulk-client-%d-lines-" % load["dbench_lines"],
                                                suffix=".txt")
        with open(load["dbench_loadfile"], errors="replace") as src, os.fdopen(fd, "w") as dst:
            for i, line in enumerate(src):
                if i >= load["dbench_lines"]:
                    break
                dst.write(line)
    opts.pop("dbench_loadfile", None)
    opts.pop("dbench_lines", None)
    prog = Progress(settings)
    prog.say("strategies %s, baseline %s, peers %s, seed %d" % (",".join(settings["strategies"]), settings["baseline"],
                                                               ",".join(settings["peers"]) or "none", settings["seed"]))
    state = {p: {} for p in settings["profiles"]}
    interrupted, failure = False, None
    try:
        run_rounds(settings, opts, root, prog, state)
    except (Interrupted, KeyboardInterrupt):
        interrupted = True
        prog.say("interrupted: the current run is dropped; writing the runs that finished")
    except BenchError as e:
        failure = str(e)
        print("loadgen bench: %s" % e, file=sys.stderr)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        if opts.get("loadfile"):
            os.unlink(opts["loadfile"])
    results = {p: profile_result(state[p], settings) for p in settings["profiles"] if state[p].get("runs")}
    for prof, res in results.items():
        outs.say(format_profile(prof, res, settings, settings["kernel"]))
    doc = {"schema": SCHEMA_BENCH, "meta": build_meta(), "settings": {k: v for k, v in settings.items() if k != "kernel"},
           "kernel": settings["kernel"], "interrupted": interrupted, "error": failure, "profiles": results}
    first = results.get(settings["profiles"][0])
    if first:       # the top-level view: the first profile (rw256k when run)
        doc["strategies"] = {s: {k: v for k, v in d.items() if k != "rounds"} for s, d in first["strategies"].items()}
        doc["peers"] = {n: {k: v for k, v in d.items() if k != "rounds"} for n, d in first["peers"].items()}
        doc["comparisons"] = first["comparisons"]
    if interrupted:
        outs.say("bench: interrupted after %d finished run(s)" % sum(
            len(rs) for p in state.values() for rs in p.get("runs", {}).values()))
    for where in outs.write(doc):
        if where != "stdout":
            outs.say("JSON written to %s" % where)
    code = 130 if interrupted else 1 if failure else 0
    if args.plot and results:
        try:
            from .benchplot import plot
            plot(args.plot, doc)
            outs.say("plot written to %s" % args.plot)
        except ImportError:
            print("loadgen bench: --plot needs matplotlib", file=sys.stderr)
            code = code or 1
    lines = [ln for prof, res in results.items() for ln in verdict_lines(prof, res, settings["baseline"])]
    if lines:                                      # the verdicts come last, where a reader looks
        outs.say("\n" + "\n".join(lines))
    return code
