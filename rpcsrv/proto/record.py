"""ONC RPC record marking (RFC 5531 section 11), sans-IO.

Owns: the framing state of one byte stream; never the bytes themselves.

Theory
------
On a stream transport an RPC message is one record made of one or more
fragments.  Each fragment is a 4-byte big-endian marker -- bit 31 set on the
last fragment, bits 0..30 the fragment length -- followed by that many body
bytes.  The record is the concatenation of the fragment bodies.

The server reads the socket itself (recv_into straight into page memory), so
RecordDecoder only tracks state and tells the caller what to read next:

  want() -> (HEADER, n): n (1..4) bytes of the marker are still missing; give
                         them to feed_header() (any split, even byte by byte).
            (BODY, n):   n > 0 body bytes of the current fragment remain; the
                         caller stores them at record offset `record_len`
                         (fragments are contiguous in record space) and reports
                         them with body_received(k), 1 <= k <= n.
            (DONE, 0):   the record is complete (body_received returned True);
                         record_len is its length.  next_record() resets.

Invariants
----------
* record_len = body bytes stored so far for the current record; it never
  exceeds max_record, because every marker is checked against the bound
  *before* any of its body is read (a peer cannot make us buffer an oversized
  record).
* Empty fragments are legal (RFC 5531 section 11 puts no lower bound on a
  fragment): an empty last fragment after data completes the record
  (feed_header returns True, want() is then (DONE, 0)). Two things are not: a
  record of no bytes at all (``empty_record``: it cannot hold a call), and
  more than MAX_EMPTY_FRAGMENTS empty fragments in one record
  (``zero_fragment``: they never bring the record closer to its end or its
  size bound, so without a cap a peer streaming 4-byte markers would hold
  the reader for ever).
* Errors are sticky: after a RecordError the stream is out of sync, every
  later call raises the same error, and the caller must close the connection.
  RecordError (a ValueError) is the peer's fault and has a .reason for
  metrics; calling methods out of order or with bad sizes is a ValueError of
  ours (the caller's bug).
* No I/O, no threads, no logging, no locks: one decoder per connection, used
  by whichever single worker currently owns the connection.
"""

import struct

__all__ = [
    "HEADER", "BODY", "DONE",
    "LAST_FRAGMENT", "MAX_FRAGMENT", "MAX_EMPTY_FRAGMENTS",
    "RecordError", "RecordDecoder", "RecordBuffer",
    "encode_record", "encode_fragment_header", "frame",
]

HEADER = "header"
BODY = "body"
DONE = "done"

LAST_FRAGMENT = 0x80000000
MAX_FRAGMENT = 0x7FFFFFFF
#: empty fragments one record may carry (the fast path's FP_MAX_EMPTY_FRAGMENTS: rpcsrv/fast/fp_tables.h)
MAX_EMPTY_FRAGMENTS = 64

_U32 = struct.Struct(">I")


