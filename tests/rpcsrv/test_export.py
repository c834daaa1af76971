"""Tests for rpcsrv.export (file handles, path safety, READDIR), nfs3const, and the fattr3 encoding
and ACCESS3 table the NFS layer builds on the export's values."""

from __future__ import annotations

import errno
import os
import stat
import threading

import pytest

import struct

from nfsbulk_testlib import kernel_handles_work
from rpcsrv.export import FH_MAC_LEN, Export, NfsError, check_name, nfsstat_from_oserror
from rpcsrv.export.handles import kernel_handle as _kernel_handle
from rpcsrv.nfsd.perm import access_from_stat
from rpcsrv.proto import nfs3const as C
from rpcsrv.proto import nfs3res, nfs3xdr
from rpcsrv.proto.nfs3const import NfsStat3 as S
from rpcsrv.proto.xdr import Packer

KEY = b"k" * 32



@pytest.fixture
def tree(tmp_path):
    out = tmp_path / "outside"
    out.mkdir()
    (out / "secret.txt").write_bytes(b"secret")
    (out / "odir").mkdir()
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "a.txt").write_bytes(b"alpha")
    (exp / "d1" / "d2").mkdir(parents=True)
    (exp / "d1" / "b.txt").write_bytes(b"bravo")
    (exp / "d1" / "d2" / "c.txt").write_bytes(b"charlie")
    os.symlink("../outside/secret.txt", exp / "link_out")
    os.symlink("../outside", exp / "link_dir_out")
    os.symlink("/", exp / "link_abs")
    os.symlink("d1/b.txt", exp / "link_in")
    os.link(exp / "a.txt", exp / "hard")
    os.mkfifo(exp / "fifo")
    return tmp_path



def rd(e, fh, cookie, verf, count, plus=False, maxcount=None):
    """READDIR(PLUS) of the export with the wire codec's byte budget, as the NFS layer calls it."""
    return e.readdir(fh, cookie, verf, nfs3res.DirBudget(count, maxcount, plus), plus=plus)


def readlink(e, fh):
    with e.open_handle(fh) as o:
        return os.readlink(b"", dir_fd=o.fd)


def fattr3(st, fsid=0):
    """fattr3 as encoded by nfs3xdr, unpacked: (type, mode, nlink, uid, gid, size, used, (r1, r2),
    fsid, fileid, atime, mtime, ctime) with times as (seconds, nseconds)."""
    p = Packer()
    nfs3xdr.pack_fattr3(p, st, fsid)
    f = struct.unpack(">5I2Q2I2Q6I", p.get_buffer())
    return f[:7] + ((f[7], f[8]), f[9], f[10], (f[11], f[12]), (f[13], f[14]), (f[15], f[16]))


def mk(tree, mode, **kw):
    kw.setdefault("key", KEY)
    kw.setdefault("fd_ttl", 0.0)  # reopen files on every lease
    return Export(str(tree / "exp"), handle_mode=mode, **kw)


def status_of(fn, *a, **kw):
    with pytest.raises(NfsError) as ei:
        fn(*a, **kw)
    return ei.value.status


def walk(e, path):
    fh = e.root_handle()
    for c in path.split("/"):
        fh, _ = e.lookup(fh, c)
    return fh


# ---------------------------------------------------------------- constants


def test_constants():
    assert (C.NFS_PROGRAM, C.NFS_V3, C.MOUNT_PROGRAM, C.MOUNT_V3) == (100003, 3, 100005, 3)
    assert C.NfsProc3.COMMIT == 21 and C.NFSPROC3_NAMES[1] == "getattr"
    assert len(C.NFSPROC3_NAMES) == 22 and sorted(C.NFSPROC3_NAMES) == list(range(22))
    assert C.NFSSTAT3_NAMES[2] == "noent" and C.NFSSTAT3_NAMES[10008] == "jukebox"
    assert C.nfsstat3_name(70) == "stale" and C.nfsstat3_name(12345) == "unknown"
    assert C.MOUNTPROC3_NAMES == {0: "null", 1: "mnt", 2: "dump", 3: "umnt", 4: "umntall", 5: "export"}
    assert C.NFS3_FHSIZE == 64 and C.NFS3_COOKIEVERFSIZE == C.NFS3_WRITEVERFSIZE == C.NFS3_CREATEVERFSIZE == 8
    assert C.Ftype3.FIFO == 7 and C.StableHow.FILE_SYNC == 2 and C.CreateMode3.EXCLUSIVE == 2
    assert C.TimeHow.SET_TO_CLIENT_TIME == 2
    assert (C.ACCESS3_READ, C.ACCESS3_EXECUTE, C.FSF3_CANSETTIME) == (1, 0x20, 0x10)
    # mount statuses used by mount_path_to_handle share their numbers with nfsstat3
    for m in ("NOENT", "ACCES", "NOTDIR", "INVAL", "NAMETOOLONG"):
        assert C.MountStat3[m] == C.NfsStat3[m]


