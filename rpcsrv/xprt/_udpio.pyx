# cython: language_level=3
"""Datagram I/O for RPC over UDP on page_pool pages: one receive queue's socket, pool and pages.

Owns: an endpoint = one UDP socket (one SO_REUSEPORT member: a receive queue),
one PagePool, and a small PageArray whose slot 0 holds the page the current
datagram is received into and whose slots 1..NPAYLOAD hold READ reply pages.
The peer's address stays in a C sockaddr between the receive and the reply,
so a NULL call costs no Python address object.

Per datagram (the caller, rpcsrv/xprt/udp.py, decodes and dispatches in between):
  recv()       if slot 0 is empty, take a page from the pool (fast path: the
               cache); NO page -> the datagram is read into a scratch buffer
               and dropped (-ENOBUFS, the caller counts it). recvmsg with
               MSG_TRUNC straight into the page: the return value is the
               datagram's real length, > PAGE_SIZE means it was cut.
  read_into()  READ data: pool pages into slots 1.., one preadv, pad zeroed.
  write_from() WRITE data: pwrite from the datagram page (no copy).
  send()       one sendmsg to the stored peer: the reply header bytes, then
               the payload pages. A full socket buffer drops the reply (UDP).
  recycle()    slot 0 and payload slots back to the pool: direct (into the
               cache: this thread is the pool's consumer), ring, or release
               (to the allocator, the XDP_REDIRECT case).
The endpoint belongs to one thread. Errors are negative errno values.
"""

from libc.errno cimport errno, EAGAIN, EINTR, ENOBUFS, EFAULT, EINVAL
from libc.string cimport memset
from libc.stdint cimport int32_t, int64_t
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE

from alloc._core cimport Allocator, PageArray, NO_PAGE, PAGE_SIZE
from alloc._pool cimport PagePool

from rpcsrv.xprt._pageio cimport positioned_io
from rpcsrv.xprt._sys cimport (AF_INET, AF_INET6, MSG_DONTWAIT, MSG_TRUNC, POLLIN, inet_ntop, iovec, msghdr,
                               ntohs, poll, pollfd, recvmsg, sendmsg, sockaddr_in, sockaddr_in6,
                               sockaddr_storage, socklen_t)

cdef enum:
    NPAYLOAD = 2                   # READ reply pages: rtmax over UDP = 2 pages (8192 bytes)
    SCRATCH = 65536

PAGE = PAGE_SIZE
PAYLOAD_PAGES = NPAYLOAD
MAX_PAYLOAD = NPAYLOAD * PAGE_SIZE
RECYCLE_MODES = ("direct", "ring", "release")

cdef char _scratch[SCRATCH]        # drop target when no page could be had (content never read)


