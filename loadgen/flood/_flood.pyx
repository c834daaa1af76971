# cython: language_level=3
"""The compiled UDP flood: a sendmmsg loop of one RPC call template, bounded in time and rate.

flood() runs with the GIL released in the calling process: one connected
UDP socket to an IPv4 address (the caller, loadgen/flood/xdpflood.py, admits only
the loopback range), `batch` copies of the template per sendmmsg, each with
its own xid (the first 4 bytes), paced so that no more than rate x elapsed
datagrams have gone out (the loop sleeps in nanosleep while it is ahead),
for at most `duration` seconds. With drain=True, replies are read back with
recvmmsg between batches and counted (datagrams of at least 24 bytes whose
reply header is MSG_ACCEPTED SUCCESS; others count as bad). Nothing is
retransmitted or matched: this measures the receiver, not round trips.

This module imports nothing of alloc or rpcsrv.
"""

from libc.errno cimport errno, EAGAIN, EINTR
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset

cdef extern from "sys/socket.h" nogil:
    ctypedef unsigned int socklen_t
    cdef struct sockaddr:
        unsigned short sa_family
    cdef struct iovec:
        void *iov_base
        size_t iov_len
    cdef struct msghdr:
        void *msg_name
        socklen_t msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags
    cdef struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    int socket(int, int, int)
    int connect(int, const sockaddr *, socklen_t)
    int setsockopt(int, int, int, const void *, socklen_t)
    int recvmmsg(int fd, mmsghdr *msgvec, unsigned int vlen, int flags, void *timeout)
    int sendmmsg(int fd, mmsghdr *msgvec, unsigned int vlen, int flags)
    int AF_INET
    int SOCK_DGRAM
    int SOL_SOCKET
    int SO_RCVBUF
    int MSG_DONTWAIT

cdef extern from "netinet/in.h" nogil:
    cdef struct in_addr:
        unsigned int s_addr
    cdef struct sockaddr_in:
        unsigned short sin_family
        unsigned short sin_port
        in_addr sin_addr
    unsigned short htons(unsigned short)
    uint32_t htonl(uint32_t)

cdef extern from "arpa/inet.h" nogil:
    int inet_pton(int af, const char *src, void *dst)

cdef extern from "unistd.h" nogil:
    int close(int)

cdef extern from "time.h" nogil:
    cdef struct timespec:
        long tv_sec
        long tv_nsec
    int clock_gettime(int, timespec *)
    int nanosleep(const timespec *, timespec *)
    int CLOCK_MONOTONIC

cdef enum:
    MAXB = 64
    RXBUF = 2048

MAX_BATCH = MAXB
MAX_DURATION = 600.0
MAX_RATE = 10_000_000.0


cdef inline int64_t _now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


