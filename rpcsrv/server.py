"""The server: its threads and their lifecycle, and the wiring of transports, svc and programs.

Two request paths (ServerConfig.fast_path): the compiled one (rpcsrv.fast: workers
wait on the epoll set themselves and serve the procedures that carry the load in C,
handing the rest to the Python path), or the Python path alone, the reference
implementation, with the threads below. With the fast path, the workers are
rpcsrv.fast.FastPath.worker_loop and there is no poller; UDP is the same in both.

Threads and what they own (Python path)
---------------------------------------
poller   one thread. Runs the TCP listener's epoll loop (xprt.tcp.TcpListener:
         accept, and connections with data, taken out of the epoll set by
         EPOLLONESHOT) and queues ready connections for the workers with the
         time they became ready (svc_xprt_enqueue); sweeps idle connections.
worker   `threads` of them. Each owns one SvcRqst (its page array and
         per-thread allocator lists) and one svc.Request for life, and loops
         like nfsd: svc_alloc_arg -> take a ready connection -> receive one
         record into the pages -> svc.Svc.process (decode, dispatch, encode
         the reply into the pages after the call) -> one sendmsg -> free the
         reply pages (the next holes) -> re-arm the connection. A connection
         is therefore served by one worker at a time, in order; different
         connections in parallel.
udp      with --udp, one per UDP socket (xprt.udp.UdpEndpoints): receive a
         datagram into a page_pool page -> the same Svc.process -> sendmsg ->
         recycle the pages. With --udp-xdp tx|drop the thread runs the
         compiled loop (xprt/_udpfast.pyx: recvmmsg batches, NULL answered or
         dropped in C) and gets back only the datagrams it passes.
main     start() and stop(): stop closes the listener, lets the workers finish
         what is queued and in flight, joins everything, closes connections
         and gives every page back to the allocator.

Shared state and its locks: `_ready` (a deque under `_cond`), the listener's
connection table and parking budget (its lock), each Svc's duplicate request
cache (its own lock), prometheus metrics (thread-safe). The allocator has its
own locks. A request never kills a worker: protocol errors become RPC
replies, peer misbehaviour closes that connection, and an unexpected
exception becomes SYSTEM_ERR (or a closed connection) and a log line.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import threading
import time
from dataclasses import dataclass, field

import alloc
from rpcsrv.proto.xdr import Packer
from rpcsrv.svc.dispatch import Dispatcher
from rpcsrv.svc.rqst import SvcRqst
from rpcsrv.svc.svc import ReplyCache, Request, Svc, XprtLimits
from rpcsrv.xprt import _pageio
from rpcsrv.xprt.tcp import TcpListener, bound_address, listen
from rpcsrv.xprt.tcpconn import CLOSED, PARTIAL, TcpPayloadIO, send_reply

log = logging.getLogger("rpcsrv")

PAGE = alloc.PAGE_SIZE
#: the default largest READ/WRITE payload (knfsd's default max_block_size)
MAX_BLOCK = 1 << 20
#: the largest record accepted by default: a 1 MiB payload plus headers (sv_max_mesg); the server
#: lowers it to its own max_io + one page
MAX_RECORD = alloc.MAX_BLOCK_SIZE + PAGE
#: the smallest page array: the one of the smallest --max-block-size (4 KiB: 5 slots)
MIN_SLOTS = alloc.svc_serv_maxpages(alloc.MIN_BLOCK_SIZE)
#: bound on READDIR(PLUS) reply bytes
DIR_REPLY_MAX = 1 << 20


class StartupError(Exception):
    """The server cannot start for a reason the user can fix; str() names the option and the cause
    in one line (``--arena-mib 100000: cannot map 100000 MiB: Cannot allocate memory``). ``code`` is
    the exit status the CLI should use: 2 for a value that can never work, 1 for the environment."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


