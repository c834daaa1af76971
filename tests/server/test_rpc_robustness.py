"""Hostile and malformed records against a live server: each gets the right RPC reply or a closed
connection, and the server keeps serving other clients. Plus the svc_alloc_arg page accounting."""
import socket
import struct

import pytest

from nfsbulk_testlib import RpcClient, in_process_server
import rpcclient as C
from rpcsrv.proto import record, rpcmsg
from rpcsrv.proto.rpcmsg import AuthSys
from rpcsrv.proto.xdr import Packer

NFS, MOUNT = 100003, 100005


@pytest.fixture
def server(tmp_path):
    (tmp_path / "file").write_bytes(b"hello" * 1000)
    with in_process_server(tmp_path, threads=2, trace_holes=True) as srv:
        yield srv


def alive(srv):
    """A fresh client still gets NULL answered."""
    c = RpcClient(srv.port)
    try:
        h, _ = c.call(0xABCDEF, NFS, 3, 0)
        return h.xid == 0xABCDEF and h.accept_stat == rpcmsg.SUCCESS
    finally:
        c.close()


def closed_by_server(c):
    c.sock.settimeout(30)
    try:
        return c.sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_null_on_both_programs(server):
    c = RpcClient(server.port)
    for prog in (NFS, MOUNT):
        h, u = c.call(7, prog, 3, 0)
        assert (h.xid, h.accept_stat) == (7, rpcmsg.SUCCESS)
        assert u.remaining == 0
    c.close()


@pytest.mark.parametrize("prog,vers,proc,expect", [
    (NFS, 3, 99, rpcmsg.PROC_UNAVAIL),
    (NFS, 2, 0, rpcmsg.PROG_MISMATCH),
    (NFS, 4, 0, rpcmsg.PROG_MISMATCH),
    (100021, 4, 0, rpcmsg.PROG_UNAVAIL),
])
def test_unknown_program_version_procedure(server, prog, vers, proc, expect):
    c = RpcClient(server.port)
    h, u = c.call(11, prog, vers, proc)
    assert h.accept_stat == expect
    if expect == rpcmsg.PROG_MISMATCH:
        assert (h.low, h.high) == (3, 3)
    c.close()


def test_rpc_version_mismatch_is_denied(server):
    c = RpcClient(server.port)
    p = Packer()
    C.pack_call(p, 12, NFS, 3, 0, rpcvers=3)
    c.send_raw(record.frame(p.get_buffer()))
    from rpcsrv.proto.xdr import Unpacker
    h = C.decode_reply(Unpacker.from_bytes(c.recv_record()))
    assert h.stat == rpcmsg.MSG_DENIED and h.reject_stat == rpcmsg.RPC_MISMATCH
    c.close()


def test_bad_auth_sys_is_auth_error(server):
    c = RpcClient(server.port)
    bad = AuthSys(1, b"m" * 256, 0, 0, [])          # machine name over 255 bytes
    from rpcsrv.proto.xdr import Unpacker
    p = Packer()
    C.pack_call(p, 13, NFS, 3, 0, cred=(rpcmsg.AUTH_SYS, rpcmsg_authsys_body(bad)))
    c.send_raw(record.frame(p.get_buffer()))
    h = C.decode_reply(Unpacker.from_bytes(c.recv_record()))
    assert h.stat == rpcmsg.MSG_DENIED and h.reject_stat == rpcmsg.AUTH_ERROR
    assert h.auth_stat == rpcmsg.AUTH_BADCRED
    ok = AuthSys(1, b"m" * 255, 0, 0, list(range(16)))
    h, _ = c.call(14, NFS, 3, 0, cred=ok)
    assert h.accept_stat == rpcmsg.SUCCESS
    c.close()


def rpcmsg_authsys_body(a):
    p = Packer()
    p.pack_uint(a.stamp)
    p.pack_opaque(a.machinename)
    p.pack_uint(a.uid)
    p.pack_uint(a.gid)
    p.pack_uint(len(a.gids))
    for g in a.gids:
        p.pack_uint(g)
    return p.get_buffer()


def test_garbage_args_reply(server):
    c = RpcClient(server.port)
    h, _ = c.call(15, NFS, 3, 1, args=b"\x00\x00\x00")   # GETATTR with a truncated handle
    assert h.accept_stat == rpcmsg.GARBAGE_ARGS
    h, _ = c.call(16, NFS, 3, 0, args=b"\x00\x00\x00\x00")   # NULL with trailing bytes
    assert h.accept_stat == rpcmsg.GARBAGE_ARGS
    c.close()


def test_zero_length_fragment_closes_connection(server):
    c = RpcClient(server.port)
    c.send_raw(struct.pack(">I", 0x80000000))
    assert closed_by_server(c)
    assert alive(server)


def test_oversized_fragment_closes_before_body(server):
    c = RpcClient(server.port)
    c.send_raw(struct.pack(">I", 0x80000000 | (server.config.max_record + 1)))
    assert closed_by_server(c)
    assert alive(server)


