"""The loadgen CLI: ``python -m loadgen run URL [options]`` (console script
``loadgen``).  Subcommands are a table so ``bench`` can be added beside
``run``.  Owns argument parsing and validation only; the run itself is
:func:`runner.run`.
"""
from __future__ import annotations

import argparse
import os
import sys

import clikit

__all__ = ["main", "build_parser"]

_DESCRIPTION = """\
dbench-like NFSv3 load generator on python-libnfs. N client processes, each
with its own libnfs context and TCP connection, work in /clients/client<N>
under the export and replay a loadfile in a loop for --warmup then --time
seconds. Counts, bytes and latencies reset when the warmup ends (as dbench).
"""

_RUN_EPILOG = """\
URL is libnfs's: nfs://HOST/EXPORT?nfsport=P&mountport=P&version=3
(name the ports when several servers share one rpcbind).

Workloads: a dbench NFS loadfile (nfs.load style: REPEAT, LOOP/ENDLOOP,
SLEEP, WRITEPATTERN, RANDOMSTRING, random offsets *, /align, %%mod, +add,
relative +N), a classic dbench client.txt (NTCreateX, ReadX, WriteX, ...),
or --profile rw256k. Default: /usr/share/dbench/client.txt when installed,
otherwise a small loadfile shipped with loadgen.

Output: one line per second (clients, ops, MB/sec, phase, seconds, max
latency of the second), then a per-operation table (count, mean, p50, p99,
max latency in ms, errors) with throughput (MB = 10^6 bytes of READ+WRITE
payload) and ops/sec. Status mismatches are printed as
"clientN [line] OP path got X - expected Y" and counted.

Exit status: 0 ok; 1 a client failed (mount, setup, crash, hang), any
status was unexpected, or every operation failed: the last line on stderr,
"loadgen: FAILED: ... first: ...", names the first cause (client, loadfile
line, operation, path, status); 2 usage or loadfile error; 130 interrupted
(the table for what ran is still printed). Operations and ops/sec count
what completed as the loadfile expects; unexpected statuses (including
calls never sent because an earlier step failed) are failures, counted
apart. A run during which a client died is marked DEGRADED.

Open loop (--rate OPS): the clients start operations on a schedule (OPS
per second in total, an equal share each, fixed spacing or --arrival
poisson) instead of as fast as replies come back. Latency then counts from
each operation's intended start, so a server stall shows in the
percentiles (coordinated omission corrected); the service time is reported
beside it, with the schedule's lag and the operations the end reached
before they started. Loadfile timestamps and SLEEP lines do not apply: the
schedule is the pacing. A python-libnfs client has one call in flight, so a
rate above clients / service time cannot be offered: the run says so, with
the clients it would need, and still ends on time.
"""


def _checked(convert, what: str, ok, bound: str):
    """An argparse type: convert(text); text that does not convert is the error "bad WHAT 'text'",
    a value for which ok(v) is false the error BOUND."""
    def parse(text: str):
        try:
            v = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad {what} {text!r}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(bound)
        return v
    parse.__name__ = what.replace(" ", "_")
    return parse


def _bytes(text: str) -> int:
    """A byte count with an optional K/M/G (KiB/MiB/GiB) suffix, any case."""
    t = text.strip().upper()
    for suf, m in (("KIB", 1024), ("MIB", 1 << 20), ("GIB", 1 << 30), ("K", 1024), ("M", 1 << 20), ("G", 1 << 30)):
        if t.endswith(suf):
            return int(t[: -len(suf)]) * m
    return int(t)


_size = _checked(_bytes, "size", lambda v: v > 0, "size must be positive")
_nonneg = _checked(float, "number", lambda v: v >= 0, "must be >= 0")
_positive_int = _checked(int, "integer", lambda v: v >= 1, "must be >= 1")
#: --rate's bound: 10^6 ops/s is far above what any number of one-call-in-flight clients offers
MAX_RATE = 1e6
_rate = _checked(float, "rate", lambda v: 0 < v <= MAX_RATE and v == v,
                 f"--rate is operations per second in total, > 0 and at most {MAX_RATE:g}")


def _metrics_port(text: str):
    """A port number (0 picks a free one) or ``off`` (None)."""
    if text.strip().lower() in ("off", "none", "no"):
        return None
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number or 'off', got {text!r}") from None
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {v}")
    return v


def _hostport_arg(default_host: str, min_port: int):
    """An argparse type: HOST:PORT -> (host, port), refused at parse time in the flag's words
    ("argument --master: 'foo': must be HOST:PORT"); a bare PORT or :PORT means default_host."""
    def parse(text: str):
        from .distributed.distributed import parse_hostport
        try:
            return parse_hostport(text, default_host, min_port)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = "HOST:PORT"
    return parse


