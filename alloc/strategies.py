"""The svc_alloc_arg strategies: how a request's empty page slots are refilled, declared once.

Each entry of STRATEGIES names one way of refilling the holes of a page
array (rq_pages), the kernel versions that refilled that way and, where the
seed measured it, the kernel's figure (Chuck Lever's svc_alloc_arg trace,
NFSv3 256 KB reads and writes, 5.13 v6 series). Each has a Python
implementation through the public API (``refill``: what rpcsrv's reference
path runs) and, except ``single-py``, a compiled one (``compiled``: the
Allocator.svc_refill id, SVC_* in alloc/_core.pxd, run from C without the
GIL by rpcsrv's fast path and by ``python -m alloc.bench``). ``single`` and
``single-py`` are the same pre-5.13 loop, compiled and in Python, so both
figures exist. rpcsrv's workers, ``python -m alloc.bench`` and (through
``rpcsrv --list-strategies``) ``loadgen bench`` all take their strategies from
this table.

The kernel's history, in this model's one page array (call pages from slot
0, the reply after them): before 5.13 a loop over every slot calling the
single-page allocator per hole (``single``); 5.13 to 6.13 one bulk list
call for the holes, moved into them (``list``; the list API left mainline in
6.14); 5.13 on one bulk array call over every slot, the allocator skipping
the full ones (``array``, retrying while it progresses since 5.15); 2026 the
refill limited to where the request left holes: the reply's range
[rq_respages, rq_next_page) (``range``, here the one span covering every
hole), and the count of call pages the transport took, rq_pages_nfree
(``nfree``: exactly the transport's slots from 0 and the reply's range, two
windows, nothing else visited).

A refill function is ``refill(allocator, pages, page_list, holes, wait)``:
``holes`` is a Holes record of where the request emptied slots. It fills
every empty slot the strategy visits (``range`` only [holes.lo, holes.hi),
``nfree`` only [0, holes.nfree) and [holes.resp_lo, holes.resp_hi)), adds
the slots it visited to ``holes.scanned``, and returns True when they are
full. When an allocator call makes no progress it calls ``wait(seq)`` with
the allocator's free sequence number taken before a last retry (so a page
freed in between is not missed); ``wait`` returns True to retry, or
something else, which the refill returns at once (SvcRqst: False when told
to stop, or its RESTART marker after a stall; the benchmark raises
MemoryError instead).

Pure Python, no state but the Holes record the caller owns: any thread may
call these with its own arrays.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

__all__ = ["Strategy", "STRATEGIES", "NAMES", "Holes", "refill_single", "refill_list", "refill_array",
           "refill_range", "refill_nfree", "SVC_SINGLE", "SVC_LIST", "SVC_ARRAY", "SVC_RANGE", "SVC_NFREE"]

#: the compiled strategies' ids (alloc/_core.pxd SVC_*; a test holds them equal)
SVC_SINGLE, SVC_LIST, SVC_ARRAY, SVC_RANGE, SVC_NFREE = 0, 1, 2, 3, 4


class Holes:
    """Where a request's page array was emptied since its last refill (one per request).

    ``nfree``: the transport took slots [0, nfree) (a parked partial record: rq_pages_nfree);
    ``resp_lo, resp_hi``: the reply's pages released (svc_rqst_release_pages' range);
    ``lo, hi``: one span covering both (what ``range`` refills); ``scanned``: slots the
    strategies visited, summed over refills (the caller reads and resets it)."""

    __slots__ = ("lo", "hi", "nfree", "resp_lo", "resp_hi", "scanned")

    def __init__(self, nslots: int = 0):
        self.scanned = 0
        self.everything(nslots)

    def everything(self, nslots: int) -> None:
        """Every slot is empty (a new request, or its pages all given back)."""
        self.lo, self.hi, self.nfree = 0, nslots, nslots
        self.resp_lo = self.resp_hi = 0

    def clear(self) -> None:
        """Refilled: no holes."""
        self.lo = self.hi = self.nfree = self.resp_lo = self.resp_hi = 0

    def _span(self, lo: int, hi: int) -> None:
        if self.lo >= self.hi:
            self.lo, self.hi = lo, hi
        else:
            self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)

    def taken(self, n: int) -> None:
        """The transport took the pages of slots [0, n) (svc_tcp_save_pages)."""
        if n > 0:
            self.nfree = max(self.nfree, n)
            self._span(0, n)

    def released(self, lo: int, hi: int) -> None:
        """The reply's pages in [lo, hi) were freed."""
        if lo >= hi:
            return
        if self.resp_lo >= self.resp_hi:
            self.resp_lo, self.resp_hi = lo, hi
        else:
            self.resp_lo, self.resp_hi = min(self.resp_lo, lo), max(self.resp_hi, hi)
        self._span(lo, hi)


def refill_single(allocator, pages, page_list, holes, wait):
    """A loop over the slots calling alloc_page() per hole (svc_alloc_arg before 5.13)."""
    alloc_page = allocator.alloc_page
    holes.scanned += len(pages)
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


