"""Histogram and merge arithmetic (the contract buckets of metrics.md)."""
from __future__ import annotations

import pickle

import pytest

from loadgen.run.metrics import LoadgenCollector, Totals
from loadgen.run.report import final_table, second_line
from loadgen.run.stats import BOUNDS, OpStats, PhaseStats, bucket_index


def test_bounds_start_at_25us_and_double_to_about_13s():
    assert len(BOUNDS) == 20
    assert BOUNDS[0] == pytest.approx(25e-6)
    assert all(b2 == pytest.approx(2 * b1) for b1, b2 in zip(BOUNDS, BOUNDS[1:]))
    assert BOUNDS[-1] == pytest.approx(13.1072)


@pytest.mark.parametrize("i", range(len(BOUNDS)))
def test_bucket_edges_are_inclusive_upper_bounds(i):
    b = BOUNDS[i]
    assert bucket_index(b) == i
    assert bucket_index(b * 1.0001) == i + 1
    if i:
        assert bucket_index(BOUNDS[i - 1] * 1.0001) == i


def test_bucket_extremes():
    assert bucket_index(0.0) == 0
    assert bucket_index(1e-9) == 0
    assert bucket_index(100.0) == len(BOUNDS)


def test_record_merge_quantiles_and_pickle():
    a, b = OpStats(), OpStats()
    for k in range(1, 101):
        a.record(k * 1e-4, "ok")            # 0.1 ms .. 10 ms
    b.record(0.5, "unexpected")
    b.record(1e-5, "error")
    b2 = pickle.loads(pickle.dumps(b))
    a.merge(b2)
    assert (a.count, a.ok, a.error, a.unexpected) == (102, 100, 1, 1)
    assert a.max == 0.5
    assert sum(a.buckets) == 102
    assert a.quantile(0.5) == pytest.approx(5e-3, rel=0.05)
    assert a.quantile(0.99) == pytest.approx(1e-2, rel=0.05)
    assert a.quantile(1.0) == 0.5


def test_phase_stats_merge_and_table():
    p, q = PhaseStats(), PhaseStats()
    p.op("READ3").record(1e-3, "ok")
    p.read_bytes = 1_000_000
    q.op("READ3").record(3e-3, "ok")
    q.op("WRITE3").record(2e-3, "error")
    q.write_bytes = 3_000_000
    p.merge(pickle.loads(pickle.dumps(q)))
    assert p.count == 3 and p.read_bytes == 1_000_000 and p.write_bytes == 3_000_000
    t = final_table(p, 2.0, 4)
    assert "Throughput 2.00 MB/sec (read 0.50, write 1.50)  1.5 ops/sec  4 clients" in t
    assert " READ3 " in t and " WRITE3 " in t
    assert second_line(4, 100, 5_000_000, "execute", 2.0, 0.0123) == \
        "   4       100      2.50 MB/sec  execute    2 sec  latency 12.300 ms"


def test_collector_renders_cumulative_buckets():
    t = Totals()
    d = PhaseStats()
    d.op("GETATTR3").record(30e-6, "ok")     # bucket 1 (<= 50us)
    d.op("GETATTR3").record(20.0, "error")   # +Inf
    d.write_bytes = 7
    t.merge(d)
    t.set_clients(3)
    fams = {f.name: f for f in LoadgenCollector(t).collect()}
    ops = {(s.labels["op"], s.labels["status"]): s.value for s in fams["nfsbulk_loadgen_ops"].samples}
    assert ops[("GETATTR3", "ok")] == 1 and ops[("GETATTR3", "error")] == 1
    h = {s.labels.get("le"): s.value for s in fams["nfsbulk_loadgen_op_duration_seconds"].samples
         if s.name.endswith("_bucket")}
    assert h["2.5e-05"] == 0 and h["5e-05"] == 1 and h["13.1072"] == 1 and h["+Inf"] == 2
    assert [s.value for s in fams["nfsbulk_loadgen_clients"].samples] == [3]
    by = {s.labels["direction"]: s.value for s in fams["nfsbulk_loadgen_bytes"].samples}
    assert by == {"read": 0, "write": 7}


@pytest.mark.parametrize("seed", [1, 2])
def test_percentiles_within_a_few_percent_of_the_exact_ones(seed):
    """p50/p90/p99/p99.9 from the fine histogram against the exact sample quantiles of a long-tailed
    sample (lognormal around 100 us, tail to tens of ms): each within 2.5 % (half a 4.4 % bucket)."""
    import random
    rnd = random.Random(seed)
    xs = sorted(rnd.lognormvariate(-9.2, 1.2) for _ in range(50000))
    s = OpStats()
    for x in xs:
        s.record(x, "ok")
    d = s.to_json()
    for key, q in (("p50_seconds", 0.5), ("p90_seconds", 0.9), ("p99_seconds", 0.99), ("p999_seconds", 0.999)):
        exact = xs[int(q * len(xs)) - 1]
        assert d[key] == pytest.approx(exact, rel=0.025), (key, d[key], exact)
    assert d["p50_seconds"] < d["p90_seconds"] < d["p99_seconds"] < d["p999_seconds"] <= d["max_seconds"]