cdef class UdpEndpoint:
    """UdpEndpoint(fd, pool): the datagram path of one receive queue (see the module doc)."""

    # attributes: see _udpio.pxd (the compiled receive loop reaches slot 0 and the peer)

    def __cinit__(self, int fd, PagePool pool not None, recycle="direct"):
        if recycle not in RECYCLE_MODES:
            raise ValueError("recycle must be one of %s" % ", ".join(RECYCLE_MODES))
        self.fd = fd
        self.pool = pool
        self.alloc = pool.allocator
        self.pages = pool.allocator.page_array(1 + NPAYLOAD)
        self.peer_len = 0
        self.recycle_mode = RECYCLE_MODES.index(recycle)
        self.payload_len = 0

    @property
    def recycle(self):
        return RECYCLE_MODES[self.recycle_mode]

    def views(self):
        """The persistent buffer of slot 0 in a list: the Unpacker's segments."""
        return [self.pages.view(0)]

    def recv(self, int timeout_ms):
        """Receive one datagram into the slot-0 page.

        Returns its real length (> PAGE_SIZE: cut to the first page), -EAGAIN when nothing
        arrived within timeout_ms, -ENOBUFS when no page could be had (a datagram was
        dropped), or another -errno.
        """
        cdef msghdr msg
        cdef iovec iov
        cdef ssize_t r
        cdef pollfd p
        cdef int32_t pfn = self.pages.slots[0]
        cdef bint nopage = False
        if pfn == NO_PAGE:
            pfn = self.pool.get_page()
            if pfn == NO_PAGE:
                nopage = True
            else:
                self.pages.slots[0] = pfn
        if nopage:
            iov.iov_base = _scratch
            iov.iov_len = SCRATCH
        else:
            iov.iov_base = self.alloc.page_address(pfn)
            iov.iov_len = PAGE_SIZE
        memset(&msg, 0, sizeof(msg))
        with nogil:
            while True:
                msg.msg_name = &self.peer_addr
                msg.msg_namelen = sizeof(sockaddr_storage)
                msg.msg_iov = &iov
                msg.msg_iovlen = 1
                msg.msg_flags = 0
                r = recvmsg(self.fd, &msg, MSG_DONTWAIT | MSG_TRUNC)
                if r >= 0:
                    break
                if errno == EINTR:
                    continue
                if errno != EAGAIN or timeout_ms <= 0:
                    r = -errno
                    break
                p.fd = self.fd
                p.events = POLLIN
                p.revents = 0
                if poll(&p, 1, timeout_ms) <= 0:
                    r = -EAGAIN
                    break
                timeout_ms = 0              # one more try, then report EAGAIN
        if r >= 0:
            self.peer_len = msg.msg_namelen
            if nopage:
                return -ENOBUFS
        return r

    def peer(self):
        """The last datagram's source as a socket-module address ((host, port) or IPv6 4-tuple)."""
        cdef char buf[64]
        cdef sockaddr_in *a4
        cdef sockaddr_in6 *a6
        if self.peer_len == 0:
            return None
        if self.peer_addr.ss_family == AF_INET:
            a4 = <sockaddr_in *>&self.peer_addr
            inet_ntop(AF_INET, &a4.sin_addr, buf, sizeof(buf))
            return (buf.decode(), ntohs(a4.sin_port))
        if self.peer_addr.ss_family == AF_INET6:
            a6 = <sockaddr_in6 *>&self.peer_addr
            inet_ntop(AF_INET6, &a6.sin6_addr, buf, sizeof(buf))
            return (buf.decode(), ntohs(a6.sin6_port), 0, 0)
        return ("?", 0)

    def read_into(self, int fd, int64_t offset, Py_ssize_t count):
        """preadv up to count (<= NPAYLOAD pages) file bytes into pool pages in slots 1..; XDR pad zeroed.

        Returns bytes read (payload_len) or -errno; -ENOBUFS if the pool gave no page.
        """
        cdef iovec iov[NPAYLOAD]
        cdef int cnt = 0
        cdef int32_t pfn
        cdef Py_ssize_t total = 0, left, pad
        cdef char *base
        if count < 0 or count > NPAYLOAD * PAGE_SIZE:
            return -EINVAL
        self.payload_len = 0
        left = count
        while left > 0:
            pfn = self.pages.slots[1 + cnt]
            if pfn == NO_PAGE:
                pfn = self.pool.get_page()
                if pfn == NO_PAGE:
                    return -ENOBUFS
                self.pages.slots[1 + cnt] = pfn
            iov[cnt].iov_base = self.alloc.page_address(pfn)
            iov[cnt].iov_len = PAGE_SIZE if left > PAGE_SIZE else left
            left -= iov[cnt].iov_len
            cnt += 1
        with nogil:
            total = positioned_io(fd, iov, cnt, offset, False)
        if total < 0:
            return total
        pad = (-total) & 3
        if pad:
            base = self.alloc.page_address(self.pages.slots[1 + total // PAGE_SIZE])
            memset(base + total % PAGE_SIZE, 0, pad)
        self.payload_len = total
        return total

    def write_from(self, int fd, int64_t file_off, Py_ssize_t rec_off, Py_ssize_t length):
        """pwrite `length` datagram bytes at rec_off to fd at file_off; bytes written or -errno."""
        cdef int32_t pfn = self.pages.slots[0]
        cdef ssize_t done
        cdef iovec iov
        if pfn == NO_PAGE or rec_off < 0 or length < 0 or rec_off + length > PAGE_SIZE:
            return -EFAULT
        iov.iov_base = self.alloc.page_address(pfn) + rec_off
        iov.iov_len = length
        if length == 0:
            return 0
        with nogil:
            done = positioned_io(fd, &iov, 1, file_off, True)
        return done

    def send(self, header, Py_ssize_t payload):
        """One sendmsg to the last peer: header bytes, then `payload` bytes (data + pad) of slots 1..

        Returns bytes sent or -errno (-EAGAIN: socket buffer full, the reply is dropped).
        """
        cdef Py_buffer hb
        cdef iovec iov[1 + NPAYLOAD]
        cdef int cnt = 1
        cdef msghdr msg
        cdef ssize_t r
        cdef int32_t pfn
        if payload < 0 or payload > NPAYLOAD * PAGE_SIZE:
            return -EINVAL
        PyObject_GetBuffer(header, &hb, PyBUF_SIMPLE)
        try:
            iov[0].iov_base = hb.buf
            iov[0].iov_len = hb.len
            while payload > 0:
                pfn = self.pages.slots[cnt]
                if pfn == NO_PAGE:
                    return -EFAULT
                iov[cnt].iov_base = self.alloc.page_address(pfn)
                iov[cnt].iov_len = PAGE_SIZE if payload > PAGE_SIZE else payload
                payload -= iov[cnt].iov_len
                cnt += 1
            memset(&msg, 0, sizeof(msg))
            msg.msg_name = &self.peer_addr
            msg.msg_namelen = self.peer_len
            msg.msg_iov = iov
            msg.msg_iovlen = cnt
            with nogil:
                while True:
                    r = sendmsg(self.fd, &msg, MSG_DONTWAIT)
                    if r < 0 and errno == EINTR:
                        continue
                    break
                if r < 0:
                    r = -errno
            return r
        finally:
            PyBuffer_Release(&hb)

    def recycle_pages(self, bint keep_rx=False):
        """Give the datagram page (unless keep_rx) and the payload pages back to the pool by mode.

        keep_rx=True leaves slot 0's page for the next datagram (a dropped frame's buffer is
        reused, as a driver does). Returns the number of pages given back.
        """
        cdef int i, n = 0
        cdef int32_t pfn
        for i in range(0 if not keep_rx else 1, 1 + NPAYLOAD):
            pfn = self.pages.slots[i]
            if pfn == NO_PAGE:
                continue
            if self.pages.exports[i]:
                raise BufferError("slot %d is exported to a buffer; release it first" % i)
            self.pages.slots[i] = NO_PAGE
            if self.recycle_mode == 2:
                self.pool.release_page(pfn)
            else:
                self.pool.put_page(pfn, self.recycle_mode == 0)
            n += 1
        self.payload_len = 0
        return n
