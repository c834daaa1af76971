"""Spawn N clients, wait for them to mount, run warmup + timed phase, gather.

Owns the client processes (``spawn`` start method: each child starts clean
and builds its own libnfs context), their pipes, the metrics totals and the
run's clock.  Single-threaded except for the metrics HTTP thread, which only
reads :class:`metrics.Totals` under its lock.

Never hangs: every wait has a deadline (``start_timeout`` for mount + setup,
``run_end + grace`` for the end), a client that exits without "done" is a
failure, stragglers are terminated then killed, and all failures give a
non-zero exit.  SIGINT (Ctrl-C) is turned into a wake-up byte
(``signal.set_wakeup_fd``); the first one stops the clients and still prints
the table for what ran, a second one kills them at once.  During start-up
(spawning, mounting, setting up) it stops spawning and terminates every
started client at once: all are gone within about STARTUP_STOP + 0.2 s.
SIGTERM does what SIGINT does (clikit forwards it to the handler installed here).
A start-up slower than PROGRESS_AFTER prints progress lines on stderr.

A server that goes away: a second in which no operation succeeded is printed as
STALLED (not as the last averages again) and the parent tries a TCP connection to
the URL's nfsport (probe_server). If nothing accepts it, the run ends with what it
has: one line names the server, the cause and the time, clients get
SERVER_GONE_GRACE to report, and the verdict is FAILED (exit 1), the JSON's
server_gone saying why.

The verdict: exit 1 when any client failed, any status was unexpected, or
every operation failed, with one last stderr line "loadgen: FAILED: ...;
first: clientN [line] OP path got STATUS - expected STATUS" naming the first
cause.  Operations and ops/sec count what completed as expected; failures
are reported beside them.  When a client dies during the run, the figures
cover the time until the clients were stopped and the run is marked
DEGRADED (in the table and in the JSON).  --clients is bounded by
MAX_CLIENTS (see there for why).

Open loop (``cfg["rate"]``, total operations per second): each client gets an
equal share and its own schedule (client.py); the table reports latency from
the intended start, the service time beside it, and the schedule: offered
against achieved ops/s, lag, operations the end reached before they started.
When the schedule fell behind (open_loop_behind), a stderr line says so and
how many clients the rate needs at the measured service time (each
python-libnfs client has one call in flight).
"""
from __future__ import annotations

import multiprocessing as mp
import signal
import socket
import sys
import time
from multiprocessing.connection import wait

from .client import client_main
from .metrics import Totals, serve
from .report import (build_json, final_table, keep_mismatch, open_loop_doc, open_loop_lines, reported_phase,
                     second_report, write_json)
from .stats import PhaseStats

__all__ = ["run", "EXIT_OK", "EXIT_FAIL", "EXIT_USAGE", "EXIT_INTERRUPTED", "MAX_CLIENTS", "clients_problem"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
GRACE = 10.0
#: after the server is seen gone, clients get this long to report before they are terminated
SERVER_GONE_GRACE = 3.0
RUN_ONCE_HORIZON = 365 * 86400.0    # --run-once: the clock never ends the run


class _Client:
    def __init__(self, cid, proc, conn):
        self.cid = cid
        self.proc = proc
        self.conn = conn
        self.state = "starting"     # starting, ready, running, done, failed
        self.mounted = False        # reported "mounted" (now setting up)
        self.info: dict = {}
        self.cpu = 0.0
        self.open_loop: dict | None = None     # the schedule's end figures (open loop)


#: Upper bound of --clients. Each client is a whole Python process (spawned: a few hundred ms of CPU
#: to start; 130 MB resident measured with dbench's client.txt, 2026-12-02) with its own libnfs
#: connection: 256 of them already need tens of GB and load a small machine for a long time before
#: the first operation; more would measure the machine's process scheduler rather than the server.
MAX_CLIENTS = 256
#: a start-up (mount + set-up) slower than this gets progress lines
PROGRESS_AFTER = 1.0
#: after Ctrl-C during start-up, clients still setting up get this long to go before SIGKILL
STARTUP_STOP = 1.0



def server_address(url: str) -> tuple[str, int]:
    """(host, port) a liveness probe connects to: the URL's nfsport, else the portmapper (111)."""
    from urllib.parse import parse_qs, urlsplit
    u = urlsplit(url)
    q = parse_qs(u.query)
    try:
        port = int(q.get("nfsport", ["111"])[0])
    except ValueError:
        port = 111
    return (u.hostname or "127.0.0.1"), port


def probe_server(addr: tuple[str, int], timeout: float = 1.0) -> str | None:
    """None when something accepts a TCP connection at addr; else why not, in a few words."""
    try:
        socket.create_connection(addr, timeout=timeout).close()
        return None
    except ConnectionRefusedError:
        return "refused the connection"
    except socket.timeout:
        return f"did not answer a connection within {timeout:g} s"
    except OSError as e:
        return (e.strerror or str(e)).lower()


def clients_problem(n: int) -> str | None:
    """Why `n` clients cannot be started (one line for --clients), or None."""
    if n < 1:
        return f"--clients {n}: at least 1"
    if n > MAX_CLIENTS:
        return (f"--clients {n}: at most {MAX_CLIENTS}: each client is a separate Python process with its "
                f"own connection (over 100 MB resident and a slow start each), so more would measure this "
                f"machine's process scheduler rather than the server")
    return None


def _one_line(text: str) -> str:
    """The informative line of a message: the last line of a traceback, else the first line."""
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]


