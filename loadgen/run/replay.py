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

Callers: :mod:`loadgen.run.client` (``loadgen run``'s client processes, stats
shipped over a pipe) and :mod:`loadgen.distributed.locustuser` (a Locust ``User``, stats
fired as Locust request events and shipped to a loadgen master).  Both also
use :class:`Recorder` to turn ``on_op`` calls into :class:`stats.PhaseStats`
deltas, so a figure means the same thing whichever ran it.

Open loop (``schedule``, a :class:`Schedule`): every operation has an
intended start taken from the schedule, fixed spacing or Poisson arrivals at
the client's share of ``--rate``. The replay waits for that instant (ticking),
or starts at once when it is already past (the schedule fell behind), and
calls ``on_op(name, latency, nbytes, status, message, service)`` with the
latency counted from the intended start (coordinated-omission corrected) and
the service time (start to reply) beside it. The schedule is the pacing:
loadfile timestamps and SLEEP lines are not honoured in an open-loop run. An
intended start that the run's end reached before the operation could start is
left in the schedule (``Schedule.unsent`` counts them at the end).

Single-threaded: one Replay, one Executor, one libnfs context, one process.
``sleep`` defaults to :func:`time.sleep`; under gevent (Locust) it is the
monkey-patched, cooperative one.
"""
from __future__ import annotations

import time

from .loadfile import Loop, Op, RandomString, Repeat, Sleep, WritePattern
from .stats import PhaseStats

__all__ = ["Stop", "Replay", "Recorder", "Schedule", "ARRIVALS", "SPIN_SECONDS", "fine_timer_slack"]

#: open loop: sleep until this long before an intended start, then spin to it. On the 2-core VM
#: (2026-12-07) a 2 ms sleep woke 124 us late at the median (56 us with fine_timer_slack); sleeping
#: to 60 us before and spinning the rest woke 10 us late (p99 76 us) for 8 us of CPU per operation
SPIN_SECONDS = 60e-6

#: the arrival processes of --arrival
ARRIVALS = ("fixed", "poisson")


class Stop(Exception):
    """Raised by a callback to end :meth:`Replay.run`."""


def fine_timer_slack() -> bool:
    """Ask Linux for a 1 ns timer slack for this thread (prctl PR_SET_TIMERSLACK; the default is
    50 us), so open-loop sleeps end when asked. False where it is not available."""
    try:
        import ctypes
        return ctypes.CDLL(None, use_errno=True).prctl(29, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class Schedule:
    """The intended start instants (time.monotonic) of one open-loop client.

    ``rate`` operations per second from ``first`` on, spaced 1/rate apart (``fixed``) or with
    exponential gaps of mean 1/rate (``poisson``, from ``rng``). :meth:`peek` is the next
    intended start, :meth:`take` consumes it; ``window`` = (start, end) counts the intended
    starts that fall in it (``scheduled``: taken ones as they are taken, untaken ones by
    :meth:`finish`), so offered load is what the schedule asked for, not a nominal figure."""

    def __init__(self, rate: float, arrival: str, rng, first: float):
        if rate <= 0 or arrival not in ARRIVALS:
            raise ValueError("a schedule needs a rate > 0 and an arrival in %s" % (ARRIVALS,))
        self.rate = rate
        self.poisson = arrival == "poisson"
        self.rng = rng
        self._first = first
        self._k = 0                 # fixed spacing: the k-th start is first + k / rate (no drift)
        self._next = first + (rng.expovariate(rate) if self.poisson else 0.0)
        self.window = (float("-inf"), float("inf"))
        self.scheduled = 0          # intended starts inside the window (taken or not)
        self.taken = 0              # of them, taken (the operation started)
        self.unsent = 0             # of them, never started (set by finish)

    def peek(self) -> float:
        return self._next

    def _after(self, t: float) -> float:
        if self.poisson:
            return t + self.rng.expovariate(self.rate)
        self._k += 1
        return self._first + self._k / self.rate

    def take(self) -> float:
        t = self._next
        self._next = self._after(t)
        lo, hi = self.window
        if lo <= t < hi:
            self.scheduled += 1
            self.taken += 1
        return t

    def finish(self, now: float) -> float:
        """At the end of the run: count the intended starts of the window the run never reached
        (``unsent``) and return how far behind the schedule was at ``now`` (>= 0)."""
        lag = max(0.0, now - self._next)
        lo, hi = self.window
        end = min(now, hi)
        while self._next < end:
            if self._next >= lo:
                self.unsent += 1
                self.scheduled += 1
            self._next = self._after(self._next)
        return lag


class Replay:
    """Run ``program`` through ``ex`` until a callback raises :class:`Stop`."""

    def __init__(self, ex, *, honor_timestamps: bool, tick, on_op, sleep=time.sleep, schedule=None):
        self.ex = ex
        self.honor_ts = honor_timestamps and schedule is None
        self.tick = tick
        self.on_op = on_op
        self._sleep = sleep
        self.schedule = schedule
        self.pass_start = time.monotonic()

    def op(self, op: Op) -> None:
        now = time.monotonic()
        self.tick(now)
        sched = self.schedule
        if sched is not None:
            intended = sched.peek()
            while now < intended - SPIN_SECONDS:
                self._sleep(min(intended - SPIN_SECONDS - now, 0.05))
                now = time.monotonic()
                self.tick(now)
            while now < intended:
                now = time.monotonic()
            sched.take()
            ex = self.ex
            before = ex.read_bytes + ex.write_bytes
            start = time.monotonic()
            label, msg = ex.execute(op)
            end = time.monotonic()
            self.on_op(op.name, end - intended, ex.read_bytes + ex.write_bytes - before, label, msg, end - start)
            return
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
        if self.schedule is not None:       # open loop: the schedule paces, not the loadfile
            return
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

    def record(self, name: str, seconds: float, status: str, message: str | None,
               service: float | None = None) -> None:
        """One operation: `seconds` its latency; in an open-loop run (`service` given) the
        latency from its intended start, with the service time beside it."""
        st = self.stats
        if service is None:
            st.op(name).record(seconds, status)
        else:
            st.op(name).record(service, status)
            st.intended_op(name).record(seconds, status)
            st.lag.record(max(0.0, seconds - service), "ok")
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
