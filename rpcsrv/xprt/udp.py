"""RPC over UDP on page_pool pages: the seed's second user (page_pool) on an RPC receive path.

What it is
----------
`--udp` makes the server also answer ONC RPC calls (NULL, MOUNT, NFSv3) in
UDP datagrams on the TCP listener's port number. Each receive thread is a
"receive queue": its own SO_REUSEPORT socket (the kernel spreads datagrams
over them by flow hash, as RSS does over NIC queues), its own PagePool
(alloc/_pool.pyx, strategy single | list | array) and its own UdpEndpoint
(rpcsrv/_udpio.pyx). Per datagram, in the receive thread:

  1. a page from the pool (the cache; else up to 64 from the recycle ring;
     else the slow path refills from the page allocator by strategy); no page
     -> the datagram is dropped and counted (rpc error reason udp_no_page);
  2. recvmsg straight into that page (one page per datagram, as XDP);
  3. decode with the sans-IO modules (Unpacker over the page, decode_call,
     dispatch with the server's procedure tables, UDP-adjusted as below);
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
* READ count is clamped to UDP_RTMAX = 8192 (two pool pages) when the
  arguments are decoded, so the handler returns a short read with a correct
  eof (RFC 1813: a short read is not end of file unless eof says so).
* READDIR count and READDIRPLUS dircount/maxcount are clamped to 8192.
* FSINFO over UDP advertises rtmax = rtpref = 8192, wtmax = 3072,
  wtpref = 2048, wtmult = 1024, dtpref = 8192.
* Any other reply that would exceed UDP_MAX_REPLY (65507, the IPv4 UDP
  payload limit) is replaced by SYSTEM_ERR (reason udp_reply_too_large):
  never a truncated datagram.

Threads: `threads` receive threads, each owning its socket, endpoint and
pool (the pool's cache is single-consumer). stop() sets the flag, the
threads leave their 200 ms poll, give their pages back and are joined; then
the pools are closed (page_pool_destroy) so every page is back in the
allocator before the server drains it. Non-idempotent calls go through a
duplicate request cache of their own (replies without a record marker).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import threading
import time
from dataclasses import dataclass

from alloc._pool import PagePool
from alloc.pool_metrics import PoolCollector
from rpcsrv import _udpio
from rpcsrv import nfs3xdr as X
from rpcsrv.dispatch import Dispatcher, ProcEntry, Program
from rpcsrv.nfs3const import NFS_PROGRAM, NFS_V3, NfsProc3 as P
from rpcsrv.rpcmsg import AUTH_TOOWEAK, AuthError, GarbageArgs, RpcError, SystemErr, decode_call
from rpcsrv.xdr import Packer, Unpacker

log = logging.getLogger("rpcsrv.udp")

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


# --------------------------------------------------------------------------- procedure tables
def _clamp_read(u):
    fh, off, cnt = X.decode_read(u)
    return fh, off, min(cnt, UDP_RTMAX)


def _clamp_readdir(u):
    fh, cookie, verf, count = X.decode_readdir(u)
    return fh, cookie, verf, min(count, UDP_DIRMAX)


def _clamp_readdirplus(u):
    fh, cookie, verf, dircount, maxcount = X.decode_readdirplus(u)
    return fh, cookie, verf, min(dircount, UDP_DIRMAX), min(maxcount, UDP_DIRMAX)


def udp_fsinfo(info):
    """The FSINFO an NFS client should see over UDP."""
    return info._replace(rtmax=UDP_RTMAX, rtpref=UDP_RTMAX, wtmax=UDP_WTMAX, wtpref=2048, wtmult=1024,
                         dtpref=UDP_DIRMAX)


def _fsinfo_handler(inner):
    def handler(ctx, fh):
        res = inner(ctx, fh)
        if res.status == 0 and len(res.v) == 2:
            res.v = (res.v[0], udp_fsinfo(res.v[1]))
        return res
    return handler


def udp_dispatcher(dispatcher: Dispatcher) -> Dispatcher:
    """The server's tables with the UDP size policy applied to NFSv3 READ, READDIR(PLUS) and FSINFO."""
    progs = []
    for p in dispatcher.programs:
        versions = {}
        for vers, procs in p.versions.items():
            t = dict(procs)
            if p.prog == NFS_PROGRAM and vers == NFS_V3:
                for proc, dec in ((P.READ, _clamp_read), (P.READDIR, _clamp_readdir),
                                  (P.READDIRPLUS, _clamp_readdirplus)):
                    e = t.get(proc)
                    if e is not None:
                        t[proc] = ProcEntry(e.name, dec, e.handler, e.encode, e.idempotent, e.status)
                e = t.get(P.FSINFO)
                if e is not None:
                    t[P.FSINFO] = ProcEntry(e.name, e.decode, _fsinfo_handler(e.handler), e.encode,
                                            e.idempotent, e.status)
            versions[vers] = t
        progs.append(Program(p.prog, p.name, versions))
    return Dispatcher(progs)


