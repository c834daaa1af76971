"""RPC over TCP, one connection: record reception into pages, parking a partial record, send.

A Connection wraps one accepted, non-blocking client socket (the listener that accepts it, its
epoll set, the sweep and the parking budget are rpcsrv/xprt/tcp.py). It knows nothing of RPC
beyond record marking.

Threads and ownership
---------------------
A Connection is served by one worker at a time (the poller hands it out with EPOLLONESHOT and
re-arms it only when that worker is done), so its state needs no lock; only doom() is called
from outside its worker (the sweep), and it only sets the reason and shuts the socket down.

- `decoder` (record marking state) persists across calls, so a record that arrives in pieces is
  resumed by whichever worker gets the connection next;
- the body of a record is received straight into the serving request's pages (slots from 0,
  record offset == page offset * 4096 + offset in page) with readv on the page memory;
- when a record is incomplete and the socket has no more data, the pages holding the part
  received are moved from the request into the connection (`saved`, like svc_tcp_save_pages):
  the connection owns them until the next worker that serves it frees its own pages in those
  slots and moves the saved ones in (svc_tcp_restore_pages), or close() frees them;
- a record that cannot be parked (the listener's budget is spent: park(n) is False) waits at
  most PARK_WAIT for its rest, then the connection ends (parking_full): a worker is never held
  for --record-timeout by one connection.

A reply goes out with one sendmsg of the header page(s) and payload pages (send_reply), after
which the reply pages are freed: the next call's holes. TcpPayloadIO puts READ data in the slots
after the reply's header page and takes WRITE data from the call's own pages. Errors here are the
peer's: they end the connection (error_reason, CLOSED / False), never a worker.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import time

from ..proto.record import BODY, HEADER, RecordDecoder, RecordError
from . import _pageio

RECORD, PARTIAL, CLOSED = "record", "partial", "closed"
PAGE = _pageio.PAGE
#: over the parking budget, a partial record waits at most this long for its rest
PARK_WAIT = 0.02


class Connection:
    __slots__ = ("sock", "fd", "peer", "decoder", "marker", "marker_view", "saved", "saved_slots",
                 "closed", "ready_since", "created", "last_active", "error_reason", "allocator", "busy",
                 "record_started")

    def __init__(self, sock: socket.socket, peer, max_record: int, allocator):
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.decoder = RecordDecoder(max_record)
        self.marker = bytearray(4)
        self.marker_view = memoryview(self.marker)
        self.saved = None
        self.saved_slots = 0
        self.closed = False
        self.ready_since = 0.0
        self.created = self.last_active = time.monotonic()
        self.error_reason = None
        self.allocator = allocator
        self.busy = False               # in a worker's hands (not in the epoll set)
        self.record_started = 0.0       # when the first byte of the current record came (0: none)

    # -- receive ---------------------------------------------------------------
    def receive(self, rqst, park=None, unpark=None, record_timeout: float = 60.0) -> str:
        """Read what is available of the current record into rqst's pages.

        Returns RECORD (decoder.record_len bytes in slots from 0), PARTIAL
        (nothing more to read now; received pages saved in the connection)
        or CLOSED (EOF, a socket error, a bad record marker, a record not
        completed in time: error_reason says).

        park(n) -> bool asks whether n more pages may be parked in the
        connection; when it says no, this worker keeps the connection and
        waits for the rest of the record (up to record_timeout) instead.
        unpark(n) gives back pages parked earlier.
        """
        if self.saved_slots:
            n = self.saved_slots
            self._restore(rqst)
            if unpark is not None:
                unpark(n)
        dec = self.decoder
        pages = rqst.pages
        while True:
            kind, n = dec.want()
            if kind == HEADER:
                try:
                    r = self.sock.recv_into(self.marker_view[4 - n:], n)
                except (BlockingIOError, InterruptedError):
                    if self._park_or_wait(rqst, park, record_timeout):
                        return PARTIAL
                    if self.error_reason:
                        return CLOSED
                    continue
                except OSError as e:
                    if e.errno == errno.ECONNRESET and dec.record_len == 0 and n == 4:
                        return self._fail("reset")          # the client went away between records
                    return self._fail("recv_" + (errno.errorcode.get(e.errno, "error").lower()))
                if r == 0:
                    return self._fail("eof" if dec.record_len == 0 and n == 4 else "truncated_record")
                if not self.record_started:
                    self.record_started = time.monotonic()
                try:
                    if dec.feed_header(bytes(self.marker_view[4 - n:4 - n + r])):
                        self.record_started = 0.0           # an empty last fragment ended it
                        return RECORD
                except RecordError as e:
                    return self._fail(e.reason)
            elif kind == BODY:
                r = _pageio.recv_into(self.fd, pages, 0, dec.record_len, n)
                if r > 0:
                    self.last_active = time.monotonic()
                    if dec.body_received(r):
                        self.record_started = 0.0
                        return RECORD
                elif r == -errno.EAGAIN:
                    if self._park_or_wait(rqst, park, record_timeout):
                        return PARTIAL
                    if self.error_reason:
                        return CLOSED
                elif r == 0:
                    return self._fail("truncated_record")
                elif r == -errno.EINTR:
                    continue
                else:
                    return self._fail("recv_" + errno.errorcode.get(-r, "error").lower())
            else:  # DONE: the previous record was not consumed (cannot happen: server calls next_record)
                dec.next_record()

    def _park_or_wait(self, rqst, park, record_timeout: float) -> bool:
        """No data now. True: the partial record is parked (PARTIAL). False: keep reading
        (data came while this worker waited) or give up (error_reason set)."""
        n = (self.decoder.record_len + PAGE - 1) // PAGE
        if n == 0 or park is None or park(n):
            self._partial(rqst)
            return True
        # over the parking budget: wait a little for the rest, never --record-timeout (module doc)
        deadline = (self.record_started or time.monotonic()) + record_timeout
        left = deadline - time.monotonic()
        if left <= 0:
            self._fail("record_timeout")
            return False
        r, _, _ = select.select([self.fd], [], [], min(left, PARK_WAIT))
        if not r:
            self._fail("parking_full" if left > PARK_WAIT else "record_timeout")
        return False

    def _partial(self, rqst) -> str:
        """Save the pages of a partly received record in the connection (svc_tcp_save_pages)."""
        n = (self.decoder.record_len + PAGE - 1) // PAGE
        if n:
            if self.saved is None:
                self.saved = self.allocator.page_array(rqst.nslots)
            for i in range(n):
                self.saved[i] = rqst.pages.take(i)
            self.saved_slots = n
            rqst.note_taken(n)
        return PARTIAL

    def _restore(self, rqst) -> None:
        """Put saved pages back into rqst's leading slots, freeing the pages they replace."""
        n = self.saved_slots
        rqst.allocator.free_pages_bulk(rqst.pages, 0, n)
        for i in range(n):
            rqst.pages[i] = self.saved.take(i)
        self.saved_slots = 0

    def _fail(self, reason) -> str:
        if not self.error_reason:           # a connection doomed by the sweep keeps its reason
            self.error_reason = reason
        return CLOSED

    def doom(self, reason: str) -> None:
        """End the connection from outside its worker: the reason is kept, and the shutdown makes
        the socket readable, so whoever serves it next sees the end and closes it."""
        self.error_reason = reason
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def record_done(self) -> None:
        self.decoder.next_record()

    @property
    def record_len(self) -> int:
        """Body bytes of the record in progress received so far."""
        return self.decoder.record_len

    # -- send ------------------------------------------------------------------
    def send(self, rqst, slot1: int, len1: int, slot2: int, len2: int, timeout: float) -> bool:
        """Send header pages then payload pages as one message; False if the connection must go."""
        r = _pageio.send_ranges(self.fd, rqst.pages, slot1, len1, slot2, len2, int(timeout * 1000))
        if r < 0:
            self.error_reason = "send_timeout" if r == -errno.ETIMEDOUT else \
                "send_" + errno.errorcode.get(-r, "error").lower()
            return False
        self.last_active = time.monotonic()
        return True

    # -- close -----------------------------------------------------------------
    def close(self) -> None:
        """Close the socket and give saved pages back. Idempotent."""
        if self.closed:
            return
        self.closed = True
        if self.saved is not None:
            self.allocator.free_pages_bulk(self.saved)
            self.saved = None
            self.saved_slots = 0
        try:
            self.sock.close()
        except OSError:
            pass


