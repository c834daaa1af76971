"""RPC over UDP on page_pool pages: the seed's second user (page_pool) on an RPC receive path.

What it is
----------
`--udp` makes the server also answer ONC RPC calls (NULL, MOUNT, NFSv3) in
UDP datagrams on the TCP listener's port number. Each receive thread is a
"receive queue": its own SO_REUSEPORT socket (the kernel spreads datagrams
over them by flow hash, as RSS does over NIC queues), its own PagePool
(alloc/_pool.pyx, strategy single | list | array) and its own UdpEndpoint
(xprt/_udpio.pyx). Per datagram, in the receive thread:

  1. a page from the pool (the cache; else up to 64 from the recycle ring;
     else the slow path refills from the page allocator by strategy); no page
     -> the datagram is dropped and counted (rpc error reason udp_no_page);
  2. recvmsg straight into that page (one page per datagram, as XDP);
  3. svc.Svc.process, the request core TCP uses too (with this transport's
     limits, below);
  4. READ data goes into pool pages (preadv), WRITE data is written from the
     datagram page (pwrite); the reply goes out in one sendmsg (header bytes
     + payload pages) to the sender;
  5. the pages go back to the pool: `direct` (default) into the cache, as
     page_pool_recycle_direct from the NAPI loop; `ring` through the bounded
     recycle ring (a full ring releases the page); `release` back to the
     page allocator, the XDP_REDIRECT-to-veth case the 5.13 figures measured,
     where every packet needs a fresh page and the slow path is hot.

Sizes over UDP (RFC 1813 and 5531 leave them to the server)
-----------------------------------------------------------
* A call must fit one page (4096 bytes). A longer datagram arrives cut
  (MSG_TRUNC): if its call header decodes it is answered GARBAGE_ARGS (so
  the client stops retransmitting), else dropped; both counted as
  udp_oversize. Hence WRITE over UDP carries at most UDP_WTMAX = 3072 data
  bytes (a worst-case header: 400-byte AUTH_SYS credential, 64-byte handle).
* The transport's limits (svc.XprtLimits, which the NFS layer clamps by):
  READ count at most UDP_RTMAX = 8192 (two pool pages), so the handler
  returns a short read with a correct eof (RFC 1813: a short read is not end
  of file unless eof says so); READDIR count and READDIRPLUS
  dircount/maxcount at most 8192.
* FSINFO over UDP advertises rtmax = rtpref = 8192, wtmax = 3072,
  wtpref = 2048, wtmult = 1024, dtpref = 8192.
* Any other reply that would exceed UDP_MAX_REPLY (65507, the IPv4 UDP
  payload limit) is replaced by SYSTEM_ERR (reason udp_reply_too_large):
  never a truncated datagram.

Threads: the server runs one receive thread per socket (rpcsrv/server.py);
each thread owns its socket's endpoint and pool (the pool's cache is
single-consumer). close() runs after those threads are joined: the pools are
closed (page_pool_destroy) so every page is back in the allocator before the
server drains it. Non-idempotent calls go through a duplicate request cache
of their own (replies without a record marker).
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from alloc._pool import PagePool
from alloc.pool_metrics import PoolCollector

from . import _udpio

__all__ = ["UdpConfig", "UdpEndpoints", "UdpPayloadIO", "udp_fsinfo", "UDP_RTMAX", "UDP_WTMAX",
           "UDP_DIRMAX", "UDP_MAX_REPLY", "POOL_STRATEGIES", "RECYCLE_MODES", "POLL_MS"]

PAGE = _udpio.PAGE
UDP_RTMAX = _udpio.MAX_PAYLOAD          # 8192: two pool pages of READ data
UDP_WTMAX = 3072                        # fits one page with a worst-case call header
UDP_DIRMAX = 8192
UDP_MAX_REPLY = 65507
POOL_STRATEGIES = ("single", "list", "array")
RECYCLE_MODES = _udpio.RECYCLE_MODES
POLL_MS = 200


@dataclass
class UdpConfig:
    """How the UDP path runs (the CLI fills it from --pool-strategy, --udp-threads, --udp-recycle)."""
    pool_strategy: str = "array"
    threads: int = 1                # receive threads (SO_REUSEPORT sockets); they share one GIL
    recycle: str = "direct"
    ring_size: int = 1024
    rcvbuf: int = 4 << 20

    def __post_init__(self):
        if self.pool_strategy not in POOL_STRATEGIES:
            raise ValueError("pool strategy must be one of %s" % ", ".join(POOL_STRATEGIES))
        if self.recycle not in RECYCLE_MODES:
            raise ValueError("udp recycle mode must be one of %s" % ", ".join(RECYCLE_MODES))
        if self.threads < 1:
            raise ValueError("udp threads must be >= 1")


def udp_fsinfo(info):
    """The FSINFO an NFS client should see over UDP (from the one it sees over TCP)."""
    return info._replace(rtmax=UDP_RTMAX, rtpref=UDP_RTMAX, wtmax=UDP_WTMAX, wtpref=2048, wtmult=1024,
                         dtpref=UDP_DIRMAX)


class UdpPayloadIO:
    """Request.io of a datagram call: READ data into pool pages, WRITE data from the datagram page."""

    __slots__ = ("ep",)

    def __init__(self, ep):
        self.ep = ep

    def read_payload(self, fd: int, offset: int, count: int) -> int:
        if count > UDP_RTMAX:
            count = UDP_RTMAX
        n = self.ep.read_into(fd, offset, count)
        if n < 0:
            raise OSError(-n, "read into pool pages: %s" % errno.errorcode.get(-n, "?"))
        return n

    def write_payload(self, fd: int, file_offset: int, rec_offset: int, length: int) -> int:
        n = self.ep.write_from(fd, file_offset, rec_offset, length)
        if n < 0:
            raise OSError(-n, "write from the datagram page: %s" % errno.errorcode.get(-n, "?"))
        return n


class UdpEndpoints:
    """The UDP sockets of one server (SO_REUSEPORT on the TCP port number), each with its
    PagePool and UdpEndpoint (a receive queue); the pools' metrics on the server's registry."""

    def __init__(self, allocator, cfg: UdpConfig, registry):
        self.allocator = allocator
        self.cfg = cfg
        self.pools = []
        self.endpoints = []
        self.socks = []
        PoolCollector(lambda: list(self.pools)).register(registry)

    def open(self, host: str, port: int) -> list:
        """Bind `threads` SO_REUSEPORT UDP sockets on (host, port); returns the endpoints."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            for _ in range(self.cfg.threads):
                s = socket.socket(family, socket.SOCK_DGRAM)
                self.socks.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.cfg.rcvbuf)
                except OSError:
                    pass
                s.bind((host, port))
        except OSError:
            for s in self.socks:
                s.close()
            self.socks = []
            raise
        for s in self.socks:
            pool = PagePool(self.allocator, self.cfg.pool_strategy, self.cfg.ring_size)
            self.pools.append(pool)
            self.endpoints.append(_udpio.UdpEndpoint(s.fileno(), pool, self.cfg.recycle))
        return list(self.endpoints)

    def close(self, finished) -> None:
        """Close the sockets; give back the pages of endpoints whose thread finished
        (finished[i] for endpoint i); close the pools (every page back to the allocator)."""
        for s in self.socks:
            s.close()
        for ep, done in zip(self.endpoints, finished):
            if done:
                ep.recycle_pages()
        for pool in self.pools:
            pool.close()
