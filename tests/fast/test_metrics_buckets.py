"""svc_alloc_arg's histogram: the compiled path counts into the Python path's bounds.

rpcsrv.svc.metrics.ALLOC_BUCKETS_NS (the Python path's bisect, and the `le` labels) and
fp_stats.h's fp_alloc_bounds_ns (the fast workers' bisection) are two copies of one table; these
tests hold them equal, the C bucket index to Python's for any duration, and a live server on
either request path to exposing exactly those buckets with every call counted once."""
from __future__ import annotations

import bisect
import urllib.request

import pytest
from hypothesis import given, settings, strategies as st
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from nfsbulk_testlib import ServerProcess, make_tree
from rpcsrv.fast import _fast
from rpcsrv.svc.metrics import ALLOC_BUCKETS, ALLOC_BUCKETS_NS


def test_c_bounds_are_the_python_bounds():
    assert _fast.ALLOC_BOUNDS_NS == ALLOC_BUCKETS_NS
    assert tuple(ns / 1e9 for ns in _fast.ALLOC_BOUNDS_NS) == ALLOC_BUCKETS


def test_bounds_span_100ns_to_100ms_twenty_a_decade():
    assert ALLOC_BUCKETS_NS[0] == 100 and ALLOC_BUCKETS_NS[-1] == 100_000_000 and len(ALLOC_BUCKETS_NS) == 121
    assert max(b / a for a, b in zip(ALLOC_BUCKETS_NS, ALLOC_BUCKETS_NS[1:])) <= 1.143


@settings(max_examples=2000, deadline=None)
@given(st.integers(100, 100_000_000), st.floats(1.15, 3.0))
def test_calls_more_than_1_15x_apart_never_share_a_bucket(a, ratio):
    """What "fine enough to separate the strategies" means here: compiled strategies' calls differ by
    a few tenths of a microsecond (README's results: range 0.71, array 0.79, list 0.94 us)."""
    b = int(a * ratio) + 1
    if b <= 100_000_000:
        assert _fast.alloc_bucket(a) != _fast.alloc_bucket(b)
        assert bisect.bisect_left(ALLOC_BUCKETS_NS, a) != bisect.bisect_left(ALLOC_BUCKETS_NS, b)


@settings(max_examples=3000, deadline=None)
@given(st.one_of(st.integers(0, 200_000_000), st.sampled_from(ALLOC_BUCKETS_NS),
                 st.sampled_from([b + 1 for b in ALLOC_BUCKETS_NS]), st.integers(0, 2 ** 64 - 1)))
def test_c_bucket_is_the_python_bucket(ns):
    assert _fast.alloc_bucket(ns) == bisect.bisect_left(ALLOC_BUCKETS_NS, ns)


@pytest.mark.parametrize("fast_path", ["on", "off"])
def test_served_calls_land_in_those_buckets(tmp_path, fast_path):
    export = tmp_path / "export"
    export.mkdir()
    make_tree(str(export))
    srv = ServerProcess(str(export), threads=2, fast_path=fast_path, metrics=True)
    try:
        import libnfs
        nfs = libnfs.NFS(srv.url)
        for _ in range(20):
            assert nfs.stat("/d1") is not None
        with urllib.request.urlopen(srv.metrics_url, timeout=30) as r:
            text = r.read().decode()
    finally:
        rc, err = srv.stop()
    assert rc == 0, err
    (fam,) = [f for f in text_string_to_metric_families(text) if f.name == "nfsbulk_svc_alloc_arg_seconds"]
    buckets = [(s.labels["le"], s.value) for s in fam.samples if s.name.endswith("_bucket")]
    count = [s.value for s in fam.samples if s.name.endswith("_count")][0]
    assert [le for le, _ in buckets] == [floatToGoString(b) for b in ALLOC_BUCKETS] + ["+Inf"]
    cumulative = [v for _, v in buckets]
    assert cumulative == sorted(cumulative) and cumulative[-1] == count >= 20
