"""RPC over UDP on page_pool pages (rpcsrv/xprt/udp.py, rpcsrv/xprt/_udpio.pyx) against a live server."""

import os
import socket
import struct
import sys

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from rpcclient import RpcClient
from rpcsrv.proto import rpcmsg
from rpcsrv.server import Server, ServerConfig
from rpcsrv.xprt.udp import UDP_RTMAX, UDP_WTMAX, UdpConfig

NFS, MOUNT = 100003, 100005


class UdpClient:
    """rpcclient.RpcClient over UDP, with this file's call shape: call() -> (accept_stat, result bytes)."""

    def __init__(self, port):
        self.rpc = RpcClient(port, timeout=3, udp=True)
        self.xid = 1000

    def raw(self, data: bytes, expect_reply=True, timeout=3.0):
        self.rpc.send_raw(data)
        if not expect_reply:
            return None
        self.rpc.sock.settimeout(timeout)
        return self.rpc.recv_record()

    def call(self, prog, vers, proc, args=b"", cred=None):
        self.xid += 1
        h, u = self.rpc.call(self.xid, prog, vers, proc, args, cred)
        assert h.xid == self.xid and h.stat == rpcmsg.MSG_ACCEPTED and h.verf_body == b""
        return h.accept_stat, u.copy(u.pos, u.remaining)

    def close(self):
        self.rpc.close()


def opaque(b):
    return struct.pack(">I", len(b)) + b + b"\0" * ((-len(b)) & 3)


def skip_post_op_attr(res, off):
    follows, = struct.unpack_from(">I", res, off)
    return off + 4 + (84 if follows else 0)


def start(tmp_path, strategy="array", recycle="direct", threads=2, registry=None):
    cfg = ServerConfig(export=str(tmp_path), host="127.0.0.1", port=0, threads=2, arena_mib=32,
                       state_dir=str(tmp_path.parent / ("state-" + tmp_path.name)),
                       udp=UdpConfig(pool_strategy=strategy, threads=threads, recycle=recycle))
    srv = Server(cfg, registry=registry or CollectorRegistry())
    srv.start()
    return srv


def stop_and_check(srv):
    srv.stop()
    pools = srv._udp.pools
    for p in pools:
        st = p.stats()
        assert st["pages_from_allocator"] == st["released"], st
        assert st["inflight"] == 0
    srv.allocator.drain_all()
    assert srv.allocator.stats()["allocated"] == 0
    srv.allocator.check()
    assert not [t for t in srv._udp_threads if t.is_alive()]


@pytest.fixture
def export(tmp_path):
    d = tmp_path / "export"
    d.mkdir()
    (d / "data.bin").write_bytes(bytes(range(256)) * 80)          # 20480 bytes
    return d


def mount(c, export):
    acc, res = c.call(MOUNT, 3, 1, opaque(str(export).encode()))
    assert acc == 0
    status, n = struct.unpack_from(">II", res)
    assert status == 0
    return res[8:8 + n]


def lookup(c, dirfh, name):
    acc, res = c.call(NFS, 3, 3, opaque(dirfh) + opaque(name.encode()))
    assert acc == 0 and struct.unpack_from(">I", res)[0] == 0
    n, = struct.unpack_from(">I", res, 4)
    return res[8:8 + n]


def read(c, fh, offset, count):
    acc, res = c.call(NFS, 3, 6, opaque(fh) + struct.pack(">QI", offset, count))
    assert acc == 0
    status, = struct.unpack_from(">I", res)
    assert status == 0
    off = skip_post_op_attr(res, 4)
    n, eof, dlen = struct.unpack_from(">III", res, off)
    assert n == dlen
    data = res[off + 12:off + 12 + n]
    assert len(res) == off + 12 + n + ((-n) & 3)                    # padded, nothing more
    return data, bool(eof)


@pytest.mark.parametrize("strategy", ["single", "list", "array"])
def test_null_getattr_read_round_trips(export, strategy):
    srv = start(export, strategy)
    c = UdpClient(srv.port)
    try:
        assert c.call(NFS, 3, 0) == (0, b"")
        assert c.call(MOUNT, 3, 0) == (0, b"")
        root = mount(c, export)
        acc, res = c.call(NFS, 3, 1, opaque(root))                  # GETATTR
        assert acc == 0 and struct.unpack_from(">I", res)[0] == 0 and len(res) == 4 + 84
        ftype, = struct.unpack_from(">I", res, 4)
        assert ftype == 2                                          # NF3DIR
        fh = lookup(c, root, "data.bin")
        content = (export / "data.bin").read_bytes()
        data, eof = read(c, fh, 0, 100)
        assert data == content[:100] and not eof
        data, eof = read(c, fh, 5, 7)                              # odd length: XDR pad
        assert data == content[5:12]
        for _ in range(200):                                       # pages cycle through the pool
            assert c.call(NFS, 3, 0)[0] == 0
        st = sum(p.stats()["alloc_fast"] + p.stats()["alloc_slow"] for p in srv._udp.pools)
        assert st >= 200
    finally:
        c.close()
        stop_and_check(srv)


def test_read_is_clamped_to_fit_a_datagram(export):
    srv = start(export)
    c = UdpClient(srv.port)
    try:
        root = mount(c, export)
        fh = lookup(c, root, "data.bin")
        content = (export / "data.bin").read_bytes()
        data, eof = read(c, fh, 0, 1 << 20)
        assert len(data) == UDP_RTMAX and data == content[:UDP_RTMAX]
        assert not eof                                             # a clamped read is not end of file
        data, eof = read(c, fh, 16384, UDP_RTMAX)
        assert data == content[16384:] and eof
    finally:
        c.close()
        stop_and_check(srv)


