"""RPC and svc metrics of the server (names, labels and units: README, section Metrics).

One ServerMetrics per server, registered on the registry it is given (tests
pass their own CollectorRegistry). Children with fixed labels (the strategy,
each procedure) are resolved once and kept, so the per-request cost is the
observe/inc calls themselves. prometheus_client metrics are thread-safe; the
workers update them concurrently.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.registry import CollectorRegistry

from alloc.metrics import AllocatorCollector

#: allocator-level timings: 250 ns doubling, 20 buckets (to ~131 ms)
ALLOC_BUCKETS = tuple(250e-9 * 2 ** i for i in range(20))
#: RPC and client latencies: 25 us doubling up to ~13 s
RPC_BUCKETS = tuple(25e-6 * 2 ** i for i in range(20))
#: pages refilled per svc_alloc_arg call
PAGE_BUCKETS = (0, 1, 2, 4, 8, 16, 32, 64, 128, 259)


class ServerMetrics:
    def __init__(self, registry: CollectorRegistry, strategy: str, version: str, allocator=None):
        r = registry
        self.strategy = strategy
        Gauge("nfsbulk_build_info", "What is running: version and svc_alloc_arg strategy.",
              ["version", "strategy"], registry=r).labels(version, strategy).set(1)
        self.alloc_seconds = Histogram(
            "nfsbulk_svc_alloc_arg_seconds", "Time of one svc_alloc_arg call (refilling the request's page array).",
            ["strategy"], buckets=ALLOC_BUCKETS, registry=r).labels(strategy)
        self.alloc_pages = Histogram(
            "nfsbulk_svc_alloc_arg_pages", "Pages refilled by one svc_alloc_arg call (the holes).",
            ["strategy"], buckets=PAGE_BUCKETS, registry=r).labels(strategy)
        self.alloc_waits = Counter(
            "nfsbulk_svc_alloc_arg_waits", "svc_alloc_arg calls that made no progress and waited for memory.",
            ["strategy"], registry=r).labels(strategy)
        self.alloc_stalls = Counter(
            "nfsbulk_svc_alloc_arg_stalls", "Times a worker gave its pages back after waiting without progress "
            "(overcommitted arena).", ["strategy"], registry=r).labels(strategy)
        self._requests = Counter(
            "nfsbulk_rpc_requests", "RPC calls handled, by program, version, procedure and status.",
            ["program", "version", "procedure", "status"], registry=r)
        self._duration = Histogram(
            "nfsbulk_rpc_request_duration_seconds", "From record received to reply sent.",
            ["program", "procedure"], buckets=RPC_BUCKETS, registry=r)
        self.queue_wait = Histogram(
            "nfsbulk_rpc_queue_wait_seconds", "From data ready on a connection to a worker picking it up.",
            buckets=RPC_BUCKETS, registry=r)
        self._errors = Counter("nfsbulk_rpc_errors", "RPC-level errors by reason.", ["reason"], registry=r)
        self.in_flight = Gauge("nfsbulk_rpc_in_flight", "Requests being processed.", registry=r)
        self.connections = Gauge("nfsbulk_connections", "Open client connections.", registry=r)
        self.read_bytes = Counter("nfsbulk_nfs_read_bytes", "NFS READ payload bytes sent.", registry=r)
        self.write_bytes = Counter("nfsbulk_nfs_write_bytes", "NFS WRITE payload bytes received.", registry=r)
        self._drc = Counter("nfsbulk_rpc_drc", "Duplicate request cache lookups for non-idempotent calls.",
                            ["result"], registry=r)
        self.drc_hit = self._drc.labels("hit")
        self.drc_miss = self._drc.labels("miss")
        self.drc_in_progress = self._drc.labels("in_progress")
        self._req_children = {}
        self._dur_children = {}
        self._err_children = {}
        if allocator is not None:
            AllocatorCollector(allocator).register(r)

    def request(self, program: str, version: int, procedure: str, status: str, seconds: float) -> None:
        key = (program, version, procedure, status)
        c = self._req_children.get(key)
        if c is None:
            c = self._req_children[key] = self._requests.labels(program, str(version), procedure, status)
        c.inc()
        key2 = (program, procedure)
        h = self._dur_children.get(key2)
        if h is None:
            h = self._dur_children[key2] = self._duration.labels(program, procedure)
        h.observe(seconds)

    def error(self, reason: str) -> None:
        c = self._err_children.get(reason)
        if c is None:
            c = self._err_children[reason] = self._errors.labels(reason)
        c.inc()

    def svc_alloc_arg(self, ns: int, pages: int, waits: int) -> None:
        self.alloc_seconds.observe(ns * 1e-9)
        self.alloc_pages.observe(pages)
        if waits:
            self.alloc_waits.inc(waits)
