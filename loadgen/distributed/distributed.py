"""Load from several machines: ``loadgen run --master`` and ``loadgen worker``.

The network, the worker bookkeeping (heartbeats, lost workers) and the live
web UI are Locust's (its MasterRunner/WorkerRunner used as a library); what
runs in a worker is :class:`locustuser.NfsUser`, one loadgen client per
worker process, on the same executor loop as ``loadgen run``.  The master
merges the clients' :class:`stats.PhaseStats` deltas exactly as
:mod:`loadgen.run.runner` does, so it prints the same per-second lines and final
table, writes the same JSON (plus ``"workers"``: one row per worker process)
and exports the same Prometheus metrics (:mod:`loadgen.run.metrics`).

Master sequence: bind, announce ``loadgen: master listening on HOST:PORT``
(first stdout line), wait for ``--expect-workers`` worker processes, give each
a client id (0..N-1) and the configuration (the loadfile's text travels with
it, so workers need no copy), spawn one user per worker, wait until every
client has mounted and set up, start them together, tell them when the warmup
ends and when the run ends, wait for their final deltas, then tell every
worker to quit.  Every wait has a deadline (``--start-timeout``; run end +
grace + ``--rpc-timeout``).

Failures: a worker that stops heartbeating (Locust marks it missing after
about 3 s) or quits during the run is reported as ``loadgen: worker NODE
(clientN, host H pid P) lost at T s`` and stops the run; the exit status is 1
and the JSON keeps everything the clients sent, the lost one's figures up to
its last report included.  A worker that connects once the clients have been
assigned is refused (it gets ``nfsbulk_refused`` then Locust's quit, and
exits 1; the master prints a line and carries on).  A worker that quits on
its own (Ctrl-C on its host) is lost the same way, named "it quit": its
user is not moved onto another worker, and the run is not taken for a STOP
in Locust's web UI.  Ctrl-C on the master stops the clients, prints the
table for what ran and tells every worker to quit (exit 130); a second
Ctrl-C quits at once.

Before any wait: ``--master-bind`` and ``--web-ui`` are bound once with a
plain socket (:func:`bind_problem`), so a busy port or an address of another
host is one line and exit 2.  The worker side (``loadgen worker``) is
:mod:`loadgen.distributed.distworker`.

Threads: the master process is gevent's (Locust monkey-patches on import);
this module's loop runs in the main greenlet and the message handlers in the
runner's greenlet, so the shared state needs no lock except
:class:`metrics.Totals`' for the /metrics thread.
"""
from __future__ import annotations

import errno
import signal
import socket
import sys
import time

__all__ = ["run_master", "parse_hostport", "bind_problem"]

# the exit statuses and the stop grace are loadgen run's, so both kinds of run agree
from ..run.runner import EXIT_FAIL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, GRACE  # noqa: E402


