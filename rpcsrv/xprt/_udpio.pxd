# C-level declaration of UdpEndpoint (rpcsrv/xprt/_udpio.pyx has the theory).
#
# The compiled receive loop (rpcsrv/xprt/_udpfast.pyx) cimports it to hand a
# datagram it passes to the Python path (XDP_PASS) over to the endpoint: the
# page goes into slot 0 and the sender's address into peer_addr, as if the
# endpoint's own recv() had received it.

from alloc._core cimport Allocator, PageArray
from alloc._pool cimport PagePool
from rpcsrv.xprt._sys cimport sockaddr_storage, socklen_t


cdef class UdpEndpoint:
    cdef readonly int fd
    cdef readonly PagePool pool
    cdef readonly PageArray pages
    cdef Allocator alloc
    cdef sockaddr_storage peer_addr
    cdef socklen_t peer_len
    cdef int recycle_mode
    cdef readonly Py_ssize_t payload_len     # bytes of READ data in slots 1.. (0: none)