# ---------------------------------------------------------------- lookup & co


def test_lookup_getattr_readlink(tree, mode):
    with mk(tree, mode) as e:
        root = e.root_handle()
        fh, st = e.lookup(root, "a.txt")
        assert stat.S_ISREG(st.st_mode) and st.st_size == 5
        assert e.getattr(fh).st_ino == st.st_ino == os.stat(tree / "exp" / "a.txt").st_ino
        hfh, hst = e.lookup(root, b"hard")
        assert hst.st_ino == st.st_ino and hst.st_nlink == 2
        cfh = walk(e, "d1/d2/c.txt")
        with e.read(cfh) as lease:
            assert os.pread(lease.fd, 100, 0) == b"charlie"
        # symlinks are not followed
        lfh, lst = e.lookup(root, "link_in")
        assert stat.S_ISLNK(lst.st_mode)
        assert readlink(e, lfh) == b"d1/b.txt"
        assert status_of(e.lookup, fh, "x") == S.NOTDIR
        assert status_of(e.lookup, root, "nope") == S.NOENT
        ffh, fst = e.lookup(root, "fifo")
        assert fattr3(fst)[0] == C.Ftype3.FIFO
        assert fattr3(lst)[0] == C.Ftype3.LNK
        assert fattr3(e.getattr(root))[0] == C.Ftype3.DIR
        for h in (root, fh, hfh, cfh, lfh, ffh):
            assert len(h) <= C.NFS3_FHSIZE


def test_dot_and_dotdot(tree, mode):
    with mk(tree, mode) as e:
        root = e.root_handle()
        assert e.lookup(root, "..")[0] == root
        assert e.lookup(root, ".")[0] == root
        d1, d1st = e.lookup(root, "d1")
        d2, _ = e.lookup(d1, "d2")
        assert e.lookup(d1, "..")[0] == root
        up, upst = e.lookup(d2, "..")
        assert upst.st_ino == d1st.st_ino and e.getattr(up).st_ino == d1st.st_ino
        assert e.lookup(d2, ".")[0] == d2
        # ".." repeatedly never leaves the root
        fh = d2
        for _ in range(5):
            fh, st = e.lookup(fh, "..")
        assert fh == root and st.st_ino == os.stat(tree / "exp").st_ino


def test_names_rejected(tree, mode):
    with mk(tree, mode) as e:
        root = e.root_handle()
        assert status_of(e.lookup, root, b"") == S.INVAL
        assert status_of(e.lookup, root, b"d1/b.txt") == S.INVAL
        assert status_of(e.lookup, root, b"../outside") == S.INVAL
        assert status_of(e.lookup, root, b"a\0b") == S.INVAL
        assert status_of(e.lookup, root, b"x" * 256) == S.NAMETOOLONG
        assert status_of(e.lookup, root, b"x" * 255) == S.NOENT
    assert status_of(check_name, b"..", allow_dots=False) == S.INVAL
    assert check_name("ok") == b"ok"


def test_handles_stable_across_restart(tree, mode):
    names = ["a.txt", "d1", "d1/d2", "d1/d2/c.txt", "link_in", "fifo"]
    with mk(tree, mode) as e1:
        hs = {n: walk(e1, n) for n in names}
        inos = {n: e1.getattr(h).st_ino for n, h in hs.items()}
    # a new server process on the same export and key: same handles, same objects,
    # with every cache empty (inode mode must find the objects again)
    with mk(tree, mode) as e2:
        for n in names:
            assert e2.getattr(hs[n]).st_ino == inos[n]
        assert {n: walk(e2, n) for n in names} == hs
    # a different key: the handles are not ours
    with mk(tree, mode, key=b"other" * 8) as e3:
        for n in names:
            assert status_of(e3.getattr, hs[n]) == S.BADHANDLE


