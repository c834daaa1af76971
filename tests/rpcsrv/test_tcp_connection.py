"""rpcsrv.xprt.tcpconn.Connection without a server: records straight into page slots, partial records
parked in the connection and restored into another request, the parking budget, timeouts, EOF and
bad markers, and send_reply. A socketpair is the client; every wait is on real data."""
import socket
import time
import struct
import threading

import pytest

import alloc
from rpcsrv.proto.xdr import Packer
from rpcsrv.svc.rqst import SvcRqst
from rpcsrv.xprt.tcpconn import CLOSED, PARTIAL, RECORD, Connection, send_reply

PAGE = 4096


@pytest.fixture
def allocator():
    a = alloc.Allocator(arena_pages=4096, debug=True)
    yield a
    a.check()
    assert a.stats()["allocated"] == 0


@pytest.fixture
def pair(allocator):
    server, client = socket.socketpair()
    conn = Connection(server, ("192.0.2.9", 999), max_record=64 * PAGE, allocator=allocator)
    yield conn, client
    conn.close()
    client.close()


def rqst_for(allocator, nslots=32):
    r = SvcRqst(allocator, "array", nslots)
    r.svc_alloc_arg()
    return r


def marker(n, last=True):
    return struct.pack(">I", (0x80000000 if last else 0) | n)


def body_in_pages(r, n):
    from rpcsrv.xprt import _pageio
    return _pageio.copy_out(r.pages, 0, 0, n)


def test_a_whole_record_lands_in_the_pages_from_slot_0(allocator, pair):
    conn, client = pair
    r = rqst_for(allocator)
    body = bytes(range(256)) * 40                     # 10240 bytes: three pages
    client.sendall(marker(len(body)) + body)
    assert conn.receive(r) == RECORD
    assert conn.decoder.record_len == len(body)
    assert body_in_pages(r, len(body)) == body
    conn.record_done()
    r.release_all()


def test_fragments_are_contiguous_in_record_space(allocator, pair):
    conn, client = pair
    r = rqst_for(allocator)
    parts = [b"a" * 5000, b"b" * 3, b"c" * 4100]
    client.sendall(marker(len(parts[0]), False) + parts[0] + marker(3, False) + parts[1]
                   + marker(len(parts[2])) + parts[2])
    assert conn.receive(r) == RECORD
    assert body_in_pages(r, 9103) == b"".join(parts)
    r.release_all()


def test_partial_record_is_parked_and_restored_into_another_request(allocator, pair):
    conn, client = pair
    first, second = rqst_for(allocator), rqst_for(allocator)
    body = bytes(range(200)) * 50                     # 10000 bytes
    parked = []
    client.sendall(marker(len(body)) + body[:6000])
    status = conn.receive(first, park=lambda n: parked.append(n) or True, unpark=parked.append)
    assert status == PARTIAL
    assert conn.saved_slots == 2 == parked[0]          # 6000 bytes: two pages moved into the connection
    assert first.pages[0] is None and first.pages[1] is None   # holes in the first request
    assert (first.holes.lo, first.holes.hi, first.holes.nfree) == (0, 2, 2)   # rq_pages_nfree
    client.sendall(body[6000:])
    before = allocator.stats()["allocated"]
    assert conn.receive(second, park=lambda n: True, unpark=parked.append) == RECORD
    assert parked == [2, 2]                             # the budget got its pages back
    assert conn.saved_slots == 0
    assert body_in_pages(second, len(body)) == body
    assert allocator.stats()["allocated"] == before - 2   # second's own pages in slots 0, 1 were freed
    first.release_all()
    second.release_all()


def test_over_the_parking_budget_the_worker_keeps_the_connection(allocator, pair):
    conn, client = pair
    r = rqst_for(allocator)
    body = b"x" * 9000
    client.sendall(marker(len(body)) + body[:100])
    t = threading.Thread(target=client.sendall, args=(body[100:],))
    t.start()                                          # the rest comes while the worker waits for it
    assert conn.receive(r, park=lambda n: False, unpark=lambda n: None, record_timeout=30) == RECORD
    t.join()
    assert conn.saved_slots == 0 and body_in_pages(r, len(body)) == body
    r.release_all()


def test_empty_fragments_and_an_empty_last_fragment(allocator, pair):
    """RFC 5531 allows empty fragments: one before, one between and an empty last fragment after
    the data; the record is the data, and the next record follows on the same connection."""
    conn, client = pair
    r = rqst_for(allocator)
    body = bytes(range(256)) * 20
    client.sendall(marker(0, False) + marker(1000, False) + body[:1000] + marker(0, False)
                   + marker(len(body) - 1000, False) + body[1000:] + marker(0, True) + marker(3) + b"abc")
    assert conn.receive(r) == RECORD
    assert conn.decoder.record_len == len(body) and body_in_pages(r, len(body)) == body
    conn.record_done()
    assert conn.receive(r) == RECORD and body_in_pages(r, 3) == b"abc"
    r.release_all()


@pytest.mark.parametrize("record_timeout, reason", [(0.01, "record_timeout"), (30, "parking_full")])
def test_a_record_not_completed_in_time_closes(allocator, pair, record_timeout, reason):
    """Over the parking budget the worker waits for the rest at most PARK_WAIT (parking_full), or
    what is left of --record-timeout when that is shorter (record_timeout); never longer."""
    conn, client = pair
    r = rqst_for(allocator)
    client.sendall(marker(5000) + b"y" * 10)
    t0 = time.monotonic()
    try:
        assert conn.receive(r, park=lambda n: False, unpark=lambda n: None, record_timeout=record_timeout) == CLOSED
        assert conn.error_reason == reason
        assert time.monotonic() - t0 < 5          # far below the 30 s a record may take
    finally:
        r.release_all()


@pytest.mark.parametrize("data, reason", [
    (b"", "eof"),                                          # EOF between records: a disconnect
    (marker(100) + b"z" * 10, "truncated_record"),         # EOF inside a record
    (marker(0), "empty_record"),                          # a record of no bytes cannot be a call
    (marker(0, False) * 65, "zero_fragment"),              # more empty fragments than a record may carry
    (marker(64 * PAGE + 1), "record_too_large"),
])
def test_eof_and_bad_markers(allocator, pair, data, reason):
    conn, client = pair
    r = rqst_for(allocator)
    client.sendall(data)
    client.shutdown(socket.SHUT_WR)
    assert conn.receive(r, park=lambda n: True, unpark=lambda n: None) == CLOSED
    assert conn.error_reason == reason
    r.release_all()


def test_send_reply_header_payload_and_release(allocator, pair):
    conn, client = pair
    r = rqst_for(allocator)
    from rpcsrv.xprt import _pageio
    payload = b"P" * 5001                              # already in the pages after the header page
    _pageio.copy_in(r.pages, 3, 0, payload)
    p = Packer()
    p.reserve_uint()
    p.append(b"HEADER..")
    assert send_reply(conn, r, p, 2, len(payload), 5.0) is True
    want = 8 + len(payload) + 3                        # header body, payload, XDR pad
    got = b""
    while len(got) < 4 + want:
        got += client.recv(65536)
    assert got[:4] == marker(want) and got[4:12] == b"HEADER.." and got[12:12 + 5001] == payload
    assert got[-3:] == b"\0\0\0"
    assert [r.pages[i] for i in range(2, 5)] == [None] * 3     # the reply pages are the next holes
    assert (r.holes.lo, r.holes.hi) == (2, 5)
    r.release_all()