@dataclass
class ServerConfig:
    """Everything a Server needs; the CLI fills it from flags."""
    export: str
    host: str = "127.0.0.1"
    port: int = 2049
    threads: int = 8
    strategy: str = "array"
    arena_mib: int = 256
    read_only: bool = False
    root_squash: bool = False
    anon_uid: int = 65534
    anon_gid: int = 65534
    send_timeout: float = 10.0      # a reply not drained by the client in this time drops it
    idle_timeout: float = 300.0     # connections silent this long are closed
    record_timeout: float = 60.0    # a record must complete this long after it began
    record_stall: float = 10.0      # a record in progress that received nothing this long is dropped
    min_record_rate: float = 16384.0    # bytes/s a record in progress must average once 5 s old
    max_connections: int = 1024     # at the limit the least recently active connection makes room
    allow: tuple = ()               # ip_network objects; empty: everyone
    secure_ports: bool = False      # require source ports below 1024 (knfsd "secure")
    pages_per_request: int = 0      # 0: sized from the arena (see Server._size_requests)
    max_block_size: int = MAX_BLOCK # largest READ/WRITE payload (4 KiB..4 MiB, page multiple)
    max_record: int = MAX_RECORD
    drc_size: int = 4096
    state_dir: str | None = None
    trace_holes: bool = False       # record refill/release events per request (tests)
    write_verifier: bytes = field(default_factory=lambda: os.urandom(8))
    mount_clients: object = None
    udp: object = None              # xprt.udp.UdpConfig: also serve RPC over UDP on the same port
    fast_path: bool = True          # the compiled request path (rpcsrv.fast) where the export allows it


def _why(e: BaseException) -> str:
    """An OSError's strerror (without the errno number and file name), else its text."""
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def _copy_head(pages, n: int) -> bytes:
    return _pageio.copy_out(pages, 0, 0, n)


