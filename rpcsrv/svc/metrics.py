"""RPC and svc metrics of the server (names, labels and units: README, section Metrics).

One ServerMetrics per server, registered on the registry it is given (tests pass their own
CollectorRegistry). It is a collector: the Python path counts into small accumulators here (each
behind one lock, as prometheus_client's own metrics are), the compiled fast path counts in C
(rpcsrv.fast), and collect() adds both up at scrape time, so every family is exposed once with the
same names and meaning whichever path served a call. Sources of compiled counters are callables
added with add_source(); each returns a snapshot dict (see FastPath.metrics_snapshot).
No _created series: nothing here makes them (and rpcsrv switches prometheus_client's off).

Connection ends are accounted by closed(reason): a client that goes away between records (EOF or a
reset), a connection closed for idleness, one refused at accept for --max-connections are ordinary
events, counted in nfsbulk_rpc_disconnects_total{reason} (DISCONNECTS); every other reason (a bad
record, a record cut short, a send that failed, ...) is a fault, in nfsbulk_rpc_errors_total{reason}.
"""

from __future__ import annotations

import bisect
import threading

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import CollectorRegistry
from prometheus_client.utils import floatToGoString

from alloc.metrics import AllocatorCollector

#: svc_alloc_arg timings: the Renard R20 series (twenty bounds a decade, neighbours at most 1.143x
#: apart) from 10 ns to 100 ms, so that two calls more than 1.15x apart never share a bucket and the
#: strategies' distributions separate (range's one-hole calls take about 100 ns, array's 32-hole
#: ones 0.5 us). Held in tenths of a nanosecond (12.5 ns is 125) so that a duration in whole ns
#: compares exactly; rpcsrv.fast counts into the same bounds (fp_tables.h's fp_alloc_bounds_dns,
#: generated from this by rpcsrv/fast/gen_tables.py, as are RPC_BUCKETS and PAGE_BUCKETS;
#: tests/fast/test_metrics_buckets.py and test_tables.py hold them equal)
_R20 = (100, 112, 125, 140, 160, 180, 200, 224, 250, 280, 315, 355, 400, 450, 500, 560, 630, 710, 800, 900)
ALLOC_BOUNDS_DNS = tuple(m * 10 ** e for e in range(7) for m in _R20) + (1_000_000_000,)
ALLOC_BUCKETS = tuple(d / 1e10 for d in ALLOC_BOUNDS_DNS)
#: RPC and client latencies: 25 us doubling up to ~13 s
RPC_BUCKETS = tuple(25e-6 * 2 ** i for i in range(20))
#: pages refilled, and slots visited, per svc_alloc_arg call (arrays of up to 1028 slots)
PAGE_BUCKETS = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


#: connection-end reasons (as rpcsrv.xprt.tcp and rpcsrv.fast name them) that are disconnects, not
#: errors, and their label in nfsbulk_rpc_disconnects_total
DISCONNECTS = {"eof": "eof", "reset": "reset", "idle_timeout": "idle", "too_many_connections": "limit",
               "evicted": "evicted"}


class _Value:
    """A counter or gauge: inc(), dec(), set(), get(); thread-safe."""

    __slots__ = ("_v", "_lock")

    def __init__(self):
        self._v = 0
        self._lock = threading.Lock()

    def inc(self, n=1):
        with self._lock:
            self._v += n

    def dec(self, n=1):
        with self._lock:
            self._v -= n

    def set(self, v):
        with self._lock:
            self._v = v

    def get(self):
        return self._v


class _Hist:
    """A histogram: per-bucket counts (the last is +Inf) and the sum; thread-safe. Values are
    observed in the bounds' unit; `unit` is that unit in seconds (or 1 for counts), for exposing
    the sum."""

    __slots__ = ("bounds", "counts", "sum", "unit", "_lock")

    def __init__(self, bounds, unit=1.0):
        self.bounds = bounds
        self.unit = unit
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self._lock = threading.Lock()

    def observe(self, v):
        i = bisect.bisect_left(self.bounds, v)
        with self._lock:
            self.counts[i] += 1
            self.sum += v


def _family_hist(name, doc, labels, bounds):
    return HistogramMetricFamily(name, doc, labels=labels), [floatToGoString(b) for b in bounds] + ["+Inf"]


