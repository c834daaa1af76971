"""rpcsrv.nfsd.nfs3 / proto.nfs3xdr: every NFSv3 procedure driven through dispatch() with
real XDR (calls packed here, replies decoded by decoders written here, not
the module's), against an Export on a tmp_path tree and a fake request
context."""

from __future__ import annotations

import os
import stat
import time
from types import SimpleNamespace

import pytest

from rpcsrv.nfsd import nfs3
from rpcsrv.proto import nfs3res, nfs3xdr
from rpcsrv.proto import rpcmsg as m
from rpcsrv.svc.dispatch import Dispatcher, dispatch
from rpcsrv.export import Export
from rpcsrv.proto.nfs3const import NFS_PROGRAM, NfsProc3 as P, NfsStat3 as S
from rpcclient import decode_reply, pack_call
from rpcsrv.proto.rpcmsg import AuthSys, decode_call
from rpcsrv.svc.svc import XprtLimits
from rpcsrv.proto.xdr import Packer, Unpacker

KEY = b"n" * 32
VERF = b"WVERF-01"
ANON = 65534
SEG = 4096
NEED_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, permission model)")


# --------------------------------------------------------------------------
# fake request context


class Cfg:
    def __init__(self, **kw):
        self.read_only = False
        self.root_squash = False
        self.anon_uid = ANON
        self.anon_gid = ANON
        self.write_verifier = VERF
        self.mount_clients = None
        self.__dict__.update(kw)


class Ctx:
    def __init__(self, export, cred, **cfg):
        self.xid = 1
        self.addr = ("192.0.2.7", 801)
        self.cred = cred
        self.export = export
        self.config = Cfg(**cfg)
        fs = Export.FSINFO               # what the server's TCP limits are with a 1 MiB max_io
        self.limits = XprtLimits(rtmax=fs.rtmax, wtmax=fs.wtmax, dirmax=fs.rtmax, fsinfo=fs)
        self.unpacker = None
        self.payload = b""
        self.reads = 0

    def read_payload(self, fd, offset, count):
        self.reads += 1
        assert self.reads == 1, "read_payload called twice"
        self.payload = os.pread(fd, count, offset)
        return len(self.payload)

    def rewind(self):
        # a read handler runs again (svc.Request.rewind)
        self.reads = 0
        self.payload = b""

    def write_payload(self, fd, file_offset, rec_offset, length):
        # as the server does: straight from the request segments
        return os.pwritev(fd, self.unpacker.views(rec_offset, length), file_offset)


def auth(uid, gid=None, gids=()):
    return AuthSys(0, b"client", uid, uid if gid is None else gid, gids)


ROOT = auth(0)
DISPATCHER = Dispatcher([nfs3.make_program()])


# --------------------------------------------------------------------------
# independent reply decoders


def fattr(u):
    f = [u.unpack_uint() for _ in range(5)]
    size, used = u.unpack_uhyper(), u.unpack_uhyper()
    rdev = (u.unpack_uint(), u.unpack_uint())
    fsid, fileid = u.unpack_uhyper(), u.unpack_uhyper()
    times = [(u.unpack_uint(), u.unpack_uint()) for _ in range(3)]
    return SimpleNamespace(type=f[0], mode=f[1], nlink=f[2], uid=f[3], gid=f[4], size=size,
                           used=used, rdev=rdev, fsid=fsid, fileid=fileid, atime=times[0],
                           mtime=times[1], ctime=times[2])


def post_attr(u):
    return fattr(u) if u.unpack_bool() else None


def pre_attr(u):
    if not u.unpack_bool():
        return None
    return SimpleNamespace(size=u.unpack_uhyper(), mtime=(u.unpack_uint(), u.unpack_uint()),
                           ctime=(u.unpack_uint(), u.unpack_uint()))


def wcc(u):
    return pre_attr(u), post_attr(u)


def post_fh(u):
    return u.unpack_opaque() if u.unpack_bool() else None


def r_getattr(u, r):
    if r.status == 0:
        r.attr = fattr(u)


def r_wcc(u, r):
    r.pre, r.post = wcc(u)


def r_lookup(u, r):
    if r.status == 0:
        r.fh = u.unpack_opaque()
        r.attr = post_attr(u)
    r.dir_attr = post_attr(u)


def r_access(u, r):
    r.attr = post_attr(u)
    if r.status == 0:
        r.access = u.unpack_uint()


def r_readlink(u, r):
    r.attr = post_attr(u)
    if r.status == 0:
        r.data = u.unpack_opaque()


def r_read(u, r):
    r.attr = post_attr(u)
    if r.status == 0:
        r.count = u.unpack_uint()
        r.eof = u.unpack_bool()
        r.data = u.unpack_opaque()


def r_write(u, r):
    r.pre, r.post = wcc(u)
    if r.status == 0:
        r.count = u.unpack_uint()
        r.committed = u.unpack_uint()
        r.verf = u.unpack_fopaque(8)


def r_diropres(u, r):
    if r.status == 0:
        r.fh = post_fh(u)
        r.attr = post_attr(u)
    r.pre, r.post = wcc(u)


def r_rename(u, r):
    r.from_wcc = wcc(u)
    r.to_wcc = wcc(u)


def r_link(u, r):
    r.attr = post_attr(u)
    r.pre, r.post = wcc(u)


def _r_readdir(u, r, plus):
    r.attr = post_attr(u)
    if r.status != 0:
        return
    r.verf = u.unpack_fopaque(8)
    r.entries = []
    while u.unpack_bool():
        e = SimpleNamespace(fileid=u.unpack_uhyper(), name=u.unpack_opaque(),
                            cookie=u.unpack_uhyper())
        if plus:
            e.attr = post_attr(u)
            e.fh = post_fh(u)
        r.entries.append(e)
    r.eof = u.unpack_bool()


def r_readdir(u, r):
    _r_readdir(u, r, False)


def r_readdirplus(u, r):
    _r_readdir(u, r, True)


def r_fsstat(u, r):
    r.attr = post_attr(u)
    if r.status == 0:
        r.vals = [u.unpack_uhyper() for _ in range(6)] + [u.unpack_uint()]


def r_fsinfo(u, r):
    r.attr = post_attr(u)
    if r.status == 0:
        r.vals = [u.unpack_uint() for _ in range(7)]
        r.maxfilesize = u.unpack_uhyper()
        r.time_delta = (u.unpack_uint(), u.unpack_uint())
        r.properties = u.unpack_uint()


