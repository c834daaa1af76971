"""Containment against a local shell: whatever a local process (or another NFS server's client)
does to the export while a client holds handles, no byte from outside the export reaches the
client and nothing outside it is created or changed.

Every test runs on both request paths (rpcsrv.fast and the Python reference path), with raw RPC
calls (tests/rpcclient.py) so that each status can be checked exactly. Outside the export lie files
whose contents and names carry a random marker; every reply any client receives is searched for
it, and the outside tree (including what a test moved there) is compared byte for byte before and
after the client's attempts.
"""
import hashlib
import os
import pathlib
import shutil
import stat
import subprocess
import threading

import pytest
from prometheus_client import CollectorRegistry

from rpcclient import Nfs3
from rpcsrv.proto import nfs3xdr as X
from rpcsrv.proto.nfs3const import NfsStat3 as S
from rpcsrv.server import Server, ServerConfig

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="kernel file handles need root")

PATHS = [pytest.param(True, id="fast"), pytest.param(False, id="python")]
MARK = b"OUTSIDE-" + os.urandom(8).hex().encode()

# What RFC 1813 lets each procedure answer (section 3.3's error lists) plus JUKEBOX, which the
# server may give any procedure when it cannot finish in time (section 2.6; knfsd does).
_COMMON = {S.IO, S.STALE, S.BADHANDLE, S.SERVERFAULT, S.JUKEBOX}
ALLOWED = {
    "getattr": {0} | _COMMON,
    "lookup": {0, S.NOENT, S.ACCES, S.NOTDIR, S.NAMETOOLONG} | _COMMON,
    "read": {0, S.NXIO, S.ACCES, S.INVAL} | _COMMON,
    "readdirplus": {0, S.ACCES, S.NOTDIR, S.BAD_COOKIE, S.TOOSMALL, S.NOTSUPP} | _COMMON,
}


def serve(export, fast, tmp):
    cfg = ServerConfig(export=str(export), port=0, threads=2, arena_mib=64, fast_path=fast,
                       state_dir=str(tmp / ("state-%s" % os.path.basename(export))))
    s = Server(cfg, registry=CollectorRegistry())
    assert (s.fast is not None) == fast, s.fast_unusable
    s.start()
    return s


def fs_type(path):
    """`stat -f`'s name of the file system type (ext4 shows as "ext2/ext3")."""
    r = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True)
    return r.stdout.strip()


def snapshot(top):
    """Every name below `top` with its type, mode, size, link target and content hash."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for n in sorted(dirnames + filenames):
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            item = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_size, st.st_nlink)
            if stat.S_ISLNK(st.st_mode):
                item += (os.readlink(p),)
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    item += (hashlib.sha256(f.read()).hexdigest(),)
            out[os.path.relpath(p, top)] = item
    return out


class World:
    """base/export (served), base/archive and base/SECRET (outside), a client that records every
    reply it receives."""

    def __init__(self, tmp, fast, base=None):
        self.tmp = tmp
        self.base = base or tmp / "world"
        self.exp = self.base / "export"
        self.out = self.base / "archive"
        for d in (self.exp / "proj" / "sub", self.out):
            d.mkdir(parents=True, exist_ok=True)
        (self.base / "SECRET").write_bytes(MARK + b" top secret\n")
        (self.out / ("name-" + MARK.decode())).write_bytes(MARK + b" archived\n")
        (self.exp / "proj" / "file.txt").write_bytes(b"project file\n")
        (self.exp / "proj" / "sub" / "deep.txt").write_bytes(b"deep\n")
        (self.exp / "keep.txt").write_bytes(b"keep\n")
        self.server = serve(self.exp, fast, tmp)
        self.seen = []
        self.c = Nfs3(self.server.port, seen=self.seen)
        self.root = self.c.mnt(str(self.exp))

    def look(self, *names, dfh=None):
        fh = self.root if dfh is None else dfh
        for n in names:
            st, fh = self.c.lookup(fh, n.encode() if isinstance(n, str) else n)
            assert st == 0, (names, n, st)
        return fh

    def leaked(self):
        return [r for r in self.seen if MARK in r]

    def close(self):
        self.c.close()
        self.server.stop()


@pytest.fixture(params=PATHS)
def world(request, tmp_path):
    w = World(tmp_path, request.param)
    yield w
    w.close()
    assert not w.leaked(), "a reply carried bytes from outside the export"


def containment_checks(server):
    """nfsbulk_containment_checks_total from the server's exposition: {(path, result): value}."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families
    out = {}
    for fam in text_string_to_metric_families(generate_latest(server.registry).decode()):
        if fam.name == "nfsbulk_containment_checks":
            for smp in fam.samples:
                if smp.name.endswith("_total"):
                    out[(smp.labels["path"], smp.labels["result"])] = smp.value
    return out