# --------------------------------------------------------------------------- request context
class UdpContext:
    """What a procedure handler sees of a datagram call (the UDP twin of server.RequestContext)."""

    __slots__ = ("xid", "cred", "export", "config", "metrics", "payload_len", "ep", "_addr")

    def __init__(self, ep, export, config, metrics):
        self.ep = ep
        self.export = export
        self.config = config
        self.metrics = metrics
        self.xid = 0
        self.cred = None
        self.payload_len = 0
        self._addr = None

    @property
    def addr(self):
        """The sender's address (built on first use: a NULL call never needs it)."""
        a = self._addr
        if a is None:
            a = self._addr = self.ep.peer()
        return a

    def read_payload(self, fd: int, offset: int, count: int) -> int:
        """Read up to count (<= UDP_RTMAX) file bytes into reply pages from the pool (zero copy)."""
        if self.payload_len:
            raise RuntimeError("read_payload called twice for one request")
        if count > UDP_RTMAX:
            count = UDP_RTMAX
        n = self.ep.read_into(fd, offset, count)
        if n < 0:
            raise OSError(-n, "read into pool pages: %s" % errno.errorcode.get(-n, "?"))
        self.payload_len = n
        self.metrics.read_bytes.inc(n)
        return n

    def write_payload(self, fd: int, file_offset: int, rec_offset: int, length: int) -> int:
        """Write `length` bytes of the datagram at rec_offset to fd at file_offset (from the page)."""
        n = self.ep.write_from(fd, file_offset, rec_offset, length)
        if n < 0:
            raise OSError(-n, "write from the datagram page: %s" % errno.errorcode.get(-n, "?"))
        self.metrics.write_bytes.inc(n)
        return n