def _have_locust() -> bool:
    import importlib.util
    return importlib.util.find_spec("locust") is not None


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="run a load against one NFS server",
                       description=_DESCRIPTION, epilog=_RUN_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", metavar="URL", help="NFS export URL, e.g. nfs://127.0.0.1/export?nfsport=2049&mountport=20048&version=3")
    w = p.add_mutually_exclusive_group()
    w.add_argument("--loadfile", metavar="FILE|NAME",
                   help="dbench loadfile to replay (NFS dialect or client.txt), by path, or by the name of one "
                        "shipped with loadgen: seq-write (32 KiB sequential writes and a COMMIT), metadata "
                        "(create, lookup, getattr, setattr, readdir(plus), rename, link, symlink, remove, "
                        "mkdir, rmdir), mixed-rw (64 KiB and random 4 KiB reads and writes)")
    w.add_argument("--profile", choices=["rw256k"],
                   help="built-in profile: rw256k = sequential 256 KiB READ3/WRITE3 over a per-client "
                        "file set laid out in an untimed setup phase")
    p.add_argument("--clients", type=_positive_int, default=1, metavar="N",
                   help="number of client processes, each with its own connection (default 1, at most 256: "
                        "each client is a whole Python process)")
    p.add_argument("--time", type=clikit.seconds_arg(), default=60.0, metavar="SECONDS",
                   help="length of the measured phase after warmup (default 60)")
    p.add_argument("--warmup", type=_nonneg, default=5.0, metavar="SECONDS",
                   help="warmup before measuring; its counts are discarded (default 5)")
    p.add_argument("--rw-files", type=_positive_int, default=4, metavar="K",
                   help="rw256k: files per client (default 4)")
    p.add_argument("--rw-file-size", type=_size, default=8 << 20, metavar="BYTES",
                   help="rw256k: size of each file, suffixes K/M/G allowed (default 8M)")
    p.add_argument("--run-once", action="store_true",
                   help="replay the loadfile once per client and stop, whatever --time says; "
                        "--warmup is ignored so every operation of the pass is measured (as dbench's --run-once)")
    p.add_argument("--rate", type=_rate, default=None, metavar="OPS",
                   help="open loop: start OPS operations per second in total (an equal share per client) on a "
                        "schedule, and count latency from each one's intended start (default: closed loop, "
                        "as fast as replies come back)")
    p.add_argument("--arrival", choices=("fixed", "poisson"), default="fixed",
                   help="with --rate: fixed spacing (default) or Poisson arrivals (exponential gaps, from --seed)")
    p.add_argument("--strict", action="store_true",
                   help="a status mismatch stops the run with exit status 1 (default: report and count)")
    p.add_argument("--json", metavar="FILE", help="write the results (per-op histograms with fixed bucket "
                                                  "bounds, mergeable across runs) to FILE")
    p.add_argument("--metrics-port", type=_metrics_port, default=9411, metavar="PORT|off",
                   help="serve Prometheus /metrics on this port during the run (default 9411; 0 picks a "
                        "free port, announced on stderr; 'off' disables, as --no-metrics)")
    p.add_argument("--no-metrics", dest="metrics_port", action="store_const", const=None,
                   help="serve no /metrics endpoint")
    p.add_argument("--metrics-addr", default="127.0.0.1", metavar="ADDR",
                   help="address for /metrics (default 127.0.0.1)")
    p.add_argument("--ignore-timestamps", action="store_true",
                   help="run loadfile lines back to back instead of waiting for their timestamps "
                        "(dbench honours timestamps)")
    p.add_argument("--seed", type=int, default=0, help="seed for random offsets and RANDOMSTRING (default 0)")
    p.add_argument("--start-timeout", type=_nonneg, default=60.0, metavar="SECONDS",
                   help="clients must mount, parse and set up within this time (default 60)")
    p.add_argument("--rpc-timeout", type=_nonneg, default=30.0, metavar="SECONDS",
                   help="libnfs timeout for each call, whole seconds, 0 = wait forever (default 30)")
    p.add_argument("--max-mismatches", type=int, default=20, metavar="N",
                   help="print at most N mismatch lines (all are counted; default 20)")
    _add_master_options(p)
    p.set_defaults(func=_cmd_run)


