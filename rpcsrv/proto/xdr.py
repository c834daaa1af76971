"""XDR (RFC 4506) primitives, sans-IO.

Owns: the byte-level encoding of XDR basic types, for decoding out of a
*segmented* RPC record and for encoding into a growing bytearray.

Theory and invariants
---------------------
* A received RPC record lives in fixed-size pages that are not contiguous.
  Record byte k is in segments[k // seg_size] at offset k % seg_size; every
  segment is seg_size bytes long except possibly the last one, and only the
  first `length` record bytes are valid.  Segments are only ever touched
  through struct.Struct.unpack_from(seg, off) or memoryview(seg): the
  allocator's page views export a buffer but support neither slicing nor
  indexing.
* Unpacker keeps a cursor as (current segment, offset inside it, limit of
  valid bytes inside it).  The fast path is a read that lies wholly inside
  the current segment: one bounds compare, one unpack_from, no copies.  The
  slow path (_locate) moves to another segment, detects the end of the
  record, and assembles the rare value that straddles a segment boundary.
  Because the limit of the current segment is clamped to the record length,
  the fast-path compare is also the bounds check.  Since every XDR item is
  4-byte aligned in the record and records start at page offset 0, a 4-byte
  read never straddles a 4096-byte page; only an 8-byte hyper at page
  offset 4092 or an opaque's bytes can.
* Callables given to unpack_optional/unpack_array take no argument (bound
  methods such as u.unpack_uint); those given to Packer.pack_optional/
  pack_array take the item (as the old stdlib xdrlib did).
* Every XDR item occupies a multiple of 4 bytes.  Padding bytes must be
  present in the record, but their value is NOT checked: RFC 4506 says they
  are zero, and we are liberal in what we accept, as most receivers are.
* unpack_opaque_ref never copies: it returns (record_offset, length) and
  skips the data and its padding.  views()/copy() turn such a range into
  memoryviews (for os.pwritev) or bytes.
* Errors: XdrError (a ValueError) means the input is short or malformed,
  i.e. the peer's fault.  The Packer raises plain ValueError for values it
  cannot encode, which is *our* bug.  Keep the two apart (h11's
  RemoteProtocolError vs LocalProtocolError).
* No I/O, no threads, no logging, no locks.  An Unpacker or a Packer is
  used by one thread at a time (one request).
"""

import struct

__all__ = [
    "XdrError",
    "Unpacker",
    "Packer",
    "MAX_UINT",
]

MAX_UINT = 0xFFFFFFFF

_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")

_u32_from = _U32.unpack_from
_i32_from = _I32.unpack_from
_u64_from = _U64.unpack_from
_i64_from = _I64.unpack_from
_u32_pack = _U32.pack
_i32_pack = _I32.pack
_u64_pack = _U64.pack
_i64_pack = _I64.pack

_PADS = (b"", b"\0\0\0", b"\0\0", b"\0")   # indexed by len & 3
_ZERO4 = b"\0\0\0\0"
_structerror = struct.error


class XdrError(ValueError):
    """Short or malformed XDR input: the peer's fault."""


def _short(pos, n, length):
    return XdrError(f"short XDR input: need {n} bytes at offset {pos}, record has {length}")


