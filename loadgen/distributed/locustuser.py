"""A Locust ``User`` that is one loadgen client, and the wire form of its stats.

:class:`NfsUser` owns one libnfs context (one TCP connection), one
:class:`ops.Executor` and one :class:`replay.Replay` (the executor loop
``loadgen run``'s client processes use, not a copy): it replays a loadfile,
the default workload or the rw256k profile in ``/clients/client<N>`` and
fires Locust's ``request`` event per operation (request type and name = the
operation, response time in ms, payload bytes, an exception for a status the
loadfile did not expect), so Locust's stats, CSV and web UI show NFS ops.

Two modes, picked from the environment:

* coordinated (``environment.nfsbulk`` is a :class:`WorkerState`, set by
  ``loadgen worker``): the loadgen master sends the configuration and the
  client id, and drives start, warmup->run and stop with custom messages; the
  user also ships :class:`stats.PhaseStats` deltas (~4/s) so the master prints
  and exports exactly what a single-machine run does.  Protocol::

    master -> worker  nfsbulk_config {cid, nclients, cfg}   before the users spawn
                      nfsbulk_start {phase}                 all clients ready: go
                      nfsbulk_phase {phase: "run"}          warmup over (counts restart)
                      nfsbulk_stop {reason}                 finish the current op, flush, report done
                      nfsbulk_refused {reason}              this worker came too late; quit follows
    worker -> master  nfsbulk_ready {cid, info, host, pid, group}
                      nfsbulk_stats {cid, phase, stats, mismatches}
                      nfsbulk_done {cid, cpu, reason}
                      nfsbulk_failed {cid, stage, message}

* plain Locust (``locust -f loadgen/locustfile.py --host nfs://...``): options
  from Locust's command line (``--nfs-loadfile``, ``--nfs-profile``, ...), no
  phases; the user replays until Locust stops it.

Threads and processes: Locust runs users as gevent greenlets, and
python-libnfs holds the GIL and blocks for the whole call, so a call stalls
every greenlet of the process (heartbeats, stats reports).  Hence one client
per process: a second ``NfsUser`` started in a process that already has one
(Locust may place one there after a worker is lost) stays idle and logs why;
concurrency comes from processes (``loadgen worker --processes N``, Locust's
``--processes N``).  The user yields to the gevent hub between operations
(and while a loadfile SLEEP or timestamp waits), which keeps heartbeats and
messages flowing as long as single calls are shorter than Locust's heartbeat
liveness (about 3 s).
"""
from __future__ import annotations

import logging
import os
import random
import resource
import socket
import time

import gevent
from gevent.event import Event
from locust import User, constant, events, task

from ..run.client import build_workload
from ..run.replay import Recorder, Replay, Stop
from ..run.stats import OpStats, PhaseStats

__all__ = ["NfsUser", "WorkerState", "NfsStatusError", "stats_to_wire", "stats_from_wire",
           "FLUSH_INTERVAL", "describe"]

log = logging.getLogger("loadgen.locust")
FLUSH_INTERVAL = 0.25
_claimed = {"n": 0}       # NfsUsers started in this process (only the first one runs a client)


class NfsStatusError(Exception):
    """An NFS (or SMB) status the loadfile did not expect; Locust counts it as a failure."""


def stats_to_wire(st: PhaseStats) -> dict:
    """PhaseStats -> msgpack-friendly dict (Locust's message encoding)."""
    return {"ops": {name: [s.ok, s.error, s.unexpected, s.sum, s.max, list(s.buckets), dict(s.fine)]
                    for name, s in st.ops.items()},
            "read": st.read_bytes, "write": st.write_bytes, "max": st.max_latency}


def stats_from_wire(d: dict) -> PhaseStats:
    st = PhaseStats()
    for name, v in d["ops"].items():
        s = OpStats()
        s.ok, s.error, s.unexpected, s.sum, s.max = v[0], v[1], v[2], v[3], v[4]
        s.buckets = list(v[5])
        s.fine = {int(k): c for k, c in v[6].items()}
        st.ops[name] = s
    st.read_bytes, st.write_bytes, st.max_latency = d["read"], d["write"], d["max"]
    return st


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class WorkerState:
    """Per-process state of a coordinated worker, filled by the master's
    messages (handled in the runner's greenlet) and read by the user."""

    def __init__(self, group: str, say=None):
        self.group = group
        self.say = say or (lambda msg: None)   # one line on the worker's stderr ("loadgen worker: " + msg)
        self.config: dict | None = None
        self.config_event = Event()
        self.started = Event()
        self.start_phase = "run"
        self.phase = "warmup"
        self.stop_reason: str | None = None
        self.refused: str | None = None
        self.finished = False          # our client reported done or failed
        self.failed = False
        # for the worker's end line (distworker._end_line)
        self.cid: int | None = None    # the client id the master gave
        self.began = False             # the load started (the "client N started" line was said)
        self.ops = 0                   # operations of the measured phase (the master's workers[].ops_total)
        self.end_reason: str | None = None    # "time", "stopped", "aborted", "locust"
        self.failure: tuple[str, str] | None = None   # (stage, message)
        self.master_lost: str | None = None
        self.interrupted: str | None = None   # the signal's name
        self.orphaned = False          # the supervising `loadgen worker` went away

    def register(self, runner) -> None:
        """Listen for the master's nfsbulk_* messages on a WorkerRunner (once)."""
        if getattr(runner, "_nfsbulk_registered", False):
            return
        runner._nfsbulk_registered = True
        def on_config(environment, msg, **kw):
            self.config = msg.data
            self.config_event.set()

        def on_start(environment, msg, **kw):
            self.start_phase = self.phase = msg.data["phase"]
            self.started.set()

        def on_phase(environment, msg, **kw):
            self.phase = msg.data["phase"]

        def on_stop(environment, msg, **kw):
            self.stop_reason = msg.data.get("reason", "stopped")
            self.started.set()
            self.config_event.set()

        def on_refused(environment, msg, **kw):
            self.refused = msg.data.get("reason", "refused")
            self.config_event.set()

        runner.register_message("nfsbulk_config", on_config)
        runner.register_message("nfsbulk_start", on_start)
        runner.register_message("nfsbulk_phase", on_phase)
        runner.register_message("nfsbulk_stop", on_stop)
        runner.register_message("nfsbulk_refused", on_refused)