def test_renamed_file_keeps_handle(tree, mode):
    with mk(tree, mode) as e:
        fh = walk(e, "d1/d2/c.txt")
        os.rename(tree / "exp/d1/d2/c.txt", tree / "exp/moved.txt")
        assert e.getattr(fh).st_size == 7
    with mk(tree, mode) as e2:  # restart: no caches
        assert e2.getattr(fh).st_size == 7


def test_key_in_state_dir(tree):
    sd = tree / "state"
    with Export(str(tree / "exp"), state_dir=str(sd)) as e1:
        r1 = e1.root_handle()
        a1 = walk(e1, "a.txt")
    kf = sd / "handle.key"
    assert stat.S_IMODE(os.stat(kf).st_mode) == 0o600 and len(kf.read_bytes()) == 32
    with Export(str(tree / "exp"), state_dir=str(sd)) as e2:
        assert e2.root_handle() == r1 and walk(e2, "a.txt") == a1
    with pytest.raises(ValueError):
        Export(str(tree / "exp"), state_dir=str(tree / "exp" / "d1"))
    assert not (tree / "exp" / "d1" / "handle.key").exists()


def test_forged_handles(tree, mode):
    with mk(tree, mode) as e:
        good = walk(e, "d1/b.txt")
        other_inos = {e.getattr(walk(e, n)).st_ino for n in ("a.txt", "d1", "d1/d2/c.txt")}
        for i in range(len(good)):
            for v in {good[i] ^ 1, good[i] ^ 0x80, 0, 0xFF} - {good[i]}:
                bad = good[:i] + bytes([v]) + good[i + 1:]
                for op in (e.getattr, e.open_handle, e.read):
                    with pytest.raises(NfsError) as ei:
                        r = op(bad)
                        # never reached; if it were, it must not be another object
                        ino = r.st_ino if hasattr(r, "st_ino") else r.st.st_ino
                        assert ino not in other_inos
                    assert ei.value.status in (S.BADHANDLE, S.STALE)
        for n in range(0, len(good)):
            assert status_of(e.getattr, good[:n]) == S.BADHANDLE
        assert status_of(e.getattr, good + b"\0") == S.BADHANDLE
        assert status_of(e.getattr, b"\0" * 64) == S.BADHANDLE
        assert status_of(e.getattr, b"\x01" * 65) == S.BADHANDLE


def test_outside_object_is_stale_kernel(tree):
    if not kernel_handles_work(tree):
        pytest.skip("kernel handles unavailable")
    with mk(tree, "kernel") as e:
        def forge(path, parent=None):
            fd = os.open(path, os.O_PATH | os.O_NOFOLLOW)
            try:
                t, hb, _ = _kernel_handle(fd)
            finally:
                os.close(fd)
            par = None
            if parent is not None:
                pfd = os.open(parent, os.O_PATH)
                try:
                    pt, pb, _ = _kernel_handle(pfd)
                finally:
                    os.close(pfd)
                par = (pt, pb)
            return e.codec.pack_kernel(t, hb, par)

        inside_dir = forge(tree / "exp" / "d1")
        # sanity: the forging code makes handles the export accepts
        assert inside_dir == walk(e, "d1")
        assert e.getattr(forge(tree / "exp/d1/b.txt", tree / "exp/d1")).st_size == 5
        for fh in (forge(tree / "outside" / "secret.txt"),
                   forge(tree / "outside" / "secret.txt", tree / "outside"),
                   forge(tree / "outside" / "secret.txt", tree / "exp"),  # lying parent
                   forge(tree / "outside"),
                   forge(tree / "outside" / "odir"),
                   forge(tree),
                   forge("/")):
            assert status_of(e.getattr, fh) == S.STALE
            assert status_of(e.read, fh) in (S.STALE,)
            assert status_of(e.lookup, fh, "secret.txt") == S.STALE
        # an object that was inside and moved out goes stale
        fh = walk(e, "d1/d2")
        fh2 = walk(e, "d1/b.txt")
        os.rename(tree / "exp/d1/d2", tree / "outside/d2")
        os.rename(tree / "exp/d1/b.txt", tree / "outside/b.txt")
        assert status_of(e.getattr, fh) == S.STALE
        assert status_of(e.getattr, fh2) == S.STALE


