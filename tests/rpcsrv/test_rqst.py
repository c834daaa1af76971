"""rpcsrv.svc.rqst.SvcRqst without a server: every strategy, the hole bookkeeping, the stall breaker.

The "other worker" that frees memory is the should_stop callback, which svc_alloc_arg calls before
and after each wait: the test decides, wait by wait (the request's count of them), what happens,
with no thread to race."""
import pytest

import alloc
from alloc.strategies import NAMES, STRATEGIES
from rpcsrv.svc.rqst import STALL_WAITS, SvcRqst

NSLOTS = 64


@pytest.fixture
def allocator():
    a = alloc.Allocator(arena_pages=4096, debug=True)
    yield a
    a.check()
    assert a.stats()["corrupt_pages"] == 0


def pages_of(r):
    return [r.pages[i] for i in range(r.nslots)]


@pytest.mark.parametrize("strategy", NAMES)
def test_first_refill_fills_every_slot(allocator, strategy):
    r = SvcRqst(allocator, strategy, NSLOTS)
    r.trace = []
    assert r.svc_alloc_arg() is True
    assert r.pages.count_empty() == 0
    assert (r.last_holes, r.last_waits) == (NSLOTS, 0) and r.last_ns > 0
    assert r.trace == [("refill", NSLOTS)]
    assert len(set(pages_of(r))) == NSLOTS
    assert r.release_all() == NSLOTS
    assert allocator.stats()["allocated"] == 0


@pytest.mark.parametrize("strategy", NAMES)
def test_released_reply_pages_are_the_next_holes(allocator, strategy):
    r = SvcRqst(allocator, strategy, NSLOTS)
    r.trace = []
    r.svc_alloc_arg()
    before = pages_of(r)
    assert r.release(3, 11) == 8
    assert (r.holes.lo, r.holes.hi) == (3, 11)
    assert [r.pages[i] for i in range(3, 11)] == [None] * 8
    r.release(20, 22)                                # a second release widens the range
    assert (r.holes.lo, r.holes.hi) == (3, 22)
    assert (r.holes.resp_lo, r.holes.resp_hi, r.holes.nfree) == (3, 22, 0)
    assert r.svc_alloc_arg() is True
    # the slots each strategy visited: the whole array, or the hole windows
    assert r.last_scanned == {"list": 2 * NSLOTS, "range": 19, "nfree": 19}.get(strategy, NSLOTS)
    assert r.last_holes == 10 and r.pages.count_empty() == 0
    after = pages_of(r)
    untouched = [i for i in range(NSLOTS) if not (3 <= i < 11 or 20 <= i < 22)]
    assert [after[i] for i in untouched] == [before[i] for i in untouched]
    assert (r.holes.lo, r.holes.hi) == (0, 0)        # nothing left to refill
    assert r.trace == [("refill", NSLOTS), ("release", 8), ("release", 2), ("refill", 10)]
    r.release_all()


def test_the_table_is_what_the_request_runs(allocator):
    for name, s in STRATEGIES.items():
        assert SvcRqst(allocator, name, 8)._refill is s.refill
    with pytest.raises(ValueError):
        SvcRqst(allocator, "nope", 8)


def test_range_refills_only_the_range_it_was_told(allocator):
    r = SvcRqst(allocator, "range", NSLOTS)
    r.svc_alloc_arg()
    # slots emptied behind the request's back (not through release): range does not see them
    allocator.free_pages_bulk(r.pages, 40, 41)
    r.release(5, 6)
    r.svc_alloc_arg()
    assert r.pages[5] is not None and r.pages[40] is None
    # array scans the whole array and finds it
    a = SvcRqst(allocator, "array", NSLOTS)
    a.svc_alloc_arg()
    allocator.free_pages_bulk(a.pages, 40, 41)
    a.svc_alloc_arg()
    assert a.pages.count_empty() == 0 and a.last_holes == 1
    r.release_all()
    a.release_all()


def _hog_all(allocator):
    """Take every page the allocator will hand out; returns them in a PageArray."""
    hog = allocator.page_array(4096)
    while allocator.alloc_pages_bulk_array(4096, hog) < 4096:
        if allocator.alloc_page() is None:
            break
    return hog


@pytest.mark.parametrize("strategy", NAMES)
def test_waits_then_progress_when_memory_comes_back(allocator, strategy):
    r = SvcRqst(allocator, strategy, NSLOTS)
    hog = _hog_all(allocator)

    def other_worker():
        if r._waits == 2:
            allocator.free_pages_bulk(hog)            # memory comes back at the second wait
        return False

    assert r.svc_alloc_arg(other_worker) is True
    assert r.last_waits == 2 and r.stalls == 0 and r.pages.count_empty() == 0
    r.release_all()


def test_stall_breaker_gives_the_pages_back(allocator):
    r = SvcRqst(allocator, "array", NSLOTS)
    r.trace = []
    hog = _hog_all(allocator)
    # leave the request half of what it needs: it takes those, then waits without progress
    allocator.free_pages_bulk(hog, 0, NSLOTS // 2)
    held = []

    def other_worker():
        if r._waits == STALL_WAITS and not held:
            held.append(r.pages.count_empty())        # at the STALL_WAITS-th wait it still holds pages
        if r._waits == STALL_WAITS + 1:
            allocator.free_pages_bulk(hog)
        return False

    assert r.svc_alloc_arg(other_worker) is True
    assert r.stalls == 1 and r.last_waits == STALL_WAITS + 1
    assert held and held[0] < NSLOTS
    stall = [e for e in r.trace if e[0] == "stall"]
    assert stall == [("stall", NSLOTS - held[0])]     # every page it held went back
    assert r.pages.count_empty() == 0
    r.release_all()


def test_stop_ends_the_wait(allocator):
    r = SvcRqst(allocator, "list", NSLOTS)
    hog = _hog_all(allocator)
    assert r.svc_alloc_arg(lambda: True) is False
    assert r.last_waits == 1
    r.release_all()
    allocator.free_pages_bulk(hog)
