"""The allocator collector: names and labels of metrics.md, values equal to stats(), valid exposition."""
import shutil
import subprocess

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from alloc import _core
from alloc.metrics import AllocatorCollector


def scrape(registry):
    text = generate_latest(registry).decode()
    samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return text, samples


def test_collector_reports_stats_at_scrape_time():
    a = _core.Allocator(arena_pages=2048)
    reg = CollectorRegistry()
    AllocatorCollector(a).register(reg)
    arr, lst = a.page_array(), a.page_list()
    a.alloc_pages_bulk_array(259, arr)
    a.alloc_pages_bulk_list(10, lst)
    p = a.alloc_page()
    a.free_page(p)
    _, m = scrape(reg)
    s = a.stats()
    assert m[("nfsbulk_alloc_calls_total", (("api", "bulk_array"),))] == 1
    assert m[("nfsbulk_alloc_calls_total", (("api", "single"),))] == s["calls"]["single"]
    assert m[("nfsbulk_alloc_pages_total", (("api", "bulk_array"), ("zone", "Normal")))] == 259
    assert m[("nfsbulk_alloc_freed_pages_total", (("zone", "Normal"),))] == 1
    for zone, z in s["zones"].items():
        assert m[("nfsbulk_alloc_free_pages", (("zone", zone),))] == z["free"]
        assert m[("nfsbulk_alloc_pcp_pages", (("zone", zone),))] == z["pcp"]
        assert m[("nfsbulk_alloc_managed_pages", (("zone", zone),))] == z["managed"]
        for mark in ("min", "low", "high"):
            assert m[("nfsbulk_alloc_watermark_pages", (("mark", mark), ("zone", zone)))] == z["watermarks"][mark]
        assert m[("nfsbulk_alloc_pcp_refills_total", (("zone", zone),))] == z["pcp_refills"]
        assert m[("nfsbulk_alloc_pcp_drains_total", (("zone", zone),))] == z["pcp_drains"]
    for reason in ("last_page", "watermark", "pcp_empty"):
        assert ("nfsbulk_alloc_bulk_fallbacks_total", (("reason", reason),)) in m
    for api in ("single", "bulk_list", "bulk_array"):
        assert ("nfsbulk_alloc_failures_total", (("api", api),)) in m
    # values move between scrapes: read at scrape time, not cached
    a.free_pages_bulk(arr)
    _, m2 = scrape(reg)
    assert m2[("nfsbulk_alloc_freed_pages_total", (("zone", "Normal"),))] == 260
    a.free_pages_bulk(lst)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus) not installed")
def test_exposition_passes_promtool():
    a = _core.Allocator(arena_pages=2048)
    reg = CollectorRegistry()
    AllocatorCollector(a).register(reg)
    text, _ = scrape(reg)
    r = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
