# The caller-owned page containers of alloc._core: PageList (the list_head the bulk list API fills),
# PageView (the buffer of one slot's page) and PageArray (rq_pages: fixed page slots). Included by
# _core.pyx; the Allocator that fills and empties them is there.
#
# Ownership: pages in a PageList or a PageArray slot are PS_ALLOC and belong to the container's
# user; PageList links them through the allocator's next[] (free for the owner's use), and a list
# or array dropped with pages in it gives them back to its Allocator (__dealloc__) rather than leak.
# A slot whose page is exported as a buffer (PageView) cannot be freed while the buffer lives.
# Threads: no lock of their own; a container is used by one thread at a time (its owner's), and
# the Allocator calls that fill or empty it take the allocator's own locks (_core.pyx's doc).

cdef class PageList:
    """A caller-owned list of allocated pages (the list_head the bulk list API fills at its head)."""

    def __cinit__(self, Allocator alloc not None):
        self.alloc = alloc
        self.head = NO_PAGE
        self.count = 0

    def __len__(self):
        return self.count

    def __iter__(self):
        cdef int32_t p = self.head
        while p != NO_PAGE:
            yield p
            p = self.alloc.next[p]

    def push(self, int32_t pfn):
        """Put an allocated page at the head of the list (the list now owns it)."""
        if not (0 <= pfn < self.alloc.nr_pages) or self.alloc.state[pfn] != PS_ALLOC:
            raise ValueError("page %d is not allocated" % pfn)
        self.alloc.next[pfn] = self.head
        self.head = pfn
        self.count += 1

    def pop(self):
        """Remove and return the head page (the caller now owns it)."""
        cdef int32_t p = self.head
        if p == NO_PAGE:
            raise IndexError("pop from an empty PageList")
        self.head = self.alloc.next[p]
        self.count -= 1
        return p

    def __dealloc__(self):
        # Pages still on a dropped list go back to the allocator rather than leak.
        if self.alloc is not None and self.head != NO_PAGE:
            self.alloc.free_pages_bulk(self)


cdef class PageView:
    """The buffer of whatever page currently sits in one PageArray slot (one persistent object per slot).

    Usable wherever a writable buffer is: socket.recv_into, recvmsg_into, sendmsg,
    os.preadv, os.pwritev, memoryview(). An empty slot raises BufferError. While
    a buffer is exported the slot's page cannot be freed.
    """
    cdef PageArray arr
    cdef Py_ssize_t i

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        cdef int32_t pfn = self.arr.slots[self.i]
        if pfn == NO_PAGE:
            raise BufferError("page array slot %d is empty" % self.i)
        PyBuffer_FillInfo(buffer, self, self.arr.alloc.page_address(pfn), PAGE_SIZE, 0, flags)
        self.arr.exports[self.i] += 1
        self.arr.nexports += 1

    def __releasebuffer__(self, Py_buffer *buffer):
        self.arr.exports[self.i] -= 1
        self.arr.nexports -= 1

    @property
    def slot(self):
        return self.i

    def __repr__(self):
        return "<PageView slot %d page %s>" % (self.i, self.arr[self.i])