# --------------------------------------------------------------------------- the server
class UdpServer:
    """The UDP receive threads of one Server (started and stopped by Server.start/stop)."""

    def __init__(self, server, cfg: UdpConfig):
        from rpcsrv.server import ReplyCache
        self.server = server
        self.cfg = cfg
        self.dispatcher = udp_dispatcher(server.dispatcher)
        self.drc = ReplyCache(server.config.drc_size)
        self.pools = []
        self.endpoints = []
        self.socks = []
        self.threads = []
        self._stopping = False
        self.datagrams = 0
        PoolCollector(lambda: list(self.pools)).register(server.registry)

    def start(self, host: str, port: int) -> None:
        """Bind `threads` SO_REUSEPORT UDP sockets on (host, port), then start a thread per socket."""
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
        alloc = self.server.allocator
        for i, s in enumerate(self.socks):
            pool = PagePool(alloc, self.cfg.pool_strategy, self.cfg.ring_size)
            ep = _udpio.UdpEndpoint(s.fileno(), pool, self.cfg.recycle)
            self.pools.append(pool)
            self.endpoints.append(ep)
            t = threading.Thread(target=self._loop, args=(ep,), name="rpcsrv-udp-%d" % i, daemon=True)
            t.start()
            self.threads.append(t)

    def stop(self, timeout: float = 30.0) -> None:
        """Join the receive threads, close the sockets, close the pools (every page back)."""
        self._stopping = True
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        for s in self.socks:
            s.close()
        for ep, t in zip(self.endpoints, self.threads):
            if not t.is_alive():
                ep.recycle_pages()
        for pool in self.pools:
            pool.close()

    # -- receive thread ----------------------------------------------------------
    def _loop(self, ep) -> None:
        srv = self.server
        metrics = srv.metrics
        ctx = UdpContext(ep, srv.export, srv.config, metrics)
        packer = Packer()
        segs = ep.views()
        recv = ep.recv
        recycle = ep.recycle_pages
        EAGAIN, ENOBUFS = -errno.EAGAIN, -errno.ENOBUFS
        try:
            while not self._stopping:
                n = recv(POLL_MS)
                if n < 0:
                    if n == EAGAIN:
                        continue
                    if n == ENOBUFS:
                        metrics.error("udp_no_page")
                        continue
                    if n in (-errno.EBADF, -errno.ENOTSOCK):
                        break
                    metrics.error("udp_recv_" + errno.errorcode.get(-n, "error").lower())
                    continue
                try:
                    self._process(ep, ctx, packer, segs, n)
                except Exception:
                    log.exception("UDP request processing failed")
                    metrics.error("server_bug")
                finally:
                    recycle()
        finally:
            try:
                recycle()
            except Exception:  # pragma: no cover
                log.exception("UDP page recycle failed")
            srv.allocator.drain_local()

    def _process(self, ep, ctx, packer, segs, n: int) -> None:
        t0 = time.perf_counter()
        metrics = self.server.metrics
        self.datagrams += 1
        oversize = n > PAGE
        u = Unpacker(segs, PAGE if oversize else n)
        packer.reset()
        try:
            call = decode_call(u)
        except RpcError as e:
            metrics.error("udp_oversize" if oversize else e.reason)
            if e.pack_reply(packer):
                self._send(ep, packer, 0)
            return
        if oversize:
            metrics.error("udp_oversize")
            GarbageArgs("datagram of %d bytes exceeds one page" % n, call.xid).pack_reply(packer)
            self._send(ep, packer, 0)
            return
        ctx.xid = call.xid
        ctx.cred = call.cred
        ctx.payload_len = 0
        ctx._addr = None
        cfg = ctx.config
        if getattr(cfg, "allow", None) and not any(
                ipaddress.ip_address(ctx.addr[0].split("%")[0]) in net for net in cfg.allow):
            metrics.error("not_allowed")            # TCP refuses the connection; UDP drops the call
            return
        if getattr(cfg, "secure_ports", False) and ctx.addr[1] >= 1024:
            metrics.error("insecure_port")
            AuthError(AUTH_TOOWEAK, "source port %d" % ctx.addr[1], call.xid).pack_reply(packer)
            self._send(ep, packer, 0)
            return
        reply, payload, outcome = self.server.execute(call, u, ctx, packer, self.drc, ctx.addr[:2],
                                                      ep.pages, n, self.dispatcher)
        if outcome is None:                         # the reply cache: a duplicate in progress, or answered
            if reply:
                self._send(ep, packer, 0)
            return
        pad = (-payload) & 3
        status = outcome.status
        if outcome.reply and len(packer) + payload + pad > UDP_MAX_REPLY:
            metrics.error("udp_reply_too_large")
            packer.reset()
            SystemErr("reply over %d bytes" % UDP_MAX_REPLY, call.xid).pack_reply(packer)
            payload = pad = 0
            status = "system_err"
        if outcome.reply:
            self._send(ep, packer, payload + pad)
        metrics.request(outcome.program or "unknown", call.vers, outcome.name or "unknown", status,
                        time.perf_counter() - t0)
        self.server.requests_served += 1

    def _send(self, ep, packer, payload: int) -> None:
        r = ep.send(packer.buffer, payload)
        if r < 0:
            self.server.metrics.error("udp_send_" + errno.errorcode.get(-r, "error").lower())
