"""Real clients against rpcsrv: Debian's nfs-ls / nfs-cat (libnfs-utils) and python-libnfs, on every
strategy: listings, stats and byte-exact reads of a tree prepared on disk, 8 concurrent client
processes, and path escapes that must never reach outside the export."""
import hashlib
import multiprocessing as mp
import os
import shutil
import subprocess

import pytest

from loadgen.run.nfsctx import NfsContext
from nfsbulk_testlib import RpcClient, ServerProcess, leaked_pages, make_tree
from rpcsrv.proto.rpcmsg import AuthSys
from rpcsrv.proto.xdr import Packer

STRATEGIES = ["single", "list", "array", "range"]
# each strategy on the compiled request path, and the Python reference path once
PATHS = [(s, "on") for s in STRATEGIES] + [("array", "off")]
HAVE_UTILS = shutil.which("nfs-ls") and shutil.which("nfs-cat")


def read_all(ctx, path, size):
    rc, fh = ctx.open(path, os.O_RDONLY)
    assert rc == 0, "open %s: %d %s" % (path, rc, ctx.error())
    out = bytearray()
    chunk = 1 << 20
    while True:
        buf = bytearray(chunk)
        n = ctx.pread(fh, len(out), chunk, buf)
        assert n >= 0, "pread %s: %d %s" % (path, n, ctx.error())
        if n == 0:
            break
        out += buf[:n]
    assert ctx.close(fh) == 0
    return bytes(out)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    files = make_tree(str(root))
    os.symlink("/etc", root / "escape")                 # points outside the export
    os.symlink("../../..", root / "d1" / "up")          # relative escape
    return root, files


@pytest.mark.parametrize("strategy,fast_path", PATHS)
def test_libnfs_lists_stats_and_reads_byte_exact(tree, strategy, fast_path):
    root, files = tree
    with ServerProcess(root, strategy=strategy, threads=3, fast_path=fast_path) as srv:
        ctx = NfsContext(srv.url)
        try:
            rc, entries = ctx.listdir("/")
            assert rc == 0
            names = {n for n, _ in entries}
            assert {"d1", "escape", "link-to-f0", "."} <= names
            rc, entries = ctx.listdir("/d1/d2")
            assert rc == 0 and {n for n, _ in entries} >= {os.path.basename(p) for p in files if p.startswith("d1/d2/")}
            for rel, data in files.items():
                rc, st = ctx.stat("/" + rel)
                assert rc == 0, rel
                assert st.nfs_size == len(data)
                assert read_all(ctx, "/" + rel, len(data)) == data, rel
            buf = bytearray(256)
            n = ctx.readlink("/escape", buf)
            assert n == 0 and bytes(buf).rstrip(b"\0") == b"/etc"
        finally:
            ctx.destroy()
        code, err = srv.stop()
    assert code == 0, err
    assert leaked_pages(err) == 0


@pytest.mark.skipif(not HAVE_UTILS, reason="libnfs-utils (nfs-ls, nfs-cat) not installed")
@pytest.mark.parametrize("strategy,fast_path", PATHS)
def test_nfs_ls_and_nfs_cat(tree, strategy, fast_path):
    root, files = tree
    with ServerProcess(root, strategy=strategy, threads=2, fast_path=fast_path) as srv:
        base, _, query = srv.url.partition("?")
        out = subprocess.run(["nfs-ls", srv.url], capture_output=True, timeout=60)
        assert out.returncode == 0, out.stderr
        listing = out.stdout.decode()
        for name in ("d1", "f0.bin", "f3.bin", "link-to-f0"):
            assert name in listing
        for rel, data in files.items():
            r = subprocess.run(["nfs-cat", "%s/%s?%s" % (base, rel, query)], capture_output=True, timeout=120)
            assert r.returncode == 0, (rel, r.stderr)
            assert r.stdout == data, rel
        code, err = srv.stop()
    assert code == 0 and leaked_pages(err) == 0


def _reader(url, expected, q):
    try:
        ctx = NfsContext(url)
        bad = []
        for _ in range(2):
            for rel, digest in expected.items():
                data = read_all(ctx, "/" + rel, 0)
                if hashlib.sha256(data).hexdigest() != digest:
                    bad.append(rel)
        ctx.destroy()
        q.put(("ok", bad))
    except BaseException as e:  # reported to the parent
        q.put(("error", repr(e)))


