# C-level declarations of the page allocator (alloc/_core.pyx has the theory).
#
# Other Cython modules (rpcsrv's page I/O) cimport PageArray from here to reach
# page memory without Python objects: PageArray.slots[i] is a page frame number
# or NO_PAGE, and page_address() turns a frame number into its memory.

cimport cython
from libc.stdint cimport int32_t, int64_t, uint64_t, uint8_t, int8_t

cdef extern from "pthread.h" nogil:
    ctypedef struct pthread_mutex_t:
        pass
    ctypedef struct pthread_cond_t:
        pass
    ctypedef unsigned long pthread_t

cdef enum:
    PAGE_SHIFT = 12
    PAGE_SIZE = 4096
    MAX_ORDER = 11            # orders 0..10, as the kernel's default MAX_ORDER
    MAX_ZONES = 4
    NO_PAGE = -1              # the NULL of page frame numbers

# API indices for counters (metrics label "api")
cdef enum:
    API_SINGLE = 0
    API_BULK_LIST = 1
    API_BULK_ARRAY = 2
    NR_API = 3

# Bulk fallback reasons (metrics label "reason")
cdef enum:
    FB_LAST_PAGE = 0
    FB_WATERMARK = 1
    FB_PCP_EMPTY = 2
    NR_FB = 3

cdef enum:
    WMARK_MIN = 0
    WMARK_LOW = 1
    WMARK_HIGH = 2

# Compiled svc_alloc_arg strategies (alloc.strategies names them; Allocator.svc_refill runs one)
cdef enum:
    SVC_SINGLE = 0            # alloc_single() per hole from a C loop (the pre-5.13 loop)
    SVC_LIST = 1              # bulk list of the holes, moved into them
    SVC_ARRAY = 2             # bulk array over every slot until full
    SVC_RANGE = 3             # bulk array over exactly [lo, hi)
    SVC_NFREE = 4             # bulk array over [0, nfree) and [resp_lo, resp_hi) only

# Page states (struct page flags, reduced to what the model needs)
cdef enum:
    PS_TAIL = 0               # free, inside a buddy block whose head is elsewhere
    PS_BUDDY = 1              # free, head of a buddy block of order page_order[pfn]
    PS_PCP = 2                # free, on a per-thread list
    PS_ALLOC = 3              # handed out to a caller

ctypedef struct zone_t:
    int idx
    char name[16]
    int32_t start             # first pfn
    int32_t npages            # pfns [start, start + npages)
    int64_t managed
    int64_t wmark[3]
    int64_t lowmem_reserve[MAX_ZONES]
    int64_t nr_free           # pages in the buddy free lists (NR_FREE_PAGES)
    int32_t free_head[MAX_ORDER]
    int64_t nr_free_order[MAX_ORDER]   # blocks per order
    int batch
    int high
    pthread_mutex_t lock

# A per-thread list is a ring of page frame numbers: ring[head] is the hottest
# page (allocated first, freed pages go in front of it), ring[(head+count-1) & mask]
# the coldest (drained first, refills are appended after it). A ring rather than a
# linked list through the page descriptors: same order, no pointer chase per page.
ctypedef struct pcp_t:
    int32_t *ring
    int head
    int count
    int mask

# Per-"cpu" state: one per thread that allocates (threads beyond max_threads share).
ctypedef struct cpu_t:
    pthread_mutex_t lock      # guards pcp[] and the counters below
    pthread_t owner
    int in_use
    pcp_t pcp[MAX_ZONES]
    uint64_t calls[NR_API]
    uint64_t pages[MAX_ZONES][NR_API]
    uint64_t fallbacks[NR_FB]
    uint64_t failures[NR_API]
    uint64_t freed[MAX_ZONES]
    uint64_t refills[MAX_ZONES]
    uint64_t drains[MAX_ZONES]
    uint64_t drain_all
    uint64_t slowpath
    uint64_t bulk_calls


