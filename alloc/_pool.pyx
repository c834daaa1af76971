# cython: language_level=3
"""PagePool: a page cache with bulk refill and recycling, modelled on net/core/page_pool.c (5.13).

Theory (read this before changing anything below)
-------------------------------------------------
A PagePool sits between a packet receiver (one consumer thread: the NAPI
poll loop of a receive queue) and the page allocator. Every page it knows
of is PS_ALLOC in the allocator: the pool owns it while it is in the cache
or the ring, a consumer owns it once handed out. ``owner[pfn]`` records
which (PG_IN_POOL / PG_OUT / PG_NOT_OURS), so a page that is recycled twice
or was never ours is refused instead of corrupting the cache.

Allocation, fastest first (page_pool_alloc_pages):
  1. fast path     pop the hottest page of ``cache[0:count]`` (128 slots,
                   PP_ALLOC_CACHE_SIZE).
  2. ring refill   the cache is empty: pull up to 64 (PP_ALLOC_CACHE_REFILL)
                   pages from the recycle ring under ring_lock
                   (page_pool_refill_alloc_cache), then pop one.
  3. slow path     (__page_pool_alloc_pages_slow) by strategy:
                     array   zero cache[0:64], alloc_pages_bulk_array(64, cache);
                             the return value is the number of pages allocated by
                             this call because the slots were empty (5.13);
                     list    alloc_pages_bulk(64) onto a local list; the first page
                             goes to the caller, the rest into the cache (v4 list
                             variant; no DMA mapping here, so nothing is put back);
                     single  one page through the allocator's single-page path
                             (the baseline: one allocator call per page).
                   A refill that returns 0 pages returns NULL (None): the caller
                   drops the packet and counts it. A non-empty cache on entry to
                   the slow path returns a cached page (the defensive check).

Recycling (the consumer is done with a page):
  direct   (page_pool_recycle_direct, only from the consumer thread) into the
           cache if it has room, else as ``ring``;
  ring     (ptr_ring_produce, any thread) into the bounded recycle ring; a full
           ring releases the page to the allocator (page_pool_return_page);
  release  (page_pool_release_page) straight back to the allocator: what a
           page redirected out of the pool's reach meets (XDP_REDIRECT to
           veth in 5.13), so the next packet needs a fresh page.
close() (page_pool_destroy) releases the cache and the ring; pages still out
are released when they come back. No page is lost:
``pages_from_allocator == released + in cache + in ring + out``.

Threads: the cache and its counters belong to the one consumer thread; the
ring is multi-producer under ring_lock (ptr_ring's producer lock; the
consumer's pull takes the same lock). The per-page methods (get_page,
put_page, release_page and the refills behind them) touch no Python object and
may run with the GIL released (rpcsrv/xprt/_udpfast.pyx's receive loop); the
cache is still the one consumer thread's, with or without the GIL. The
allocator's locks are only held inside its own calls (lock order: ring_lock
is never held while calling the allocator).
"""

cimport cython
from libc.stdint cimport int32_t, int64_t, uint64_t, uint8_t
from libc.stdlib cimport malloc, calloc, free

from alloc._core cimport (Allocator, PageArray, PageList, cpu_t, pthread_mutex_t, NO_PAGE, PAGE_SIZE,
                          PS_ALLOC, API_SINGLE)

cdef extern from "pthread.h" nogil:
    int pthread_mutex_init(pthread_mutex_t *, void *)
    int pthread_mutex_destroy(pthread_mutex_t *)
    int pthread_mutex_lock(pthread_mutex_t *)
    int pthread_mutex_unlock(pthread_mutex_t *)

cdef extern from "time.h" nogil:
    ctypedef long time_t
    cdef struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int, timespec *)
    int CLOCK_MONOTONIC
    int CLOCK_THREAD_CPUTIME_ID

STRATEGIES = ("single", "list", "array")
CACHE_SIZE = PP_ALLOC_CACHE_SIZE
CACHE_REFILL = PP_ALLOC_CACHE_REFILL
RECYCLE_MODES = ("direct", "ring", "release")


