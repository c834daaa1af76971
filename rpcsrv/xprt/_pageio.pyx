# cython: language_level=3
"""Page-array I/O for the RPC data path: system calls straight on request pages.

Owns: turning a byte range of a PageArray into an iovec and running readv,
preadv, pwritev or sendmsg on it, without the GIL and without a Python object
per page. A byte range is named by (base_slot, offset, length): byte k of the
range lives in slot base_slot + (offset + k) // 4096 at (offset + k) % 4096,
which is how a record received from slot 0 (or a reply built from its first
response slot) is laid out.

Invariants: every slot a range touches must hold a page (else -EFAULT is
returned and nothing is transferred); the caller owns the PageArray for the
duration of the call (one worker thread); nothing here allocates or frees
pages. Errors come back as negative errno values, never exceptions, so the
caller decides what a failure means (a dropped connection, an NFS status).
"""

from libc.errno cimport errno, EAGAIN, EINTR, EFAULT, ETIMEDOUT
from libc.string cimport memcpy, memset
from libc.stdint cimport int64_t, int32_t
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE

from alloc._core cimport PageArray, NO_PAGE, PAGE_SIZE, PAGE_SHIFT

from rpcsrv.xprt._sys cimport (iovec, msghdr, pollfd, poll, POLLOUT, preadv, pwritev, readv, sendmsg,
                               MSG_DONTWAIT, MSG_NOSIGNAL)

PAGE = PAGE_SIZE


cdef int page_iov(PageArray pa, Py_ssize_t base_slot, Py_ssize_t off, Py_ssize_t n,
                  iovec *iov, int start) noexcept nogil:
    """Append the iovec of a byte range; returns the new count or -1 (empty slot / overflow)."""
    cdef Py_ssize_t slot = base_slot + (off >> PAGE_SHIFT)
    cdef Py_ssize_t o = off & (PAGE_SIZE - 1)
    cdef Py_ssize_t chunk
    cdef int cnt = start
    cdef int32_t pfn
    while n > 0:
        if slot >= pa.nslots or cnt >= MAX_IOV:
            return -1
        pfn = pa.slots[slot]
        if pfn == NO_PAGE:
            return -1
        chunk = PAGE_SIZE - o
        if chunk > n:
            chunk = n
        iov[cnt].iov_base = pa.alloc.page_address(pfn) + o
        iov[cnt].iov_len = chunk
        cnt += 1
        n -= chunk
        o = 0
        slot += 1
    return cnt


cdef void iov_advance(iovec **iovp, int *cnt, size_t done) noexcept nogil:
    cdef iovec *iov = iovp[0]
    while cnt[0] > 0 and done >= iov[0].iov_len:
        done -= iov[0].iov_len
        iov += 1
        cnt[0] -= 1
    if cnt[0] > 0 and done:
        iov[0].iov_base = <char *>iov[0].iov_base + done
        iov[0].iov_len -= done
    iovp[0] = iov


cdef ssize_t positioned_io(int fd, iovec *iov, int cnt, int64_t file_off, bint write) noexcept nogil:
    """preadv (until the iovec is full or end of file) or pwritev (all of it) at file_off.

    Consumes the iovec array (it is advanced in place). Bytes moved or -errno.
    """
    cdef ssize_t r
    cdef ssize_t total = 0
    while cnt > 0:
        if write:
            r = pwritev(fd, iov, cnt if cnt < IOV_MAX else IOV_MAX, file_off + total)
        else:
            r = preadv(fd, iov, cnt if cnt < IOV_MAX else IOV_MAX, file_off + total)
        if r < 0:
            if errno == EINTR:
                continue
            return -errno
        if r == 0:
            break
        total += r
        iov_advance(&iov, &cnt, r)
    return total


cdef enum:
    IO_READV = 0        # one readv (a stream: what is ready now)
    IO_PREAD = 1        # preadv until full or end of file
    IO_PWRITE = 2       # pwritev all of it


cdef Py_ssize_t _range_io(int fd, PageArray pa, Py_ssize_t base_slot, Py_ssize_t off, Py_ssize_t n,
                          int64_t file_off, int how):
    """The byte range [off, off+n) of the pages from base_slot on as an iovec, moved by `how` (IO_*)."""
    cdef iovec iov[MAX_IOV]
    cdef int cnt
    cdef ssize_t r
    if n <= 0:
        return 0
    cnt = page_iov(pa, base_slot, off, n, iov, 0)
    if cnt < 0:
        return -EFAULT
    with nogil:
        if how == IO_READV:
            if cnt > IOV_MAX:
                cnt = IOV_MAX               # a stream: the caller reads the rest next
            r = readv(fd, iov, cnt)
            while r < 0 and errno == EINTR:
                r = readv(fd, iov, cnt)
            if r < 0:
                r = -errno
        else:
            r = positioned_io(fd, iov, cnt, file_off, how == IO_PWRITE)
    return r


