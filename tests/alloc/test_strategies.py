"""alloc.strategies: the table, and its compiled strategies against the Python ones."""
import pytest

import alloc
from alloc import _core
from alloc.strategies import NAMES, STRATEGIES


def test_compiled_ids_are_the_allocators():
    assert {s.name: s.compiled for s in STRATEGIES.values() if s.compiled is not None} == _core.SVC_COMPILED
    assert STRATEGIES["single-py"].compiled is None
    assert NAMES[:4] == ("single", "list", "array", "range")


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
            s.refill(a, arr, lst, 0, 259, _raise)        # full arrays to start from
            a.free_pages_bulk(arr, lo, hi)               # a reply released [lo, hi)
        a.free_pages_bulk(c, 200, 201)                   # and a slot emptied behind `range`'s back
        a.free_pages_bulk(py, 200, 201)
        s.refill(a, py, lst, lo, hi, _raise)
        a.svc_refill_compiled(s.compiled, c, lo, hi, lst)
        empty_py = [i for i in range(259) if py[i] is None]
        empty_c = [i for i in range(259) if c[i] is None]
        assert empty_py == empty_c == ([200] if name == "range" and not lo <= 200 < hi else [])
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