def _buckets(les, counts):
    out, acc = [], 0
    for le, c in zip(les, counts):
        acc += c
        out.append((le, acc))
    return out


class ServerMetrics:
    """The server's svc and RPC metrics (see the module doc)."""

    def __init__(self, registry: CollectorRegistry, strategy: str, version: str, allocator=None):
        self.strategy = strategy
        self.version = version
        self._lock = threading.Lock()
        self._requests = {}          # (program, version, procedure, status) -> count
        self._durations = {}         # (program, procedure) -> _Hist
        self._errors = {}            # reason -> count
        self._disconnects = {label: 0 for label in DISCONNECTS.values()}
        self._accept_errors = {}     # (listener, errno label) -> count (every listener: xprt.tcp.AcceptBackoff)
        self.alloc_seconds = _Hist(ALLOC_BOUNDS_DNS, 1e-10)     # observed in tenths of a ns
        self.alloc_pages = _Hist(PAGE_BUCKETS)
        self.alloc_scanned = _Hist(PAGE_BUCKETS)
        self.alloc_waits = _Value()
        self.alloc_stalls = _Value()
        self.queue_wait = _Hist(RPC_BUCKETS)
        self.in_flight = _Value()
        self.connections = _Value()
        self.read_bytes = _Value()
        self.write_bytes = _Value()
        self.drc_hit = _Value()
        self.drc_miss = _Value()
        self.drc_in_progress = _Value()
        self._sources = []
        self._containment = []       # (path label, stats callable): export.contain / rpcsrv.fast
        registry.register(self)
        if allocator is not None:
            AllocatorCollector(allocator).register(registry)

    def add_source(self, snapshot) -> None:
        """A callable returning the compiled path's counters (FastPath.metrics_snapshot)."""
        self._sources.append(snapshot)

    def add_containment(self, path: str, stats) -> None:
        """A callable returning one request path's containment counters (Containment.stats, or
        FastServer.proof_stats) under the label path=`path`."""
        self._containment.append((path, stats))

    # -- the Python path counts ------------------------------------------------------------------
    def request(self, program: str, version: int, procedure: str, status: str, seconds: float) -> None:
        key = (program, str(version), procedure, status)
        with self._lock:
            self._requests[key] = self._requests.get(key, 0) + 1
            h = self._durations.get((program, procedure))
            if h is None:
                h = self._durations[(program, procedure)] = _Hist(RPC_BUCKETS)
        h.observe(seconds)

    def error(self, reason: str) -> None:
        with self._lock:
            self._errors[reason] = self._errors.get(reason, 0) + 1

    def closed(self, reason: str | None) -> None:
        """A connection ended (or was refused) for `reason`: a disconnect or an error (module doc)."""
        if reason is None:
            return
        label = DISCONNECTS.get(reason)
        if label is None:
            self.error(reason)
            return
        with self._lock:
            self._disconnects[label] += 1

    def accept_error(self, label: str, listener: str = "rpc") -> None:
        """accept() failed with errno `label` (e.g. "emfile") on `listener` ("rpc": NFS and MOUNT,
        both paths; "metrics": the /metrics endpoint); xprt.tcp.AcceptBackoff."""
        key = (listener, label)
        with self._lock:
            self._accept_errors[key] = self._accept_errors.get(key, 0) + 1

    def metrics_accept_error(self, label: str) -> None:
        """accept_error for the /metrics listener (xprt.metrics_http)."""
        self.accept_error(label, "metrics")

    def accept_error_count(self, label: str, listener: str = "rpc") -> int:
        return self._accept_errors.get((listener, label), 0)

    def disconnect_count(self, label: str) -> int:
        """Disconnects of one label (eof, reset, idle, limit) so far (tests)."""
        return self._disconnects.get(label, 0)

    def error_count(self, reason: str) -> int:
        """Errors of one reason so far, both paths (tests)."""
        n = self._errors.get(reason, 0)
        for snap in self._snapshots():
            n += snap["errors"].get(reason, 0)
        return n

    def svc_alloc_arg(self, ns: int, pages: int, waits: int, scanned: int = 0) -> None:
        self.alloc_seconds.observe(ns * 10)
        self.alloc_pages.observe(pages)
        self.alloc_scanned.observe(scanned)
        if waits:
            self.alloc_waits.inc(waits)

    # -- scrape ------------------------------------------------------------------------------------
    def _snapshots(self):
        return [s for src in self._sources for s in src()]

    def describe(self):
        return []

    def collect(self):
        snaps = self._snapshots()
        s = self.strategy
        info = GaugeMetricFamily("nfsbulk_build_info", "What is running: version and svc_alloc_arg strategy.",
                                 labels=["version", "strategy"])
        info.add_metric([self.version, s], 1)
        yield info
        for name, doc, bounds, hist, key in (
                ("nfsbulk_svc_alloc_arg_seconds", "Time of one svc_alloc_arg call (refilling the request's page "
                 "array).", ALLOC_BUCKETS, self.alloc_seconds, "alloc"),
                ("nfsbulk_svc_alloc_arg_pages", "Pages refilled by one svc_alloc_arg call (the holes).",
                 PAGE_BUCKETS, self.alloc_pages, "pages"),
                ("nfsbulk_svc_alloc_arg_slots_scanned", "Page-array slots one svc_alloc_arg call visited (every "
                 "slot for single, list and array; the holes' windows for range and nfree).",
                 PAGE_BUCKETS, self.alloc_scanned, "scanned")):
            fam, les = _family_hist(name, doc, ["strategy"], bounds)
            counts, total = list(hist.counts), hist.sum * hist.unit
            for sn in snaps:                    # the fast workers' own histograms, added in
                counts = [a + b for a, b in zip(counts, sn[key])]
                total += sn[key + "_sum"]
            fam.add_metric([s], _buckets(les, counts), total)
            yield fam
        for name, doc, value, key in (
                ("nfsbulk_svc_alloc_arg_waits", "svc_alloc_arg calls that made no progress and waited for memory.",
                 self.alloc_waits.get(), "waits"),
                ("nfsbulk_svc_alloc_arg_stalls", "Times a worker gave its pages back after waiting without "
                 "progress (overcommitted arena).", self.alloc_stalls.get(), "stalls")):
            fam = CounterMetricFamily(name, doc, labels=["strategy"])
            fam.add_metric([s], value + sum(sn[key] for sn in snaps))
            yield fam
        yield from self._collect_rpc(snaps)
        yield from self._collect_containment()

    def _collect_containment(self):
        stats = [(path, fn()) for path, fn in self._containment]
        if not stats:
            return
        fam = CounterMetricFamily("nfsbulk_containment_checks", "Handles proven inside the export when used, by "
                                  "request path and how: kept (a proof no event had ended), walked (a '..' walk or "
                                  "a link search), outside (found outside: STALE), raced (a walk a local rename "
                                  "raced, run again).", labels=["path", "result"])
        for path, st in stats:
            for result, key in (("kept", "hits"), ("walked", "walks"), ("linked", "links"), ("outside", "outside"),
                                ("raced", "raced")):
                fam.add_metric([path, result], st[key])
        yield fam
        for name, doc, key in (
                ("nfsbulk_containment_walk_steps", "'..' steps walked to prove directories.", "steps"),
                ("nfsbulk_containment_scans", "Parent directories scanned for a file's inode (its dentry was "
                 "evicted).", "scans"),
                ("nfsbulk_containment_proofs_ended", "Kept proofs ended by an inotify event (a rename, a link "
                 "change, a removal).", "ended"),
                ("nfsbulk_containment_epochs", "Times every directory proof ended at once (a proven directory "
                 "moved, the event queue overflowed, a proven directory was evicted).", "epochs")):
            fam = CounterMetricFamily(name, doc, labels=["path"])
            for path, st in stats:
                fam.add_metric([path], st[key])
            yield fam
        fam = GaugeMetricFamily("nfsbulk_containment_watched", "Objects watched for containment (inotify "
                                "watches), and of them those whose proof holds now.", labels=["path", "state"])
        for path, st in stats:
            fam.add_metric([path, "watched"], st["entries"])
            fam.add_metric([path, "proven"], st["proven"])
        yield fam

    def _collect_rpc(self, snaps):
        requests, durations, errors = dict(self._requests), {}, dict(self._errors)
        for k, h in list(self._durations.items()):
            durations[k] = (list(h.counts), h.sum)
        for sn in snaps:
            for k, v in sn["requests"].items():
                requests[k] = requests.get(k, 0) + v
            for k, (counts, total) in sn["durations"].items():
                c0, t0 = durations.get(k, ([0] * (len(RPC_BUCKETS) + 1), 0.0))
                durations[k] = ([a + b for a, b in zip(c0, counts)], t0 + total)
            for k, v in sn["errors"].items():
                errors[k] = errors.get(k, 0) + v
        fam = CounterMetricFamily("nfsbulk_rpc_requests", "RPC calls handled, by program, version, procedure "
                                  "and status.", labels=["program", "version", "procedure", "status"])
        for k, v in sorted(requests.items()):
            fam.add_metric(list(k), v)
        yield fam
        fam, les = _family_hist("nfsbulk_rpc_request_duration_seconds", "From record received to reply sent.",
                                ["program", "procedure"], RPC_BUCKETS)
        for k, (counts, total) in sorted(durations.items()):
            fam.add_metric(list(k), _buckets(les, counts), total)
        yield fam
        fam, les = _family_hist("nfsbulk_rpc_queue_wait_seconds", "From data ready on a connection to a worker "
                                "picking it up.", [], RPC_BUCKETS)
        counts, total = list(self.queue_wait.counts), self.queue_wait.sum
        for sn in snaps:
            counts = [a + b for a, b in zip(counts, sn["queue"])]
            total += sn["queue_sum"]
        fam.add_metric([], _buckets(les, counts), total)
        yield fam
        fam = CounterMetricFamily("nfsbulk_rpc_errors", "RPC-level errors by reason.", labels=["reason"])
        for k, v in sorted(errors.items()):
            fam.add_metric([k], v)
        yield fam
        fam = CounterMetricFamily("nfsbulk_rpc_disconnects", "Client connections that ended, by reason: eof and "
                                  "reset (the client went away between records), idle (closed after "
                                  "--idle-timeout), limit (refused: --max-connections, all being served), "
                                  "evicted (closed at the limit to let a newcomer in). Not errors.",
                                  labels=["reason"])
        with self._lock:
            disconnects = dict(self._disconnects)
        for k, v in sorted(disconnects.items()):
            fam.add_metric([k], v)
        yield fam
        fam = CounterMetricFamily("nfsbulk_rpc_accept_errors", "accept() failures by errno (emfile, enfile, "
                                  "enobufs, enomem: the listener rests, doubling from 50 ms to 1 s) and "
                                  "listener (rpc: NFS and MOUNT; metrics: this endpoint).",
                                  labels=["listener", "errno"])
        with self._lock:
            accept_errors = dict(self._accept_errors)
        for (listener, label), v in sorted(accept_errors.items()):
            fam.add_metric([listener, label], v)
        yield fam
        fam = GaugeMetricFamily("nfsbulk_rpc_in_flight", "Requests being processed.")
        fam.add_metric([], self.in_flight.get() + sum(sn["in_flight"] for sn in snaps))
        yield fam
        fam = GaugeMetricFamily("nfsbulk_connections", "Open client connections.")
        fam.add_metric([], self.connections.get())
        yield fam
        for name, doc, v, key in (("nfsbulk_nfs_read_bytes", "NFS READ payload bytes sent.", self.read_bytes, "read_bytes"),
                                  ("nfsbulk_nfs_write_bytes", "NFS WRITE payload bytes received.", self.write_bytes,
                                   "write_bytes")):
            fam = CounterMetricFamily(name, doc)
            fam.add_metric([], v.get() + sum(sn[key] for sn in snaps))
            yield fam
        fam = CounterMetricFamily("nfsbulk_rpc_drc", "Duplicate request cache lookups for non-idempotent calls.",
                                  labels=["result"])
        for label, v in (("hit", self.drc_hit), ("miss", self.drc_miss), ("in_progress", self.drc_in_progress)):
            fam.add_metric([label], v.get() + sum(sn["drc"][label] for sn in snaps))
        yield fam
        if snaps:
            fam = CounterMetricFamily("nfsbulk_rpc_fallbacks", "Calls the compiled fast path handed to the "
                                      "Python path, by procedure.", labels=["procedure"])
            fb = {}
            for sn in snaps:
                for k, v in sn["fallbacks"].items():
                    fb[k] = fb.get(k, 0) + v
            for k, v in sorted(fb.items()):
                fam.add_metric([k], v)
            yield fam