def r_pathconf(u, r):
    r.attr = post_attr(u)
    if r.status == 0:
        r.linkmax, r.name_max = u.unpack_uint(), u.unpack_uint()
        r.flags = [u.unpack_bool() for _ in range(4)]


def r_commit(u, r):
    r.pre, r.post = wcc(u)
    if r.status == 0:
        r.verf = u.unpack_fopaque(8)


DECODERS = {
    P.GETATTR: r_getattr, P.SETATTR: r_wcc, P.LOOKUP: r_lookup, P.ACCESS: r_access,
    P.READLINK: r_readlink, P.READ: r_read, P.WRITE: r_write, P.CREATE: r_diropres,
    P.MKDIR: r_diropres, P.SYMLINK: r_diropres, P.MKNOD: r_diropres, P.REMOVE: r_wcc,
    P.RMDIR: r_wcc, P.RENAME: r_rename, P.LINK: r_link, P.READDIR: r_readdir,
    P.READDIRPLUS: r_readdirplus, P.FSSTAT: r_fsstat, P.FSINFO: r_fsinfo,
    P.PATHCONF: r_pathconf, P.COMMIT: r_commit,
}


# --------------------------------------------------------------------------
# argument packing (independent of nfs3xdr)


def a_fh(fh):
    return lambda p: p.pack_opaque(fh)


def a_dirop(dfh, name):
    def f(p):
        p.pack_opaque(dfh)
        p.pack_opaque(name if isinstance(name, bytes) else name.encode())
    return f


def pk_time(p, t):
    if t is None:
        p.pack_uint(0)
    elif t == "server":
        p.pack_uint(1)
    else:
        p.pack_uint(2)
        p.pack_uint(t[0])
        p.pack_uint(t[1])


def pk_sattr(p, mode=None, uid=None, gid=None, size=None, atime=None, mtime=None):
    for v in (mode, uid, gid):
        p.pack_bool(v is not None)
        if v is not None:
            p.pack_uint(v)
    p.pack_bool(size is not None)
    if size is not None:
        p.pack_uhyper(size)
    pk_time(p, atime)
    pk_time(p, mtime)


def segmented(data):
    segs = [data[i:i + SEG] for i in range(0, len(data), SEG)] or [b""]
    return Unpacker(segs, len(data), SEG)


class Client:
    def __init__(self, export, cred=ROOT, **cfg):
        self.e = export
        self.ctx = Ctx(export, cred, **cfg)
        self.root = export.root_handle()
        self.xid = 100

    def raw(self, proc, pack_args):
        """-> (ReplyHeader, Unpacker at the results, Outcome)."""
        self.xid += 1
        p = Packer()
        pack_call(p, self.xid, NFS_PROGRAM, 3, int(proc), cred=self.ctx.cred)
        pack_args(p)
        u = segmented(p.get_buffer())
        call = decode_call(u)
        ctx = self.ctx
        ctx.unpacker, ctx.payload, ctx.reads = u, b"", 0
        out = Packer()
        oc = dispatch(DISPATCHER, call, u, ctx, out)
        reply = out.get_buffer()
        n = oc.payload
        if n:
            assert n == len(ctx.payload)
            reply += ctx.payload + b"\0" * (-n & 3)
        ru = Unpacker.from_bytes(reply)
        hdr = decode_reply(ru)
        assert hdr.xid == self.xid
        return hdr, ru, oc

    def call(self, proc, pack_args):
        hdr, u, oc = self.raw(proc, pack_args)
        assert hdr.accept_stat == m.SUCCESS, (hdr, oc)
        r = SimpleNamespace(status=u.unpack_uint())
        DECODERS[proc](u, r)
        u.done()                             # the encoder wrote exactly the RFC's fields
        assert oc.status == S(r.status).name.lower()
        return r

    # conveniences
    def getattr(self, fh):
        return self.call(P.GETATTR, a_fh(fh))

    def lookup(self, dfh, name):
        return self.call(P.LOOKUP, a_dirop(dfh, name))

    def fh(self, path):
        fh = self.root
        for c in path.split("/"):
            r = self.lookup(fh, c)
            assert r.status == 0, (path, r.status)
            fh = r.fh
        return fh

    def read(self, fh, off, count):
        def f(p):
            p.pack_opaque(fh)
            p.pack_uhyper(off)
            p.pack_uint(count)
        return self.call(P.READ, f)

    def write(self, fh, off, data, stable=0, count=None):
        def f(p):
            p.pack_opaque(fh)
            p.pack_uhyper(off)
            p.pack_uint(len(data) if count is None else count)
            p.pack_uint(stable)
            p.pack_opaque(data)
        return self.call(P.WRITE, f)

    def setattr(self, fh, guard=None, **sa):
        def f(p):
            p.pack_opaque(fh)
            pk_sattr(p, **sa)
            p.pack_bool(guard is not None)
            if guard is not None:
                p.pack_uint(guard[0])
                p.pack_uint(guard[1])
        return self.call(P.SETATTR, f)

    def create(self, dfh, name, how=0, verf=None, **sa):
        def f(p):
            a_dirop(dfh, name)(p)
            p.pack_uint(how)
            if how == 2:
                p.pack_fopaque(8, verf)
            else:
                pk_sattr(p, **sa)
        return self.call(P.CREATE, f)

    def mkdir(self, dfh, name, **sa):
        def f(p):
            a_dirop(dfh, name)(p)
            pk_sattr(p, **sa)
        return self.call(P.MKDIR, f)

    def symlink(self, dfh, name, target, **sa):
        def f(p):
            a_dirop(dfh, name)(p)
            pk_sattr(p, **sa)
            p.pack_opaque(target)
        return self.call(P.SYMLINK, f)

    def mknod(self, dfh, name, ftype, spec=(0, 0), **sa):
        def f(p):
            a_dirop(dfh, name)(p)
            p.pack_uint(ftype)
            if ftype in (3, 4):
                pk_sattr(p, **sa)
                p.pack_uint(spec[0])
                p.pack_uint(spec[1])
            elif ftype in (6, 7):
                pk_sattr(p, **sa)
        return self.call(P.MKNOD, f)

    def remove(self, dfh, name):
        return self.call(P.REMOVE, a_dirop(dfh, name))

    def rmdir(self, dfh, name):
        return self.call(P.RMDIR, a_dirop(dfh, name))

    def rename(self, fdfh, fname, tdfh, tname):
        def f(p):
            a_dirop(fdfh, fname)(p)
            a_dirop(tdfh, tname)(p)
        return self.call(P.RENAME, f)

    def link(self, fh, dfh, name):
        def f(p):
            p.pack_opaque(fh)
            a_dirop(dfh, name)(p)
        return self.call(P.LINK, f)

    def readdir(self, dfh, cookie=0, verf=b"\0" * 8, count=4096):
        def f(p):
            p.pack_opaque(dfh)
            p.pack_uhyper(cookie)
            p.pack_fopaque(8, verf)
            p.pack_uint(count)
        return self.call(P.READDIR, f)

    def readdirplus(self, dfh, cookie=0, verf=b"\0" * 8, dircount=4096, maxcount=8192):
        def f(p):
            p.pack_opaque(dfh)
            p.pack_uhyper(cookie)
            p.pack_fopaque(8, verf)
            p.pack_uint(dircount)
            p.pack_uint(maxcount)
        return self.call(P.READDIRPLUS, f)

    def access(self, fh, mask=0x3F):
        def f(p):
            p.pack_opaque(fh)
            p.pack_uint(mask)
        return self.call(P.ACCESS, f)

    def commit(self, fh, off=0, count=0):
        def f(p):
            p.pack_opaque(fh)
            p.pack_uhyper(off)
            p.pack_uint(count)
        return self.call(P.COMMIT, f)


