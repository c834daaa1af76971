"""READDIRPLUS page by page through a large directory, on both request paths: every entry exactly
once and in the same cookie order on both; the compiled path reuses one listing for the
continuation pages (fp_listing.h, the Python path's snapshot rule) instead of re-reading and
re-sorting the directory per page, and re-reads it when the directory changed."""
from __future__ import annotations

import os
import struct
import time

import pytest

from nfsbulk_testlib import ROOT_CRED, RpcClient, in_process_server, mount_root

N = 3000


def u32(v):
    return struct.pack(">I", v)


def opq(b):
    return u32(len(b)) + b + b"\0" * (-len(b) % 4)


def _results(rec):
    vl = struct.unpack_from(">I", rec, 16)[0]
    return rec[24 + vl:]


def _page(rpc, xid, dfh, cookie, verf):
    """One READDIRPLUS3 (dircount 4096, maxcount 16384): ([(cookie, name)], verf, eof)."""
    rpc.call(xid, 100003, 3, 17, opq(dfh) + struct.pack(">Q", cookie) + verf + u32(4096) + u32(16384),
             cred=ROOT_CRED)
    res = _results(rpc.last)
    assert struct.unpack_from(">I", res)[0] == 0
    off = 8 + 84 if struct.unpack_from(">I", res, 4)[0] else 8
    verf = res[off:off + 8]
    off += 8
    out = []
    while struct.unpack_from(">I", res, off)[0]:
        off += 12
        n = struct.unpack_from(">I", res, off)[0]
        name = res[off + 4:off + 4 + n]
        off += 4 + n + (-n % 4)
        out.append((struct.unpack_from(">Q", res, off)[0], name))
        off += 8
        off += 4 + 84 if struct.unpack_from(">I", res, off)[0] else 4
        if struct.unpack_from(">I", res, off)[0]:
            fl = struct.unpack_from(">I", res, off + 4)[0]
            off += 8 + fl + (-fl % 4)
        else:
            off += 4
    return out, verf, struct.unpack_from(">I", res, off + 4)[0]


def _listing(srv, export, change_after=None):
    rpc = RpcClient(srv.port)
    try:
        root = mount_root(rpc, str(export))
        rpc.call(2, 100003, 3, 3, opq(root) + opq(b"big"), cred=ROOT_CRED)
        res = _results(rpc.last)
        dfh = res[8:8 + struct.unpack_from(">I", res, 4)[0]]
        cookie, verf, xid, seen, pages = 0, b"\0" * 8, 10, [], 0
        while True:
            xid += 1
            out, verf, eof = _page(rpc, xid, dfh, cookie, verf)
            seen += out
            pages += 1
            if pages == change_after:
                open(os.path.join(export, "big", "added-midway"), "w").close()
            if eof:
                return seen, pages
            cookie = out[-1][0]
    finally:
        rpc.close()


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    e = tmp_path_factory.mktemp("rdp")
    os.mkdir(e / "big")
    for i in range(N):
        os.close(os.open(e / "big" / ("entry-%05d" % i), os.O_CREAT | os.O_WRONLY, 0o644))
    return e


def test_every_entry_once_in_the_same_order_and_one_listing_on_the_fast_path(export):
    listings = {}
    for fast in (True, False):
        with in_process_server(export, fast_path=fast) as srv:
            t0 = time.monotonic()
            seen, pages = _listing(srv, export)
            elapsed = time.monotonic() - t0
            listings[fast] = seen
            if fast:
                st = srv.fast.srv.cache_stats()
    assert listings[True] == listings[False]
    names = [n for _, n in listings[True]]
    assert sorted(names) == sorted([b".", b".."] + [os.fsencode(n) for n in os.listdir(export / "big")])
    assert len(set(names)) == len(names) and pages > 20
    # every continuation page found the listing the first page built (the ttl is 1 s; a slow
    # machine may need one more listing per second)
    assert st["listing_hits"] >= pages - 2 - int(elapsed) and st["listing_misses"] <= 1 + int(elapsed), st


def test_a_changed_directory_is_listed_afresh(tmp_path):
    e = tmp_path
    os.mkdir(e / "big")
    for i in range(400):
        open(e / "big" / ("f%04d" % i), "w").close()
    with in_process_server(e, fast_path=True) as srv:
        seen, pages = _listing(srv, e, change_after=2)
        st = srv.fast.srv.cache_stats()
    names = [n for _, n in seen]
    # entries present throughout appear exactly once; the page after the change missed the cache
    assert all(names.count(b"f%04d" % i) == 1 for i in range(400))
    assert st["listing_misses"] >= 1 and pages > 3
