"""svc_alloc_arg's histogram: the compiled path counts into the Python path's bounds.

rpcsrv.svc.metrics.ALLOC_BOUNDS_DNS (the Python path's bisect, and the `le` labels) and
fp_tables.h's fp_alloc_bounds_dns (the fast workers' bisection; generated from the first by
rpcsrv/fast/gen_tables.py) are one table in two languages; these tests hold them equal, the C bucket index to Python's for any duration, and a live server on
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
from rpcsrv.svc.metrics import ALLOC_BUCKETS, ALLOC_BOUNDS_DNS


def test_c_bounds_are_the_python_bounds():
    assert _fast.ALLOC_BOUNDS_DNS == ALLOC_BOUNDS_DNS
    assert tuple(d / 1e10 for d in _fast.ALLOC_BOUNDS_DNS) == ALLOC_BUCKETS


def test_bounds_span_10ns_to_100ms_twenty_a_decade():
    # from 10 ns: range's and nfree's one-hole calls on dbench take about 100 ns, half of them less
    assert ALLOC_BUCKETS[0] == 10e-9 and ALLOC_BUCKETS[-1] == 0.1 and len(ALLOC_BUCKETS) == 141
    assert max(b / a for a, b in zip(ALLOC_BUCKETS, ALLOC_BUCKETS[1:])) <= 1.143


def python_bucket(ns):
    """The bucket rpcsrv.svc.metrics counts a call of `ns` nanoseconds in."""
    return bisect.bisect_left(ALLOC_BOUNDS_DNS, ns * 10)


@settings(max_examples=2000, deadline=None)
@given(st.integers(10, 100_000_000), st.floats(1.15, 3.0))
def test_calls_more_than_1_15x_apart_never_share_a_bucket(a, ratio):
    """What "fine enough to separate the strategies" means here: compiled strategies' calls differ by
    a few tenths of a microsecond (this README's results: range 0.43, array 0.65, list 1.14 us)."""
    b = int(a * ratio) + 1
    if b <= 100_000_000:
        assert _fast.alloc_bucket(a) != _fast.alloc_bucket(b)
        assert python_bucket(a) != python_bucket(b)


@settings(max_examples=3000, deadline=None)
@given(st.one_of(st.integers(0, 200_000_000), st.sampled_from([d // 10 for d in ALLOC_BOUNDS_DNS]),
                 st.sampled_from([d // 10 + 1 for d in ALLOC_BOUNDS_DNS]), st.integers(0, 2 ** 64 - 1)))
def test_c_bucket_is_the_python_bucket(ns):
    assert _fast.alloc_bucket(ns) == python_bucket(ns)
    # and the bucket's bounds hold the call: above the last bound, at most this one
    i = python_bucket(ns)
    assert i == len(ALLOC_BUCKETS) or ns * 1e-9 <= ALLOC_BUCKETS[i] * (1 + 1e-12)
    assert i == 0 or ns * 1e-9 > ALLOC_BUCKETS[i - 1] * (1 - 1e-12)


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