def test_maximum_record_passes_the_framer(server):
    c = RpcClient(server.port)
    p = Packer()
    C.pack_call(p, 17, NFS, 3, 0)
    body = p.get_buffer()
    body += b"\x00" * (server.config.max_record - len(body))
    c.send_raw(record.frame(body, max_fragment=300000))     # several fragments, exactly the bound
    from rpcsrv.proto.xdr import Unpacker
    h = C.decode_reply(Unpacker.from_bytes(c.recv_record()))
    assert h.xid == 17 and h.accept_stat == rpcmsg.GARBAGE_ARGS   # NULL with trailing bytes
    c.close()


def test_not_a_call_gets_no_reply_but_connection_stays(server):
    c = RpcClient(server.port)
    c.send_raw(record.frame(struct.pack(">II", 5, 1) + b"\x00" * 16))   # a REPLY sent to the server
    h, _ = c.call(18, NFS, 3, 0)
    assert h.xid == 18
    c.close()


def test_truncated_record_then_close(server):
    c = RpcClient(server.port)
    data = c.call_bytes(19, NFS, 3, 0)
    c.send_raw(data[:-3])
    c.sock.shutdown(socket.SHUT_WR)
    assert closed_by_server(c)
    assert alive(server)


def test_record_split_byte_by_byte_and_pipelined(server):
    c = RpcClient(server.port)
    stream = b"".join(c.call_bytes(100 + i, NFS, 3, 0) for i in range(5))
    for i in range(len(stream)):
        c.send_raw(stream[i:i + 1])
    from rpcsrv.proto.xdr import Unpacker
    xids = [C.decode_reply(Unpacker.from_bytes(c.recv_record())).xid for _ in range(5)]
    assert xids == [100, 101, 102, 103, 104]
    c.close()


@pytest.mark.parametrize("seed", range(3))
def test_garbage_streams_never_kill_the_server(server, seed):
    import random
    rnd = random.Random(seed)
    for _ in range(20):
        c = RpcClient(server.port)
        blob = rnd.randbytes(rnd.randrange(1, 600))
        if rnd.random() < 0.5:                       # a well-framed record of garbage
            blob = record.frame(blob)
        try:
            c.send_raw(blob)
            c.sock.shutdown(socket.SHUT_WR)
        except OSError:                              # the server already dropped us: fine
            pass
        c.sock.settimeout(30)
        while True:                                  # replies or nothing, then the close
            try:
                if not c.sock.recv(65536):
                    break
            except ConnectionResetError:
                break
        c.close()
    assert alive(server)


def test_pages_conserved_after_stop(tmp_path):
    (tmp_path / "f").write_bytes(b"x" * 300000)
    with in_process_server(tmp_path, threads=3) as srv:
        c = RpcClient(srv.port)
        for i in range(20):
            c.call(i, NFS, 3, 0)
        half = c.call_bytes(99, NFS, 3, 0)
        c.send_raw(half[:10])                        # a partial record parked in the connection
        assert alive(srv)
        alloc = srv.allocator
    assert alloc.stats()["allocated"] == 0
    alloc.check()


def test_holes_refilled_equal_reply_pages_released(tmp_path):
    """After each READ, the next svc_alloc_arg refills exactly the reply pages the last reply released."""
    from nfsbulk_testlib import RpcClient
    from rpcsrv.proto.rpcmsg import AuthSys
    cred = AuthSys(1, b"t", 0, 0, [0])
    (tmp_path / "f").write_bytes(bytes(range(256)) * 4096)          # 1 MiB
    for strategy in ("single", "list", "array", "range"):
        with in_process_server(tmp_path, strategy=strategy, threads=1, trace_holes=True) as srv:
            c = RpcClient(srv.port)
            p = Packer()
            p.pack_string(str(tmp_path).encode())
            h, u = c.call(1, MOUNT, 3, 1, p.get_buffer(), cred=cred)
            assert u.unpack_uint() == 0
            root = u.unpack_opaque(64)
            p = Packer()
            p.pack_opaque(root)
            p.pack_string(b"f")
            h, u = c.call(2, NFS, 3, 3, p.get_buffer(), cred=cred)
            assert u.unpack_uint() == 0
            fh = u.unpack_opaque(64)
            expect = []
            for i, count in enumerate([1, 4096, 4097, 65536, 262144, 1 << 20, 100, 0]):
                p = Packer()
                p.pack_opaque(fh)
                p.pack_uhyper(0)
                p.pack_uint(count)
                h, u = c.call(10 + i, NFS, 3, 6, p.get_buffer(), cred=cred)
                assert u.unpack_uint() == 0
                pad = (-count) & 3
                expect.append(1 + (count + pad + 4095) // 4096 if count else 1)
            h, u = c.call(99, NFS, 3, 0)                             # one more call: the last refill is done
            c.close()
            trace = list(srv.rqsts[0].trace)
            nslots = srv.nslots
        refills = [n for kind, n in trace if kind == "refill"]
        releases = [n for kind, n in trace if kind == "release"]
        assert refills[0] == nslots == 260                           # the first call fills every slot
        # every release is followed by a refill of exactly that many pages
        assert refills[1:len(releases) + 1] == releases[:len(refills) - 1]
        assert releases[2:2 + len(expect)] == expect, (strategy, releases)   # after MNT and LOOKUP
