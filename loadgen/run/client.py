"""One client process: its own libnfs context and TCP connection, its own
directory (``/clients/client<N>``), replaying its workload in a loop (or once, with ``run_once``).

Protocol with the parent, over one duplex ``multiprocessing`` pipe (the child
only sends, except for the two control messages it receives):

  child -> parent  ("mounted", cid)                  the mount worked; set-up follows
  child -> parent  ("ready", cid, info)            mounted, workload parsed, set up
                   ("stats", cid, phase, PhaseStats, [mismatch lines])   deltas, ~4/s
                   ("done", cid, {"cpu": s, "reason": r})               after its last stats
                   ("failed", cid, stage, message)  mount/setup/crash/strict; then exits 1
  parent -> child  ("start", t0, warmup_end, run_end)   monotonic clock values
                   ("stop",)                            stop now (Ctrl-C, another client died)

Phases are decided in the child from the shared monotonic clock: an op
belongs to the phase in which it started; at the warmup->run boundary the
child flushes its warmup deltas and starts from zero, so the run's counts,
bytes and latencies exclude warmup (as dbench).  The child ignores SIGINT:
the parent owns Ctrl-C and tells children to stop.

CPU: user+sys of this process during the run phase only (getrusage deltas),
reported in "done" for the cost-per-op figure.

Open loop (``cfg["rate"]``, this client's share of ``--rate``): the client
builds a :class:`replay.Schedule` starting at t0, offset by cid/total rate so
the clients' fixed-spaced starts interleave; "done" then carries
``open_loop``: intended starts in the run window (``scheduled``), how many
started, how many the end reached first (``unsent``) and the schedule lag at
the end (``lag_end``).
"""
from __future__ import annotations

import random
import resource
import signal
import time
import traceback

from .loadfile import LoadfileError, parse_file, parse_text
from .replay import Recorder, Replay, Schedule, Stop, fine_timer_slack

__all__ = ["client_main", "build_workload", "FLUSH_INTERVAL"]

FLUSH_INTERVAL = 0.25


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class _Loop:
    """The pipe side of a client: phases from the shared clock, deltas to the
    parent every FLUSH_INTERVAL, "stop" from the parent.  The replay itself is
    :class:`replay.Replay`'s (shared with the Locust user)."""

    def __init__(self, conn, cid, ex, cfg, t0, warmup_end, run_end):
        self.conn = conn
        self.cid = cid
        self.ex = ex
        self.strict = cfg["strict"]
        self.warmup_end = warmup_end
        self.run_end = run_end
        self.phase = "warmup" if time.monotonic() < warmup_end else "run"
        self.rec = Recorder(ex, f"client{cid}")
        self.next_flush = time.monotonic() + FLUSH_INTERVAL
        self.cpu_start = _cpu() if self.phase == "run" else None
        self.cpu_run = 0.0
        self.stop_reason = "time"
        self.strict_failure: str | None = None
        self.run_once = bool(cfg.get("run_once"))
        self.schedule = None
        if cfg.get("rate"):
            total = cfg["rate"] * cfg.get("nclients", 1)
            self.schedule = Schedule(cfg["rate"], cfg.get("arrival", "fixed"),
                                     random.Random((cfg["seed"] << 16) + cid + 0x5EED), t0 + cid / total)
            self.schedule.window = (warmup_end, run_end)
            fine_timer_slack()
        self.open_loop: dict | None = None
        self.replay = Replay(ex, honor_timestamps=not cfg["ignore_timestamps"],
                             tick=self.tick, on_op=self.on_op, schedule=self.schedule)

    def flush(self):
        d = self.rec.take()
        if d is not None:
            self.conn.send(("stats", self.cid, self.phase, d[0], d[1]))

    def tick(self, now: float):
        if now >= self.run_end:
            self.stop_reason = "time"
            raise Stop
        if self.phase == "warmup" and now >= self.warmup_end:
            self.flush()
            self.phase = "run"
            self.cpu_start = _cpu()
        if now >= self.next_flush:
            self.flush()
            self.next_flush = now + FLUSH_INTERVAL
            if self.conn.poll():
                msg = self.conn.recv()
                if msg[0] == "stop":
                    self.stop_reason = "stopped"
                    raise Stop

    def on_op(self, name, seconds, nbytes, status, message, service=None):
        self.rec.record(name, seconds, status, message, service)
        if message is not None and self.strict:
            self.strict_failure = message
            self.stop_reason = "strict"
            raise Stop

    def run(self, program):
        if not self.replay.run(program, once=self.run_once):
            self.stop_reason = "once"          # --run-once: one pass, whatever --time says
        if self.phase == "run" and self.cpu_start is not None:
            self.cpu_run = _cpu() - self.cpu_start
        if self.schedule is not None:
            lag = self.schedule.finish(min(time.monotonic(), self.run_end))
            self.open_loop = {"scheduled": self.schedule.scheduled, "started": self.schedule.taken,
                              "unsent": self.schedule.unsent, "lag_end": lag}
        self.flush()