cdef class PageArray:
    """A fixed array of page slots (rq_pages): each slot holds a page frame number or is empty (None).

    Pages in slots are owned by the array's user. Slots are filled by
    Allocator.alloc_pages_bulk_array / refill_array_single / fill_from_list or by
    assignment into an empty slot, and emptied by Allocator.free_pages_bulk or take().
    """

    def __cinit__(self, Allocator alloc not None, Py_ssize_t nslots=259):
        cdef Py_ssize_t i
        if nslots < 1 or nslots > 1 << 20:
            raise ValueError("nslots must be in 1..2^20")
        self.alloc = alloc
        self.nslots = nslots
        self.slots = <int32_t *>malloc(nslots * sizeof(int32_t))
        self.exports = <int *>calloc(nslots, sizeof(int))
        if not self.slots or not self.exports:
            raise MemoryError()
        for i in range(nslots):
            self.slots[i] = NO_PAGE
        self._views = [None] * nslots

    def __dealloc__(self):
        if self.slots != NULL and self.alloc is not None:
            try:
                self.alloc.free_pages_bulk(self)
            except Exception:
                pass
        free(self.slots)
        free(self.exports)

    def __len__(self):
        return self.nslots

    def __getitem__(self, Py_ssize_t i):
        if i < 0:
            i += self.nslots
        if not 0 <= i < self.nslots:
            raise IndexError("slot %d out of range" % i)
        return None if self.slots[i] == NO_PAGE else self.slots[i]

    def __setitem__(self, Py_ssize_t i, pfn):
        """Put an allocated page into an empty slot (the array now owns it)."""
        cdef int32_t p
        if i < 0:
            i += self.nslots
        if not 0 <= i < self.nslots:
            raise IndexError("slot %d out of range" % i)
        if pfn is None:
            raise ValueError("use take() or Allocator.free_pages_bulk() to empty a slot")
        p = pfn
        if self.slots[i] != NO_PAGE:
            raise ValueError("slot %d is not empty" % i)
        if not (0 <= p < self.alloc.nr_pages) or self.alloc.state[p] != PS_ALLOC:
            raise ValueError("page %d is not allocated" % p)
        self.slots[i] = p

    def take(self, Py_ssize_t i):
        """Empty slot i and return its page (the caller now owns it), or None if it was empty."""
        cdef int32_t p
        if not 0 <= i < self.nslots:
            raise IndexError("slot %d out of range" % i)
        if self.exports[i]:
            raise BufferError("slot %d is exported to a buffer" % i)
        p = self.slots[i]
        self.slots[i] = NO_PAGE
        return None if p == NO_PAGE else p

    def is_empty(self, Py_ssize_t i):
        if not 0 <= i < self.nslots:
            raise IndexError("slot %d out of range" % i)
        return self.slots[i] == NO_PAGE

    def count_empty(self, Py_ssize_t start=0, stop=None):
        """Number of empty slots in [start, stop)."""
        cdef Py_ssize_t i, end = self.nslots if stop is None else stop, n = 0
        if start < 0 or end > self.nslots or start > end:
            raise IndexError("bad range")
        for i in range(start, end):
            if self.slots[i] == NO_PAGE:
                n += 1
        return n

    def fill_from_list(self, PageList pages not None, Py_ssize_t start=0, stop=None):
        """Move pages from the head of `pages` into the empty slots of [start, stop), in slot order.

        Returns the number of slots filled (stops when the list runs dry).
        """
        cdef Py_ssize_t i, end = self.nslots if stop is None else stop, n = 0
        cdef int32_t p
        if pages.alloc is not self.alloc:
            raise ValueError("PageList belongs to another allocator")
        if start < 0 or end > self.nslots or start > end:
            raise IndexError("bad range")
        for i in range(start, end):
            if pages.head == NO_PAGE:
                break
            if self.slots[i] == NO_PAGE:
                p = pages.head
                pages.head = self.alloc.next[p]
                pages.count -= 1
                self.slots[i] = p
                n += 1
        return n

    def view(self, Py_ssize_t i):
        """The persistent buffer object of slot i (see PageView); created once per slot."""
        if not 0 <= i < self.nslots:
            raise IndexError("slot %d out of range" % i)
        v = self._views[i]
        if v is None:
            pv = PageView.__new__(PageView)
            (<PageView>pv).arr = self
            (<PageView>pv).i = i
            self._views[i] = pv
            v = pv
        return v

    def views(self, Py_ssize_t start=0, stop=None):
        """A list of the persistent slot buffers of [start, stop) (one new list, no new views)."""
        cdef Py_ssize_t end = self.nslots if stop is None else stop
        return [self.view(i) for i in range(start, end)]

    def pages(self):
        """The slot contents as a list (None for empty slots)."""
        return [None if self.slots[i] == NO_PAGE else self.slots[i] for i in range(self.nslots)]