# --------------------------------------------------------------------------
# fixtures


@pytest.fixture
def tree(tmp_path):
    out = tmp_path / "outside"
    out.mkdir()
    (out / "secret.txt").write_bytes(b"secret")
    exp = tmp_path / "exp"
    exp.mkdir()
    os.chmod(exp, 0o755)
    (exp / "a.txt").write_bytes(b"alpha")
    (exp / "big.bin").write_bytes(bytes(range(256)) * 40)     # 10240 bytes
    (exp / "d1").mkdir()
    (exp / "d1" / "b.txt").write_bytes(b"bravo")
    os.symlink("../outside/secret.txt", exp / "link_out")
    os.symlink("d1/b.txt", exp / "link_in")
    p = exp / "private.txt"
    p.write_bytes(b"private")
    os.chmod(p, 0o600)
    if os.geteuid() == 0:
        (exp / "udir").mkdir()
        os.chown(exp / "udir", 1000, 1000)
        os.chmod(exp / "udir", 0o755)
        (exp / "udir" / "u.txt").write_bytes(b"user file")
        os.chown(exp / "udir" / "u.txt", 1000, 1000)
        os.chmod(exp / "udir" / "u.txt", 0o644)
        (exp / "pub").mkdir()
        os.chmod(exp / "pub", 0o777)
        (exp / "sticky").mkdir()
        os.chmod(exp / "sticky", 0o1777)
        (exp / "sticky" / "theirs").write_bytes(b"x")
        os.chown(exp / "sticky" / "theirs", 1001, 1001)
    return exp


@pytest.fixture
def export(tree):
    e = Export(str(tree), key=KEY)
    yield e
    e.close()


@pytest.fixture
def c(export):
    return Client(export)


def ftime(path, which="mtime"):
    ns = getattr(os.lstat(path), "st_%s_ns" % which)
    return divmod(ns, 10**9)


# --------------------------------------------------------------------------
# the table


def test_table_shape():
    prog = nfs3.make_program()
    assert prog.prog == 100003 and list(prog.versions) == [3]
    t = prog.versions[3]
    assert sorted(t) == list(range(22))
    for proc, entry in t.items():
        assert entry.name == P(proc).name.lower()
    non_idem = {n for n, e in ((e.name, e) for e in t.values()) if not e.idempotent}
    assert non_idem == {"create", "remove", "rename", "link", "mkdir", "rmdir", "symlink",
                        "mknod", "setattr"}


def test_null(c):
    hdr, u, oc = c.raw(P.NULL, lambda p: None)
    assert hdr.accept_stat == m.SUCCESS and u.remaining == 0 and oc.status == "ok"


# --------------------------------------------------------------------------
# read side


def test_getattr(c, tree, export):
    r = c.getattr(c.root)
    st = os.stat(tree)
    assert r.status == 0 and r.attr.type == 2 and r.attr.fileid == st.st_ino
    assert r.attr.mode == 0o755 and r.attr.fsid == export.fsid
    assert r.attr.mtime == divmod(st.st_mtime_ns, 10**9)
    fh = c.fh("big.bin")
    a = c.getattr(fh).attr
    assert a.type == 1 and a.size == 10240 and a.nlink == 1
    assert a.used == os.stat(tree / "big.bin").st_blocks * 512
    # a forged handle, a removed file
    assert c.getattr(b"\1" * 30).status == S.BADHANDLE
    assert c.getattr(b"").status == S.BADHANDLE
    os.unlink(tree / "big.bin")
    assert c.getattr(fh).status == S.STALE


def test_lookup(c, tree):
    r = c.lookup(c.root, "a.txt")
    assert r.status == 0 and r.attr.size == 5 and r.dir_attr.type == 2
    d1 = c.fh("d1")
    assert c.lookup(d1, "b.txt").attr.size == 5
    # .. at the root is the root; . is the directory itself
    assert c.lookup(c.root, "..").fh == c.root
    assert c.lookup(c.root, ".").fh == c.root
    assert c.lookup(d1, "..").fh == c.root
    # symlinks are not followed
    r = c.lookup(c.root, "link_out")
    assert r.status == 0 and r.attr.type == 5 and r.attr.size == len("../outside/secret.txt")
    r = c.lookup(c.root, "nope")
    assert r.status == S.NOENT and r.dir_attr is not None and r.dir_attr.type == 2
    assert c.lookup(c.fh("a.txt"), "x").status == S.NOTDIR
    assert c.lookup(c.root, "x" * 256).status == S.NAMETOOLONG
    assert c.lookup(c.root, "x" * 255).status == S.NOENT
    assert c.lookup(c.root, "d1/b.txt").status == S.INVAL


def test_readlink(c):
    r = c.call(P.READLINK, a_fh(c.fh("link_out")))
    assert r.status == 0 and r.data == b"../outside/secret.txt" and r.attr.type == 5
    r = c.call(P.READLINK, a_fh(c.fh("a.txt")))
    assert r.status == S.INVAL and r.attr.type == 1


