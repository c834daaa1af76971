"""The svc_alloc_arg strategies: how a request's empty page slots are refilled, declared once.

Each entry of STRATEGIES names one way of refilling the holes of a page
array (rq_pages), the kernel variant it models and, where the seed measured
it, the kernel's figure (Chuck Lever's svc_alloc_arg trace, NFSv3 256 KB
reads and writes, 5.13 v6 series). Each has a Python implementation through
the public API (``refill``: what rpcsrv's reference path runs) and, except
``single-py``, a compiled one (``compiled``: the Allocator.svc_refill id,
SVC_* in alloc/_core.pxd, run from C without the GIL by rpcsrv's fast path
and by ``python -m alloc.bench``). ``single`` and ``single-py`` are the same
pre-5.13 loop, compiled and in Python, so both figures exist. rpcsrv's
workers, ``python -m alloc.bench`` and (through ``rpcsrv --list-strategies``)
``loadgen bench`` all take their strategies from this table.

A refill function is ``refill(allocator, pages, page_list, lo, hi, wait)``:
it fills every empty slot of ``pages`` (``range`` only [lo, hi), the slots
the caller knows it emptied) and returns True when the array is full. When
an allocator call makes no progress it calls ``wait(seq)`` with the
allocator's free sequence number taken before a last retry (so a page freed
in between is not missed); ``wait`` returns True to retry, or something
else, which the refill returns at once (SvcRqst: False when told to stop, or
its RESTART marker after a stall; the benchmark raises MemoryError instead).

Pure Python, no state: any thread may call these with its own arrays.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

__all__ = ["Strategy", "STRATEGIES", "NAMES", "refill_single", "refill_list", "refill_array",
           "refill_range", "SVC_SINGLE", "SVC_LIST", "SVC_ARRAY", "SVC_RANGE"]

#: the compiled strategies' ids (alloc/_core.pxd SVC_*; a test holds them equal)
SVC_SINGLE, SVC_LIST, SVC_ARRAY, SVC_RANGE = 0, 1, 2, 3


def refill_single(allocator, pages, page_list, lo, hi, wait):
    """A loop over the slots calling alloc_page() per hole (svc_alloc_arg before 5.13)."""
    alloc_page = allocator.alloc_page
    for i in range(len(pages)):
        while pages[i] is None:
            p = alloc_page()
            if p is None:
                seq = allocator.free_seq()
                p = alloc_page()
                if p is None:
                    w = wait(seq)
                    if w is not True:
                        return w
                    continue
            pages[i] = p
    return True


def refill_list(allocator, pages, page_list, lo, hi, wait):
    """Count the holes, one alloc_pages_bulk_list(holes), move the pages into the holes; repeat while short."""
    bulk_list = allocator.alloc_pages_bulk_list
    needed = pages.count_empty()
    while needed:
        if bulk_list(needed, page_list) == 0:
            seq = allocator.free_seq()
            if bulk_list(needed, page_list) == 0:
                w = wait(seq)
                if w is not True:
                    return w
                continue
        needed -= pages.fill_from_list(page_list)
    return True


def _bulk_array_rest(allocator, pages, n, start, wait, ret):
    """The rest of a bulk-array refill whose first call returned ``ret`` < n: the same calls as one
    loop from the start would make (retry while a call makes progress, else free_seq, one more
    try, wait)."""
    bulk_array = allocator.alloc_pages_bulk_array
    filled = 0
    while True:
        if ret > filled:
            filled = ret
            if filled >= n:
                return True
            ret = bulk_array(n, pages, start)
            continue
        seq = allocator.free_seq()
        ret = bulk_array(n, pages, start)
        if ret > filled:
            continue
        w = wait(seq)
        if w is not True:
            return w
        ret = bulk_array(n, pages, start)


# refill_array and refill_range make their first allocator call themselves, so the common case
# is one Python frame: on a live server (rpcsrv --fast-path off, 4 workers, rw256k, interleaved
# runs) a helper frame in between cost array about 0.3 us per call (2.03 against 1.71 us), the
# interpreter's caches being cold from the request handled in between; in a warm loop, 0.03 us.

def refill_array(allocator, pages, page_list, lo, hi, wait):
    """alloc_pages_bulk_array over every slot until full; retry on progress, wait on none (5.13 + 5.15)."""
    n = len(pages)
    ret = allocator.alloc_pages_bulk_array(n, pages, 0)
    return True if ret >= n else _bulk_array_rest(allocator, pages, n, 0, wait, ret)


def refill_range(allocator, pages, page_list, lo, hi, wait):
    """One bulk array call over exactly the slots [lo, hi) the caller emptied, no scan (2026 svc_fill_pages)."""
    n = hi - lo
    if n <= 0:
        return True
    ret = allocator.alloc_pages_bulk_array(n, pages, lo)
    return True if ret >= n else _bulk_array_rest(allocator, pages, n, lo, wait, ret)


class Strategy(NamedTuple):
    """One svc_alloc_arg strategy: its name, implementations, the kernel variant, the seed's figure."""
    name: str
    refill: Callable
    compiled: int | None          # Allocator.svc_refill id, None: Python only
    summary: str
    kernel: str
    kernel_us: float | None       # us per svc_alloc_arg call in the seed's trace, if measured
    kernel_calls: int | None      # calls in that trace


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("single", refill_single, SVC_SINGLE, "a compiled loop over the slots calling the "
             "single-page path (alloc_page) once per hole", "before 5.13", 25.007, 532571),
    Strategy("list", refill_list, SVC_LIST, "one alloc_pages_bulk_list(holes), pages moved into the holes",
             "the v4 list variant", 6.258, 517034),
    Strategy("array", refill_array, SVC_ARRAY, "alloc_pages_bulk_array(259, pages) until full; retry on "
             "progress, wait on none", "5.13 (+5.15 retry)", 4.590, 517442),
    Strategy("range", refill_range, SVC_RANGE, "one bulk array call over exactly the slots the last reply "
             "released", "2026 svc_fill_pages()", None, None),
    Strategy("single-py", refill_single, None, "the single loop in Python (alloc_page() per hole through "
             "the Python API)", "before 5.13", 25.007, 532571),
)}

#: the strategy names in table order
NAMES = tuple(STRATEGIES)
