"""The NFSv3 write side against a live rpcsrv (issue 4).

* A differential test: one seeded random sequence of operations (create, write, read back, rename,
  link, symlink/readlink, chmod/chown/truncate/utimes, mkdir/rmdir, unlink, nfs-cp in and out) is
  applied to a local directory with the os module and to the export through python-libnfs and
  Debian's nfs-cp; every step must have the same outcome (0 or the same errno, the same bytes read)
  and at the end both trees must be equal (names, types, sizes, contents, modes, owners, symlink
  targets, link counts, explicitly set mtimes).  On every svc_alloc_arg strategy.
* The duplicate request cache: CREATE EXCLUSIVE, REMOVE and RENAME retransmitted with the same xid
  get the original reply, byte for byte; a new xid is executed again.
* Small protocol cases: SETATTR guard, GUARDED create, RENAME over files and directories, RMDIR of a
  non-empty directory, a non-owner uid, --read-only, --root-squash.
"""
import hashlib
import os
import random
import shutil
import stat
import subprocess

import libnfs
import pytest

from loadgen.run.nfsctx import NfsContext
from nfsbulk_testlib import ServerProcess, in_process_server, leaked_pages
import rpcclient as C
from rpcclient import Nfs3
from rpcsrv.proto import nfs3xdr as X
from rpcsrv.proto.nfs3const import NfsStat3 as S
from rpcsrv.proto.rpcmsg import AuthSys
from rpcsrv.proto.xdr import Unpacker
from rpcsrv.proto import rpcmsg

STRATEGIES = ["single", "list", "array", "range"]
NFS, MOUNT = 100003, 100005
ROOT_CRED = AuthSys(1, b"nfsbulk-test", 0, 0, [0])
USER_CRED = AuthSys(1, b"nfsbulk-test", 1000, 1000, [1000])
HAVE_NFS_CP = shutil.which("nfs-cp") is not None


# --------------------------------------------------------------------------
# the differential test

NAMES = ["a", "b", "c", "d", "e", "f.txt", "g g", "h-\u00e9"]     # few names: collisions are frequent