def recv_into(int fd, PageArray pa not None, Py_ssize_t base_slot, Py_ssize_t off, Py_ssize_t n):
    """One readv of up to n bytes into the range; bytes read, 0 at EOF, or -errno (-EAGAIN when none ready)."""
    return _range_io(fd, pa, base_slot, off, n, 0, IO_READV)


def pread_into(int fd, PageArray pa not None, Py_ssize_t base_slot, Py_ssize_t off, Py_ssize_t n,
               int64_t file_off):
    """preadv until n bytes or end of file; bytes read or -errno."""
    return _range_io(fd, pa, base_slot, off, n, file_off, IO_PREAD)


def pwrite_from(int fd, PageArray pa not None, Py_ssize_t base_slot, Py_ssize_t off, Py_ssize_t n,
                int64_t file_off):
    """pwritev the whole range at file_off; bytes written or -errno."""
    return _range_io(fd, pa, base_slot, off, n, file_off, IO_PWRITE)


def copy_in(PageArray pa not None, Py_ssize_t base_slot, Py_ssize_t off, data):
    """Copy a bytes-like object into the range starting at off; returns its length or -EFAULT."""
    cdef Py_buffer buf
    cdef iovec iov[MAX_IOV]
    cdef int cnt, i
    cdef Py_ssize_t done = 0
    PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE)
    try:
        cnt = page_iov(pa, base_slot, off, buf.len, iov, 0)
        if cnt < 0:
            return -EFAULT
        for i in range(cnt):
            memcpy(iov[i].iov_base, <char *>buf.buf + done, iov[i].iov_len)
            done += iov[i].iov_len
        return buf.len
    finally:
        PyBuffer_Release(&buf)


def zero(PageArray pa not None, Py_ssize_t base_slot, Py_ssize_t off, Py_ssize_t n):
    """Zero n bytes of the range (XDR padding)."""
    cdef iovec iov[MAX_IOV]
    cdef int cnt, i
    cnt = page_iov(pa, base_slot, off, n, iov, 0)
    if cnt < 0:
        return -EFAULT
    for i in range(cnt):
        memset(iov[i].iov_base, 0, iov[i].iov_len)
    return n


def copy_out(PageArray pa not None, Py_ssize_t base_slot, Py_ssize_t off, Py_ssize_t n):
    """The range as bytes (a copy: for small things such as cached replies and tests)."""
    cdef iovec iov[MAX_IOV]
    cdef int cnt, i
    cdef Py_ssize_t done = 0
    cnt = page_iov(pa, base_slot, off, n, iov, 0)
    if cnt < 0:
        raise ValueError("range touches an empty slot")
    out = bytearray(n)
    cdef char *dst = out
    for i in range(cnt):
        memcpy(dst + done, iov[i].iov_base, iov[i].iov_len)
        done += iov[i].iov_len
    return bytes(out)


def send_ranges(int fd, PageArray pa not None, Py_ssize_t slot1, Py_ssize_t len1,
                Py_ssize_t slot2, Py_ssize_t len2, int timeout_ms):
    """sendmsg of two page ranges (a reply header, then payload pages) as one message.

    Each range starts at offset 0 of its slot. A full send buffer is waited out
    with poll() for at most timeout_ms in total; then -ETIMEDOUT (a client that
    does not read its replies). Returns bytes sent or -errno.
    """
    cdef iovec iovbuf[MAX_IOV]
    cdef iovec *iov = iovbuf
    cdef int cnt
    cdef msghdr msg
    cdef ssize_t r
    cdef Py_ssize_t total = 0
    cdef pollfd p
    cdef int waited = 0, step
    cnt = page_iov(pa, slot1, 0, len1, iov, 0)
    if cnt >= 0 and len2 > 0:
        cnt = page_iov(pa, slot2, 0, len2, iov, cnt)
    if cnt < 0:
        return -EFAULT
    memset(&msg, 0, sizeof(msg))
    with nogil:
        while cnt > 0:
            msg.msg_iov = iov
            msg.msg_iovlen = cnt if cnt < IOV_MAX else IOV_MAX
            r = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT)
            if r < 0:
                if errno == EINTR:
                    continue
                if errno == EAGAIN:
                    if waited >= timeout_ms:
                        total = -ETIMEDOUT
                        break
                    step = 50 if timeout_ms - waited > 50 else timeout_ms - waited
                    p.fd = fd
                    p.events = POLLOUT
                    p.revents = 0
                    if poll(&p, 1, step) == 0:
                        waited += step
                    continue
                total = -errno
                break
            total += r
            iov_advance(&iov, &cnt, r)
    return total