class Unpacker:
    """Decode XDR from a record spread over fixed-size segments.

    Unpacker(segments, length, seg_size=4096, pos=0).  Callables given to
    unpack_optional/unpack_array take no argument (bind them, e.g.
    ``u.unpack_uint``), as in the old stdlib xdrlib.
    """

    __slots__ = (
        "_segs", "_len", "_ss",
        "_cur",     # current segment (buffer object), or None before the first read
        "_base",    # record offset of byte 0 of _cur
        "_off",     # cursor: offset inside _cur (record pos = _base + _off)
        "_lim",     # valid bytes in _cur: min(seg_size, length - _base)
    )

    def __init__(self, segments, length, seg_size=4096, pos=0):
        if seg_size <= 0:
            raise ValueError("seg_size must be positive")
        if length < 0 or length > len(segments) * seg_size:
            raise ValueError(
                f"length {length} does not fit in {len(segments)} segments of {seg_size}")
        if pos < 0 or pos > length:
            raise ValueError(f"pos {pos} outside record of length {length}")
        self._segs = segments
        self._len = length
        self._ss = seg_size
        if pos < length:
            # Select the segment now: every Unpacker reads something, and the
            # first read then takes the fast path.
            idx, off = divmod(pos, seg_size)
            base = pos - off
            lim = length - base
            self._cur = segments[idx]
            self._base = base
            self._off = off
            self._lim = lim if lim < seg_size else seg_size
        else:
            # Empty cursor: _lim = -1 forces any read down the slow path.
            self._cur = None
            self._base = pos
            self._off = 0
            self._lim = -1

    @classmethod
    def from_bytes(cls, data, pos=0):
        """A single-segment Unpacker over a bytes-like object."""
        n = len(data)
        return cls((data,), n, n or 1, pos)

    # -- cursor ------------------------------------------------------------

    @property
    def pos(self):
        """Record offset of the next byte to decode."""
        return self._base + self._off

    @pos.setter
    def pos(self, p):
        self.seek(p)

    def seek(self, p):
        """Move the cursor to record offset p (0 <= p <= length)."""
        if p < 0 or p > self._len:
            raise ValueError(f"seek to {p} outside record of length {self._len}")
        base = self._base
        if self._cur is not None and base <= p <= base + self._lim:
            self._off = p - base
        else:
            self._cur = None
            self._base = p
            self._off = 0
            self._lim = -1

    @property
    def length(self):
        return self._len

    @property
    def remaining(self):
        return self._len - (self._base + self._off)

    def done(self):
        """Raise XdrError if unread bytes remain (trailing garbage)."""
        left = self._len - (self._base + self._off)
        if left:
            raise XdrError(f"{left} unread bytes after the XDR data")

    # -- slow path -----------------------------------------------------------

    def _locate(self, n):
        """Slow path for an n-byte read at the cursor that the fast path refused.

        Returns (buffer, offset) holding the n bytes and advances the cursor
        past them.  Moves the cursor to the segment holding the first byte;
        if the read straddles segments, assembles a bytes copy (rare).
        """
        pos = self._base + self._off
        end = pos + n
        length = self._len
        if end > length:
            raise _short(pos, n, length)
        ss = self._ss
        idx, off = divmod(pos, ss)
        base = pos - off
        seg = self._segs[idx]
        lim = length - base
        if lim > ss:
            lim = ss
        self._cur = seg
        self._base = base
        if off + n <= lim:
            self._off = off + n
            self._lim = lim
            return seg, off
        # Straddles a boundary: copy, then leave the cursor in the segment
        # holding the end of the read.
        data = self._gather(pos, n)
        idx, off = divmod(end, ss)
        if off == 0 and end == length:
            # Ended exactly at the end of the record on a segment boundary:
            # stay at the end of the previous segment (there may be no next one).
            idx -= 1
            off = ss
        base = idx * ss
        lim = length - base
        if lim > ss:
            lim = ss
        self._cur = self._segs[idx]
        self._base = base
        self._off = off
        self._lim = lim
        return data, 0

    def _gather(self, pos, n):
        """Copy record bytes [pos, pos+n) out of the segments (bounds checked by caller)."""
        ss = self._ss
        segs = self._segs
        parts = []
        while n > 0:
            idx, off = divmod(pos, ss)
            k = ss - off
            if k > n:
                k = n
            parts.append(memoryview(segs[idx])[off:off + k].tobytes())
            pos += k
            n -= k
        return b"".join(parts)

    # -- integers: fast path inline, slow path in _locate ----------------------

    def unpack_uint(self):
        off = self._off
        end = off + 4
        if end <= self._lim:
            self._off = end
            return _u32_from(self._cur, off)[0]
        return _u32_from(*self._locate(4))[0]

    def unpack_int(self):
        off = self._off
        end = off + 4
        if end <= self._lim:
            self._off = end
            return _i32_from(self._cur, off)[0]
        return _i32_from(*self._locate(4))[0]

    def unpack_uhyper(self):
        off = self._off
        end = off + 8
        if end <= self._lim:
            self._off = end
            return _u64_from(self._cur, off)[0]
        return _u64_from(*self._locate(8))[0]

    def unpack_hyper(self):
        off = self._off
        end = off + 8
        if end <= self._lim:
            self._off = end
            return _i64_from(self._cur, off)[0]
        return _i64_from(*self._locate(8))[0]

    def unpack_struct(self, st):
        """Decode st.size bytes with a precompiled struct.Struct -> tuple (one unpack_from).

        For runs of fixed-size fields (a call header, fattr3, ...).  The caller
        guarantees st.size is a multiple of 4 and the format is big-endian.
        """
        n = st.size
        off = self._off
        end = off + n
        if end <= self._lim:
            self._off = end
            return st.unpack_from(self._cur, off)
        return st.unpack_from(*self._locate(n))

    def unpack_bool(self):
        v = self.unpack_uint()
        if v > 1:
            raise XdrError(f"bad XDR bool {v}")
        return v == 1

    def unpack_enum(self, valid=None):
        """A signed 32-bit enum; if `valid` (a container) is given, the value must be in it."""
        v = self.unpack_int()
        if valid is not None and v not in valid:
            raise XdrError(f"bad XDR enum value {v}")
        return v

    # -- opaque data -----------------------------------------------------------

    def skip(self, n):
        """Skip n bytes (no padding added); XdrError if the record is shorter."""
        pos = self._base + self._off
        if pos + n > self._len:
            raise _short(pos, n, self._len)
        off = self._off + n
        if off <= self._lim:
            self._off = off
        else:
            self._cur = None
            self._base = pos + n
            self._off = 0
            self._lim = -1

    def unpack_fopaque(self, n):
        """Fixed-length opaque[n] -> bytes; skips the padding (not checked for zero)."""
        padded = (n + 3) & ~3
        off = self._off
        if off + padded <= self._lim:
            self._off = off + padded
            return memoryview(self._cur)[off:off + n].tobytes()
        pos = self._base + off
        if pos + padded > self._len:
            raise _short(pos, padded, self._len)
        data = self._gather(pos, n)
        self.skip(padded)
        return data

    def unpack_opaque(self, maxlen=MAX_UINT):
        """Variable-length opaque<maxlen> -> bytes."""
        n = self.unpack_uint()
        if n > maxlen:
            raise XdrError(f"XDR opaque length {n} exceeds maximum {maxlen}")
        return self.unpack_fopaque(n)

    unpack_string = unpack_opaque

    def unpack_opaque_ref(self, maxlen=MAX_UINT):
        """Variable-length opaque<maxlen> -> (record_offset, length), without copying.

        The data and its padding are skipped; use views()/copy() to reach them.
        """
        n = self.unpack_uint()
        if n > maxlen:
            raise XdrError(f"XDR opaque length {n} exceeds maximum {maxlen}")
        off = self._off
        pos = self._base + off
        padded = (n + 3) & ~3
        if off + padded <= self._lim:
            self._off = off + padded
        else:
            self.skip(padded)
        return pos, n

    def unpack_fopaque_ref(self, n):
        """Fixed-length opaque[n] -> record_offset, without copying."""
        pos = self._base + self._off
        self.skip((n + 3) & ~3)
        return pos

    # -- composites ------------------------------------------------------------

    def unpack_optional(self, fn):
        """XDR optional-data (*T): a bool discriminant, then fn() if TRUE; else None."""
        if self.unpack_bool():
            return fn()
        return None

    def unpack_array(self, fn, maxcount=MAX_UINT):
        """Variable-length array T<maxcount> -> list of fn() results."""
        n = self.unpack_uint()
        if n > maxcount:
            raise XdrError(f"XDR array count {n} exceeds maximum {maxcount}")
        # Every XDR item takes at least 4 bytes: refuse absurd counts before looping.
        if n * 4 > self._len - (self._base + self._off):
            raise XdrError(f"XDR array count {n} larger than the remaining data")
        return [fn() for _ in range(n)]

    def unpack_farray(self, n, fn):
        """Fixed-length array T[n] -> list of fn() results."""
        return [fn() for _ in range(n)]

    # -- record ranges (zero copy) -----------------------------------------------

    def views(self, offset, length):
        """memoryviews of the segments covering record bytes [offset, offset+length).

        For os.pwritev of WRITE data: no bytes are copied.  The views pin the
        segments' buffers; release them (or drop them) before the pages are
        freed.  ValueError if the range is not inside the record (our bug: the
        range must come from unpack_opaque_ref).
        """
        if offset < 0 or length < 0 or offset + length > self._len:
            raise ValueError(f"range {offset}+{length} outside record of length {self._len}")
        ss = self._ss
        segs = self._segs
        out = []
        while length > 0:
            idx, off = divmod(offset, ss)
            k = ss - off
            if k > length:
                k = length
            out.append(memoryview(segs[idx])[off:off + k])
            offset += k
            length -= k
        return out

    def copy(self, offset, length):
        """bytes of record range [offset, offset+length) (copies; for tests and small data)."""
        if offset < 0 or length < 0 or offset + length > self._len:
            raise ValueError(f"range {offset}+{length} outside record of length {self._len}")
        return self._gather(offset, length)