class RecordError(ValueError):
    """The peer broke record marking; .reason is "zero_fragment", "empty_record" or "record_too_large"."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


class RecordDecoder:
    """State machine for receiving one record at a time (see module comment)."""

    __slots__ = (
        "max_record",   # bound on a record's total body length
        "record_len",   # body bytes of the current record received so far
        "fragments",    # fragment markers completed for the current record
        "empty",        # of them, empty ones
        "last",         # the current fragment is the record's last one
        "_hdr",         # partial marker bytes (bytearray, len < 4)
        "_left",        # body bytes of the current fragment still to come
        "_done",        # record complete, waiting for next_record()
        "_error",       # sticky RecordError
    )

    def __init__(self, max_record):
        if max_record <= 0:
            raise ValueError("max_record must be positive")
        self.max_record = max_record
        self._hdr = bytearray()
        self._error = None
        self.next_record()

    def next_record(self):
        """Forget the completed record and expect the first marker of the next one."""
        if self._error is not None:
            raise self._error
        self.record_len = 0
        self.fragments = 0
        self.empty = 0
        self.last = False
        del self._hdr[:]
        self._left = 0
        self._done = False

    def want(self):
        if self._error is not None:
            raise self._error
        if self._left:
            return BODY, self._left
        if self._done:
            return DONE, 0
        return HEADER, 4 - len(self._hdr)

    @property
    def in_record(self):
        """True once any byte of the current record (marker included) was received."""
        return bool(self._hdr) or self.fragments > 0

    def feed_header(self, data):
        """Give 1..n bytes of the fragment marker, n from want() == (HEADER, n). Returns True
        exactly when the marker completes the record (an empty last fragment after data)."""
        if self._error is not None:
            raise self._error
        if self._left or self._done:
            raise ValueError("feed_header() called while no marker is expected")
        hdr = self._hdr
        need = 4 - len(hdr)
        k = len(data)
        if k == 0 or k > need:
            raise ValueError(f"feed_header() takes 1..{need} bytes, got {k}")
        hdr += data
        if k < need:
            return False
        word = _U32.unpack(hdr)[0]
        del hdr[:]
        flen = word & MAX_FRAGMENT
        self.last = bool(word & LAST_FRAGMENT)
        self.fragments += 1
        if flen == 0:
            self.empty += 1
            if self.empty > MAX_EMPTY_FRAGMENTS:
                self._error = RecordError("zero_fragment", "more than %d empty fragments in one RPC record"
                                          % MAX_EMPTY_FRAGMENTS)
                raise self._error
            if not self.last:
                return False
            if self.record_len == 0:
                self._error = RecordError("empty_record", "RPC record of 0 bytes")
                raise self._error
            self._done = True
            return True
        total = self.record_len + flen
        if total > self.max_record:
            self._error = RecordError(
                "record_too_large",
                f"RPC record of at least {total} bytes exceeds the maximum {self.max_record}")
            raise self._error
        self._left = flen
        return False

    def body_received(self, n):
        """n body bytes were stored at record offset record_len.

        Returns True exactly when this completes the record's last fragment.
        """
        if self._error is not None:
            raise self._error
        if n <= 0 or n > self._left:
            raise ValueError(f"body_received({n}) but {self._left} body bytes were expected")
        self.record_len += n
        self._left -= n
        if self._left:
            return False
        if self.last:
            self._done = True
            return True
        return False


class RecordBuffer:
    """Convenience over RecordDecoder: feed(data) buffers bytes, returns complete records.

    For tests and simple (non zero-copy) callers, in the style of msgpack's
    streaming Unpacker.feed.
    """

    __slots__ = ("decoder", "_rec")

    def __init__(self, max_record):
        self.decoder = RecordDecoder(max_record)
        self._rec = bytearray()

    def feed(self, data):
        """Consume all of `data`; return the list of records (bytes) it completed."""
        dec = self.decoder
        rec = self._rec
        out = []
        mv = memoryview(data).cast("B")
        i = 0
        n = len(mv)
        while i < n:
            kind, want = dec.want()
            k = n - i
            if k > want:
                k = want
            if kind is HEADER:
                if dec.feed_header(mv[i:i + k]):        # an empty last fragment ended the record
                    out.append(bytes(rec))
                    del rec[:]
                    dec.next_record()
            else:  # BODY
                rec += mv[i:i + k]
                if dec.body_received(k):
                    out.append(bytes(rec))
                    del rec[:]
                    dec.next_record()
            i += k
        return out

    @property
    def in_record(self):
        """True if a partial record is buffered (EOF now would truncate it)."""
        return self.decoder.in_record


def encode_fragment_header(length, last=True):
    """The 4-byte marker of one fragment.  Any length 0..2**31-1 (tests build bad ones)."""
    if not 0 <= length <= MAX_FRAGMENT:
        raise ValueError(f"fragment length {length} outside 0..{MAX_FRAGMENT}")
    return _U32.pack(length | LAST_FRAGMENT if last else length)


def encode_record(payload_len):
    """Marker for a record sent as a single (last) fragment of payload_len > 0 bytes."""
    if not 0 < payload_len <= MAX_FRAGMENT:
        raise ValueError(f"record length {payload_len} outside 1..{MAX_FRAGMENT}")
    return _U32.pack(payload_len | LAST_FRAGMENT)


def frame(payload, max_fragment=None):
    """Frame a non-empty payload as one record of fragments of at most max_fragment bytes."""
    n = len(payload)
    if n == 0:
        raise ValueError("cannot frame an empty record")
    if max_fragment is None or max_fragment > MAX_FRAGMENT:
        max_fragment = MAX_FRAGMENT
    if max_fragment <= 0:
        raise ValueError("max_fragment must be positive")
    mv = memoryview(payload).cast("B")
    parts = []
    for start in range(0, n, max_fragment):
        chunk = mv[start:start + max_fragment]
        last = start + max_fragment >= n
        parts.append(encode_fragment_header(len(chunk), last))
        parts.append(chunk)
    return b"".join(parts)