class NfsUser(User):
    """One loadgen client inside Locust (see the module docstring)."""

    wait_time = constant(0)

    def __init__(self, environment):
        super().__init__(environment)
        self._nfs = None

    # -- Locust request events ------------------------------------------------
    def _fire(self, name, seconds, nbytes, status, message):
        self.environment.events.request.fire(
            request_type=name, name=name, response_time=seconds * 1e3, response_length=nbytes,
            exception=NfsStatusError(message) if status == "unexpected" else None, context={})

    @task
    def replay(self):
        _claimed["n"] += 1
        if _claimed["n"] > 1:
            log.warning("NfsUser: this process already runs a loadgen client (python-libnfs holds the GIL); "
                        "this extra user stays idle, use more processes instead")
            self._idle()
        st = getattr(self.environment, "nfsbulk", None)
        try:
            if st is not None:
                self._coordinated(st)
            else:
                self._plain()
        finally:
            if self._nfs is not None:
                try:
                    self._nfs.destroy()
                except Exception:
                    pass
                self._nfs = None

    @staticmethod
    def _idle():
        while True:
            gevent.sleep(3600)

    # -- plain Locust ----------------------------------------------------------
    def _plain(self):
        from ..run.nfsctx import NfsContext
        from ..run.ops import Executor
        opts = self.environment.parsed_options
        runner = self.environment.runner
        idx = getattr(runner, "worker_index", 0)
        cid = idx if idx is not None and idx >= 0 and type(runner).__name__ == "WorkerRunner" else _claimed["n"] - 1
        url = self.host or (opts.host if opts else None)
        if not url or not url.startswith("nfs://"):
            raise RuntimeError(f"NfsUser needs --host nfs://SERVER/EXPORT?..., got {url!r}")
        cfg = {"url": url, "profile": getattr(opts, "nfs_profile", None),
               "loadfile": getattr(opts, "nfs_loadfile", None) or None,
               "rw_files": getattr(opts, "nfs_rw_files", 4), "rw_file_size": getattr(opts, "nfs_rw_file_size", 8 << 20)}
        nclients = max(1, getattr(opts, "num_users", 1) or 1)
        self._nfs = nfs = NfsContext(url, getattr(opts, "nfs_rpc_timeout", 30.0))
        program = build_workload(cfg, nfs, f"client{cid}")
        ex = Executor(nfs, cid, nclients, random.Random((getattr(opts, "nfs_seed", 0) << 16) + cid))

        def tick(now):
            gevent.sleep(0)

        Replay(ex, honor_timestamps=not getattr(opts, "nfs_ignore_timestamps", False), tick=tick,
               on_op=self._fire).run(program)

    # -- driven by a loadgen master -------------------------------------------
    def _coordinated(self, st: WorkerState):
        from ..run.nfsctx import MountError, NfsContext
        from ..run.ops import Executor
        runner = self.environment.runner
        st.config_event.wait()
        if st.refused is not None or st.config is None:
            self._idle()
        conf = st.config
        cid, cfg = conf["cid"], conf["cfg"]
        cname = f"client{cid}"
        st.cid = cid

        def send(kind, **data):
            runner.send_message("nfsbulk_" + kind, dict(data, cid=cid))

        stage = "mount"
        try:
            if st.stop_reason is not None:       # the master aborted before this client mounted
                send("done", cpu=0.0, reason="stopped before start")
                st.end_reason, st.finished = "aborted", True
                self._idle()
            try:
                self._nfs = nfs = NfsContext(cfg["url"], cfg["rpc_timeout"])
            except MountError as e:
                raise _Failed(str(e)) from None
            stage = "setup"
            program = build_workload(cfg, nfs, cname)
            ex = Executor(nfs, cid, conf["nclients"], random.Random((cfg["seed"] << 16) + cid))
            send("ready", info={"readmax": nfs.readmax, "writemax": nfs.writemax},
                 host=socket.gethostname(), pid=os.getpid(), group=st.group)
            st.started.wait()
            if st.stop_reason is not None:
                send("done", cpu=0.0, reason="stopped before start")
                st.end_reason, st.finished = "aborted", True
                self._idle()
            stage = "run"
            st.began = True
            st.say(f"client {cid} started: {describe(cfg)}")
            rec = Recorder(ex, cname)
            state = {"phase": st.start_phase, "next": time.monotonic() + FLUSH_INTERVAL,
                     "cpu0": _cpu() if st.start_phase == "run" else None, "reason": "stopped", "strict": None}

            def flush():
                d = rec.take()
                if d is not None:
                    send("stats", phase=state["phase"], stats=stats_to_wire(d[0]), mismatches=d[1])

            def tick(now):
                gevent.sleep(0)            # let heartbeats and the master's messages through
                if st.stop_reason is not None:
                    state["reason"] = st.stop_reason
                    raise Stop
                if state["phase"] != st.phase:
                    flush()
                    state["phase"] = st.phase
                    state["cpu0"] = _cpu()
                if now >= state["next"]:
                    flush()
                    state["next"] = now + FLUSH_INTERVAL

            def on_op(name, seconds, nbytes, status, message):
                rec.record(name, seconds, status, message)
                if state["phase"] == "run":
                    st.ops += 1
                self._fire(name, seconds, nbytes, status, message)
                if message is not None and cfg["strict"]:
                    state["strict"] = message
                    state["reason"] = "strict"
                    raise Stop

            try:
                Replay(ex, honor_timestamps=not cfg["ignore_timestamps"], tick=tick, on_op=on_op).run(program)
            except gevent.GreenletExit:
                # Locust stopped this user (web UI STOP or a user count lowered): report what ran
                flush()
                cpu = _cpu() - state["cpu0"] if state["phase"] == "run" and state["cpu0"] is not None else 0.0
                send("done", cpu=cpu, reason="stopped by Locust")
                st.end_reason, st.finished = "locust", True
                raise
            cpu = _cpu() - state["cpu0"] if state["phase"] == "run" and state["cpu0"] is not None else 0.0
            # no ex.close_all() here (unlike client.py): libnfs's close sends a COMMIT3 for a handle
            # with unstable writes, an RPC that is no loadfile op; nfs.destroy() in replay()'s
            # finally drops the handles without RPCs, so the server's counts match the reported ops
            flush()
            if state["strict"] is not None:
                raise _Failed(state["strict"])
            send("done", cpu=cpu, reason=state["reason"])
            st.end_reason, st.finished = state["reason"], True
        except _Failed as e:
            stage = "strict" if stage == "run" else stage
            send("failed", stage=stage, message=str(e))
            st.failure = (stage, str(e))
            st.finished = st.failed = True
        except gevent.GreenletExit:
            raise
        except Exception as e:   # our bug or a setup error: report it to the master, never hang
            import traceback
            detail = str(e) if stage == "setup" and isinstance(e, (RuntimeError, ValueError)) \
                else traceback.format_exc()
            send("failed", stage=stage, message=detail)
            st.failure = (stage, detail)
            st.finished = st.failed = True
        self._idle()


