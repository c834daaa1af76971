"""Prometheus collector for page pools: reads each pool's stats() at scrape time.

The pool's hot path only does plain C increments; this runs when Prometheus
scrapes. Pools of the same strategy are summed (one pool per receive queue).

    PoolCollector(lambda: pools).register(registry)

Names (prefix nfsbulk_pool_, label strategy = single | list | array):
  nfsbulk_pool_alloc_fast_total              pages served from the cache (incl. after a ring refill)
  nfsbulk_pool_alloc_slow_total              slow-path calls (refills from the allocator)
  nfsbulk_pool_alloc_empty_total             slow-path calls that got no page (packet dropped)
  nfsbulk_pool_ring_refills_total            cache refills from the recycle ring
  nfsbulk_pool_pages_from_allocator_total    pages obtained from the page allocator
  nfsbulk_pool_recycled_total{path}          pages recycled, path = cache | ring
  nfsbulk_pool_ring_full_total               recycles that found the ring full (page released)
  nfsbulk_pool_released_total                pages returned to the page allocator
  nfsbulk_pool_cache_pages / _ring_pages / _inflight_pages   gauges
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry, REGISTRY

__all__ = ["PoolCollector", "sum_stats"]

_COUNTERS = ("alloc_fast", "alloc_slow", "alloc_slow_empty", "ring_refills", "pages_from_allocator",
             "recycled_direct", "recycled_ring", "ring_full", "released")
_GAUGES = ("cache_pages", "ring_pages_now", "inflight")


def sum_stats(pools) -> dict:
    """{strategy: summed stats} over pools."""
    out = {}
    for p in pools:
        s = p.stats()
        acc = out.setdefault(s["strategy"], dict.fromkeys(_COUNTERS + _GAUGES, 0))
        for k in _COUNTERS + _GAUGES:
            acc[k] += s[k]
    return out


class PoolCollector(Collector):
    """Exposes pools' counters; `pools` is a callable returning the current pools (each with stats())."""

    def __init__(self, pools):
        self.pools = pools

    def register(self, registry: CollectorRegistry = REGISTRY) -> "PoolCollector":
        registry.register(self)
        return self

    def describe(self):
        return list(self._families({}))

    def collect(self):
        return self._families(sum_stats(self.pools()))

    @staticmethod
    def _families(by_strategy: dict):
        P = "nfsbulk_pool_"
        c = lambda n, h, extra=(): CounterMetricFamily(P + n, h, labels=["strategy", *extra])  # noqa: E731
        g = lambda n, h: GaugeMetricFamily(P + n, h, labels=["strategy"])  # noqa: E731
        fast = c("alloc_fast", "Pages served from the pool's cache (the fast path).")
        slow = c("alloc_slow", "Slow-path calls: cache and ring empty, refill from the page allocator.")
        empty = c("alloc_empty", "Slow-path calls that got no page from the allocator (packet dropped).")
        ringref = c("ring_refills", "Cache refills from the recycle ring (up to 64 pages each).")
        pages = c("pages_from_allocator", "Pages the pool obtained from the page allocator.")
        recycled = c("recycled", "Pages recycled into the pool, by path (cache: direct, ring: ptr_ring).",
                     ("path",))
        full = c("ring_full", "Recycles that found the ring full; the page went back to the allocator.")
        released = c("released", "Pages the pool returned to the page allocator.")
        cache = g("cache_pages", "Pages in the pool's alloc cache.")
        ring = g("ring_pages", "Pages in the pool's recycle ring.")
        inflight = g("inflight_pages", "Pages handed out by the pool and not yet returned.")
        for strat, s in by_strategy.items():
            fast.add_metric([strat], s["alloc_fast"])
            slow.add_metric([strat], s["alloc_slow"])
            empty.add_metric([strat], s["alloc_slow_empty"])
            ringref.add_metric([strat], s["ring_refills"])
            pages.add_metric([strat], s["pages_from_allocator"])
            recycled.add_metric([strat, "cache"], s["recycled_direct"])
            recycled.add_metric([strat, "ring"], s["recycled_ring"])
            full.add_metric([strat], s["ring_full"])
            released.add_metric([strat], s["released"])
            cache.add_metric([strat], s["cache_pages"])
            ring.add_metric([strat], s["ring_pages_now"])
            inflight.add_metric([strat], s["inflight"])
        return [fast, slow, empty, ringref, pages, recycled, full, released, cache, ring, inflight]