@pytest.mark.parametrize("strategy,fast_path", PATHS)
def test_eight_concurrent_clients_read_every_byte(tmp_path, strategy, fast_path):
    import random
    rnd = random.Random(7)
    expected = {}
    sizes = [1024, 4096 + 1, 65536, 262144, 1 << 20, 3 * (1 << 20) + 5, 8 << 20]
    for i, size in enumerate(sizes):
        data = rnd.randbytes(size)
        (tmp_path / ("c%d" % i)).write_bytes(data)
        expected["c%d" % i] = hashlib.sha256(data).hexdigest()
    with ServerProcess(tmp_path, strategy=strategy, threads=4, fast_path=fast_path) as srv:
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        procs = [ctx.Process(target=_reader, args=(srv.url, expected, q)) for _ in range(8)]
        for p in procs:
            p.start()
        results = [q.get(timeout=240) for _ in procs]
        for p in procs:
            p.join(60)
        code, err = srv.stop()
    assert all(r == ("ok", []) for r in results), results
    assert code == 0 and leaked_pages(err) == 0


def test_escapes_never_reach_outside(tree):
    root, _ = tree
    with ServerProcess(root, threads=2) as srv:
        ctx = NfsContext(srv.url)
        try:
            # libnfs resolves symlinks itself, relative to the export: /etc/passwd is not there
            rc, _ = ctx.open("/escape/passwd", os.O_RDONLY)
            assert rc < 0
            rc, _ = ctx.open("/d1/up/etc/passwd", os.O_RDONLY)
            assert rc < 0
            rc, _ = ctx.open("/../../etc/passwd", os.O_RDONLY)
            assert rc < 0
        finally:
            ctx.destroy()
        # the server itself, by raw RPC: ".." at the root is the root; symlinks are not followed
        rpc = RpcClient(srv.port)
        try:
            root_fh = mnt(rpc, srv.export)
            st, fh = lookup(rpc, root_fh, b"..")
            assert st == 0 and fh == root_fh
            st, fh = lookup(rpc, root_fh, b"escape")
            assert st == 0
            st, _ = lookup(rpc, fh, b"passwd")               # a symlink is not a directory
            assert st == 20                                  # NFS3ERR_NOTDIR
            st, _ = lookup(rpc, root_fh, b"a/b")
            assert st != 0
        finally:
            rpc.close()
        code, err = srv.stop()
    assert code == 0


ROOT_CRED = AuthSys(1, b"nfsbulk-test", 0, 0, [0])


def mnt(rpc, path):
    p = Packer()
    p.pack_string(path.encode())
    h, u = rpc.call(1, 100005, 3, 1, p.get_buffer(), cred=ROOT_CRED)
    assert h.accept_stat == 0 and u.unpack_uint() == 0
    return u.unpack_opaque(64)


def lookup(rpc, dir_fh, name):
    p = Packer()
    p.pack_opaque(dir_fh)
    p.pack_string(name)
    h, u = rpc.call(2, 100003, 3, 3, p.get_buffer(), cred=ROOT_CRED)
    assert h.accept_stat == 0
    st = u.unpack_uint()
    return st, (u.unpack_opaque(64) if st == 0 else None)


def test_forged_and_mutated_handles_are_refused(tree):
    root, files = tree
    with ServerProcess(root, threads=2) as srv:
        rpc = RpcClient(srv.port)
        try:
            root_fh = mnt(rpc, srv.export)
            st, fh = lookup(rpc, root_fh, b"f3.bin")
            assert st == 0
            outside = []
            for i in range(len(fh)):
                for delta in (1, 0x80):
                    bad = bytearray(fh)
                    bad[i] ^= delta
                    p = Packer()
                    p.pack_opaque(bytes(bad))
                    p.pack_uhyper(0)
                    p.pack_uint(4096)
                    h, u = rpc.call(3, 100003, 3, 6, p.get_buffer(), cred=ROOT_CRED)      # READ
                    assert h.accept_stat == 0
                    outside.append(u.unpack_uint())
            assert set(outside) <= {10001, 70}, set(outside)          # BADHANDLE or STALE, never data
            p = Packer()
            p.pack_opaque(b"\x00" * 64)
            h, u = rpc.call(4, 100003, 3, 1, p.get_buffer())            # GETATTR of junk
            assert u.unpack_uint() == 10001
        finally:
            rpc.close()
        srv.stop()