def run(cfg: dict, workload_desc: str, out=None, err=None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr

    def say(msg, stream=None):
        print(msg, file=stream or out, flush=True)

    n = cfg["clients"]
    problem = clients_problem(n)
    if problem:
        say(f"loadgen: {problem}", err)
        return EXIT_USAGE
    totals = Totals()
    totals.rate = cfg.get("rate")
    phases = {"warmup": PhaseStats(), "run": PhaseStats()}
    mismatches: list[str] = []
    mismatch_count = 0
    failures: list[dict] = []
    per_second: list[dict] = []
    interval_max = [0.0, 0.0]  # max op latency, max schedule lag, since the last per-second line

    http = None
    if cfg["metrics_port"] is not None:
        try:
            _reg, http = serve(totals, cfg["metrics_port"], cfg["metrics_addr"])
        except OSError as e:
            say(f"loadgen: --metrics-port {cfg['metrics_port']}: cannot serve metrics on {cfg['metrics_addr']}: "
                f"{e.strerror or e} (--metrics-port 0 picks a free port, --no-metrics disables)", err)
            return EXIT_USAGE
        say(f"loadgen: metrics http://{cfg['metrics_addr']}:{http[0].server_address[1]}/metrics", err)

    rsock, wsock = socket.socketpair()
    rsock.setblocking(False)
    wsock.setblocking(False)
    old_wakeup = signal.set_wakeup_fd(wsock.fileno())
    sigints = 0

    def on_sigint(signum, frame):
        nonlocal sigints
        sigints += 1
    old_handler = signal.signal(signal.SIGINT, on_sigint)

    ctx = mp.get_context("spawn")
    clients: list[_Client] = []
    exit_code = EXIT_OK
    t0 = warmup_end = run_end = None
    stop_requested_at = None
    first_bad_at = None         # when the first failure (client or unexpected status) was seen
    interrupted = False
    server_gone = None          # why the run ended early: the server stopped answering (a message)
    probe_addr = server_address(cfg["url"])
    try:
        child_cfg = {k: cfg[k] for k in ("url", "rpc_timeout", "strict", "ignore_timestamps", "seed",
                                         "profile", "loadfile", "rw_files", "rw_file_size")}
        child_cfg["run_once"] = bool(cfg.get("run_once"))
        if cfg.get("rate"):
            child_cfg.update(rate=cfg["rate"] / n, arrival=cfg.get("arrival") or "fixed", nclients=n)
        for cid in range(n):
            if sigints:             # Ctrl-C while spawning: start no more
                break
            parent_conn, child_conn = ctx.Pipe(duplex=True)
            p = ctx.Process(target=client_main, args=(cid, n, child_cfg, child_conn),
                            name=f"loadgen-client{cid}", daemon=True)
            p.start()
            child_conn.close()
            clients.append(_Client(cid, p, parent_conn))
        totals.set_clients(len(clients))
        by_conn = {c.conn: c for c in clients}
        by_sentinel = {c.proc.sentinel: c for c in clients}

        def update_gauge():
            totals.set_clients(sum(1 for c in clients if c.state not in ("done", "failed")
                                   and c.proc.exitcode is None))

        def fail(c: _Client, stage: str, message: str, quiet: bool = False):
            nonlocal first_bad_at
            c.state = "failed"
            update_gauge()
            failures.append({"client": c.cid, "stage": stage, "message": message,
                             "at": round(time.monotonic() - t0, 3) if t0 is not None else None})
            if first_bad_at is None and t0 is not None:
                first_bad_at = time.monotonic()
            if not quiet:
                say(f"loadgen: client{c.cid} failed ({stage}): {message}", err)

        def stop_all():
            for c in clients:
                if c.state in ("ready", "running", "starting"):
                    try:
                        c.conn.send(("stop",))
                    except (BrokenPipeError, OSError):
                        pass

        def drain(c: _Client):
            nonlocal mismatch_count, first_bad_at
            while True:
                try:
                    if not c.conn.poll():
                        return
                    msg = c.conn.recv()
                except (EOFError, OSError):
                    return
                kind = msg[0]
                if kind == "stats":
                    _, _cid, phase, delta, mm = msg
                    phases[phase].merge(delta)
                    if delta.max_latency > interval_max[0]:
                        interval_max[0] = delta.max_latency
                    if delta.lag.max > interval_max[1]:
                        interval_max[1] = delta.lag.max
                    totals.merge(delta)
                    if mm and first_bad_at is None:
                        first_bad_at = time.monotonic()
                    for line in mm:
                        mismatch_count += 1
                        keep_mismatch(mismatches, line, cfg["max_mismatches"], lambda m: say(m, err))
                elif kind == "mounted":
                    c.mounted = True
                elif kind == "ready":
                    c.state = "ready"
                    c.info = msg[2]
                elif kind == "done":
                    c.state = "done"
                    c.cpu = msg[2]["cpu"]
                    c.open_loop = msg[2].get("open_loop")
                    update_gauge()
                elif kind == "failed":
                    fail(c, msg[2], msg[3])

        def pump(timeout):
            """Wait for messages, exits or Ctrl-C; returns after handling them."""
            objs = [c.conn for c in clients if c.state not in ("done", "failed")]
            objs += [c.proc.sentinel for c in clients if c.proc.exitcode is None]
            objs.append(rsock)
            ready = wait(objs, timeout=max(0.0, timeout))
            for o in ready:
                if o is rsock:
                    try:
                        while rsock.recv(64):
                            pass
                    except BlockingIOError:
                        pass
                elif o in by_conn:
                    drain(by_conn[o])
            for o in ready:
                if o in by_sentinel:
                    c = by_sentinel[o]
                    drain(c)      # anything it sent before exiting
                    if c.state not in ("done", "failed"):
                        c.proc.join(timeout=2.0)      # the sentinel fires before the reap
                        code = c.proc.exitcode
                        how = (f"killed by signal {-code}" if code is not None and code < 0
                               else f"exited with code {code}")
                        fail(c, "exited", f"process {how} without reporting (exit code {code})")

        # ---- mount and setup ----
        started = time.monotonic()
        deadline = started + cfg["start_timeout"]
        next_progress = started + PROGRESS_AFTER
        while True:
            if sigints:
                interrupted = True
                break
            if any(c.state == "failed" for c in clients):
                break
            if all(c.state == "ready" for c in clients):
                break
            now = time.monotonic()
            if now >= deadline:
                for c in clients:
                    if c.state == "starting":
                        fail(c, "mount", f"not ready (mount + setup) within {cfg['start_timeout']:.0f} s")
                break
            if now >= next_progress:
                ready = sum(1 for c in clients if c.state == "ready")
                mounted = sum(1 for c in clients if c.mounted)
                say(f"loadgen: starting: {len(clients)}/{n} clients spawned, {mounted} mounted, {ready} set up "
                    f"after {now - started:.0f} s", err)
                next_progress = now + (1.0 if now - started < 5 else 5.0)
            pump(min(0.5, deadline - now, max(0.0, next_progress - now)))

        if interrupted or any(c.state == "failed" for c in clients):
            stop_all()
            if interrupted:
                # clients still mounting or setting up do not read their pipe: stop them now
                say(f"loadgen: interrupted during start-up, stopping {len(clients)} clients", err)
                for c in clients:
                    if c.proc.exitcode is None:
                        c.proc.terminate()
            exit_code = EXIT_INTERRUPTED if interrupted and not failures else EXIT_FAIL
            if failures:
                f = failures[0]
                say(f"loadgen: aborting: {len(failures)} of {n} clients failed before the start; first: "
                    f"client{f['client']} ({f['stage']}): {_one_line(f['message'])}", err)
        else:
            limits = {c.cid: c.info for c in clients}
            rmax = min(i.get("readmax", 0) for i in limits.values())
            wmax = min(i.get("writemax", 0) for i in limits.values())
            if cfg.get("profile") == "rw256k" and (rmax < 262144 or wmax < 262144):
                say(f"loadgen: warning: server rtmax/wtmax {rmax}/{wmax} < 256 KiB: libnfs splits the calls", err)
            t0 = time.monotonic() + 0.1
            if cfg.get("run_once"):
                # one pass per client, all of it measured: no warmup, no time limit
                # (each call is still bounded by --rpc-timeout)
                cfg = {**cfg, "warmup": 0.0}
                warmup_end = t0
                run_end = warmup_end + RUN_ONCE_HORIZON
            else:
                warmup_end = t0 + cfg["warmup"]
                run_end = warmup_end + cfg["time"]
            for c in clients:
                c.conn.send(("start", t0, warmup_end, run_end))
                c.state = "running"
            length = "run once" if cfg.get("run_once") else f"run {cfg['time']:g} s"
            pace = (f", open loop at {cfg['rate']:g} ops/s ({cfg.get('arrival') or 'fixed'} arrivals, "
                    f"{cfg['rate'] / n:g} per client)" if cfg.get("rate") else "")
            say(f"loadgen: {n} clients, workload {workload_desc}, warmup {cfg['warmup']:g} s, "
                f"{length}{pace}, server rtmax/wtmax {rmax}/{wmax}")
            next_tick = t0 + 1.0
            on_phase = cfg.get("on_phase")      # bench: called with "run" at warmup end, "end" at run end
            phase_seen = "warmup"
            hard_deadline = run_end + GRACE + cfg["rpc_timeout"]
            done_before, stalled = 0, 0
            while any(c.state == "running" for c in clients):
                now = time.monotonic()
                if sigints and stop_requested_at is None:
                    interrupted = True
                    stop_requested_at = now
                    say("loadgen: interrupted, stopping clients", err)
                    stop_all()
                    hard_deadline = min(hard_deadline, now + GRACE + cfg["rpc_timeout"])
                if sigints >= 2:
                    say("loadgen: second interrupt, killing clients", err)
                    break
                if any(c.state == "failed" for c in clients) and stop_requested_at is None:
                    stop_requested_at = now
                    stop_all()
                    hard_deadline = min(hard_deadline, now + GRACE + cfg["rpc_timeout"])
                if now >= hard_deadline:
                    left = [c for c in clients if c.state == "running"]
                    for c in left:
                        if server_gone:         # one line for all of them, below
                            fail(c, "server", "terminated: " + server_gone, quiet=True)
                        else:
                            fail(c, "hung", "did not stop within the grace period; terminated")
                    if server_gone and left:
                        say(f"loadgen: {len(left)} client(s) still waiting on the server after "
                            f"{SERVER_GONE_GRACE:g} s: terminated", err)
                    break
                if on_phase is not None and phase_seen == "warmup" and now >= warmup_end:
                    phase_seen = "run"
                    on_phase("run")
                if on_phase is not None and phase_seen == "run" and now >= run_end:
                    phase_seen = "end"
                    on_phase("end")
                if now >= next_tick:
                    line, row = second_report(n, phases, next_tick, t0, warmup_end, cfg["warmup"], interval_max,
                                              open_loop=bool(cfg.get("rate")))
                    done_now = phases["warmup"].ok + phases["run"].ok     # errors are no sign of life
                    if done_now == done_before and stop_requested_at is None:
                        # nothing completed for a second: say so rather than repeat the averages, and
                        # find out whether the server is still there
                        stalled += 1
                        line += f"  STALLED {stalled} s: no operation succeeded"
                        row["stalled"] = True
                        # soak restarts its server on purpose (cfg["server_restarts"]): no probe there
                        why = None if cfg.get("server_restarts") else probe_server(probe_addr)
                        if why and server_gone is None:
                            server_gone = (f"the server at {probe_addr[0]}:{probe_addr[1]} {why} "
                                           f"at t={now - t0:.1f} s")
                            say(f"loadgen: {server_gone}; the run ends with what it has", err)
                            stop_requested_at = now
                            stop_all()
                            hard_deadline = min(hard_deadline, now + SERVER_GONE_GRACE)
                    else:
                        stalled = 0
                    done_before = done_now
                    if next_tick <= run_end + 1e-9:
                        say(line)
                        per_second.append(row)
                    next_tick += 1.0
                wake = min(next_tick, hard_deadline)
                if on_phase is not None and phase_seen != "end":
                    wake = min(wake, warmup_end if phase_seen == "warmup" else run_end)
                pump(wake - time.monotonic())
            stop_all()
            if any(c.state == "failed" for c in clients):
                exit_code = EXIT_FAIL
            elif interrupted:
                exit_code = EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGINT, old_handler if old_handler is not None else signal.SIG_DFL)
        signal.set_wakeup_fd(old_wakeup)
        # reap: short join, then terminate, then kill (after Ctrl-C during start-up: within
        # STARTUP_STOP the clients were terminated above; what is left is killed)
        early = t0 is None and (interrupted or sigints)
        end = time.monotonic() + (STARTUP_STOP if early else 3.0)
        for c in clients:
            c.proc.join(timeout=max(0.0, end - time.monotonic()))
        for c in clients:
            if c.proc.exitcode is None:
                c.proc.terminate()
        end = time.monotonic() + (0.2 if early else 2.0)
        for c in clients:
            c.proc.join(timeout=max(0.0, end - time.monotonic()))
        for c in clients:
            if c.proc.exitcode is None:
                c.proc.kill()
                c.proc.join(timeout=2.0)
        for c in clients:
            try:
                c.conn.close()
            except OSError:
                pass
        totals.set_clients(0)
        rsock.close()
        wsock.close()

    if t0 is None:
        if http is not None:
            http[0].shutdown()
        return exit_code if exit_code != EXIT_OK else EXIT_FAIL

    now = time.monotonic()
    end_of_run = min(now, run_end)
    if stop_requested_at is not None:
        end_of_run = min(end_of_run, stop_requested_at)
    phase, st, elapsed = reported_phase(phases, end_of_run, warmup_end, t0)
    cpu = sum(c.cpu for c in clients) if phase == "run" else None
    degraded = None
    died = [f for f in failures if f["stage"] != "strict"]
    if died:
        f = died[0]
        degraded = (f"client{f['client']} failed ({f['stage']}) {f['at'] or 0:.1f} s after the start; the "
                    f"figures cover the {elapsed:.1f} s before the clients were stopped")
    elif first_bad_at is not None and not cfg["strict"]:
        degraded = (f"unexpected statuses from {first_bad_at - t0:.1f} s after the start on; "
                    f"operations that failed are not counted")
    ol = None
    if cfg.get("rate"):
        ol = open_loop_doc(cfg, st, elapsed, [c.open_loop for c in clients if c.open_loop])
    say(final_table(st.view("intended") if ol else st, elapsed, n, phase=phase, cpu_seconds=cpu, degraded=degraded,
                    service=st if ol else None))
    if ol:
        lines = open_loop_lines(ol, n)
        say(lines[0])
        for line in lines[1:] if cfg.get("say_behind", True) else ():
            say(line, err)
    if failures:
        say(f"loadgen: {len(failures)} client(s) failed: " +
            "; ".join(f"client{f['client']} ({f['stage']})" for f in failures), err)
    # the verdict: one line naming the first cause (operation, path, status) when the run failed
    first_failure = None
    everything = phases["warmup"].count + phases["run"].count
    if server_gone:
        first_failure = server_gone
    elif mismatches:
        first_failure = mismatches[0]
    elif failures:
        f = failures[0]
        first_failure = f"client{f['client']} ({f['stage']}): {_one_line(f['message'])}"
    if server_gone:
        exit_code = EXIT_FAIL
        say(f"loadgen: FAILED: {server_gone}; {everything} operations before it", err)
    elif mismatch_count:
        exit_code = EXIT_FAIL
        say(f"loadgen: FAILED: {mismatch_count} unexpected status{'es' if mismatch_count != 1 else ''} "
            f"in {everything} operations" + (f"; first: {first_failure}" if first_failure else ""), err)
    elif everything and phases["warmup"].ok + phases["run"].ok == 0:
        exit_code = EXIT_FAIL
        say(f"loadgen: FAILED: every one of {everything} operations failed"
            + (f"; first: {first_failure}" if first_failure else ""), err)
    elif failures:
        exit_code = EXIT_FAIL
        say(f"loadgen: FAILED: {len(failures)} client(s) failed; first: {first_failure}", err)
    if cfg.get("json"):
        doc = build_json(cfg=cfg, workload=workload_desc, st=st, elapsed=elapsed, phase=phase,
                         clients=n, per_second=per_second, mismatches=mismatches,
                         mismatch_count=mismatch_count, failures=failures, interrupted=interrupted,
                         cpu_seconds=cpu, server_limits={str(c.cid): c.info for c in clients},
                         degraded=degraded, first_failure=first_failure)
        doc["warmup"] = {"ops_total": phases["warmup"].count,
                         "bytes": {"read": phases["warmup"].read_bytes, "write": phases["warmup"].write_bytes}}
        doc["run_once"] = bool(cfg.get("run_once"))
        doc["server_gone"] = server_gone      # why the run ended early, or None
        doc["open_loop"] = ol
        doc["exit_code"] = exit_code
        write_json(cfg["json"], doc)
    if http is not None:
        http[0].shutdown()
    return exit_code