def _add_master_options(p) -> None:
    g = p.add_argument_group("load from several machines (Locust's distributed runner; see `loadgen worker`)")
    g.add_argument("--master", action="store_true",
                   help="run no clients here: be the master of `loadgen worker` processes on this or other "
                        "hosts; each worker process is one client; same output, JSON (plus one row per "
                        "worker) and /metrics as a local run")
    g.add_argument("--master-bind", type=_hostport_arg("*", 0), default="*:5557", metavar="HOST:PORT",
                   help="--master: address workers connect to (default *:5557; port 0 picks a free one, "
                        "announced on the first output line); an address that cannot be listened on is "
                        "refused before any wait")
    g.add_argument("--expect-workers", type=_positive_int, metavar="N",
                   help="--master: wait (up to --start-timeout) for N worker processes, then start N clients; "
                        "workers connecting later are refused")
    g.add_argument("--web-ui", type=_hostport_arg("127.0.0.1", 0), metavar="HOST:PORT",
                   help="--master: also serve Locust's live web UI (NFS op rates and latencies) on HOST:PORT "
                        "(default: no web UI)")


def _master_wire(args, cfg: dict, desc: str) -> dict:
    """What workers need to replay the load: the loadfile travels as text; the workload's name
    and the phases only for the worker's "client N started" line (the master keeps the clock)."""
    from .run import workloads
    wire = {k: cfg[k] for k in ("url", "rpc_timeout", "strict", "ignore_timestamps", "seed", "profile",
                                "loadfile", "rw_files", "rw_file_size", "warmup", "time")}
    wire["desc"] = desc
    wire["loadfile_text"] = None
    if not args.profile:
        if args.loadfile:
            path = args.loadfile
        elif os.path.exists(workloads.DEFAULT_CLIENT_TXT):
            path = workloads.DEFAULT_CLIENT_TXT
        else:
            path = None
            wire["loadfile"], wire["loadfile_text"] = "<loadgen default>", workloads.DEFAULT_LOADFILE
        if path is not None:
            with open(path, encoding="utf-8", errors="replace") as f:
                wire["loadfile"], wire["loadfile_text"] = path, f.read()
    return wire


def _cmd_master(args, cfg: dict, desc: str) -> int:
    from .run.runner import EXIT_USAGE
    if args.expect_workers is None:
        print("loadgen: --master needs --expect-workers N", file=sys.stderr)
        return EXIT_USAGE
    if args.clients != 1:
        print("loadgen: --clients does not apply with --master (each worker process is one client; "
              "use --expect-workers)", file=sys.stderr)
        return EXIT_USAGE
    if args.run_once:
        # the master's clock ends a distributed run; a pass that ends per client is not wired through
        print("loadgen: --run-once does not apply with --master (the master ends the run after --time; "
              "replay one pass with a local `loadgen run`)", file=sys.stderr)
        return EXIT_USAGE
    if not _have_locust():
        print("loadgen: --master needs Locust; install nfsbulk[distributed] (make setup does)", file=sys.stderr)
        return EXIT_USAGE
    from .distributed.distributed import bind_problem, run_master
    bind, ui = args.master_bind, args.web_ui          # (host, port), checked at parse time
    # before any wait: an address taken or not of this host is said now, not after --start-timeout
    for flag, addr in (("--master-bind", bind), ("--web-ui", ui)):
        problem = bind_problem(*addr) if addr is not None else None
        if problem:
            print(f"loadgen: {flag} {addr[0]}:{addr[1]}: {problem}", file=sys.stderr)
            return EXIT_USAGE
    cfg = dict(cfg, clients=args.expect_workers, wire=_master_wire(args, cfg, desc))
    return run_master(cfg, desc, bind, args.expect_workers, web_ui=ui)


