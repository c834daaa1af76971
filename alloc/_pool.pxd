# C-level declarations of the page pool (alloc/_pool.pyx has the theory).
#
# rpcsrv's UDP receive path (rpcsrv/xprt/_udpio.pyx) cimports PagePool to take and
# recycle pages with no Python object per packet; the compiled receive loop
# (rpcsrv/xprt/_udpfast.pyx) calls the hot methods below with the GIL released.

cimport cython
from libc.stdint cimport int32_t, uint8_t, uint64_t
from alloc._core cimport Allocator, PageList, PageArray, pthread_mutex_t

cdef enum:
    PP_ALLOC_CACHE_SIZE = 128       # pool->alloc.cache[]
    PP_ALLOC_CACHE_REFILL = 64      # pages per slow-path refill (and per ring pull)

cdef enum:
    PP_SINGLE = 0                   # one alloc_pages per slow-path call (pre-5.13 baseline)
    PP_LIST = 1                     # alloc_pages_bulk (list API), 64 onto a local list
    PP_ARRAY = 2                    # alloc_pages_bulk_array, 64 straight into the cache (5.13)

# page ownership as seen by one pool (indexed by pfn)
cdef enum:
    PG_NOT_OURS = 0
    PG_IN_POOL = 1                  # in the cache or the recycle ring
    PG_OUT = 2                      # handed to a consumer


@cython.final
cdef class PagePool:
    cdef readonly Allocator allocator
    cdef readonly int strategy_id
    cdef PageList _lst                       # the list strategy's local list
    cdef int32_t cache[PP_ALLOC_CACHE_SIZE]
    cdef int count                           # pages in cache[0:count]; cache[count-1] is the hottest
    cdef int32_t *ring                       # the recycle ring (ptr_ring): power-of-two slots
    cdef int ring_mask
    cdef int ring_head                       # next to consume
    cdef int ring_count
    cdef pthread_mutex_t ring_lock           # producers and the consumer's pull (ptr_ring's locks)
    cdef bint _lock_init
    cdef uint8_t *owner                      # PG_* per pfn
    cdef readonly bint closed
    # counters (consumer side: plain increments; producer side: under ring_lock)
    cdef uint64_t n_fast                     # pages served from the cache
    cdef uint64_t n_ring_refill              # cache refills from the ring
    cdef uint64_t n_ring_pages               # pages pulled from the ring
    cdef uint64_t n_slow                     # slow-path calls (refills from the allocator)
    cdef uint64_t n_slow_empty               # slow-path calls that got no page (-> NULL)
    cdef uint64_t n_from_alloc               # pages obtained from the allocator (pages_state_hold_cnt)
    cdef uint64_t n_recycled_direct          # pages recycled into the cache
    cdef uint64_t n_recycled_ring            # pages recycled into the ring
    cdef uint64_t n_ring_full                # recycles that found the ring full (page released)
    cdef uint64_t n_released                 # pages given back to the allocator (pages_state_release_cnt)

    cdef int32_t get_page(self) noexcept nogil
    cdef int32_t _alloc_slow(self) noexcept nogil
    cdef int _refill_from_ring(self) noexcept nogil
    cdef int put_page(self, int32_t pfn, bint direct) noexcept nogil
    cdef int release_page(self, int32_t pfn) noexcept nogil
    cdef int32_t _take_slot(self, PageArray pa, Py_ssize_t slot) except -2
    cdef void _free_to_allocator(self, int32_t *pages, Py_ssize_t n) noexcept nogil