def test_outside_object_is_stale_inode(tree):
    with mk(tree, "inode") as e:
        for p in (tree / "outside" / "secret.txt", tree / "outside", tree):
            st = os.stat(p)
            fh = e.codec.pack_inode(st.st_ino, 0, e.root_st.st_ino)
            assert status_of(e.getattr, fh) == S.STALE
        fh = walk(e, "d1/b.txt")
        os.rename(tree / "exp/d1/b.txt", tree / "outside/b.txt")
        assert status_of(e.getattr, fh) == S.STALE


def test_symlink_escapes(tree, mode):
    with mk(tree, mode) as e:
        root = e.root_handle()
        for name in ("link_out", "link_dir_out", "link_abs"):
            lfh, lst = e.lookup(root, name)
            assert stat.S_ISLNK(lst.st_mode)
            assert lst.st_ino == os.lstat(tree / "exp" / name).st_ino
            assert status_of(e.lookup, lfh, "secret.txt") == S.NOTDIR
            assert status_of(e.lookup, lfh, "..") == S.NOTDIR
            assert status_of(e.read, lfh) == S.INVAL
            assert status_of(rd, e, lfh, 0, b"\0" * 8, 4096) == S.NOTDIR
        assert readlink(e, e.lookup(root, "link_out")[0]) == b"../outside/secret.txt"
        assert status_of(e.mount_path_to_handle, str(tree / "exp" / "link_dir_out")) == S.ACCES
        assert status_of(e.handle_for_path, "link_dir_out/secret.txt") == S.ACCES


# ---------------------------------------------------------------- I/O


def test_open_file(tree, mode):
    with mk(tree, mode) as e:
        root = e.root_handle()
        assert status_of(e.read, root) == S.ISDIR
        assert status_of(e.read, e.lookup(root, "fifo")[0]) == S.INVAL  # and no blocking open
        fh = e.lookup(root, "a.txt")[0]
        with e.write_lease(fh) as w:
            assert os.pwritev(w.fd, [b"AL"], 0) == 2
        with e.read(fh) as r:
            assert os.preadv(r.fd, [bytearray(5)], 0) == 5 and os.pread(r.fd, 5, 0) == b"ALpha"
        os.unlink(tree / "exp" / "a.txt")
        os.unlink(tree / "exp" / "hard")
        assert status_of(e.read, fh) == S.STALE
        assert status_of(e.getattr, fh) == S.STALE
    with mk(tree, mode, read_only=True) as ro:
        fh = ro.handle_for_path("d1/b.txt")
        assert status_of(ro.write_lease, fh) == S.ROFS
        with ro.read(fh) as r:
            assert os.pread(r.fd, 5, 0) == b"bravo"


