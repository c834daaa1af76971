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

from . import _udpfast, _udpio

__all__ = ["UdpConfig", "UdpEndpoints", "UdpPayloadIO", "XdpCollector", "udp_fsinfo", "UDP_RTMAX", "UDP_WTMAX",
           "UDP_DIRMAX", "UDP_MAX_REPLY", "POOL_STRATEGIES", "RECYCLE_MODES", "XDP_MODES", "POLL_MS"]

PAGE = _udpio.PAGE
UDP_RTMAX = _udpio.MAX_PAYLOAD          # 8192: two pool pages of READ data
UDP_WTMAX = 3072                        # fits one page with a worst-case call header
UDP_DIRMAX = 8192
UDP_MAX_REPLY = 65507
POOL_STRATEGIES = ("single", "list", "array")
RECYCLE_MODES = _udpio.RECYCLE_MODES
XDP_MODES = ("off",) + _udpfast.VERDICT_MODES    # off: the per-datagram loop; tx / drop: the compiled loop
POLL_MS = 200


@dataclass
class UdpConfig:
    """How the UDP path runs (the CLI fills it from --pool-strategy, --udp-threads, --udp-recycle,
    --udp-xdp, --udp-batch)."""
    pool_strategy: str = "array"
    threads: int = 1                # receive threads (SO_REUSEPORT sockets); they share one GIL
    recycle: str = "direct"
    ring_size: int = 1024
    rcvbuf: int = 4 << 20
    xdp: str = "off"                # off | tx | drop: the compiled receive loop and what it does with NULL
    batch: int = _udpfast.MAX_BATCH  # datagrams per recvmmsg in the compiled loop
    interleave: int = 0             # compiled loop: rotate the refill strategy every N batches (0: no)
    coalesce_us: int = 0            # compiled loop: sleep after a batch that did not fill (0: no)

    def __post_init__(self):
        if self.pool_strategy not in POOL_STRATEGIES:
            raise ValueError("pool strategy must be one of %s" % ", ".join(POOL_STRATEGIES))
        if self.recycle not in RECYCLE_MODES:
            raise ValueError("udp recycle mode must be one of %s" % ", ".join(RECYCLE_MODES))
        if self.threads < 1:
            raise ValueError("udp threads must be >= 1")
        if self.xdp not in XDP_MODES:
            raise ValueError("udp xdp mode must be one of %s" % ", ".join(XDP_MODES))
        if self.interleave < 0:
            raise ValueError("udp interleave must be >= 0")
        if not 0 <= self.coalesce_us <= 100000:
            raise ValueError("udp coalesce must be in 0..100000 us")
        if not 1 <= self.batch <= _udpfast.MAX_BATCH:
            raise ValueError("udp batch must be in 1..%d" % _udpfast.MAX_BATCH)


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

    def __init__(self, allocator, cfg: UdpConfig, registry, answer: bool = True):
        self.allocator = allocator
        self.cfg = cfg
        self.answer = answer        # False: the compiled loop passes every datagram to Python
        self.pools = []
        self.endpoints = []
        self.loops = []             # XdpLoop per endpoint with cfg.xdp tx | drop
        self.socks = []
        PoolCollector(lambda: list(self.pools)).register(registry)
        if cfg.xdp != "off":
            XdpCollector(lambda: list(self.loops)).register(registry)

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
            ep = _udpio.UdpEndpoint(s.fileno(), pool, self.cfg.recycle)
            self.endpoints.append(ep)
            if self.cfg.xdp != "off":
                self.loops.append(_udpfast.XdpLoop(ep, self.cfg.xdp, self.cfg.batch, self.answer,
                                                  self.cfg.interleave, self.cfg.coalesce_us))
        return list(self.endpoints)

    def loop_of(self, ep):
        """The compiled receive loop of endpoint ep (None with --udp-xdp off)."""
        return self.loops[self.endpoints.index(ep)] if self.loops else None

    def close(self, finished) -> None:
        """Close the sockets; give back the pages of endpoints whose thread finished
        (finished[i] for endpoint i); close the pools (every page back to the allocator)."""
        for s in self.socks:
            s.close()
        for i, (ep, done) in enumerate(zip(self.endpoints, finished)):
            if done:
                if self.loops:
                    self.loops[i].give_back()
                ep.recycle_pages()
        for pool in self.pools:
            pool.close()


