"""SvcRqst: one worker's request struct, its page array, and svc_alloc_arg.

Ownership: a SvcRqst belongs to exactly one worker thread for its whole life
(as an svc_rqst belongs to one nfsd thread). Its PageArray `pages` has
`nslots` slots (the server sizes it as svc_serv_maxpages() for its maximum
payload: 260 for 1 MiB); every page in it is owned by the request. A call
record is received into slots [0, call_pages); the reply is built in the
slots after it; after the reply is sent those reply slots are freed in one
batch and left empty: they are the holes the next svc_alloc_arg refills. A
transport that parks a partial record takes the pages of slots [0, n).

svc_alloc_arg(strategy) refills every empty slot before the worker waits for
a transport, as the kernel's svc_recv() does first, with one of the
strategies declared in alloc.strategies (single, list, array, range, nfree);
the request records where it emptied slots (`holes`, an alloc.strategies
Holes: the transport's count, the reply's range, their span) for `range`
and `nfree`, and counts the slots each refill visited (last_scanned).
When a call makes no progress the worker sleeps until a page is freed
anywhere (Allocator.wait_for_free), with a bounded back-off, and counts the
wait; a stop request ends the wait (the kernel's -EINTR / kthread_should_stop).

Overcommit: if workers together want more pages than the arena has (the
server sizes requests to avoid that, unless told otherwise), every worker
could sit on a part-filled array waiting for the others. So a worker that
has made no progress for STALL_WAITS waits in a row gives all its pages
back and starts over after a random pause: hold-and-wait is broken, one
worker at a time gets its full array, and the stall is counted.
"""

from __future__ import annotations

import random
import time

from alloc import RPCSVC_MAXPAGES
from alloc.strategies import STRATEGIES, Holes

#: first and last wait of the no-progress back-off (seconds)
WAIT_MIN = 0.001
WAIT_MAX = 0.5
#: the back-off doubles WAIT_MIN at most this many times (then WAIT_MAX caps it)
WAIT_DOUBLINGS = 16
#: consecutive waits without progress after which a worker gives its pages back
STALL_WAITS = 4
#: after a stall, the worker pauses a random time up to this long (seconds) before starting over
STALL_PAUSE = WAIT_MIN * STALL_WAITS * 4
#: _wait's answer after a stall gave the pages back: refill from scratch
RESTART = "restart"


class SvcRqst:
    """A worker's request: page array, reply packer, and the bookkeeping of its holes."""

    __slots__ = ("allocator", "strategy", "pages", "views", "nslots", "holes", "nholes",
                 "page_list", "_refill", "last_holes", "last_waits", "last_ns", "last_scanned", "trace", "stalls",
                 "_rnd", "_given_back", "_waits", "_should_stop", "_shared")

    def __init__(self, allocator, strategy: str = "array", nslots: int = RPCSVC_MAXPAGES, *, pages=None,
                 page_list=None):
        """pages/page_list: an existing PageArray (of nslots) and PageList to refill instead of new
        ones (the compiled fast path's single-py strategy runs this loop on its worker's array)."""
        if strategy not in STRATEGIES:
            raise ValueError("strategy must be one of %s" % ", ".join(STRATEGIES))
        self._refill = STRATEGIES[strategy].refill
        self.allocator = allocator
        self.strategy = strategy
        self.nslots = nslots
        self.pages = allocator.page_array(nslots) if pages is None else pages
        self.views = self.pages.views()           # persistent per-slot buffers, built once
        self.page_list = allocator.page_list() if page_list is None else page_list
        self.holes = Holes(nslots)               # every slot starts empty
        self.nholes = nslots                     # empty slots, kept exact (no scan to count them)
        # count the holes by scanning when another owner empties slots too, or when the strategy
        # visits every slot anyway; range and nfree use the exact count (no scan of the array)
        self._shared = pages is not None or strategy not in ("range", "nfree")
        self.last_holes = self.last_waits = self.last_ns = self.last_scanned = 0
        self.trace = None        # a list to record ("refill", n) / ("release", n) events (tests)
        self.stalls = 0          # times this worker gave its pages back to break a stall
        self._given_back = 0
        self._waits = 0
        self._should_stop = None
        self._rnd = random.Random()

    # -- holes bookkeeping -------------------------------------------------
    def note_taken(self, n: int) -> None:
        """The transport took the pages of slots [0, n) (a parked partial record: rq_pages_nfree)."""
        self.holes.taken(n)
        self.nholes += n

    def release(self, lo: int, hi: int) -> int:
        """Free the pages of slots [lo, hi) in one batch and leave the slots empty (svc_free_res_pages)."""
        n = self.allocator.free_pages_bulk(self.pages, lo, hi)
        self.holes.released(lo, hi)
        self.nholes += n
        if self.trace is not None:
            self.trace.append(("release", n))
        return n

    def release_all(self) -> int:
        n = self.allocator.free_pages_bulk(self.pages)
        n += self.allocator.free_pages_bulk(self.page_list)
        self.holes.everything(self.nslots)
        self.nholes = self.nslots
        return n

    # -- svc_alloc_arg -----------------------------------------------------
    def svc_alloc_arg(self, should_stop=None) -> bool:
        """Refill every empty slot with the request's strategy.

        Returns False if `should_stop()` became true while waiting for memory
        (the slots filled so far stay filled). Sets last_holes (pages put into
        slots), last_waits and last_ns (time of the whole call).
        """
        holes = self.pages.count_empty() if self._shared else self.nholes
        self._given_back = 0
        self._waits = 0
        self._should_stop = should_stop
        h = self.holes
        h.scanned = 0
        t0 = time.perf_counter_ns()
        while True:
            ok = self._refill(self.allocator, self.pages, self.page_list, h, self._wait)
            if ok is not RESTART:
                break
        self.last_ns = time.perf_counter_ns() - t0
        self.nholes = 0 if ok else self.pages.count_empty()
        self.last_holes = holes + self._given_back - self.nholes
        self.last_waits = self._waits
        self.last_scanned = h.scanned
        if self.trace is not None:
            self.trace.append(("refill", self.last_holes))
        if ok:
            h.clear()
        return ok

    def _wait(self, seq):
        """No progress: sleep until a page is freed (bounded back-off).

        Returns True to retry, False to give up (stop requested), or RESTART
        after giving every page back (every STALL_WAITS waits in a row).
        """
        should_stop = self._should_stop
        self._waits += 1
        waits = self._waits
        if should_stop is not None and should_stop():
            return False
        if waits % STALL_WAITS == 0:
            n = self.allocator.free_pages_bulk(self.pages) + self.allocator.free_pages_bulk(self.page_list)
            self.holes.everything(self.nslots)
            self._given_back += n
            self.stalls += 1
            if self.trace is not None:
                self.trace.append(("stall", n))
            time.sleep(self._rnd.uniform(0, STALL_PAUSE))
            return RESTART if not (should_stop is not None and should_stop()) else False
        delay = min(WAIT_MAX, WAIT_MIN * (1 << min(waits, WAIT_DOUBLINGS)))
        self.allocator.wait_for_free(seq, delay)
        return not (should_stop is not None and should_stop())
