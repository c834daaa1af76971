"""The server: the only module that owns threads (the poller, the workers) and their shutdown.

Threads and what they own
-------------------------
poller   one thread. Owns the epoll set and the listening socket: accepts
         connections, and when a connection has data it is taken out of the
         epoll set (EPOLLONESHOT) and queued for the workers with the time it
         became ready (svc_xprt_enqueue).
worker   `threads` of them. Each owns one SvcRqst (its page array and
         per-thread allocator lists) for life, and loops like nfsd:
         svc_alloc_arg -> take a ready connection -> receive one record into
         the pages -> decode, dispatch, encode the reply into the pages after
         the call -> one sendmsg -> free the reply pages (the next holes) ->
         re-arm the connection in the epoll set. A connection is therefore
         served by one worker at a time, in order; different connections in
         parallel.
main     start() and stop(): stop closes the listener, lets the workers finish
         what is queued and in flight, joins everything, closes connections
         and gives every page back to the allocator.

Shared state and its locks: `_ready` (a deque under `_cond`), `_conns` (the
open connections, under `_conns_lock`), the duplicate request cache (its own
lock), prometheus metrics (thread-safe). The allocator has its own locks.
A request never kills a worker: protocol errors become RPC replies, peer
misbehaviour closes that connection, and an unexpected exception becomes
SYSTEM_ERR and a log line.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import os
import select
import threading
import time
import zlib
from dataclasses import dataclass, field

import alloc
from rpcsrv import _pageio, rpcmsg
from rpcsrv.dispatch import Dispatcher, dispatch
from rpcsrv.rpcmsg import RpcError, decode_call
from rpcsrv.rqst import SvcRqst
from rpcsrv.transport import CLOSED, PARTIAL, Connection, listen
from rpcsrv.xdr import Packer, Unpacker

log = logging.getLogger("rpcsrv")

PAGE = alloc.PAGE_SIZE
#: the largest record accepted: a 1 MiB payload plus headers (sv_max_mesg)
MAX_RECORD = (1 << 20) + PAGE


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
    max_connections: int = 1024     # more are accepted and closed at once
    allow: tuple = ()               # ip_network objects; empty: everyone
    secure_ports: bool = False      # require source ports below 1024 (knfsd "secure")
    pages_per_request: int = 0      # 0: sized from the arena (see Server._size_requests)
    max_record: int = MAX_RECORD
    drc_size: int = 4096
    state_dir: str | None = None
    trace_holes: bool = False       # record refill/release events per request (tests)
    write_verifier: bytes = field(default_factory=lambda: os.urandom(8))
    mount_clients: object = None
    udp: object = None              # rpcsrv.udp.UdpConfig: also serve RPC over UDP on the same port


class RequestContext:
    """What a procedure handler sees of its request (one per worker, reset per call)."""

    __slots__ = ("xid", "addr", "cred", "export", "config", "rqst", "reply_slot", "payload_len",
                 "metrics")

    def __init__(self, rqst, export, config, metrics):
        self.rqst = rqst
        self.export = export
        self.config = config
        self.metrics = metrics
        self.xid = 0
        self.addr = None
        self.cred = None
        self.reply_slot = 1
        self.payload_len = 0

    def read_payload(self, fd: int, offset: int, count: int) -> int:
        """Read up to count file bytes straight into the reply's payload pages (zero copy)."""
        if self.payload_len:
            raise RuntimeError("read_payload called twice for one request")
        room = (self.rqst.nslots - self.reply_slot - 1) * PAGE
        if count > room:
            count = room
        n = _pageio.pread_into(fd, self.rqst.pages, self.reply_slot + 1, 0, count, offset)
        if n < 0:
            raise OSError(-n, os.strerror(-n))
        self.payload_len = n
        self.metrics.read_bytes.inc(n)
        return n

    def write_payload(self, fd: int, file_offset: int, rec_offset: int, length: int) -> int:
        """Write `length` bytes of the call record at rec_offset to fd at file_offset (from the pages)."""
        n = _pageio.pwrite_from(fd, self.rqst.pages, 0, rec_offset, length, file_offset)
        if n < 0:
            raise OSError(-n, os.strerror(-n))
        self.metrics.write_bytes.inc(n)
        return n


