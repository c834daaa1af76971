"""The compiled UDP receive loop (rpcsrv/xprt/_udpfast.pyx, udp_xdp.h) against the Python path, live.

Replies are compared byte for byte between a server with --udp-xdp tx and one
with the per-datagram Python loop, on the same datagrams (well-formed,
malformed, truncated, oversized). Whether a datagram got no reply is decided
without waiting for a timeout: after it, a MOUNT NULL probe is sent (always
passed to Python, so answered after anything the loop answered from C); the
replies before the probe's are the datagram's.
"""

import os
import socket
import struct
import sys
import threading

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from rpcclient import ROOT_CRED, pack_call
from rpcsrv.proto.xdr import Packer
from rpcsrv.server import Server, ServerConfig
from rpcsrv.xprt.udp import UdpConfig

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from loadgen.flood import _flood  # noqa: E402
from loadgen.flood.xdpflood import FloodError, XdpFlood, null_call  # noqa: E402

NFS, MOUNT = 100003, 100005
PROBE_XID = 0x50524F42


def start(tmp_path, xdp, strategy="array", recycle="direct", registry=None, interleave=0, name="s"):
    cfg = ServerConfig(export=str(tmp_path), host="127.0.0.1", port=0, threads=2, arena_mib=32,
                       state_dir=str(tmp_path.parent / "state"),      # one key: the same file handles
                       udp=UdpConfig(pool_strategy=strategy, threads=1, recycle=recycle, xdp=xdp,
                                     interleave=interleave))
    srv = Server(cfg, registry=registry or CollectorRegistry())
    srv.start()
    return srv


def stop_and_check(srv):
    """Stop; every page the pools took came back, the allocator holds nothing, the loop's ring is empty."""
    srv.stop()
    for p in srv._udp.pools:
        st = p.stats()
        assert st["pages_from_allocator"] == st["released"], st
        assert st["inflight"] == 0 and st["cache_pages"] == 0
    for lp in srv._udp.loops:
        assert lp.ring_pages() == 0
    srv.allocator.drain_all()
    assert srv.allocator.stats()["allocated"] == 0
    srv.allocator.check()
    assert not [t for t in srv._udp_threads if t.is_alive()]


@pytest.fixture
def export(tmp_path):
    d = tmp_path / "export"
    d.mkdir()
    (d / "f").write_bytes(b"x" * 100)
    return d


def hdr(xid, mtype=0, rpcvers=2, prog=NFS, vers=3, proc=0, cred=(0, b""), verf=(0, b"")):
    def auth(a):
        return struct.pack(">II", a[0], len(a[1])) + a[1] + b"\0" * ((-len(a[1])) & 3)
    return struct.pack(">6I", xid, mtype, rpcvers, prog, vers, proc) + auth(cred) + auth(verf)


class Prober:
    """One UDP socket to a server; exchange(d) -> the replies d got (a list, in order)."""

    def __init__(self, port):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.connect(("127.0.0.1", port))
        self.s.settimeout(5)

    def exchange(self, data):
        self.s.send(data)
        self.s.send(hdr(PROBE_XID, prog=MOUNT))
        got = []
        while True:
            r = self.s.recv(70000)
            if r[:4] == struct.pack(">I", PROBE_XID):
                return got
            got.append(r)

    def close(self):
        self.s.close()


def datagrams(fh):
    p = Packer()
    pack_call(p, 7, NFS, 3, 0, cred=ROOT_CRED)
    with_sys = bytes(p.get_buffer())                                # AUTH_SYS: passed to Python
    null = hdr(1)
    return {
        "null": null,
        "null_trailing": null + b"\0" * 12,
        "null_authsys": with_sys,
        "mount_null": hdr(2, prog=MOUNT),
        "getattr_root": hdr(3, proc=1) + struct.pack(">I", len(fh)) + fh + b"\0" * ((-len(fh)) & 3),
        "nfs2_null": hdr(4, vers=2),
        "rpcvers_3": hdr(5, rpcvers=3),
        "reply_type": hdr(6, mtype=1),
        "auth_none_body": hdr(8, cred=(0, b"abcd")),
        "verf_body": hdr(9, verf=(0, b"abcd")),
        "verf_flavor": hdr(10, verf=(1, b"")),
        "unknown_flavor": hdr(11, cred=(99, b"")),
        "short_header": null[:36],
        "tiny": b"\x01\x02\x03",
        "empty": b"",
        "random": os.urandom(600),
        "oversized_null": null + b"\0" * 5000,                     # cut by the page: GARBAGE_ARGS
        "oversized_junk": b"\xff" * 9000,
        "bad_proc": hdr(12, proc=99),
    }