def all_stale(w, dfh, ffh, other_dir, other_file):
    """Every procedure through the old handles of a directory `dfh` and a file `ffh` that are
    outside now: STALE, and nothing happens. `other_dir`/`other_file`: handles still inside."""
    c = w.c
    for name in (b"..", b".", b"file.txt", b"sub", b"nothing"):
        assert c.lookup(dfh, name)[0] == S.STALE, name
    assert c.getattr(dfh)[0] == S.STALE
    assert c.getattr(ffh)[0] == S.STALE
    assert c.access(dfh) == S.STALE and c.access(ffh) == S.STALE
    assert c.read(ffh)[0] == S.STALE
    assert c.readdirplus(dfh)[0] == S.STALE
    assert c.write(ffh, 0, b"EVIL")[0] == S.STALE
    assert c.setattr(ffh, X.Sattr3(None, None, None, 0, None, None))[0] == S.STALE
    assert c.create(dfh, b"evil-create")[0] == S.STALE
    assert c.mkdir(dfh, b"evil-dir")[0] == S.STALE
    assert c.rename(dfh, b"file.txt", other_dir, b"stolen") == S.STALE
    assert c.rename(other_dir, b"keep.txt", dfh, b"planted") == S.STALE
    assert c.link(ffh, other_dir, b"evil-link") == S.STALE
    assert c.link(other_file, dfh, b"evil-link") == S.STALE
    assert c.remove(dfh, b"file.txt") == S.STALE
    assert c.rmdir(dfh, b"sub") == S.STALE
    assert c.commit(ffh)[0] == S.STALE


@pytest.mark.parametrize("warm", [True, False], ids=["used", "unused"])
def test_directory_moved_out_locally(world, warm):
    """mv EXPORT/proj ARCHIVE/: the handles of proj, its subdirectory and its file go STALE on
    every procedure, `..` included; moved back, they work again."""
    w = world
    proj, sub = w.look("proj"), w.look("proj", "sub")
    f, deep = w.look("proj", "file.txt"), w.look("proj", "sub", "deep.txt")
    if warm:                                    # caches of both paths know these handles
        for _ in range(3):
            assert w.c.read(f)[1] == b"project file\n"
            assert w.c.lookup(sub, b"..") == (0, proj)
            assert w.c.lookup(proj, b"..") == (0, w.root)
            assert w.c.readdirplus(proj)[0] == 0
            assert w.c.getattr(deep)[0] == 0
    os.rename(w.exp / "proj", w.out / "proj")
    before = snapshot(w.base)
    for _ in range(2):                         # the second time with whatever the first cached
        all_stale(w, proj, f, w.root, w.look("keep.txt"))
        all_stale(w, sub, deep, w.root, w.look("keep.txt"))
    assert snapshot(w.base) == before
    assert w.c.read(w.look("keep.txt"))[1] == b"keep\n"          # the export itself still serves
    # the metrics say who decided: the compiled path walked and found them outside itself
    checks = containment_checks(w.server)
    path = "fast" if w.server.fast is not None else "python"
    assert checks[(path, "outside")] > 0 and checks[(path, "walked")] > 0, checks
    if warm:                                   # the uses before the move were served from kept proofs
        assert checks[(path, "kept")] > 0, checks
    os.rename(w.out / "proj", w.exp / "proj")
    assert w.c.read(f)[1] == b"project file\n"
    assert w.c.lookup(sub, b"..") == (0, proj) and w.c.lookup(proj, b"..") == (0, w.root)
    assert w.c.getattr(deep)[0] == 0


