"""rpcsrv.xdr: golden encodings, limits, segmented buffers, truncation, garbage."""

import pickle
import struct

import pytest
from hypothesis import given, settings, strategies as st

from rpcsrv.proto.xdr import MAX_UINT, Packer, Unpacker, XdrError


def segmented(data, seg_size, page_like=False):
    """Split data into seg_size segments, as the server's pages hold a record.

    page_like wraps every segment in a PickleBuffer: buffer protocol only, no
    indexing or slicing, like the allocator's page views.
    """
    segs = [bytearray(data[i:i + seg_size]) for i in range(0, len(data), seg_size)]
    # The last page is a whole page in the server; pad it so that reading past
    # `length` would find bytes if the bounds check were wrong.
    if segs and len(segs[-1]) < seg_size:
        segs[-1] += b"\xee" * (seg_size - len(segs[-1]))
    if page_like:
        segs = [pickle.PickleBuffer(s) for s in segs]
    return Unpacker(segs, len(data), seg_size)


# -- golden encodings (RFC 4506 section 4) ---------------------------------------

GOLDEN = [
    ("pack_uint", (0,), b"\0\0\0\0"),
    ("pack_uint", (0xFFFFFFFF,), b"\xff\xff\xff\xff"),
    ("pack_uint", (0x01020304,), b"\x01\x02\x03\x04"),
    ("pack_int", (-1,), b"\xff\xff\xff\xff"),
    ("pack_int", (-2**31,), b"\x80\0\0\0"),
    ("pack_int", (2**31 - 1,), b"\x7f\xff\xff\xff"),
    ("pack_uhyper", (0x0102030405060708,), b"\x01\x02\x03\x04\x05\x06\x07\x08"),
    ("pack_hyper", (-2,), b"\xff" * 7 + b"\xfe"),
    ("pack_bool", (True,), b"\0\0\0\1"),
    ("pack_bool", (False,), b"\0\0\0\0"),
    ("pack_enum", (3,), b"\0\0\0\3"),
    ("pack_opaque", (b"",), b"\0\0\0\0"),
    ("pack_opaque", (b"a",), b"\0\0\0\1a\0\0\0"),
    ("pack_opaque", (b"abcd",), b"\0\0\0\4abcd"),
    ("pack_opaque", (b"abcde",), b"\0\0\0\5abcde\0\0\0"),
    ("pack_string", ("sillyprog",), b"\0\0\0\x09sillyprog\0\0\0"),
    ("pack_fopaque", (3, b"xyz"), b"xyz\0"),
    ("pack_fopaque", (0, b""), b""),
]


@pytest.mark.parametrize("method,args,expected", GOLDEN)
def test_golden_pack(method, args, expected):
    p = Packer()
    getattr(p, method)(*args)
    assert p.get_buffer() == expected
    assert len(p) == len(expected)


def test_golden_composites():
    p = Packer()
    p.pack_optional(None, p.pack_uint)
    p.pack_optional(7, p.pack_uint)
    p.pack_array([1, 2], p.pack_uint)
    assert p.get_buffer() == b"\0\0\0\0" b"\0\0\0\1\0\0\0\7" b"\0\0\0\2\0\0\0\1\0\0\0\2"
    u = Unpacker.from_bytes(p.get_buffer())
    assert u.unpack_optional(u.unpack_uint) is None
    assert u.unpack_optional(u.unpack_uint) == 7
    assert u.unpack_array(u.unpack_uint, 2) == [1, 2]
    u.done()


@pytest.mark.parametrize("method,args,expected", GOLDEN)
def test_golden_unpack(method, args, expected):
    u = Unpacker.from_bytes(expected)
    name = method.replace("pack_", "unpack_")
    if method == "pack_fopaque":
        got = u.unpack_fopaque(args[0])
        assert got == args[1]
    elif method in ("pack_opaque", "pack_string"):
        got = getattr(u, name)(64)
        want = args[0].encode() if isinstance(args[0], str) else args[0]
        assert got == want
    else:
        assert getattr(u, name)() == args[0]
    u.done()


# -- our bugs: ValueError, not XdrError -------------------------------------------

@pytest.mark.parametrize("method,value", [
    ("pack_uint", -1), ("pack_uint", 2**32), ("pack_int", 2**31), ("pack_int", -2**31 - 1),
    ("pack_uhyper", -1), ("pack_uhyper", 2**64), ("pack_hyper", 2**63), ("pack_enum", 2**31),
    ("pack_uint", 1.5),
])
def test_pack_out_of_range_is_valueerror(method, value):
    p = Packer()
    with pytest.raises(ValueError) as ei:
        getattr(p, method)(value)
    assert not isinstance(ei.value, XdrError)
    assert len(p) == 0


