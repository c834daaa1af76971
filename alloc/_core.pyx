# cython: freethreading_compatible=False
"""The page allocator: zones, buddy free lists, per-thread page lists, three APIs.

Theory (read this before changing anything below)
-------------------------------------------------
The arena is one anonymous mmap of ``nr_pages`` 4096-byte pages. A page is
named by its frame number (pfn), 0 <= pfn < nr_pages; NO_PAGE (-1) is NULL.
Each page has a descriptor spread over C arrays indexed by pfn (``state``,
``order``, ``zid``, ``next``, ``prev``): the ``struct page`` equivalent.

Zones split the arena into contiguous pfn ranges in address order (by default
a small "DMA32" zone below a large "Normal" zone). The zonelist is walked from
the highest zone down (Normal -> DMA32), and a fallback into a lower zone must
clear that zone's ``lowmem_reserve`` for the requested class as well as the
watermark. Watermarks are computed as mm/page_alloc.c does
(min_free_kbytes = sqrt(16 * lowmem_kbytes) clamped to [128, 262144], split by
managed size; low/high = min + max(min/4, managed * scale / 10000) times 1 and 2).

Page states and who owns a page in each:
  PS_BUDDY  head of a free block of 2^order pages on zone.free_head[order];
            owned by the zone, changed only under zone.lock.
  PS_TAIL   free page inside such a block (not on any list).
  PS_PCP    on one per-thread list (cpu.pcp[zone]); owned by that cpu_t,
            changed only under cpu.lock.
  PS_ALLOC  handed out; owned by the caller (a PageArray slot, a PageList, or
            plain Python code holding the int). next/prev are free for the
            owner's use (PageList links pages through next[]).

Per-thread lists ("cpus"): each thread that calls the allocator is given a
cpu_t the first time (thread-local cache keyed by allocator identity). Each
list is a ring of frame numbers (see _core.pxd) with the kernel list's order.
The fast path takes the hottest page from the head of its own list; an empty list
is refilled with ``batch`` pages from the buddy lists under one zone.lock hold
(rmqueue_bulk: smallest fitting block, split, appended at the tail); frees go
to the head and, when count >= high, ``batch`` pages from the tail go back to
the buddy lists, coalescing (free_pcppages_bulk). Threads beyond max_threads
share cpu_t structures; that is safe because every cpu_t has its own lock.

Locks and order: cpu.lock -> zone.lock. Never the other way. drain_all takes
one cpu.lock at a time (and never while holding its own). No Python object is
touched while any of these locks is held, so holding the GIL while blocking on
one of them cannot deadlock. reg_lock guards thread registration only;
wait_lock/wait_cond serve wait_for_free().

The GIL is not the lock: every structure above is guarded by its own mutex,
and the long paths (drain_all, waiting) run without the GIL.

Counters are plain increments in cpu_t under cpu.lock (the kernel's per-cpu
vm events); stats() sums them.

Bulk semantics follow the fixed kernel (5.19 and later), see
shared/design/kernel-reference.md §1 and alloc/__init__.py.

Included parts (one extension module): the zone sizing functions are
alloc/_core_zones.pxi; the caller-owned containers (PageList, PageView,
PageArray) alloc/_core_pages.pxi, included at the end of this file.
"""

from cpython.buffer cimport PyBuffer_FillInfo, PyObject_GetBuffer, PyBuffer_Release, PyBUF_WRITABLE, PyBUF_SIMPLE
from cpython.object cimport PyObject
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memset, memcpy, strncpy
from libc.stdint cimport int32_t, int64_t, uint64_t, uint8_t, int8_t
from libc.math cimport sqrt

import mmap as _mmap
import os as _os
import threading as _threading

cdef extern from "pthread.h" nogil:
    int pthread_mutex_init(pthread_mutex_t *, void *)
    int pthread_mutex_destroy(pthread_mutex_t *)
    int pthread_mutex_lock(pthread_mutex_t *)
    int pthread_mutex_unlock(pthread_mutex_t *)
    int pthread_cond_init(pthread_cond_t *, void *)
    int pthread_cond_destroy(pthread_cond_t *)
    int pthread_cond_broadcast(pthread_cond_t *)
    int pthread_cond_timedwait(pthread_cond_t *, pthread_mutex_t *, const void *)
    pthread_t pthread_self()

cdef extern from "time.h" nogil:
    ctypedef long time_t
    cdef struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int, timespec *)
    int CLOCK_REALTIME

cdef extern from *:
    """
    static __thread long nfsbulk_tls_ident = 0;
    static __thread void *nfsbulk_tls_cpu = 0;
    static inline long nfsbulk_get_tls_ident(void) { return nfsbulk_tls_ident; }
    static inline void *nfsbulk_get_tls_cpu(void) { return nfsbulk_tls_cpu; }
    static inline void nfsbulk_set_tls(long ident, void *cpu) {
        nfsbulk_tls_ident = ident; nfsbulk_tls_cpu = cpu;
    }
    static inline unsigned long nfsbulk_atomic_inc(unsigned long *p) {
        return __atomic_add_fetch(p, 1, __ATOMIC_SEQ_CST);
    }
    static inline unsigned long nfsbulk_atomic_load(unsigned long *p) {
        return __atomic_load_n(p, __ATOMIC_SEQ_CST);
    }
    static inline int nfsbulk_atomic_load_int(int *p) {
        return __atomic_load_n(p, __ATOMIC_SEQ_CST);
    }
    static inline void nfsbulk_atomic_add_int(int *p, int v) {
        __atomic_add_fetch(p, v, __ATOMIC_SEQ_CST);
    }
    """
    long nfsbulk_get_tls_ident() nogil
    void *nfsbulk_get_tls_cpu() nogil
    void nfsbulk_set_tls(long, void *) nogil
    unsigned long nfsbulk_atomic_inc(uint64_t *) nogil
    unsigned long nfsbulk_atomic_load(uint64_t *) nogil
    int nfsbulk_atomic_load_int(int *) nogil
    void nfsbulk_atomic_add_int(int *, int) nogil

API_NAMES = ("single", "bulk_list", "bulk_array")
#: compiled svc_alloc_arg strategies, by name (alloc.strategies maps its table onto these)
SVC_COMPILED = {"single": SVC_SINGLE, "list": SVC_LIST, "array": SVC_ARRAY, "range": SVC_RANGE,
                "nfree": SVC_NFREE}
FALLBACK_NAMES = ("last_page", "watermark", "pcp_empty")
WMARK_NAMES = ("min", "low", "high")
ORDERS = MAX_ORDER
PAGE_BYTES = PAGE_SIZE

