"""loadgen soak: many clients for a bounded time, a server restart in the middle, and the verdict.

Starts `python -m rpcsrv` on a fixed free port with a fresh export, runs the
load (the project's shipped mixed loadfile: creates, 64 KiB writes, commits,
reads, renames, unlinks per client, or --loadfile) with --clients processes
through this package's runner, and from a side thread: samples the server's
RSS every --sample seconds, and at --restart-at seconds stops the server with
SIGTERM (it must exit 0 and report no allocator page still allocated) and
starts it again on the same port and export, so clients reconnect and go on
with their old file handles. At the end it stops the server the same way and
prints ops, unexpected statuses (must be 0), client failures (0), RSS over
time (with the growth from the first sample after warmup to the last), the
part of it that is the page allocator's arena (resident once first written:
it grows towards --arena-mib as more pages circulate, bounded) and RSS outside
the arena (what a leak would grow), and pages leaked at each stop (0). Exit
status 0 only when all of that holds.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import sys
import tempfile
import threading
import time

import clikit

from ..bench.harness import BenchError, Interrupted
from ..common.serverproc import RpcsrvProcess, ServerError, free_port, leaked_pages


class Server:
    """rpcsrv on a fixed port (so clients reconnect to the same address after a restart)."""

    def __init__(self, export: str, port: int, threads: int, arena_mib: int):
        self.export, self.port, self.threads, self.arena_mib = export, port, threads, arena_mib
        self.srv = None
        self.url = None

    def start(self, timeout=60.0):
        deadline = time.monotonic() + timeout
        while True:                      # the port may linger a moment after a restart
            try:
                # the handle key goes beside the export, into the temporary directory removed at the end
                self.srv = RpcsrvProcess(self.export, threads=self.threads, arena_mib=self.arena_mib,
                                         listen="127.0.0.1:%d" % self.port,
                                         extra=("--state-dir", os.path.join(os.path.dirname(self.export), "state")),
                                         start_timeout=max(1.0, deadline - time.monotonic()))
                self.url = self.srv.url
                return
            except ServerError as e:
                if time.monotonic() >= deadline:
                    raise BenchError(str(e)) from None
            select.select([], [], [], 0.5)      # a pause before retrying the bind, not a synchronisation

    def arena_kib(self):
        """Resident KiB of the page allocator's arena: the largest anonymous mapping of at least
        --arena-mib MiB in /proc/PID/smaps (the kernel may merge it with an adjacent anonymous
        mapping). Arena pages become resident when first written and stay so, so this part of RSS
        grows towards --arena-mib while ever more pages circulate: bounded, not a leak."""
        want = self.arena_mib * 1024
        try:
            if self.srv is None:
                return None
            with open("/proc/%d/smaps" % self.srv.pid) as f:
                lines = f.read().splitlines()
        except OSError:
            return None
        best = None             # (size, rss) of the largest candidate
        anon, size = False, 0
        for line in lines:
            head = line.split()
            if head and "-" in head[0] and not head[0].endswith(":"):
                anon, size = len(head) == 5, 0          # no path name: an anonymous mapping
            elif head[:1] == ["Size:"]:
                size = int(head[1])
            elif head[:1] == ["Rss:"] and anon and size >= want and (best is None or size > best[0]):
                best = (size, int(head[1]))
        return best[1] if best else None

    def rss_kib(self):
        return self.srv.rss_kib() if self.srv else None

    def stop(self):
        """SIGTERM; returns (exit status, pages still allocated as reported, or -1)."""
        try:
            code, err = self.srv.stop(timeout=120)
        except ServerError:
            return -9, -1
        return code, leaked_pages(err)


def add_arguments(p) -> None:
    p.add_argument("--clients", type=clikit.int_arg(1, 256, "clients"), default=64,
                   help="client processes (default 64)")
    p.add_argument("--time", type=clikit.seconds_arg(), default=600.0, metavar="SECONDS",
                   help="measured seconds (default 600)")
    p.add_argument("--warmup", type=clikit.seconds_arg(positive=False), default=5.0, metavar="SECONDS",
                   help="warmup seconds (default 5)")
    p.add_argument("--restart-at", type=float, default=None, metavar="SECONDS",
                   help="restart the server this long after the start (default: the middle of the run; "
                        "0 disables)")
    p.add_argument("--loadfile", metavar="FILE", help="loadfile to replay (default: the shipped mixed one)")
    p.add_argument("--threads", type=int, default=8, help="rpcsrv worker threads (default 8)")
    p.add_argument("--arena-mib", type=int, default=256, help="rpcsrv arena (default 256)")
    p.add_argument("--sample", type=float, default=5.0, help="RSS sampling interval in seconds (default 5)")
    p.add_argument("--json", metavar="FILE", help="write the report as JSON")


def _load(url: str, opts: dict, path: str):
    """The load through the runner: (its JSON document or None, an error or None). Unlike
    bench.run_load, a run that failed (loadgen's exit 1: unexpected statuses, a client failure)
    keeps its document, so that the soak reports what happened (ops, the first failure)."""
    from ..run.runner import EXIT_INTERRUPTED, run
    cfg = {"url": url, "clients": opts["clients"], "time": opts["time"], "warmup": opts["warmup"],
           "loadfile": opts["loadfile"], "profile": None, "rw_files": 4, "rw_file_size": 8 << 20,
           "strict": False, "json": path, "metrics_port": None, "metrics_addr": "127.0.0.1",
           "server_restarts": True,     # the restart in the middle is the point: no liveness probe
           "ignore_timestamps": True, "seed": 0, "start_timeout": 120.0, "rpc_timeout": 30.0,
           "max_mismatches": 5}
    code = run(cfg, opts["loadfile"])
    if code == EXIT_INTERRUPTED:
        raise Interrupted
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None, "the load generator wrote no results (exit %d)" % code
    if code != 0:
        return doc, "the load generator failed (exit %d): %s" % (
            code, doc.get("first_failure") or doc.get("client_failures"))
    return doc, None


def main(args) -> int:
    from ..run import workloads
    if args.clients < 1 or args.time <= 0 or args.warmup < 0 or args.sample <= 0:
        print("loadgen soak: --clients >= 1, --time > 0, --warmup >= 0, --sample > 0", file=sys.stderr)
        return 2
    clikit.check_outputs(("--json", args.json))       # before the run: a bad path loses no result
    tmp = tempfile.mkdtemp(prefix="nfsbulk-soak-")
    export = os.path.join(tmp, "export")
    os.mkdir(export)
    loadfile = args.loadfile
    if loadfile is None:
        loadfile = os.path.join(tmp, "mixed.load")
        with open(loadfile, "w") as f:
            f.write(workloads.DEFAULT_LOADFILE)
    restart_at = args.restart_at if args.restart_at is not None else args.warmup + args.time / 2
    srv = Server(export, free_port(), args.threads, args.arena_mib)
    report = {"clients": args.clients, "time": args.time, "restart_at": restart_at, "rss_kib": [], "arena_kib": [],
              "stops": [], "restarts": 0}
    stop_side = threading.Event()
    side_error = []

    def side():
        t0 = time.monotonic()
        restarted = restart_at <= 0
        while not stop_side.wait(args.sample):
            now = time.monotonic() - t0
            report["rss_kib"].append((round(now, 1), srv.rss_kib()))
            report["arena_kib"].append((round(now, 1), srv.arena_kib()))
            if not restarted and now >= restart_at:
                restarted = True
                print("soak: restarting the server at %.0f s" % now, file=sys.stderr, flush=True)
                try:
                    report["stops"].append(srv.stop())
                    srv.start()
                    report["restarts"] += 1
                except Exception as e:  # reported as a failure below
                    side_error.append(repr(e))
                    return

    try:
        srv.start()
        url = srv.url + ("&" if "?" in srv.url else "?") + "autoreconnect=-1"
        print("soak: %d clients for %g s (+%g s warmup), restart at %g s, server %s"
              % (args.clients, args.time, args.warmup, restart_at, url), file=sys.stderr, flush=True)
        t = threading.Thread(target=side, daemon=True)
        t.start()
        opts = {"clients": args.clients, "time": args.time, "warmup": args.warmup, "profile": "dbench",
                "loadfile": loadfile, "quiet": False}
        try:
            doc, load_error = _load(url, opts, os.path.join(tmp, "load.json"))
        except Interrupted:
            print("soak: interrupted; stopping the server", file=sys.stderr, flush=True)
            raise
        finally:        # the server is in its own process group: a Ctrl-C never reaches it, so stop it here
            stop_side.set()
            t.join(180)
            report["stops"].append(srv.stop())
    except Interrupted:
        return 130
    finally:
        if srv.srv is not None and srv.srv.running():
            srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    rss = [v for _, v in report["rss_kib"] if v]
    after_warmup = [v for s, v in report["rss_kib"] if v and s >= args.warmup + args.sample]
    report.update(
        ops=doc["ops_total"] if doc else 0,
        ops_per_s=doc["ops_per_second"] if doc else 0,
        unexpected=doc["unexpected"] if doc else None,
        client_failures=doc["client_failures"] if doc else None,
        load_error=load_error, side_error=side_error,
        rss_first_kib=after_warmup[0] if after_warmup else None,
        rss_last_kib=rss[-1] if rss else None,
        rss_max_kib=max(rss) if rss else None,
        # RSS outside the page arena: what a leak would grow (the arena's part is bounded, see arena_kib)
        rss_outside_arena_kib=[(t, r - a) for (t, r), (_, a) in zip(report["rss_kib"], report["arena_kib"])
                               if r is not None and a is not None],
        pages_leaked=[p for _, p in report["stops"]],
        exit_statuses=[c for c, _ in report["stops"]],
    )
    ok = (doc is not None and not load_error and report["unexpected"] == 0 and not report["client_failures"] and not side_error
          and all(p == 0 for p in report["pages_leaked"]) and all(c == 0 for c in report["exit_statuses"])
          and report["restarts"] == (1 if restart_at > 0 else 0))
    print("soak: %s ops (%.0f/s), unexpected %s, client failures %s, restarts %d, server exits %s, "
          "pages leaked %s, RSS %s -> %s KiB (max %s)" % (
              format(report["ops"], ","), report["ops_per_s"], report["unexpected"],
              len(report["client_failures"] or []) if doc else "n/a", report["restarts"],
              report["exit_statuses"], report["pages_leaked"], report["rss_first_kib"],
              report["rss_last_kib"], report["rss_max_kib"]))
    print("soak: RSS samples (s, KiB): " + " ".join("%g:%s" % x for x in report["rss_kib"]))
    print("soak: of which the page arena (s, KiB): " + " ".join("%g:%s" % x for x in report["arena_kib"]))
    outside = report["rss_outside_arena_kib"]
    if outside:
        print("soak: RSS outside the arena: %s -> %s KiB" % (outside[0][1], outside[-1][1]))
    if load_error or side_error:
        print("soak: %s" % (load_error or side_error), file=sys.stderr)
    report["ok"] = ok
    if args.json:
        clikit.write_json(args.json, report)
    return 0 if ok else 1