def test_read(c, tree):
    fh = c.fh("big.bin")
    data = (tree / "big.bin").read_bytes()
    r = c.read(fh, 0, 4096)
    assert r.status == 0 and r.count == 4096 and r.data == data[:4096] and not r.eof
    assert r.attr.size == 10240
    r = c.read(fh, 10000, 1000)          # short at EOF
    assert r.count == 240 and r.eof and r.data == data[10000:]
    r = c.read(fh, 10000, 240)           # ends exactly at EOF
    assert r.count == 240 and r.eof
    r = c.read(fh, 10240, 10)            # at EOF
    assert r.status == 0 and r.count == 0 and r.eof and r.data == b""
    r = c.read(fh, 50000, 10)            # past EOF
    assert r.count == 0 and r.eof
    r = c.read(fh, 2**64 - 1, 10)        # beyond any offset
    assert r.status == 0 and r.count == 0 and r.eof
    r = c.read(fh, 1, 3)                 # odd length: padding
    assert r.data == data[1:4]
    r = c.read(fh, 0, 0)
    assert r.status == 0 and r.count == 0 and not r.eof
    assert c.read(c.root, 0, 10).status == S.ISDIR
    r = c.read(c.fh("link_in"), 0, 10)   # a symlink is not followed: not a regular file
    assert r.status == S.INVAL


def test_read_count_capped_at_rtmax(c, tree):
    (tree / "huge").write_bytes(b"z" * (1 << 20) + b"tail")
    r = c.read(c.fh("huge"), 0, 3 << 20)
    assert r.status == 0 and r.count == 1 << 20 and not r.eof


def _read_all(c, dfh, plus, **kw):
    names, cookie, verf, pages = [], 0, b"\0" * 8, 0
    while True:
        r = (c.readdirplus if plus else c.readdir)(dfh, cookie, verf, **kw)
        assert r.status == 0, r.status
        pages += 1
        names += [e.name for e in r.entries]
        if r.eof:
            return names, pages, r
        cookie, verf = r.entries[-1].cookie, r.verf


def test_readdir_paging(c, tree):
    big = tree / "many"
    big.mkdir()
    want = {b"f%03d" % i for i in range(120)}
    for n in want:
        (big / n.decode()).write_bytes(b"")
    dfh = c.fh("many")
    names, pages, r = _read_all(c, dfh, False, count=512)
    assert pages > 5
    assert sorted(names) == sorted(want | {b".", b".."}) and len(names) == len(set(names))
    assert r.attr.type == 2
    names, pages, _ = _read_all(c, dfh, True, dircount=300, maxcount=2048)
    assert sorted(names) == sorted(want | {b".", b".."}) and pages > 5


def test_readdirplus_attrs_and_handles(c, tree):
    r = c.readdirplus(c.root, maxcount=65536)
    assert r.status == 0 and r.eof
    ents = {e.name: e for e in r.entries}
    assert ents[b"."].fh == c.root and ents[b".."].fh == c.root
    a = ents[b"a.txt"]
    assert a.attr.size == 5 and a.fileid == os.lstat(tree / "a.txt").st_ino
    assert c.getattr(a.fh).attr.fileid == a.fileid
    assert ents[b"link_out"].attr.type == 5      # the link itself
    r2 = c.readdir(c.root, count=65536)
    assert {e.name for e in r2.entries} == set(ents) and r2.eof
    assert {e.name: e.fileid for e in r2.entries}[b"d1"] == ents[b"d1"].fileid


def test_readdir_cookie_errors(c, tree):
    r = c.readdir(c.root, count=65536)
    verf = r.verf
    assert c.readdir(c.root, cookie=12345, verf=verf).status == S.BAD_COOKIE
    # a verifier of another directory
    other = c.readdir(c.fh("d1")).verf
    assert other != verf
    assert c.readdir(c.root, cookie=r.entries[2].cookie, verf=other).status == S.BAD_COOKIE
    # too small for a single entry
    r = c.readdir(c.root, count=40)
    assert r.status == S.TOOSMALL and r.attr is not None
    assert c.readdirplus(c.root, maxcount=100).status == S.TOOSMALL
    assert c.readdir(c.fh("a.txt")).status == S.NOTDIR


def test_fsstat_fsinfo_pathconf(c, tree):
    r = c.call(P.FSSTAT, a_fh(c.root))
    v = os.statvfs(tree)
    assert r.status == 0 and r.vals[0] == v.f_blocks * v.f_frsize and r.attr.type == 2
    r = c.call(P.FSINFO, a_fh(c.root))
    assert r.status == 0 and r.vals[0] == 1 << 20 and r.vals[3] == 1 << 20
    assert r.time_delta == (0, 1) and r.properties & 0x1B == 0x1B
    r = c.call(P.PATHCONF, a_fh(c.root))
    assert r.status == 0 and r.name_max == 255 and r.flags == [True, True, False, True]
    assert c.call(P.FSINFO, a_fh(b"\0" * 40)).status == S.BADHANDLE


@NEED_ROOT
def test_access(export, tree):
    root = Client(export)
    fh = root.fh("private.txt")
    assert root.access(fh).access == 0x0C | 0x01         # read, modify, extend
    assert root.access(root.root).access == 0x1F         # dir: all but execute
    user = Client(export, auth(1000))
    r = user.access(fh)
    assert r.status == 0 and r.access == 0 and r.attr.mode == 0o600
    assert user.access(user.fh("udir")).access == 0x1F  # owner of udir
    assert user.access(user.root).access == 0x03         # read + lookup
    ro = Client(export, read_only=True)
    assert ro.access(fh).access == 0x01


# --------------------------------------------------------------------------
# write side


def test_write_stabilities(c, tree):
    fh = c.fh("a.txt")
    for how in (0, 1, 2):
        r = c.write(fh, 0, b"W%d" % how, stable=how)
        assert r.status == 0 and r.count == 2 and r.committed == how and r.verf == VERF
        assert r.pre is not None and r.post is not None
    assert (tree / "a.txt").read_bytes() == b"W2pha"
    # data spanning request pages, appended past EOF
    data = os.urandom(9000)
    r = c.write(fh, 100, data)
    assert r.status == 0 and r.count == 9000 and r.pre.size == 5 and r.post.size == 9100
    got = (tree / "a.txt").read_bytes()
    assert got[100:] == data and got[5:100] == b"\0" * 95
    r = c.commit(fh)
    assert r.status == 0 and r.verf == VERF and r.post.size == 9100
    assert c.write(c.root, 0, b"x").status == S.ISDIR
    assert c.write(c.fh("link_in"), 0, b"x").status == S.INVAL
    assert c.write(fh, 2**63 - 2, b"xyz").status == S.FBIG
    assert c.commit(c.root).status == S.ISDIR


