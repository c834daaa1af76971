# Zone sizing of alloc._core, as mm/page_alloc.c computes it: the per-thread batch
# (zone_batchsize), the default zone layout (default_zones) and the watermarks and lowmem
# reserves (compute_watermarks). Included by _core.pyx, which builds its zones from them.
#
# Pure functions of their arguments: no state, no locks, no pages owned. alloc/reference_zones.py
# is their pure-Python twin, and tests/alloc/test_sizing.py holds both to figures worked out by
# hand from the kernel's formulas.

cdef inline int64_t _rounddown_pow2(int64_t x) noexcept nogil:
    cdef int64_t r = 1
    while r * 2 <= x:
        r *= 2
    return r


def zone_batchsize(int64_t managed):
    """pcp batch for a zone of `managed` pages (mm/page_alloc.c zone_batchsize, 5.13)."""
    cdef int64_t batch = managed >> 10
    if batch > (1024 * 1024) // PAGE_SIZE:
        batch = (1024 * 1024) // PAGE_SIZE
    batch //= 4
    if batch < 1:
        batch = 1
    batch = _rounddown_pow2(batch + batch // 2) - 1
    return batch if batch >= 1 else 1


def default_zones(int64_t nr_pages):
    """Default zone layout: DMA32 a quarter of the arena (whole 4 MiB blocks when large), Normal the rest."""
    cdef int64_t block = 1 << (MAX_ORDER - 1)
    cdef int64_t small = nr_pages // 4
    if nr_pages >= 8 * block:
        small = (small // block) * block
    if small < 1:
        return [("Normal", nr_pages)]
    return [("DMA32", small), ("Normal", nr_pages - small)]


def compute_watermarks(sizes, min_free_kbytes=None, int watermark_scale_factor=10):
    """Return (min_free_kbytes, [(min, low, high)], [[lowmem_reserve]]) for zone sizes in address order."""
    cdef int64_t total = sum(sizes)
    cdef int64_t kb = total * (PAGE_SIZE >> 10)
    if min_free_kbytes is None:
        min_free_kbytes = <int64_t>sqrt(<double>(kb * 16))
        if min_free_kbytes < 128:
            min_free_kbytes = 128
        if min_free_kbytes > 262144:
            min_free_kbytes = 262144
    pages_min = min_free_kbytes >> (PAGE_SHIFT - 10)
    marks = []
    for managed in sizes:
        zmin = pages_min * managed // total if total else 0
        tmp = max(zmin >> 2, managed * watermark_scale_factor // 10000)
        marks.append((zmin, zmin + tmp, zmin + 2 * tmp))
    reserves = []
    n = len(sizes)
    for i in range(n):
        row = [0] * MAX_ZONES
        for j in range(i + 1, n):
            row[j] = sum(sizes[i + 1:j + 1]) // DMA32_LOWMEM_RESERVE_RATIO
        reserves.append(row)
    return min_free_kbytes, marks, reserves