def test_dotdot_walk_ends_at_the_root(world):
    """`..` of the root is the root; `..` never leads above it, from any depth."""
    w = world
    assert w.c.lookup(w.root, b"..") == (0, w.root)
    sub = w.look("proj", "sub")
    fh = sub
    for _ in range(6):
        st, fh = w.c.lookup(fh, b"..")
        assert st == 0
    assert fh == w.root
    assert w.c.lookup(w.root, b".") == (0, w.root)


def test_client_made_directory_moved_out(world):
    """The client's own MKDIR/CREATE results, moved out locally, go STALE; `..` from them too."""
    w = world
    st, made, _, _ = w.c.mkdir(w.root, b"made")
    assert st == 0
    st, mf, _, _ = w.c.create(made, b"x.txt")
    assert st == 0
    assert w.c.write(mf, 0, b"mine")[0] == 0
    assert w.c.lookup(made, b"..") == (0, w.root)
    os.rename(w.exp / "made", w.out / "made")
    before = snapshot(w.base)
    all_stale(w, made, mf, w.root, w.look("keep.txt"))
    assert snapshot(w.base) == before


def test_files_moved_out_or_unlinked_from_inside(world):
    """A file moved out, and a file whose every link inside was removed (one link left outside),
    go STALE; a file moved within the export keeps its handle."""
    w = world
    for n in ("a.txt", "b.txt", "c.txt"):
        (w.exp / n).write_bytes(n.encode())
    a, b, cfh = (w.look(n) for n in ("a.txt", "b.txt", "c.txt"))
    for fh in (a, b, cfh):
        assert w.c.read(fh)[0] == 0
    os.rename(w.exp / "a.txt", w.out / "a.txt")
    os.link(w.exp / "b.txt", w.out / "b-link")
    os.unlink(w.exp / "b.txt")
    os.rename(w.exp / "c.txt", w.exp / "proj" / "sub" / "c-moved.txt")
    before = snapshot(w.base)
    keep = w.look("keep.txt")
    for fh in (a, b):
        assert w.c.getattr(fh)[0] == S.STALE
        assert w.c.read(fh)[0] == S.STALE
        assert w.c.write(fh, 0, b"EVIL")[0] == S.STALE
        assert w.c.setattr(fh, X.Sattr3(0o777, None, None, None, None, None))[0] == S.STALE
        assert w.c.link(fh, w.root, b"back-in") == S.STALE
        assert w.c.commit(fh)[0] == S.STALE
    assert snapshot(w.base) == before
    assert w.c.read(cfh)[1] == b"c.txt"                                  # still inside
    assert w.c.read(keep)[0] == 0


def test_moves_by_a_client_of_another_export(world, tmp_path):
    """A second NFS server exports the parent directory; its client moves proj out of the first
    export (an NFS RENAME). The first export's client holds STALE handles afterwards."""
    w = world
    proj, f = w.look("proj"), w.look("proj", "file.txt")
    assert w.c.read(f)[0] == 0 and w.c.readdirplus(proj)[0] == 0
    other = serve(w.base, w.server.fast is not None, tmp_path)
    try:
        c2 = Nfs3(other.port)
        try:
            base = c2.mnt(str(w.base))
            st, exp2 = c2.lookup(base, b"export")
            st2, arch2 = c2.lookup(base, b"archive")
            assert st == 0 and st2 == 0
            assert c2.rename(exp2, b"proj", arch2, b"proj") == 0
        finally:
            c2.close()
    finally:
        other.stop()
    before = snapshot(w.base)
    all_stale(w, proj, f, w.root, w.look("keep.txt"))
    assert snapshot(w.base) == before


