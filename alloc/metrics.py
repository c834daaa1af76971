"""Prometheus collector for an Allocator: reads one stats() snapshot per scrape.

The hot path only does plain C increments; nothing here runs until Prometheus
scrapes (prometheus_client's gc_collector pattern). Register it on your own
CollectorRegistry (tests) or the default one (the server):

    AllocatorCollector(allocator).register(registry)

Names, labels and units follow shared/design/metrics.md (prefix nfsbulk_alloc_).
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry, REGISTRY

__all__ = ["AllocatorCollector"]


class AllocatorCollector(Collector):
    """Exposes an allocator's counters and gauges; `allocator` needs only a stats() method."""

    def __init__(self, allocator):
        self.allocator = allocator

    def register(self, registry: CollectorRegistry = REGISTRY) -> "AllocatorCollector":
        registry.register(self)
        return self

    def describe(self):
        # Names are fixed: let the registry check collisions without a scrape.
        return list(self._families({}, describe=True))

    def collect(self):
        return self._families(self.allocator.stats())

    @staticmethod
    def _families(s: dict, describe: bool = False):
        P = "nfsbulk_alloc_"
        calls = CounterMetricFamily(P + "calls", "Allocator calls by API (bulk calls with work to do).",
                                    labels=["api"])
        pages = CounterMetricFamily(P + "pages", "Pages handed out, by zone and API.", labels=["zone", "api"])
        fallbacks = CounterMetricFamily(P + "bulk_fallbacks",
                                        "Bulk calls that took the single-page path, by reason.",
                                        labels=["reason"])
        failures = CounterMetricFamily(P + "failures", "Calls that returned no page at all, by API.",
                                       labels=["api"])
        freed = CounterMetricFamily(P + "freed_pages", "Pages returned to the allocator, by zone.",
                                    labels=["zone"])
        refills = CounterMetricFamily(P + "pcp_refills",
                                      "Per-thread list refills from the buddy lists (batch transfers).",
                                      labels=["zone"])
        drains = CounterMetricFamily(P + "pcp_drains",
                                     "Per-thread list drains to the buddy lists (batch transfers).",
                                     labels=["zone"])
        slowpath = CounterMetricFamily(P + "slowpath",
                                       "Single-page allocations that missed the LOW watermark in every zone.")
        drain_all = CounterMetricFamily(P + "drain_all",
                                        "Times a thread drained every per-thread list to reclaim pages.")
        free_pages = GaugeMetricFamily(P + "free_pages", "Pages on the buddy free lists.", labels=["zone"])
        pcp_pages = GaugeMetricFamily(P + "pcp_pages", "Pages held on per-thread lists.", labels=["zone"])
        managed = GaugeMetricFamily(P + "managed_pages", "Pages the zone manages.", labels=["zone"])
        wmark = GaugeMetricFamily(P + "watermark_pages", "Zone watermarks in pages.", labels=["zone", "mark"])
        blocks = GaugeMetricFamily(P + "free_blocks", "Free buddy blocks by zone and order.",
                                   labels=["zone", "order"])
        allocated = GaugeMetricFamily(P + "allocated_pages", "Pages currently handed out.")
        threads = GaugeMetricFamily(P + "threads", "Threads with their own per-thread lists.")
        fams = [calls, pages, fallbacks, failures, freed, refills, drains, slowpath, drain_all,
                free_pages, pcp_pages, managed, wmark, blocks, allocated, threads]
        if describe:
            return fams
        for api, v in s["calls"].items():
            calls.add_metric([api], v)
            failures.add_metric([api], s["failures"][api])
        for reason, v in s["fallbacks"].items():
            fallbacks.add_metric([reason], v)
        for zone, z in s["zones"].items():
            for api, v in z["pages_alloc"].items():
                pages.add_metric([zone, api], v)
            freed.add_metric([zone], z["freed"])
            refills.add_metric([zone], z["pcp_refills"])
            drains.add_metric([zone], z["pcp_drains"])
            free_pages.add_metric([zone], z["free"])
            pcp_pages.add_metric([zone], z["pcp"])
            managed.add_metric([zone], z["managed"])
            for mark, v in z["watermarks"].items():
                wmark.add_metric([zone, mark], v)
            for order, v in enumerate(z["free_blocks_by_order"]):
                blocks.add_metric([zone, str(order)], v)
        slowpath.add_metric([], s["slowpath"])
        drain_all.add_metric([], s["drain_all"])
        allocated.add_metric([], s["allocated"])
        threads.add_metric([], s["threads"])
        return fams