def refill_list(allocator, pages, page_list, holes, wait):
    """Count the holes, one alloc_pages_bulk_list(holes), move the pages into the holes; repeat while short."""
    bulk_list = allocator.alloc_pages_bulk_list
    needed = pages.count_empty()
    holes.scanned += 2 * len(pages)          # counting the holes, then moving pages into them
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


def _bulk_array_rest(allocator, pages, n, start, wait, ret, holes):
    """The rest of a bulk-array refill whose first call returned ``ret`` < n: the same calls as one
    loop from the start would make (retry while a call makes progress, else free_seq, one more
    try, wait). Each call visits the n slots of its window."""
    bulk_array = allocator.alloc_pages_bulk_array
    filled = 0
    while True:
        if ret > filled:
            filled = ret
            if filled >= n:
                return True
            holes.scanned += n
            ret = bulk_array(n, pages, start)
            continue
        seq = allocator.free_seq()
        holes.scanned += n
        ret = bulk_array(n, pages, start)
        if ret > filled:
            continue
        w = wait(seq)
        if w is not True:
            return w
        holes.scanned += n
        ret = bulk_array(n, pages, start)


# refill_array and refill_range make their first allocator call themselves, so the common case
# is one Python frame: on a live server (rpcsrv --fast-path off, 4 workers, rw256k, interleaved
# runs) a helper frame in between cost array about 0.3 us per call (2.03 against 1.71 us), the
# interpreter's caches being cold from the request handled in between; in a warm loop, 0.03 us.

def refill_array(allocator, pages, page_list, holes, wait):
    """alloc_pages_bulk_array over every slot until full; retry on progress, wait on none (5.13 + 5.15)."""
    n = len(pages)
    holes.scanned += n
    ret = allocator.alloc_pages_bulk_array(n, pages, 0)
    return True if ret >= n else _bulk_array_rest(allocator, pages, n, 0, wait, ret, holes)


def refill_range(allocator, pages, page_list, holes, wait):
    """One bulk array call over the span [lo, hi) covering every hole the request left, no scan
    of the rest (2026: the reply's [rq_respages, rq_next_page))."""
    lo = holes.lo
    n = holes.hi - lo
    if n <= 0:
        return True
    holes.scanned += n
    ret = allocator.alloc_pages_bulk_array(n, pages, lo)
    return True if ret >= n else _bulk_array_rest(allocator, pages, n, lo, wait, ret, holes)


def refill_nfree(allocator, pages, page_list, holes, wait):
    """Exactly the slots the transport took, [0, nfree), and the reply's [resp_lo, resp_hi): at
    most two bulk array calls over those windows and nothing else (2026: rq_pages_nfree and the
    reply range)."""
    for lo, hi in ((0, holes.nfree), (holes.resp_lo, holes.resp_hi)):
        n = hi - lo
        if n <= 0:
            continue
        holes.scanned += n
        ret = allocator.alloc_pages_bulk_array(n, pages, lo)
        if ret < n:
            r = _bulk_array_rest(allocator, pages, n, lo, wait, ret, holes)
            if r is not True:
                return r
    return True


class Strategy(NamedTuple):
    """One svc_alloc_arg strategy: its name, implementations, the kernel variant, the seed's figure."""
    name: str
    refill: Callable
    compiled: int | None          # Allocator.svc_refill id, None: Python only
    summary: str
    kernel: str                   # the kernel versions that refilled this way
    kernel_us: float | None       # us per svc_alloc_arg call in the seed's trace, if measured
    kernel_calls: int | None      # calls in that trace


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("single", refill_single, SVC_SINGLE, "a compiled loop over the slots calling the "
             "single-page path (alloc_page) once per hole", "before 5.13", 25.007, 532571),
    Strategy("list", refill_list, SVC_LIST, "one alloc_pages_bulk_list(holes), pages moved into the holes",
             "5.13 to 6.13 (the list API, removed in 6.14; the seed's v4 list variant)", 6.258, 517034),
    Strategy("array", refill_array, SVC_ARRAY, "alloc_pages_bulk_array over every slot (the allocator "
             "skips the full ones) until full; retry on progress, wait on none",
             "5.13 on (+5.15 retry; alloc_pages_bulk() since 6.14)", 4.590, 517442),
    Strategy("range", refill_range, SVC_RANGE, "one bulk array call over the span of slots the request "
             "emptied", "2026 ([rq_respages, rq_next_page))", None, None),
    Strategy("nfree", refill_nfree, SVC_NFREE, "bulk array calls over exactly the slots the transport took "
             "(rq_pages_nfree) and the reply released, no other slot visited", "2026 (rq_pages_nfree)",
             None, None),
    Strategy("single-py", refill_single, None, "the single loop in Python (alloc_page() per hole through "
             "the Python API)", "before 5.13", 25.007, 532571),
)}

#: the strategy names in table order
NAMES = tuple(STRATEGIES)