class XdpCollector:
    """Prometheus collector of the compiled receive loops (read at scrape time; summed by strategy).

    nfsbulk_udp_xdp_datagrams_total{strategy,verdict}  datagrams received, verdict = tx | drop | pass
    nfsbulk_udp_xdp_tx_failed_total{strategy}          XDP_TX replies a full socket buffer dropped
    nfsbulk_udp_xdp_no_page_total{strategy}            datagrams dropped for want of a pool page
    nfsbulk_udp_xdp_batches_total{strategy}            recvmmsg calls that returned datagrams
    nfsbulk_udp_xdp_rx_cpu_seconds_total{strategy}     receive threads' CPU time in the loop's batches
                                                       (CLOCK_THREAD_CPUTIME_ID around each)
    nfsbulk_udp_xdp_idle_cpu_seconds_total             their CPU time in waits (poll, coalescing)
    nfsbulk_udp_xdp_rx_wall_seconds_total{strategy}    wall time the loop ran with that strategy
The strategy label is the refill strategy in use when the datagram came
(one per server unless --udp-interleave rotates them).
    """

    def __init__(self, loops):
        self.loops = loops

    def register(self, registry):
        registry.register(self)
        return self

    def describe(self):
        return list(self._families({}))

    def collect(self):
        by = {}
        self._idle = 0.0
        for lp in self.loops():
            whole = lp.stats()
            self._idle += whole["idle_cpu_ns"] / 1e9
            for strat, st in whole["by_strategy"].items():
                acc = by.setdefault(strat, dict.fromkeys(st, 0))
                for k, v in st.items():
                    acc[k] += v
        return self._families(by, self._idle)

    @staticmethod
    def _families(by, idle=0.0):
        from prometheus_client.core import CounterMetricFamily
        P = "nfsbulk_udp_xdp_"
        dg = CounterMetricFamily(P + "datagrams", "Datagrams the compiled receive loop received, by verdict "
                                 "(tx: answered from C, drop: dropped, pass: handed to the Python path).",
                                 labels=["strategy", "verdict"])
        fail = CounterMetricFamily(P + "tx_failed", "XDP_TX replies dropped by a full socket buffer.",
                                   labels=["strategy"])
        nopage = CounterMetricFamily(P + "no_page", "Datagrams dropped because the pool gave no page.",
                                     labels=["strategy"])
        batches = CounterMetricFamily(P + "batches", "recvmmsg calls that returned datagrams.", labels=["strategy"])
        cpu = CounterMetricFamily(P + "rx_cpu_seconds", "Receive threads' CPU time in the compiled loop's "
                                  "batches (CLOCK_THREAD_CPUTIME_ID), charged to the refill strategy in use.",
                                  labels=["strategy"])
        wall = CounterMetricFamily(P + "rx_wall_seconds", "Wall time the compiled loop ran with each refill "
                                   "strategy (all of it with one strategy unless --udp-interleave).",
                                   labels=["strategy"])
        idle_f = CounterMetricFamily(P + "idle_cpu_seconds", "Receive threads' CPU time in the compiled loop's "
                                     "waits (poll, coalescing sleep) and their wake-ups: no strategy's.",
                                     value=idle)
        for strat, s in by.items():
            dg.add_metric([strat, "tx"], s["tx"] + s["tx_fail"])
            dg.add_metric([strat, "drop"], s["drop"])
            dg.add_metric([strat, "pass"], s["pass"])
            fail.add_metric([strat], s["tx_fail"])
            nopage.add_metric([strat], s["no_page"])
            batches.add_metric([strat], s["batches"])
            cpu.add_metric([strat], s["rx_cpu_ns"] / 1e9)
            wall.add_metric([strat], s["rx_wall_ns"] / 1e9)
        return [dg, fail, nopage, batches, cpu, wall, idle_f]
