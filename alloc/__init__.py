"""nfsbulk's page allocator: the userspace model of Linux's bulk order-0 page allocator (5.13+).

One anonymous mmap arena of 4096-byte pages, named by frame number (an int;
None is the NULL page). Zones with min/low/high watermarks, buddy free lists
(orders 0..10), per-thread page lists refilled and drained in batches, and
three ways to get pages, with the kernel's semantics:

``Allocator.alloc_page()``
    One page through the full single-page path on every call (zonelist walk,
    LOW watermark, per-thread list; then the slow path: MIN watermark, then
    draining every thread's list and MIN again). A page number or None.

``Allocator.alloc_pages_bulk_list(n, page_list)``
    Up to n pages added at the head of a PageList; returns the number added by
    this call.

``Allocator.alloc_pages_bulk_array(n, page_array, start=0)``
    Fills the empty slots of page_array[start:start+n] (the fixed kernel,
    5.19+): n <= 0 -> 0; a full range -> n, untouched, no counters; exactly one
    empty slot after the populated prefix -> the single-page path; otherwise
    the first zone passing LOW + n is used, holes anywhere are filled and
    populated slots skipped, and if that zone's per-thread list and buddy
    lists give nothing before any page was allocated by this call, one page
    comes from the single-page path. The return value r means every slot in
    [start, start + r) is populated; later slots may be too. Callers loop.
    A caller that knows exactly which slots it emptied passes that range
    (``start``) and skips the scan (the 2026 SUNRPC svc_fill_pages()).

Freeing: ``free_page(p)``, ``free_pages_bulk(page_array | page_list | pages)``
(one per-thread lock hold for the batch); freeing a page that is not allocated
raises ValueError. Running out of memory is never an exception: calls return
what they could and ``stats()`` says why (fallbacks, failures, slowpath,
drain_all). ``wait_for_free(seq, timeout)`` sleeps until some page is freed.

``PageArray`` (rq_pages) slots hold pages; ``page_array.view(i)`` is a
persistent buffer object for whatever page sits in slot i, usable with
socket.recv_into/recvmsg_into/sendmsg and os.preadv/pwritev without creating
objects per page per call.

Implementations: ``alloc._core`` (Cython, the default) and ``alloc.reference``
(pure Python, the oracle for differential tests); NFSBULK_ALLOC_PURE=1 makes
this package export the reference. NFSBULK_ALLOC_DEBUG=1 turns on page
poisoning and use-after-free detection for allocators created without an
explicit ``debug=``.
"""

import os as _os

from alloc._core import (API_NAMES, FALLBACK_NAMES, PAGE_BYTES as PAGE_SIZE, WMARK_NAMES,
                         compute_watermarks, default_zones, zone_batchsize)

if _os.environ.get("NFSBULK_ALLOC_PURE", "") not in ("", "0"):
    from alloc.reference import Allocator, PageArray, PageList
    IMPLEMENTATION = "reference"
else:
    from alloc._core import Allocator, PageArray, PageList
    IMPLEMENTATION = "cython"

# page_pool (net/core/page_pool.c) over the Cython allocator (it calls alloc._core's C paths)
from alloc._pool import PagePool  # noqa: E402

#: svc_alloc_arg's page count for a 1 MiB payload before Linux 6.16: ceil(1 MiB / 4096) + 2 + 1
#: (RPCSVC_MAXPAGES, the fixed size of rq_pages)
RPCSVC_MAXPAGES = 259
#: the payloads an NFS server may be sized for (knfsd: /proc/fs/nfsd/max_block_size, 6.16+)
MIN_BLOCK_SIZE = 4096
MAX_BLOCK_SIZE = 4 << 20


def svc_serv_maxpages(max_payload: int) -> int:
    """Page-array slots for payloads up to ``max_payload`` bytes, as Linux 6.16 sizes a thread's
    rq_pages (svc_serv_maxpages()): the largest message, sv_max_mesg = the payload rounded up to a
    page plus one page, in pages, plus one page for the call, one for the reply and one for a READ
    payload that is not page aligned. 1 MiB: 260; 4 MiB: 1028."""
    pages = -(-max_payload // PAGE_SIZE)
    return pages + 1 + 2 + 1

__all__ = [
    "Allocator", "PageArray", "PageList", "PAGE_SIZE", "RPCSVC_MAXPAGES", "MIN_BLOCK_SIZE", "MAX_BLOCK_SIZE",
    "svc_serv_maxpages", "API_NAMES",
    "FALLBACK_NAMES", "WMARK_NAMES", "IMPLEMENTATION", "compute_watermarks", "default_zones",
    "zone_batchsize", "PagePool",
]