def build_workload(cfg, nfs, cname):
    """The client's Program: rw256k (laid out now, untimed), the loadfile (its
    text when the config carries it, as a loadgen master sends it to remote
    workers, else its path), or the default workload."""
    from . import workloads
    prof = cfg.get("profile")
    if prof == "rw256k":
        workloads.rw256k_setup(nfs, cname, cfg["rw_files"], cfg["rw_file_size"])
        return workloads.rw256k_program(cfg["rw_files"], cfg["rw_file_size"])
    if cfg.get("loadfile_text") is not None:
        return parse_text(cfg["loadfile_text"], source=cfg.get("loadfile") or "<loadfile>")
    if cfg.get("loadfile"):
        return parse_file(cfg["loadfile"])
    return workloads.default_program()[0]


def client_main(cid: int, nclients: int, cfg: dict, conn) -> None:
    """Entry point of a spawned client process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stage = "mount"
    nfs = None
    try:
        from .nfsctx import MountError, NfsContext
        from .ops import Executor
        try:
            nfs = NfsContext(cfg["url"], cfg["rpc_timeout"])
        except MountError as e:
            conn.send(("failed", cid, "mount", str(e)))
            raise SystemExit(1)
        stage = "setup"
        conn.send(("mounted", cid))
        cname = f"client{cid}"
        program = build_workload(cfg, nfs, cname)
        rng = random.Random((cfg["seed"] << 16) + cid)
        ex = Executor(nfs, cid, nclients, rng)
        conn.send(("ready", cid, {"readmax": nfs.readmax, "writemax": nfs.writemax}))
        msg = conn.recv()
        if msg[0] != "start":
            conn.send(("done", cid, {"cpu": 0.0, "reason": "stopped before start"}))
            return
        stage = "run"
        _, t0, warmup_end, run_end = msg
        delay = t0 - time.monotonic()       # common start instant for all clients
        if delay > 0:
            time.sleep(delay)
        loop = _Loop(conn, cid, ex, cfg, t0, warmup_end, run_end)
        loop.run(program)
        ex.close_all()
        if loop.strict_failure is not None:
            conn.send(("failed", cid, "strict", loop.strict_failure))
            raise SystemExit(1)
        conn.send(("done", cid, {"cpu": loop.cpu_run, "reason": loop.stop_reason, "open_loop": loop.open_loop}))
    except SystemExit:
        raise
    except (EOFError, BrokenPipeError):
        raise SystemExit(1)       # parent went away
    except Exception as e:     # our bug or a setup error: report it, never hang
        try:
            # a loadfile value out of bounds (LoadfileError) is the user's, not a bug: one line
            plain = isinstance(e, LoadfileError) or (stage == "setup" and isinstance(e, (RuntimeError, ValueError)))
            detail = str(e) if plain else traceback.format_exc()
            conn.send(("failed", cid, stage, detail))
        except Exception:
            pass
        raise SystemExit(1)
    finally:
        if nfs is not None:
            try:
                nfs.destroy()
            except Exception:
                pass
