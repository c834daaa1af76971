"""Open-file leases: regular files opened once for READ/WRITE and shared.

Owns: the cache {handle: _OpenFile} (an LRU of at most ``max_files``, entries
kept for ``ttl`` seconds) and the fds in it. A cached fd saves opening the file
again, never its containment proof: every lease proves the file inside
(``prove``, contain.Containment.prove) as opening it by handle does. Fds are refcounted: the cache
holds one reference, each FileLease one more, and the fd is closed when the
count reaches zero, so an eviction never closes an fd under a running
preadv/pwritev. A writable (O_RDWR) entry serves reads too; a read-only entry
is replaced when a write needs the file.

Threads: thread-safe; one lock for the dict and the refcounts, never held
across I/O. ``close()`` runs after the workers stop.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections import OrderedDict

from ..proto.nfs3const import NfsStat3
from .errors import NfsError
from .objects import Obj

__all__ = ["OpenFiles", "FileLease", "reopen"]


def reopen(obj: Obj, flags: int) -> int:
    """A real fd (caller closes) for an Obj, through /proc/self/fd. Refuses symlinks (INVAL)."""
    if stat.S_ISLNK(obj.st.st_mode):
        raise NfsError(NfsStat3.INVAL, "symlink")
    try:
        return os.open("/proc/self/fd/%d" % obj.fd, flags | os.O_CLOEXEC)
    except OSError as e:
        raise NfsError.from_oserror(e) from None


class _OpenFile:
    __slots__ = ("fd", "writable", "refs", "expires", "ino", "parent")

    def __init__(self, fd: int, writable: bool, expires: float, ino: int, parent=None):
        self.fd = fd
        self.writable = writable
        self.refs = 1  # the cache's own reference
        self.expires = expires
        self.ino = ino
        self.parent = parent  # the kernel handle of the directory the file's handle records


class FileLease:
    """A regular file opened for I/O, shared through the open-file cache.
    Use ``fd`` with os.preadv/os.pwritev, then ``release()`` exactly once (or
    ``with``).  ``st`` is an fstat taken when the lease was granted."""

    __slots__ = ("_files", "_of", "fd", "fh", "st", "writable")

    def __init__(self, files: "OpenFiles", of: _OpenFile, fh: bytes, st: os.stat_result):
        self._files = files
        self._of = of
        self.fd = of.fd
        self.fh = fh
        self.st = st
        self.writable = of.writable

    def stat(self) -> os.stat_result:
        return os.fstat(self.fd)

    def release(self) -> None:
        of, self._of = self._of, None
        if of is not None:
            self._files.unref(of)
            self.fd = -1

    def __enter__(self) -> "FileLease":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class OpenFiles:
    """The open-file cache of one export. ``open_handle(fh) -> Obj`` opens by handle (and
    proves it inside); ``prove(fd, st, parent) -> bool`` proves a cached fd's file inside;
    ``on_gone(dev, ino)``: a cached file was found with no link left (drop every fd of it)."""

    def __init__(self, open_handle, prove, ttl: float, max_files: int, on_gone=None):
        self._open_handle = open_handle
        self._prove = prove
        self._on_gone = on_gone          # f(dev, ino): a cached file lost its last link
        self.ttl = ttl
        self._lock = threading.Lock()
        self._files: OrderedDict[bytes, _OpenFile] = OrderedDict()
        self._max = max(1, max_files)

    def lease(self, fh: bytes, write: bool) -> FileLease:
        """A lease on a cached fd of a regular file (O_RDONLY, or O_RDWR when ``write``).
        ISDIR for directories, INVAL for other types, STALE if the file was removed."""
        now = time.monotonic()
        with self._lock:
            of = self._files.get(fh)
            if of is not None and of.expires >= now and (of.writable or not write):
                of.refs += 1
                self._files.move_to_end(fh)
            else:
                of = None
        if of is not None:
            try:
                st = os.fstat(of.fd)
            except OSError:
                self.unref(of)
                raise
            try:
                if st.st_nlink == 0:
                    if self._on_gone is not None:
                        self._on_gone(st.st_dev, st.st_ino)
                    raise NfsError(NfsStat3.STALE, "file removed")
                if not self._prove(of.fd, st, of.parent):
                    raise NfsError(NfsStat3.STALE, "file outside the export")
            except BaseException:
                self._drop(fh, of)
                self.unref(of)
                raise
            return FileLease(self, of, fh, st)

        with self._open_handle(fh) as o:
            if stat.S_ISDIR(o.st.st_mode):
                raise NfsError(NfsStat3.ISDIR)
            if not stat.S_ISREG(o.st.st_mode):
                raise NfsError(NfsStat3.INVAL, "not a regular file")
            fd = reopen(o, os.O_RDWR if write else os.O_RDONLY)
            parent = o.parent
        try:
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        new = _OpenFile(fd, write, now + self.ttl, st.st_ino, parent)
        new.refs = 2  # the cache + this lease
        evicted = []
        with self._lock:
            old = self._files.get(fh)
            if old is not None:
                del self._files[fh]
                evicted.append(old)
            self._files[fh] = new
            while len(self._files) > self._max:
                evicted.append(self._files.popitem(last=False)[1])
        for e in evicted:
            self.unref(e)
        return FileLease(self, new, fh, st)

    def _drop(self, fh: bytes, of: _OpenFile) -> None:
        with self._lock:
            if self._files.get(fh) is of:
                del self._files[fh]
            else:
                return
        self.unref(of)

    def unref(self, of: _OpenFile) -> None:
        with self._lock:
            of.refs -= 1
            fd = of.fd if of.refs == 0 else -1
            if fd >= 0:
                of.fd = -1
        if fd >= 0:
            os.close(fd)

    def forget(self, fh: bytes) -> None:
        with self._lock:
            of = self._files.pop(fh, None)
        if of is not None:
            self.unref(of)

    def forget_inode(self, ino: int) -> None:
        """Drop every cached file of inode `ino` (its last link is gone: free it now)."""
        with self._lock:
            fhs = [fh for fh, of in self._files.items() if of.ino == ino]
            dead = [self._files.pop(fh) for fh in fhs]
        for of in dead:
            self.unref(of)

    def count(self) -> int:
        with self._lock:
            return len(self._files)

    def close(self) -> None:
        """Drop the cache's references (leased fds close on release)."""
        with self._lock:
            entries = list(self._files.values())
            self._files.clear()
        for of in entries:
            self.unref(of)
