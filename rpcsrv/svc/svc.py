"""svc_process: the one request core every transport hands its received calls to.

A transport receives one call (a TCP record, a UDP datagram) into pages
whose slot 0 holds the call's first byte, fills a Request (the caller's
address, how its payload I/O is done, how big a reply it can carry) and
calls ``Svc.process(req, packer, views, length)``; it gets back a Reply to
send, sends it, and calls ``Svc.account(reply, t0)``. This mirrors knfsd's
xpo_recvfrom -> svc_process -> xpo_sendto; no transport imports the server,
and svc imports no transport.

What process() does, in order (the kernel's svc_process_common):
  1. decode the call header (rpcmsg.decode_call: RPC version, credential and
     verifier checks; errors carry their reply or none);
  2. the address checks the transport did not already make: --allow (a call
     from elsewhere is dropped without a reply, as UDP has no connection to
     refuse) and --secure-ports (AUTH_TOOWEAK);
  3. the table lookup; for a non-idempotent procedure the duplicate request
     cache (an in-progress duplicate is dropped, an answered one gets the
     cached reply, byte for byte);
  4. dispatch (decode arguments, handler, encode the result; never raises);
  5. error accounting (nfsbulk_rpc_errors_total by reason; our own bugs are
     logged and answered SYSTEM_ERR), and the reply size against what the
     transport can carry (a larger reply becomes SYSTEM_ERR: never a
     truncated one).

Threads: any number of workers call process() at once with their own
Request and Packer; the ReplyCache has its own lock; metrics are thread-safe.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import threading
import zlib
from typing import Any, NamedTuple

from ..proto.rpcmsg import AUTH_TOOWEAK, AuthError, GarbageArgs, RpcError, SystemErr, decode_call
from ..proto.xdr import Unpacker
from .dispatch import dispatch

__all__ = ["Svc", "Request", "Reply", "ReplyCache", "XprtLimits", "NO_REPLY"]

log = logging.getLogger("rpcsrv")

#: statuses that count as RPC errors when dispatch answers them
_ERROR_STATUSES = frozenset(("garbage_args", "proc_unavail", "prog_unavail", "prog_mismatch"))


class XprtLimits(NamedTuple):
    """What one transport can carry, as knfsd's svc_max_payload: the NFS layer clamps by it.

    rtmax/wtmax: the largest READ/WRITE payload served; dirmax: the largest
    READDIR(PLUS) reply built; fsinfo: the FSINFO result clients see over it.
    """
    rtmax: int
    wtmax: int
    dirmax: int
    fsinfo: Any


class Request:
    """What a procedure handler sees of its call (ctx); one per worker or endpoint, reset per call.

    Filled by the transport before process(): the peer's address (set_peer:
    the address, or a function that makes it on first use, so a NULL call
    over UDP never builds one), pages (the PageArray holding the call from
    slot 0), io (the transport's payload I/O:
    read_payload(fd, off, count) into reply pages, write_payload(fd,
    file_off, rec_off, length) from the call's pages; both return bytes or
    raise OSError), room (reply bytes the transport can carry),
    room_reason (the error label when a reply exceeds it), addr_checked
    (True when --allow was applied at connection time), key_has_port (the
    reply cache tells clients apart by host and port: datagrams; else by
    host: a connection's port changes when it reconnects).
    """

    __slots__ = ("xid", "_addr", "_peer_fn", "cred", "export", "config", "limits", "metrics", "pages",
                 "io", "room", "room_reason", "addr_checked", "key_has_port", "payload_len")

    def __init__(self, export, config, metrics, limits, io, pages, room, room_reason, addr_checked,
                 key_has_port=False):
        self.export = export
        self.config = config
        self.metrics = metrics
        self.limits = limits
        self.io = io
        self.pages = pages
        self.room = room
        self.room_reason = room_reason
        self.addr_checked = addr_checked
        self.key_has_port = key_has_port
        self.xid = 0
        self._addr = None
        self._peer_fn = None
        self.cred = None
        self.payload_len = 0

    def set_peer(self, addr=None, peer_fn=None) -> None:
        """The caller's address for this call, or a function returning it on first use."""
        self._addr = addr
        self._peer_fn = peer_fn

    @property
    def addr(self):
        """The caller's address ((host, port) or an IPv6 4-tuple)."""
        a = self._addr
        if a is None and self._peer_fn is not None:
            a = self._addr = self._peer_fn()
        return a

    @property
    def peer_key(self):
        """The client as the reply cache tells clients apart."""
        a = self.addr
        return a[:2] if self.key_has_port else a[0]

    def read_payload(self, fd: int, offset: int, count: int) -> int:
        """Read up to count file bytes straight into the reply's payload pages (zero copy)."""
        if self.payload_len:
            raise RuntimeError("read_payload called twice for one request")
        n = self.io.read_payload(fd, offset, count)
        self.payload_len = n
        self.metrics.read_bytes.inc(n)
        return n

    def rewind(self) -> None:
        """The handler runs again (a containment race, nfsd.nfs3): forget the READ payload so far
        (its pages are overwritten; read_bytes has counted it)."""
        self.payload_len = 0

    def write_payload(self, fd: int, file_offset: int, rec_offset: int, length: int) -> int:
        """Write `length` bytes of the call at rec_offset to fd at file_offset (from the pages)."""
        n = self.io.write_payload(fd, file_offset, rec_offset, length)
        self.metrics.write_bytes.inc(n)
        return n


class Reply(NamedTuple):
    """What process() decided: send the packer's bytes (plus `payload` bytes of reply pages)
    or nothing; and the labels to account the call under once it is sent."""
    send: bool
    payload: int
    program: str | None = None
    vers: int = 0
    name: str | None = None
    status: str | None = None       # None: not a dispatched call (nothing to count per procedure)


#: drop the call: nothing to send, nothing to count per procedure
NO_REPLY = Reply(False, 0)


class ReplyCache:
    """Duplicate request cache for non-idempotent calls (knfsd's nfsd_cache).

    Keyed on the client, xid, program/version/procedure and a checksum of the
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


class Svc:
    """svc_process for one set of programs: the server's dispatcher, policy, reply cache and metrics.

    ``copy_head(pages, n)`` returns the call's first n bytes (the reply
    cache's checksum input); the transports' page I/O module provides it.
    """

    def __init__(self, dispatcher, config, metrics, drc: ReplyCache, copy_head):
        self.dispatcher = dispatcher
        self.config = config
        self.metrics = metrics
        self.drc = drc
        self.copy_head = copy_head
        self.requests_served = 0

    def process(self, req: Request, packer, views, length: int, truncated: str | None = None) -> Reply:
        """Decode, check, dispatch and encode one call held in pages; the reply is in `packer`
        after whatever prefix it already held (a TCP record marker).

        truncated: the call arrived cut (a UDP datagram larger than its page): that
        reason is counted and a decodable header is answered GARBAGE_ARGS.
        """
        metrics = self.metrics
        cfg = self.config
        mark = len(packer)
        u = Unpacker(views, length)
        try:
            call = decode_call(u)
        except RpcError as e:
            metrics.error(truncated or e.reason)
            return Reply(e.pack_reply(packer), 0)
        if truncated:
            metrics.error(truncated)
            GarbageArgs("call of %d bytes arrived cut" % length, call.xid).pack_reply(packer)
            return Reply(True, 0)
        if not req.addr_checked and cfg.allow and not any(
                ipaddress.ip_address(req.addr[0].split("%")[0]) in net for net in cfg.allow):
            metrics.error("not_allowed")            # no connection to refuse: drop the call
            return NO_REPLY
        if cfg.secure_ports and req.addr[1] >= 1024:
            metrics.error("insecure_port")
            AuthError(AUTH_TOOWEAK, "source port %d" % req.addr[1], call.xid).pack_reply(packer)
            return Reply(True, 0)
        req.xid = call.xid
        req.cred = call.cred
        req.payload_len = 0
        resolved = self.dispatcher.resolve(call.prog, call.vers, call.proc)
        entry = resolved[1]
        drc_key = None
        if entry is not None and not entry.idempotent:
            head = self.copy_head(req.pages, min(length, 256))
            drc_key = (req.peer_key, call.xid, call.prog, call.vers, call.proc, length, zlib.crc32(head))
            cached = self.drc.begin(drc_key)
            if cached is ReplyCache.IN_PROGRESS:
                metrics.drc_in_progress.inc()
                return NO_REPLY
            if cached is not None:
                metrics.drc_hit.inc()
                packer.truncate(mark)
                packer.append(cached)
                return Reply(True, 0)
            metrics.drc_miss.inc()
        outcome = dispatch(self.dispatcher, call, u, req, packer, resolved)
        status = outcome.status
        if outcome.error is not None:
            log.error("%s.%s xid %#x: %r", outcome.program, outcome.name, call.xid, outcome.error,
                      exc_info=outcome.error)
            metrics.error("system_err")
        elif not outcome.reply or status in _ERROR_STATUSES:
            metrics.error(status)
        payload = outcome.payload if outcome.payload == req.payload_len else 0
        if outcome.reply and len(packer) - mark + payload + ((-payload) & 3) > req.room:
            metrics.error(req.room_reason)
            packer.truncate(mark)
            SystemErr("reply over %d bytes" % req.room, call.xid).pack_reply(packer)
            payload = 0
            status = "system_err"
        if drc_key is not None:
            self.drc.finish(drc_key, bytes(packer.buffer[mark:]) if outcome.reply else None)
        return Reply(outcome.reply, payload, outcome.program or "unknown", call.vers,
                     outcome.name or "unknown", status)

    def account(self, reply: Reply, seconds: float) -> None:
        """Count a processed call once its reply went out (or was dropped)."""
        if reply.status is None:
            return
        self.metrics.request(reply.program, reply.vers, reply.name, reply.status, seconds)
        self.requests_served += 1
