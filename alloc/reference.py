"""Pure-Python twin of alloc._core: the oracle for differential tests.

Same public API and the same observable behaviour as the Cython allocator,
down to which page frame number each call returns: the same zone layout,
watermarks and per-thread batch sizes, the same list disciplines (buddy lists
add at the head except at initialisation, per-thread lists refill at the tail,
allocate from the head, free to the head, drain from the tail), the same bulk
semantics and the same counters. Written for clarity, not speed.

Threads: one lock (``self._lock``, re-entrant) guards everything; each thread
still gets its own per-thread list set, registered in first-call order, so a
single-threaded sequence of calls maps to cpu 0 exactly as in the core.

This module owns the Allocator (per-thread lists, the three allocation APIs,
frees, counters, check) and its containers PageList / PageArray; the
constants, zone sizing and buddy lists are alloc/reference_zones.py (the
Allocator's _BuddyZones mixin).
"""

from __future__ import annotations

import collections
import mmap
import os
import threading

# the zone sizing functions are part of the twin's API (impl.zone_batchsize ... in tests/alloc, as
# alloc._core's): re-exported from reference_zones on purpose
from .reference_zones import (_ALLOC, _BUDDY, _PCP, _TAIL, MAX_ORDER, PAGE_SIZE, _BuddyZones, _Zone,
                              compute_watermarks, default_zones, zone_batchsize)

__all__ = ["Allocator", "PageArray", "PageList", "zone_batchsize", "default_zones", "compute_watermarks"]

API_NAMES = ("single", "bulk_list", "bulk_array")
FALLBACK_NAMES = ("last_page", "watermark", "pcp_empty")
_SINGLE, _LIST, _ARRAY = range(3)
_LAST_PAGE, _WATERMARK, _PCP_EMPTY = range(3)
_MIN, _LOW, _HIGH = range(3)
_POISON = b"\x6b" * PAGE_SIZE


class _Cpu:
    def __init__(self, nzones):
        self.pcp = [collections.deque() for _ in range(nzones)]   # left == head
        self.calls = [0] * 3
        self.pages = [[0] * 3 for _ in range(nzones)]
        self.fallbacks = [0] * 3
        self.failures = [0] * 3
        self.freed = [0] * nzones
        self.refills = [0] * nzones
        self.drains = [0] * nzones
        self.drain_all = 0
        self.slowpath = 0