def test_write_garbage(c):
    fh = c.fh("a.txt")
    hdr, _, oc = c.raw(P.WRITE, lambda p: (p.pack_opaque(fh), p.pack_uhyper(0), p.pack_uint(9),
                                           p.pack_uint(0), p.pack_opaque(b"abc")))
    assert hdr.accept_stat == m.GARBAGE_ARGS          # count != data length
    hdr, _, _ = c.raw(P.WRITE, lambda p: (p.pack_opaque(fh), p.pack_uhyper(0), p.pack_uint(3),
                                          p.pack_uint(7), p.pack_opaque(b"abc")))
    assert hdr.accept_stat == m.GARBAGE_ARGS          # stable_how 7


def test_setattr(c, tree):
    fh = c.fh("a.txt")
    p = tree / "a.txt"
    r = c.setattr(fh, mode=0o4640)
    assert r.status == 0 and r.pre is not None and r.post.mode == 0o4640
    assert stat.S_IMODE(os.lstat(p).st_mode) == 0o4640
    r = c.setattr(fh, size=2)
    assert r.status == 0 and r.pre.size == 5 and r.post.size == 2 and p.read_bytes() == b"al"
    r = c.setattr(fh, atime=(1000, 5), mtime=(2000, 7))
    assert r.status == 0 and r.post.mtime == (2000, 7) and r.post.atime == (1000, 5)
    assert ftime(p) == (2000, 7)
    before = time.time()
    r = c.setattr(fh, mtime="server")
    assert r.post.mtime[0] >= int(before) - 1 and r.post.atime == (1000, 5)
    if os.geteuid() == 0:
        r = c.setattr(fh, uid=1234, gid=4321)
        assert r.status == 0 and (r.post.uid, r.post.gid) == (1234, 4321)
        assert (os.lstat(p).st_uid, os.lstat(p).st_gid) == (1234, 4321)
    # the ctime guard
    ct = c.getattr(fh).attr.ctime
    assert c.setattr(fh, guard=(ct[0], ct[1] + 1 if ct[1] < 999999999 else 0),
                     mode=0o600).status == S.NOT_SYNC
    assert stat.S_IMODE(os.lstat(p).st_mode) != 0o600
    assert c.setattr(fh, guard=ct, mode=0o600).status == 0
    # size of a directory / of a symlink
    assert c.setattr(c.root, size=0).status == S.ISDIR
    assert c.setattr(c.fh("link_in"), size=0).status == S.INVAL
    # a symlink's times are its own, the target is untouched
    tgt = ftime(tree / "d1" / "b.txt")
    assert c.setattr(c.fh("link_in"), mtime=(3000, 0)).status == 0
    assert ftime(tree / "link_in") == (3000, 0) and ftime(tree / "d1" / "b.txt") == tgt


def test_create_modes(c, tree):
    r = c.create(c.root, "new.txt", mode=0o640)
    assert r.status == 0 and r.fh and r.attr.type == 1 and r.attr.mode == 0o640
    assert r.pre is not None and r.post is not None and r.post.mtime >= r.pre.mtime
    assert stat.S_IMODE(os.lstat(tree / "new.txt").st_mode) == 0o640
    assert c.getattr(r.fh).attr.fileid == os.lstat(tree / "new.txt").st_ino
    # GUARDED on an existing name -> EXIST, with wcc_data
    r = c.create(c.root, "new.txt", how=1, mode=0o600)
    assert r.status == S.EXIST and r.pre is not None and r.post is not None
    # UNCHECKED on an existing file: size applied, mode not
    (tree / "new.txt").write_bytes(b"content")
    r = c.create(c.root, "new.txt", how=0, mode=0o600, size=0)
    assert r.status == 0 and r.attr.size == 0 and r.attr.mode == 0o640
    # UNCHECKED on an existing directory / symlink -> EXIST
    assert c.create(c.root, "d1", how=0).status == S.EXIST
    assert c.create(c.root, "link_out", how=0).status == S.EXIST
    assert not (tree.parent / "outside" / "secret.txt").read_bytes() == b""
    assert c.create(c.root, "..", how=0).status == S.INVAL
    assert c.create(c.root, "y" * 256).status == S.NAMETOOLONG
    assert c.create(c.fh("a.txt"), "x").status == S.NOTDIR


def test_create_exclusive(c, tree):
    v1, v2 = b"\x81\x02\x03\x04\x05\x06\x07\x08", b"other!!!"
    r = c.create(c.root, "ex", how=2, verf=v1)
    assert r.status == 0 and r.attr.size == 0
    again = c.create(c.root, "ex", how=2, verf=v1)     # a retransmission
    assert again.status == 0 and again.fh == r.fh
    assert c.create(c.root, "ex", how=2, verf=v2).status == S.EXIST
    assert c.create(c.root, "a.txt", how=2, verf=v1).status == S.EXIST
    # the client's follow-up SETATTR replaces the verifier times
    assert c.setattr(r.fh, mode=0o644, atime="server", mtime="server").status == 0
    assert c.create(c.root, "ex", how=2, verf=v1).status == S.EXIST


def test_mkdir_symlink_mknod(c, tree):
    r = c.mkdir(c.root, "nd", mode=0o750)
    assert r.status == 0 and r.attr.type == 2 and r.attr.mode == 0o750
    assert stat.S_IMODE(os.lstat(tree / "nd").st_mode) == 0o750
    assert c.mkdir(c.root, "nd").status == S.EXIST
    assert c.mkdir(c.root, "a.txt").status == S.EXIST
    r = c.symlink(c.root, "sl", b"../outside/secret.txt")
    assert r.status == 0 and r.attr.type == 5 and os.readlink(tree / "sl") == "../outside/secret.txt"
    assert c.call(P.READLINK, a_fh(r.fh)).data == b"../outside/secret.txt"
    assert c.symlink(c.root, "sl", b"x").status == S.EXIST
    assert c.symlink(c.root, "sl2", b"a\0b").status == S.INVAL
    r = c.mknod(c.root, "fifo", 7, mode=0o620)
    assert r.status == 0 and r.attr.type == 7 and stat.S_ISFIFO(os.lstat(tree / "fifo").st_mode)
    assert r.attr.mode == 0o620
    r = c.mknod(c.root, "sock", 6)
    assert r.status == 0 and r.attr.type == 6
    assert c.mknod(c.root, "reg", 1).status == S.BADTYPE
    assert c.mknod(c.root, "weird", 99).status == S.BADTYPE
    if os.geteuid() == 0:
        r = c.mknod(c.root, "null", 4, spec=(1, 3), mode=0o666)
        assert r.status == 0 and r.attr.type == 4 and r.attr.rdev == (1, 3)
        u = Client(c.e, auth(1000))
        assert u.mknod(u.fh("udir"), "dev", 4, spec=(1, 3)).status == S.PERM
        assert u.mknod(u.fh("udir"), "ufifo", 7).status == 0