def send_reply(conn: Connection, rqst, packer, reply_slot: int, payload: int, send_timeout: float) -> bool:
    """Put the reply header (packer, its first 4 bytes the record marker to patch) into the
    reply pages from reply_slot, send it and `payload` bytes of payload pages (already in
    the slots after the header page) in one sendmsg, then free the reply pages.
    False: the connection must go."""
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
    ok = conn.send(rqst, reply_slot, hdr_len, reply_slot + 1, payload + pad, send_timeout)
    rqst.release(reply_slot, end)
    return ok


class TcpPayloadIO:
    """Request.io of a TCP call: READ data into the slots after the reply's header page,
    WRITE data from the call's own pages (record offset == page offset from slot 0)."""

    __slots__ = ("rqst", "reply_slot")

    def __init__(self, rqst):
        self.rqst = rqst
        self.reply_slot = 1

    def read_payload(self, fd: int, offset: int, count: int) -> int:
        room = (self.rqst.nslots - self.reply_slot - 1) * PAGE
        if count > room:
            count = room
        n = _pageio.pread_into(fd, self.rqst.pages, self.reply_slot + 1, 0, count, offset)
        if n < 0:
            raise OSError(-n, os.strerror(-n))
        return n

    def write_payload(self, fd: int, file_offset: int, rec_offset: int, length: int) -> int:
        n = _pageio.pwrite_from(fd, self.rqst.pages, 0, rec_offset, length, file_offset)
        if n < 0:
            raise OSError(-n, os.strerror(-n))
        return n
