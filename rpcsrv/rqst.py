"""SvcRqst: one worker's request struct, its page array, and svc_alloc_arg.

Ownership: a SvcRqst belongs to exactly one worker thread for its whole life
(as an svc_rqst belongs to one nfsd thread). Its PageArray `pages` has
RPCSVC_MAXPAGES (259) slots; every page in it is owned by the request. A call
record is received into slots [0, call_pages); the reply is built in the
slots after it; after the reply is sent those reply slots are freed in one
batch and left empty: they are the holes the next svc_alloc_arg refills.

svc_alloc_arg(strategy) refills every empty slot before the worker waits for
a transport, as the kernel's svc_recv() does first:
  single  a Python loop over the slots calling alloc_page() per hole
          (the pre-5.13 loop);
  list    one alloc_pages_bulk_list(holes), pages moved into the holes
          (the v4 list variant), repeated while short;
  array   alloc_pages_bulk_array(259, pages) until full (5.13), retrying at
          once on progress and waiting only when a call made none (5.15);
  range   one bulk array call over exactly the slots the last reply (or a
          saved partial record) released, no scan (2026 svc_fill_pages()).
When a call makes no progress the worker sleeps until a page is freed
anywhere (Allocator.wait_for_free), with a bounded back-off, and counts the
wait; a stop request ends the wait (the kernel's -EINTR / kthread_should_stop).
"""

from __future__ import annotations

import time

from alloc import RPCSVC_MAXPAGES

STRATEGIES = ("single", "list", "array", "range")

#: first and last wait of the no-progress back-off (seconds)
WAIT_MIN = 0.001
WAIT_MAX = 0.5


class SvcRqst:
    """A worker's request: page array, reply packer, and the bookkeeping of its holes."""

    __slots__ = ("allocator", "strategy", "pages", "views", "nslots", "holes_lo", "holes_hi",
                 "page_list", "_refill", "last_holes", "last_waits", "last_ns", "trace")

    def __init__(self, allocator, strategy: str = "array", nslots: int = RPCSVC_MAXPAGES):
        if strategy not in STRATEGIES:
            raise ValueError("strategy must be one of %s" % ", ".join(STRATEGIES))
        self.allocator = allocator
        self.strategy = strategy
        self.nslots = nslots
        self.pages = allocator.page_array(nslots)
        self.views = self.pages.views()           # persistent per-slot buffers, built once
        self.page_list = allocator.page_list()
        self.holes_lo, self.holes_hi = 0, nslots  # every slot starts empty
        self._refill = getattr(self, "_refill_" + strategy)
        self.last_holes = self.last_waits = self.last_ns = 0
        self.trace = None        # a list to record ("refill", n) / ("release", n) events (tests)

    # -- holes bookkeeping -------------------------------------------------
    def note_holes(self, lo: int, hi: int) -> None:
        """Slots [lo, hi) were emptied: widen the range the `range` strategy refills."""
        if lo >= hi:
            return
        if self.holes_lo >= self.holes_hi:
            self.holes_lo, self.holes_hi = lo, hi
        else:
            self.holes_lo = min(self.holes_lo, lo)
            self.holes_hi = max(self.holes_hi, hi)

    def release(self, lo: int, hi: int) -> int:
        """Free the pages of slots [lo, hi) in one batch and leave the slots empty (svc_free_res_pages)."""
        n = self.allocator.free_pages_bulk(self.pages, lo, hi)
        self.note_holes(lo, hi)
        if self.trace is not None:
            self.trace.append(("release", n))
        return n

    def release_all(self) -> int:
        n = self.allocator.free_pages_bulk(self.pages)
        n += self.allocator.free_pages_bulk(self.page_list)
        self.holes_lo, self.holes_hi = 0, self.nslots
        return n

    # -- svc_alloc_arg -----------------------------------------------------
    def svc_alloc_arg(self, should_stop=None) -> bool:
        """Refill every empty slot with the request's strategy.

        Returns False if `should_stop()` became true while waiting for memory
        (the slots filled so far stay filled). Sets last_holes (pages refilled),
        last_waits and last_ns (time of the whole call).
        """
        holes = self.pages.count_empty()
        t0 = time.perf_counter_ns()
        ok, waits = self._refill(should_stop)
        self.last_ns = time.perf_counter_ns() - t0
        self.last_holes = holes - self.pages.count_empty()
        self.last_waits = waits
        if self.trace is not None:
            self.trace.append(("refill", self.last_holes))
        if ok:
            self.holes_lo = self.holes_hi = 0
        return ok

    def _wait(self, seq, waits, should_stop):
        """No progress: sleep until a page is freed (bounded back-off). False to give up."""
        if should_stop is not None and should_stop():
            return False
        delay = min(WAIT_MAX, WAIT_MIN * (1 << min(waits, 16)))
        self.allocator.wait_for_free(seq, delay)
        return not (should_stop is not None and should_stop())

    def _refill_single(self, should_stop):
        pages = self.pages
        alloc_page = self.allocator.alloc_page
        waits = 0
        for i in range(self.nslots):
            while pages[i] is None:
                seq = self.allocator.free_seq()
                p = alloc_page()
                if p is None:
                    if not self._wait(seq, waits, should_stop):
                        return False, waits + 1
                    waits += 1
                    continue
                pages[i] = p
        return True, waits

    def _refill_list(self, should_stop):
        pages, lst = self.pages, self.page_list
        bulk_list = self.allocator.alloc_pages_bulk_list
        waits = 0
        needed = pages.count_empty()
        while needed:
            seq = self.allocator.free_seq()
            if bulk_list(needed, lst) == 0:
                if not self._wait(seq, waits, should_stop):
                    return False, waits + 1
                waits += 1
                continue
            needed -= pages.fill_from_list(lst)
        return True, waits

    def _refill_array(self, should_stop):
        pages, n = self.pages, self.nslots
        bulk_array = self.allocator.alloc_pages_bulk_array
        waits = filled = 0
        while filled < n:
            seq = self.allocator.free_seq()
            ret = bulk_array(n, pages)
            if ret > filled:
                filled = ret
                continue
            if not self._wait(seq, waits, should_stop):
                return False, waits + 1
            waits += 1
        return True, waits

    def _refill_range(self, should_stop):
        lo, hi = self.holes_lo, self.holes_hi
        n = hi - lo
        bulk_array = self.allocator.alloc_pages_bulk_array
        waits = filled = 0
        while filled < n:
            seq = self.allocator.free_seq()
            ret = bulk_array(n, self.pages, lo)
            if ret > filled:
                filled = ret
                continue
            if not self._wait(seq, waits, should_stop):
                return False, waits + 1
            waits += 1
        return True, waits
