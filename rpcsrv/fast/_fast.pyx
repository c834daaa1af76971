# cython: language_level=3
"""The compiled request cycle: workers that wait on the epoll set themselves, receive a record into
their pages, serve the procedures that carry the load in C, send, release, and refill their pages
with the configured svc_alloc_arg strategy, all without the GIL.

Threads and ownership
---------------------
FastServer  one per server: the configuration (fp_conf), the verified-handle cache, the shared
            duplicate request cache, the epoll set (listener, wake pipe, connections, every one
            EPOLLONESHOT so a connection is in one worker's hands at a time), the budget of pages
            parked in partial records (one mutex). Read by every worker.
FastConn    one per TCP connection: its socket fd and record-marking state (fconn_t, owned by the
            worker that took it from epoll until it re-arms it), and the pages of a partial record
            parked in it (svc_tcp_save_pages). Closed only by the worker holding it (a sweep marks
            it doomed and shuts it down, which hands it to a worker).
FastWorker  one per worker thread, used by that thread alone: its page array (rq_pages), the
            holes it emptied, its counters (fp_stats), the request (fp_req).
FastWorker.serve() loops in C and returns to Python only for what needs Python: a call the fast
path does not serve (the Python path answers it: rpcsrv.server), an accept, a connection to close,
the once-a-second sweep, a single-py refill, or stop. This is knfsd's svc_recv -> svc_process ->
svc_send -> svc_xprt_release with one wake-up per request and no queue between threads.
"""

from libc.errno cimport errno, EAGAIN, EINTR, ECONNRESET
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, rand
from libc.string cimport memcpy, memset
from posix.stat cimport struct_stat

from alloc._core cimport Allocator, PageArray, PageList, cpu_t, NO_PAGE, PAGE_SIZE, SVC_RANGE
from rpcsrv.xprt._sys cimport (iovec, msghdr, pollfd, poll, POLLIN, POLLOUT, readv, recvmsg, sendmsg,
                               MSG_DONTWAIT, MSG_NOSIGNAL)

include "_fast_decl.pxi"
include "_fast_conn.pxi"
include "_fast_worker.pxi"