class ReplyCache:
    """Duplicate request cache for non-idempotent calls (knfsd's nfsd_cache).

    Keyed on client host, xid, program/version/procedure and a checksum of the
    call's first bytes and length, so a retransmission after a lost reply gets
    the original reply instead of a second execution. An entry is IN_PROGRESS
    until its reply is stored; a duplicate arriving meanwhile is dropped.
    """
    IN_PROGRESS = object()

    def __init__(self, size: int):
        self.size = size
        self._lock = threading.Lock()
        self._d = collections.OrderedDict()

    def begin(self, key):
        """None: new call (now in progress); IN_PROGRESS: drop the duplicate; bytes: the cached reply."""
        with self._lock:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
                return v
            self._d[key] = self.IN_PROGRESS
            while len(self._d) > self.size:
                self._d.popitem(last=False)
            return None

    def finish(self, key, reply: bytes | None):
        with self._lock:
            if reply is None:
                self._d.pop(key, None)
            elif key in self._d:
                self._d[key] = reply


class Server:
    """An ONC RPC server on TCP serving the given programs (NFS and MOUNT by default)."""

    def __init__(self, config: ServerConfig, registry=None, programs=None, version: str = "0.1.0"):
        from prometheus_client import REGISTRY
        from rpcsrv.metrics import ServerMetrics
        self.config = config
        self.allocator = alloc.Allocator(config.arena_mib, max_threads=max(64, config.threads + 8))
        self.registry = registry if registry is not None else REGISTRY
        self.metrics = ServerMetrics(self.registry, config.strategy, version, self.allocator)
        self.nslots, self.max_io, self.partial_budget = self._size_requests()
        self.config.max_record = min(self.config.max_record, self.max_io + PAGE)
        self._partial_pages = 0                  # pages parked in connections (under _conns_lock)
        self.export = None
        if programs is None:
            programs, self.export = self._default_programs()
            fs = self.export.FSINFO
            self.export.FSINFO = fs._replace(rtmax=self.max_io, rtpref=min(fs.rtpref, self.max_io),
                                             wtmax=self.max_io, wtpref=min(fs.wtpref, self.max_io))
        self.dispatcher = Dispatcher(programs)
        self.drc = ReplyCache(config.drc_size)
        self._ready = collections.deque()
        self._cond = threading.Condition()
        self._conns = {}
        self._conns_lock = threading.Lock()
        self._stopping = False
        self._threads = []
        self._listener = None
        self._epoll = None
        self._wake_r = self._wake_w = None
        self.host, self.port = config.host, config.port
        self.requests_served = 0
        self.rqsts = []             # every worker's SvcRqst (for tests and debugging)

    def _size_requests(self):
        """Pages per request, largest READ/WRITE payload, and the budget for parked partial records.

        Every worker fills its whole page array before it serves a call, and
        partial records park pages in their connections. If that demand could
        exceed what the allocator can hand out above the zones' MIN watermarks,
        workers could all wait on each other for ever. So, as knfsd scales its
        maximum block size with memory: a quarter of the usable pages is kept
        for parked partial records, the rest split between the workers, up to
        RPCSVC_MAXPAGES each; rtmax/wtmax follow (a power of two, >= 4 KiB).
        """
        st = self.allocator.stats()
        usable = sum(z["managed"] - z["watermarks"]["min"] - 1 for z in st["zones"].values())
        budget = usable // 4
        per = min(alloc.RPCSVC_MAXPAGES, (usable - budget) // self.config.threads)
        forced = self.config.pages_per_request
        if forced:
            # an explicit size may overcommit the arena (memory-pressure experiments): workers then
            # wait for each other and break stalls by giving pages back (rqst.SvcRqst._wait); one
            # worker must at least be able to fill its array alone
            if not 8 <= forced <= alloc.RPCSVC_MAXPAGES:
                raise ValueError("--pages-per-request must be in 8..%d" % alloc.RPCSVC_MAXPAGES)
            if forced > usable - budget:
                raise ValueError("--arena-mib %d cannot hold even one request of %d pages (usable %d)"
                                 % (self.config.arena_mib, forced, usable - budget))
            per = forced
        if per < 8:
            raise ValueError("--arena-mib %d is too small for %d threads (need at least %d pages each, have %d)"
                             % (self.config.arena_mib, self.config.threads, 8, per))
        io = PAGE
        while io * 2 <= (per - 3) * PAGE and io * 2 <= (1 << 20):
            io *= 2
        return per, io, budget

    def _default_programs(self):
        from rpcsrv import mount3, nfs3
        from rpcsrv.export import Export
        export = Export(self.config.export, read_only=self.config.read_only, state_dir=self.config.state_dir)
        if self.config.mount_clients is None:
            self.config.mount_clients = mount3.MountRegistry()
        return [nfs3.make_program(), mount3.make_program()], export

    # -- lifecycle -------------------------------------------------------------
    def start(self):
        """Bind, start the poller and workers; returns (host, port)."""
        self._listener = listen(self.config.host, self.config.port)
        self.host, self.port = self._listener.getsockname()[:2]
        if self.config.udp is not None:     # RPC over UDP on page_pool pages, same port (rpcsrv/udp.py)
            from rpcsrv.udp import UdpServer
            self._udp = UdpServer(self, self.config.udp)
            try:
                self._udp.start(self.host, self.port)
            except OSError:
                self._listener.close()
                raise
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._epoll.register(self._listener.fileno(), select.EPOLLIN)
        self._epoll.register(self._wake_r, select.EPOLLIN)
        t = threading.Thread(target=self._poller, name="rpcsrv-poller", daemon=True)
        t.start()
        self._poller_thread = t
        for i in range(self.config.threads):
            w = threading.Thread(target=self._worker, name="rpcsrv-worker-%d" % i, daemon=True)
            w.start()
            self._threads.append(w)
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
        try:
            self._epoll.unregister(self._listener.fileno())
        except (OSError, ValueError):
            pass
        self._listener.close()
        if getattr(self, "_udp", None) is not None:
            self._udp.stop(timeout)         # UDP threads joined, pools closed: pages back
        os.write(self._wake_w, b"x")
        with self._cond:
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for w in self._threads:
            w.join(max(0.1, deadline - time.monotonic()))
        self._poller_thread.join(max(0.1, deadline - time.monotonic()))
        with self._conns_lock:
            conns = list(self._conns.values())
            self._conns.clear()
        for c in conns:
            c.close()
        self.metrics.connections.set(0)
        self._epoll.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        if self.export is not None:
            self.export.close()
        self.allocator.drain_all()

    def still_running(self):
        return [t.name for t in self._threads + [self._poller_thread] if t.is_alive()]

    # -- poller ----------------------------------------------------------------
    def _poller(self):
        lfd = self._listener.fileno()
        ep = self._epoll
        next_sweep = time.monotonic() + 1.0
        while not self._stopping:
            try:
                events = ep.poll(1.0)
            except InterruptedError:
                continue
            except OSError:
                break
            now = time.monotonic()
            if now >= next_sweep:
                self._sweep(now)
                next_sweep = now + 1.0
            for fd, ev in events:
                if fd == lfd:
                    self._accept()
                elif fd == self._wake_r:
                    try:
                        os.read(self._wake_r, 64)
                    except BlockingIOError:
                        pass
                else:
                    with self._conns_lock:
                        conn = self._conns.get(fd)
                    if conn is None:
                        continue
                    conn.ready_since = now
                    conn.busy = True
                    with self._cond:
                        self._ready.append(conn)
                        self._cond.notify()

    def _accept(self):
        while True:
            try:
                sock, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.warning("accept failed: %s", e)
                return
            refuse = None
            if self.config.allow and not any(ipaddress.ip_address(peer[0].split("%")[0]) in net
                                             for net in self.config.allow):
                refuse = "not_allowed"
            elif len(self._conns) >= self.config.max_connections:
                refuse = "too_many_connections"
            if refuse:
                self.metrics.error(refuse)
                sock.close()
                continue
            conn = Connection(sock, peer, self.config.max_record, self.allocator)
            with self._conns_lock:
                self._conns[conn.fd] = conn
            self.metrics.connections.inc()
            self._epoll.register(conn.fd, select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLONESHOT)

    def _park(self, n: int) -> bool:
        """May n more pages be parked in a connection with a partial record? (see _size_requests)"""
        with self._conns_lock:
            if self._partial_pages + n > self.partial_budget:
                return False
            self._partial_pages += n
            return True

    def _unpark(self, n: int) -> None:
        with self._conns_lock:
            self._partial_pages -= n

    def _sweep(self, now):
        """Close connections idle too long, or with a record that began too long ago (poller thread)."""
        cfg = self.config
        with self._conns_lock:
            victims = [c for c in self._conns.values() if not c.busy and (
                now - c.last_active > cfg.idle_timeout or
                (c.record_started and now - c.record_started > cfg.record_timeout))]
        for c in victims:
            c.error_reason = "record_timeout" if c.record_started and \
                now - c.record_started > cfg.record_timeout else "idle_timeout"
            self._close(c)

    def _rearm(self, conn):
        conn.busy = False
        try:
            self._epoll.modify(conn.fd, select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLONESHOT)
        except (OSError, ValueError):
            self._close(conn)

    def _close(self, conn):
        with self._conns_lock:
            if self._conns.get(conn.fd) is not conn:
                return
            del self._conns[conn.fd]
        try:
            self._epoll.unregister(conn.fd)
        except (OSError, ValueError):
            pass
        if conn.error_reason:
            self.metrics.error(conn.error_reason)
        with self._conns_lock:
            self._partial_pages -= conn.saved_slots
        conn.close()
        self.metrics.connections.dec()

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
        ctx = RequestContext(rqst, self.export, self.config, self.metrics)
        packer = Packer()
        metrics = self.metrics
        stopping = lambda: self._stopping  # noqa: E731
        stalls_seen = 0
        try:
            while True:
                if not rqst.svc_alloc_arg(stopping):
                    break
                metrics.svc_alloc_arg(rqst.last_ns, rqst.last_holes, rqst.last_waits)
                if rqst.stalls != stalls_seen:
                    metrics.alloc_stalls.inc(rqst.stalls - stalls_seen)
                    stalls_seen = rqst.stalls
                conn = self._dequeue()
                if conn is None:
                    break
                metrics.queue_wait.observe(time.monotonic() - conn.ready_since)
                self._serve(rqst, ctx, packer, conn)
        except Exception:  # pragma: no cover - a bug in the server itself
            log.exception("worker died")
            raise
        finally:
            rqst.release_all()
            self.allocator.drain_local()

    def _serve(self, rqst, ctx, packer, conn):
        if conn.closed:
            return
        try:
            status = conn.receive(rqst, self._park, self._unpark, self.config.record_timeout)
        except Exception:
            log.exception("receive failed")
            conn.error_reason = "server_bug"
            status = CLOSED
        if status == CLOSED:
            self._close(conn)
            return
        if status == PARTIAL:
            self._rearm(conn)
            return
        self.metrics.in_flight.inc()
        try:
            keep = self._process(rqst, ctx, packer, conn)
        except Exception:
            log.exception("request processing failed")
            conn.error_reason = "server_bug"
            keep = False
        finally:
            self.metrics.in_flight.dec()
            conn.record_done()
        if keep and not conn.closed:
            self._rearm(conn)
        else:
            self._close(conn)

    def _process(self, rqst, ctx, packer, conn) -> bool:
        """Decode, dispatch and answer one record held in rqst's pages. False: drop the connection."""
        t0 = time.perf_counter()
        metrics = self.metrics
        rec_len = conn.decoder.record_len
        call_pages = (rec_len + PAGE - 1) // PAGE
        reply_slot = call_pages
        u = Unpacker(rqst.views, rec_len)
        packer.reset()
        packer.reserve_uint()                       # the record marker, patched below
        try:
            call = decode_call(u)
        except RpcError as e:
            metrics.error(e.reason)
            if not e.pack_reply(packer):
                return True                         # no xid: nothing to answer, keep the connection
            return self._send(rqst, conn, packer, reply_slot, 0)
        if self.config.secure_ports and conn.peer[1] >= 1024:
            metrics.error("insecure_port")
            rpcmsg.AuthError(rpcmsg.AUTH_TOOWEAK, "source port %d" % conn.peer[1], call.xid).pack_reply(packer)
            return self._send(rqst, conn, packer, reply_slot, 0)
        ctx.xid = call.xid
        ctx.addr = conn.peer
        ctx.cred = call.cred
        ctx.reply_slot = reply_slot
        ctx.payload_len = 0
        reply, payload, outcome = self.execute(call, u, ctx, packer, self.drc, conn.peer[0],
                                               rqst.pages, rec_len)
        if outcome is None:                         # the reply cache: a duplicate in progress, or answered
            return self._send(rqst, conn, packer, reply_slot, 0) if reply else True
        keep = self._send(rqst, conn, packer, reply_slot, payload) if reply else True
        metrics.request(outcome.program or "unknown", call.vers, outcome.name or "unknown", outcome.status,
                        time.perf_counter() - t0)
        self.requests_served += 1
        return keep

    def execute(self, call, u, ctx, packer, drc, peer_key, pages, rec_len: int, dispatcher=None):
        """Reply cache, dispatch, logging and error counting of one decoded call (TCP and UDP).

        Returns (reply, payload, outcome): reply False means send nothing (a
        duplicate of a call still in progress); outcome None means the packer
        now holds the cached reply of a retransmission; else payload is the
        byte count read_payload put in the reply's pages.
        """
        metrics = self.metrics
        dispatcher = dispatcher or self.dispatcher
        drc_key = None
        try:
            entry = dispatcher.lookup(call.prog, call.vers, call.proc)
        except RpcError:
            entry = None                            # dispatch() answers the error
        if entry is not None and not entry.idempotent:
            head = _pageio.copy_out(pages, 0, 0, min(rec_len, 256))
            drc_key = (peer_key, call.xid, call.prog, call.vers, call.proc, rec_len, zlib.crc32(head))
            cached = drc.begin(drc_key)
            if cached is ReplyCache.IN_PROGRESS:
                metrics.drc_in_progress.inc()
                return False, 0, None
            if cached is not None:
                metrics.drc_hit.inc()
                packer.reset()
                packer.append(cached)
                return True, 0, None
            metrics.drc_miss.inc()
        outcome = dispatch(dispatcher, call, u, ctx, packer)
        if outcome.error is not None:
            log.error("%s.%s xid %#x: %r", outcome.program, outcome.name, call.xid, outcome.error,
                      exc_info=outcome.error)
            metrics.error("system_err")
        elif not outcome.reply or outcome.status in ("garbage_args", "proc_unavail", "prog_unavail",
                                                      "prog_mismatch"):
            metrics.error(outcome.status)
        payload = ctx.payload_len if outcome.result is not None and \
            getattr(outcome.result, "payload_len", 0) == ctx.payload_len else 0
        if drc_key is not None:
            drc.finish(drc_key, bytes(packer.buffer) if outcome.reply else None)
        return outcome.reply, payload, outcome

    def _send(self, rqst, conn, packer, reply_slot: int, payload: int) -> bool:
        """Encode the reply into the response pages, send it in one sendmsg, free the pages."""
        hdr_len = len(packer)
        pad = (-payload) & 3
        total = hdr_len - 4 + payload + pad
        packer.patch_uint(0, 0x80000000 | total)
        hdr_pages = (hdr_len + PAGE - 1) // PAGE
        if payload:
            if hdr_pages > 1:
                raise RuntimeError("reply header over one page with a payload")
            end = reply_slot + 1 + (payload + pad + PAGE - 1) // PAGE
        else:
            end = reply_slot + hdr_pages
        if end > rqst.nslots:
            raise RuntimeError("reply does not fit the page array")
        _pageio.copy_in(rqst.pages, reply_slot, 0, packer.buffer)
        if pad:
            _pageio.zero(rqst.pages, reply_slot + 1, payload, pad)
        ok = conn.send(rqst, reply_slot, hdr_len, reply_slot + 1, payload + pad, self.config.send_timeout)
        rqst.release(reply_slot, end)
        return ok