def test_remove_rmdir(c, tree):
    r = c.remove(c.root, "a.txt")
    assert r.status == 0 and r.pre is not None and r.post is not None
    assert not (tree / "a.txt").exists()
    r = c.remove(c.root, "a.txt")
    assert r.status == S.NOENT and r.post is not None
    assert c.remove(c.root, "d1").status == S.ISDIR
    assert c.rmdir(c.root, "d1").status == S.NOTEMPTY
    assert c.rmdir(c.root, "big.bin").status == S.NOTDIR
    assert c.rmdir(c.root, ".").status == S.INVAL
    assert c.remove(c.root, "link_out").status == 0      # the link, not the target
    assert (tree.parent / "outside" / "secret.txt").exists()
    assert c.remove(c.fh("d1"), "b.txt").status == 0
    assert c.rmdir(c.root, "d1").status == 0 and not (tree / "d1").exists()


def test_rename(c, tree):
    d1 = c.fh("d1")
    fh = c.fh("a.txt")
    r = c.rename(c.root, "a.txt", d1, "moved.txt")
    assert r.status == 0 and all(x is not None for x in r.from_wcc + r.to_wcc)
    assert (tree / "d1" / "moved.txt").read_bytes() == b"alpha"
    assert c.getattr(fh).status == 0                     # the handle survives
    # over an existing file (POSIX: replaced atomically)
    r = c.rename(d1, "moved.txt", d1, "b.txt")
    assert r.status == 0 and (tree / "d1" / "b.txt").read_bytes() == b"alpha"
    assert c.rename(c.root, "nope", d1, "x").status == S.NOENT
    (tree / "e1").mkdir()
    (tree / "e2").mkdir()
    (tree / "e2" / "f").write_bytes(b"")
    assert c.rename(c.root, "e1", c.root, "e2").status in (S.NOTEMPTY, S.EXIST)
    assert c.rename(c.root, "big.bin", c.root, "e1").status == S.ISDIR
    assert c.rename(c.root, "e1", c.root, "big.bin").status == S.NOTDIR
    assert c.rename(c.root, "d1", d1, "inside").status == S.INVAL
    assert c.rename(c.root, "big.bin", c.root, "..").status == S.INVAL
    assert c.rename(c.root, "big.bin", c.fh("big.bin"), "x").status == S.NOTDIR


def test_link(c, tree):
    fh = c.fh("a.txt")
    r = c.link(fh, c.fh("d1"), "hard")
    assert r.status == 0 and r.attr.nlink == 2 and r.pre is not None and r.post is not None
    assert os.lstat(tree / "d1" / "hard").st_ino == os.lstat(tree / "a.txt").st_ino
    assert c.link(fh, c.root, "big.bin").status == S.EXIST
    assert c.link(c.fh("d1"), c.root, "dlink").status == S.ISDIR
    r = c.link(c.fh("link_out"), c.root, "link2")       # a link to the symlink itself
    assert r.status == 0 and os.readlink(tree / "link2") == "../outside/secret.txt"


# --------------------------------------------------------------------------
# identity


@NEED_ROOT
def test_new_objects_belong_to_the_caller(export, tree):
    u = Client(export, auth(1000, 1000, (1000, 50)))
    ud = u.fh("udir")
    r = u.create(ud, "mine", mode=0o644)
    assert r.status == 0 and (r.attr.uid, r.attr.gid) == (1000, 1000)
    st = os.lstat(tree / "udir" / "mine")
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    r = u.mkdir(ud, "sub")
    assert (r.attr.uid, r.attr.gid, r.attr.mode) == (1000, 1000, 0o755)
    r = u.symlink(ud, "sym", b"mine")
    assert os.lstat(tree / "udir" / "sym").st_uid == 1000
    # a setgid directory gives its group, and S_ISGID to subdirectories
    os.chown(tree / "udir" / "sub", 1000, 77)
    os.chmod(tree / "udir" / "sub", 0o2775)
    sub = u.fh("udir/sub")
    assert u.create(sub, "g").attr.gid == 77
    r = u.mkdir(sub, "gd", mode=0o755)
    assert r.attr.gid == 77 and r.attr.mode == 0o2755
    # giving a file away / creating with a foreign owner
    assert u.create(ud, "x", uid=0).status == S.PERM
    assert u.create(ud, "x2", gid=50).attr.gid == 50
    assert u.create(ud, "x3", gid=60).status == S.PERM


@NEED_ROOT
def test_permission_denials(export, tree):
    u = Client(export, auth(1000))
    root = u.root
    # root-owned 0755 directory: no creating, removing, renaming, linking
    assert u.create(root, "n").status == S.ACCES
    assert u.mkdir(root, "n").status == S.ACCES
    assert u.symlink(root, "n", b"t").status == S.ACCES
    assert u.mknod(root, "n", 7).status == S.ACCES
    assert u.remove(root, "a.txt").status == S.ACCES
    assert u.rmdir(root, "d1").status == S.ACCES
    assert u.rename(root, "a.txt", u.fh("udir"), "a").status == S.ACCES
    assert u.link(u.fh("a.txt"), root, "l").status == S.ACCES
    assert (tree / "a.txt").exists()
    # files: read 0600 of root, write 0644 of root
    priv = u.fh("private.txt")
    r = u.read(priv, 0, 10)
    assert r.status == S.ACCES and r.attr is not None
    r = u.write(u.fh("a.txt"), 0, b"x")
    assert r.status == S.ACCES and r.post is not None
    assert (tree / "a.txt").read_bytes() == b"alpha"
    assert u.read(u.fh("a.txt"), 0, 10).data == b"alpha"
    # setattr: chmod / utimes need ownership, truncation needs write permission
    assert u.setattr(u.fh("a.txt"), mode=0o777).status == S.PERM
    assert u.setattr(u.fh("a.txt"), mtime=(5, 0)).status == S.PERM
    assert u.setattr(u.fh("a.txt"), mtime="server", atime="server").status == S.ACCES
    assert u.setattr(u.fh("a.txt"), size=0).status == S.ACCES
    assert u.setattr(u.fh("a.txt"), gid=1000).status == S.PERM
    mine = u.fh("udir/u.txt")
    assert u.setattr(mine, uid=0).status == S.PERM
    assert u.setattr(mine, uid=1000).status == 0            # unchanged: allowed
    assert u.setattr(mine, gid=0).status == S.PERM          # not a member
    assert u.setattr(mine, mode=0o600, mtime=(7, 0)).status == 0
    # the owner may still write a file it made read-only (owner override)
    os.chmod(tree / "udir" / "u.txt", 0o400)
    assert u.write(mine, 0, b"U").status == 0
    # sticky directory: someone else's file cannot be removed or replaced
    st = u.fh("sticky")
    assert u.remove(st, "theirs").status == S.PERM
    assert u.create(st, "minefile").status == 0
    assert u.rename(st, "minefile", st, "theirs").status == S.PERM
    assert u.remove(st, "minefile").status == 0
    other = Client(export, auth(1001))
    assert other.remove(st, "theirs").status == 0
    # moving someone's directory to another parent needs write on it
    (tree / "pub" / "rootdir").mkdir()
    os.chmod(tree / "pub" / "rootdir", 0o555)
    os.chmod(tree / "pub", 0o777)
    assert u.rename(u.fh("pub"), "rootdir", u.fh("udir"), "rd").status == S.ACCES
    assert u.rename(u.fh("pub"), "rootdir", u.fh("pub"), "rd").status == 0


