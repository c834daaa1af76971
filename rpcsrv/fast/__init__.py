"""rpcsrv.fast: the request path compiled (Cython and C, GIL released from receive to send).

What it serves: NULL, GETATTR, SETATTR, LOOKUP, ACCESS, READ, WRITE, CREATE, REMOVE, READDIRPLUS,
FSSTAT, FSINFO and COMMIT of NFSv3 over TCP (gen_tables.SERVED_IN_C, compiled into fp_tables.h), on exports in kernel handle mode (the fp_*.h headers
are the C twins of rpcsrv.nfsd.nfs3's handlers; _fast.pyx is the worker loop). Everything else
(other procedures, MOUNT, a handle the fast path has not seen verified, anything unusual) it hands
to the Python path, the reference implementation, which answers with rpcsrv.svc.svc.Svc.process as
it does with the fast path off. tests/fast holds both paths to byte-identical replies.

FastPath wires it into a Server: the configuration from the Export and ServerConfig, the verified
handles the Python path opens (Export.on_opened: descriptors only; the fast path proves containment itself, fp_proof.h), the duplicate request cache both paths
share (SharedReplyCache), and worker_loop(), the body of each worker thread (the threads themselves
are rpcsrv.server's). A worker returns from compiled code only for what needs Python: a fallback
call, an accept, a connection to close, the once-a-second sweep, a single-py refill, or stop.

Threads: the connection table (`conns`) is touched by workers with the GIL held, under `_lock`
where a check and an update must go together (accept, close, sweep).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import struct
import threading
import time

from alloc.strategies import STRATEGIES
from rpcsrv.proto.nfs3const import NFSPROC3_NAMES, NFSSTAT3_NAMES
from rpcsrv.proto.xdr import Packer
from rpcsrv.svc.rqst import SvcRqst
from rpcsrv.svc.svc import ReplyCache, Request
from rpcsrv.xprt.tcp import PARK_EVICT_IDLE, AcceptBackoff, accept_ready, close_connections, stalled_reason
from rpcsrv.xprt.tcpconn import TcpPayloadIO, send_reply

from . import _fast
from ._fast import EVENTS, FastConn, FastServer, FastWorker, STATUS_VALUES

__all__ = ["FastPath", "SharedReplyCache", "usable", "STATUS_VALUES"]

log = logging.getLogger("rpcsrv")
PAGE = 4096
EV_STOP, EV_RECORD, EV_CLOSE = EVENTS["stop"], EVENTS["record"], EVENTS["close"]
EV_ACCEPT, EV_SWEEP, EV_REFILL = EVENTS["accept"], EVENTS["sweep"], EVENTS["refill"]
_FSINFO = struct.Struct(">7IQ2II")
_PROC_NAMES = tuple(NFSPROC3_NAMES[p] for p in range(len(NFSPROC3_NAMES)))
_STATUS_NAMES = tuple(NFSSTAT3_NAMES.get(v, "system_err") for v in STATUS_VALUES)


def usable(export) -> str | None:
    """Why the fast path cannot serve this export, or None if it can."""
    if export is None:
        return "no export"
    if export.mode != "kernel":
        return "the export is in inode handle mode (the fast path serves kernel handles)"
    return None


class _Progress:
    """A FastConn seen as xprt.tcp.stalled_reason reads a connection (monotonic times)."""

    __slots__ = ("record_started", "last_active", "record_len")

    def __init__(self, c, now):
        age = c.record_age(now)
        self.record_started = now - age if age else 0.0
        self.last_active = now - c.idle_for(now)
        self.record_len = c.record_len


def _addr_bytes(host: str) -> bytes:
    return ipaddress.ip_address(host.split("%")[0]).packed


class SharedReplyCache:
    """rpcsrv.svc.svc.ReplyCache's interface over the fast path's C reply cache, so both paths
    find each other's replies (a retransmission may go either way)."""

    IN_PROGRESS = ReplyCache.IN_PROGRESS

    def __init__(self, srv: FastServer):
        self.srv = srv
        self._addrs = {}

    def _fields(self, key):
        peer, xid, prog, vers, proc, length, crc = key
        a = self._addrs.get(peer)
        if a is None:
            a = self._addrs[peer] = _addr_bytes(peer)
            if len(self._addrs) > 65536:
                self._addrs.clear()
        return a, xid, prog, vers, proc, length, crc

    def begin(self, key):
        r = self.srv.drc_begin(*self._fields(key))
        return self.IN_PROGRESS if r is False else r

    def finish(self, key, reply):
        self.srv.drc_finish(*self._fields(key), reply)