def _cmd_run(args) -> int:
    from .run.loadfile import LoadfileError, parse_file
    from .run.runner import EXIT_USAGE, run
    from .run import workloads

    from .common.outputs import check_path
    from .run.runner import clients_problem

    if not args.url.startswith("nfs://"):
        print(f"loadgen: URL must start with nfs://, got {args.url!r}", file=sys.stderr)
        return EXIT_USAGE
    problem = clients_problem(args.clients)
    if problem:
        print(f"loadgen: {problem}", file=sys.stderr)
        return EXIT_USAGE
    bad = check_path("--json", args.json)
    if bad:                      # before any client starts: a bad path must not cost the run's results
        print(f"loadgen: {bad}", file=sys.stderr)
        return EXIT_USAGE
    if args.profile == "rw256k":
        desc = f"profile rw256k ({args.rw_files} x {args.rw_file_size} bytes per client)"
    elif args.loadfile:
        path = workloads.resolve_loadfile(args.loadfile)
        if path is None:
            print(f"loadgen: --loadfile {args.loadfile}: no such file and no shipped loadfile of that name "
                  f"(shipped: {', '.join(workloads.shipped_loadfiles()) or 'none'})", file=sys.stderr)
            return EXIT_USAGE
        try:
            parse_file(path)                   # fail fast, with the line number
        except LoadfileError as e:
            print(f"loadgen: {e}", file=sys.stderr)
            return EXIT_USAGE
        desc = args.loadfile if path == os.path.abspath(args.loadfile) else f"{args.loadfile} ({path})"
        args.loadfile = path
    else:
        desc = workloads.DEFAULT_CLIENT_TXT if os.path.exists(workloads.DEFAULT_CLIENT_TXT) else "<loadgen default>"
    cfg = {
        "url": args.url, "clients": args.clients, "time": args.time, "warmup": args.warmup,
        "loadfile": os.path.abspath(args.loadfile) if args.loadfile else None,
        "profile": args.profile, "rw_files": args.rw_files, "rw_file_size": args.rw_file_size,
        "strict": args.strict, "json": args.json, "metrics_port": args.metrics_port,
        "metrics_addr": args.metrics_addr, "ignore_timestamps": args.ignore_timestamps,
        "seed": args.seed, "start_timeout": args.start_timeout, "rpc_timeout": args.rpc_timeout,
        "max_mismatches": args.max_mismatches, "run_once": args.run_once,
        "rate": args.rate, "arrival": args.arrival if args.rate else None,
    }
    if args.rate is None and args.arrival != "fixed":
        print("loadgen: --arrival needs --rate (a closed-loop run has no schedule)", file=sys.stderr)
        return EXIT_USAGE
    if args.rate is not None and args.run_once:
        print("loadgen: --rate does not apply with --run-once (a pass has no time window for a schedule)",
              file=sys.stderr)
        return EXIT_USAGE
    if args.rate is not None and args.master:
        print("loadgen: --rate is not wired through --master yet (workers run closed loop); run it locally",
              file=sys.stderr)
        return EXIT_USAGE
    if args.master:
        return _cmd_master(args, cfg, desc)
    if args.expect_workers is not None or args.web_ui:
        print("loadgen: --expect-workers and --web-ui need --master", file=sys.stderr)
        return EXIT_USAGE
    return run(cfg, desc)


def _add_bench(sub) -> None:
    from .bench import bench
    p = sub.add_parser(
        "bench", help="compare rpcsrv's svc_alloc_arg strategies (and peer servers) under load, with CIs",
        description="Each round runs every svc_alloc_arg strategy (and every --peer) once, in an order shuffled "
                    "from --seed: rpcsrv is started as a subprocess, the load runs, the server's metrics and "
                    "CPU time are read over the measured window. Per strategy: medians and 95 % CIs over "
                    "rounds of ops/s, MB/s, svc_alloc_arg us per call and server CPU us per op, beside the "
                    "kernel's figures; against --baseline: ratios with 95 % CIs and a verdict (faster, slower, "
                    "no significant difference). Ends with the verdict lines.",
        epilog="Exit status: 0 ok; 1 a run failed; 2 usage (bad flag or output path, checked before any "
               "server starts); 130 interrupted (the finished runs are still printed and written).")
    bench.add_arguments(p)
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(args) -> int:
    from .bench import bench
    if getattr(args, "plot", None) and not _have_matplotlib():
        # before any server starts: a run of several minutes must not end without its plot
        print("loadgen bench: --plot needs matplotlib, an optional extra: pip install 'nfsbulk[plot]' "
              "(make setup installs it)", file=sys.stderr)
        return 2
    return bench.main(args)


def _have_matplotlib() -> bool:
    import importlib.util
    return importlib.util.find_spec("matplotlib") is not None


def _add_soak(sub) -> None:
    from .reliability import soak
    p = sub.add_parser(
        "soak", help="many clients for a bounded time with a server restart in the middle",
        description="Run rpcsrv with N client processes of mixed load for a bounded time, restart the server "
                    "in the middle (clients reconnect with their old handles), sample the server's RSS, and "
                    "report ops, unexpected statuses, client failures and allocator pages leaked; exit 0 only "
                    "when unexpected, failures and leaks are all 0.")
    soak.add_arguments(p)
    p.set_defaults(func=lambda a: soak.main(a))