def test_fsinfo_over_udp_advertises_datagram_sizes(export):
    srv = start(export)
    c = UdpClient(srv.port)
    try:
        root = mount(c, export)
        acc, res = c.call(NFS, 3, 19, opaque(root))
        assert acc == 0 and struct.unpack_from(">I", res)[0] == 0
        off = skip_post_op_attr(res, 4)
        rtmax, rtpref, rtmult, wtmax, wtpref, wtmult, dtpref = struct.unpack_from(">7I", res, off)
        assert rtmax == rtpref == UDP_RTMAX and wtmax == UDP_WTMAX and wtpref <= wtmax and dtpref <= 8192
    finally:
        c.close()
        stop_and_check(srv)


def test_write_from_the_datagram_page(export):
    srv = start(export)
    c = UdpClient(srv.port)
    try:
        root = mount(c, export)
        fh = lookup(c, root, "data.bin")
        payload = os.urandom(UDP_WTMAX)
        root_cred = rpcmsg.AuthSys(1, b"udp-test", 0, 0, ())
        acc, res = c.call(NFS, 3, 7, opaque(fh) + struct.pack(">QII", 100, len(payload), 2) + opaque(payload),
                          cred=root_cred)
        assert acc == 0 and struct.unpack_from(">I", res)[0] == 0
        assert (export / "data.bin").read_bytes()[100:100 + len(payload)] == payload
        data, _ = read(c, fh, 100, len(payload))
        assert data == payload
    finally:
        c.close()
        stop_and_check(srv)


def test_bad_datagrams_are_answered_or_dropped_and_serving_goes_on(export):
    reg = CollectorRegistry()
    srv = start(export, registry=reg)
    c = UdpClient(srv.port)
    try:
        call = c.rpc.call_bytes(4242, NFS, 3, 0)
        for junk in (b"", b"\x01", call[:10], call[:-4], b"\xff" * 64, os.urandom(3000)):
            c.raw(junk, expect_reply=False)
        # cut by the page (more than 4096 bytes): a decodable header gets GARBAGE_ARGS
        data = c.raw(call + b"\0" * 6000)
        xid, mtype, stat, _, _, acc = struct.unpack_from(">6I", data)
        assert (xid, mtype, stat, acc) == (4242, 1, 0, rpcmsg.GARBAGE_ARGS)
        c.raw(os.urandom(9000), expect_reply=False)                # undecodable and oversized: dropped
        # a garbage argument to a real procedure: GARBAGE_ARGS
        acc, _ = c.call(NFS, 3, 1, b"\x00\x00\x01")
        assert acc == rpcmsg.GARBAGE_ARGS
        assert c.call(NFS, 3, 0) == (0, b"")                       # still serving
        text = generate_latest(reg).decode()
        assert 'nfsbulk_rpc_errors_total{reason="udp_oversize"} 2.0' in text
        assert 'reason="badfmt"' in text
        assert 'nfsbulk_pool_alloc_slow_total{strategy="array"}' in text
    finally:
        c.close()
        stop_and_check(srv)


@pytest.mark.parametrize("recycle", ["direct", "ring", "release"])
def test_recycle_modes(export, recycle):
    srv = start(export, "array", recycle, threads=1)
    c = UdpClient(srv.port)
    try:
        for _ in range(300):
            assert c.call(NFS, 3, 0)[0] == 0
        st = srv._udp.pools[0].stats()
        if recycle == "direct":
            assert st["recycled_direct"] >= 299 and st["alloc_slow"] == 1
        elif recycle == "ring":
            assert st["recycled_ring"] >= 299 and st["ring_refills"] >= 1
        else:
            assert st["released"] >= 299 and st["alloc_slow"] >= 300 // 64
            assert st["pages_from_allocator"] >= 300
    finally:
        c.close()
        stop_and_check(srv)


def test_udp_port_taken_fails_cleanly(export):
    from rpcsrv.server import StartupError
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)    # no SO_REUSEPORT: the bind must fail
    blocker.bind(("127.0.0.1", 0))
    port = blocker.getsockname()[1]
    cfg = ServerConfig(export=str(export), host="127.0.0.1", port=port, threads=1, arena_mib=16,
                       state_dir=str(export.parent / "state-taken"), udp=UdpConfig())
    srv = Server(cfg, registry=CollectorRegistry())
    try:
        with pytest.raises(StartupError, match=r"^--udp: cannot serve UDP on 127\.0\.0\.1:%d: " % port):
            srv.start()
    finally:
        blocker.close()
        if srv.export is not None:
            srv.export.close()


def test_cli_udp_and_flood(export):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from nfsbulk_testlib import ServerProcess
    from loadgen.flood.udpflood import mount_root, run_flood
    sp = ServerProcess(export, threads=2, arena_mib=64,
                       extra=("--udp", "--pool-strategy", "list", "--udp-threads", "2", "--udp-recycle", "release"))
    try:
        fh = mount_root("127.0.0.1", sp.port, str(export))
        phases = []
        r = run_flood("127.0.0.1", sp.port, procs=2, window=8, op="mix", fh=fh, warmup=0.2, duration=0.8,
                      on_phase=phases.append)
        assert phases == ["run", "end"]
        assert r["replies"] > 100 and r["errors"] == 0 and r["calls_per_s"] > 0
    finally:
        rc, err = sp.stop()
    assert rc == 0, err
    assert "allocator pages still allocated: 0" in err
