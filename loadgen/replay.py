"""The loadfile executor loop, shared by every way loadgen runs a client.

One :class:`Replay` drives one :class:`ops.Executor` through a
:class:`loadfile.Program` forever (pass after pass) until a callback raises
:class:`Stop`.  It owns the interpreter of the program's structure (REPEAT,
LOOP, SLEEP, WRITEPATTERN, RANDOMSTRING), the wait for loadfile timestamps
and the timing of each operation; it owns no clock policy, no statistics and
no transport.  Those are the caller's, through two callbacks:

* ``tick(now)``   before every operation and at least every 50 ms while
  sleeping; raises :class:`Stop` to end the replay (run over, stop asked).
* ``on_op(name, seconds, nbytes, status, message)``  after every operation:
  its name, its latency in seconds (``perf_counter``), the payload bytes it
  moved (READ + WRITE), its status label (``"ok"``, ``"error"`` = an
  expected failure, ``"unexpected"``) and the mismatch message or None.  It
  may raise :class:`Stop` (``--strict``).

Callers: :mod:`loadgen.client` (``loadgen run``'s client processes, stats
shipped over a pipe) and :mod:`loadgen.locustuser` (a Locust ``User``, stats
fired as Locust request events and shipped to a loadgen master).  Both also
use :class:`Recorder` to turn ``on_op`` calls into :class:`stats.PhaseStats`
deltas, so a figure means the same thing whichever ran it.

Single-threaded: one Replay, one Executor, one libnfs context, one process.
``sleep`` defaults to :func:`time.sleep`; under gevent (Locust) it is the
monkey-patched, cooperative one.
"""
from __future__ import annotations

import time

from .loadfile import Loop, Op, RandomString, Repeat, Sleep, WritePattern
from .stats import PhaseStats

__all__ = ["Stop", "Replay", "Recorder"]


class Stop(Exception):
    """Raised by a callback to end :meth:`Replay.run`."""


class Replay:
    """Run ``program`` through ``ex`` until a callback raises :class:`Stop`."""

    def __init__(self, ex, *, honor_timestamps: bool, tick, on_op, sleep=time.sleep):
        self.ex = ex
        self.honor_ts = honor_timestamps
        self.tick = tick
        self.on_op = on_op
        self._sleep = sleep
        self.pass_start = time.monotonic()

    def op(self, op: Op) -> None:
        now = time.monotonic()
        self.tick(now)
        if op.timestamp and self.honor_ts:
            target = self.pass_start + op.timestamp
            while now < target:
                self._sleep(min(target - now, 0.05))
                now = time.monotonic()
                self.tick(now)
        ex = self.ex
        before = ex.read_bytes + ex.write_bytes
        t = time.perf_counter()
        label, msg = ex.execute(op)
        dt = time.perf_counter() - t
        self.on_op(op.name, dt, ex.read_bytes + ex.write_bytes - before, label, msg)

    def sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            now = time.monotonic()
            self.tick(now)
            if now >= end:
                return
            self._sleep(min(end - now, 0.05))

    def run_items(self, items) -> None:
        ex = self.ex
        for it in items:
            t = type(it)
            if t is Op:
                self.op(it)
            elif t is Repeat:
                o = it.op
                for _ in range(it.count):
                    self.op(o)
            elif t is Loop:
                for _ in range(it.count):
                    self.run_items(it.body)
            elif t is Sleep:
                self.sleep(it.usec / 1e6)
            elif t is WritePattern:
                ex.set_pattern(it.pattern)
            elif t is RandomString:
                ex.vars[it.var] = "".join(ex.rng.choice(s) for s in it.pattern)

    def run(self, program, once: bool = False) -> bool:
        """Pass after pass over the program until a callback raises Stop (True), or a single pass
        with ``once`` (False when that pass ended without a Stop)."""
        try:
            while True:
                self.pass_start = time.monotonic()
                self.tick(self.pass_start)
                self.run_items(program.items)
                if once:
                    return False
        except Stop:
            return True


class Recorder:
    """``on_op`` calls -> a :class:`PhaseStats` delta plus mismatch lines.

    Bytes are taken from the executor's read/write counters at :meth:`take`
    (so the read/write split is the executor's own), latencies per call.
    """

    def __init__(self, ex, cname: str):
        self.ex = ex
        self.cname = cname
        self.stats = PhaseStats()
        self.mismatches: list[str] = []

    def record(self, name: str, seconds: float, status: str, message: str | None) -> None:
        st = self.stats
        st.op(name).record(seconds, status)
        if seconds > st.max_latency:
            st.max_latency = seconds
        if message is not None:
            self.mismatches.append(f"{self.cname} {message}")

    def take(self):
        """(PhaseStats delta, mismatch lines) since the last take, or None when nothing happened."""
        ex = self.ex
        self.stats.read_bytes += ex.read_bytes
        self.stats.write_bytes += ex.write_bytes
        ex.read_bytes = ex.write_bytes = 0
        if self.stats.empty() and not self.mismatches:
            return None
        out = (self.stats, self.mismatches)
        self.stats = PhaseStats()
        self.mismatches = []
        return out