def flood(str host, int port, bytes template, double duration, double rate, int batch=32, bint drain=True,
          unsigned int xid0=0):
    """Send `template` to host:port (IPv4) for `duration` s at most `rate` datagrams/s.

    Returns {"sent", "send_errors", "replies", "bad_replies", "elapsed"}. OSError if the socket
    cannot be made; ValueError for bounds (duration in (0, 600], rate in (0, 1e7], batch 1..64,
    a template of 4..65507 bytes).
    """
    cdef sockaddr_in sa
    cdef int fd, r, i, k, rcv = 4 << 20
    cdef Py_ssize_t tlen = len(template)
    cdef char *bufs = NULL
    cdef char *rx = NULL
    cdef mmsghdr msgs[MAXB]
    cdef iovec iov[MAXB]
    cdef mmsghdr rmsgs[MAXB]
    cdef iovec riov[MAXB]
    cdef uint64_t sent = 0, errs = 0, replies = 0, bad = 0
    cdef int64_t t0, t, end, allowed
    cdef uint32_t xid = xid0
    cdef double ns_per_dgram
    cdef timespec nap
    cdef unsigned char *p
    if not 0 < duration <= MAX_DURATION:
        raise ValueError("duration must be in (0, %g] seconds" % MAX_DURATION)
    if not 0 < rate <= MAX_RATE:
        raise ValueError("rate must be in (0, %g] datagrams/s" % MAX_RATE)
    if not 1 <= batch <= MAXB:
        raise ValueError("batch must be in 1..%d" % MAXB)
    if not 4 <= tlen <= 65507:
        raise ValueError("the template must hold 4..65507 bytes")
    memset(&sa, 0, sizeof(sa))
    sa.sin_family = AF_INET
    sa.sin_port = htons(port)
    if inet_pton(AF_INET, host.encode(), &sa.sin_addr) != 1:
        raise ValueError("%s is not an IPv4 address" % host)
    fd = socket(AF_INET, SOCK_DGRAM, 0)
    if fd < 0:
        raise OSError(errno, "socket")
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv))
    if connect(fd, <sockaddr *>&sa, sizeof(sa)) < 0:
        r = errno
        close(fd)
        raise OSError(r, "connect to %s:%d" % (host, port))
    bufs = <char *>malloc(tlen * batch)
    rx = <char *>malloc(RXBUF * MAXB)
    if bufs == NULL or rx == NULL:
        free(bufs)
        free(rx)
        close(fd)
        raise MemoryError()
    memset(msgs, 0, sizeof(msgs))
    memset(rmsgs, 0, sizeof(rmsgs))
    for i in range(batch):
        memcpy(bufs + i * tlen, <const char *>template, tlen)
        iov[i].iov_base = bufs + i * tlen
        iov[i].iov_len = tlen
        msgs[i].msg_hdr.msg_iov = &iov[i]
        msgs[i].msg_hdr.msg_iovlen = 1
    for i in range(MAXB):
        riov[i].iov_base = rx + i * RXBUF
        riov[i].iov_len = RXBUF
        rmsgs[i].msg_hdr.msg_iov = &riov[i]
        rmsgs[i].msg_hdr.msg_iovlen = 1
    ns_per_dgram = 1e9 / rate
    with nogil:
        t0 = _now_ns()
        end = t0 + <int64_t>(duration * 1e9)
        while True:
            t = _now_ns()
            if t >= end:
                break
            allowed = <int64_t>((t - t0) / ns_per_dgram) - <int64_t>sent
            if allowed < batch:
                nap.tv_sec = 0
                nap.tv_nsec = <long>((batch - allowed) * ns_per_dgram)
                if nap.tv_nsec > 1000000:
                    nap.tv_nsec = 1000000
                if not drain:
                    nanosleep(&nap, NULL)
            else:
                for i in range(batch):
                    xid += 1
                    p = <unsigned char *>iov[i].iov_base
                    p[0] = (xid >> 24) & 0xFF
                    p[1] = (xid >> 16) & 0xFF
                    p[2] = (xid >> 8) & 0xFF
                    p[3] = xid & 0xFF
                k = 0
                while k < batch:
                    r = sendmmsg(fd, &msgs[k], batch - k, 0)
                    if r < 0:
                        if errno == EINTR:
                            continue
                        errs += batch - k              # ECONNREFUSED, ENOBUFS...: counted, not retried
                        break
                    k += r
                sent += batch                          # attempts: the pace counts failed ones too
            if drain:
                while True:
                    r = recvmmsg(fd, rmsgs, MAXB, MSG_DONTWAIT, NULL)
                    if r <= 0:
                        break
                    for i in range(r):
                        p = <unsigned char *>riov[i].iov_base
                        if (rmsgs[i].msg_len >= 24 and p[4] == 0 and p[5] == 0 and p[6] == 0 and p[7] == 1
                                and p[8] == 0 and p[9] == 0 and p[10] == 0 and p[11] == 0
                                and p[20] == 0 and p[21] == 0 and p[22] == 0 and p[23] == 0):
                            replies += 1
                        else:
                            bad += 1
                    if r < MAXB:
                        break
                if allowed < batch:
                    nanosleep(&nap, NULL)
        t = _now_ns()
    close(fd)
    free(bufs)
    free(rx)
    return {"sent": sent - errs, "send_errors": errs, "replies": replies, "bad_replies": bad,
            "elapsed": (t - t0) / 1e9}
