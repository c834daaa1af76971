"""Counters and latency histograms: recorded in clients, merged in the parent.

Plain data, picklable, mergeable.  Two histograms per operation:

* the contract histogram: fixed upper bounds ``BOUNDS`` (25 us doubling to
  about 13.1 s, 20 finite buckets + ``+Inf``), non-cumulative counts.  These are
  what /metrics and ``--json`` expose; they merge across runs and hosts by
  adding counts.
* a fine log histogram (16 buckets per octave, each 2^(1/16) = 4.4 % wide) used
  only for the percentiles p50, p90, p99 and p99.9; also mergeable (dict of
  bucket -> count).  A percentile is the geometric middle of the bucket that
  holds it (capped at the exact max), so it is within 2.2 % of the true
  sample quantile whatever the latency.

``max`` is exact; ``mean`` is sum/count.  A client records into a
:class:`PhaseStats`, ships it to the parent, and starts a fresh one (deltas),
so the parent's merge is a plain sum.

Open-loop runs (``loadgen run --rate``) keep two more things per phase: for
every operation the latency counted from its *intended* start
(``PhaseStats.intended``, corrected for coordinated omission), and the
schedule lag, actual start minus intended start (``PhaseStats.lag``).
``PhaseStats.ops`` is the service time (send to reply) in both kinds of run,
so it means the same thing whichever ran.
"""
from __future__ import annotations

import math

__all__ = ["BOUNDS", "OpStats", "PhaseStats", "bucket_index", "STATUSES", "PERCENTILES"]

#: (JSON key suffix, quantile) of the percentiles reported per op
PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p999", 0.999))

BOUNDS: tuple = tuple(25e-6 * (2 ** i) for i in range(20))   # 25us .. 13.1072s
_LOG_BASE = 25e-6
_NB = len(BOUNDS)
_FINE_PER_OCTAVE = 16
STATUSES = ("ok", "error", "unexpected")


def bucket_index(seconds: float) -> int:
    """Index into BOUNDS (+Inf is len(BOUNDS)): the first bound >= seconds."""
    if seconds <= _LOG_BASE:
        return 0
    i = math.ceil(math.log2(seconds / _LOG_BASE) - 1e-12)
    return i if i < _NB else _NB


class OpStats:
    __slots__ = ("ok", "error", "unexpected", "sum", "max", "buckets", "fine")

    def __init__(self):
        self.ok = 0
        self.error = 0
        self.unexpected = 0
        self.sum = 0.0
        self.max = 0.0
        self.buckets = [0] * (_NB + 1)
        self.fine: dict[int, int] = {}

    @property
    def count(self) -> int:
        return self.ok + self.error + self.unexpected

    def record(self, seconds: float, status: str) -> None:
        if status == "ok":
            self.ok += 1
        elif status == "error":
            self.error += 1
        else:
            self.unexpected += 1
        self.sum += seconds
        if seconds > self.max:
            self.max = seconds
        self.buckets[bucket_index(seconds)] += 1
        k = int(math.floor(math.log2(max(seconds, 1e-9) / 1e-6) * _FINE_PER_OCTAVE))
        self.fine[k] = self.fine.get(k, 0) + 1

    def merge(self, other: "OpStats") -> None:
        self.ok += other.ok
        self.error += other.error
        self.unexpected += other.unexpected
        self.sum += other.sum
        if other.max > self.max:
            self.max = other.max
        for i, c in enumerate(other.buckets):
            self.buckets[i] += c
        for k, c in other.fine.items():
            self.fine[k] = self.fine.get(k, 0) + c

    def quantile(self, q: float) -> float:
        """The q-quantile: geometric middle of the fine bucket holding it (capped at max); within 2.2 %."""
        n = self.count
        if n == 0:
            return 0.0
        if q >= 1.0:
            return self.max
        rank = q * n
        acc = 0
        for k in sorted(self.fine):
            acc += self.fine[k]
            if acc >= rank:
                return min(1e-6 * 2 ** ((k + 0.5) / _FINE_PER_OCTAVE), self.max)
        return self.max

    def __getstate__(self):
        return (self.ok, self.error, self.unexpected, self.sum, self.max, self.buckets, self.fine)

    def __setstate__(self, st):
        (self.ok, self.error, self.unexpected, self.sum, self.max, self.buckets, self.fine) = st

    def to_json(self) -> dict:
        n = self.count
        return {
            "count": n, "ok": self.ok, "error": self.error, "unexpected": self.unexpected,
            "sum_seconds": self.sum, "mean_seconds": self.sum / n if n else 0.0,
            "p50_seconds": self.quantile(0.50), "p90_seconds": self.quantile(0.90),
            "p99_seconds": self.quantile(0.99), "p999_seconds": self.quantile(0.999),
            "max_seconds": self.max,
            "buckets": list(self.buckets),
            "fine_buckets": {str(k): v for k, v in sorted(self.fine.items())},
        }

    @classmethod
    def from_json(cls, d: dict) -> "OpStats":
        s = cls()
        s.ok, s.error, s.unexpected = d["ok"], d["error"], d["unexpected"]
        s.sum, s.max = d["sum_seconds"], d["max_seconds"]
        s.buckets = list(d["buckets"])
        s.fine = {int(k): v for k, v in d.get("fine_buckets", {}).items()}
        return s