@NEED_ROOT
def test_root_squash_and_auth_none(export, tree):
    sq = Client(export, ROOT, root_squash=True)
    # squashed root cannot write in a root-owned 0755 directory or read 0600 files
    assert sq.create(sq.root, "n").status == S.ACCES
    assert sq.read(sq.fh("private.txt"), 0, 10).status == S.ACCES
    r = sq.create(sq.fh("pub"), "sq")
    assert r.status == 0 and (r.attr.uid, r.attr.gid) == (ANON, ANON)
    r = Client(export, ROOT).create(export.root_handle(), "unsq")
    assert r.status == 0 and r.attr.uid == 0
    anon = Client(export, None)
    r = anon.create(anon.fh("pub"), "an")
    assert r.status == 0 and (r.attr.uid, r.attr.gid) == (ANON, ANON)
    assert anon.read(anon.fh("private.txt"), 0, 1).status == S.ACCES


def test_read_only(export, tree):
    ro = Client(export, read_only=True)
    root, fh, d1 = ro.root, ro.fh("a.txt"), ro.fh("d1")
    results = {
        "setattr": ro.setattr(fh, mode=0o600),
        "write": ro.write(fh, 0, b"x"),
        "create": ro.create(root, "n"),
        "mkdir": ro.mkdir(root, "n"),
        "symlink": ro.symlink(root, "n", b"t"),
        "mknod": ro.mknod(root, "n", 7),
        "remove": ro.remove(root, "a.txt"),
        "rmdir": ro.rmdir(root, "d1"),
        "rename": ro.rename(root, "a.txt", d1, "x"),
        "link": ro.link(fh, d1, "x"),
    }
    assert {k: r.status for k, r in results.items()} == {k: S.ROFS for k in results}
    assert results["setattr"].post is not None and results["remove"].post is not None
    assert (tree / "a.txt").read_bytes() == b"alpha"
    assert sorted(os.listdir(tree / "d1")) == ["b.txt"]
    assert ro.read(fh, 0, 5).data == b"alpha"
    assert ro.commit(fh).status == 0


# --------------------------------------------------------------------------
# garbage and the error table


@pytest.mark.parametrize("proc,args", [
    (P.GETATTR, lambda p: None),                                       # no handle at all
    (P.GETATTR, lambda p: p.pack_opaque(b"x" * 65)),                   # handle > 64 bytes
    (P.GETATTR, lambda p: (p.pack_opaque(b"x" * 30), p.pack_uint(0))),  # trailing bytes
    (P.LOOKUP, lambda p: (p.pack_opaque(b"x" * 30), p.pack_uint(5000))),
    (P.READ, lambda p: (p.pack_opaque(b"x" * 30), p.pack_uint(0))),     # truncated
    (P.SETATTR, lambda p: (p.pack_opaque(b"x" * 30), pk_sattr(p), p.pack_uint(2))),  # bad bool
    (P.SETATTR, lambda p: (p.pack_opaque(b"x" * 30), [p.pack_uint(0)] * 4, p.pack_uint(3),
                           p.pack_uint(0), p.pack_uint(0))),           # bad time_how
    (P.CREATE, lambda p: (a_dirop(b"x" * 30, "n")(p), p.pack_uint(3))),  # bad createmode
    (P.SYMLINK, lambda p: (a_dirop(b"x" * 30, "n")(p), pk_sattr(p), p.pack_opaque(b"t" * 4097))),
    (P.READDIR, lambda p: (p.pack_opaque(b"x" * 30), p.pack_uhyper(0))),
])
def test_garbage_args(c, proc, args):
    hdr, u, oc = c.raw(proc, args)
    assert hdr.accept_stat == m.GARBAGE_ARGS and oc.status == "garbage_args"


def test_garbage_args_every_truncation(c):
    """Each proper prefix of a valid MKNOD/CREATE argument list is GARBAGE_ARGS."""
    p = Packer()
    a_dirop(c.root, "nm")(p)
    p.pack_uint(4)
    pk_sattr(p, mode=0o600, atime=(1, 2))
    p.pack_uint(1)
    p.pack_uint(3)
    full = p.get_buffer()
    for cut in range(0, len(full), 4):
        hdr, _, _ = c.raw(P.MKNOD, lambda q: q.append(full[:cut]))
        assert hdr.accept_stat == m.GARBAGE_ARGS, cut


def _errors(c, tree):
    """(name, expected status, callable -> reply) for the error table."""
    gone = c.fh("big.bin")
    os.unlink(tree / "big.bin")
    (tree / "full").mkdir()
    (tree / "full" / "f").write_bytes(b"")
    cases = [
        ("NOENT", S.NOENT, lambda: c.lookup(c.root, "missing")),
        ("EXIST", S.EXIST, lambda: c.mkdir(c.root, "d1")),
        ("NOTDIR", S.NOTDIR, lambda: c.create(c.fh("a.txt"), "x")),
        ("ISDIR", S.ISDIR, lambda: c.read(c.fh("d1"), 0, 1)),
        ("NOTEMPTY", S.NOTEMPTY, lambda: c.rmdir(c.root, "full")),
        ("NAMETOOLONG", S.NAMETOOLONG, lambda: c.mkdir(c.root, "n" * 256)),
        ("INVAL", S.INVAL, lambda: c.call(P.READLINK, a_fh(c.fh("a.txt")))),
        ("STALE", S.STALE, lambda: c.getattr(gone)),
        ("BADHANDLE", S.BADHANDLE, lambda: c.lookup(b"\1" * 40, "a")),
        ("NOT_SYNC", S.NOT_SYNC, lambda: c.setattr(c.fh("a.txt"), guard=(1, 1), mode=0o600)),
        ("BAD_COOKIE", S.BAD_COOKIE, lambda: c.readdir(c.root, cookie=77, verf=b"\0" * 8)),
        ("TOOSMALL", S.TOOSMALL, lambda: c.readdir(c.root, count=1)),
        ("BADTYPE", S.BADTYPE, lambda: c.mknod(c.root, "x", 2)),
        ("ROFS", S.ROFS, lambda: Client(c.e, read_only=True).remove(c.root, "a.txt")),
    ]
    if os.geteuid() == 0:
        u = Client(c.e, auth(1000))
        cases += [
            ("ACCES", S.ACCES, lambda: u.remove(c.root, "a.txt")),
            ("PERM", S.PERM, lambda: u.setattr(c.fh("a.txt"), mode=0o777)),
        ]
    return cases