def parse_hostport(text: str, default_host: str = "*", min_port: int = 0) -> tuple[str, int]:
    """'HOST:PORT' or ':PORT' or 'PORT' (HOST is then `default_host`) -> (host, port); a port
    below `min_port` or above 65535, or no port at all, is a ValueError in the user's words
    ("'foo': must be HOST:PORT")."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = default_host, text
    host = host.strip("[]") or default_host
    try:
        p = int(port)
    except ValueError:
        raise ValueError(f"{text!r}: must be HOST:PORT") from None
    if not min_port <= p <= 65535:
        raise ValueError(f"{text!r}: port must be {min_port} to 65535"
                         + (" (0 picks a free one)" if min_port == 0 else ""))
    return host, p


def bind_problem(host: str, port: int) -> str | None:
    """None when HOST:PORT can be listened on here (a master's --master-bind, --web-ui); else why
    not, in one line. A plain socket is bound and listened on (with SO_REUSEADDR, as zmq binds)
    and closed at once: a busy port or an address of another host fails here, before any wait."""
    addr = "0.0.0.0" if host in ("*", "") else host
    try:
        fam, kind, proto, _, sa = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM,
                                                     flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        return f"cannot resolve {host!r}: {e.strerror}"
    except UnicodeError:
        return f"{host!r} is not a host name or address"
    s = socket.socket(fam, kind, proto)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(sa)
        s.listen(1)
    except OSError as e:
        why = {errno.EADDRINUSE: "address already in use (by another process, an earlier master? port 0 "
                                 "picks a free one)",
               errno.EADDRNOTAVAIL: "not an address of this host",
               errno.EACCES: "permission denied (ports below 1024 need privileges)"}.get(e.errno)
        return f"cannot listen there: {why or e.strerror or e}"
    finally:
        s.close()
    return None


class _Client:
    def __init__(self, cid: int, node: str):
        self.cid = cid
        self.node = node
        self.state = "assigned"      # assigned, ready, running, done, failed, lost
        self.info: dict = {}
        self.host = "?"
        self.pid = None
        self.group = ""
        self.cpu = 0.0
        self.lost_at = None
        self.failure = None
        self.ops = 0
        self.read = 0
        self.write = 0

    @property
    def label(self) -> str:
        return f"worker {self.node} (client{self.cid}, host {self.host} pid {self.pid})"

    def row(self) -> dict:
        return {"worker": self.node, "client": self.cid, "host": self.host, "pid": self.pid,
                "group": self.group, "state": self.state, "ops_total": self.ops,
                "bytes": {"read": self.read, "write": self.write}, "client_cpu_seconds": self.cpu,
                "lost_at_seconds": self.lost_at, "failure": self.failure}


def run_master(cfg: dict, workload_desc: str, bind: tuple[str, int], expect: int,
               web_ui: tuple[str, int] | None = None, out=None, err=None) -> int:
    """The master side of a distributed run; returns the exit status (as runner.run)."""
    import gevent
    import locust
    from locust.env import Environment
    from locust.rpc import Message
    from locust.runners import STATE_MISSING, MasterRunner

    from .locustuser import NfsUser, stats_from_wire
    from ..run.metrics import Totals, serve
    from ..run.report import build_json, final_table, keep_mismatch, reported_phase, second_report, write_json
    from ..run.stats import PhaseStats

    out = out or sys.stdout
    err = err or sys.stderr

    def say(msg, stream=None):
        print(msg, file=stream or out, flush=True)

    n = expect
    totals = Totals()
    phases = {"warmup": PhaseStats(), "run": PhaseStats()}
    mismatches: list[str] = []
    mm_count = [0]
    failures: list[dict] = []
    per_second: list[dict] = []
    interval_max = [0.0]
    clients: dict[str, _Client] = {}          # Locust node id -> client
    started = [False]                          # clients assigned: later workers are refused
    quit_nodes: set[str] = set()               # our workers that said quit
    t_start = [None]

    class _Master(MasterRunner):
        def handle_message(self, client_id, msg):
            if msg.type == "client_ready" and started[0] and client_id not in clients:
                say(f"loadgen: refused worker {client_id}: it connected after the clients were assigned "
                    f"(--expect-workers {n})", err)
                # ack first so its connect completes (else Locust retries for minutes), then say why, then quit
                self.server.send_to_client(Message("ack", {"index": -1}, client_id))
                self.server.send_to_client(Message("nfsbulk_refused", {"reason": "run already started"}, client_id))
                self.server.send_to_client(Message("quit", None, client_id))
                return
            if msg.type == "quit" and client_id in clients:
                # a worker of ours left on its own (Ctrl-C or SIGTERM on its host): Locust would move
                # its user onto another worker (which runs a client already) or, for the last one,
                # stop the test as from its web UI; it is dropped here, and check_lost names it
                quit_nodes.add(client_id)
                if client_id in self.clients:
                    del self.clients[client_id]
                return
            super().handle_message(client_id, msg)

    env = Environment(user_classes=[NfsUser], events=locust.events)
    try:
        runner = _Master(env, master_bind_host=bind[0], master_bind_port=bind[1])
    except (Exception, SystemExit) as e:
        # the address was probed free just before (bind_problem); taken since, or refused by zmq:
        # Locust raises RPCError, or logs and sys.exit()s on a busy port
        why = "address already in use" if isinstance(e, SystemExit) else str(e)
        say(f"loadgen: --master-bind {bind[0]}:{bind[1]}: cannot listen for workers: {why}", err)
        return EXIT_USAGE
    env.runner = runner
    http = None
    ui = None

    def shutdown():
        if ui is not None:
            ui.stop()
        if http is not None:
            http[0].shutdown()

    if cfg["metrics_port"] is not None:           # None: --no-metrics; 0: a free port
        try:
            _reg, http = serve(totals, cfg["metrics_port"], cfg["metrics_addr"])
        except OSError as e:
            say(f"loadgen: --metrics-port {cfg['metrics_port']}: cannot serve metrics on {cfg['metrics_addr']}: "
                f"{e.strerror or e} (--metrics-port 0 picks a free port, --no-metrics disables)", err)
            runner.quit()
            return EXIT_USAGE
        say(f"loadgen: metrics http://{cfg['metrics_addr']}:{http[0].server_address[1]}/metrics", err)
    ui_note = ""
    if web_ui is not None:
        # Locust's web UI re-parses sys.argv with its own parser to list "extra" options; ours are
        # loadgen's, so it gets a bare argv (this process's argv is not used again after parsing)
        sys.argv = sys.argv[:1]
        ui = env.create_web_ui(host=web_ui[0], port=web_ui[1])
        deadline = time.monotonic() + 10
        while (ui.server is None or getattr(ui.server, "socket", None) is None) and time.monotonic() < deadline:
            if ui.greenlet.dead:
                break
            gevent.sleep(0.01)
        if ui.server is None or getattr(ui.server, "socket", None) is None:
            say(f"loadgen: cannot serve the web UI on {web_ui[0]}:{web_ui[1]}", err)
            runner.quit()
            shutdown()
            return EXIT_USAGE
        h, p = ui.server.socket.getsockname()[:2]
        ui_note = f", web UI http://{h}:{p}/"
    say(f"loadgen: master listening on {bind[0]}:{runner.server.port}, waiting for {n} worker process(es)"
        f"{ui_note}")

    # ---- messages from the clients (runner greenlet) ----
    def client_of(msg):
        return clients.get(msg.node_id)

    def fail(c: _Client, stage: str, message: str):
        if c.state in ("done", "failed", "lost"):
            return
        c.state = "lost" if stage == "lost" else "failed"
        c.failure = f"{stage}: {message}"
        failures.append({"client": c.cid, "worker": c.node, "host": c.host, "stage": stage, "message": message})
        say(f"loadgen: client{c.cid} failed ({stage}): {message}", err)
        totals.set_clients(sum(1 for x in clients.values() if x.state in ("ready", "running")))

    def on_ready(environment, msg, **kw):
        c = client_of(msg)
        if c is None:
            return
        d = msg.data
        c.info, c.host, c.pid, c.group = d["info"], d["host"], d["pid"], d["group"]
        if c.state == "assigned":
            c.state = "ready"

    def on_stats(environment, msg, **kw):
        c = client_of(msg)
        if c is None:
            return
        d = msg.data
        delta = stats_from_wire(d["stats"])
        phases[d["phase"]].merge(delta)
        totals.merge(delta)
        if delta.max_latency > interval_max[0]:
            interval_max[0] = delta.max_latency
        if d["phase"] == "run":
            c.ops += delta.count
            c.read += delta.read_bytes
            c.write += delta.write_bytes
        for line in d["mismatches"]:
            mm_count[0] += 1
            keep_mismatch(mismatches, line, cfg["max_mismatches"], lambda m: say(m, err))

    def on_done(environment, msg, **kw):
        c = client_of(msg)
        if c is not None and c.state not in ("failed", "lost"):
            c.state = "done"
            c.cpu = msg.data["cpu"]
            totals.set_clients(sum(1 for x in clients.values() if x.state in ("ready", "running")))

    def on_failed(environment, msg, **kw):
        c = client_of(msg)
        if c is not None:
            fail(c, msg.data["stage"], msg.data["message"])

    for kind, fn in (("ready", on_ready), ("stats", on_stats), ("done", on_done), ("failed", on_failed)):
        runner.register_message("nfsbulk_" + kind, fn)

    def check_lost():
        now = time.monotonic()
        for node, c in clients.items():
            if c.state in ("done", "failed", "lost"):
                continue
            w = runner.clients.get(node)
            if w is None or w.state == STATE_MISSING:
                when = (now - t_start[0]) if t_start[0] is not None else None
                c.lost_at = round(when, 3) if when is not None else None
                at = f"at {when:.1f} s into the run" if when is not None else "before the start"
                how = ("stopped heartbeating" if w is not None else
                       "it quit (stopped on its host)" if node in quit_nodes else "disconnected")
                fail(c, "lost", f"{c.label} lost {at}: {how}")

    sigints = [0]
    finishing = [False]        # our own runner.quit() stops Locust too; that is no web UI STOP

    def on_sigint():
        sigints[0] += 1
    gevent.signal_handler(signal.SIGINT, on_sigint)

    def on_test_stopping(**kw):
        # STOP in Locust's web UI: the workers' users are being stopped (they report what ran);
        # the run ends as after one Ctrl-C
        if t_start[0] is not None and sigints[0] == 0 and not finishing[0]:
            if any(c.state not in ("done", "failed", "lost")
                   and (runner.clients.get(node) is None or runner.clients.get(node).state == STATE_MISSING)
                   for node, c in clients.items()):
                return      # Locust stops when its last worker went missing: check_lost names it
            say("loadgen: stopped from Locust's web UI", err)
            sigints[0] = 1
    env.events.test_stopping.add_listener(on_test_stopping)

    def send_all(kind, data):
        for node, c in clients.items():
            if c.state not in ("failed", "lost") and node in runner.clients:
                runner.send_message("nfsbulk_" + kind, data, client_id=node)

    exit_code = EXIT_OK
    interrupted = False
    t0 = warmup_end = run_end = stop_at = None
    try:
        # ---- workers connect ----
        deadline = time.monotonic() + cfg["start_timeout"]
        while runner.worker_count < n:
            if sigints[0]:
                interrupted = True
                break
            if time.monotonic() >= deadline:
                say(f"loadgen: only {runner.worker_count} of {n} worker process(es) connected within "
                    f"{cfg['start_timeout']:.0f} s", err)
                exit_code = EXIT_FAIL
                break
            gevent.sleep(0.05)
        if exit_code == EXIT_OK and not interrupted:
            connected = [w.id for w in runner.clients.ready]
            nodes = connected[:n]
            started[0] = True
            for node in connected[n:]:     # more than N came in the same instant: refuse the extras
                say(f"loadgen: refused worker {node}: more than --expect-workers {n} connected", err)
                runner.send_message("nfsbulk_refused", {"reason": f"more than {n} workers"}, client_id=node)
                runner.send_message("quit", None, client_id=node)
                del runner.clients[node]
            for cid, node in enumerate(nodes):
                clients[node] = _Client(cid, node)
            for node, c in clients.items():
                runner.send_message("nfsbulk_config", {"cid": c.cid, "nclients": n, "cfg": cfg["wire"]},
                                    client_id=node)
            runner.start(user_count=n, spawn_rate=n)
            totals.set_clients(n)
            # ---- mount + setup ----
            while True:
                gevent.sleep(0.05)
                check_lost()
                if sigints[0]:
                    interrupted = True
                    break
                if any(c.state in ("failed", "lost") for c in clients.values()):
                    break
                if all(c.state == "ready" for c in clients.values()):
                    break
                if time.monotonic() >= deadline:
                    for c in clients.values():
                        if c.state == "assigned":
                            fail(c, "mount", f"not ready (mount + setup) within {cfg['start_timeout']:.0f} s")
                    break
        if interrupted or exit_code != EXIT_OK or failures:
            send_all("stop", {"reason": "aborted"})
            if failures:
                say(f"loadgen: aborting: {len(failures)} of {n} clients failed before the start", err)
                exit_code = EXIT_FAIL
            elif interrupted:
                exit_code = EXIT_INTERRUPTED
        else:
            rmax = min(c.info.get("readmax", 0) for c in clients.values())
            wmax = min(c.info.get("writemax", 0) for c in clients.values())
            if cfg.get("profile") == "rw256k" and (rmax < 262144 or wmax < 262144):
                say(f"loadgen: warning: server rtmax/wtmax {rmax}/{wmax} < 256 KiB: libnfs splits the calls", err)
            first = "warmup" if cfg["warmup"] > 0 else "run"
            t0 = time.monotonic()
            t_start[0] = t0
            warmup_end = t0 + cfg["warmup"]
            run_end = warmup_end + cfg["time"]
            send_all("start", {"phase": first})
            for c in clients.values():
                c.state = "running"
            hosts = sorted({c.host for c in clients.values()})
            say(f"loadgen: {n} clients on {len(hosts)} host(s) ({', '.join(hosts)}), workload {workload_desc}, "
                f"warmup {cfg['warmup']:g} s, run {cfg['time']:g} s, server rtmax/wtmax {rmax}/{wmax}")
            next_tick = t0 + 1.0
            phase_sent = first
            hard_deadline = run_end + GRACE + cfg["rpc_timeout"]
            while any(c.state == "running" for c in clients.values()):
                now = time.monotonic()
                check_lost()
                if sigints[0] and stop_at is None:
                    interrupted = True
                    say("loadgen: interrupted, stopping clients", err)
                if sigints[0] >= 2:
                    say("loadgen: second interrupt, quitting workers", err)
                    break
                failed = any(c.state in ("failed", "lost") for c in clients.values())
                if stop_at is None and (interrupted or failed or now >= run_end):
                    stop_at = min(now, run_end)
                    send_all("stop", {"reason": "time" if now >= run_end and not (interrupted or failed)
                                      else "stopped"})
                    hard_deadline = min(hard_deadline, now + GRACE + cfg["rpc_timeout"])
                if phase_sent == "warmup" and now >= warmup_end and stop_at is None:
                    phase_sent = "run"
                    send_all("phase", {"phase": "run"})
                if now >= hard_deadline:
                    for c in clients.values():
                        if c.state == "running":
                            fail(c, "hung", "did not report done within the grace period")
                    break
                if now >= next_tick:
                    line, row = second_report(n, phases, next_tick, t0, warmup_end, cfg["warmup"], interval_max)
                    if next_tick <= run_end + 1e-9 and (stop_at is None or next_tick <= stop_at + 1e-9):
                        say(line)
                        per_second.append(row)
                    next_tick += 1.0
                wake = min(next_tick, hard_deadline, run_end if stop_at is None else hard_deadline,
                           warmup_end if phase_sent == "warmup" else hard_deadline, now + 0.25)
                gevent.sleep(max(0.0, wake - time.monotonic()))
            if any(c.state in ("failed", "lost") for c in clients.values()):
                exit_code = EXIT_FAIL
            elif interrupted:
                exit_code = EXIT_INTERRUPTED
    finally:
        finishing[0] = True
        totals.set_clients(0)
        try:
            runner.quit()            # Locust's "quit" to every worker, then our greenlets go
        except Exception:
            pass

    if t0 is None:
        shutdown()
        return exit_code if exit_code != EXIT_OK else EXIT_FAIL

    end_of_run = min(time.monotonic(), run_end)
    if stop_at is not None:
        end_of_run = min(end_of_run, stop_at)
    phase, st, elapsed = reported_phase(phases, end_of_run, warmup_end, t0)
    cpu = sum(c.cpu for c in clients.values()) if phase == "run" else None
    say(final_table(st, elapsed, n, phase=phase, cpu_seconds=cpu))
    if failures:
        say(f"loadgen: {len(failures)} client(s) failed: " +
            "; ".join(f"client{f['client']} on worker {f['worker']} ({f['stage']})" for f in failures), err)
    if mm_count[0] and cfg["strict"]:
        exit_code = EXIT_FAIL
    if cfg.get("json"):
        doc = build_json(cfg=cfg, workload=workload_desc, st=st, elapsed=elapsed, phase=phase,
                         clients=n, per_second=per_second, mismatches=mismatches,
                         mismatch_count=mm_count[0], failures=failures, interrupted=interrupted,
                         cpu_seconds=cpu, server_limits={str(c.cid): c.info for c in clients.values()})
        doc["warmup"] = {"ops_total": phases["warmup"].count,
                         "bytes": {"read": phases["warmup"].read_bytes, "write": phases["warmup"].write_bytes}}
        doc["exit_code"] = exit_code
        doc["workers"] = [c.row() for c in sorted(clients.values(), key=lambda c: c.cid)]
        write_json(cfg["json"], doc)
    shutdown()
    return exit_code
