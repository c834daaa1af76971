"""rpcsrv.nfsd.mount3: MOUNT v3 through dispatch() with real XDR, and MountRegistry."""

from __future__ import annotations

import os
import threading

import pytest

from rpcsrv.nfsd import mount3
from rpcsrv.proto import rpcmsg as m
from rpcsrv.svc.dispatch import Dispatcher, dispatch
from rpcsrv.export import Export
from rpcsrv.proto.nfs3const import MOUNT_PROGRAM, MountProc3 as MP, MountStat3 as MS
from rpcclient import decode_reply, pack_call
from rpcsrv.proto.rpcmsg import AuthSys, decode_call
from rpcsrv.proto.xdr import Packer, Unpacker

KEY = b"m" * 32


class Cfg:
    def __init__(self, registry):
        self.read_only = False
        self.root_squash = False
        self.anon_uid = self.anon_gid = 65534
        self.write_verifier = b"\0" * 8
        self.mount_clients = registry


class Ctx:
    def __init__(self, export, registry, host="192.0.2.1"):
        self.xid = 1
        self.addr = (host, 700)
        self.cred = AuthSys(0, b"h", 0, 0)
        self.export = export
        self.config = Cfg(registry)


@pytest.fixture
def tree(tmp_path):
    exp = tmp_path / "exp"
    (exp / "sub" / "deeper").mkdir(parents=True)
    (exp / "file.txt").write_bytes(b"x")
    os.symlink("sub", exp / "link")
    (tmp_path / "other").mkdir()
    return exp


@pytest.fixture
def env(tree):
    e = Export(str(tree), key=KEY)
    reg = mount3.MountRegistry()
    d = Dispatcher([mount3.make_program()])
    yield e, reg, d
    e.close()


def call(env, proc, pack_args, host="192.0.2.1"):
    e, reg, d = env
    p = Packer()
    pack_call(p, 9, MOUNT_PROGRAM, 3, int(proc), cred=AuthSys(0, b"h", 0, 0))
    pack_args(p)
    u = Unpacker.from_bytes(p.get_buffer())
    c = decode_call(u)
    out = Packer()
    oc = dispatch(d, c, u, Ctx(e, reg, host), out)
    ru = Unpacker.from_bytes(out.get_buffer())
    hdr = decode_reply(ru)
    return hdr, ru, oc


def mnt(env, path, host="192.0.2.1"):
    hdr, u, oc = call(env, MP.MNT, lambda p: p.pack_string(path), host)
    assert hdr.accept_stat == m.SUCCESS
    status = u.unpack_uint()
    fh = flavors = None
    if status == 0:
        fh = u.unpack_opaque(64)
        flavors = u.unpack_array(u.unpack_int)
    u.done()
    assert oc.status == MS(status).name.lower()
    return status, fh, flavors


def dump(env):
    hdr, u, _ = call(env, MP.DUMP, lambda p: None)
    out = []
    while u.unpack_bool():
        out.append((u.unpack_opaque(255), u.unpack_opaque(1024)))
    u.done()
    return out


def test_table():
    prog = mount3.make_program()
    assert prog.prog == 100005 and list(prog.versions) == [3]
    assert {e.name for e in prog.versions[3].values()} == {
        "null", "mnt", "dump", "umnt", "umntall", "export"}


def test_null(env):
    hdr, u, oc = call(env, MP.NULL, lambda p: None)
    assert hdr.accept_stat == m.SUCCESS and u.remaining == 0


def test_mnt_root_and_subdirs(env, tree):
    e = env[0]
    st, fh, fl = mnt(env, str(tree))
    assert st == 0 and fh == e.root_handle() and fl == [1, 0]
    assert mnt(env, str(tree) + "/")[1] == e.root_handle()
    # the realpath form, and a directory below the export (nfs-cp mounts a parent)
    assert mnt(env, os.path.realpath(tree))[0] == 0
    st, fh, _ = mnt(env, str(tree / "sub" / "deeper"))
    assert st == 0 and fh == e.handle_for_path("sub/deeper")
    assert e.getattr(fh).st_ino == os.stat(tree / "sub" / "deeper").st_ino


