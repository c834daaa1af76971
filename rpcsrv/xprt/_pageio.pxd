# Declarations of rpcsrv.xprt._pageio shared with the other compiled transports (cimport).
from libc.stdint cimport int64_t
from alloc._core cimport PageArray

from rpcsrv.xprt._sys cimport iovec

cdef enum:
    # iovecs one page range can need: a 4 MiB payload (1024 pages) and its header, with room
    MAX_IOV = 1040
    # at most this many go to one readv/preadv/pwritev/sendmsg (the kernel's UIO_MAXIOV)
    IOV_MAX = 1024

cdef int page_iov(PageArray pa, Py_ssize_t base_slot, Py_ssize_t off, Py_ssize_t n,
                  iovec *iov, int start) noexcept nogil
cdef void iov_advance(iovec **iovp, int *cnt, size_t done) noexcept nogil
cdef ssize_t positioned_io(int fd, iovec *iov, int cnt, int64_t file_off, bint write) noexcept nogil
