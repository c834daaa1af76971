"""PagePool (alloc/_pool.pyx): page_pool's semantics, kernel-reference.md section 6."""

import threading

import pytest
from prometheus_client import CollectorRegistry, generate_latest

import alloc
from alloc._pool import CACHE_REFILL, CACHE_SIZE, PagePool
from alloc.pool_metrics import PoolCollector

STRATS = ("single", "list", "array")


@pytest.fixture
def allocator():
    a = alloc.Allocator(16)
    yield a
    a.drain_all()
    assert a.stats()["allocated"] == 0, "a test leaked pages"
    a.check()


def _no_page_lost(pool):
    st = pool.stats()
    assert st["pages_from_allocator"] == st["released"] + st["cache_pages"] + st["ring_pages_now"] + st["inflight"]
    assert st["inflight"] >= 0


def test_constants():
    assert CACHE_SIZE == 128 and CACHE_REFILL == 64


def test_bad_strategy(allocator):
    with pytest.raises(ValueError):
        PagePool(allocator, "range")


@pytest.mark.parametrize("strategy", ["array", "list"])
def test_bulk_refill_is_64_and_then_cache_hits(allocator, strategy):
    pool = PagePool(allocator, strategy)
    api = {"array": "bulk_array", "list": "bulk_list"}[strategy]
    calls0 = allocator.stats()["calls"][api]
    pages = [pool.alloc()]
    st = pool.stats()
    assert st["alloc_slow"] == 1 and st["pages_from_allocator"] == 64
    assert pool.cache_count == 63
    assert allocator.stats()["calls"][api] == calls0 + 1
    for _ in range(63):                               # the other 63 come from the cache
        pages.append(pool.alloc())
    st = pool.stats()
    assert st["alloc_fast"] == 63 and st["alloc_slow"] == 1 and pool.cache_count == 0
    pages.append(pool.alloc())                        # the 65th: the next refill
    st = pool.stats()
    assert st["alloc_slow"] == 2 and st["pages_from_allocator"] == 128
    assert len(set(pages)) == 65
    for p in pages:
        assert allocator.page_state(p) == "alloc"
        pool.release(p)
    pool.close()
    _no_page_lost(pool)
    assert pool.stats()["released"] == 128


def test_single_refills_one_page_per_slow_path(allocator):
    pool = PagePool(allocator, "single")
    calls0 = allocator.stats()["calls"]["single"]
    got = [pool.alloc() for _ in range(10)]
    st = pool.stats()
    assert st["alloc_slow"] == 10 and st["pages_from_allocator"] == 10 and st["alloc_fast"] == 0
    assert pool.cache_count == 0
    assert allocator.stats()["calls"]["single"] == calls0 + 10
    for p in got:
        pool.release(p)
    pool.close()
    _no_page_lost(pool)


@pytest.mark.parametrize("strategy", STRATS)
def test_recycle_direct_is_lifo_and_fast(allocator, strategy):
    pool = PagePool(allocator, strategy)
    p = pool.alloc()
    assert pool.recycle(p, direct=True) is True
    slow = pool.stats()["alloc_slow"]
    assert pool.alloc() == p                          # the hottest page comes back first
    assert pool.stats()["alloc_slow"] == slow
    assert pool.stats()["recycled_direct"] == 1
    pool.recycle(p, direct=True)
    pool.close()
    _no_page_lost(pool)


def test_ring_refill_pulls_at_most_64(allocator):
    pool = PagePool(allocator, "array")
    pages = [pool.alloc() for _ in range(100)]        # two refills: 128 from the allocator, 28 cached
    while pool.cache_count:
        pages.append(pool.alloc())
    assert len(pages) == 128
    for p in pages[:100]:
        assert pool.recycle(p) is True               # into the ring
    assert pool.ring_count == 100
    slow = pool.stats()["alloc_slow"]
    q = pool.alloc()
    st = pool.stats()
    assert st["ring_refills"] == 1 and st["ring_pages"] == 64
    assert pool.ring_count == 36 and pool.cache_count == 63
    assert st["alloc_slow"] == slow                   # no allocator call
    assert q in pages[:100]
    pool.recycle(q, direct=True)
    for p in pages[100:]:
        pool.recycle(p, direct=True)
    pool.close()
    _no_page_lost(pool)
    assert pool.stats()["released"] == 128


