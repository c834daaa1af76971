"""alloc.reference's zones and buddy lists: the twin's constants, the kernel's zone sizing
(zone_batchsize, default_zones, compute_watermarks), the _Zone record and the buddy operations
(_BuddyZones, a mixin of reference.Allocator).

Invariants
----------
* Page state: every pfn is in exactly one state (the Allocator's ``state`` bytearray): _BUDDY (the
  head of a free block of ``order[pfn]`` on its zone's list for that order), _TAIL (inside a free
  block, or not yet given to the buddy lists), _PCP (on a per-thread list) or _ALLOC (the caller
  owns it). ``zone.nr_free`` counts the pages of every block on the zone's buddy lists.
* List discipline, as alloc._core: initialisation adds blocks at the tail (in pfn order), every
  later add (splits and frees) at the head; allocation takes the head of the smallest non-empty
  order and splits it, the upper halves going back at the head; a free merges with its buddy while
  the buddy is a free head of the same order inside the zone.
* Threads: none of its own. The mixin's methods touch the Allocator's zones, state, order and zid
  and are called only with the Allocator's ``_lock`` held (reference.py's doc).
* It imports nothing compiled, so a sizing bug in either implementation shows in the differential
  tests (tests/alloc/test_sizing.py holds both to figures worked out by hand from the kernel's
  formulas).
"""

from __future__ import annotations

import collections
import math

PAGE_SIZE = 4096
PAGE_SHIFT = 12
MAX_ORDER = 11                      # orders 0..10
MAX_ZONES = 4
DMA32_LOWMEM_RESERVE_RATIO = 256


def zone_batchsize(managed: int) -> int:
    """5.13's zone_batchsize: managed/1024 pages, at most 1 MiB worth, /4, at least 1,
    then rounddown_pow_of_two(b + b/2) - 1."""
    b = min(managed >> 10, (1 << 20) // PAGE_SIZE) // 4
    b = max(b, 1)
    b = (1 << ((b + b // 2).bit_length() - 1)) - 1
    return max(b, 1)


def default_zones(nr_pages: int) -> list:
    """DMA32 a quarter of the arena (whole max-order blocks when there are 8 or more), Normal the rest."""
    block = 1 << (MAX_ORDER - 1)
    small = nr_pages // 4
    if nr_pages >= 8 * block:
        small -= small % block
    if small < 1:
        return [("Normal", nr_pages)]
    return [("DMA32", small), ("Normal", nr_pages - small)]


def compute_watermarks(sizes, min_free_kbytes=None, watermark_scale_factor=10):
    """(min_free_kbytes, [(min, low, high)], [[lowmem_reserve]]): min_free_kbytes = int_sqrt(16 *
    lowmem kB) clamped to [128, 262144]; each zone's min its share of it; the gap
    max(min/4, managed * scale / 10000); low = min + gap, high = min + 2 gap; a zone's reserve
    against allocations that could use higher zones = their pages / 256."""
    total = sum(sizes)
    if min_free_kbytes is None:
        min_free_kbytes = min(262144, max(128, math.isqrt(total * (PAGE_SIZE >> 10) * 16)))
    pages_min = min_free_kbytes >> (PAGE_SHIFT - 10)
    marks = []
    for managed in sizes:
        zmin = pages_min * managed // total if total else 0
        gap = max(zmin // 4, managed * watermark_scale_factor // 10000)
        marks.append((zmin, zmin + gap, zmin + 2 * gap))
    n = len(sizes)
    reserves = [[sum(sizes[i + 1:j + 1]) // DMA32_LOWMEM_RESERVE_RATIO if i < j < n else 0
                 for j in range(MAX_ZONES)] for i in range(n)]
    return min_free_kbytes, marks, reserves


#: a page's state (Allocator.state[pfn]; see the module doc)
_TAIL, _BUDDY, _PCP, _ALLOC = range(4)


class _Zone:
    def __init__(self, idx, name, start, npages, marks, reserve, batch, high):
        self.idx, self.name, self.start, self.npages = idx, name, start, npages
        self.managed = npages
        self.wmark = list(marks)
        self.lowmem_reserve = reserve
        self.batch, self.high = batch, high
        self.nr_free = 0
        # one ordered dict per order: iteration order == list order, first == head
        self.free = [collections.OrderedDict() for _ in range(MAX_ORDER)]


class _BuddyZones:
    """The buddy operations of reference.Allocator on its zones (see the module doc)."""

    def _init_zone(self, zone):
        rel = 0
        for i in range(zone.npages):
            self.zid[zone.start + i] = zone.idx
        while rel < zone.npages:
            o = MAX_ORDER - 1
            while o > 0 and (rel % (1 << o) or rel + (1 << o) > zone.npages):
                o -= 1
            pfn = zone.start + rel
            self.state[pfn] = _BUDDY
            self.order[pfn] = o
            zone.free[o][pfn] = None            # tail
            zone.nr_free += 1 << o
            rel += 1 << o

    def _add_head(self, zone, pfn, o):
        zone.free[o][pfn] = None
        zone.free[o].move_to_end(pfn, last=False)

    def _rmqueue_smallest(self, zone):
        for o in range(MAX_ORDER):
            if zone.free[o]:
                break
        else:
            return None
        pfn, _ = zone.free[o].popitem(last=False)
        while o > 0:
            o -= 1
            buddy = pfn + (1 << o)
            self.state[buddy] = _BUDDY
            self.order[buddy] = o
            self._add_head(zone, buddy, o)
        self.order[pfn] = 0
        zone.nr_free -= 1
        return pfn

    def _free_one_page(self, zone, pfn):
        rel = pfn - zone.start
        o = 0
        self.state[pfn] = _TAIL
        while o < MAX_ORDER - 1:
            brel = rel ^ (1 << o)
            if brel + (1 << o) > zone.npages:
                break
            bpfn = zone.start + brel
            if self.state[bpfn] != _BUDDY or self.order[bpfn] != o:
                break
            del zone.free[o][bpfn]
            self.state[bpfn] = _TAIL
            rel &= brel
            o += 1
        pfn = zone.start + rel
        self.state[pfn] = _BUDDY
        self.order[pfn] = o
        self._add_head(zone, pfn, o)
        zone.nr_free += 1