def test_open_file_cache_threads(tree):
    exp = tree / "exp"
    for i in range(12):
        (exp / f"f{i}").write_bytes(bytes([65 + i]) * 4096)
    with Export(str(exp), key=KEY, open_file_cache=3, fd_ttl=0.0) as e:
        fhs = [e.lookup(e.root_handle(), f"f{i}")[0] for i in range(12)]
        errors = []

        def worker(seed):
            try:
                for k in range(300):
                    i = (seed * 7 + k) % 12
                    with e.read(fhs[i]) as lease:
                        buf = bytearray(4096)
                        assert os.preadv(lease.fd, [buf], 0) == 4096
                        assert buf == bytes([65 + i]) * 4096, "data from the wrong file"
            except Exception as ex:  # pragma: no cover - reported below
                errors.append(ex)

        ts = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errors
        assert e.open_file_count() <= 3


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_no_fd_leaks(tree, mode):
    before = fd_count()
    e = mk(tree, mode, open_file_cache=4)
    root = e.root_handle()
    good = walk(e, "d1/b.txt")
    for _ in range(20):
        for n in ("a.txt", "d1", "link_in", "fifo", "nope", "..", "."):
            try:
                e.lookup(root, n)
            except NfsError:
                pass
        with e.read(good):
            pass
        lease = e.read(walk(e, "a.txt"))
        lease.release()
        lease.release()  # idempotent
        for bad in (good[:-1] + bytes([good[-1] ^ 1]), b"x"):
            try:
                e.getattr(bad)
            except NfsError:
                pass
        rd(e, root, 0, b"\0" * 8, 100000, plus=True, maxcount=100000)
        rd(e, root, 0, b"\0" * 8, 100000)
        try:
            e.read(root)
        except NfsError:
            pass
        e.mount_path_to_handle(str(tree / "exp" / "d1"))
        e.fsstat(root)
        e.pathconf(root)
        access_from_stat(e.getattr(root), 0x3F, 1000, [1000])
    held = e.read(good)  # a lease outstanding across close
    e.close()
    assert os.pread(held.fd, 5, 0) == b"bravo"
    held.release()
    assert fd_count() == before


# ---------------------------------------------------------------- readdir


def read_all(e, dfh, count, plus=False, between=None):
    names, cookie, verf, pages = [], 0, b"\0" * 8, 0
    while True:
        ents, eof, verf = rd(e, dfh, cookie, verf, count, plus=plus, maxcount=count * 4)
        pages += 1
        names += [x.name for x in ents]
        if plus:
            for x in ents:
                assert x.stat is not None and x.fh is not None and x.fileid == x.stat.st_ino
        if eof:
            return names, pages
        assert ents
        cookie = ents[-1].cookie
        if between:
            between(pages)


def test_readdir_paging(tree, mode):
    big = tree / "exp" / "big"
    big.mkdir()
    want = {f"entry-{i:04d}".encode() for i in range(500)}
    for n in want:
        (big / n.decode()).write_bytes(b"")
    with mk(tree, mode) as e:
        dfh = e.lookup(e.root_handle(), "big")[0]
        names, pages = read_all(e, dfh, 600)
        assert pages > 10
        assert sorted(names) == sorted(want | {b".", b".."})
        assert len(names) == len(set(names))
        names, pages = read_all(e, dfh, 400, plus=True)
        assert sorted(names) == sorted(want | {b".", b".."}) and pages > 10
        # entries' fileids agree with the file system
        ents, eof, _ = rd(e, dfh, 0, b"\0" * 8, 10**6)
        assert eof
        for x in ents:
            if x.name not in (b".", b".."):
                assert x.fileid == os.lstat(big / x.name.decode()).st_ino
        dd = {x.name: x.fileid for x in ents[:2]}
        assert dd[b"."] == os.stat(big).st_ino and dd[b".."] == os.stat(tree / "exp").st_ino
        rents, _, _ = rd(e, e.root_handle(), 0, b"\0" * 8, 10**6)
        assert {x.name: x.fileid for x in rents}[b".."] == os.stat(tree / "exp").st_ino


def test_readdir_concurrent_changes(tree, mode):
    big = tree / "exp" / "big"
    big.mkdir()
    stable = {f"keep-{i:04d}".encode() for i in range(300)}
    churn = [f"churn-{i:04d}" for i in range(200)]
    for n in stable:
        (big / n.decode()).write_bytes(b"")
    for n in churn:
        (big / n).write_bytes(b"")
    state = {"next": 0}

    def between(page):
        # remove some churn entries, add new ones, between every page
        for _ in range(5):
            if churn:
                os.unlink(big / churn.pop(0))
            (big / f"new-{state['next']:05d}").write_bytes(b"")
            state["next"] += 1

    with mk(tree, mode, dir_snapshot_ttl=0.0) as e:
        dfh = e.lookup(e.root_handle(), "big")[0]
        for plus in (False, True):
            names, pages = read_all(e, dfh, 700, plus=plus, between=between)
            assert pages > 5
            assert len(names) == len(set(names)), "an entry was returned twice"
            assert stable <= set(names), "an entry present throughout was skipped"