def test_ring_is_bounded_and_full_ring_releases(allocator):
    pool = PagePool(allocator, "array", ring_size=4)
    assert pool.ring_size == 4
    pages = [pool.alloc() for _ in range(6)]
    results = [pool.recycle(p) for p in pages]
    assert results == [True] * 4 + [False] * 2
    st = pool.stats()
    assert st["ring_full"] == 2 and st["released"] == 2 and pool.ring_count == 4
    for p in pages[4:]:
        assert allocator.page_state(p) != "alloc"     # back in the allocator
    pool.close()
    _no_page_lost(pool)


def test_recycle_refuses_foreign_and_double(allocator):
    pool = PagePool(allocator, "array")
    p = pool.alloc()
    pool.recycle(p)
    with pytest.raises(ValueError):
        pool.recycle(p)                               # already back in the pool
    foreign = allocator.alloc_page()
    with pytest.raises(ValueError):
        pool.recycle(foreign)
    with pytest.raises(ValueError):
        pool.release(foreign)
    allocator.free_page(foreign)
    pool.close()
    _no_page_lost(pool)


def test_slow_path_with_cached_pages_returns_a_cached_page(allocator):
    pool = PagePool(allocator, "array")
    pool.recycle(pool.alloc(), direct=True)           # cache: 64 pages
    before = pool.stats()
    p = pool.alloc_slow()
    after = pool.stats()
    assert p is not None
    assert after["alloc_slow"] == before["alloc_slow"]            # not counted as a refill
    assert after["pages_from_allocator"] == before["pages_from_allocator"]
    assert pool.cache_count == 63
    pool.recycle(p, direct=True)
    pool.close()


@pytest.mark.parametrize("strategy", STRATS)
def test_refill_of_zero_returns_none(strategy):
    a = alloc.Allocator(4)
    hog = []
    while True:
        p = a.alloc_page()
        if p is None:
            break
        hog.append(p)
    pool = PagePool(a, strategy)
    assert pool.alloc() is None
    st = pool.stats()
    assert st["alloc_slow"] == 1 and st["alloc_slow_empty"] == 1 and st["pages_from_allocator"] == 0
    a.free_pages_bulk(hog)
    assert pool.alloc() is not None                   # memory is back: the pool works again
    pool.close()
    _no_page_lost(pool)
    # the page still out is released when it comes back
    a.drain_all()


def test_close_releases_everything_and_late_recycles(allocator):
    pool = PagePool(allocator, "array")
    out = [pool.alloc() for _ in range(10)]
    pool.recycle(out.pop())                           # one in the ring
    released_now = pool.close()
    assert released_now == 54 + 1                     # the cache (64 - 10) and the ring (1)
    assert pool.closed and pool.alloc() is None
    assert pool.close() == 0                          # idempotent
    for p in out:
        assert pool.recycle(p, direct=True) is False  # a closed pool releases what comes back
    st = pool.stats()
    assert st["released"] == st["pages_from_allocator"] == 64 and st["inflight"] == 0
    allocator.drain_all()
    assert allocator.stats()["allocated"] == 0
    allocator.check()


@pytest.mark.parametrize("strategy", STRATS)
def test_no_page_lost_after_mixed_use(allocator, strategy):
    import random
    rnd = random.Random(strategy)
    pool = PagePool(allocator, strategy, ring_size=64)
    out = []
    for _ in range(5000):
        r = rnd.random()
        if r < 0.5 or not out:
            p = pool.alloc()
            assert p is not None
            out.append(p)
        else:
            p = out.pop(rnd.randrange(len(out)))
            how = rnd.choice(("direct", "ring", "release"))
            if how == "release":
                pool.release(p)
            else:
                pool.recycle(p, direct=(how == "direct"))
        _no_page_lost(pool) if rnd.random() < 0.01 else None
    assert len(set(out)) == len(out)
    pool.close()
    for p in out:
        pool.recycle(p)
    st = pool.stats()
    assert st["pages_from_allocator"] == st["released"]
    allocator.drain_all()
    assert allocator.stats()["allocated"] == 0
    allocator.check()


