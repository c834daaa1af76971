"""The svc_alloc_arg strategies: how a request's empty page slots are refilled, declared once.

Each entry of STRATEGIES names one way of refilling the holes of a page
array (rq_pages) through this package's public API, the kernel variant it
models and, where the seed measured it, the kernel's figure (Chuck Lever's
svc_alloc_arg trace, NFSv3 256 KB reads and writes, 5.13 v6 series). rpcsrv's
SvcRqst, ``python -m alloc.bench`` and (through ``rpcsrv --list-strategies``)
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
           "refill_range"]


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


def _bulk_array(allocator, pages, n, start, wait):
    bulk_array = allocator.alloc_pages_bulk_array
    filled = 0
    while filled < n:
        ret = bulk_array(n, pages, start)
        if ret > filled:
            filled = ret
            continue
        seq = allocator.free_seq()
        ret = bulk_array(n, pages, start)
        if ret > filled:
            filled = ret
            continue
        w = wait(seq)
        if w is not True:
            return w
    return True


def refill_array(allocator, pages, page_list, lo, hi, wait):
    """alloc_pages_bulk_array over every slot until full; retry on progress, wait on none (5.13 + 5.15)."""
    return _bulk_array(allocator, pages, len(pages), 0, wait)


def refill_range(allocator, pages, page_list, lo, hi, wait):
    """One bulk array call over exactly the slots [lo, hi) the caller emptied, no scan (2026 svc_fill_pages)."""
    return _bulk_array(allocator, pages, hi - lo, lo, wait)


class Strategy(NamedTuple):
    """One svc_alloc_arg strategy: its name, what it does, the kernel variant, the seed's figure."""
    name: str
    refill: Callable
    summary: str
    kernel: str
    kernel_us: float | None       # us per svc_alloc_arg call in the seed's trace, if measured
    kernel_calls: int | None      # calls in that trace


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("single", refill_single, "a loop over the slots calling alloc_page() per hole",
             "before 5.13", 25.007, 532571),
    Strategy("list", refill_list, "one alloc_pages_bulk_list(holes), pages moved into the holes",
             "the v4 list variant", 6.258, 517034),
    Strategy("array", refill_array, "alloc_pages_bulk_array(259, pages) until full; retry on progress, "
             "wait on none", "5.13 (+5.15 retry)", 4.590, 517442),
    Strategy("range", refill_range, "one bulk array call over exactly the slots the last reply released",
             "2026 svc_fill_pages()", None, None),
)}

#: the strategy names in table order
NAMES = tuple(STRATEGIES)
