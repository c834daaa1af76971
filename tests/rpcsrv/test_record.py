"""rpcsrv.record: RFC 5531 section 11 record marking, fed whole, byte by byte and split."""

import struct

import pytest
from hypothesis import given, settings, strategies as st

from rpcsrv.proto.record import (
    BODY, DONE, HEADER, LAST_FRAGMENT, MAX_EMPTY_FRAGMENTS, MAX_FRAGMENT, RecordBuffer, RecordDecoder, RecordError,
    encode_fragment_header, encode_record, frame,
)
from rpcsrv.proto.xdr import Unpacker


def marker(n, last):
    return struct.pack(">I", n | (0x80000000 if last else 0))


# -- encoding ----------------------------------------------------------------------

def test_encode_golden():
    assert encode_record(28) == b"\x80\x00\x00\x1c"
    assert encode_record(MAX_FRAGMENT) == b"\xff\xff\xff\xff"
    assert encode_fragment_header(5, last=False) == b"\x00\x00\x00\x05"
    assert encode_fragment_header(0, last=True) == b"\x80\x00\x00\x00"
    assert LAST_FRAGMENT == 0x80000000
    for bad in (0, -1, MAX_FRAGMENT + 1):
        with pytest.raises(ValueError):
            encode_record(bad)
    with pytest.raises(ValueError):
        encode_fragment_header(MAX_FRAGMENT + 1)


def test_frame_golden():
    assert frame(b"abcd") == b"\x80\0\0\4abcd"
    assert frame(b"abcdefg", 3) == (b"\0\0\0\3abc" b"\0\0\0\3def" b"\x80\0\0\1g")
    assert frame(b"abcdef", 3) == b"\0\0\0\3abc\x80\0\0\3def"
    with pytest.raises(ValueError):
        frame(b"")
    with pytest.raises(ValueError):
        frame(b"ab", 0)


# -- RecordBuffer ------------------------------------------------------------------

def test_whole_records_and_several_per_feed():
    rb = RecordBuffer(1024)
    data = frame(b"one") + frame(b"second record", 4) + frame(b"3")
    assert rb.feed(data) == [b"one", b"second record", b"3"]
    assert not rb.in_record


def test_byte_by_byte():
    rb = RecordBuffer(1024)
    data = frame(b"hello world", 2) + frame(b"x" * 9)
    out = []
    for i in range(len(data)):
        out += rb.feed(data[i:i + 1])
        # a record only comes out after its last byte
        if i < len(frame(b"hello world", 2)) - 1:
            assert out == []
    assert out == [b"hello world", b"x" * 9]


def test_partial_record_state():
    rb = RecordBuffer(64)
    assert not rb.in_record
    assert rb.feed(b"\x80\0") == []
    assert rb.in_record              # EOF now would truncate a record
    assert rb.feed(b"\0\2a") == []
    assert rb.feed(b"b") == [b"ab"]
    assert not rb.in_record


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=50), min_size=1, max_size=5),
       st.integers(1, 17), st.data())
def test_random_splits(records, max_fragment, data):
    stream = b"".join(frame(r, max_fragment) for r in records)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    rb = RecordBuffer(64)
    out = []
    prev = 0
    for c in cuts + [len(stream)]:
        out += rb.feed(stream[prev:c])
        prev = c
    assert out == records
    assert not rb.in_record


# -- errors: zero fragments and the size bound ----------------------------------------

def test_empty_fragments_are_legal():
    """RFC 5531 puts no lower bound on a fragment: empty ones anywhere in a record, an empty last
    fragment after data ending it, with byte-by-byte splits too."""
    rec = b"abcdefgh"
    stream = (marker(0, False) + marker(3, False) + rec[:3] + marker(0, False) + marker(5, False) + rec[3:]
              + marker(0, True)) + frame(b"next")
    assert RecordBuffer(64).feed(stream) == [rec, b"next"]
    rb = RecordBuffer(64)
    out = []
    for i in range(len(stream)):
        out += rb.feed(stream[i:i + 1])
    assert out == [rec, b"next"] and not rb.in_record
    dec = RecordDecoder(64)
    dec.feed_header(marker(2, False))
    dec.body_received(2)
    assert dec.feed_header(marker(0, True)) is True and dec.want() == (DONE, 0) and dec.record_len == 2


def test_empty_record_and_endless_empty_fragments_rejected_and_sticky():
    for stream, reason in ((marker(0, True), "empty_record"),
                           (marker(0, False) * 3 + marker(0, True), "empty_record"),
                           (marker(0, False) * (MAX_EMPTY_FRAGMENTS + 1), "zero_fragment"),
                           (marker(1, False) + b"x" + marker(0, False) * MAX_EMPTY_FRAGMENTS + marker(0, True),
                            "zero_fragment")):
        rb = RecordBuffer(64)
        with pytest.raises(RecordError) as ei:
            rb.feed(stream)
        assert ei.value.reason == reason
        assert isinstance(ei.value, ValueError)
        with pytest.raises(RecordError):         # sticky: the stream is out of sync
            rb.feed(frame(b"ok"))
    # exactly the cap is still a record
    assert RecordBuffer(64).feed(marker(0, False) * (MAX_EMPTY_FRAGMENTS - 1) + marker(2, False) + b"ok"
                                 + marker(0, True)) == [b"ok"]