def test_page_array_slots(allocator):
    pool = PagePool(allocator, "list")
    pa = allocator.page_array(4)
    assert pool.alloc_into(pa, 0) is True
    with pytest.raises(ValueError):
        pool.alloc_into(pa, 0)                        # not empty
    v = pa.view(0)
    mv = memoryview(v)
    mv[:5] = b"hello"
    with pytest.raises(BufferError):
        pool.recycle_slot(pa, 0)                      # exported: not while a view is alive
    mv.release()
    assert pool.recycle_slot(pa, 0, "ring") == 1 and pa[0] is None
    assert pool.recycle_slot(pa, 0) == 0              # empty slot
    pool.alloc_into(pa, 1)
    assert pool.recycle_slot(pa, 1, "release") == 1
    other = alloc.Allocator(4)
    with pytest.raises(ValueError):
        pool.alloc_into(other.page_array(2), 0)
    pool.close()
    _no_page_lost(pool)


def test_producer_thread_recycles_through_the_ring(allocator):
    pool = PagePool(allocator, "array", ring_size=256)
    import queue
    q = queue.Queue()
    done = threading.Event()

    def producer():
        while not (done.is_set() and q.empty()):
            try:
                p = q.get(timeout=0.05)
            except queue.Empty:
                continue
            pool.recycle(p)                           # ring (full ring: released)

    t = threading.Thread(target=producer)
    t.start()
    for _ in range(20000):
        while q.qsize() > 300:                        # bounded in flight (the arena has 4096 pages)
            threading.Event().wait(0.001)
        p = pool.alloc()
        assert p is not None
        q.put(p)
    done.set()
    t.join(10)
    assert not t.is_alive()
    st = pool.stats()
    assert st["recycled_ring"] > 0 and st["inflight"] == 0
    pool.close()
    assert pool.stats()["pages_from_allocator"] == pool.stats()["released"]


@pytest.mark.parametrize("strategy", STRATS)
def test_time_alloc_counts_refills(allocator, strategy):
    pool = PagePool(allocator, strategy)
    ns, n, slow = pool.time_alloc(64 * 100, "release")
    assert n == 6400 and ns > 0
    assert slow == (6400 if strategy == "single" else 100)
    ns2, n2, slow2 = pool.time_alloc(1000, "direct")
    assert slow2 <= 1
    pool.close()
    _no_page_lost(pool)


def test_metrics_collector(allocator):
    pools = [PagePool(allocator, "array"), PagePool(allocator, "array"), PagePool(allocator, "single")]
    for p in pools:
        pg = p.alloc()
        p.recycle(pg, direct=True)
    reg = CollectorRegistry()
    PoolCollector(lambda: pools).register(reg)
    text = generate_latest(reg).decode()
    assert 'nfsbulk_pool_alloc_slow_total{strategy="array"} 2.0' in text
    assert 'nfsbulk_pool_pages_from_allocator_total{strategy="array"} 128.0' in text
    assert 'nfsbulk_pool_pages_from_allocator_total{strategy="single"} 1.0' in text
    assert 'nfsbulk_pool_recycled_total{path="cache",strategy="array"} 2.0' in text
    for name in ("alloc_fast_total", "released_total", "ring_refills_total", "alloc_empty_total",
                 "ring_full_total", "cache_pages", "ring_pages", "inflight_pages"):
        assert "nfsbulk_pool_" + name in text
    for p in pools:
        p.close()
    text = generate_latest(reg).decode()
    assert 'nfsbulk_pool_released_total{strategy="array"} 128.0' in text


def test_exported_from_alloc():
    assert alloc.PagePool is PagePool