cdef enum:
    POISON = 0x6b
    DMA32_LOWMEM_RESERVE_RATIO = 256

cdef inline Py_ssize_t _count_empty(int32_t *slots, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i, n = 0
    for i in range(lo, hi):
        if slots[i] == NO_PAGE:
            n += 1
    return n


cdef long _next_ident = 1
_ident_lock = _threading.Lock()


include "_core_zones.pxi"


cdef class Allocator:
    """A zoned buddy page allocator with per-thread lists and bulk APIs.

    Allocator(arena_mib=64, *, arena_pages=None, zones=None, min_free_kbytes=None,
              watermark_scale_factor=10, batch=None, high=None, max_threads=64, debug=None)

    zones: list of (name, pages) in address order (default: default_zones()).
    batch/high: override the per-thread list sizes (default: zone_batchsize(), 6 * batch).
    debug: poison freed pages and check them when handed out again, count
    corrupt pages (default: NFSBULK_ALLOC_DEBUG=1 in the environment).
    """

    def __cinit__(self, arena_mib=64, *, arena_pages=None, zones=None, min_free_kbytes=None,
                  int watermark_scale_factor=10, batch=None, high=None, int max_threads=64,
                  debug=None):
        global _next_ident
        cdef int i, z
        cdef int64_t npages
        self.ready = False
        self._first_corrupt = -1
        with _ident_lock:
            self.ident = _next_ident
            _next_ident += 1
        if arena_pages is None:
            if arena_mib is None or arena_mib <= 0:
                raise ValueError("arena_mib must be positive")
            npages = (<int64_t>(arena_mib * 1024 * 1024)) // PAGE_SIZE
        else:
            npages = arena_pages
        if npages < 16 or npages > (1 << 30):
            raise ValueError("arena must hold between 16 and 2^30 pages, not %d" % npages)
        if zones is None:
            zones = default_zones(npages)
        zones = [(str(n), int(p)) for n, p in zones]
        if not 1 <= len(zones) <= MAX_ZONES:
            raise ValueError("between 1 and %d zones" % MAX_ZONES)
        if any(p < 8 for _, p in zones):
            raise ValueError("every zone needs at least 8 pages")
        if sum(p for _, p in zones) != npages:
            raise ValueError("zone sizes add up to %d pages, arena has %d" % (sum(p for _, p in zones), npages))
        if max_threads < 1 or max_threads > 4096:
            raise ValueError("max_threads must be in 1..4096")
        if debug is None:
            debug = _os.environ.get("NFSBULK_ALLOC_DEBUG", "") not in ("", "0")
        self.debug = bool(debug)
        self._zone_names = tuple(n for n, _ in zones)

        self.nr_pages = <int32_t>npages
        self.arena_bytes = <size_t>npages * PAGE_SIZE
        self._mmap = _mmap.mmap(-1, self.arena_bytes, flags=_mmap.MAP_PRIVATE | _mmap.MAP_ANONYMOUS,
                                prot=_mmap.PROT_READ | _mmap.PROT_WRITE)
        PyObject_GetBuffer(self._mmap, &self._arena_buf, PyBUF_WRITABLE)
        self._have_buf = True
        self.arena = <char *>self._arena_buf.buf

        self.next = <int32_t *>malloc(npages * sizeof(int32_t))
        self.prev = <int32_t *>malloc(npages * sizeof(int32_t))
        self.state = <uint8_t *>calloc(npages, sizeof(uint8_t))
        self.order = <int8_t *>calloc(npages, sizeof(int8_t))
        self.zid = <uint8_t *>calloc(npages, sizeof(uint8_t))
        self.max_cpus = max_threads
        self.cpus = <cpu_t *>calloc(max_threads, sizeof(cpu_t))
        if not (self.next and self.prev and self.state and self.order and self.zid and self.cpus):
            raise MemoryError()
        for i in range(max_threads):
            pthread_mutex_init(&self.cpus[i].lock, NULL)
        pthread_mutex_init(&self.reg_lock, NULL)
        pthread_mutex_init(&self.wait_lock, NULL)
        pthread_cond_init(&self.wait_cond, NULL)
        self._locks_init = True

        sizes = [p for _, p in zones]
        mfk, marks, reserves = compute_watermarks(sizes, min_free_kbytes, watermark_scale_factor)
        self.min_free_kbytes = mfk
        self.watermark_scale_factor = watermark_scale_factor
        self.nr_zones = len(zones)
        cdef int32_t start = 0
        cdef zone_t *zone
        for z in range(self.nr_zones):
            zone = &self.zones[z]
            memset(zone, 0, sizeof(zone_t))
            pthread_mutex_init(&zone.lock, NULL)
            zone.idx = z
            name = zones[z][0].encode()[:15]
            strncpy(zone.name, name, 15)
            zone.start = start
            zone.npages = sizes[z]
            zone.managed = sizes[z]
            for i in range(3):
                zone.wmark[i] = marks[z][i]
            for i in range(MAX_ZONES):
                zone.lowmem_reserve[i] = reserves[z][i]
            zone.batch = batch if batch is not None else zone_batchsize(zone.managed)
            zone.high = high if high is not None else 6 * zone.batch
            if zone.batch < 1 or zone.high < zone.batch:
                raise ValueError("need batch >= 1 and high >= batch")
            for i in range(MAX_ORDER):
                zone.free_head[i] = NO_PAGE
            self._init_zone(zone)
            start += sizes[z]
        cdef int cap
        for z in range(self.nr_zones):
            cap = 1
            while cap < self.zones[z].high + 1:
                cap *= 2
            for i in range(max_threads):
                self.cpus[i].pcp[z].ring = <int32_t *>malloc(cap * sizeof(int32_t))
                if self.cpus[i].pcp[z].ring == NULL:
                    raise MemoryError()
                self.cpus[i].pcp[z].mask = cap - 1
        if self.debug:
            memset(self.arena, POISON, self.arena_bytes)
        self.ready = True

    cdef void _init_zone(self, zone_t *zone) noexcept:
        # Free the zone as the largest naturally aligned blocks that fit,
        # each added at the tail (low addresses are handed out first).
        cdef int32_t rel = 0, pfn, i
        cdef int o
        for i in range(zone.npages):
            self.zid[zone.start + i] = zone.idx
            self.state[zone.start + i] = PS_TAIL
        while rel < zone.npages:
            o = MAX_ORDER - 1
            while o > 0 and ((rel & ((1 << o) - 1)) != 0 or rel + (1 << o) > zone.npages):
                o -= 1
            pfn = zone.start + rel
            self.state[pfn] = PS_BUDDY
            self.order[pfn] = o
            self._list_add_tail(zone, pfn, o)
            zone.nr_free += (1 << o)
            rel += (1 << o)

    def __dealloc__(self):
        cdef int i, z
        if self._locks_init:
            for i in range(self.max_cpus):
                pthread_mutex_destroy(&self.cpus[i].lock)
            for i in range(self.nr_zones):
                pthread_mutex_destroy(&self.zones[i].lock)
            pthread_mutex_destroy(&self.reg_lock)
            pthread_mutex_destroy(&self.wait_lock)
            pthread_cond_destroy(&self.wait_cond)
        free(self.next); free(self.prev); free(self.state); free(self.order); free(self.zid)
        if self.cpus != NULL:
            for i in range(self.max_cpus):
                for z in range(MAX_ZONES):
                    free(self.cpus[i].pcp[z].ring)
        free(self.cpus)
        if self._have_buf:
            PyBuffer_Release(&self._arena_buf)

    # ------------------------------------------------------------------ buddy
    # All of these run under zone.lock (or before the allocator is shared).

    cdef void _list_add(self, zone_t *zone, int32_t pfn, int o) noexcept nogil:
        cdef int32_t h = zone.free_head[o]
        self.prev[pfn] = NO_PAGE
        self.next[pfn] = h
        if h != NO_PAGE:
            self.prev[h] = pfn
        zone.free_head[o] = pfn
        zone.nr_free_order[o] += 1

    cdef void _list_add_tail(self, zone_t *zone, int32_t pfn, int o) noexcept nogil:
        cdef int32_t p = zone.free_head[o]
        self.next[pfn] = NO_PAGE
        if p == NO_PAGE:
            self.prev[pfn] = NO_PAGE
            zone.free_head[o] = pfn
        else:
            while self.next[p] != NO_PAGE:
                p = self.next[p]
            self.next[p] = pfn
            self.prev[pfn] = p
        zone.nr_free_order[o] += 1

    cdef void _list_del(self, zone_t *zone, int32_t pfn, int o) noexcept nogil:
        cdef int32_t n = self.next[pfn], p = self.prev[pfn]
        if p != NO_PAGE:
            self.next[p] = n
        else:
            zone.free_head[o] = n
        if n != NO_PAGE:
            self.prev[n] = p
        zone.nr_free_order[o] -= 1

    cdef int32_t _rmqueue_smallest(self, zone_t *zone) noexcept nogil:
        """Take one order-0 page: smallest non-empty order, split down (upper halves freed)."""
        cdef int o = 0, cur
        cdef int32_t pfn, buddy
        while o < MAX_ORDER and zone.free_head[o] == NO_PAGE:
            o += 1
        if o == MAX_ORDER:
            return NO_PAGE
        pfn = zone.free_head[o]
        self._list_del(zone, pfn, o)
        cur = o
        while cur > 0:
            cur -= 1
            buddy = pfn + (1 << cur)
            self.state[buddy] = PS_BUDDY
            self.order[buddy] = cur
            self._list_add(zone, buddy, cur)
        self.order[pfn] = 0
        zone.nr_free -= 1
        return pfn

    cdef void _free_one_page(self, zone_t *zone, int32_t pfn) noexcept nogil:
        """Return one order-0 page to the buddy lists, coalescing upwards."""
        cdef int32_t rel = pfn - zone.start, brel, bpfn
        cdef int o = 0
        self.state[pfn] = PS_TAIL
        while o < MAX_ORDER - 1:
            brel = rel ^ (1 << o)
            if brel + (1 << o) > zone.npages:
                break
            bpfn = zone.start + brel
            if self.state[bpfn] != PS_BUDDY or self.order[bpfn] != o:
                break
            self._list_del(zone, bpfn, o)
            self.state[bpfn] = PS_TAIL
            rel &= brel
            o += 1
        pfn = zone.start + rel
        self.state[pfn] = PS_BUDDY
        self.order[pfn] = o
        self._list_add(zone, pfn, o)
        zone.nr_free += 1

    # -------------------------------------------------------- per-thread lists

    cdef cpu_t *this_cpu(self) noexcept nogil:
        """The calling thread's cpu_t (registered on first use)."""
        cdef pthread_t me
        cdef int i, found = -1
        if nfsbulk_get_tls_ident() == self.ident:
            return <cpu_t *>nfsbulk_get_tls_cpu()
        me = pthread_self()
        pthread_mutex_lock(&self.reg_lock)
        for i in range(self.nr_cpus):
            if self.cpus[i].owner == me:
                found = i
                break
        if found < 0:
            if self.nr_cpus < self.max_cpus:
                found = self.nr_cpus
                self.nr_cpus += 1
                self.cpus[found].owner = me
                self.cpus[found].in_use = 1
            else:
                found = <int>((me >> 4) % <unsigned long>self.max_cpus)
        pthread_mutex_unlock(&self.reg_lock)
        nfsbulk_set_tls(self.ident, &self.cpus[found])
        return &self.cpus[found]

    cdef int _rmqueue_bulk(self, cpu_t *cpu, zone_t *zone, pcp_t *pcp, int count) noexcept nogil:
        """Refill a per-thread list with up to `count` pages under one zone.lock hold (tail append)."""
        cdef int i
        cdef int32_t pfn
        if self._inject_fail > 0:
            if self._inject_skip > 0:
                self._inject_skip -= 1
            else:
                self._inject_fail -= 1
                return 0
        pthread_mutex_lock(&zone.lock)
        for i in range(count):
            pfn = self._rmqueue_smallest(zone)
            if pfn == NO_PAGE:
                break
            self.state[pfn] = PS_PCP
            pcp.ring[(pcp.head + pcp.count) & pcp.mask] = pfn
            pcp.count += 1
        else:
            i = count
        pthread_mutex_unlock(&zone.lock)
        if i > 0:
            cpu.refills[zone.idx] += 1
        return i

    cdef void _free_pcppages_bulk(self, cpu_t *cpu, zone_t *zone, pcp_t *pcp, int count) noexcept nogil:
        """Move up to `count` pages from the tail (coldest) of a per-thread list to the buddy lists."""
        cdef int32_t pfn
        cdef int moved = 0
        pthread_mutex_lock(&zone.lock)
        while moved < count and pcp.count > 0:
            pcp.count -= 1
            pfn = pcp.ring[(pcp.head + pcp.count) & pcp.mask]
            self._free_one_page(zone, pfn)
            moved += 1
        pthread_mutex_unlock(&zone.lock)
        if moved:
            cpu.drains[zone.idx] += 1

    cdef int32_t _pcp_take(self, cpu_t *cpu, zone_t *zone) noexcept nogil:
        """Fast path: the hottest page of this thread's list, refilling it once if empty."""
        cdef pcp_t *pcp = &cpu.pcp[zone.idx]
        cdef int32_t pfn
        if pcp.count == 0:
            if self._rmqueue_bulk(cpu, zone, pcp, zone.batch) == 0:
                return NO_PAGE
        pfn = pcp.ring[pcp.head]
        pcp.head = (pcp.head + 1) & pcp.mask
        pcp.count -= 1
        self.state[pfn] = PS_ALLOC
        if self.debug:
            self._check_poison(pfn)
        return pfn

    cdef void _check_poison(self, int32_t pfn) noexcept nogil:
        cdef const uint8_t *p = <const uint8_t *>self.page_address(pfn)
        cdef int i
        for i in range(PAGE_SIZE):
            if p[i] != POISON:
                self._corrupt_pages += 1
                if self._first_corrupt < 0:
                    self._first_corrupt = pfn
                return

    cdef bint _watermark_ok(self, zone_t *zone, int64_t mark, int classzone) noexcept nogil:
        # order-0 form of __zone_watermark_ok / zone_watermark_fast; nr_free read without the lock
        return zone.nr_free > mark + zone.lowmem_reserve[classzone]

    cdef int32_t _get_page_from_freelist(self, cpu_t *cpu, int mark) noexcept nogil:
        cdef int z
        cdef int classzone = self.nr_zones - 1
        cdef int32_t pfn
        cdef zone_t *zone
        for z in range(self.nr_zones - 1, -1, -1):
            zone = &self.zones[z]
            if not self._watermark_ok(zone, zone.wmark[mark], classzone):
                continue
            pfn = self._pcp_take(cpu, zone)
            if pfn != NO_PAGE:
                return pfn
        return NO_PAGE

    cdef int32_t alloc_single(self, cpu_t *cpu, int api) noexcept nogil:
        """The full single-page path (__alloc_pages): LOW, then slow path MIN, then drain all and MIN.

        Called with no lock held; counts the page (not the call) against `api`.
        """
        cdef int32_t pfn
        pthread_mutex_lock(&cpu.lock)
        pfn = self._get_page_from_freelist(cpu, WMARK_LOW)
        if pfn == NO_PAGE:
            cpu.slowpath += 1
            pfn = self._get_page_from_freelist(cpu, WMARK_MIN)
            if pfn == NO_PAGE:
                pthread_mutex_unlock(&cpu.lock)
                self._drain_all()
                pthread_mutex_lock(&cpu.lock)
                cpu.drain_all += 1
                pfn = self._get_page_from_freelist(cpu, WMARK_MIN)
        if pfn != NO_PAGE:
            cpu.pages[self.zid[pfn]][api] += 1
        pthread_mutex_unlock(&cpu.lock)
        return pfn

    cdef Py_ssize_t bulk(self, cpu_t *cpu, Py_ssize_t n, int32_t *arr, PageList lst) noexcept nogil:
        """__alloc_pages_bulk: array mode when arr != NULL (over arr[0:n]), else list mode into lst."""
        cdef int api = API_BULK_ARRAY if arr != NULL else API_BULK_LIST
        cdef Py_ssize_t nr_populated = 0, nr_account = 0
        cdef int z, reason = -1
        cdef int classzone = self.nr_zones - 1
        cdef zone_t *zone = NULL
        cdef pcp_t *pcp
        cdef int32_t pfn
        cdef int32_t *ring
        cdef uint8_t *state
        cdef int head, count, mask
        if n <= 0:
            return 0
        if arr != NULL:
            while nr_populated < n and arr[nr_populated] != NO_PAGE:
                nr_populated += 1
            if nr_populated == n:
                return n
        pthread_mutex_lock(&cpu.lock)
        cpu.calls[api] += 1
        if n - nr_populated == 1:
            reason = FB_LAST_PAGE
        else:
            for z in range(self.nr_zones - 1, -1, -1):
                if self._watermark_ok(&self.zones[z], self.zones[z].wmark[WMARK_LOW] + n, classzone):
                    zone = &self.zones[z]
                    break
            if zone == NULL:
                reason = FB_WATERMARK
            else:
                # The batch: the per-thread ring's head and count live in locals
                # (written back around refills) so the loop is not a chain of
                # read-modify-writes through memory the compiler must assume aliased.
                pcp = &cpu.pcp[zone.idx]
                ring = pcp.ring
                mask = pcp.mask
                head = pcp.head
                count = pcp.count
                state = self.state
                while nr_populated < n:
                    if arr != NULL and arr[nr_populated] != NO_PAGE:
                        nr_populated += 1
                        continue
                    if count == 0:
                        pcp.head = head
                        pcp.count = 0
                        self._rmqueue_bulk(cpu, zone, pcp, zone.batch)
                        head = pcp.head
                        count = pcp.count
                        if count == 0:
                            if nr_account == 0:
                                reason = FB_PCP_EMPTY
                            break
                    pfn = ring[head]
                    head = (head + 1) & mask
                    count -= 1
                    state[pfn] = PS_ALLOC
                    if self.debug:
                        self._check_poison(pfn)
                    nr_account += 1
                    if arr != NULL:
                        arr[nr_populated] = pfn
                    else:
                        self.next[pfn] = lst.head
                        lst.head = pfn
                        lst.count += 1
                    nr_populated += 1
                pcp.head = head
                pcp.count = count
                cpu.pages[zone.idx][api] += nr_account
        if reason < 0:
            pthread_mutex_unlock(&cpu.lock)
            return nr_populated
        # failed: one page through the full single-page path
        cpu.fallbacks[reason] += 1
        pthread_mutex_unlock(&cpu.lock)
        pfn = self.alloc_single(cpu, api)
        if pfn != NO_PAGE:
            if arr != NULL:
                arr[nr_populated] = pfn
            else:
                self.next[pfn] = lst.head
                lst.head = pfn
                lst.count += 1
            nr_populated += 1
        else:
            pthread_mutex_lock(&cpu.lock)
            cpu.failures[api] += 1
            pthread_mutex_unlock(&cpu.lock)
        return nr_populated

    cdef int free_one(self, cpu_t *cpu, int32_t pfn) noexcept nogil:
        """Free one page to this thread's list; cpu.lock held. -1: not a page, -2: not allocated."""
        cdef zone_t *zone
        cdef pcp_t *pcp
        if pfn < 0 or pfn >= self.nr_pages:
            return -1
        if self.state[pfn] != PS_ALLOC:
            return -2
        zone = &self.zones[self.zid[pfn]]
        pcp = &cpu.pcp[zone.idx]
        if self.debug:
            memset(self.page_address(pfn), POISON, PAGE_SIZE)
        self.state[pfn] = PS_PCP
        pcp.head = (pcp.head - 1) & pcp.mask
        pcp.ring[pcp.head] = pfn
        pcp.count += 1
        cpu.freed[zone.idx] += 1
        if pcp.count >= zone.high:
            self._free_pcppages_bulk(cpu, zone, pcp, zone.batch)
        return 0

    cdef Py_ssize_t _free_slots(self, cpu_t *cpu, int32_t *slots, Py_ssize_t n) noexcept nogil:
        """Free the non-empty slots[0:n] to this thread's lists and empty them; cpu.lock held.

        The same work as free_one() per page, with the current zone's ring in
        locals. Returns pages freed, or -(i+1) if slots[i] is not an allocated
        page (slots before i are freed, slots from i on untouched).
        """
        cdef Py_ssize_t i, freed = 0
        cdef int32_t pfn
        cdef int z, cur = -1, head = 0, count = 0, mask = 0, high = 0
        cdef int32_t *ring = NULL
        cdef pcp_t *pcp = NULL
        cdef uint64_t nfreed[MAX_ZONES]
        cdef Py_ssize_t result
        for z in range(MAX_ZONES):
            nfreed[z] = 0
        result = 0
        for i in range(n):
            pfn = slots[i]
            if pfn == NO_PAGE:
                continue
            if pfn < 0 or pfn >= self.nr_pages or self.state[pfn] != PS_ALLOC:
                result = -(i + 1)
                break
            z = self.zid[pfn]
            if z != cur:
                if pcp != NULL:
                    pcp.head = head
                    pcp.count = count
                cur = z
                pcp = &cpu.pcp[z]
                ring = pcp.ring
                mask = pcp.mask
                head = pcp.head
                count = pcp.count
                high = self.zones[z].high
            if self.debug:
                memset(self.page_address(pfn), POISON, PAGE_SIZE)
            self.state[pfn] = PS_PCP
            head = (head - 1) & mask
            ring[head] = pfn
            count += 1
            nfreed[z] += 1
            slots[i] = NO_PAGE
            freed += 1
            if count >= high:
                pcp.head = head
                pcp.count = count
                self._free_pcppages_bulk(cpu, &self.zones[z], pcp, self.zones[z].batch)
                head = pcp.head
                count = pcp.count
        if pcp != NULL:
            pcp.head = head
            pcp.count = count
        for z in range(self.nr_zones):
            cpu.freed[z] += nfreed[z]
        return result if result < 0 else freed

    cdef void wake_waiters(self) noexcept nogil:
        nfsbulk_atomic_inc(&self._free_seq)
        if nfsbulk_atomic_load_int(&self.waiters) > 0:
            pthread_mutex_lock(&self.wait_lock)
            pthread_cond_broadcast(&self.wait_cond)
            pthread_mutex_unlock(&self.wait_lock)

    cdef Py_ssize_t _bulk_window(self, cpu_t *cpu, int32_t *slots, Py_ssize_t n,
                                 uint64_t *scanned) noexcept nogil:
        """Bulk array calls over slots[0:n] while they progress; the holes left (0: full)."""
        cdef Py_ssize_t filled = 0, ret
        while filled < n:
            scanned[0] += <uint64_t>n
            ret = self.bulk(cpu, n, slots, None)
            if ret <= filled:
                return _count_empty(slots, 0, n)
            filled = ret
        return 0

    cdef Py_ssize_t svc_refill(self, cpu_t *cpu, PageArray arr, int strategy, Py_ssize_t lo,
                               Py_ssize_t hi, Py_ssize_t nfree, Py_ssize_t resp_lo, Py_ssize_t resp_hi,
                               PageList lst, uint64_t *scanned) noexcept nogil:
        """One attempt of a compiled svc_alloc_arg strategy (SVC_*) over arr, retrying at once
        while calls make progress. Returns the holes it leaves (0: every slot it refills is full);
        the caller waits for memory and calls again. SVC_RANGE refills [lo, hi) only, SVC_NFREE
        [0, nfree) and [resp_lo, resp_hi) only; the others the whole array. `lst` is the scratch
        PageList of SVC_LIST. Adds the slots visited to *scanned (alloc.strategies counts alike)."""
        cdef Py_ssize_t i, n, needed, left
        cdef int32_t *slots = arr.slots
        cdef int32_t pfn
        if strategy == SVC_SINGLE:
            scanned[0] += <uint64_t>arr.nslots
            for i in range(arr.nslots):
                if slots[i] == NO_PAGE:
                    pfn = self.alloc_single(cpu, API_SINGLE)
                    pthread_mutex_lock(&cpu.lock)
                    cpu.calls[API_SINGLE] += 1
                    if pfn == NO_PAGE:
                        cpu.failures[API_SINGLE] += 1
                    pthread_mutex_unlock(&cpu.lock)
                    if pfn == NO_PAGE:
                        return _count_empty(slots, i, arr.nslots)
                    slots[i] = pfn
            return 0
        if strategy == SVC_LIST:
            scanned[0] += 2 * <uint64_t>arr.nslots
            needed = _count_empty(slots, 0, arr.nslots)
            while needed:
                if self.bulk(cpu, needed, NULL, lst) == 0:
                    return needed
                for i in range(arr.nslots):
                    if lst.head == NO_PAGE:
                        break
                    if slots[i] == NO_PAGE:
                        slots[i] = lst.head
                        lst.head = self.next[lst.head]
                        lst.count -= 1
                        needed -= 1
            return 0
        if strategy == SVC_NFREE:
            left = 0
            if nfree > 0:
                left = self._bulk_window(cpu, slots, nfree, scanned)
            if left == 0 and resp_hi > resp_lo:
                left = self._bulk_window(cpu, slots + resp_lo, resp_hi - resp_lo, scanned)
            return left
        if strategy == SVC_RANGE:
            if hi <= lo:
                return 0
            return self._bulk_window(cpu, slots + lo, hi - lo, scanned)
        return self._bulk_window(cpu, slots, arr.nslots, scanned)

    cdef Py_ssize_t free_slots(self, cpu_t *cpu, int32_t *slots, Py_ssize_t n) noexcept nogil:
        """Free the pages of slots[0:n] and empty them (one lock hold); wakes waiters.
        Returns pages freed, or -(i+1) if slots[i] is not an allocated page."""
        cdef Py_ssize_t r
        pthread_mutex_lock(&cpu.lock)
        r = self._free_slots(cpu, slots, n)
        pthread_mutex_unlock(&cpu.lock)
        if r != 0:
            self.wake_waiters()
        return r

    cdef uint64_t free_seq_c(self) noexcept nogil:
        return nfsbulk_atomic_load(&self._free_seq)

    cdef bint wait_free_c(self, uint64_t seq, double timeout) noexcept nogil:
        """Sleep until a free happens after free_seq_c() returned seq, or timeout (seconds)."""
        cdef timespec ts
        cdef bint changed = False
        cdef long ns
        if timeout < 0:
            timeout = 0
        clock_gettime(CLOCK_REALTIME, &ts)
        ts.tv_sec += <time_t>timeout
        ns = ts.tv_nsec + <long>((timeout - <time_t>timeout) * 1e9)
        ts.tv_sec += ns // 1000000000
        ts.tv_nsec = ns % 1000000000
        pthread_mutex_lock(&self.wait_lock)
        nfsbulk_atomic_add_int(&self.waiters, 1)
        while True:
            if nfsbulk_atomic_load(&self._free_seq) != seq:
                changed = True
                break
            if pthread_cond_timedwait(&self.wait_cond, &self.wait_lock, &ts) != 0:
                changed = nfsbulk_atomic_load(&self._free_seq) != seq
                break
        nfsbulk_atomic_add_int(&self.waiters, -1)
        pthread_mutex_unlock(&self.wait_lock)
        return changed

    cdef void _drain_cpu(self, cpu_t *cpu) noexcept nogil:
        # cpu.lock held
        cdef int z
        for z in range(self.nr_zones):
            if cpu.pcp[z].count:
                self._free_pcppages_bulk(cpu, &self.zones[z], &cpu.pcp[z], cpu.pcp[z].count)

    cdef void _drain_all(self) noexcept nogil:
        cdef int i, n
        pthread_mutex_lock(&self.reg_lock)
        n = self.nr_cpus if self.nr_cpus > 0 else 0
        if self.nr_cpus >= self.max_cpus:
            n = self.max_cpus
        pthread_mutex_unlock(&self.reg_lock)
        for i in range(n):
            pthread_mutex_lock(&self.cpus[i].lock)
            self._drain_cpu(&self.cpus[i])
            pthread_mutex_unlock(&self.cpus[i].lock)

    # ------------------------------------------------------------- Python API

    @property
    def page_size(self):
        return PAGE_SIZE

    @property
    def nr_pages(self):
        return self.nr_pages

    @property
    def zone_names(self):
        """Zone names in address order (the zonelist walks them in reverse)."""
        return self._zone_names

    def alloc_page(self):
        """One page through the full single-page path, or None. Returns the page frame number."""
        cdef cpu_t *cpu = self.this_cpu()
        cdef int32_t pfn = self.alloc_single(cpu, API_SINGLE)
        pthread_mutex_lock(&cpu.lock)
        cpu.calls[API_SINGLE] += 1
        if pfn == NO_PAGE:
            cpu.failures[API_SINGLE] += 1
        pthread_mutex_unlock(&cpu.lock)
        if pfn == NO_PAGE:
            return None
        return pfn

    def alloc_pages_bulk_list(self, Py_ssize_t n, PageList pages not None):
        """Allocate up to n pages onto the head of `pages`; returns the number added by this call."""
        if pages.alloc is not self:
            raise ValueError("PageList belongs to another allocator")
        return self.bulk(self.this_cpu(), n, NULL, pages)

    def alloc_pages_bulk_array(self, Py_ssize_t n, PageArray array not None, Py_ssize_t start=0):
        """Fill the empty slots of array[start:start+n]; returns the populated count (see module docs).

        The return value r is relative to `start`: every slot in [start, start+r) is populated;
        slots after that may be populated too. Callers loop until r == n.
        """
        if array.alloc is not self:
            raise ValueError("PageArray belongs to another allocator")
        if start < 0 or start > array.nslots or (n > 0 and start + n > array.nslots):
            raise IndexError("range [%d, %d) outside the %d-slot array" % (start, start + n, array.nslots))
        return self.bulk(self.this_cpu(), n, array.slots + start, None)

    def refill_array_single(self, PageArray array not None, Py_ssize_t start=0, stop=None):
        """Fill every empty slot of array[start:stop] with one single-page-path call each, from C.

        The pre-5.13 svc_alloc_arg loop without Python's per-call overhead (strategy `single_c`).
        Stops at the first failure. Returns the number of pages allocated.
        """
        if array.alloc is not self:
            raise ValueError("PageArray belongs to another allocator")
        cdef Py_ssize_t i, end = array.nslots if stop is None else stop, got = 0
        if start < 0 or end > array.nslots or start > end:
            raise IndexError("bad range")
        cdef cpu_t *cpu = self.this_cpu()
        cdef int32_t pfn
        with nogil:
            for i in range(start, end):
                if array.slots[i] == NO_PAGE:
                    pfn = self.alloc_single(cpu, API_SINGLE)
                    pthread_mutex_lock(&cpu.lock)
                    cpu.calls[API_SINGLE] += 1
                    if pfn == NO_PAGE:
                        cpu.failures[API_SINGLE] += 1
                    pthread_mutex_unlock(&cpu.lock)
                    if pfn == NO_PAGE:
                        break
                    array.slots[i] = pfn
                    got += 1
        return got

    def free_page(self, int32_t pfn):
        """Free one page. ValueError for a page that is not allocated (double free) or does not exist."""
        cdef cpu_t *cpu = self.this_cpu()
        cdef int rc
        pthread_mutex_lock(&cpu.lock)
        rc = self.free_one(cpu, pfn)
        pthread_mutex_unlock(&cpu.lock)
        if rc == -1:
            raise ValueError("no page %d in this arena" % pfn)
        if rc == -2:
            raise ValueError("page %d is not allocated (double free?)" % pfn)
        self.wake_waiters()

    def free_pages_bulk(self, pages, Py_ssize_t start=0, stop=None):
        """Free a batch of pages under one per-thread lock hold; returns the number freed.

        pages: a PageArray (its non-empty slots in [start, stop) are freed and emptied),
        a PageList (emptied), or a sequence of page frame numbers.
        """
        cdef PageArray arr
        cdef PageList lst
        cdef Py_ssize_t i, end, freed = 0
        cdef cpu_t *cpu = self.this_cpu()
        cdef int rc = 0
        cdef int32_t pfn, nxt
        if isinstance(pages, PageArray):
            arr = <PageArray>pages
            if arr.alloc is not self:
                raise ValueError("PageArray belongs to another allocator")
            end = arr.nslots if stop is None else stop
            if start < 0 or end > arr.nslots or start > end:
                raise IndexError("bad range")
            if arr.nexports:
                for i in range(start, end):
                    if arr.exports[i]:
                        raise BufferError("slot %d is exported to a buffer; release it first" % i)
            pthread_mutex_lock(&cpu.lock)
            freed = self._free_slots(cpu, arr.slots + start, end - start)
            pthread_mutex_unlock(&cpu.lock)
            if freed < 0:
                self.wake_waiters()
                i = start + (-freed - 1)
                rc = -2
                freed = 0
            if rc:
                raise ValueError("slot %d holds page %d which is not allocated" % (i, arr.slots[i]))
        elif isinstance(pages, PageList):
            lst = <PageList>pages
            if lst.alloc is not self:
                raise ValueError("PageList belongs to another allocator")
            pthread_mutex_lock(&cpu.lock)
            while lst.head != NO_PAGE:
                pfn = lst.head
                nxt = self.next[pfn]
                rc = self.free_one(cpu, pfn)
                if rc:
                    break
                lst.head = nxt
                lst.count -= 1
                freed += 1
            pthread_mutex_unlock(&cpu.lock)
            if rc:
                raise ValueError("list holds page %d which is not allocated" % pfn)
        else:
            seq = list(pages)
            for p in seq:
                if not (0 <= p < self.nr_pages) or self.state[<int32_t>p] != PS_ALLOC:
                    raise ValueError("page %r is not allocated (double free?)" % (p,))
            if len(set(seq)) != len(seq):
                raise ValueError("the same page appears twice")
            pthread_mutex_lock(&cpu.lock)
            for p in seq:
                self.free_one(cpu, <int32_t>p)
                freed += 1
            pthread_mutex_unlock(&cpu.lock)
        if freed:
            self.wake_waiters()
        return freed

    def drain_local(self):
        """Return the calling thread's per-thread pages to the buddy lists."""
        cdef cpu_t *cpu = self.this_cpu()
        with nogil:
            pthread_mutex_lock(&cpu.lock)
            self._drain_cpu(cpu)
            pthread_mutex_unlock(&cpu.lock)
        self.wake_waiters()

    def drain_all(self):
        """Return every thread's per-thread pages to the buddy lists (drain_all_pages)."""
        cdef cpu_t *cpu = self.this_cpu()
        with nogil:
            self._drain_all()
            pthread_mutex_lock(&cpu.lock)
            cpu.drain_all += 1
            pthread_mutex_unlock(&cpu.lock)
        self.wake_waiters()

    def inject_refill_failures(self, int count, int after=0):
        """Fault injection for tests: after `after` more per-thread list refills succeed, the next
        `count` refills find no pages (as if the buddy lists were empty). Not thread-safe."""
        if count < 0 or after < 0:
            raise ValueError("count and after must be >= 0")
        self._inject_fail = count
        self._inject_skip = after

    def free_seq(self):
        """A number that changes whenever pages are freed; pass it to wait_for_free()."""
        return nfsbulk_atomic_load(&self._free_seq)

    def wait_for_free(self, uint64_t seq, double timeout):
        """Block (without the GIL) until a free happens after free_seq() returned `seq`, or timeout.

        Returns True if pages were freed meanwhile, False on timeout.
        """
        cdef bint changed
        with nogil:
            changed = self.wait_free_c(seq, timeout)
        return changed

    def svc_refill_compiled(self, int strategy, PageArray array not None, Py_ssize_t lo=0, hi=None,
                            PageList scratch=None, nfree=None, Py_ssize_t resp_lo=0,
                            Py_ssize_t resp_hi=0):
        """Refill `array` with compiled svc_alloc_arg strategy `strategy` (SVC_SINGLE, SVC_LIST,
        SVC_ARRAY, SVC_RANGE over [lo, hi), SVC_NFREE over [0, nfree) and [resp_lo, resp_hi)) from
        C, without the GIL, until full (nfree None: every slot, as a new request); returns the slots
        it visited. MemoryError when an attempt makes no progress (no waiting here: the
        benchmark's arena is large)."""
        cdef Py_ssize_t h = array.nslots if hi is None else hi
        cdef Py_ssize_t nf = array.nslots if nfree is None else nfree
        cdef Py_ssize_t left
        cdef uint64_t scanned = 0
        cdef cpu_t *cpu
        if array.alloc is not self:
            raise ValueError("PageArray belongs to another allocator")
        if not 0 <= strategy <= SVC_NFREE:
            raise ValueError("unknown compiled strategy %d" % strategy)
        if lo < 0 or h > array.nslots or lo > h:
            raise IndexError("bad range")
        if not (0 <= nf <= array.nslots and 0 <= resp_lo <= resp_hi <= array.nslots):
            raise IndexError("bad nfree or reply range")
        if strategy == SVC_LIST and scratch is None:
            scratch = PageList(self)
        cpu = self.this_cpu()
        with nogil:
            left = self.svc_refill(cpu, array, strategy, lo, h, nf, resp_lo, resp_hi, scratch, &scanned)
        if left:
            raise MemoryError("arena exhausted")
        return scanned

    def page_array(self, Py_ssize_t nslots=259):
        """A new empty PageArray of `nslots` slots bound to this allocator."""
        return PageArray(self, nslots)

    def page_list(self):
        """A new empty PageList bound to this allocator."""
        return PageList(self)

    def page_memory(self, int32_t pfn):
        """A writable memoryview of an allocated page (a new object: not for hot paths)."""
        if not (0 <= pfn < self.nr_pages) or self.state[pfn] != PS_ALLOC:
            raise ValueError("page %d is not allocated" % pfn)
        return memoryview(self._mmap)[pfn * PAGE_SIZE:(pfn + 1) * PAGE_SIZE]

    def page_state(self, int32_t pfn):
        """'buddy', 'tail', 'pcp' or 'alloc' (for tests and debugging)."""
        if not (0 <= pfn < self.nr_pages):
            raise ValueError("no page %d" % pfn)
        return ("tail", "buddy", "pcp", "alloc")[self.state[pfn]]

    def stats(self):
        """A consistent-enough snapshot of every counter and gauge (each lock taken briefly)."""
        cdef int i, z, a, o
        cdef cpu_t *c
        cdef zone_t *zone
        names = self._zone_names
        nz = self.nr_zones
        calls = [0] * NR_API
        pages = [[0] * NR_API for _ in range(nz)]
        fallbacks = [0] * NR_FB
        failures = [0] * NR_API
        freed = [0] * nz
        refills = [0] * nz
        drains = [0] * nz
        pcp_pages = [0] * nz
        drain_all = slowpath = 0
        pthread_mutex_lock(&self.reg_lock)
        ncpu = self.nr_cpus
        pthread_mutex_unlock(&self.reg_lock)
        for i in range(self.max_cpus):
            c = &self.cpus[i]
            pthread_mutex_lock(&c.lock)
            for a in range(NR_API):
                calls[a] += c.calls[a]
                failures[a] += c.failures[a]
                for z in range(nz):
                    pages[z][a] += c.pages[z][a]
            for a in range(NR_FB):
                fallbacks[a] += c.fallbacks[a]
            for z in range(nz):
                freed[z] += c.freed[z]
                refills[z] += c.refills[z]
                drains[z] += c.drains[z]
                pcp_pages[z] += c.pcp[z].count
            drain_all += c.drain_all
            slowpath += c.slowpath
            pthread_mutex_unlock(&c.lock)
        zones = {}
        for z in range(nz):
            zone = &self.zones[z]
            pthread_mutex_lock(&zone.lock)
            by_order = [zone.nr_free_order[o] for o in range(MAX_ORDER)]
            free_pages = zone.nr_free
            pthread_mutex_unlock(&zone.lock)
            zones[names[z]] = {
                "start": zone.start, "pages": zone.npages, "managed": zone.managed,
                "free": free_pages, "free_blocks_by_order": by_order,
                "pcp": pcp_pages[z],
                "watermarks": {"min": zone.wmark[0], "low": zone.wmark[1], "high": zone.wmark[2]},
                "lowmem_reserve": [zone.lowmem_reserve[i] for i in range(nz)],
                "batch": zone.batch, "high": zone.high,
                "pages_alloc": {API_NAMES[a]: pages[z][a] for a in range(NR_API)},
                "freed": freed[z], "pcp_refills": refills[z], "pcp_drains": drains[z],
            }
        total_free = sum(v["free"] for v in zones.values())
        total_pcp = sum(pcp_pages)
        return {
            "page_size": PAGE_SIZE,
            "nr_pages": self.nr_pages,
            "min_free_kbytes": self.min_free_kbytes,
            "watermark_scale_factor": self.watermark_scale_factor,
            "zones": zones,
            "calls": {API_NAMES[a]: calls[a] for a in range(NR_API)},
            "pages": {API_NAMES[a]: sum(pages[z][a] for z in range(nz)) for a in range(NR_API)},
            "fallbacks": {FALLBACK_NAMES[a]: fallbacks[a] for a in range(NR_FB)},
            "failures": {API_NAMES[a]: failures[a] for a in range(NR_API)},
            "freed": sum(freed),
            "drain_all": drain_all,
            "slowpath": slowpath,
            "free_pages": total_free,
            "pcp_pages": total_pcp,
            "allocated": self.nr_pages - total_free - total_pcp,
            "threads": ncpu,
            "corrupt_pages": self._corrupt_pages,
            "debug": self.debug,
        }

    def check(self):
        """Verify every invariant (free lists, block alignment, states, counts). Raises AssertionError.

        Takes every lock; O(nr_pages). For tests and debug builds.
        """
        cdef int i, z, o
        cdef int32_t pfn, prev, rel
        cdef zone_t *zone
        cdef int64_t n_blocks, n_free
        cdef int64_t *seen_pcp = NULL
        for i in range(self.max_cpus):
            pthread_mutex_lock(&self.cpus[i].lock)
        for z in range(self.nr_zones):
            pthread_mutex_lock(&self.zones[z].lock)
        try:
            covered = bytearray(self.nr_pages)
            for z in range(self.nr_zones):
                zone = &self.zones[z]
                n_free = 0
                for o in range(MAX_ORDER):
                    n_blocks = 0
                    prev = NO_PAGE
                    pfn = zone.free_head[o]
                    while pfn != NO_PAGE:
                        assert zone.start <= pfn < zone.start + zone.npages, "free page %d outside zone" % pfn
                        assert self.state[pfn] == PS_BUDDY and self.order[pfn] == o, \
                            "page %d on order-%d list in state %d order %d" % (pfn, o, self.state[pfn], self.order[pfn])
                        assert self.prev[pfn] == prev, "broken prev link at %d" % pfn
                        rel = pfn - zone.start
                        assert rel % (1 << o) == 0 and rel + (1 << o) <= zone.npages, "misaligned block %d/%d" % (pfn, o)
                        for i in range(1 << o):
                            assert not covered[pfn + i], "page %d in two free blocks" % (pfn + i)
                            covered[pfn + i] = 1
                            if i:
                                assert self.state[pfn + i] == PS_TAIL, "page %d inside a free block in state %d" % (pfn + i, self.state[pfn + i])
                        n_blocks += 1
                        n_free += 1 << o
                        prev = pfn
                        pfn = self.next[pfn]
                        assert n_blocks <= zone.npages, "cycle in free list"
                    assert n_blocks == zone.nr_free_order[o], "order %d count %d != %d" % (o, n_blocks, zone.nr_free_order[o])
                assert n_free == zone.nr_free, "zone %s nr_free %d != %d on lists" % (zone.name, zone.nr_free, n_free)
            for i in range(self.max_cpus):
                for z in range(self.nr_zones):
                    assert 0 <= self.cpus[i].pcp[z].count <= self.zones[z].high, "pcp count out of range"
                    for o in range(self.cpus[i].pcp[z].count):
                        pfn = self.cpus[i].pcp[z].ring[(self.cpus[i].pcp[z].head + o) & self.cpus[i].pcp[z].mask]
                        assert 0 <= pfn < self.nr_pages, "pcp holds a bad page number %d" % pfn
                        assert self.state[pfn] == PS_PCP and self.zid[pfn] == z, "page %d on pcp in state %d" % (pfn, self.state[pfn])
                        assert not covered[pfn], "page %d on pcp twice or also free" % pfn
                        covered[pfn] = 1
            for pfn in range(self.nr_pages):
                if covered[pfn]:
                    continue
                assert self.state[pfn] == PS_ALLOC, "page %d is on no list and not allocated (state %d)" % (pfn, self.state[pfn])
            assert self._corrupt_pages == 0, "%d freed pages were written to (first: %d)" % (self._corrupt_pages, self._first_corrupt)
        finally:
            for z in range(self.nr_zones):
                pthread_mutex_unlock(&self.zones[z].lock)
            for i in range(self.max_cpus):
                pthread_mutex_unlock(&self.cpus[i].lock)
        return True


include "_core_pages.pxi"
