"""Path safety: no request reaches outside the export.

Owns: name validation (check_name), component-by-component resolution from
the root fd (walk), and the containment check of objects opened by kernel
handle, with its two caches: handles verified inside (keyed by handle bytes)
and directories known to be inside (keyed by (dev, ino)). Both caches hold
entries for ``verify_ttl`` seconds, in insertion order == expiry order (a hit
does not extend an entry), so expired entries are dropped from the front and
a cache holds about verify_ttl seconds of traffic, never more than
``max_entries``.

How an object opened by handle is judged (kernel mode):
  * the export root is the mount point of a mount showing its whole file
    system (mountinfo root "/", not a bind mount of a subdirectory): same
    device == inside, since open_by_handle_at decodes through our mount;
  * directories: walk ".." up until the root (inside) or the fs root /
    another device (outside);
  * non-directories: the path the kernel reports for the fd (/proc/self/fd)
    is re-resolved from the root fd one component at a time and must reach
    the same (dev, ino); otherwise the parent recorded in the handle must be
    inside and still hold an entry with that inode number. Otherwise STALE.
In inode mode containment holds by construction (always resolved from the
root by name).

Every handle verified inside is also told to ``on_verified(fh, dev, ino,
expires)`` when set (the compiled fast path keeps its own cache of them:
rpcsrv.fast), and every handle forgotten to ``on_forget(fh)``.

Threads: every method is thread-safe; each cache has its own lock, held only
for dict bookkeeping, never across I/O or another lock.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections import OrderedDict

from ..proto.nfs3const import NFS3_MAXNAMLEN, NfsStat3
from .errors import NfsError
from .handles import open_kernel_handle

__all__ = ["Containment", "check_name", "split_rel", "is_whole_fs_mount", "O_PATH_FLAGS"]

O_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_PATH = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


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


class Containment:
    """The containment checks and caches of one export (see the module doc)."""

    def __init__(self, root_fd: int, root_id: tuple[int, int], real_b: bytes, verify_ttl: float,
                 max_entries: int):
        self.root_fd = root_fd
        self.root_id = root_id
        self.real_b = real_b
        self.verify_ttl = verify_ttl
        self.max_entries = max_entries
        self.whole_fs = False          # set by the Export in kernel mode (is_whole_fs_mount)
        self.on_verified = None        # f(fh, dev, ino, expires): a handle was verified inside
        self.on_forget = None          # f(fh): a handle's entry was dropped
        self._vlock = threading.Lock()
        self._verified: OrderedDict[bytes, tuple[int, int, float]] = OrderedDict()
        self._dlock = threading.Lock()
        self._inside_dirs: OrderedDict[tuple[int, int], float] = OrderedDict()

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

    # -- the verified-handles cache
    def verified_hit(self, fh: bytes, st) -> bool:
        now = time.monotonic()
        with self._vlock:
            v = self._verified.get(fh)
            if v is None:
                return False
            if v[2] < now or v[0] != st.st_dev or v[1] != st.st_ino:
                del self._verified[fh]
                return False
            return True

    def verified_add(self, fh: bytes, st) -> None:
        now = time.monotonic()
        with self._vlock:
            self._verified.pop(fh, None)
            self._verified[fh] = (st.st_dev, st.st_ino, now + self.verify_ttl)
            self._trim(self._verified, now, lambda e: e[2])
        if self.on_verified is not None:
            self.on_verified(fh, st.st_dev, st.st_ino, now + self.verify_ttl)

    def forget(self, fh: bytes) -> None:
        with self._vlock:
            self._verified.pop(fh, None)
        if self.on_forget is not None:
            self.on_forget(fh)

    def _trim(self, d: OrderedDict, now: float, expiry) -> None:
        while d and (len(d) > self.max_entries or expiry(next(iter(d.values()))) < now):
            d.popitem(last=False)

    # -- the checks
    def contained(self, fd: int, st, parent) -> bool:
        """Is the object behind O_PATH ``fd`` (lstat ``st``) inside the export?
        ``parent``: the (type, f_handle) recorded in its handle, or None."""
        if self.whole_fs:
            return True  # open_by_handle_at used our mount; same device checked
        if stat.S_ISDIR(st.st_mode):
            return self.dir_inside(fd, st)
        if self._kernel_path_inside(fd, st):
            return True
        if parent is None:
            return False
        try:
            pfd = open_kernel_handle(self.root_fd, parent[0], parent[1], os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            pst = os.fstat(pfd)
            if not stat.S_ISDIR(pst.st_mode) or not self.dir_inside(pfd, pst):
                return False
            return self._dir_has_inode(pfd, st)
        finally:
            os.close(pfd)

    def dir_inside(self, fd: int, st) -> bool:
        """Walk ".." from a directory until the root (True) or the top of the fs / another device."""
        now = time.monotonic()
        seen = []
        cur = fd
        try:
            for _ in range(4096):
                ident = (st.st_dev, st.st_ino)
                if ident == self.root_id:
                    break
                with self._dlock:
                    exp = self._inside_dirs.get(ident)
                if exp is not None and exp >= now:
                    break
                seen.append(ident)
                nfd = os.open("..", _DIR_PATH, dir_fd=cur)
                if cur != fd:
                    os.close(cur)
                cur = nfd
                pst = os.fstat(cur)
                if (pst.st_dev, pst.st_ino) == ident or pst.st_dev != self.root_id[0]:
                    return False  # reached the top of the fs / left the device
                st = pst
            else:
                return False
        except OSError:
            return False
        finally:
            if cur != fd:
                os.close(cur)
        exp = now + self.verify_ttl
        with self._dlock:
            d = self._inside_dirs
            for ident in seen:
                d.pop(ident, None)
                d[ident] = exp
            self._trim(d, now, lambda e: e)
        return True

    def _kernel_path_inside(self, fd: int, st) -> bool:
        """Re-resolve the kernel's idea of the fd's path from our root fd."""
        try:
            p = os.readlink(b"/proc/self/fd/%d" % fd)
        except OSError:
            return False
        prefix = self.real_b.rstrip(b"/") + b"/"
        if not p.startswith(prefix):
            return False
        comps = tuple(c for c in p[len(prefix):].split(b"/") if c)
        if not comps or any(c in (b".", b"..") for c in comps):
            return False
        try:
            wfd = self.walk(comps)
        except OSError:
            return False
        try:
            w = os.fstat(wfd)
        finally:
            os.close(wfd)
        return (w.st_dev, w.st_ino) == (st.st_dev, st.st_ino)

    def _dir_has_inode(self, pfd: int, st) -> bool:
        try:
            dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pfd)
        except OSError:
            return False
        try:
            with os.scandir(dfd) as it:
                for e in it:
                    if e.inode() == st.st_ino:
                        try:
                            s = os.stat(e.name, dir_fd=pfd, follow_symlinks=False)
                        except OSError:
                            continue
                        if (s.st_dev, s.st_ino) == (st.st_dev, st.st_ino):
                            return True
        except OSError:
            return False
        finally:
            os.close(dfd)
        return False
