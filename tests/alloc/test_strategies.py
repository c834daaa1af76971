"""alloc.strategies: the table, and its compiled strategies against the Python ones."""
import pytest

import alloc
from alloc import _core
from alloc.strategies import NAMES, STRATEGIES, Holes


def test_compiled_ids_are_the_allocators():
    assert {s.name: s.compiled for s in STRATEGIES.values() if s.compiled is not None} == _core.SVC_COMPILED
    assert STRATEGIES["single-py"].compiled is None
    assert NAMES[:5] == ("single", "list", "array", "range", "nfree")


def _raise(seq):
    raise MemoryError


@pytest.mark.parametrize("name", [n for n in NAMES if STRATEGIES[n].compiled is not None])
def test_compiled_and_python_refill_the_same_slots(name):
    a = alloc.Allocator(arena_pages=8192, debug=True)
    lst = a.page_list()
    s = STRATEGIES[name]
    for lo, hi in ((0, 259), (1, 17), (100, 101), (0, 1)):
        py, c = a.page_array(259), a.page_array(259)
        for arr in (py, c):
            s.refill(a, arr, lst, Holes(259), _raise)    # full arrays to start from
            a.free_pages_bulk(arr, lo, hi)               # a reply released [lo, hi)
        a.free_pages_bulk(c, 200, 201)                   # and a slot emptied behind `range`'s back
        a.free_pages_bulk(py, 200, 201)
        h = Holes()
        h.clear()
        h.released(lo, hi)
        s.refill(a, py, lst, h, _raise)
        scanned = a.svc_refill_compiled(s.compiled, c, lo, hi, lst, 0, lo, hi)
        empty_py = [i for i in range(259) if py[i] is None]
        empty_c = [i for i in range(259) if c[i] is None]
        assert empty_py == empty_c == ([200] if name in ("range", "nfree") and not lo <= 200 < hi else [])
        assert scanned == h.scanned == {"single": 259, "list": 518, "array": 259}.get(name, hi - lo)
        a.free_pages_bulk(py)
        a.free_pages_bulk(c)
    a.check()
    assert a.stats()["allocated"] == 0


def test_compiled_refill_reports_no_progress_as_memory_error():
    a = alloc.Allocator(arena_pages=64)
    hog = a.page_array(64)
    while a.alloc_pages_bulk_array(64, hog) < 64 and a.alloc_page() is not None:
        pass
    arr = a.page_array(8)
    for sid in _core.SVC_COMPILED.values():
        with pytest.raises(MemoryError):
            a.svc_refill_compiled(sid, arr)


class _Scripted:
    """An allocator whose bulk array calls return scripted counts, recording every call."""

    def __init__(self, returns):
        self.returns = list(returns)
        self.log = []

    def alloc_pages_bulk_array(self, n, pages, start=0):
        self.log.append(("bulk", n, start))
        return self.returns.pop(0)

    def free_seq(self):
        self.log.append(("seq",))
        return len(self.log)


def _reference_loop(allocator, pages, n, start, wait):
    """The bulk-array refill written as one plain loop (the kernel's 5.13 + 5.15 shape)."""
    filled = 0
    while filled < n:
        ret = allocator.alloc_pages_bulk_array(n, pages, start)
        if ret > filled:
            filled = ret
            continue
        seq = allocator.free_seq()
        ret = allocator.alloc_pages_bulk_array(n, pages, start)
        if ret > filled:
            filled = ret
            continue
        w = wait(seq)
        if w is not True:
            return w
    return True


@pytest.mark.parametrize("script", [
    [8], [3, 8], [0, 8], [0, 0, 8], [3, 3, 3, 5, 8], [2, 2, 2, 2, 2, 2, 8], [0, 0, 0, 0, 0, 0],
    [5, 5, 5, "stop"], [0, 0, "stop"],
])
@pytest.mark.parametrize("name", ["array", "range"])
def test_array_refills_make_the_calls_of_one_plain_loop(name, script):
    # the first call is made before the loop (one Python frame in the common case): the calls,
    # the free_seq reads, the waits and the result must still be those of the plain loop
    def run(refill):
        returns = [r for r in script if r != "stop"]
        a = _Scripted(returns + [0] * 8)
        waits = []

        def wait(seq):
            waits.append(seq)
            return "stopped" if "stop" in script and len(waits) >= 1 else len(waits) < 2
        lo, hi = (0, 8) if name == "array" else (3, 11)
        pages = [None] * (8 if name == "array" else 11)
        got = refill(a, pages, lo, hi, wait)
        return got, a.log, waits

    def reference(a, pages, lo, hi, wait):
        return _reference_loop(a, pages, hi - lo, lo, wait)

    def table(a, pages, lo, hi, wait):
        h = Holes()
        h.clear()
        h.released(lo, hi)
        return STRATEGIES[name].refill(a, _Len(pages), None, h, wait)
    assert run(table) == run(reference)


def test_nfree_refills_exactly_the_transports_slots_and_the_reply():
    """nfree visits [0, nfree) and the reply's range, nothing between them; range visits the span
    covering both; both refill every hole, compiled and in Python alike."""
    a = alloc.Allocator(arena_pages=16384, debug=True)
    for name, want in (("nfree", 5 + 30), ("range", 230)):
        s = STRATEGIES[name]
        py, c = a.page_array(1028), a.page_array(1028)
        for arr in (py, c):
            s.refill(a, arr, None, Holes(1028), _raise)
            a.free_pages_bulk(arr, 0, 5)                 # a parked partial record took [0, 5)
            a.free_pages_bulk(arr, 200, 230)             # the reply released [200, 230)
        h = Holes()
        h.clear()
        h.taken(5)
        h.released(200, 230)
        s.refill(a, py, None, h, _raise)
        scanned = a.svc_refill_compiled(s.compiled, c, h.lo, h.hi, None, h.nfree, h.resp_lo, h.resp_hi)
        assert py.count_empty() == c.count_empty() == 0
        assert h.scanned == scanned == want, name
        a.free_pages_bulk(py)
        a.free_pages_bulk(c)
    a.check()


class _Len(list):
    """A stand-in page array: only its length is read."""
