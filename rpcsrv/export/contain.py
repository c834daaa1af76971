"""Containment: every object a request uses is proven to lie below the export root, when it is used.

Owns: name validation (check_name), component-by-component resolution from the root fd (walk),
and the proofs of membership of objects opened by handle, with the inotify watches that keep a
proof only while nothing can have ended it.

Theory
------
An object is *inside* when it is the export root, a directory whose chain of ".." reaches the
root, or a non-directory with a link (a name) in an inside directory. A handle names an object,
not a path, and a local process may rename anything at any moment, so membership is a fact about
a moment: it is proven when a request uses a handle, never remembered from an earlier use.

  * A directory is proven by walking ".." by descriptor (openat(fd, "..", O_PATH)), comparing
    (st_dev, st_ino) with the root's, until the root or a directory whose proof still holds
    (inside), or the top of the file system or another device (outside).
  * A non-directory is proven by one of its links in a proven directory: the last component of
    the path the kernel reports for its descriptor (/proc/self/fd, a snapshot taken under the
    kernel's rename lock) looked up in the parent its handle records; else that path resolved
    from the root; else a scan of the recorded parent for its inode. The name must lead to the
    same (st_dev, st_ino) with no symlink followed (a kernel that evicted the dentry of a file
    moved to another directory leaves only the scan, which cannot find it: STALE, as knfsd's
    subtree_check is for every cross-directory rename).

Keeping a proof: before the walk reads an object's parent (or the file proof reads its link),
the object is watched (inotify, watch.py) and its entry registered, so any later move of it is
an event that ends the proof. A directory's membership changes only when it or an ancestor is
renamed, and every ancestor of a proven directory is itself proven, so IN_MOVE_SELF on a proven
directory ends every directory proof at once (the epoch is bumped); a directory removed ends its
own. A non-directory's proof ends with any change of its links (IN_MOVE_SELF, IN_ATTRIB: the link
count, IN_DELETE_SELF), or with the epoch. An entry evicted while it proves a directory bumps the
epoch too (its watch is gone). A proof is used only after the queued events are applied (sync():
one FIONREAD when nothing is queued), and a walk counts only if no event ended an entry it relied
on while it ran (otherwise it walks again, TRIES times, then JUKEBOX): a walk that raced a rename
is never taken as a proof. The queue overflowing ends every proof.

Requests: every NFS procedure runs in a transaction (begin/end, rpcsrv.nfsd.nfs3): the queued
events are applied once at its start, and its proofs are used without applying them again. For
a read, end() applies the events queued since and says whether every proof the read used held
until then (held()); a read whose transaction did not hold runs again, so every byte of a read
reply was read while the objects it names were inside. For a modifying procedure, a rename
racing the operation itself is the window knfsd has too. Outside a transaction (MOUNT, tests)
every proof applies the queue first.

Where proofs are not kept: without inotify (no instance left for this user) a walk at each use
is the whole proof, and concurrent renames can fool it; on a file system that can change without
the local kernel seeing it (not in watch.LOCAL_FS_MAGIC: nfs, fuse, overlay...) watches still
catch local races but every use walks. When the export root is the mount point of a whole file
system (`whole_fs`), every object open_by_handle_at can reach through that mount is inside and
nothing is walked.

Threads: every method is thread-safe. One lock guards the tables, the epoch and the counters; it
is held for bookkeeping and for applying events, never across a walk. The export's read
transaction is per thread (threading.local).
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections import OrderedDict

from ..proto.nfs3const import NFS3_MAXNAMLEN, NfsStat3
from .errors import NfsError
from .handles import kernel_handle, open_kernel_handle
from .watch import DIR_MASK, FILE_MASK, IN_IGNORED, IN_MOVE_SELF, IN_Q_OVERFLOW, IN_UNMOUNT, Inotify, \
    local_fs

__all__ = ["Containment", "check_name", "split_rel", "is_whole_fs_mount", "O_PATH_FLAGS", "TRIES"]

O_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_PATH = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
#: walks (or link searches) raced by a rename before a request gets JUKEBOX
TRIES = 4
_MAX_DEPTH = 4096


def check_name(name: bytes | str, *, allow_dots: bool = True) -> bytes:
    """Validate one filename3 and return it as bytes.
    Empty, containing '/' or NUL -> INVAL (RFC 1813 leaves the status open;
    knfsd rejects such names while decoding).  > 255 bytes -> NAMETOOLONG.
    With ``allow_dots=False`` (CREATE, MKDIR, REMOVE, RENAME...) "." and ".."
    -> INVAL as well."""
    b = name if isinstance(name, bytes) else (bytes(name) if isinstance(name, (bytearray, memoryview))
                                              else os.fsencode(name))
    if not b:
        raise NfsError(NfsStat3.INVAL, "empty name")
    if len(b) > NFS3_MAXNAMLEN:
        raise NfsError(NfsStat3.NAMETOOLONG)
    if b"/" in b or b"\0" in b:
        raise NfsError(NfsStat3.INVAL, "name contains '/' or NUL")
    if not allow_dots and b in (b".", b".."):
        raise NfsError(NfsStat3.INVAL, "name is . or ..")
    return b


def split_rel(relpath) -> list[bytes]:
    """Components of a path relative to the root; ".." anywhere -> ACCES."""
    p = relpath if isinstance(relpath, bytes) else os.fsencode(relpath)
    comps = [c for c in p.split(b"/") if c and c != b"."]
    if b".." in comps:
        raise NfsError(NfsStat3.ACCES, "'..' in path")
    return comps


def is_whole_fs_mount(mount_id: int, path: str) -> bool:
    """True if ``path`` is the mount point of mount ``mount_id`` and that mount
    shows its whole file system (mountinfo root field "/", so not a bind mount
    of a subdirectory).  Then every object open_by_handle_at can reach through
    that mount is below ``path``.  False when unsure."""
    def unescape(f: str) -> str:
        return f.encode().decode("unicode_escape").encode("latin-1").decode("utf-8", "surrogateescape")

    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4 and fields[0] == str(mount_id):
                    return fields[3] == "/" and unescape(fields[4]) == path
    except OSError:
        pass
    return False


class _Proof:
    """One watched object: ``ok`` and ``epoch`` say whether its proof holds (ok and epoch ==
    the current epoch); ``gen`` changes whenever an event touches it (never reused)."""

    __slots__ = ("key", "isdir", "wd", "ok", "epoch", "gen")

    def __init__(self, key, isdir, wd, gen):
        self.key, self.isdir, self.wd, self.gen = key, isdir, wd, gen
        self.ok, self.epoch = False, 0


class _Txn:
    """A request's transaction: the counters at its start and, for a read, the proofs it used,
    as (entry or None for a directory proof, entry gen, epoch)."""

    __slots__ = ("inval", "deps", "held", "reading")

    def __init__(self, inval, reading):
        self.inval = inval
        self.reading = reading
        self.deps = []
        self.held = False


class Containment:
    """The containment proofs of one export (see the module doc).

    ``max_entries`` bounds the watched objects (one inotify watch each). ``mount_id``: the root's
    mount in kernel mode (a directory reached by name below another mount is not ours).
    ``on_forget(fh)``: set by the fast path, told of handles whose objects went away."""

    def __init__(self, root_fd: int, root_id: tuple[int, int], real_b: bytes, max_entries: int = 16384):
        self.root_fd = root_fd
        self.root_id = root_id
        self.real_b = real_b
        self.max_entries = max(256, max_entries)
        self.whole_fs = False          # set by the Export in kernel mode (is_whole_fs_mount)
        self.mount_id = None           # set by the Export in kernel mode
        self.on_forget = None
        self.ino = Inotify.open()
        #: proofs are kept between uses (inotify, and a file system that changes only locally)
        self.keep = self.ino is not None and local_fs(root_fd)
        self._lock = threading.Lock()
        self._tls = threading.local()
        self._proofs: OrderedDict[tuple[int, int], _Proof] = OrderedDict()
        self._by_wd: dict[int, _Proof] = {}
        self._epoch = 1
        self._inval = 0                # bumped whenever a proof ends (the epoch's bumps included)
        self._gen = 0
        self._draining = 0
        self.counts = {"hits": 0, "walks": 0, "steps": 0, "links": 0, "scans": 0, "outside": 0,
                       "raced": 0, "ended": 0, "epochs": 0, "evicted": 0, "unwatched": 0}

    def close(self) -> None:
        if self.ino is not None:
            self.ino.close()

    # -- resolution from the root
    def walk(self, comps) -> int:
        """O_PATH fd for root/comps[0]/comps[1]..., one component at a time,
        never following a symlink (a symlink in the middle -> ENOTDIR)."""
        cur = os.open(".", _DIR_PATH, dir_fd=self.root_fd)
        try:
            for c in comps:
                nfd = os.open(c, O_PATH_FLAGS, dir_fd=cur)
                os.close(cur)
                cur = nfd
        except BaseException:
            os.close(cur)
            raise
        return cur

    # -- events
    def sync(self) -> None:
        """Apply the queued events: afterwards no proof is trusted that an event queued before
        this call ended."""
        ino = self.ino
        if ino is None or self.whole_fs:
            return
        n = ino.pending()
        if n == 0 and self._draining == 0:
            return
        with self._lock:
            self._draining += 1
            try:
                n = ino.pending()          # another thread may have read them meanwhile
                if n:
                    self._apply(ino.read(n))
            finally:
                self._draining -= 1

    def _apply(self, events) -> None:
        """Lock held."""
        for wd, mask in events:
            if mask & (IN_Q_OVERFLOW | IN_UNMOUNT):
                self._bump()
                continue
            p = self._by_wd.get(wd)
            if p is None:
                continue
            self._gen += 1
            p.gen = self._gen
            self._inval += 1
            self.counts["ended"] += 1
            if p.isdir and (mask & IN_MOVE_SELF) and p.ok and p.epoch == self._epoch:
                self._bump()
            p.ok = False
            if mask & IN_IGNORED:          # the kernel dropped the watch: forget the entry
                del self._by_wd[wd]
                if self._proofs.get(p.key) is p:
                    del self._proofs[p.key]
                p.wd = None

    def _bump(self) -> None:
        """Lock held: every directory proof (and so every proof) ends."""
        self._epoch += 1
        self._inval += 1
        self.counts["epochs"] += 1

    # -- the table (lock held)
    def _entry(self, key, isdir: bool, wd) -> _Proof:
        """The entry of ``key`` watched as ``wd`` (created, or moved to the front of the LRU)."""
        p = self._proofs.get(key)
        if p is not None and p.isdir != isdir:     # the inode number went to an object of another type
            self._drop(p, keep_watch=p.wd == wd)
            p = None
        if p is None:
            self._gen += 1
            p = _Proof(key, isdir, None, self._gen)
            self._proofs[key] = p
        else:
            self._proofs.move_to_end(key)
        if wd is not None and p.wd != wd:
            if p.wd is not None and self._by_wd.get(p.wd) is p:
                del self._by_wd[p.wd]
            old = self._by_wd.get(wd)
            if old is not None and old is not p:   # a stale entry of a freed inode
                self._drop(old, keep_watch=True)
            p.wd = wd
            self._by_wd[wd] = p
        while len(self._proofs) > self.max_entries:
            self.counts["evicted"] += 1
            self._drop(next(iter(self._proofs.values())))
        return p

    def _drop(self, p: _Proof, keep_watch: bool = False) -> None:
        if self._proofs.get(p.key) is p:
            del self._proofs[p.key]
        if p.isdir and p.ok and p.epoch == self._epoch:
            self._bump()               # its watch goes: the proofs below it cannot be kept
        p.ok = False
        if p.wd is not None and self._by_wd.get(p.wd) is p:
            del self._by_wd[p.wd]
            if not keep_watch and self.ino is not None:
                self.ino.remove(p.wd)
        p.wd = None

    def _valid(self, key, isdir: bool):
        """Lock held: the entry of ``key`` if its proof holds."""
        p = self._proofs.get(key)
        if p is not None and p.ok and p.isdir == isdir and p.epoch == self._epoch:
            self._proofs.move_to_end(key)
            return p
        return None

    def _watch(self, fd: int, isdir: bool, key):
        """Watch the object behind ``fd`` and register its entry; -> (entry, gen) or (None, 0).
        An entry that has a watch keeps it (the kernel drops a watch only with IN_IGNORED, which
        drops the entry): no new watch is asked for."""
        with self._lock:
            p = self._proofs.get(key)
            if p is not None and p.isdir == isdir and p.wd is not None:
                self._proofs.move_to_end(key)
                return p, p.gen
        wd = self.ino.add(fd, DIR_MASK if isdir else FILE_MASK) if self.ino is not None else None
        if wd is None:
            self.counts["unwatched"] += 1
            return None, 0
        with self._lock:
            p = self._entry(key, isdir, wd)
            return p, p.gen

    # -- request transactions
    def begin(self, reading: bool) -> "_Txn":
        """A request starts (rpcsrv.nfsd.nfs3): the queued events are applied once, and the
        request's proofs are used without applying them again. ``reading``: record the proofs
        used, for end()."""
        self.sync()
        txn = _Txn(self._inval, reading)
        self._tls.txn = txn
        return txn

    def end(self, txn: "_Txn") -> bool:
        """The request is done: for a read, did every proof it used hold until now (held())?"""
        self._tls.txn = None
        return self.held(txn) if txn.reading else True

    @contextlib.contextmanager
    def reading(self):
        """begin(True) ... end() as a block; the caller reads ``txn.held`` after it."""
        txn = self.begin(True)
        try:
            yield txn
        finally:
            txn.held = self.end(txn)

    def held(self, txn: _Txn) -> bool:
        """After the events queued so far: did every proof ``txn`` used hold until now?"""
        self.sync()
        if self._inval == txn.inval:
            return True
        with self._lock:
            for p, gen, ep in txn.deps:
                if ep != self._epoch:
                    return False
                if p is not None and (self._proofs.get(p.key) is not p or p.gen != gen):
                    return False
            return True

    @contextlib.contextmanager
    def refusing(self, status: int):
        """Inside the block every proof fails with ``status`` (a read that lost every race
        answers JUKEBOX through its handler's own error path)."""
        tls = self._tls
        old = getattr(tls, "refuse", None)
        tls.refuse = status
        try:
            yield
        finally:
            tls.refuse = old

    def forget(self, fh: bytes) -> None:
        if self.on_forget is not None:
            self.on_forget(fh)

    # -- the proofs
    def prove(self, fd: int, st, parent=None) -> bool:
        """Is the object behind ``fd`` (its lstat ``st``) inside the export now? ``parent``: the
        kernel handle (type, bytes) its handle records, or None. JUKEBOX when renames raced
        every try."""
        tls = self._tls
        refuse = getattr(tls, "refuse", None)
        if refuse is not None:
            raise NfsError(refuse, "containment raced local renames")
        txn = getattr(tls, "txn", None)
        if txn is None and not self.whole_fs:
            self.sync()
        return self._prove(fd, st, parent, txn)

    def _prove(self, fd: int, st, parent, txn) -> bool:
        if self.whole_fs:
            return True
        key = (st.st_dev, st.st_ino)
        if key == self.root_id:
            return True
        if st.st_dev != self.root_id[0]:
            return False
        isdir = stat.S_ISDIR(st.st_mode)
        with self._lock:
            p = self._valid(key, isdir)
            if p is not None:
                self.counts["hits"] += 1
                if txn is not None and txn.reading:
                    txn.deps.append((None if isdir else p, p.gen, self._epoch))
                return True
        if isdir:
            return self._prove_dir(fd, st, txn)
        return self._prove_file(fd, st, parent, txn)

    def _settle(self, chain, e0) -> bool:
        """After a walk or a link search: sync, then, if no event touched ``chain`` (entries
        with their gens at the start) and the epoch is still ``e0``, keep the proofs."""
        if self.ino is None:
            return True
        self.sync()
        with self._lock:
            if self._epoch != e0:
                return False
            for p, g in chain:
                if p is None:
                    continue
                if self._proofs.get(p.key) is not p or p.gen != g:
                    return False
            if self.keep and all(p is not None for p, _ in chain):
                for p, _ in chain:
                    p.ok, p.epoch = True, e0
            return True

    def _prove_dir(self, fd: int, st, txn) -> bool:
        root = self.root_id
        for _ in range(TRIES):
            e0 = self._epoch
            chain = []
            cur, cst = fd, st
            inside = False
            try:
                for _depth in range(_MAX_DEPTH):
                    key = (cst.st_dev, cst.st_ino)
                    if key == root:
                        inside = True
                        break
                    if chain:
                        with self._lock:
                            if self._valid(key, True) is not None:
                                inside = True
                                break
                    chain.append(self._watch(cur, True, key))
                    nfd = os.open("..", _DIR_PATH, dir_fd=cur)
                    if cur != fd:
                        os.close(cur)
                    cur = nfd
                    pst = os.fstat(cur)
                    if (pst.st_dev, pst.st_ino) == key or pst.st_dev != root[0]:
                        break                  # the top of the file system, or another device
                    cst = pst
            except OSError:
                inside = False
            finally:
                if cur != fd:
                    os.close(cur)
            with self._lock:
                self.counts["walks"] += 1
                self.counts["steps"] += len(chain)
            if not inside:
                with self._lock:
                    self.counts["outside"] += 1
                return False
            if self._settle(chain, e0):
                if txn is not None and txn.reading:
                    txn.deps.append((None, 0, e0))
                return True
            with self._lock:
                self.counts["raced"] += 1
        raise NfsError(NfsStat3.JUKEBOX, "directory walk raced local renames %d times" % TRIES)

    def _prove_file(self, fd: int, st, parent, txn) -> bool:
        key = (st.st_dev, st.st_ino)
        for _ in range(TRIES):
            e0 = self._epoch
            me = self._watch(fd, False, key)
            if not self._find_link(fd, st, parent, txn):
                with self._lock:
                    self.counts["outside"] += 1
                return False
            if self._settle([me], e0):
                if txn is not None and txn.reading and me[0] is not None:
                    txn.deps.append((me[0], me[1], e0))
                return True
            with self._lock:
                self.counts["raced"] += 1
        raise NfsError(NfsStat3.JUKEBOX, "link search raced local renames %d times" % TRIES)

    # -- finding a link of a non-directory in a proven directory
    def _find_link(self, fd: int, st, parent, txn) -> bool:
        with self._lock:
            self.counts["links"] += 1
        key = (st.st_dev, st.st_ino)
        try:
            path = os.readlink(b"/proc/self/fd/%d" % fd)
        except OSError:
            path = b""
        base = path.rsplit(b"/", 1)[-1] if path.startswith(b"/") and len(path) > 1 else None
        pfd = self._open_parent(parent)
        try:
            if pfd is not None and base and self._links(pfd, base, key) and self._dir_ok(pfd, txn):
                return True
            d = self._parent_by_path(path)
            if d is not None:
                dfd, name = d
                try:
                    if self._links(dfd, name, key) and self._dir_ok(dfd, txn):
                        return True
                finally:
                    os.close(dfd)
            if pfd is not None:
                with self._lock:
                    self.counts["scans"] += 1
                for name in self._names_of(pfd, st.st_ino):
                    if self._links(pfd, name, key) and self._dir_ok(pfd, txn):
                        return True
            return False
        finally:
            if pfd is not None:
                os.close(pfd)

    def _dir_ok(self, dfd: int, txn) -> bool:
        try:
            dst = os.fstat(dfd)
        except OSError:
            return False
        return stat.S_ISDIR(dst.st_mode) and self._prove(dfd, dst, None, txn)

    @staticmethod
    def _links(dfd: int, name: bytes, key) -> bool:
        """Does ``name`` in the directory lead to ``key`` without following a symlink?"""
        try:
            s = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except (OSError, ValueError):
            return False
        return (s.st_dev, s.st_ino) == key

    def _open_parent(self, parent):
        """The directory a handle records, opened by its kernel handle (O_PATH), or None."""
        if parent is None:
            return None
        try:
            pfd = open_kernel_handle(self.root_fd, parent[0], parent[1], os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return None
        return pfd

    def _parent_by_path(self, path: bytes):
        """(fd of the parent directory, last name) of ``path`` (the kernel's path of an object)
        when it lies below the root's current path, resolved from the root fd one component at
        a time; in kernel mode reopened by its handle, so a bind mount on the way is refused."""
        if not path.startswith(b"/"):
            return None
        try:
            rp = os.readlink(b"/proc/self/fd/%d" % self.root_fd)
        except OSError:
            return None
        prefix = rp.rstrip(b"/") + b"/"
        if not path.startswith(prefix):
            return None
        comps = [c for c in path[len(prefix):].split(b"/") if c]
        if not comps or any(c in (b".", b"..") for c in comps):
            return None
        try:
            dfd = self.walk(comps[:-1])
        except OSError:
            return None
        if self.mount_id is None:
            return dfd, comps[-1]
        try:
            htype, hb, mnt = kernel_handle(dfd)
            if mnt != self.mount_id:
                return None
            return open_kernel_handle(self.root_fd, htype, hb, os.O_PATH | os.O_CLOEXEC), comps[-1]
        except OSError:
            return None
        finally:
            os.close(dfd)

    @staticmethod
    def _names_of(pfd: int, ino: int) -> list[bytes]:
        """Names in the directory whose entry says inode ``ino``."""
        try:
            dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pfd)
        except OSError:
            return []
        try:
            with os.scandir(dfd) as it:
                return [os.fsencode(e.name) for e in it if e.inode() == ino]
        except OSError:
            return []
        finally:
            os.close(dfd)

    def stats(self) -> dict:
        """Counters and table sizes (for metrics and tests)."""
        with self._lock:
            out = dict(self.counts)
            out["entries"] = len(self._proofs)
            out["proven"] = sum(1 for p in self._proofs.values() if p.ok and p.epoch == self._epoch)
            out["epoch"] = self._epoch
            out["keep"] = self.keep
            return out