@cython.final
cdef class Allocator:
    cdef readonly long ident
    cdef char *arena
    cdef size_t arena_bytes
    cdef int32_t nr_pages
    cdef int nr_zones
    cdef zone_t zones[MAX_ZONES]
    cdef int32_t *next
    cdef int32_t *prev
    cdef uint8_t *state
    cdef int8_t *order
    cdef uint8_t *zid
    cdef cpu_t *cpus
    cdef int max_cpus
    cdef int nr_cpus
    cdef pthread_mutex_t reg_lock
    cdef pthread_mutex_t wait_lock
    cdef pthread_cond_t wait_cond
    cdef int waiters
    cdef uint64_t _free_seq
    cdef readonly bint debug
    cdef bint ready
    cdef bint _have_buf
    cdef bint _locks_init
    cdef Py_buffer _arena_buf
    cdef object _mmap
    cdef tuple _zone_names
    cdef readonly object min_free_kbytes
    cdef readonly int watermark_scale_factor
    cdef uint64_t _corrupt_pages
    cdef int64_t _first_corrupt
    cdef int _inject_fail
    cdef int _inject_skip

    cdef inline char *page_address(self, int32_t pfn) noexcept nogil:
        return self.arena + (<size_t>pfn << PAGE_SHIFT)

    cdef void _init_zone(self, zone_t *zone) noexcept
    cdef void _list_add(self, zone_t *zone, int32_t pfn, int o) noexcept nogil
    cdef void _list_add_tail(self, zone_t *zone, int32_t pfn, int o) noexcept nogil
    cdef void _list_del(self, zone_t *zone, int32_t pfn, int o) noexcept nogil
    cdef int32_t _rmqueue_smallest(self, zone_t *zone) noexcept nogil
    cdef void _free_one_page(self, zone_t *zone, int32_t pfn) noexcept nogil
    cdef int _rmqueue_bulk(self, cpu_t *cpu, zone_t *zone, pcp_t *pcp, int count) noexcept nogil
    cdef void _free_pcppages_bulk(self, cpu_t *cpu, zone_t *zone, pcp_t *pcp, int count) noexcept nogil
    cdef int32_t _pcp_take(self, cpu_t *cpu, zone_t *zone) noexcept nogil
    cdef void _check_poison(self, int32_t pfn) noexcept nogil
    cdef bint _watermark_ok(self, zone_t *zone, int64_t mark, int classzone) noexcept nogil
    cdef int32_t _get_page_from_freelist(self, cpu_t *cpu, int mark) noexcept nogil
    cdef void _drain_cpu(self, cpu_t *cpu) noexcept nogil
    cdef void _drain_all(self) noexcept nogil
    cdef Py_ssize_t _free_slots(self, cpu_t *cpu, int32_t *slots, Py_ssize_t n) noexcept nogil
    cdef cpu_t *this_cpu(self) noexcept nogil
    cdef int32_t alloc_single(self, cpu_t *cpu, int api) noexcept nogil
    cdef Py_ssize_t bulk(self, cpu_t *cpu, Py_ssize_t n, int32_t *arr, PageList lst) noexcept nogil
    cdef Py_ssize_t _bulk_window(self, cpu_t *cpu, int32_t *slots, Py_ssize_t n,
                                 uint64_t *scanned) noexcept nogil
    cdef int free_one(self, cpu_t *cpu, int32_t pfn) noexcept nogil
    cdef void wake_waiters(self) noexcept nogil
    # for other compiled modules (rpcsrv's request fast path): no Python objects, no GIL
    cdef Py_ssize_t svc_refill(self, cpu_t *cpu, PageArray arr, int strategy, Py_ssize_t lo,
                               Py_ssize_t hi, Py_ssize_t nfree, Py_ssize_t resp_lo, Py_ssize_t resp_hi,
                               PageList lst, uint64_t *scanned) noexcept nogil
    cdef Py_ssize_t free_slots(self, cpu_t *cpu, int32_t *slots, Py_ssize_t n) noexcept nogil
    cdef uint64_t free_seq_c(self) noexcept nogil
    cdef bint wait_free_c(self, uint64_t seq, double timeout) noexcept nogil


@cython.final
cdef class PageList:
    cdef Allocator alloc
    cdef int32_t head
    cdef Py_ssize_t count


@cython.final
cdef class PageArray:
    cdef Allocator alloc
    cdef int32_t *slots
    cdef int *exports
    cdef Py_ssize_t nexports
    cdef readonly Py_ssize_t nslots
    cdef list _views