def test_c_verdict_replies_match_the_python_path_byte_for_byte(export):
    py = start(export, "off")
    cx = start(export, "tx")
    a, b = Prober(py.port), Prober(cx.port)
    try:
        m = a.exchange(hdr(1, prog=MOUNT, proc=1) + struct.pack(">I", len(str(export))) + str(export).encode()
                       + b"\0" * ((-len(str(export))) & 3))
        assert m and struct.unpack_from(">I", m[0], 24)[0] == 0
        n, = struct.unpack_from(">I", m[0], 28)
        fh = m[0][32:32 + n]
        cases = datagrams(fh)
        for name, d in cases.items():
            ra, rb = a.exchange(d), b.exchange(d)
            assert ra == rb, name
        assert len(b.exchange(cases["null"])[0]) == 24
        assert b.exchange(cases["empty"]) == [] and b.exchange(cases["oversized_junk"]) == []
        st = cx._udp.loops[0].stats()["by_strategy"]["array"]
        assert st["tx"] == 2                        # the null case and the one above: answered from C
        assert st["pass"] == len(cases) * 2 + 4     # every other datagram and every probe went to Python
        assert st["drop"] == 0 and st["tx_fail"] == 0
    finally:
        a.close()
        b.close()
        stop_and_check(py)
        stop_and_check(cx)


def test_root_getattr_from_c_while_the_root_is_unchanged(export):
    py = start(export, "off")
    cx = start(export, "tx")
    a, b = Prober(py.port), Prober(cx.port)
    lp = cx._udp.loops[0]
    try:
        fh = cx.export.root_handle()
        call = hdr(31, proc=1) + struct.pack(">I", len(fh)) + fh + b"\0" * ((-len(fh)) & 3)
        want = a.exchange(call)
        assert len(want) == 1 and struct.unpack_from(">I", want[0], 24)[0] == 0
        assert b.exchange(call) == want and lp.stats()["getattr_tx"] == 0      # passed; its reply cached
        assert b.exchange(call) == want and lp.stats()["getattr_tx"] == 1      # answered from C
        (export / "new-file").write_bytes(b"")                                  # the root's mtime/ctime move
        want2 = a.exchange(call)
        assert want2 != want
        assert b.exchange(call) == want2                                         # stale: passed, re-cached
        st = lp.stats()
        assert st["getattr_stale"] == 1 and st["getattr_tx"] == 1
        assert b.exchange(call) == want2 and lp.stats()["getattr_tx"] == 2
        other = hdr(32, proc=1, cred=(1, b"")) + struct.pack(">I", len(fh)) + fh
        assert b.exchange(other) == a.exchange(other)                            # not the canonical call
        assert lp.stats()["getattr_tx"] == 2
    finally:
        a.close()
        b.close()
        stop_and_check(py)
        stop_and_check(cx)


def test_drop_verdict_drops_null_and_passes_the_rest(export):
    reg = CollectorRegistry()
    srv = start(export, "drop", recycle="release", registry=reg)
    p = Prober(srv.port)
    try:
        assert p.exchange(hdr(21)) == []
        (r,) = p.exchange(hdr(22, vers=2))                      # PROG_MISMATCH from Python
        assert struct.unpack_from(">6I", r)[5] == 2
        text = generate_latest(reg).decode()
        assert 'nfsbulk_udp_xdp_datagrams_total{strategy="array",verdict="drop"} 1.0' in text
        assert 'nfsbulk_udp_xdp_rx_cpu_seconds_total{strategy="array"}' in text
        assert 'nfsbulk_udp_xdp_rx_wall_seconds_total{strategy="array"}' in text
    finally:
        p.close()
        stop_and_check(srv)


@pytest.mark.parametrize("recycle,verdict,interleave", [("release", "drop", 4), ("direct", "tx", 0),
                                                         ("ring", "tx", 3)])
def test_no_page_leaks_after_a_flood(export, recycle, verdict, interleave):
    srv = start(export, verdict, strategy="single", recycle=recycle, interleave=interleave)
    res = {}
    try:
        t = threading.Thread(target=lambda: res.update(_flood.flood("127.0.0.1", srv.port, null_call(), 0.4,
                                                                    100000, 16, verdict == "tx")))
        t.start()
        t.join(30)
        assert not t.is_alive()
        assert res["sent"] > 1000
        if verdict == "tx":
            assert res["replies"] > 0 and res["bad_replies"] == 0
    finally:
        stop_and_check(srv)
    st = srv._udp.loops[0].stats()
    got = sum(v["datagrams"] for v in st["by_strategy"].values())
    assert got > 0
    if interleave:
        assert st["switches"] > 0 and all(v["datagrams"] > 0 for v in st["by_strategy"].values())
    pool = srv._udp.pools[0].stats()
    if recycle == "release":                        # every datagram took a fresh page from the allocator
        assert pool["pages_from_allocator"] >= got


def test_flood_bounds_and_loopback_only():
    with pytest.raises(FloodError):
        XdpFlood("10.0.0.1", 9, duration=1)
    with pytest.raises(FloodError):
        XdpFlood("127.0.0.1", 9, duration=1000)
    with pytest.raises(FloodError):
        XdpFlood("127.0.0.1", 9, duration=1, rate=0)
    with pytest.raises(ValueError):
        _flood.flood("127.0.0.1", 9, b"abcd", 0.1, 1e9)


def test_cli_rejects_interleave_without_the_loop(export):
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run([sys.executable, "-m", "rpcsrv", "--export", str(export), "--listen", "127.0.0.1:0", "--udp",
                        "--udp-interleave", "4"], cwd=root, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--udp-interleave" in r.stderr and "Traceback" not in r.stderr