def test_pack_limits_are_valueerror():
    p = Packer()
    p.pack_opaque(b"x" * 8, 8)                      # the maximum passes
    with pytest.raises(ValueError):
        p.pack_opaque(b"x" * 9, 8)                  # one more fails
    with pytest.raises(ValueError):
        p.pack_fopaque(4, b"abc")
    p.pack_array([1, 2], p.pack_uint, 2)
    with pytest.raises(ValueError):
        p.pack_array([1, 2, 3], p.pack_uint, 2)
    with pytest.raises(ValueError):
        p.pack_opaque("text")                       # str is not opaque
    with pytest.raises(ValueError):
        p.patch_uint(len(p) - 3, 1)


def test_reserve_patch_truncate_reset():
    p = Packer()
    p.pack_uint(1)
    pos = p.reserve_uint()
    p.pack_opaque(b"abc")
    p.patch_uint(pos, 0xDEADBEEF)
    assert p.get_buffer() == b"\0\0\0\1\xde\xad\xbe\xef\0\0\0\3abc\0"
    with pytest.raises(ValueError):
        p.patch_uint(pos, 2**32)
    assert p.get_buffer()[4:8] == b"\xde\xad\xbe\xef"      # a failed patch changes nothing
    p.truncate(8)
    assert p.get_buffer() == b"\0\0\0\1\xde\xad\xbe\xef"
    assert p.buffer == bytearray(p.get_buffer())
    p.reset()
    assert len(p) == 0 and p.get_buffer() == b""


# -- the peer's faults: XdrError --------------------------------------------------

def test_short_reads():
    for meth, n in [("unpack_uint", 4), ("unpack_int", 4), ("unpack_uhyper", 8),
                    ("unpack_hyper", 8), ("unpack_bool", 4), ("unpack_enum", 4)]:
        for k in range(n):
            with pytest.raises(XdrError):
                getattr(Unpacker.from_bytes(b"\0" * k), meth)()


def test_bool_only_zero_or_one():
    assert Unpacker.from_bytes(b"\0\0\0\1").unpack_bool() is True
    with pytest.raises(XdrError):
        Unpacker.from_bytes(b"\0\0\0\2").unpack_bool()
    with pytest.raises(XdrError):
        Unpacker.from_bytes(b"\xff\xff\xff\xff").unpack_bool()


def test_enum_valid_set():
    assert Unpacker.from_bytes(b"\0\0\0\2").unpack_enum({1, 2}) == 2
    assert Unpacker.from_bytes(b"\xff\xff\xff\xff").unpack_enum() == -1
    with pytest.raises(XdrError):
        Unpacker.from_bytes(b"\0\0\0\3").unpack_enum({1, 2})


def test_opaque_maxlen_boundary():
    data = b"\0\0\0\x08" + b"x" * 8
    assert Unpacker.from_bytes(data).unpack_opaque(8) == b"x" * 8   # max passes
    with pytest.raises(XdrError):
        Unpacker.from_bytes(data).unpack_opaque(7)                  # max-1 limit fails
    with pytest.raises(XdrError):
        Unpacker.from_bytes(data).unpack_opaque_ref(7)
    with pytest.raises(XdrError):
        Unpacker.from_bytes(data).unpack_string(7)


def test_array_maxcount_boundary():
    data = b"\0\0\0\2\0\0\0\1\0\0\0\2"
    u = Unpacker.from_bytes(data)
    assert u.unpack_array(u.unpack_uint, 2) == [1, 2]
    u = Unpacker.from_bytes(data)
    with pytest.raises(XdrError):
        u.unpack_array(u.unpack_uint, 1)
    # a huge count with little data is refused before looping
    u = Unpacker.from_bytes(b"\xff\xff\xff\xff" + b"\0" * 8)
    with pytest.raises(XdrError):
        u.unpack_array(u.unpack_uint)