@pytest.mark.parametrize("fast", PATHS)
@pytest.mark.parametrize("fs", ["ext4-or-tmp", "tmpfs"])
def test_remove_and_recreate(tmp_path, fast, fs):
    """A file or directory removed and made again locally (often with the same inode number) never
    lets the old handle reach the new object: STALE."""
    if fs == "tmpfs":
        if fs_type("/dev/shm") != "tmpfs":
            pytest.skip("/dev/shm is not a tmpfs here")
        base = pathlib.Path("/dev/shm") / ("nfsbulk-contain-%d-%s" % (os.getpid(), os.urandom(4).hex()))
        base.mkdir()
    else:
        base = tmp_path / "world"
    w = World(tmp_path, fast, base=base)
    try:
        (w.exp / "re.txt").write_bytes(b"old contents")
        (w.exp / "redir").mkdir()
        old_f, old_d = w.look("re.txt"), w.look("redir")
        old_ino = os.stat(w.exp / "re.txt").st_ino
        assert w.c.read(old_f)[1] == b"old contents" and w.c.readdirplus(old_d)[0] == 0
        reused = False
        for i in range(20):                                     # ext4 hands the freed number on
            os.unlink(w.exp / "re.txt")
            # the server's next use of the handle finds no link left and closes its fds, so the
            # inode (and its number) is free for the next file
            assert w.c.getattr(old_f)[0] == S.STALE
            (w.exp / "re.txt").write_bytes(b"NEW contents %d" % i)
            reused = os.stat(w.exp / "re.txt").st_ino == old_ino
            assert w.c.getattr(old_f)[0] == S.STALE
            assert w.c.read(old_f)[0] == S.STALE
            assert w.c.write(old_f, 0, b"EVIL")[0] == S.STALE
            if reused:
                break
        assert (w.exp / "re.txt").read_bytes().startswith(b"NEW contents")
        os.rmdir(w.exp / "redir")
        (w.exp / "redir").mkdir()
        assert w.c.lookup(old_d, b"..")[0] == S.STALE
        assert w.c.create(old_d, b"evil")[0] == S.STALE
        assert not os.listdir(w.exp / "redir")
        new_f = w.look("re.txt")
        assert new_f != old_f and w.c.read(new_f)[1].startswith(b"NEW contents")
        if fs_type(w.exp) == "ext2/ext3":
            # the point of the test on ext4: the new file really had the old number at least once
            assert reused, "ext4 never handed the freed inode number to the new file"
    finally:
        w.close()
        if fs == "tmpfs":
            shutil.rmtree(base, ignore_errors=True)
    assert not w.leaked()


def test_symlink_swapped_in(world):
    """A symlink put in place of a file or directory the client holds is never followed: the old
    handles keep naming the moved objects (inside), the name now gives the link itself, and
    nothing reaches or changes the link's target outside."""
    w = world
    (w.exp / "s.txt").write_bytes(b"s file")
    (w.exp / "sdir").mkdir()
    (w.exp / "sdir" / "in.txt").write_bytes(b"in sdir")
    s_fh, sdir = w.look("s.txt"), w.look("sdir")
    assert w.c.read(s_fh)[0] == 0 and w.c.readdirplus(sdir)[0] == 0
    os.rename(w.exp / "s.txt", w.exp / "s.old")
    os.symlink(w.base / "SECRET", w.exp / "s.txt")
    os.rename(w.exp / "sdir", w.exp / "sdir.old")
    os.symlink(w.out, w.exp / "sdir")
    before = snapshot(w.base)
    assert w.c.read(s_fh)[1] == b"s file"                      # the handle names the object
    st, link = w.c.lookup(w.root, b"s.txt")
    assert st == 0 and link != s_fh
    assert w.c.read(link)[0] == S.INVAL
    assert w.c.write(link, 0, b"EVIL")[0] == S.INVAL
    assert w.c.setattr(link, X.Sattr3(None, None, None, 0, None, None))[0] in (S.INVAL, 0)
    assert w.c.create(w.root, b"s.txt", 0, X.Sattr3(None, None, None, 0, None, None))[0] == S.EXIST
    st, dlink = w.c.lookup(w.root, b"sdir")
    assert st == 0 and dlink != sdir
    assert w.c.lookup(dlink, ("name-" + MARK.decode()).encode())[0] == S.NOTDIR
    assert w.c.readdirplus(dlink)[0] == S.NOTDIR
    assert w.c.create(dlink, b"evil")[0] == S.NOTDIR
    assert w.c.mkdir(dlink, b"evil")[0] == S.NOTDIR
    assert w.c.link(w.look("keep.txt"), dlink, b"evil") == S.NOTDIR
    assert w.c.rename(w.root, b"keep.txt", dlink, b"evil") == S.NOTDIR
    assert w.c.readlink(link) == (0, os.fsencode(w.base / "SECRET"))
    assert w.c.lookup(sdir, b"in.txt")[0] == 0                 # the old directory, now sdir.old
    assert snapshot(w.base) == before
    # the MOUNT path resolves names too: a symlink on the way is refused
    from rpcsrv.proto.xdr import Packer
    p = Packer()
    p.pack_string(os.fsencode(w.exp / "sdir"))
    assert w.c.call(1, p.get_buffer(), prog=100005).unpack_uint() == S.ACCES