def test_mnt_errors(env, tree):
    assert mnt(env, str(tree / "missing"))[0] == MS.NOENT
    assert mnt(env, str(tree / "file.txt"))[0] == MS.NOTDIR
    assert mnt(env, str(tree.parent / "other"))[0] == MS.ACCES
    assert mnt(env, str(tree / "sub" / ".." / ".."))[0] == MS.ACCES
    assert mnt(env, str(tree / "link"))[0] == MS.ACCES          # symlinks refused
    assert mnt(env, "relative/path")[0] == MS.INVAL
    assert mnt(env, str(tree) + "/" + "n" * 256)[0] == MS.NAMETOOLONG
    assert mnt(env, "/" + "p" * 1100)[0] == MS.NAMETOOLONG        # > MNTPATHLEN
    assert dump(env) == []                                        # failures not recorded


def test_garbage(env):
    hdr, _, oc = call(env, MP.MNT, lambda p: p.pack_uint(5000))   # length beyond the data
    assert hdr.accept_stat == m.GARBAGE_ARGS
    hdr, _, _ = call(env, MP.MNT, lambda p: p.pack_uint(1 << 20))
    assert hdr.accept_stat == m.GARBAGE_ARGS
    hdr, _, _ = call(env, MP.UMNTALL, lambda p: p.pack_uint(0))   # trailing bytes
    assert hdr.accept_stat == m.GARBAGE_ARGS


def test_dump_umnt_umntall(env, tree):
    a, b = "192.0.2.1", "198.51.100.9"
    mnt(env, str(tree), a)
    mnt(env, str(tree / "sub"), a)
    mnt(env, str(tree), b)
    mnt(env, str(tree), b)                                        # once per (host, dir)
    got = dump(env)
    assert sorted(got) == sorted([(a.encode(), str(tree).encode()),
                                  (a.encode(), str(tree / "sub").encode()),
                                  (b.encode(), str(tree).encode())])
    hdr, u, _ = call(env, MP.UMNT, lambda p: p.pack_string(str(tree)), a)
    assert hdr.accept_stat == m.SUCCESS and u.remaining == 0
    assert sorted(dump(env)) == sorted([(a.encode(), str(tree / "sub").encode()),
                                        (b.encode(), str(tree).encode())])
    hdr, u, _ = call(env, MP.UMNTALL, lambda p: None, b)
    assert hdr.accept_stat == m.SUCCESS and u.remaining == 0
    assert dump(env) == [(a.encode(), str(tree / "sub").encode())]
    call(env, MP.UMNT, lambda p: p.pack_string("/never/mounted"), a)   # harmless
    assert len(env[1]) == 1


def test_export_list(env, tree):
    hdr, u, _ = call(env, MP.EXPORT, lambda p: None)
    assert hdr.accept_stat == m.SUCCESS
    out = []
    while u.unpack_bool():
        d = u.unpack_opaque(1024)
        groups = []
        while u.unpack_bool():
            groups.append(u.unpack_opaque(255))
        out.append((d, groups))
    u.done()
    assert out == [(str(tree).encode(), [])]


def test_registry_given_to_make_program(tree):
    reg = mount3.MountRegistry()
    d = Dispatcher([mount3.make_program(reg)])
    with Export(str(tree), key=KEY) as e:
        env = (e, None, d)          # ctx.config.mount_clients is None: the given one is used
        assert mnt(env, str(tree))[0] == 0
    assert (b"192.0.2.1", str(tree).encode()) in reg


def test_registry_bounded_and_threadsafe():
    reg = mount3.MountRegistry(max_entries=50)

    def worker(i):
        for j in range(200):
            reg.add("10.0.%d.%d" % (i, j % 7), "/e/%d" % j)
            if j % 3 == 0:
                reg.remove("10.0.%d.%d" % (i, j % 7), "/e/%d" % j)
        reg.remove_all("10.0.%d.1" % i)

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    ents = reg.entries()
    assert len(ents) <= 50 and len(ents) == len(set(ents))
    assert all(h != b"10.0.%d.1" % i for i in range(8) for h, _ in ents)