def test_cookie_verifier(tree, mode):
    with mk(tree, mode) as e:
        root = e.root_handle()
        d1 = e.lookup(root, "d1")[0]
        ents, eof, verf = rd(e, root, 0, b"\0" * 8, 250)
        assert not eof and len(verf) == 8
        ck = ents[-1].cookie
        # same verifier across pages, after changes and across a restart
        _, _, v2 = rd(e, root, ck, verf, 250)
        assert v2 == verf
        (tree / "exp" / "new").write_bytes(b"")
        assert rd(e, root, ck, verf, 250)[2] == verf
        with mk(tree, mode) as e2:
            assert rd(e2, root, ck, verf, 250)[2] == verf
        # cookie 0 ignores the verifier; zero verifier with a real cookie is accepted
        rd(e, root, 0, b"garbage!", 250)
        rd(e, root, ck, b"\0" * 8, 250)
        # another directory's verifier, or a cookie we never made -> BAD_COOKIE
        _, _, vd1 = rd(e, d1, 0, b"\0" * 8, 4096)
        assert vd1 != verf
        assert status_of(rd, e, root, ck, vd1, 250) == S.BAD_COOKIE
        assert status_of(rd, e, root, 12345, verf, 250) == S.BAD_COOKIE
        # a cookie past the last entry: empty page, eof
        assert rd(e, root, (1 << 64) - 1, verf, 250)[:2] == ([], True)
        # too small for a single entry
        assert status_of(rd, e, root, 0, b"\0" * 8, 100) == S.TOOSMALL
        assert status_of(rd, e, walk(e, "a.txt"), 0, b"\0" * 8, 4096) == S.NOTDIR


# ---------------------------------------------------------------- MOUNT


def test_mount_path_to_handle(tree, mode):
    exp = tree / "exp"
    with mk(tree, mode) as e:
        root = e.root_handle()
        assert e.mount_path_to_handle(str(exp)) == root
        assert e.mount_path_to_handle(str(exp) + "/") == root
        assert e.mount_path_to_handle(str(exp).encode() + b"//./") == root
        assert e.mount_path_to_handle(str(exp / "d1" / "d2")) == walk(e, "d1/d2")
        assert status_of(e.mount_path_to_handle, str(exp / "a.txt")) == S.NOTDIR
        assert status_of(e.mount_path_to_handle, str(exp / "a.txt" / "x")) == S.NOTDIR
        assert status_of(e.mount_path_to_handle, str(exp / "missing")) == S.NOENT
        assert status_of(e.mount_path_to_handle, str(exp / "link_dir_out")) == S.ACCES
        assert status_of(e.mount_path_to_handle, str(exp / "link_abs")) == S.ACCES
        assert status_of(e.mount_path_to_handle, str(exp) + "/../outside") == S.ACCES
        assert status_of(e.mount_path_to_handle, str(exp) + "/d1/../d1") == S.ACCES
        assert status_of(e.mount_path_to_handle, str(tree / "outside")) == S.ACCES
        assert status_of(e.mount_path_to_handle, str(exp) + "x") == S.ACCES
        assert status_of(e.mount_path_to_handle, "/") == S.ACCES
        assert status_of(e.mount_path_to_handle, "exp/d1") == S.INVAL
    # configured through a symlink: both spellings mount
    os.symlink(exp, tree / "alias")
    with Export(str(tree / "alias"), key=KEY, handle_mode=mode) as e:
        assert e.mount_path_to_handle(str(tree / "alias" / "d1")) == \
            e.mount_path_to_handle(str(exp / "d1"))


# ---------------------------------------------------------------- attributes etc.