class FastPath:
    """The compiled request cycle of one Server (see the module doc)."""

    def __init__(self, server, fh_cache: int = 8192):
        cfg = server.config
        export = server.export
        self.server = server
        self.config = cfg
        strategy = STRATEGIES[cfg.strategy].compiled
        self.srv = FastServer(server.allocator, -1 if strategy is None else strategy, server.nslots,
                              cfg.drc_size, fh_cache, server.partial_budget, cfg.record_timeout,
                              cfg.secure_ports)
        lim = server.limits
        fi = lim.fsinfo
        c = export.codec
        rst = os.fstat(export.root_fd)
        self.srv.configure(
            mac_key=c.mac_key, name_key=c.name_key, verf_key=c.verf_key, export_id=c.export_id,
            fsid=export.fsid, root_fd=export.root_fd, root_dev=rst.st_dev, root_ino=rst.st_ino,
            mount_id=export.mount_id, root_fh=export.root_handle(),
            read_only=bool(cfg.read_only or export.read_only), root_squash=bool(cfg.root_squash),
            anon_uid=cfg.anon_uid, anon_gid=cfg.anon_gid, write_verf=cfg.write_verifier,
            rtmax=lim.rtmax, wtmax=lim.wtmax, dirmax=lim.dirmax,
            fsinfo_xdr=_FSINFO.pack(fi.rtmax, fi.rtpref, fi.rtmult, fi.wtmax, fi.wtpref, fi.wtmult, fi.dtpref,
                                    fi.maxfilesize, fi.time_delta[0], fi.time_delta[1], fi.properties),
            fd_ttl=export.fd_ttl, send_timeout=cfg.send_timeout, proof_cache=export.contain.max_entries,
            whole_fs=export.contain.whole_fs, listing_ttl=export.listings.ttl)
        self.srv.insert_root(os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=export.root_fd),
                             rst.st_dev, rst.st_ino)
        export.on_opened = self._publish
        export.contain.on_forget = self.srv.forget
        export.on_forget_inode = self.srv.forget_inode
        self.drc = SharedReplyCache(self.srv)
        server.svc.drc = self.drc
        server.metrics.add_source(self.metrics_snapshot)
        self.conns = {}
        self._lock = threading.Lock()
        self.listener = None
        self.workers = []
        # accept() out of descriptors: the listener stays disarmed; the sweep (once a second)
        # re-arms it when the rest is over, so a rest here lasts up to a second longer
        self.backoff = AcceptBackoff(server.metrics.accept_error)
        self._listener_resting = False

    def _publish(self, fh, dev, ino):
        """The Python path opened (and proved) a handle: the fast path's fd cache may keep it."""
        self.srv.publish(fh, dev, ino, time.monotonic() + self.server.export.fd_ttl)

    # -- lifecycle (called by rpcsrv.server) ---------------------------------------------------
    def start(self, listener: socket.socket) -> None:
        self.listener = listener
        self.srv.add_listener(listener.fileno())

    def stop(self) -> None:
        self.srv.stop()

    def close_all(self, workers_gone: bool = True) -> None:
        """After the workers are joined: close every connection, and (when every worker is gone)
        the descriptors the handle cache holds, so a stopped server keeps none."""
        self.server.metrics.connections.dec(close_connections(self._lock, self.conns))
        if workers_gone:
            self.srv.release_caches()

    def metrics_snapshot(self):
        """The workers' counters, added up and labelled as rpcsrv.svc.metrics exposes them."""
        stats = [w.stats() for w in list(self.workers)]
        if not stats:
            return []
        nb = len(stats[0]["alloc"])
        out = {"requests": {}, "durations": {}, "errors": {}, "fallbacks": {},
               "alloc": [0] * nb, "alloc_sum": 0.0, "pages": [0] * len(stats[0]["pages"]), "pages_sum": 0,
               "scanned": [0] * len(stats[0]["scanned"]), "scanned_sum": 0,
               "queue": [0] * len(stats[0]["queue"]), "queue_sum": 0.0, "waits": 0, "stalls": 0, "in_flight": 0,
               "read_bytes": 0, "write_bytes": 0, "drc": {"hit": 0, "miss": 0, "in_progress": 0}}
        for st in stats:
            for p, row in enumerate(st["requests"]):
                for i, n in enumerate(row):
                    if n:
                        key = ("nfs", "3", _PROC_NAMES[p], _STATUS_NAMES[i])
                        out["requests"][key] = out["requests"].get(key, 0) + n
            for p, row in enumerate(st["dur"]):
                if any(row):
                    c, t = out["durations"].get(("nfs", _PROC_NAMES[p]), ([0] * len(row), 0.0))
                    out["durations"][("nfs", _PROC_NAMES[p])] = ([a + b for a, b in zip(c, row)], t + st["dur_sum"][p])
            for p, n in enumerate(st["fallbacks"]):
                if n:
                    name = _PROC_NAMES[p] if p < len(_PROC_NAMES) else "other"
                    out["fallbacks"][name] = out["fallbacks"].get(name, 0) + n
            if st["reply_too_large"]:
                out["errors"]["reply_too_large"] = out["errors"].get("reply_too_large", 0) + st["reply_too_large"]
            for k in ("alloc", "pages", "scanned", "queue"):
                out[k] = [a + b for a, b in zip(out[k], st[k])]
            for k in ("alloc_sum", "pages_sum", "scanned_sum", "queue_sum", "waits", "stalls", "in_flight", "read_bytes",
                      "write_bytes"):
                out[k] += st[k]
            for k in out["drc"]:
                out["drc"][k] += st["drc"][k]
        return [out]

    # -- a worker thread -------------------------------------------------------------------------
    def worker_loop(self) -> None:
        """The body of one worker thread: serve in C; do in Python what comes back."""
        server = self.server
        w = FastWorker(self.srv)
        w.bind_thread()
        if self.config.trace_holes:
            w.enable_trace()
        self.workers.append(w)
        server.rqsts.append(w)
        io = TcpPayloadIO(w)
        req = Request(server.export, self.config, server.metrics, server.limits, io, w.pages, 0,
                      "reply_too_large", addr_checked=True)
        packer = Packer()
        pyrefill = SvcRqst(server.allocator, "single-py", w.nslots, pages=w.pages, page_list=w.page_list) \
            if self.srv.strategy < 0 else None
        stopping = lambda: self.srv.stopped  # noqa: E731
        try:
            while True:
                ev = w.serve()
                if ev == EV_RECORD:
                    self._fallback(w, req, io, packer, self.conns.get(w.ret_fd))
                elif ev == EV_CLOSE:
                    self._close(self.conns.get(w.ret_fd))
                elif ev == EV_ACCEPT:
                    self._accept()
                elif ev == EV_SWEEP:
                    self._sweep()
                elif ev == EV_REFILL:
                    if not pyrefill.svc_alloc_arg(stopping):
                        break
                    w.refill_done(pyrefill.last_ns, pyrefill.last_holes, pyrefill.last_waits, pyrefill.last_scanned)
                else:
                    break
        except Exception:  # pragma: no cover - a bug in the server itself
            log.exception("fast worker died")
            raise
        finally:
            w.release_all()
            server.allocator.drain_local()

    def _fallback(self, w, req, io, packer, conn) -> None:
        """A call the fast path did not serve: the Python path answers it (as rpcsrv.server does)."""
        if conn is None:                                    # pragma: no cover - closed meanwhile
            return
        server = self.server
        metrics = server.metrics
        metrics.in_flight.inc()
        keep = True
        try:
            t0 = time.perf_counter()
            rec_len = conn.record_len
            reply_slot = (rec_len + PAGE - 1) // PAGE
            io.reply_slot = reply_slot
            req.room = (w.nslots - reply_slot) * PAGE
            req.set_peer(conn.peer)
            packer.reset()
            packer.reserve_uint()
            reply = server.svc.process(req, packer, w.views, rec_len)
            if reply.send:
                keep = send_reply(conn, w, packer, reply_slot, reply.payload, self.config.send_timeout)
            server.svc.account(reply, time.perf_counter() - t0)
        except Exception:
            log.exception("request processing failed")
            conn.error_reason = "server_bug"
            keep = False
        finally:
            metrics.in_flight.dec()
            conn.record_done()
        if not keep or not conn.rearm():
            self._close(conn)

    def _accept(self) -> None:
        cfg = self.config
        metrics = self.server.metrics
        try:
            for sock, peer in accept_ready(self.listener, cfg.allow, cfg.max_connections, lambda: len(self.conns),
                                           metrics.closed, self.backoff, self._evict):
                sock.setblocking(False)
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:
                    pass
                conn = FastConn(self.srv, sock, peer, _addr_bytes(peer[0]), cfg.max_record)
                with self._lock:
                    self.conns[conn.fd] = conn
                metrics.connections.inc()
                self.srv.add_conn(conn)
        finally:
            if self.backoff.resting():          # out of descriptors: the sweep re-arms it after the rest
                self._listener_resting = True
            else:
                self.srv.rearm_listener(self.listener.fileno())

    def _evict(self) -> bool:
        """At the limit: doom the least recently active connection no worker holds (one with no
        record in progress first); the worker that gets it closes it. True when one was doomed."""
        now = time.monotonic()
        with self._lock:
            idle = [c for c in self.conns.values() if not c.busy and not c.closed and c.error_reason is None]
        if not idle:
            return False
        quiet = [c for c in idle if not c.record_age(now)]
        victim = max(quiet or idle, key=lambda c: c.idle_for(now))
        victim.doom("evicted")
        return True

    def _close(self, conn) -> None:
        if conn is None:
            return
        with self._lock:
            if self.conns.get(conn.fd) is not conn:
                return
            del self.conns[conn.fd]
        self.srv.remove_conn(conn)
        self.server.metrics.closed(conn.reason())
        conn.close()
        self.server.metrics.connections.dec()

    def _sweep(self) -> None:
        """Doom connections idle too long or with a record that began too long ago (a worker that
        gets them closes them); close expired handle-cache entries."""
        cfg = self.config
        now = time.monotonic()
        with self._lock:
            conns = list(self.conns.values())
        short, self.srv.park_short = self.srv.park_short, 0
        for c in conns:
            if c.busy or c.closed or c.error_reason is not None:
                continue
            if c.record_age(now) > cfg.record_timeout:
                c.doom("record_timeout")
            elif c.idle_for(now) > cfg.idle_timeout:
                c.doom("idle_timeout")
            else:
                why = stalled_reason(_Progress(c, now), now, cfg.record_stall, cfg.min_record_rate)
                if why is None and short and c.saved_slots and c.idle_for(now) >= PARK_EVICT_IDLE:
                    why = "parking_evicted"
                if why is not None:
                    c.doom(why)
        self.srv.sweep_caches()
        if self._listener_resting and not self.backoff.resting(now):
            self._listener_resting = False
            self.srv.rearm_listener(self.listener.fileno())