class PhaseStats:
    """Everything one client did in one phase since its last report.

    ``ops``: service time per operation. Open loop only: ``intended`` (latency from the
    intended start per operation) and ``lag`` (start minus intended start, all operations;
    ``lag.ok`` counts them). ``max_latency`` is the largest latency the run reports: the
    corrected one in an open-loop run."""
    __slots__ = ("ops", "read_bytes", "write_bytes", "max_latency", "intended", "lag")

    def __init__(self):
        self.ops: dict[str, OpStats] = {}
        self.read_bytes = 0
        self.write_bytes = 0
        self.max_latency = 0.0
        self.intended: dict[str, OpStats] = {}
        self.lag = OpStats()

    def op(self, name: str) -> OpStats:
        s = self.ops.get(name)
        if s is None:
            s = self.ops[name] = OpStats()
        return s

    @property
    def count(self) -> int:
        """Every operation attempted, failures included."""
        return sum(s.count for s in self.ops.values())

    @property
    def completed(self) -> int:
        """Operations with the outcome the workload expects (ok, or an expected error status): what
        ops/sec counts. Failures (unexpected statuses, including calls that never reached the
        server because an earlier step failed) are not operations done."""
        return sum(s.ok + s.error for s in self.ops.values())

    @property
    def failed(self) -> int:
        return sum(s.unexpected for s in self.ops.values())

    @property
    def ok(self) -> int:
        return sum(s.ok for s in self.ops.values())

    def intended_op(self, name: str) -> OpStats:
        s = self.intended.get(name)
        if s is None:
            s = self.intended[name] = OpStats()
        return s

    @property
    def open_loop(self) -> bool:
        """Whether any operation here was run against a schedule (``--rate``)."""
        return bool(self.intended)

    def view(self, which: str) -> "PhaseStats":
        """The same phase with ``ops`` = the service times (``"service"``) or the latencies from
        the intended start (``"intended"``): what the final table prints. Shares the OpStats."""
        v = PhaseStats()
        v.ops = self.intended if which == "intended" else self.ops
        v.read_bytes, v.write_bytes, v.max_latency = self.read_bytes, self.write_bytes, self.max_latency
        return v

    def all_ops(self, which: str = "service") -> OpStats:
        """Every operation's latencies merged into one OpStats (a new one)."""
        out = OpStats()
        for s in (self.intended if which == "intended" else self.ops).values():
            out.merge(s)
        return out

    def merge(self, other: "PhaseStats") -> None:
        for name, s in other.ops.items():
            self.op(name).merge(s)
        for name, s in other.intended.items():
            self.intended_op(name).merge(s)
        self.lag.merge(other.lag)
        self.read_bytes += other.read_bytes
        self.write_bytes += other.write_bytes
        if other.max_latency > self.max_latency:
            self.max_latency = other.max_latency

    def empty(self) -> bool:
        return not self.ops and not self.read_bytes and not self.write_bytes

    def __getstate__(self):
        return (self.ops, self.read_bytes, self.write_bytes, self.max_latency, self.intended, self.lag)

    def __setstate__(self, st):
        self.ops, self.read_bytes, self.write_bytes, self.max_latency = st[:4]
        self.intended, self.lag = (st[4], st[5]) if len(st) > 4 else ({}, OpStats())