class Server:
    """An ONC RPC server on TCP (and UDP with config.udp) serving the given programs
    (NFS and MOUNT by default)."""

    def __init__(self, config: ServerConfig, registry=None, programs=None, version: str = "0.1.0"):
        from prometheus_client import REGISTRY
        from rpcsrv.svc.metrics import ServerMetrics
        self.config = config
        try:
            self.allocator = alloc.Allocator(config.arena_mib, max_threads=max(64, config.threads + 8))
        except (OSError, MemoryError) as e:
            raise StartupError("--arena-mib %d: cannot map %d MiB: %s"
                               % (config.arena_mib, config.arena_mib, _why(e))) from e
        self.registry = registry if registry is not None else REGISTRY
        self.metrics = ServerMetrics(self.registry, config.strategy, version, self.allocator)
        self.nslots, self.max_io, self.partial_budget = self._size_requests()
        self.config.max_record = min(self.config.max_record, self.max_io + PAGE)
        self.export = None
        if programs is None:
            programs, self.export = self._default_programs()
        self.dispatcher = Dispatcher(programs)
        self.limits = self._tcp_limits()
        self.svc = Svc(self.dispatcher, config, self.metrics, ReplyCache(config.drc_size), _copy_head)
        self._ready = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._threads = []
        self._udp = None
        self._udp_threads = []
        self.listener = None
        self._poller_thread = None
        self.host, self.port = config.host, config.port
        self.rqsts = []             # every worker's SvcRqst (for tests and debugging)
        self.fast = None
        self.fast_unusable = None   # why the fast path is off although asked for, or None
        if config.fast_path:
            import rpcsrv.fast as fast
            self.fast_unusable = fast.usable(self.export)
            if self.fast_unusable is None:
                self.fast = fast.FastPath(self)
        if self.export is not None:
            self.metrics.add_containment("python", self.export.contain.stats)
            if self.fast is not None:
                self.metrics.add_containment("fast", self.fast.srv.proof_stats)

    @property
    def requests_served(self) -> int:
        n = self.svc.requests_served + (self._udp_svc.requests_served if self._udp else 0)
        if self.fast is not None:
            for snap in self.fast.metrics_snapshot():
                n += sum(snap["requests"].values())
        return n

    def _size_requests(self):
        """Pages per request, largest READ/WRITE payload, and the budget for parked partial records.

        A worker's page array is sized as Linux 6.16 sizes rq_pages for the
        maximum payload (alloc.svc_serv_maxpages(max_block_size): 260 slots
        for 1 MiB, 1028 for 4 MiB). Every worker fills its whole page array
        before it serves a call, and partial records park pages in their
        connections. If that demand could exceed what the allocator can hand
        out above the zones' MIN watermarks, workers could all wait on each
        other for ever. So, as knfsd scales its maximum block size with
        memory: a quarter of the usable pages is kept for parked partial
        records, the rest split between the workers, up to that size each;
        rtmax/wtmax are max_block_size when the array has room for it, else
        the largest power of two (>= 4 KiB) that fits.
        """
        block = self.config.max_block_size
        if not (alloc.MIN_BLOCK_SIZE <= block <= alloc.MAX_BLOCK_SIZE and block % PAGE == 0):
            raise ValueError("--max-block-size must be a multiple of 4 KiB from 4 KiB to 4 MiB, got %d" % block)
        maxpages = alloc.svc_serv_maxpages(block)
        st = self.allocator.stats()
        usable = sum(z["managed"] - z["watermarks"]["min"] - 1 for z in st["zones"].values())
        budget = usable // 4
        per = min(maxpages, (usable - budget) // self.config.threads)
        forced = self.config.pages_per_request
        if forced:
            # an explicit size may overcommit the arena (memory-pressure experiments): workers then
            # wait for each other and break stalls by giving pages back (svc.rqst.SvcRqst._wait); one
            # worker must at least be able to fill its array alone
            if not MIN_SLOTS <= forced <= maxpages:
                raise ValueError("--pages-per-request must be in %d..%d (the array of --max-block-size %d)"
                                 % (MIN_SLOTS, maxpages, block))
            if forced > usable - budget:
                raise ValueError("--arena-mib %d cannot hold even one request of %d pages (usable %d)"
                                 % (self.config.arena_mib, forced, usable - budget))
            per = forced
        if per < MIN_SLOTS:
            raise ValueError("--arena-mib %d is too small for %d threads (need at least %d pages each, have %d)"
                             % (self.config.arena_mib, self.config.threads, MIN_SLOTS, per))
        if per >= maxpages:
            return per, block, budget
        io = PAGE
        while io * 2 <= (per - 4) * PAGE and io * 2 <= block:
            io *= 2
        return per, io, budget

    def _default_programs(self):
        from rpcsrv.export import Export, StateDirError
        from rpcsrv.nfsd import mount3, nfs3
        try:
            export = Export(self.config.export, read_only=self.config.read_only, state_dir=self.config.state_dir)
        except StateDirError as e:
            raise StartupError("--state-dir %s: %s" % (e.path, e.reason), e.code) from e
        except FileNotFoundError as e:
            raise StartupError("--export %s: does not exist" % self.config.export, 2) from e
        except NotADirectoryError as e:
            raise StartupError("--export %s: is not a directory" % self.config.export, 2) from e
        except OSError as e:
            raise StartupError("--export %s: cannot open: %s" % (self.config.export, _why(e))) from e
        if self.config.mount_clients is None:
            self.config.mount_clients = mount3.MountRegistry()
        return [nfs3.make_program(), mount3.make_program()], export

    def _tcp_limits(self) -> XprtLimits:
        """READ/WRITE payloads up to max_io, READDIR replies up to max_io (and 1 MiB). FSINFO's
        preferred sizes are the maxima, as knfsd's nfsd3_proc_fsinfo() gives them."""
        from rpcsrv.export import Export
        fs = Export.FSINFO
        io = self.max_io
        fsinfo = fs._replace(rtmax=io, rtpref=io, wtmax=io, wtpref=io)
        return XprtLimits(rtmax=io, wtmax=io, dirmax=min(DIR_REPLY_MAX, io), fsinfo=fsinfo)

    # -- lifecycle -------------------------------------------------------------
    def start(self):
        """Bind, start the poller, the workers and the UDP threads; returns (host, port)."""
        cfg = self.config
        metrics = self.metrics
        if self.fast is not None:
            return self._start_fast()
        try:
            self.listener = TcpListener(cfg.host, cfg.port, max_record=cfg.max_record, allocator=self.allocator,
                                        allow=cfg.allow, max_connections=cfg.max_connections,
                                        partial_budget=self.partial_budget, on_close=metrics.closed,
                                        on_connections=metrics.connections.inc,
                                        on_accept_error=metrics.accept_error)
        except OSError as e:
            raise StartupError("--listen %s:%d: cannot listen: %s" % (cfg.host, cfg.port, _why(e))) from e
        self.host, self.port = self.listener.host, self.listener.port
        if cfg.udp is not None:     # RPC over UDP on page_pool pages, same port
            try:
                self._start_udp()
            except OSError as e:
                self.listener.stop_accepting()
                self.listener.close_all()
                raise StartupError("--udp: cannot serve UDP on %s:%d: %s" % (self.host, self.port, _why(e))) from e
        t = threading.Thread(target=self._poller, name="rpcsrv-poller", daemon=True)
        t.start()
        self._poller_thread = t
        for i in range(cfg.threads):
            w = threading.Thread(target=self._worker, name="rpcsrv-worker-%d" % i, daemon=True)
            w.start()
            self._threads.append(w)
        return self.host, self.port

    def _start_fast(self):
        try:
            sock = listen(self.config.host, self.config.port)
        except OSError as e:
            raise StartupError("--listen %s:%d: cannot listen: %s"
                               % (self.config.host, self.config.port, _why(e))) from e
        self._fast_sock = sock
        self.host, self.port = bound_address(sock)
        if self.config.udp is not None:
            try:
                self._start_udp()
            except OSError as e:
                sock.close()
                raise StartupError("--udp: cannot serve UDP on %s:%d: %s" % (self.host, self.port, _why(e))) from e
        self.fast.start(sock)
        for i in range(self.config.threads):
            w = threading.Thread(target=self.fast.worker_loop, name="rpcsrv-worker-%d" % i, daemon=True)
            w.start()
            self._threads.append(w)
        self._poller_thread = None
        return self.host, self.port

    def url(self, path: str | None = None) -> str:
        """The libnfs URL of the export: nfs://HOST/PATH?nfsport=P&mountport=P (both on the one port)."""
        path = path if path is not None else (self.export.path if self.export else self.config.export)
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "nfs://%s%s?nfsport=%d&mountport=%d" % (host, path, self.port, self.port)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting, finish queued and in-flight requests, join threads, return every page."""
        if self._stopping:
            return
        self._stopping = True
        if self.fast is not None:
            return self._stop_fast(timeout)
        self.listener.stop_accepting()
        deadline = time.monotonic() + timeout
        if self._udp is not None:
            for t in self._udp_threads:
                t.join(max(0.1, deadline - time.monotonic()))
            self._udp.close([not t.is_alive() for t in self._udp_threads])
        self.listener.wake()
        with self._cond:
            self._cond.notify_all()
        for w in self._threads:
            w.join(max(0.1, deadline - time.monotonic()))
        self._poller_thread.join(max(0.1, deadline - time.monotonic()))
        self.listener.close_all()
        if self.export is not None:
            self.export.close()
        self.allocator.drain_all()

    def _stop_fast(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self.fast.stop()
        if self._udp is not None:
            for t in self._udp_threads:
                t.join(max(0.1, deadline - time.monotonic()))
            self._udp.close([not t.is_alive() for t in self._udp_threads])
        for w in self._threads:
            w.join(max(0.1, deadline - time.monotonic()))
        self._fast_sock.close()
        self.fast.close_all(workers_gone=not any(w.is_alive() for w in self._threads))
        if self.export is not None:
            self.export.close()
        self.allocator.drain_all()

    def still_running(self):
        threads = self._threads + self._udp_threads + ([self._poller_thread] if self._poller_thread else [])
        return [t.name for t in threads if t.is_alive()]

    # -- poller ----------------------------------------------------------------
    def _poller(self):
        cfg = self.config
        listener = self.listener
        next_sweep = time.monotonic() + 1.0
        while not self._stopping:
            try:
                ready = listener.poll(1.0)
            except OSError:
                break
            now = time.monotonic()
            if now >= next_sweep:
                listener.sweep(now, cfg.idle_timeout, cfg.record_timeout, cfg.record_stall, cfg.min_record_rate)
                next_sweep = now + 1.0
            if ready:
                with self._cond:
                    for conn in ready:
                        conn.ready_since = now
                        self._ready.append(conn)
                        self._cond.notify()

    def _dequeue(self):
        with self._cond:
            while not self._ready:
                if self._stopping:
                    return None
                self._cond.wait(1.0)
            return self._ready.popleft()

    # -- worker ----------------------------------------------------------------
    def _worker(self):
        rqst = SvcRqst(self.allocator, self.config.strategy, self.nslots)
        if self.config.trace_holes:
            rqst.trace = []
        self.rqsts.append(rqst)
        io = TcpPayloadIO(rqst)
        req = Request(self.export, self.config, self.metrics, self.limits, io, rqst.pages, 0,
                      "reply_too_large", addr_checked=True)
        packer = Packer()
        metrics = self.metrics
        stopping = lambda: self._stopping  # noqa: E731
        stalls_seen = 0
        try:
            while True:
                if not rqst.svc_alloc_arg(stopping):
                    break
                metrics.svc_alloc_arg(rqst.last_ns, rqst.last_holes, rqst.last_waits, rqst.last_scanned)
                if rqst.stalls != stalls_seen:
                    metrics.alloc_stalls.inc(rqst.stalls - stalls_seen)
                    stalls_seen = rqst.stalls
                conn = self._dequeue()
                if conn is None:
                    break
                metrics.queue_wait.observe(time.monotonic() - conn.ready_since)
                self._serve(rqst, req, io, packer, conn)
        except Exception:  # pragma: no cover - a bug in the server itself
            log.exception("worker died")
            raise
        finally:
            rqst.release_all()
            self.allocator.drain_local()

    def _serve(self, rqst, req, io, packer, conn):
        """One turn of a connection: receive what there is; a whole record is processed and answered."""
        listener = self.listener
        if conn.closed:
            return
        try:
            status = conn.receive(rqst, listener.park, listener.unpark, self.config.record_timeout)
        except Exception:
            log.exception("receive failed")
            conn.error_reason = "server_bug"
            status = CLOSED
        if status == CLOSED:
            listener.close(conn)
            return
        if status == PARTIAL:
            listener.rearm(conn)
            return
        self.metrics.in_flight.inc()
        try:
            keep = self._process(rqst, req, io, packer, conn)
        except Exception:
            log.exception("request processing failed")
            conn.error_reason = "server_bug"
            keep = False
        finally:
            self.metrics.in_flight.dec()
            conn.record_done()
        if keep and not conn.closed:
            listener.rearm(conn)
        else:
            listener.close(conn)

    def _process(self, rqst, req, io, packer, conn) -> bool:
        """svc_process one record held in rqst's pages and send the reply. False: drop the connection."""
        t0 = time.perf_counter()
        rec_len = conn.decoder.record_len
        reply_slot = (rec_len + PAGE - 1) // PAGE
        io.reply_slot = reply_slot
        req.room = (rqst.nslots - reply_slot) * PAGE
        req.set_peer(conn.peer)
        packer.reset()
        packer.reserve_uint()                       # the record marker, patched by send_reply
        reply = self.svc.process(req, packer, rqst.views, rec_len)
        keep = True
        if reply.send:
            keep = send_reply(conn, rqst, packer, reply_slot, reply.payload, self.config.send_timeout)
        self.svc.account(reply, time.perf_counter() - t0)
        return keep

    # -- UDP -------------------------------------------------------------------
    def _start_udp(self):
        from rpcsrv.xprt.udp import UDP_DIRMAX, UDP_MAX_REPLY, UDP_RTMAX, UdpEndpoints, udp_fsinfo
        cfg = self.config
        lim = self.limits
        self._udp_limits = XprtLimits(rtmax=min(UDP_RTMAX, lim.rtmax), wtmax=lim.wtmax,
                                      dirmax=min(UDP_DIRMAX, lim.dirmax), fsinfo=udp_fsinfo(lim.fsinfo))
        self._udp_svc = Svc(self.dispatcher, cfg, self.metrics, ReplyCache(cfg.drc_size), _copy_head)
        self._udp_room = UDP_MAX_REPLY
        # the compiled loop answers NULL from C only where no --allow / --secure-ports check applies
        self._udp = UdpEndpoints(self.allocator, cfg.udp, self.registry,
                                 answer=not (cfg.allow or cfg.secure_ports))
        for i, ep in enumerate(self._udp.open(self.host, self.port)):
            xdp = self._udp.loop_of(ep)
            if xdp is not None and xdp.answer:     # the root GETATTR too, from the Python path's last reply
                xdp.set_getattr_call(bytes(self.export.root_handle()), self.export.root_fd)
            t = threading.Thread(target=self._udp_loop, args=(ep, xdp), name="rpcsrv-udp-%d" % i, daemon=True)
            t.start()
            self._udp_threads.append(t)

    def _udp_loop(self, ep, xdp=None) -> None:
        """One receive thread: today's per-datagram loop, or with xdp (an XdpLoop) the compiled
        loop, which answers or drops what its verdict can and passes the rest to handle()."""
        from rpcsrv.xprt.udp import PAGE as UDP_PAGE, POLL_MS, UdpPayloadIO
        metrics = self.metrics
        svc = self._udp_svc
        req = Request(self.export, self.config, metrics, self._udp_limits, UdpPayloadIO(ep), ep.pages,
                      self._udp_room, "udp_reply_too_large", addr_checked=False, key_has_port=True)
        packer = Packer()
        segs = ep.views()
        recv = ep.recv
        recycle = ep.recycle_pages
        peer = ep.peer
        EAGAIN, ENOBUFS = -errno.EAGAIN, -errno.ENOBUFS

        def handle(n, getattr_root=False):
            try:
                t0 = time.perf_counter()
                oversize = n > UDP_PAGE
                req.set_peer(peer_fn=peer)
                packer.reset()
                # the compiled loop's root GETATTR cache: the root's attributes before the reply is built
                st = os.fstat(self.export.root_fd) if getattr_root else None
                reply = svc.process(req, packer, segs, UDP_PAGE if oversize else n,
                                    "udp_oversize" if oversize else None)
                if st is not None and reply.send and reply.payload == 0:
                    xdp.set_getattr_reply(packer.buffer, st)
                if reply.send:
                    r = ep.send(packer.buffer, reply.payload + ((-reply.payload) & 3))
                    if r < 0:
                        metrics.error("udp_send_" + errno.errorcode.get(-r, "error").lower())
                svc.account(reply, time.perf_counter() - t0)
            except Exception:
                log.exception("UDP request processing failed")
                metrics.error("server_bug")
            finally:
                recycle()

        try:
            while not self._stopping:
                if xdp is not None:
                    n = xdp.run(POLL_MS)
                    if n in (-errno.EBADF, -errno.ENOTSOCK):
                        break
                    if n < 0:
                        metrics.error("udp_recv_" + errno.errorcode.get(-n, "error").lower())
                    for i in range(max(n, 0)):
                        handle(xdp.pass_to(i), xdp.passed_getattr)
                    continue
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
                handle(n)
        finally:
            try:
                if xdp is not None:
                    xdp.give_back()
                recycle()
            except Exception:  # pragma: no cover
                log.exception("UDP page recycle failed")
            self.allocator.drain_local()


__all__ = ["Server", "ServerConfig", "StartupError", "MAX_RECORD"]