def test_padding_must_be_present_but_may_be_nonzero():
    # RFC 4506 pads with zeros; we are liberal and accept any pad value ...
    u = Unpacker.from_bytes(b"\0\0\0\1a\x01\x02\x03")
    assert u.unpack_opaque(8) == b"a"
    u.done()
    # ... but the pad bytes must be in the record.
    for data in (b"\0\0\0\1a", b"\0\0\0\1a\0", b"\0\0\0\1a\0\0"):
        with pytest.raises(XdrError):
            Unpacker.from_bytes(data).unpack_opaque(8)
        with pytest.raises(XdrError):
            Unpacker.from_bytes(data).unpack_opaque_ref(8)
    with pytest.raises(XdrError):
        Unpacker.from_bytes(b"ab").unpack_fopaque(2)


def test_done_rejects_trailing_bytes():
    u = Unpacker.from_bytes(b"\0\0\0\1\0\0\0\2")
    u.unpack_uint()
    assert u.remaining == 4
    with pytest.raises(XdrError):
        u.done()
    u.unpack_uint()
    assert u.remaining == 0
    u.done()


def test_constructor_checks_are_valueerror():
    with pytest.raises(ValueError):
        Unpacker([b"abcd"], 5, 4)            # length larger than the segments
    with pytest.raises(ValueError):
        Unpacker([b"abcd"], 4, 0)
    with pytest.raises(ValueError):
        Unpacker([b"abcd"], 4, 4, pos=5)
    u = Unpacker([], 0)
    with pytest.raises(XdrError):
        u.unpack_uint()
    u.done()


# -- segmented buffers ---------------------------------------------------------------

def _sample():
    p = Packer()
    p.pack_uint(0xA1B2C3D4)
    p.pack_hyper(-5)
    p.pack_opaque(b"hello")             # 4 + 5 + 3 pad
    p.pack_uhyper(2**64 - 1)
    p.pack_bool(True)
    p.pack_fopaque(6, b"abcdef")
    p.pack_opaque(b"W" * 37)            # will be taken by reference
    p.pack_int(-7)
    p.pack_string(b"")
    p.pack_array([9, 8, 7], p.pack_uint)
    return p.get_buffer()


def _decode_sample(u):
    out = [u.unpack_uint(), u.unpack_hyper(), u.unpack_opaque(16), u.unpack_uhyper(),
           u.unpack_bool(), u.unpack_fopaque(6)]
    off, n = u.unpack_opaque_ref(64)
    out.append((off, n))
    out += [u.unpack_int(), u.unpack_string(0), u.unpack_array(u.unpack_uint, 3)]
    u.done()
    return out


SAMPLE = _sample()
SAMPLE_DECODED = [0xA1B2C3D4, -5, b"hello", 2**64 - 1, True, b"abcdef", (48, 37), -7, b"",
                  [9, 8, 7]]


def test_sample_single_segment():
    assert _decode_sample(Unpacker.from_bytes(SAMPLE)) == SAMPLE_DECODED


@pytest.mark.parametrize("page_like", [False, True])
@pytest.mark.parametrize("seg_size", list(range(1, 10)) + [16, 64, 4096])
def test_sample_every_segment_size(seg_size, page_like):
    u = segmented(SAMPLE, seg_size, page_like)
    assert _decode_sample(u) == SAMPLE_DECODED
    # the referenced range reads back the same through views() and copy()
    off, n = SAMPLE_DECODED[6]
    views = u.views(off, n)
    assert b"".join(bytes(v) for v in views) == b"W" * 37
    assert u.copy(off, n) == b"W" * 37
    assert all(len(v) <= seg_size for v in views)


@pytest.mark.parametrize("seg_size", range(1, 10))
def test_truncation_every_offset_segmented(seg_size):
    # every strict prefix of the sample fails with XdrError and nothing else
    for cut in range(len(SAMPLE)):
        u = segmented(SAMPLE[:cut], seg_size)
        with pytest.raises(XdrError):
            _decode_sample(u)


def test_views_are_zero_copy():
    pages = [bytearray(b"\0\0\0\x0a" + b"0123"), bytearray(b"456789\0\0")]
    u = Unpacker(pages, 16, 8)
    off, n = u.unpack_opaque_ref(100)
    assert (off, n) == (4, 10)
    v1, v2 = u.views(off, n)
    assert v1.obj is pages[0] and v2.obj is pages[1]
    pages[1][0] = ord("X")                 # writes show through: no copy was made
    assert bytes(v1) + bytes(v2) == b"0123X56789"
    u.done()
    with pytest.raises(ValueError):
        u.views(10, 7)


