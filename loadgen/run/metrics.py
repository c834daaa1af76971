"""/metrics for a loadgen run, correct across client processes.

Design: the clients never touch prometheus_client.  They ship counter and
histogram *deltas* to the parent over their pipes (see client.py); the parent
merges them into :class:`Totals` and this collector renders a snapshot at
scrape time (the hot path counts, the scrape
exposes).  So there is no multiprocess-mode directory to manage and a dead
client cannot leave stale files; what a client did before dying is kept.

Metrics (docs/metrics.md): nfsbulk_loadgen_ops_total{op,status},
nfsbulk_loadgen_op_duration_seconds{op} (buckets 25us doubling to ~13.1 s),
nfsbulk_loadgen_bytes_total{direction}, nfsbulk_loadgen_clients; in an
open-loop run (--rate) also nfsbulk_loadgen_open_loop_latency_seconds{op}
(from the intended start), nfsbulk_loadgen_schedule_lag_seconds and
nfsbulk_loadgen_offered_rate_ops_per_second.  They count
warmup and run phases alike (counters are monotonic); the table and --json
report the run phase only.  A private CollectorRegistry is used, never the
global one.
"""
from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, disable_created_metrics, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from .stats import BOUNDS, STATUSES, PhaseStats

__all__ = ["Totals", "LoadgenCollector", "serve"]


class Totals:
    """All phases merged; updated by the runner thread, read by scrapes."""

    def __init__(self):
        self.lock = threading.Lock()
        self.stats = PhaseStats()
        self.clients = 0
        self.rate: float | None = None      # --rate: the open-loop families are exported

    def merge(self, delta: PhaseStats) -> None:
        with self.lock:
            self.stats.merge(delta)

    def set_clients(self, n: int) -> None:
        with self.lock:
            self.clients = n


def _fmt_bound(b: float) -> str:
    return repr(float(b))


def _cumulative(buckets) -> list:
    cum, acc = [], 0
    for b, n in zip(BOUNDS, buckets):
        acc += n
        cum.append((_fmt_bound(b), acc))
    acc += buckets[-1]
    cum.append(("+Inf", acc))
    return cum


class LoadgenCollector:
    def __init__(self, totals: Totals):
        self.totals = totals

    def collect(self):
        t = self.totals
        with t.lock:
            ops = {name: (s.ok, s.error, s.unexpected, s.sum, list(s.buckets))
                   for name, s in t.stats.ops.items()}
            rbytes, wbytes, clients = t.stats.read_bytes, t.stats.write_bytes, t.clients
            rate = t.rate
            intended = {name: (s.sum, list(s.buckets)) for name, s in t.stats.intended.items()}
            lag = (t.stats.lag.sum, list(t.stats.lag.buckets))
        c = CounterMetricFamily("nfsbulk_loadgen_ops", "loadfile operations executed",
                                labels=["op", "status"])
        h = HistogramMetricFamily("nfsbulk_loadgen_op_duration_seconds",
                                  "client-side latency per operation", labels=["op"])
        for name in sorted(ops):
            ok, err, unexp, total, buckets = ops[name]
            for status, n in zip(STATUSES, (ok, err, unexp)):
                c.add_metric([name, status], n)
            h.add_metric([name], _cumulative(buckets), total)
        yield c
        yield h
        if rate is not None:
            oh = HistogramMetricFamily("nfsbulk_loadgen_open_loop_latency_seconds",
                                       "open loop: latency per operation from its intended start "
                                       "(corrected for coordinated omission)", labels=["op"])
            for name in sorted(intended):
                total, buckets = intended[name]
                oh.add_metric([name], _cumulative(buckets), total)
            yield oh
            lh = HistogramMetricFamily("nfsbulk_loadgen_schedule_lag_seconds",
                                       "open loop: actual start minus intended start of each operation")
            lh.add_metric([], _cumulative(lag[1]), lag[0])
            yield lh
            r = GaugeMetricFamily("nfsbulk_loadgen_offered_rate_ops_per_second",
                                  "open loop: the schedule's rate (--rate), all clients")
            r.add_metric([], rate)
            yield r
        b = CounterMetricFamily("nfsbulk_loadgen_bytes", "payload bytes", labels=["direction"])
        b.add_metric(["read"], rbytes)
        b.add_metric(["write"], wbytes)
        yield b
        g = GaugeMetricFamily("nfsbulk_loadgen_clients", "client processes running")
        g.add_metric([], clients)
        yield g


def serve(totals: Totals, port: int, addr: str = "127.0.0.1"):
    """Start the HTTP endpoint in a daemon thread (port 0: a free one); returns (registry,
    (http server, thread)); the bound port is http server.server_address[1].
    Raises OSError when the port cannot be bound."""
    disable_created_metrics()       # the custom collector makes none; nothing else in the process may
    reg = CollectorRegistry(auto_describe=False)
    reg.register(LoadgenCollector(totals))
    res = start_http_server(port, addr=addr, registry=reg)
    return reg, res