def describe(cfg: dict) -> str:
    """The worker's "client N started" words for a master's configuration: the workload as the
    master names it, the phases and the server."""
    what = cfg.get("desc") or (f"profile {cfg['profile']}" if cfg.get("profile") else cfg.get("loadfile")
                               or "the default workload")
    phases = ""
    if cfg.get("time") is not None:
        phases = f", warmup {cfg.get('warmup') or 0:g} s, run {cfg['time']:g} s"
    return f"workload {what}{phases}, server {cfg.get('url')}"


class _Failed(Exception):
    pass


@events.init_command_line_parser.add_listener
def _options(parser, **kw):
    """Options of the shipped locustfile in plain Locust mode (shown in Locust's --help); prefixed
    with --nfs- so they cannot clash with Locust's own (it has a --profile)."""
    g = parser.add_argument_group("nfsbulk NfsUser (loadgen/locustfile.py)")
    g.add_argument("--nfs-loadfile", default="", help="dbench loadfile each user replays "
                                                      "(default: loadgen's default workload)")
    g.add_argument("--nfs-profile", choices=["rw256k"], default=None, help="built-in profile instead of a loadfile")
    g.add_argument("--nfs-rw-files", type=int, default=4, help="rw256k: files per client (default 4)")
    g.add_argument("--nfs-rw-file-size", type=int, default=8 << 20, help="rw256k: bytes per file (default 8 MiB)")
    g.add_argument("--nfs-ignore-timestamps", action="store_true", help="run loadfile lines back to back")
    g.add_argument("--nfs-rpc-timeout", type=float, default=30.0,
                   help="libnfs timeout per call, seconds (default 30)")
    g.add_argument("--nfs-seed", type=int, default=0, help="seed for random offsets and RANDOMSTRING (default 0)")