def test_seek_and_skip():
    u = segmented(SAMPLE, 5)
    u.unpack_uint()
    u.skip(8)
    assert u.pos == 12
    assert u.unpack_opaque() == b"hello"
    u.seek(4)
    assert u.unpack_hyper() == -5
    u.pos = 0
    assert u.unpack_uint() == 0xA1B2C3D4
    with pytest.raises(XdrError):
        u.skip(len(SAMPLE))
    with pytest.raises(ValueError):
        u.seek(len(SAMPLE) + 1)
    u.seek(len(SAMPLE))
    u.done()


def test_start_pos():
    u = Unpacker([SAMPLE], len(SAMPLE), len(SAMPLE), pos=4)
    assert u.unpack_hyper() == -5
    u = Unpacker.from_bytes(SAMPLE, pos=4)
    assert u.pos == 4 and u.unpack_hyper() == -5


def test_unpack_struct_across_segments():
    s = struct.Struct(">3I")
    data = struct.pack(">3I", 1, 2, 3) * 2
    for seg in range(1, 10):
        u = segmented(data, seg)
        assert u.unpack_struct(s) == (1, 2, 3)
        assert u.unpack_struct(s) == (1, 2, 3)
        with pytest.raises(XdrError):
            u.unpack_struct(s)


# -- hypothesis: round trips and garbage ------------------------------------------

ITEM = st.one_of(
    st.tuples(st.just("uint"), st.integers(0, MAX_UINT)),
    st.tuples(st.just("int"), st.integers(-2**31, 2**31 - 1)),
    st.tuples(st.just("uhyper"), st.integers(0, 2**64 - 1)),
    st.tuples(st.just("hyper"), st.integers(-2**63, 2**63 - 1)),
    st.tuples(st.just("bool"), st.booleans()),
    st.tuples(st.just("opaque"), st.binary(max_size=40)),
    st.tuples(st.just("ref"), st.binary(max_size=40)),
    st.tuples(st.just("fopaque"), st.binary(max_size=11)),
    st.tuples(st.just("optional"), st.one_of(st.none(), st.integers(0, MAX_UINT))),
    st.tuples(st.just("array"), st.lists(st.integers(-2**31, 2**31 - 1), max_size=5)),
)


def pack_items(items):
    p = Packer()
    for kind, v in items:
        if kind in ("opaque", "ref"):
            p.pack_opaque(v)
        elif kind == "fopaque":
            p.pack_uint(len(v))     # so the decoder knows n
            p.pack_fopaque(len(v), v)
        elif kind == "optional":
            p.pack_optional(v, p.pack_uint)
        elif kind == "array":
            p.pack_array(v, p.pack_int)
        else:
            getattr(p, "pack_" + kind)(v)
    return p.get_buffer()


def unpack_items(u, kinds):
    out = []
    for kind in kinds:
        if kind == "opaque":
            out.append(u.unpack_opaque(40))
        elif kind == "ref":
            off, n = u.unpack_opaque_ref(40)
            out.append(u.copy(off, n))
        elif kind == "fopaque":
            n = u.unpack_uint()
            if n > 11:
                raise XdrError("n")
            out.append(u.unpack_fopaque(n))
        elif kind == "optional":
            out.append(u.unpack_optional(u.unpack_uint))
        elif kind == "array":
            out.append(u.unpack_array(u.unpack_int, 5))
        else:
            out.append(getattr(u, "unpack_" + kind)())
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(ITEM, max_size=12), st.integers(1, 9), st.booleans())
def test_roundtrip_segmented(items, seg_size, page_like):
    data = pack_items(items)
    assert len(data) % 4 == 0
    kinds = [k for k, _ in items]
    u = segmented(data, seg_size, page_like)
    assert unpack_items(u, kinds) == [v for _, v in items]
    u.done()
    assert u.remaining == 0


@settings(max_examples=150, deadline=None)
@given(st.lists(ITEM, min_size=1, max_size=8), st.integers(1, 9), st.data())
def test_truncated_roundtrip_raises_xdrerror(items, seg_size, data):
    blob = pack_items(items)
    cut = data.draw(st.integers(0, len(blob) - 1))
    u = segmented(blob[:cut], seg_size)
    with pytest.raises(XdrError):
        unpack_items(u, [k for k, _ in items])
        u.done()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.lists(st.sampled_from(
    ["uint", "int", "uhyper", "hyper", "bool", "opaque", "ref", "fopaque", "optional",
     "array"]), max_size=10), st.integers(1, 9))
def test_garbage_only_xdrerror(blob, kinds, seg_size):
    u = segmented(blob, seg_size)
    try:
        unpack_items(u, kinds)
        u.done()
    except XdrError:
        pass