def test_fattr3_and_wcc(tree):
    p = tree / "exp" / "a.txt"
    os.chmod(p, 0o4755)
    st = os.lstat(p)
    fa = fattr3(st, 77)
    assert fa[0] == C.Ftype3.REG and fa[1] == 0o4755
    assert fa[2:6] == (st.st_nlink, st.st_uid, st.st_gid, 5)
    assert fa[6] == st.st_blocks * 512 and fa[7] == (0, 0) and fa[8] == 77 and fa[9] == st.st_ino
    assert fa[11] == (st.st_mtime_ns // 10**9, st.st_mtime_ns % 10**9)
    assert len(fa) == 13
    pk = Packer()
    nfs3xdr.pack_pre_op_attr(pk, st)
    assert struct.unpack(">IQ4I", pk.get_buffer()) == (1, 5) + fa[11] + fa[12]
    dn = os.stat("/dev/null")
    assert fattr3(dn)[:2] == (C.Ftype3.CHR, 0o666)
    assert fattr3(dn)[7] == (os.major(dn.st_rdev), os.minor(dn.st_rdev)) == (1, 3)
    os.utime(p, ns=(-5 * 10**9, 0))
    assert fattr3(os.lstat(p))[10] == (0, 0)  # clamped to uint32


def test_fattr3_fsid_stable(tree, mode):
    with mk(tree, mode) as e1, mk(tree, mode) as e2:
        assert e1.fsid == e2.fsid and 0 <= e1.fsid < 2**64


def test_access(tree):
    st_file = os.lstat(tree / "exp" / "a.txt")
    R, L, M, X, D, E = (C.ACCESS3_READ, C.ACCESS3_LOOKUP, C.ACCESS3_MODIFY, C.ACCESS3_EXTEND,
                        C.ACCESS3_DELETE, C.ACCESS3_EXECUTE)
    ALL = 0x3F

    def fake(mode, uid=1000, gid=1000):
        return os.stat_result((mode, 1, 0, 1, uid, gid, 0, 0, 0, 0))

    f644 = fake(stat.S_IFREG | 0o644)
    assert access_from_stat(f644, ALL, 0, []) == R | M | X        # root: no exec without x bits
    assert access_from_stat(fake(stat.S_IFREG | 0o000), ALL, 0, []) == R | M | X
    assert access_from_stat(fake(stat.S_IFREG | 0o001), ALL, 0, []) == R | M | X | E
    assert access_from_stat(f644, ALL, 1000, [5]) == R | M | X    # owner
    assert access_from_stat(f644, ALL, 2000, [1000]) == R         # group
    assert access_from_stat(fake(stat.S_IFREG | 0o750), ALL, 2000, [7, 1000]) == R | E
    assert access_from_stat(fake(stat.S_IFREG | 0o750), ALL, 2000, [7]) == 0
    d755 = fake(stat.S_IFDIR | 0o755)
    assert access_from_stat(d755, ALL, 1000, []) == R | L | M | X | D
    assert access_from_stat(d755, ALL, 2000, []) == R | L
    assert access_from_stat(fake(stat.S_IFDIR | 0o722), ALL, 2000, []) == 0  # w without x
    assert access_from_stat(d755, ALL, 0, []) == R | L | M | X | D
    assert access_from_stat(d755, ALL, 0, [], read_only=True) == R | L
    assert access_from_stat(d755, R | D, 1000, []) == R | D   # only what was asked
    with Export(str(tree / "exp"), key=KEY, read_only=True) as e:
        assert access_from_stat(e.getattr(e.root_handle()), ALL, 0, [0], e.read_only) == R | L
        fh = e.lookup(e.root_handle(), "a.txt")[0]
        assert access_from_stat(e.getattr(fh), ALL, 0, [0], e.read_only) == R
    assert stat.S_ISREG(st_file.st_mode)


def test_fsinfo_fsstat_pathconf(tree):
    with Export(str(tree / "exp"), key=KEY) as e:
        fi = e.fsinfo(e.root_handle())
        assert fi.rtmax == fi.wtmax == 1048576 and fi.rtpref <= fi.rtmax
        assert fi.time_delta == (0, 1)
        assert fi.properties == C.FSF3_LINK | C.FSF3_SYMLINK | C.FSF3_HOMOGENEOUS | C.FSF3_CANSETTIME
        fs = e.fsstat(e.root_handle())
        v = os.statvfs(tree / "exp")
        assert fs.tbytes == v.f_blocks * v.f_frsize and fs.tfiles == v.f_files
        assert 0 <= fs.abytes <= fs.fbytes <= fs.tbytes
        pc = e.pathconf(e.root_handle())
        assert pc.name_max == 255 and pc.no_trunc and pc.chown_restricted
        assert not pc.case_insensitive and pc.case_preserving and pc.linkmax >= 1
        assert status_of(e.fsinfo, b"junk") == S.BADHANDLE


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("err,status", [
    (errno.ENOENT, S.NOENT), (errno.EEXIST, S.EXIST), (errno.ENOTDIR, S.NOTDIR),
    (errno.EISDIR, S.ISDIR), (errno.ENOTEMPTY, S.NOTEMPTY), (errno.EACCES, S.ACCES),
    (errno.EPERM, S.PERM), (errno.ENAMETOOLONG, S.NAMETOOLONG), (errno.ENOSPC, S.NOSPC),
    (errno.EROFS, S.ROFS), (errno.EXDEV, S.XDEV), (errno.EINVAL, S.INVAL),
    (errno.EFBIG, S.FBIG), (errno.EDQUOT, S.DQUOT), (errno.ESTALE, S.STALE),
    (errno.EMLINK, S.MLINK), (errno.ELOOP, S.INVAL), (errno.ENXIO, S.NXIO),
    (errno.ENODEV, S.NODEV), (errno.EIO, S.IO), (errno.EBADF, S.STALE),
    (errno.EOPNOTSUPP, S.NOTSUPP), (errno.ENOMEM, S.JUKEBOX), (errno.EAGAIN, S.JUKEBOX),
    (errno.EMFILE, S.JUKEBOX),
    (errno.EHOSTDOWN, S.SERVERFAULT), (errno.EFAULT, S.SERVERFAULT),
])
def test_error_mapping(err, status):
    assert nfsstat_from_oserror(OSError(err, os.strerror(err))) == status
    ne = NfsError.from_oserror(OSError(err, "x"))
    assert ne.status == status and ne.name == C.NFSSTAT3_NAMES[int(status)]


def test_nfserror():
    e = NfsError(S.STALE)
    assert e.status == 70 and e.name == "stale" and isinstance(e.status, int)
    assert FH_MAC_LEN == 12


def _mount(*args) -> bool:
    import subprocess
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


def test_mounts_kernel(tree):
    """A whole-fs mount as the export root takes the same-device fast path; a
    bind mount of a subdirectory does not, and objects of the same file system
    outside the bound subdirectory stay STALE.  Needs root and mount(8)."""
    if os.geteuid() != 0 or not kernel_handles_work(tree):
        pytest.skip("needs root")
    import subprocess
    tm = tree / "tmpfs"
    tm.mkdir()
    if not _mount("-t", "tmpfs", "nfsbulk-test", str(tm)):
        pytest.skip("cannot mount tmpfs here")
    try:
        (tm / "sub").mkdir()
        (tm / "sub" / "in.txt").write_bytes(b"in")
        (tm / "out.txt").write_bytes(b"out")
        with Export(str(tm), key=KEY, fd_ttl=0.0) as e:
            assert e.contain.whole_fs
            assert e.getattr(walk(e, "sub/in.txt")).st_size == 2
        bm = tree / "bind"
        bm.mkdir()
        assert _mount("--bind", str(tm / "sub"), str(bm))
        try:
            with Export(str(bm), key=KEY, fd_ttl=0.0, handle_mode="kernel") as e:
                assert not e.contain.whole_fs
                assert e.getattr(walk(e, "in.txt")).st_size == 2
                for p in (tm / "out.txt", tm):
                    fd = os.open(p, os.O_PATH)
                    try:
                        t, hb, _ = _kernel_handle(fd)
                    finally:
                        os.close(fd)
                    assert status_of(e.getattr, e.codec.pack_kernel(t, hb, None)) == S.STALE
                # the tmpfs below the export is a mount point: not exported
            with Export(str(tree), key=KEY, handle_mode="kernel") as e:
                assert status_of(e.lookup, e.root_handle(), "tmpfs") == S.ACCES
                ents, _, _ = rd(e, e.root_handle(), 0, b"\0" * 8, 10**5, plus=True, maxcount=10**6)
                tmpfs_ent = [x for x in ents if x.name == b"tmpfs"]
                assert tmpfs_ent and tmpfs_ent[0].fh is None
        finally:
            subprocess.run(["umount", str(bm)], capture_output=True)
    finally:
        subprocess.run(["umount", str(tm)], capture_output=True)