class Packer:
    """Encode XDR into an internal bytearray.

    Callables given to pack_optional/pack_array take the item (e.g.
    ``p.pack_uint``).  Unencodable values raise ValueError: our bug.
    """

    __slots__ = ("_buf",)

    def __init__(self):
        self._buf = bytearray()

    # -- buffer management -----------------------------------------------------

    def get_buffer(self):
        """A bytes copy of everything packed so far."""
        return bytes(self._buf)

    @property
    def buffer(self):
        """The internal bytearray itself (no copy).  Valid until the next pack/reset;
        do not keep memoryviews of it across a pack (the bytearray cannot resize while
        a view exists)."""
        return self._buf

    def __len__(self):
        return len(self._buf)

    def reset(self):
        del self._buf[:]

    def truncate(self, size):
        """Drop everything after the first `size` bytes (undo a partial encode)."""
        if size < 0 or size > len(self._buf):
            raise ValueError(f"truncate to {size} outside 0..{len(self._buf)}")
        del self._buf[size:]

    def append(self, data):
        """Append raw, already encoded XDR bytes (the caller keeps 4-byte alignment)."""
        self._buf += data

    def reserve_uint(self):
        """Append a placeholder uint; returns its position for patch_uint()."""
        pos = len(self._buf)
        self._buf += _ZERO4
        return pos

    def patch_uint(self, pos, value):
        if pos < 0 or pos + 4 > len(self._buf):
            raise ValueError(f"patch position {pos} outside the packed data")
        try:
            data = _u32_pack(value)     # not pack_into: it zeroes the target before failing
        except _structerror as e:
            raise ValueError(f"cannot pack {value!r} as XDR unsigned int: {e}") from None
        self._buf[pos:pos + 4] = data

    # -- integers ---------------------------------------------------------------

    def pack_uint(self, x):
        try:
            self._buf += _u32_pack(x)
        except _structerror as e:
            raise ValueError(f"cannot pack {x!r} as XDR unsigned int: {e}") from None

    def pack_int(self, x):
        try:
            self._buf += _i32_pack(x)
        except _structerror as e:
            raise ValueError(f"cannot pack {x!r} as XDR int: {e}") from None

    def pack_uhyper(self, x):
        try:
            self._buf += _u64_pack(x)
        except _structerror as e:
            raise ValueError(f"cannot pack {x!r} as XDR unsigned hyper: {e}") from None

    def pack_hyper(self, x):
        try:
            self._buf += _i64_pack(x)
        except _structerror as e:
            raise ValueError(f"cannot pack {x!r} as XDR hyper: {e}") from None

    def pack_bool(self, x):
        self._buf += _u32_pack(1 if x else 0)

    pack_enum = pack_int

    # -- opaque data ------------------------------------------------------------

    def pack_fopaque(self, n, data):
        """Fixed-length opaque[n]: exactly n bytes, then zero padding."""
        if len(data) != n:
            raise ValueError(f"fixed opaque needs {n} bytes, got {len(data)}")
        buf = self._buf
        buf += data
        buf += _PADS[n & 3]

    def pack_opaque(self, data, maxlen=MAX_UINT):
        """Variable-length opaque<maxlen>: length, bytes, zero padding."""
        if isinstance(data, str):
            raise ValueError("XDR opaque needs bytes, not str")
        n = len(data)
        if n > maxlen:
            raise ValueError(f"opaque of {n} bytes exceeds maximum {maxlen}")
        buf = self._buf
        buf += _u32_pack(n)
        buf += data
        buf += _PADS[n & 3]

    def pack_string(self, data, maxlen=MAX_UINT):
        """XDR string<maxlen>; str is encoded as UTF-8 (surrogateescape)."""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        self.pack_opaque(data, maxlen)

    # -- composites --------------------------------------------------------------

    def pack_optional(self, value, fn):
        """XDR optional-data (*T): FALSE if value is None, else TRUE then fn(value)."""
        if value is None:
            self._buf += _ZERO4
        else:
            self._buf += b"\0\0\0\1"
            fn(value)

    def pack_array(self, items, fn, maxcount=MAX_UINT):
        """Variable-length array T<maxcount>: count, then fn(item) for each."""
        n = len(items)
        if n > maxcount:
            raise ValueError(f"array of {n} items exceeds maximum {maxcount}")
        self._buf += _u32_pack(n)
        for item in items:
            fn(item)

    def pack_farray(self, n, items, fn):
        """Fixed-length array T[n]."""
        if len(items) != n:
            raise ValueError(f"fixed array needs {n} items, got {len(items)}")
        for item in items:
            fn(item)