cdef inline int64_t _now_ns(int clk=CLOCK_MONOTONIC) noexcept nogil:
    cdef timespec ts
    clock_gettime(clk, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


@cython.final
cdef class PagePool:
    """PagePool(allocator, strategy="array", ring_size=1024): page_pool for one receive queue.

    strategy: "array" (bulk array refill of 64), "list" (bulk list refill of 64) or
    "single" (one page per slow-path call, the baseline). ring_size: slots of the
    recycle ring (rounded up to a power of two).
    """

    def __cinit__(self, Allocator allocator not None, strategy="array", int ring_size=1024):
        cdef int size = 1
        if strategy not in STRATEGIES:
            raise ValueError("strategy must be one of %s" % ", ".join(STRATEGIES))
        if ring_size < 1 or ring_size > (1 << 20):
            raise ValueError("ring_size must be in 1..2^20")
        while size < ring_size:
            size <<= 1
        self.allocator = allocator
        self.strategy_id = STRATEGIES.index(strategy)
        self._lst = allocator.page_list()
        self.count = 0
        self.ring = <int32_t *>malloc(size * sizeof(int32_t))
        self.owner = <uint8_t *>calloc(allocator.nr_pages, 1)
        if self.ring == NULL or self.owner == NULL:
            raise MemoryError()
        self.ring_mask = size - 1
        self.ring_head = 0
        self.ring_count = 0
        pthread_mutex_init(&self.ring_lock, NULL)
        self._lock_init = True
        self.closed = False

    def __dealloc__(self):
        if self.ring != NULL and self.allocator is not None and not self.closed:
            try:
                self.close()
            except Exception:
                pass
        if self._lock_init:
            pthread_mutex_destroy(&self.ring_lock)
        free(self.ring)
        free(self.owner)

    # ------------------------------------------------------------------ C level
    cdef void _free_to_allocator(self, int32_t *pages, Py_ssize_t n) noexcept nogil:
        """Give pages[0:n] back to the allocator in one per-thread lock hold (they become NO_PAGE)."""
        cdef cpu_t *cpu
        cdef Py_ssize_t i
        if n <= 0:
            return
        for i in range(n):
            if pages[i] != NO_PAGE:
                self.owner[pages[i]] = PG_NOT_OURS
        cpu = self.allocator.this_cpu()
        pthread_mutex_lock(&cpu.lock)
        self.allocator._free_slots(cpu, pages, n)
        pthread_mutex_unlock(&cpu.lock)
        self.allocator.wake_waiters()
        self.n_released += n

    cdef int _refill_from_ring(self) noexcept nogil:
        """page_pool_refill_alloc_cache: move up to 64 ring pages into the empty cache."""
        cdef int n = 0
        pthread_mutex_lock(&self.ring_lock)
        while n < PP_ALLOC_CACHE_REFILL and self.ring_count > 0:
            self.cache[n] = self.ring[self.ring_head]
            self.ring_head = (self.ring_head + 1) & self.ring_mask
            self.ring_count -= 1
            n += 1
        pthread_mutex_unlock(&self.ring_lock)
        if n:
            self.count = n
            self.n_ring_refill += 1
            self.n_ring_pages += n
        return n

    cdef int32_t _alloc_slow(self) noexcept nogil:
        """__page_pool_alloc_pages_slow: refill from the allocator by strategy; NO_PAGE if nothing came.

        No Python object is touched (the receive loop calls this with the GIL released): the
        allocator and the list are reached through self's typed attributes, never bound to locals.
        """
        cdef cpu_t *cpu
        cdef int32_t pfn
        cdef Py_ssize_t nr, i
        if self.count > 0:                       # defensive: a cached page is always preferred
            self.count -= 1
            pfn = self.cache[self.count]
            self.owner[pfn] = PG_OUT
            return pfn
        self.n_slow += 1
        cpu = self.allocator.this_cpu()
        if self.strategy_id == PP_ARRAY:
            for i in range(PP_ALLOC_CACHE_REFILL):
                self.cache[i] = NO_PAGE          # zeroed first: the return value is pages allocated now
            nr = self.allocator.bulk(cpu, PP_ALLOC_CACHE_REFILL, self.cache, <PageList>NULL)
            if nr <= 0:
                self.n_slow_empty += 1
                return NO_PAGE
            for i in range(nr):
                self.owner[self.cache[i]] = PG_IN_POOL
            self.n_from_alloc += nr
            self.count = <int>nr
            self.count -= 1
            pfn = self.cache[self.count]
        elif self.strategy_id == PP_LIST:
            nr = self.allocator.bulk(cpu, PP_ALLOC_CACHE_REFILL, NULL, self._lst)
            if nr <= 0 or self._lst.head == NO_PAGE:
                self.n_slow_empty += 1
                return NO_PAGE
            self.n_from_alloc += nr
            pfn = self._lst.head                  # the first entry goes to the caller
            self._lst.head = self.allocator.next[pfn]
            self._lst.count -= 1
            while self._lst.head != NO_PAGE and self.count < PP_ALLOC_CACHE_SIZE:
                i = self._lst.head
                self._lst.head = self.allocator.next[i]
                self._lst.count -= 1
                self.cache[self.count] = <int32_t>i
                self.owner[i] = PG_IN_POOL
                self.count += 1
            if self._lst.head != NO_PAGE:         # cannot happen with an empty cache; never leak
                with gil:
                    self.n_released += self.allocator.free_pages_bulk(self._lst)
        else:
            pfn = self.allocator.alloc_single(cpu, API_SINGLE)
            pthread_mutex_lock(&cpu.lock)         # account the call as Allocator.alloc_page does
            cpu.calls[API_SINGLE] += 1
            if pfn == NO_PAGE:
                cpu.failures[API_SINGLE] += 1
            pthread_mutex_unlock(&cpu.lock)
            if pfn == NO_PAGE:
                self.n_slow_empty += 1
                return NO_PAGE
            self.n_from_alloc += 1
        self.owner[pfn] = PG_OUT
        return pfn

    cdef int32_t get_page(self) noexcept nogil:
        """page_pool_alloc_pages: a page frame number, or NO_PAGE (drop the packet)."""
        cdef int32_t pfn
        if self.closed:
            return NO_PAGE
        if self.count > 0 or (self.ring_count > 0 and self._refill_from_ring() > 0):
            self.count -= 1
            pfn = self.cache[self.count]
            self.owner[pfn] = PG_OUT
            self.n_fast += 1
            return pfn
        return self._alloc_slow()

    cdef int put_page(self, int32_t pfn, bint direct) noexcept nogil:
        """Recycle a page we handed out: 0 recycled, 1 released (ring full / closed), -1 not ours."""
        cdef bint stored = False
        if pfn < 0 or pfn >= self.allocator.nr_pages or self.owner[pfn] != PG_OUT:
            return -1
        if self.closed:
            return self.release_page(pfn)
        if direct and self.count < PP_ALLOC_CACHE_SIZE:
            self.owner[pfn] = PG_IN_POOL
            self.cache[self.count] = pfn
            self.count += 1
            self.n_recycled_direct += 1
            return 0
        pthread_mutex_lock(&self.ring_lock)
        if self.ring_count <= self.ring_mask:
            self.owner[pfn] = PG_IN_POOL
            self.ring[(self.ring_head + self.ring_count) & self.ring_mask] = pfn
            self.ring_count += 1
            self.n_recycled_ring += 1
            stored = True
        else:
            self.n_ring_full += 1
        pthread_mutex_unlock(&self.ring_lock)
        if stored:
            return 0
        self.release_page(pfn)
        return 1

    cdef int release_page(self, int32_t pfn) noexcept nogil:
        """page_pool_release_page: back to the allocator. 1 released, -1 not a page we handed out."""
        if pfn < 0 or pfn >= self.allocator.nr_pages or self.owner[pfn] != PG_OUT:
            return -1
        self._free_to_allocator(&pfn, 1)
        return 1

    # ------------------------------------------------------------- Python API
    @property
    def strategy(self):
        return STRATEGIES[self.strategy_id]

    @property
    def cache_count(self):
        """Pages in the alloc cache now."""
        return self.count

    @property
    def ring_count(self):
        """Pages in the recycle ring now."""
        return self.ring_count

    @property
    def ring_size(self):
        return self.ring_mask + 1

    def alloc(self):
        """One page (a page frame number) or None when the allocator gave nothing (drop the packet)."""
        cdef int32_t pfn = self.get_page()
        return None if pfn == NO_PAGE else pfn

    def alloc_into(self, PageArray pa not None, Py_ssize_t slot):
        """Put a pool page into an empty slot of pa; False if none could be had."""
        cdef int32_t pfn
        if pa.alloc is not self.allocator:
            raise ValueError("PageArray belongs to another allocator")
        if not 0 <= slot < pa.nslots:
            raise IndexError("slot %d out of range" % slot)
        if pa.slots[slot] != NO_PAGE:
            raise ValueError("slot %d is not empty" % slot)
        pfn = self.get_page()
        if pfn == NO_PAGE:
            return False
        pa.slots[slot] = pfn
        return True

    def recycle(self, int32_t pfn, bint direct=False):
        """Give a page back: direct=True into the cache (consumer thread only), else into the ring.

        Returns True if it was recycled, False if it went back to the allocator (ring full
        or pool closed). ValueError if the page is not one this pool handed out.
        """
        cdef int r = self.put_page(pfn, direct)
        if r < 0:
            raise ValueError("page %d was not handed out by this pool (double recycle?)" % pfn)
        return r == 0

    def release(self, int32_t pfn):
        """Give a page straight back to the allocator (page_pool_release_page)."""
        if self.release_page(pfn) < 0:
            raise ValueError("page %d was not handed out by this pool" % pfn)

    cdef int32_t _take_slot(self, PageArray pa, Py_ssize_t slot) except -2:
        cdef int32_t pfn
        if pa.alloc is not self.allocator:
            raise ValueError("PageArray belongs to another allocator")
        if not 0 <= slot < pa.nslots:
            raise IndexError("slot %d out of range" % slot)
        if pa.exports[slot]:
            raise BufferError("slot %d is exported to a buffer; release it first" % slot)
        pfn = pa.slots[slot]
        if pfn == NO_PAGE:
            return NO_PAGE
        if self.owner[pfn] != PG_OUT:
            raise ValueError("slot %d holds page %d which this pool did not hand out" % (slot, pfn))
        pa.slots[slot] = NO_PAGE
        return pfn

    def recycle_slot(self, PageArray pa not None, Py_ssize_t slot, mode="direct"):
        """Empty pa[slot] (if it holds a page) and give the page back by mode: direct, ring or release.

        Returns 1 if a page was given back, 0 if the slot was empty.
        """
        cdef int32_t pfn = self._take_slot(pa, slot)
        if pfn == NO_PAGE:
            return 0
        if mode == "release":
            self.release_page(pfn)
        else:
            self.put_page(pfn, mode == "direct")
        return 1

    def close(self):
        """page_pool_destroy: release the cache and the ring to the allocator (idempotent).

        Pages still out are released when they are recycled. Returns pages released now.
        """
        cdef Py_ssize_t n = 0, got
        cdef int32_t buf[PP_ALLOC_CACHE_SIZE]
        cdef int k
        if self.closed:
            return 0
        self.closed = True
        if self.count:
            n += self.count
            self._free_to_allocator(self.cache, self.count)
            self.count = 0
        while True:
            k = 0
            pthread_mutex_lock(&self.ring_lock)
            while k < PP_ALLOC_CACHE_SIZE and self.ring_count > 0:
                buf[k] = self.ring[self.ring_head]
                self.ring_head = (self.ring_head + 1) & self.ring_mask
                self.ring_count -= 1
                k += 1
            pthread_mutex_unlock(&self.ring_lock)
            if k == 0:
                break
            n += k
            self._free_to_allocator(buf, k)
        if self._lst is not None and len(self._lst):
            self.n_released += self.allocator.free_pages_bulk(self._lst)
        return n

    def stats(self):
        """Counters and gauges (a snapshot; the consumer's counters are read without a lock)."""
        cdef uint64_t recycled = self.n_recycled_direct + self.n_recycled_ring
        return {
            "strategy": STRATEGIES[self.strategy_id],
            "alloc_fast": self.n_fast,
            "ring_refills": self.n_ring_refill,
            "ring_pages": self.n_ring_pages,
            "alloc_slow": self.n_slow,
            "alloc_slow_empty": self.n_slow_empty,
            "pages_from_allocator": self.n_from_alloc,
            "recycled": recycled,
            "recycled_direct": self.n_recycled_direct,
            "recycled_ring": self.n_recycled_ring,
            "ring_full": self.n_ring_full,
            "released": self.n_released,
            "cache_pages": self.count,
            "ring_pages_now": self.ring_count,
            "inflight": <int64_t>self.n_from_alloc - <int64_t>self.n_released - self.count - self.ring_count,
        }

    # ----------------------------------------------------------- microbenchmark
    def time_alloc(self, Py_ssize_t n, mode="release", Py_ssize_t batch=1024, clock="thread"):
        """ns per page of n page_pool_alloc_pages calls, timed in C (no Python per page).

        clock "thread" (default): the calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID), so time
        the thread spends descheduled on a busy machine is not counted; "wall": CLOCK_MONOTONIC.

        mode "release": pages are handed back to the allocator in untimed batches of `batch`
        (the XDP_REDIRECT case: every page is new, so refills are on the timed path);
        "direct": each page is recycled into the cache right away (the XDP_DROP case: the
        fast path only). Returns (ns_per_page, pages, slow_calls).
        """
        cdef int32_t *buf
        cdef Py_ssize_t done = 0, k, i
        cdef int64_t t0, total = 0
        cdef uint64_t slow0 = self.n_slow
        cdef int32_t pfn
        cdef bint direct = mode == "direct"
        cdef int clk = CLOCK_THREAD_CPUTIME_ID if clock == "thread" else CLOCK_MONOTONIC
        if clock not in ("thread", "wall"):
            raise ValueError("clock is thread or wall")
        if mode not in ("release", "direct"):
            raise ValueError("mode is release or direct")
        if batch < 1:
            raise ValueError("batch must be >= 1")
        buf = <int32_t *>malloc(batch * sizeof(int32_t))
        if buf == NULL:
            raise MemoryError()
        try:
            while done < n:
                k = batch if n - done > batch else n - done
                t0 = _now_ns(clk)
                if direct:
                    for i in range(k):
                        pfn = self.get_page()
                        if pfn == NO_PAGE:
                            raise MemoryError("the pool got no page")
                        self.put_page(pfn, True)
                else:
                    for i in range(k):
                        pfn = self.get_page()
                        if pfn == NO_PAGE:
                            self._free_to_allocator(buf, i)
                            raise MemoryError("the pool got no page")
                        buf[i] = pfn
                total += _now_ns(clk) - t0
                if not direct:
                    self._free_to_allocator(buf, k)
                done += k
        finally:
            free(buf)
        return (<double>total / n if n else 0.0), done, self.n_slow - slow0

    def alloc_slow(self):
        """The slow path alone (__page_pool_alloc_pages_slow), for tests: a page or None.

        With pages in the cache it returns a cached page and allocates nothing (the defensive check).
        """
        cdef int32_t pfn
        if self.closed:
            return None
        pfn = self._alloc_slow()
        return None if pfn == NO_PAGE else pfn