def _add_fuzz(sub) -> None:
    from .reliability import fuzz
    p = sub.add_parser(
        "fuzz", help="mutated RPC records against a live rpcsrv: count crashes, hangs, leaked pages",
        description=fuzz.__doc__.split("\n\n")[0],
        epilog="Exit status 0 when crashes, hangs and leaked pages are all 0.")
    fuzz.add_arguments(p)
    p.set_defaults(func=lambda a: fuzz.main_args(a))


def _add_capture(sub) -> None:
    from .capture import capture_cli
    p = sub.add_parser("capture-to-loadfile", help="make a dbench NFS loadfile from a capture of NFSv3 traffic",
                       description=capture_cli.HELP_DESCRIPTION, epilog=capture_cli.HELP_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    capture_cli.add_arguments(p)
    p.set_defaults(func=lambda a: capture_cli.main(a))


def _add_worker(sub) -> None:
    p = sub.add_parser(
        "worker", help="host clients for a `loadgen run --master` on this machine",
        description="Connect to a loadgen master (`loadgen run URL --master ...`) and run --processes "
                    "worker processes, each one loadgen client (its own libnfs context, /clients/clientN, "
                    "N given by the master). The master sends the workload (loadfile text included) and "
                    "the clock; this command only needs to reach the master and the NFS server.",
        epilog="Says on stderr, one line each: connected to master H:P as NODE; client N started: "
               "<workload>; client N ended: <ops> ops measured, <why>; exit S (with --processes N each "
               "process says its own, then: N processes ended, exit S). "
               "Exit status: 0 the master ended the run; 1 refused (connected after the start), the "
               "client failed, or the master unreachable (--connect-timeout) or lost (--master-timeout); "
               "2 usage (a bad --master, a host that does not resolve); 130 interrupted.")
    p.add_argument("--master", required=True, type=_hostport_arg("127.0.0.1", 1), metavar="HOST:PORT",
                   help="the master's --master-bind address as seen from this host (e.g. 10.0.0.5:5557); "
                        "a host name that does not resolve is refused before any process starts")
    p.add_argument("--processes", type=_positive_int, default=1, metavar="N",
                   help="worker processes (= clients) to run here; python-libnfs holds the GIL, so one "
                        "client per process (default 1)")
    p.add_argument("--connect-timeout", type=clikit.seconds_arg(), default=None, metavar="SECONDS",
                   help="retry reaching the master for this long, then exit 1 naming the cause (default "
                        "300: workers may start before the master)")
    p.add_argument("--master-timeout", type=clikit.number_arg(2, None, "s"), default=None, metavar="SECONDS",
                   help="the master is lost after this long without its heartbeat (sent every second): "
                        "the client stops and the worker exits 1 (default 60; longer than any NFS call)")
    p.set_defaults(func=_cmd_worker)


def _cmd_worker(args) -> int:
    if not _have_locust():
        print("loadgen worker: needs Locust; install nfsbulk[distributed] (make setup does)", file=sys.stderr)
        return 2
    from .distributed.distworker import CONNECT_TIMEOUT, MASTER_TIMEOUT, resolve_problem, worker_main
    host, port = args.master                      # checked at parse time
    problem = resolve_problem(host, port)         # before any process starts: a typo is not retried
    if problem:
        print(f"loadgen worker: --master {host}:{port}: {problem}", file=sys.stderr)
        return 2
    return worker_main((host, port), args.processes,
                       connect_timeout=args.connect_timeout if args.connect_timeout is not None else CONNECT_TIMEOUT,
                       master_timeout=args.master_timeout if args.master_timeout is not None else MASTER_TIMEOUT)


def _add_compare(sub) -> None:
    from .bench import compare
    p = sub.add_parser(
        "compare", help="matching figures of two or more result files side by side, with ratios and verdicts",
        description=compare.__doc__.split("\n\n", 1)[1].split("\n\nFor costs")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit status: 0 ok; 2 a file is missing, not JSON, not a loadgen result, or of another kind.")
    compare.add_arguments(p)
    p.set_defaults(func=lambda a: compare.main(a))


SUBCOMMANDS = (_add_run, _add_bench, _add_compare, _add_soak, _add_fuzz, _add_capture, _add_worker)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loadgen", description=_DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    clikit.add_version(parser, "loadgen")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv=None) -> int:
    """Parse and run one subcommand. SIGTERM is SIGINT (clikit): the table and JSON of what finished
    are still written; no traceback reaches the user (clikit.run_main)."""
    clikit.sigterm_as_sigint()       # before parsing: a run stopped at any moment ends as Ctrl-C would
    args = build_parser().parse_args(argv)
    return clikit.run_main("loadgen", args.func, args)


if __name__ == "__main__":
    sys.exit(main())