class Allocator(_BuddyZones):
    """Pure-Python twin of alloc._core.Allocator; same constructor and methods."""

    def __init__(self, arena_mib=64, *, arena_pages=None, zones=None, min_free_kbytes=None,
                 watermark_scale_factor=10, batch=None, high=None, max_threads=64, debug=None):
        if arena_pages is None:
            if arena_mib is None or arena_mib <= 0:
                raise ValueError("arena_mib must be positive")
            npages = int(arena_mib * 1024 * 1024) // PAGE_SIZE
        else:
            npages = int(arena_pages)
        if npages < 16 or npages > (1 << 30):
            raise ValueError("arena must hold between 16 and 2^30 pages, not %d" % npages)
        if zones is None:
            zones = default_zones(npages)
        zones = [(str(n), int(p)) for n, p in zones]
        if not 1 <= len(zones) <= 4:
            raise ValueError("between 1 and 4 zones")
        if any(p < 8 for _, p in zones):
            raise ValueError("every zone needs at least 8 pages")
        if sum(p for _, p in zones) != npages:
            raise ValueError("zone sizes add up to %d pages, arena has %d" % (sum(p for _, p in zones), npages))
        if not 1 <= max_threads <= 4096:
            raise ValueError("max_threads must be in 1..4096")
        if debug is None:
            debug = os.environ.get("NFSBULK_ALLOC_DEBUG", "") not in ("", "0")
        self.debug = bool(debug)
        self._lock = threading.RLock()
        self._cond = threading.Condition(threading.Lock())
        self._free_seq = 0
        self.nr_pages = npages
        self._mmap = mmap.mmap(-1, npages * PAGE_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self._mem = memoryview(self._mmap)
        self.state = bytearray(npages)           # _TAIL everywhere until zones are freed
        self.order = bytearray(npages)
        self.zid = bytearray(npages)
        sizes = [p for _, p in zones]
        self.min_free_kbytes, marks, reserves = compute_watermarks(sizes, min_free_kbytes, watermark_scale_factor)
        self.watermark_scale_factor = watermark_scale_factor
        self.zone_names = tuple(n for n, _ in zones)
        self.zones = []
        start = 0
        for z, (name, size) in enumerate(zones):
            b = batch if batch is not None else zone_batchsize(size)
            h = high if high is not None else 6 * b
            if b < 1 or h < b:
                raise ValueError("need batch >= 1 and high >= batch")
            zone = _Zone(z, name, start, size, marks[z], reserves[z], b, h)
            self.zones.append(zone)
            self._init_zone(zone)
            start += size
        self.max_cpus = max_threads
        self._cpus = []
        self._owner = {}
        self._corrupt = 0
        self._inject_fail = self._inject_skip = 0
        if self.debug:
            self._mmap[:] = b"\x6b" * (npages * PAGE_SIZE)

    # ------------------------------------------------------ per-thread lists
    def _this_cpu(self):
        me = threading.get_ident()
        cpu = self._owner.get(me)
        if cpu is None:
            if len(self._cpus) < self.max_cpus:
                cpu = _Cpu(len(self.zones))
                self._cpus.append(cpu)
            else:
                cpu = self._cpus[(me >> 4) % self.max_cpus]
            self._owner[me] = cpu
        return cpu

    def _rmqueue_bulk(self, cpu, zone, count):
        if self._inject_fail > 0:
            if self._inject_skip > 0:
                self._inject_skip -= 1
            else:
                self._inject_fail -= 1
                return 0
        pcp = cpu.pcp[zone.idx]
        got = 0
        for _ in range(count):
            pfn = self._rmqueue_smallest(zone)
            if pfn is None:
                break
            self.state[pfn] = _PCP
            pcp.append(pfn)
            got += 1
        if got:
            cpu.refills[zone.idx] += 1
        return got

    def _free_pcppages_bulk(self, cpu, zone, count):
        pcp = cpu.pcp[zone.idx]
        moved = 0
        while moved < count and pcp:
            self._free_one_page(zone, pcp.pop())
            moved += 1
        if moved:
            cpu.drains[zone.idx] += 1

    def _pcp_take(self, cpu, zone):
        pcp = cpu.pcp[zone.idx]
        if not pcp and self._rmqueue_bulk(cpu, zone, zone.batch) == 0:
            return None
        pfn = pcp.popleft()
        self.state[pfn] = _ALLOC
        if self.debug and self._mem[pfn * PAGE_SIZE:(pfn + 1) * PAGE_SIZE] != _POISON:
            self._corrupt += 1
        return pfn

    def _watermark_ok(self, zone, mark, classzone):
        return zone.nr_free > mark + zone.lowmem_reserve[classzone]

    def _get_page_from_freelist(self, cpu, mark):
        classzone = len(self.zones) - 1
        for zone in reversed(self.zones):
            if not self._watermark_ok(zone, zone.wmark[mark], classzone):
                continue
            pfn = self._pcp_take(cpu, zone)
            if pfn is not None:
                return pfn
        return None

    def _alloc_single(self, cpu, api):
        pfn = self._get_page_from_freelist(cpu, _LOW)
        if pfn is None:
            cpu.slowpath += 1
            pfn = self._get_page_from_freelist(cpu, _MIN)
            if pfn is None:
                self._drain_all()
                cpu.drain_all += 1
                pfn = self._get_page_from_freelist(cpu, _MIN)
        if pfn is not None:
            cpu.pages[self.zid[pfn]][api] += 1
        return pfn

    def _bulk(self, cpu, n, slots, base, lst):
        """slots/base: array mode over slots[base:base+n]; lst: list mode."""
        api = _ARRAY if slots is not None else _LIST
        if n <= 0:
            return 0
        nr = 0
        if slots is not None:
            while nr < n and slots[base + nr] is not None:
                nr += 1
            if nr == n:
                return n
        cpu.calls[api] += 1
        reason = None
        if n - nr == 1:
            reason = _LAST_PAGE
        else:
            classzone = len(self.zones) - 1
            zone = None
            for z in reversed(self.zones):
                if self._watermark_ok(z, z.wmark[_LOW] + n, classzone):
                    zone = z
                    break
            if zone is None:
                reason = _WATERMARK
            else:
                account = 0
                while nr < n:
                    if slots is not None and slots[base + nr] is not None:
                        nr += 1
                        continue
                    pfn = self._pcp_take(cpu, zone)
                    if pfn is None:
                        if account == 0:
                            reason = _PCP_EMPTY
                        break
                    account += 1
                    if slots is not None:
                        slots[base + nr] = pfn
                    else:
                        lst._pages.append(pfn)
                    nr += 1
                cpu.pages[zone.idx][api] += account
        if reason is None:
            return nr
        cpu.fallbacks[reason] += 1
        pfn = self._alloc_single(cpu, api)
        if pfn is not None:
            if slots is not None:
                slots[base + nr] = pfn
            else:
                lst._pages.append(pfn)
            nr += 1
        else:
            cpu.failures[api] += 1
        return nr

    def _free_one(self, cpu, pfn):
        if not 0 <= pfn < self.nr_pages:
            raise ValueError("no page %d in this arena" % pfn)
        if self.state[pfn] != _ALLOC:
            raise ValueError("page %d is not allocated (double free?)" % pfn)
        zone = self.zones[self.zid[pfn]]
        if self.debug:
            self._mem[pfn * PAGE_SIZE:(pfn + 1) * PAGE_SIZE] = _POISON
        self.state[pfn] = _PCP
        pcp = cpu.pcp[zone.idx]
        pcp.appendleft(pfn)
        cpu.freed[zone.idx] += 1
        if len(pcp) >= zone.high:
            self._free_pcppages_bulk(cpu, zone, zone.batch)

    def _drain_cpu(self, cpu):
        for zone in self.zones:
            if cpu.pcp[zone.idx]:
                self._free_pcppages_bulk(cpu, zone, len(cpu.pcp[zone.idx]))

    def _drain_all(self):
        for cpu in self._cpus:
            self._drain_cpu(cpu)

    def _wake(self):
        with self._cond:
            self._free_seq += 1
            self._cond.notify_all()

    # ------------------------------------------------------------ public API
    page_size = PAGE_SIZE

    def alloc_page(self):
        with self._lock:
            cpu = self._this_cpu()
            pfn = self._alloc_single(cpu, _SINGLE)
            cpu.calls[_SINGLE] += 1
            if pfn is None:
                cpu.failures[_SINGLE] += 1
            return pfn

    def alloc_pages_bulk_list(self, n, pages):
        if not isinstance(pages, PageList) or pages._alloc is not self:
            raise ValueError("PageList belongs to another allocator")
        with self._lock:
            return self._bulk(self._this_cpu(), n, None, 0, pages)

    def alloc_pages_bulk_array(self, n, array, start=0):
        if not isinstance(array, PageArray) or array._alloc is not self:
            raise ValueError("PageArray belongs to another allocator")
        if start < 0 or start > array.nslots or (n > 0 and start + n > array.nslots):
            raise IndexError("range [%d, %d) outside the %d-slot array" % (start, start + n, array.nslots))
        with self._lock:
            return self._bulk(self._this_cpu(), n, array._slots, start, None)

    def refill_array_single(self, array, start=0, stop=None):
        end = array.nslots if stop is None else stop
        if start < 0 or end > array.nslots or start > end:
            raise IndexError("bad range")
        got = 0
        for i in range(start, end):
            if array._slots[i] is None:
                pfn = self.alloc_page()
                if pfn is None:
                    break
                array._slots[i] = pfn
                got += 1
        return got

    def free_page(self, pfn):
        with self._lock:
            self._free_one(self._this_cpu(), pfn)
        self._wake()

    def free_pages_bulk(self, pages, start=0, stop=None):
        freed = 0
        with self._lock:
            cpu = self._this_cpu()
            if isinstance(pages, PageArray):
                if pages._alloc is not self:
                    raise ValueError("PageArray belongs to another allocator")
                end = pages.nslots if stop is None else stop
                if start < 0 or end > pages.nslots or start > end:
                    raise IndexError("bad range")
                for i in range(start, end):
                    p = pages._slots[i]
                    if p is not None:
                        self._free_one(cpu, p)
                        pages._slots[i] = None
                        freed += 1
            elif isinstance(pages, PageList):
                if pages._alloc is not self:
                    raise ValueError("PageList belongs to another allocator")
                while pages._pages:
                    self._free_one(cpu, pages._pages[-1])
                    pages._pages.pop()
                    freed += 1
            else:
                seq = list(pages)
                for p in seq:
                    if not (0 <= p < self.nr_pages) or self.state[p] != _ALLOC:
                        raise ValueError("page %r is not allocated (double free?)" % (p,))
                if len(set(seq)) != len(seq):
                    raise ValueError("the same page appears twice")
                for p in seq:
                    self._free_one(cpu, p)
                    freed += 1
        if freed:
            self._wake()
        return freed

    def drain_local(self):
        with self._lock:
            self._drain_cpu(self._this_cpu())
        self._wake()

    def drain_all(self):
        with self._lock:
            cpu = self._this_cpu()
            self._drain_all()
            cpu.drain_all += 1
        self._wake()

    def inject_refill_failures(self, count, after=0):
        if count < 0 or after < 0:
            raise ValueError("count and after must be >= 0")
        self._inject_fail = count
        self._inject_skip = after

    def free_seq(self):
        with self._cond:
            return self._free_seq

    def wait_for_free(self, seq, timeout):
        with self._cond:
            return self._cond.wait_for(lambda: self._free_seq != seq, timeout=max(0.0, timeout))

    def page_array(self, nslots=259):
        return PageArray(self, nslots)

    def page_list(self):
        return PageList(self)

    def page_memory(self, pfn):
        if not (0 <= pfn < self.nr_pages) or self.state[pfn] != _ALLOC:
            raise ValueError("page %d is not allocated" % pfn)
        return self._mem[pfn * PAGE_SIZE:(pfn + 1) * PAGE_SIZE]

    def page_state(self, pfn):
        if not 0 <= pfn < self.nr_pages:
            raise ValueError("no page %d" % pfn)
        return ("tail", "buddy", "pcp", "alloc")[self.state[pfn]]

    def stats(self):
        with self._lock:
            nz = len(self.zones)
            calls = [sum(c.calls[a] for c in self._cpus) for a in range(3)]
            failures = [sum(c.failures[a] for c in self._cpus) for a in range(3)]
            fallbacks = [sum(c.fallbacks[a] for c in self._cpus) for a in range(3)]
            zones = {}
            for zone in self.zones:
                z = zone.idx
                pcp = sum(len(c.pcp[z]) for c in self._cpus)
                zones[zone.name] = {
                    "start": zone.start, "pages": zone.npages, "managed": zone.managed,
                    "free": zone.nr_free, "free_blocks_by_order": [len(f) for f in zone.free],
                    "pcp": pcp,
                    "watermarks": {"min": zone.wmark[0], "low": zone.wmark[1], "high": zone.wmark[2]},
                    "lowmem_reserve": list(zone.lowmem_reserve[:nz]),
                    "batch": zone.batch, "high": zone.high,
                    "pages_alloc": {API_NAMES[a]: sum(c.pages[z][a] for c in self._cpus) for a in range(3)},
                    "freed": sum(c.freed[z] for c in self._cpus),
                    "pcp_refills": sum(c.refills[z] for c in self._cpus),
                    "pcp_drains": sum(c.drains[z] for c in self._cpus),
                }
            free = sum(v["free"] for v in zones.values())
            pcp = sum(v["pcp"] for v in zones.values())
            return {
                "page_size": PAGE_SIZE, "nr_pages": self.nr_pages,
                "min_free_kbytes": self.min_free_kbytes,
                "watermark_scale_factor": self.watermark_scale_factor,
                "zones": zones,
                "calls": {API_NAMES[a]: calls[a] for a in range(3)},
                "pages": {API_NAMES[a]: sum(c.pages[z][a] for c in self._cpus for z in range(nz)) for a in range(3)},
                "fallbacks": {FALLBACK_NAMES[a]: fallbacks[a] for a in range(3)},
                "failures": {API_NAMES[a]: failures[a] for a in range(3)},
                "freed": sum(sum(c.freed) for c in self._cpus),
                "drain_all": sum(c.drain_all for c in self._cpus),
                "slowpath": sum(c.slowpath for c in self._cpus),
                "free_pages": free, "pcp_pages": pcp,
                "allocated": self.nr_pages - free - pcp,
                "threads": len(self._cpus),
                "corrupt_pages": self._corrupt,
                "debug": self.debug,
            }

    def check(self):
        with self._lock:
            covered = bytearray(self.nr_pages)
            for zone in self.zones:
                n_free = 0
                for o in range(MAX_ORDER):
                    for pfn in zone.free[o]:
                        assert self.state[pfn] == _BUDDY and self.order[pfn] == o, "bad free head %d" % pfn
                        rel = pfn - zone.start
                        assert rel % (1 << o) == 0 and rel + (1 << o) <= zone.npages, "misaligned block"
                        for i in range(1 << o):
                            assert not covered[pfn + i], "page %d in two free blocks" % (pfn + i)
                            covered[pfn + i] = 1
                            if i:
                                assert self.state[pfn + i] == _TAIL, "page %d inside a free block" % (pfn + i)
                        n_free += 1 << o
                assert n_free == zone.nr_free, "nr_free mismatch"
            for cpu in self._cpus:
                for z, pcp in enumerate(cpu.pcp):
                    for pfn in pcp:
                        assert self.state[pfn] == _PCP and self.zid[pfn] == z, "bad pcp page %d" % pfn
                        assert not covered[pfn], "page %d twice" % pfn
                        covered[pfn] = 1
            for pfn in range(self.nr_pages):
                if not covered[pfn]:
                    assert self.state[pfn] == _ALLOC, "page %d lost" % pfn
            assert self._corrupt == 0, "%d freed pages were written to" % self._corrupt
            return True


class PageList:
    """Twin of alloc._core.PageList (head == end of the Python list)."""

    def __init__(self, alloc):
        self._alloc = alloc
        self._pages = []

    def __len__(self):
        return len(self._pages)

    def __iter__(self):
        return iter(list(reversed(self._pages)))

    def push(self, pfn):
        if not (0 <= pfn < self._alloc.nr_pages) or self._alloc.state[pfn] != _ALLOC:
            raise ValueError("page %d is not allocated" % pfn)
        self._pages.append(pfn)

    def pop(self):
        if not self._pages:
            raise IndexError("pop from an empty PageList")
        return self._pages.pop()


class PageArray:
    """Twin of alloc._core.PageArray."""

    def __init__(self, alloc, nslots=259):
        if not 1 <= nslots <= 1 << 20:
            raise ValueError("nslots must be in 1..2^20")
        self._alloc = alloc
        self.nslots = nslots
        self._slots = [None] * nslots

    def __len__(self):
        return self.nslots

    def __getitem__(self, i):
        return self._slots[i]

    def __setitem__(self, i, pfn):
        if pfn is None:
            raise ValueError("use take() or Allocator.free_pages_bulk() to empty a slot")
        if self._slots[i] is not None:
            raise ValueError("slot %d is not empty" % i)
        if not (0 <= pfn < self._alloc.nr_pages) or self._alloc.state[pfn] != _ALLOC:
            raise ValueError("page %d is not allocated" % pfn)
        self._slots[i] = pfn

    def take(self, i):
        p, self._slots[i] = self._slots[i], None
        return p

    def is_empty(self, i):
        return self._slots[i] is None

    def count_empty(self, start=0, stop=None):
        return self._slots[start:stop].count(None)

    def fill_from_list(self, pages, start=0, stop=None):
        end = self.nslots if stop is None else stop
        n = 0
        for i in range(start, end):
            if not pages._pages:
                break
            if self._slots[i] is None:
                self._slots[i] = pages._pages.pop()
                n += 1
        return n

    def view(self, i):
        p = self._slots[i]
        if p is None:
            raise BufferError("page array slot %d is empty" % i)
        return self._alloc._mem[p * PAGE_SIZE:(p + 1) * PAGE_SIZE]

    def views(self, start=0, stop=None):
        end = self.nslots if stop is None else stop
        return [self.view(i) for i in range(start, end)]

    def pages(self):
        return list(self._slots)