RACE_SECONDS = float(os.environ.get("NFSBULK_RACE_SECONDS", "30"))


@pytest.mark.parametrize("fast", PATHS)
def test_rename_race(tmp_path, fast):
    """RACE_SECONDS (30) of local renames in and out of the export against two clients that loop
    LOOKUP `..`, READDIRPLUS, LOOKUP and READ through the handles of the moving directory and of
    what `..` gives: `..` answers the root or STALE (never the outside directory), no reply carries
    outside bytes or names, every status is one RFC 1813 allows, and the renames really crossed
    (both answers happened)."""
    w = World(tmp_path, fast)
    stop = threading.Event()
    counts = {}
    lock = threading.Lock()
    errors = []
    (w.exp / "racer").mkdir()
    (w.exp / "racer" / "f").write_bytes(b"racer file")
    racer, rf = w.look("racer"), w.look("racer", "f")
    outside_before = snapshot(w.out)

    def renamer():
        inside = True
        n = 0
        while not stop.is_set():
            if inside:
                os.rename(w.exp / "racer", w.out / "racer")
            else:
                os.rename(w.out / "racer", w.exp / "racer")
            inside = not inside
            n += 1
            if n % 64 == 0:
                # also swap a file in and out
                try:
                    os.rename(w.exp / "keep.txt", w.out / "keep.txt")
                    os.rename(w.out / "keep.txt", w.exp / "keep.txt")
                except OSError as e:
                    errors.append(e)
        if not inside:
            os.rename(w.out / "racer", w.exp / "racer")
        with lock:
            counts["renames"] = n

    def note(what, st):
        with lock:
            counts[(what, st)] = counts.get((what, st), 0) + 1
        if st not in ALLOWED[what]:
            errors.append((what, st))

    def client():
        c = Nfs3(w.server.port, seen=[])
        try:
            while not stop.is_set():
                st, up = c.lookup(racer, b"..")
                note("lookup", st)
                if st == 0 and up != w.root:
                    errors.append(("dotdot left the root", up))
                st, ents = c.readdirplus(racer)
                note("readdirplus", st)
                if st == 0 and {n for n, _ in ents} - {b".", b"..", b"f"}:
                    errors.append(("racer listing", ents))
                st, data, _ = c.read(rf)
                note("read", st)
                if st == 0 and data != b"racer file":
                    errors.append(("read", data))
                for n, fh in ents:
                    if n == b".." and fh is not None:
                        st, ents2 = c.readdirplus(fh)
                        note("readdirplus", st)
                        st, _ = c.lookup(fh, ("name-" + MARK.decode()).encode())
                        note("lookup", st)
                        if st == 0:
                            errors.append(("found the outside name through ..", fh))
                st, _ = c.getattr(rf)
                note("getattr", st)
                if len(c.seen) > 2000:
                    if any(MARK in r for r in c.seen):
                        errors.append("outside bytes in a reply")
                    c.seen.clear()
            if any(MARK in r for r in c.seen):
                errors.append("outside bytes in a reply")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))
        finally:
            c.close()

    threads = [threading.Thread(target=renamer)] + [threading.Thread(target=client) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        stop.wait(RACE_SECONDS)
        stop.set()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "a racer did not stop"
        assert not errors, errors[:5]
        # the renames crossed the clients' calls: both answers came, for `..` and for READ
        assert counts.get(("lookup", 0), 0) and counts.get(("lookup", S.STALE), 0), counts
        assert counts.get(("read", 0), 0) and counts.get(("read", S.STALE), 0), counts
        assert counts["renames"] > 100, counts
        assert snapshot(w.out) == outside_before                 # nothing made or changed outside
        assert (w.exp / "racer" / "f").read_bytes() == b"racer file"
        print("race %s: %s" % ("fast" if fast else "python", sorted(counts.items(), key=str)))
    finally:
        stop.set()
        w.close()
    assert not w.leaked()