@pytest.mark.parametrize("max_record", [1, 4, 100])
def test_record_size_boundary_single_fragment(max_record):
    rb = RecordBuffer(max_record)
    assert rb.feed(frame(b"x" * max_record)) == [b"x" * max_record]     # max passes
    rb = RecordBuffer(max_record)
    with pytest.raises(RecordError) as ei:
        rb.feed(marker(max_record + 1, True))                           # max+1 fails
    assert ei.value.reason == "record_too_large"


def test_record_size_boundary_multi_fragment():
    payload = b"y" * 10
    assert RecordBuffer(10).feed(frame(payload, 3)) == [payload]
    rb = RecordBuffer(9)
    # 3+3+3 fit, the marker of the 4th fragment (1 byte) pushes the total to 10
    with pytest.raises(RecordError) as ei:
        rb.feed(frame(payload, 3))
    assert ei.value.reason == "record_too_large"
    # the bound is per record: the counter resets between records
    rb = RecordBuffer(10)
    assert rb.feed(frame(payload, 3) * 3) == [payload] * 3


def test_too_large_detected_at_marker_time():
    dec = RecordDecoder(1000)
    with pytest.raises(RecordError) as ei:
        dec.feed_header(marker(0x7FFFFFFF, True))
    assert ei.value.reason == "record_too_large"
    assert dec.record_len == 0                      # no body was ever expected
    with pytest.raises(RecordError):
        dec.want()


# -- RecordDecoder driven like the server drives it -------------------------------------

def test_decoder_protocol():
    dec = RecordDecoder(100)
    assert dec.want() == (HEADER, 4)
    dec.feed_header(b"\0")
    assert dec.want() == (HEADER, 3)
    dec.feed_header(b"\0\0")
    dec.feed_header(b"\3")
    assert dec.fragments == 1 and not dec.last
    assert dec.want() == (BODY, 3)
    assert dec.body_received(2) is False
    assert dec.record_len == 2
    assert dec.want() == (BODY, 1)
    assert dec.body_received(1) is False
    assert dec.want() == (HEADER, 4)
    dec.feed_header(marker(2, True))
    assert dec.last and dec.fragments == 2
    assert dec.want() == (BODY, 2)
    assert dec.body_received(2) is True
    assert dec.record_len == 5
    assert dec.want() == (DONE, 0)
    dec.next_record()
    assert dec.want() == (HEADER, 4)
    assert dec.record_len == 0 and dec.fragments == 0


def test_decoder_misuse_is_valueerror_not_recorderror():
    dec = RecordDecoder(100)
    for call in (lambda: dec.feed_header(b""), lambda: dec.feed_header(b"12345"),
                 lambda: dec.body_received(1)):
        with pytest.raises(ValueError) as ei:
            call()
        assert not isinstance(ei.value, RecordError)
    dec.feed_header(marker(4, True))
    with pytest.raises(ValueError):
        dec.feed_header(b"\0")
    with pytest.raises(ValueError):
        dec.body_received(5)
    with pytest.raises(ValueError):
        dec.body_received(0)
    assert dec.body_received(4) is True
    with pytest.raises(ValueError):
        dec.body_received(1)
    with pytest.raises(ValueError):
        RecordDecoder(0)


def receive_into_pages(stream, page_size, max_record, chunk):
    """Mimic the server: read at most `chunk` bytes at a time, body bytes go to
    record offset record_len inside fixed-size pages.  Returns Unpackers."""
    dec = RecordDecoder(max_record)
    pages = [bytearray(page_size) for _ in range(max_record // page_size + 1)]
    records = []
    i = 0
    while i < len(stream):
        kind, n = dec.want()
        n = min(n, chunk, len(stream) - i)
        if kind == HEADER:
            dec.feed_header(stream[i:i + n])
        else:
            off = dec.record_len
            idx, po = divmod(off, page_size)
            n = min(n, page_size - po)          # recv_into one page at a time
            pages[idx][po:po + n] = stream[i:i + n]
            if dec.body_received(n):
                records.append(Unpacker(pages, dec.record_len, page_size).copy(0, dec.record_len))
                dec.next_record()
        i += n
    return records


@pytest.mark.parametrize("page_size", [1, 3, 4, 8, 4096])
@pytest.mark.parametrize("chunk", [1, 2, 5, 1 << 20])
def test_server_style_receive_into_pages(page_size, chunk):
    recs = [b"A" * 13, b"B" * 4, bytes(range(256)) * 2]
    stream = b"".join(frame(r, 7) for r in recs)
    assert receive_into_pages(stream, page_size, 600, chunk) == recs