def snapshot(root):
    """{relpath: description} of a tree: type, size, content hash / target, mode, owner, links,
    and the mtime when it was set explicitly (utimes sets times far in the past)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            fmt = stat.S_IFMT(st.st_mode)
            d = {"type": fmt, "mode": oct(stat.S_IMODE(st.st_mode)), "uid": st.st_uid, "gid": st.st_gid,
                 "nlink": st.st_nlink}
            if st.st_mtime < 1e9:
                d["mtime_ns"] = st.st_mtime_ns
            else:
                d["mtime_ns"] = "recent"
            if stat.S_ISREG(fmt):
                d["size"] = st.st_size
                with open(p, "rb") as f:
                    d["sha"] = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(fmt):
                d["target"] = os.readlink(p)
            out[rel] = d
    return out


def nfs_read_all(ctx, path):
    rc, fh = ctx.open(path, os.O_RDONLY)
    if rc < 0:
        return rc
    data = bytearray()
    while True:
        buf = bytearray(1 << 20)
        n = ctx.pread(fh, len(data), len(buf), buf)
        if n < 0:
            ctx.close(fh)
            return n
        if n == 0:
            break
        data += buf[:n]
    assert ctx.close(fh) == 0
    return bytes(data)


def local(fn, *a, **kw):
    """Run a local os call the way libnfs reports: (0 or -errno, result)."""
    try:
        return 0, fn(*a, **kw)
    except OSError as e:
        return -e.errno, None


class Differential:
    def __init__(self, rnd, local_root, export, ctx, url, tmp):
        self.rnd = rnd
        self.root = local_root
        self.export = export
        self.ctx = ctx
        self.base, _, self.query = url.partition("?")
        self.tmp = tmp
        self.log = []
        self.counts = {}
        self.last_chmod = None

    # -- choosing arguments from the local tree (the oracle) -----------------
    def entries(self):
        dirs, files, links = [""], [], []
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel = os.path.relpath(dirpath, self.root)
            rel = "" if rel == "." else rel
            for n in dirnames + filenames:      # os.walk lists symlinks to directories as dirnames
                p = os.path.join(rel, n)
                mode = os.lstat(os.path.join(self.root, p)).st_mode
                (dirs if stat.S_ISDIR(mode) else links if stat.S_ISLNK(mode) else files).append(p)
        return dirs, files, links

    def new_path(self, dirs):
        return os.path.join(self.rnd.choice(dirs), self.rnd.choice(NAMES))

    def L(self, rel):
        return os.path.join(self.root, rel)

    @staticmethod
    def N(rel):
        return "/" + rel

    # -- one step ----------------------------------------------------------
    def step(self, i):
        r = self.rnd
        dirs, files, links = self.entries()
        ops = ["creat", "mkdir", "write", "write", "write", "read", "rename", "rename", "unlink", "rmdir",
               "link", "symlink", "readlink", "chmod", "chown", "truncate", "utimes", "trunc_open"]
        if HAVE_NFS_CP:
            ops += ["cp_in", "cp_out"]
        op = r.choice(ops)
        needs_file = op in ("write", "read", "link", "truncate", "trunc_open", "cp_out")
        if needs_file and not files:
            op = "creat"
        if op == "readlink" and not links:
            op = "symlink"
        self.counts[op] = self.counts.get(op, 0) + 1
        getattr(self, "op_" + op)(i, dirs, files, links)

    def record(self, i, what, lrc, nrc, attrs_of=None):
        self.log.append("%d %s -> local %s nfs %s" % (i, what, lrc, nrc))
        assert lrc == nrc, "step %d %s: local %s, nfs %s\n%s" % (i, what, lrc, nrc, "\n".join(self.log[-25:]))
        if attrs_of is not None:       # attribute changes: the object's attributes right away
            a, b = os.lstat(self.L(attrs_of)), os.lstat(os.path.join(self.export, attrs_of))
            la = (oct(a.st_mode), a.st_uid, a.st_gid, a.st_nlink, a.st_size if stat.S_ISREG(a.st_mode) else 0)
            na = (oct(b.st_mode), b.st_uid, b.st_gid, b.st_nlink, b.st_size if stat.S_ISREG(b.st_mode) else 0)
            assert la == na, "step %d %s: local %s, nfs %s\n%s" % (i, what, la, na, "\n".join(self.log[-25:]))

    def op_creat(self, i, dirs, files, links):
        # creat(2) on a new name, or on an existing regular file (it stays as it is)
        p = self.new_path(dirs) if not files or self.rnd.random() < 0.8 else self.rnd.choice(files)
        if os.path.islink(self.L(p)) or (os.path.lexists(self.L(p)) and not os.path.isfile(self.L(p))):
            p = p + ".new"
            if os.path.lexists(self.L(p)):
                return
        mode = self.rnd.choice([0o644, 0o600, 0o755, 0o640, 0o444])
        lrc, fd = local(os.open, self.L(p), os.O_CREAT | os.O_RDWR, mode)
        if fd is not None:
            os.close(fd)
        nrc, fh = self.ctx.creat(self.N(p), mode)
        if fh is not None:
            assert self.ctx.close(fh) == 0
        self.record(i, "creat %s %o" % (p, mode), lrc, nrc)

    def op_mkdir(self, i, dirs, files, links):
        p = self.new_path(dirs)
        self.record(i, "mkdir " + p, local(os.mkdir, self.L(p), 0o755)[0], self.ctx.mkdir(self.N(p)))

    def op_write(self, i, dirs, files, links):
        p = self.rnd.choice(files)
        size = os.path.getsize(self.L(p))
        off = self.rnd.choice([0, size, max(0, size - 10), self.rnd.randrange(0, size + 70000)])
        n = self.rnd.choice([1, 100, 4096, 4097, 65536, 200000, self.rnd.randrange(1, 300000)])
        data = self.rnd.randbytes(n)
        fd = os.open(self.L(p), os.O_WRONLY)
        try:
            assert os.pwrite(fd, data, off) == n
        finally:
            os.close(fd)
        rc, fh = self.ctx.open(self.N(p), os.O_WRONLY)
        assert rc == 0, (p, rc, self.ctx.error())
        done = self.ctx.pwrite(fh, off, n, bytearray(data))
        assert self.ctx.close(fh) == 0
        self.record(i, "write %s @%d +%d" % (p, off, n), n, done)

    def op_read(self, i, dirs, files, links):
        p = self.rnd.choice(files)
        with open(self.L(p), "rb") as f:
            want = f.read()
        got = nfs_read_all(self.ctx, self.N(p))
        self.record(i, "read " + p, hashlib.sha256(want).hexdigest(),
                    got if isinstance(got, int) else hashlib.sha256(got).hexdigest())

    def op_rename(self, i, dirs, files, links):
        srcs = dirs[1:] + files + links
        if not srcs:
            return
        src = self.rnd.choice(srcs)
        kind = self.rnd.random()
        if kind < 0.5 or not (files or dirs[1:]):
            dst = self.new_path(dirs)                              # a new name (or a collision)
        elif kind < 0.8 and files:
            dst = self.rnd.choice(files + links)                    # over a file
        else:
            dst = self.rnd.choice(dirs[1:] or dirs)                 # over a directory (maybe non-empty)
        if dst == "":
            return
        lrc = local(os.rename, self.L(src), self.L(dst))[0]
        self.record(i, "rename %s -> %s" % (src, dst), lrc, self.ctx.rename(self.N(src), self.N(dst)))

    def op_unlink(self, i, dirs, files, links):
        cands = files + links
        p = self.rnd.choice(cands) if cands and self.rnd.random() < 0.85 else self.new_path(dirs)
        self.record(i, "unlink " + p, local(os.unlink, self.L(p))[0], self.ctx.unlink(self.N(p)))

    def op_rmdir(self, i, dirs, files, links):
        if len(dirs) < 2:
            return
        p = self.rnd.choice(dirs[1:])
        self.record(i, "rmdir " + p, local(os.rmdir, self.L(p))[0], self.ctx.rmdir(self.N(p)))

    def op_link(self, i, dirs, files, links):
        src = self.rnd.choice(files)
        dst = self.new_path(dirs)
        lrc = local(os.link, self.L(src), self.L(dst), follow_symlinks=False)[0]
        self.record(i, "link %s %s" % (src, dst), lrc, self.ctx.link(self.N(src), self.N(dst)))

    def op_symlink(self, i, dirs, files, links):
        target = self.rnd.choice(["a", "../b", "some/where/else", "x" * self.rnd.randrange(1, 200),
                                  "/abs/olute"])
        dst = self.new_path(dirs)
        lrc = local(os.symlink, target, self.L(dst))[0]
        self.record(i, "symlink %s -> %s" % (dst, target), lrc, self.ctx.symlink(target, self.N(dst)))

    def op_readlink(self, i, dirs, files, links):
        p = self.rnd.choice(links)
        want = os.readlink(self.L(p)).encode()
        buf = bytearray(4096)
        rc = self.ctx.readlink(self.N(p), buf)
        got = bytes(buf).rstrip(b"\0") if rc == 0 else rc
        self.record(i, "readlink " + p, want, got)

    def _obj(self, dirs, files):
        objs = files + dirs[1:]
        return self.rnd.choice(objs) if objs else None

    def op_chmod(self, i, dirs, files, links):
        p = self._obj(dirs, files)
        if p is None:
            return
        mode = self.rnd.choice([0o644, 0o600, 0o755, 0o700, 0o4755, 0o2755, 0o6755, 0o2745, 0o1777, 0o640,
                                0o000, self.rnd.randrange(0, 0o10000)])
        if os.path.isdir(self.L(p)):
            mode |= 0o700            # keep the tree walkable for the server's non-root paths too
        self.last_chmod = p
        lrc = local(os.chmod, self.L(p), mode)[0]
        self.record(i, "chmod %s %o" % (p, mode), lrc, libnfs.nfs_chmod(self.ctx.ctx, self.N(p), mode), p)

    def op_chown(self, i, dirs, files, links):
        p = self._obj(dirs, files)
        if self.last_chmod in files + dirs[1:] and self.rnd.random() < 0.5:
            p = self.last_chmod               # often right after a chmod (set-id bits, then chown)
        if p is None:
            return
        st = os.lstat(self.L(p))
        if self.rnd.random() < 0.3:           # chown to the same owner still clears S_ISUID/S_ISGID
            uid, gid = st.st_uid, st.st_gid
        else:
            uid = self.rnd.choice([0, 1, 1000, 65534, st.st_uid])
            gid = self.rnd.choice([0, 1, 1000, 65534, st.st_gid])
        lrc = local(os.chown, self.L(p), uid, gid)[0]
        self.record(i, "chown %s %d:%d" % (p, uid, gid), lrc,
                    libnfs.nfs_chown(self.ctx.ctx, self.N(p), uid, gid), p)

    def op_truncate(self, i, dirs, files, links):
        p = self.rnd.choice(files)
        size = os.path.getsize(self.L(p))
        n = self.rnd.choice([0, 1, size // 2, size, size + 1, size + 100000, 4096])
        lrc = local(os.truncate, self.L(p), n)[0]
        self.record(i, "truncate %s %d" % (p, n), lrc, libnfs.nfs_truncate(self.ctx.ctx, self.N(p), n), p)

    def op_trunc_open(self, i, dirs, files, links):
        p = self.rnd.choice(files)
        lrc, fd = local(os.open, self.L(p), os.O_WRONLY | os.O_TRUNC)
        if fd is not None:
            os.close(fd)
        nrc, fh = self.ctx.open(self.N(p), os.O_WRONLY | os.O_TRUNC)
        if fh is not None:
            assert self.ctx.close(fh) == 0
        self.record(i, "open O_TRUNC " + p, lrc, nrc)

    def op_utimes(self, i, dirs, files, links):
        p = self._obj(dirs, files)
        if p is None:
            return
        a = (self.rnd.randrange(1, 900_000_000), self.rnd.randrange(0, 1_000_000))
        m = (self.rnd.randrange(1, 900_000_000), self.rnd.randrange(0, 1_000_000))
        lrc = local(os.utime, self.L(p), ns=(a[0] * 10**9 + a[1] * 1000, m[0] * 10**9 + m[1] * 1000))[0]
        self.record(i, "utimes %s %r %r" % (p, a, m), lrc, self.ctx.utimes(self.N(p), (a, m)))

    def _url(self, rel):
        return "%s/%s?%s" % (self.base, rel, self.query)

    def op_cp_in(self, i, dirs, files, links):
        # nfs-cp LOCAL nfs://...: creat(O_EXCL, 0660) + writes; EXIST on an existing name
        p = self.new_path(dirs)
        data = self.rnd.randbytes(self.rnd.choice([0, 1, 5000, 1 << 20, self.rnd.randrange(1, 3 << 20)]))
        src = os.path.join(self.tmp, "cp-src")
        with open(src, "wb") as f:
            f.write(data)
        lrc, fd = local(os.open, self.L(p), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o660)
        if fd is not None:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        r = subprocess.run(["nfs-cp", src, self._url(p)], capture_output=True, timeout=60)
        nrc = 0 if r.returncode == 0 else (-17 if b"NFS3ERR_EXIST" in r.stderr else r.stderr)
        self.record(i, "nfs-cp in %s (%d bytes)" % (p, len(data)), lrc, nrc)

    def op_cp_out(self, i, dirs, files, links):
        p = self.rnd.choice(files)
        dst = os.path.join(self.tmp, "cp-dst")
        if os.path.exists(dst):
            os.unlink(dst)
        r = subprocess.run(["nfs-cp", self._url(p), dst], capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        with open(dst, "rb") as f, open(self.L(p), "rb") as g:
            self.record(i, "nfs-cp out " + p, hashlib.sha256(g.read()).hexdigest(),
                        hashlib.sha256(f.read()).hexdigest())


@pytest.fixture
def zero_umask():
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


STEPS = 220


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_differential_against_local_directory(tmp_path, zero_umask, strategy):
    seed = {"single": 11, "list": 12, "array": 13, "range": 14}[strategy]
    rnd = random.Random(seed)
    here, export, scratch = tmp_path / "local", tmp_path / "export", tmp_path / "scratch"
    for d in (here, export, scratch):
        d.mkdir()
    with ServerProcess(export, strategy=strategy, threads=3, extra=["--state-dir", str(tmp_path / "state")]) as srv:
        ctx = NfsContext(srv.url)
        try:
            diff = Differential(rnd, str(here), str(export), ctx, srv.url, str(scratch))
            for i in range(STEPS):
                diff.step(i)
        finally:
            ctx.destroy()
        code, err = srv.stop()
    assert code == 0, err
    assert leaked_pages(err) == 0
    a, b = snapshot(str(here)), snapshot(str(export))
    assert a.keys() == b.keys(), (seed, sorted(a.keys() ^ b.keys()))
    bad = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
    assert not bad, (seed, bad, diff.log[-30:])
    # the sequence exercised what it is meant to: a non-trivial tree and every kind of operation
    assert len(a) >= 5, a
    kinds = {d["type"] for d in a.values()}
    assert stat.S_IFREG in kinds
    wanted = ["creat", "write", "read", "rename", "link", "symlink", "readlink", "chmod", "chown", "truncate",
              "utimes", "mkdir", "rmdir", "unlink"] + (["cp_in", "cp_out"] if HAVE_NFS_CP else [])
    assert all(diff.counts.get(op, 0) > 0 for op in wanted), diff.counts


# --------------------------------------------------------------------------
# the duplicate request cache


def drc_count(srv, result="hit"):
    return srv.registry.get_sample_value("nfsbulk_rpc_drc_total", {"result": result}) or 0.0


def send_twice(c, xid, proc, args):
    """Send one call, read its reply, send the identical bytes again, read again."""
    call = c.rpc.call_bytes(xid, NFS, 3, proc, args, cred=ROOT_CRED)
    c.rpc.send_raw(call)
    first = c.rpc.recv_record()
    c.rpc.send_raw(call)
    again = c.rpc.recv_record()
    assert first is not None and again is not None
    return bytes(first), bytes(again)


def reply_results(rec):
    u = Unpacker.from_bytes(rec)
    h = C.decode_reply(u)
    assert h.accept_stat == rpcmsg.SUCCESS
    return h.xid, u


def test_retransmissions_get_the_original_reply(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    (export / "victim").write_bytes(b"v")
    (export / "old").write_bytes(b"payload of old")
    (export / "other").write_bytes(b"o")
    with in_process_server(export, threads=2, state_dir=str(tmp_path / "state")) as srv:
        c = Nfs3(srv.port)
        try:
            root = c.mnt(srv.export.path)
            hits, misses = drc_count(srv), drc_count(srv, "miss")

            # CREATE EXCLUSIVE
            verf = bytes(range(1, 9))
            first, again = send_twice(c, 0x7001, 8, Nfs3.create_args(root, b"excl", 2, verf))
            assert first == again
            xid, u = reply_results(first)
            st, fh, attr, wcc = Nfs3.decode_diropres(u)
            assert (xid, st) == (0x7001, 0) and fh
            assert (export / "excl").stat().st_size == 0
            # a new xid: executed again; the stored verifier recognises the retry, another verifier is EXIST
            st2, fh2, _, _ = c.create(root, b"excl", 2, verf)
            assert (st2, fh2) == (0, fh)
            assert c.create(root, b"excl", 2, bytes(8))[0] == S.EXIST

            # REMOVE
            first, again = send_twice(c, 0x7002, 12, Nfs3.dirop_args(root, b"victim"))
            assert first == again
            xid, u = reply_results(first)
            assert (xid, u.unpack_uint()) == (0x7002, 0)
            assert not (export / "victim").exists()
            assert c.remove(root, b"victim") == S.NOENT           # a new xid is really executed

            # RENAME
            first, again = send_twice(c, 0x7003, 14, Nfs3.rename_args(root, b"old", root, b"new"))
            assert first == again
            xid, u = reply_results(first)
            assert (xid, u.unpack_uint()) == (0x7003, 0)
            assert (export / "new").read_bytes() == b"payload of old" and not (export / "old").exists()
            assert c.rename(root, b"old", root, b"new") == S.NOENT

            # the same xid with different arguments is a different call: executed, not answered from the cache
            call = c.rpc.call_bytes(0x7002, NFS, 3, 12, Nfs3.dirop_args(root, b"other"), cred=ROOT_CRED)
            c.rpc.send_raw(call)
            xid, u = reply_results(c.rpc.recv_record())
            assert (xid, u.unpack_uint()) == (0x7002, 0)
            assert not (export / "other").exists()

            assert drc_count(srv) - hits == 3
            assert drc_count(srv, "miss") - misses >= 7
        finally:
            c.close()


# --------------------------------------------------------------------------
# small protocol cases


@pytest.fixture
def served(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    export.chmod(0o755)
    with in_process_server(export, threads=2, state_dir=str(tmp_path / "state")) as srv:
        c = Nfs3(srv.port)
        try:
            yield export, c, c.mnt(srv.export.path)
        finally:
            c.close()


def test_setattr_guard(served):
    export, c, root = served
    (export / "g").write_bytes(b"abc")
    (export / "g").chmod(0o644)
    st, fh = c.lookup(root, b"g")
    assert st == 0
    st, fa = c.getattr(fh)
    ctime = fa[12]
    for wrong in ((ctime[0], (ctime[1] + 1) % 1_000_000_000), (ctime[0] - 1, ctime[1]), (0, 0)):
        st, (pre, post) = c.setattr(fh, X.Sattr3(mode=0o600), guard=wrong)
        assert st == S.NOT_SYNC, wrong
        assert post is not None and post[1] == 0o644              # wcc data on the error arm too
    assert stat.S_IMODE((export / "g").stat().st_mode) == 0o644
    st, (pre, post) = c.setattr(fh, X.Sattr3(mode=0o600), guard=ctime)
    assert st == 0 and pre[2] == ctime and post[1] == 0o600
    assert stat.S_IMODE((export / "g").stat().st_mode) == 0o600


def test_guarded_create_over_an_existing_file(served):
    export, c, root = served
    (export / "exists").write_bytes(b"keep me")
    st, fh, attr, (pre, post) = c.create(root, b"exists", 1, X.Sattr3(mode=0o600, size=0))
    assert st == S.EXIST and fh is None and post is not None
    assert (export / "exists").read_bytes() == b"keep me"
    st, fh, attr, _ = c.create(root, b"fresh", 1, X.Sattr3(mode=0o640))
    assert st == 0 and fh and attr[1] == 0o640
    assert stat.S_IMODE((export / "fresh").stat().st_mode) == 0o640
    # UNCHECKED over the existing file applies only the size
    st, fh, attr, _ = c.create(root, b"exists", 0, X.Sattr3(mode=0o600, size=4))
    assert st == 0 and (export / "exists").read_bytes() == b"keep"


def test_rename_over_files_and_directories(served):
    export, c, root = served
    (export / "src").write_bytes(b"new content")
    (export / "dst").write_bytes(b"old content")
    os.link(export / "dst", export / "dst-link")
    assert c.rename(root, b"src", root, b"dst") == 0
    assert (export / "dst").read_bytes() == b"new content" and not (export / "src").exists()
    assert (export / "dst-link").read_bytes() == b"old content"        # the replaced inode survives via its link
    assert (export / "dst-link").stat().st_nlink == 1

    (export / "d1").mkdir()
    (export / "d1" / "inside").write_bytes(b"1")
    (export / "full").mkdir()
    (export / "full" / "x").write_bytes(b"x")
    (export / "empty").mkdir()
    st = c.rename(root, b"d1", root, b"full")
    assert st in (S.NOTEMPTY, S.EXIST), st                              # rename(2): ENOTEMPTY or EEXIST
    assert (export / "full" / "x").exists() and (export / "d1" / "inside").exists()
    assert c.rename(root, b"dst", root, b"full") == S.ISDIR            # a file over a directory
    assert c.rename(root, b"d1", root, b"dst") == S.NOTDIR             # a directory over a file
    assert c.rename(root, b"d1", root, b"empty") == 0                  # over an empty directory: replaced
    assert (export / "empty" / "inside").read_bytes() == b"1" and not (export / "d1").exists()
    st, dfh = c.lookup(root, b"empty")
    assert c.rename(root, b"empty", dfh, b"sub") == S.INVAL            # into itself


def test_rmdir_of_a_non_empty_directory(served):
    export, c, root = served
    (export / "d").mkdir()
    (export / "d" / "f").write_bytes(b"")
    assert c.rmdir(root, b"d") == S.NOTEMPTY
    assert (export / "d" / "f").exists()
    assert c.rmdir(root, b"nope") == S.NOENT
    assert c.rmdir(root, b"d/f") == S.INVAL
    st, dfh = c.lookup(root, b"d")
    assert c.rmdir(dfh, b"f") == S.NOTDIR
    assert c.remove(dfh, b"f") == 0
    assert c.rmdir(root, b"d") == 0 and not (export / "d").exists()


def test_non_owner_is_denied_writing_a_root_file(served):
    export, c, root = served
    f = export / "rootfile"
    f.write_bytes(b"root data")
    f.chmod(0o644)
    mine = export / "userfile"
    mine.write_bytes(b"user data")
    os.chown(mine, 1000, 1000)
    mine.chmod(0o644)
    st, fh = c.lookup(root, b"rootfile")
    assert st == 0
    st, *_ = c.write(fh, 0, b"EVIL", cred=USER_CRED)
    assert st == S.ACCES
    st, _ = c.setattr(fh, X.Sattr3(size=0), cred=USER_CRED)
    assert st == S.ACCES
    st, _ = c.setattr(fh, X.Sattr3(mode=0o666), cred=USER_CRED)
    assert st == S.PERM
    assert f.read_bytes() == b"root data" and stat.S_IMODE(f.stat().st_mode) == 0o644
    assert c.create(root, b"new", 0, cred=USER_CRED)[0] == S.ACCES   # root's 0755 directory
    assert c.remove(root, b"rootfile", cred=USER_CRED) == S.ACCES
    # the same uid may write its own file, and root may write anything
    st, fh2 = c.lookup(root, b"userfile")
    st, n, committed, _ = c.write(fh2, 0, b"USER", cred=USER_CRED)
    assert (st, n) == (0, 4) and mine.read_bytes() == b"USER data"
    st, n, _, _ = c.write(fh, 0, b"ROOT")
    assert (st, n) == (0, 4) and f.read_bytes() == b"ROOT data"


def test_read_only_export_refuses_every_change(tmp_path):
    export = tmp_path / "export"
    (export / "d").mkdir(parents=True)
    (export / "f").write_bytes(b"unchanged")
    before = snapshot(str(export))
    with ServerProcess(export, threads=2, extra=["--read-only", "--state-dir", str(tmp_path / "state")]) as srv:
        c = Nfs3(srv.port)
        try:
            root = c.mnt(str(export))
            st, fh = c.lookup(root, b"f")
            assert st == 0
            assert c.write(fh, 0, b"X")[0] == S.ROFS
            assert c.setattr(fh, X.Sattr3(mode=0o600))[0] == S.ROFS
            assert c.create(root, b"new", 0)[0] == S.ROFS
            assert c.create(root, b"new", 2, bytes(8))[0] == S.ROFS
            assert c.mkdir(root, b"newdir")[0] == S.ROFS
            assert c.remove(root, b"f") == S.ROFS
            assert c.rmdir(root, b"d") == S.ROFS
            assert c.rename(root, b"f", root, b"g") == S.ROFS
            assert c.getattr(fh)[0] == 0                        # reading still works
        finally:
            c.close()
        ctx = NfsContext(srv.url)
        try:
            assert ctx.creat("/libnfs", 0o644)[0] == -30        # EROFS through libnfs too
            assert ctx.mkdir("/x") == -30 and ctx.unlink("/f") == -30
        finally:
            ctx.destroy()
        code, err = srv.stop()
    assert code == 0 and leaked_pages(err) == 0
    assert snapshot(str(export)) == before


def test_root_squash_maps_uid_0_to_nobody(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    export.chmod(0o777)
    (export / "rootfile").write_bytes(b"root only")
    (export / "rootfile").chmod(0o644)
    with ServerProcess(export, threads=2, extra=["--root-squash", "--state-dir", str(tmp_path / "state")]) as srv:
        c = Nfs3(srv.port)
        try:
            root = c.mnt(str(export))
            st, fh, attr, _ = c.create(root, b"made-by-root", 1, X.Sattr3(mode=0o644))
            assert st == 0 and (attr[3], attr[4]) == (65534, 65534)
            st, fh, attr, _ = c.mkdir(root, b"dir-by-root")
            assert st == 0
            st, rfh = c.lookup(root, b"rootfile")
            assert c.write(rfh, 0, b"X")[0] == S.ACCES        # squashed root is not root
        finally:
            c.close()
        ctx = NfsContext(srv.url)                          # libnfs sends uid 0 (the test runs as root)
        try:
            rc, nfh = ctx.creat("/made-by-libnfs", 0o600)
            assert rc == 0
            assert ctx.close(nfh) == 0
        finally:
            ctx.destroy()
        code, err = srv.stop()
    assert code == 0 and leaked_pages(err) == 0
    for name in ("made-by-root", "dir-by-root", "made-by-libnfs"):
        st = os.lstat(export / name)
        assert (st.st_uid, st.st_gid) == (65534, 65534), name
    assert (export / "rootfile").read_bytes() == b"root only"