ERROR_NAMES = ["NOENT", "EXIST", "NOTDIR", "ISDIR", "NOTEMPTY", "NAMETOOLONG", "INVAL",
               "STALE", "BADHANDLE", "NOT_SYNC", "BAD_COOKIE", "TOOSMALL", "BADTYPE", "ROFS",
               "ACCES", "PERM"]


@pytest.mark.parametrize("which", ERROR_NAMES)
def test_error_table(c, tree, which):
    cases = {n: (s, f) for n, s, f in _errors(c, tree)}
    if which not in cases:
        pytest.skip("needs root")
    status, fn = cases[which]
    r = fn()
    assert r.status == status, (which, S(r.status).name)


def test_xdr_roundtrip_fattr3(tree, export):
    """nfs3xdr's fattr3 encoder and sattr3 decoder agree with the independent codecs here."""
    st = os.lstat(tree / "big.bin")
    p = Packer()
    nfs3xdr.pack_post_op_attr(p, st, export.fsid)
    pk_sattr(p, mode=0o644, size=7, mtime="server")
    u = Unpacker.from_bytes(p.get_buffer())
    a = post_attr(u)
    assert a.size == 10240 and a.fileid == st.st_ino and a.mode == 0o644 and a.type == 1
    assert nfs3xdr.decode_sattr3(u) == (0o644, None, None, 7, None, nfs3xdr.SERVER_TIME)
    u.done()
    old = nfs3xdr.nfstime3(-5 * 10**9)
    assert old == (0, 0) and nfs3xdr.nfstime3(2**40 * 10**9) == (2**32 - 1, 999999999)


@pytest.mark.parametrize("mode", ["kernel", "inode"])
def test_workflow_both_handle_modes(tree, mode):
    try:
        e = Export(str(tree), key=KEY, handle_mode=mode)
    except OSError:
        pytest.skip("kernel handles unavailable")
    with e:
        c = Client(e)
        d = c.mkdir(c.root, "w", mode=0o755).fh
        f = c.create(d, "f", how=1, mode=0o644).fh
        assert c.write(f, 0, b"hello world", stable=2).count == 11
        sub = c.mkdir(d, "sub").fh
        assert c.rename(d, "f", sub, "g").status == 0
        assert c.read(f, 6, 100).data == b"world"              # handle survives the move
        assert c.lookup(sub, "g").fh
        # (inode mode: a handle carries a parent hint, so compare the objects)
        assert c.lookup(sub, "..").attr.fileid == c.getattr(d).attr.fileid
        assert c.link(f, c.root, "hl").attr.nlink == 2
        names = {x.name for x in c.readdirplus(sub).entries}
        assert names == {b".", b"..", b"g"}
        assert c.remove(sub, "g").status == 0 and c.remove(c.root, "hl").status == 0
        assert c.getattr(f).status == S.STALE
        assert c.rmdir(d, "sub").status == 0 and c.rmdir(c.root, "w").status == 0


def test_encoders_exact_sizes(c, tree):
    """Reply sizes match RFC 1813 layouts (nfs3res.DirBudget's accounting relies on them)."""
    hdr, u, oc = c.raw(P.GETATTR, a_fh(c.root))
    assert u.remaining == 4 + 84
    fh = c.fh("a.txt")
    hdr, u, oc = c.raw(P.WRITE, lambda p: (p.pack_opaque(fh), p.pack_uhyper(0),
                                          p.pack_uint(1), p.pack_uint(0), p.pack_opaque(b"A")))
    assert u.remaining == 4 + (4 + 24) + (4 + 84) + 4 + 4 + 8
    r = c.readdir(c.root, count=65536)
    assert r.status == 0


@pytest.mark.parametrize("plus", [False, True])
@pytest.mark.parametrize("count", [400, 1200, 65536])
def test_dirbudget_counts_the_bytes_encode_writes(c, export, plus, count):
    """The READDIR(PLUS) budget's total is the size of the reply the encoder then writes, and no
    page is over the client's count (maxcount for READDIRPLUS)."""
    for i in range(30):
        c.create(c.root, "entry-%02d-%s" % (i, "x" * i), how=0)
    budget = nfs3res.DirBudget(count if not plus else count // 2, count, plus)
    entries, eof, verf = export.readdir(c.root, 0, b"\0" * 8, budget, plus=plus)
    p = Packer()
    res = nfs3res.ReaddirRes(0, export.fsid, export.getattr(c.root), verf, entries, eof)
    (nfs3res.encode_readdirplus if plus else nfs3res.encode_readdir)(p, res)
    assert len(p.get_buffer()) == budget.total <= count
    assert eof == (count == 65536)


def test_every_result_within_its_declared_maximum(c, tree):
    """A run through the procedures: every encoded result is within RES_MAX of its procedure
    (dispatch would answer SYSTEM_ERR otherwise: a status other than system_err proves it)."""
    fh = c.fh("a.txt")
    statuses = [c.getattr(fh).status, c.lookup(c.root, "a.txt").status, c.access(fh).status,
                c.read(fh, 0, 100).status, c.write(fh, 0, b"12345", stable=2).status,
                c.create(c.root, "n" * 255, how=0).status, c.readdirplus(c.root).status,
                c.call(P.FSSTAT, a_fh(c.root)).status, c.call(P.FSINFO, a_fh(c.root)).status,
                c.call(P.PATHCONF, a_fh(c.root)).status, c.call(P.READLINK, a_fh(c.fh("link_out"))).status]
    assert all(st == 0 for st in statuses), statuses
    for proc, size in nfs3res.RES_MAX.items():
        entry = DISPATCHER.lookup(NFS_PROGRAM, 3, proc)
        assert entry.reply_max == size
