"""Inode mode: finding an object again from (st_ino, generation, parent st_ino).

Used when the kernel's handles are not available (not root, EPERM/EOPNOTSUPP,
or handles too large for NFS3_FHSIZE). Objects are found through an
inode -> path cache filled by LOOKUP/READDIR, then the parent hint, then a
bounded breadth-first search of the export (``search_limit`` entries).
Degradation: after a restart an object far from its recorded parent may cost
a tree search, may go STALE beyond ``search_limit``, and with generation 0 a
reused inode number is not detected.

Threads: the path cache has its own lock, held only for dict bookkeeping.
"""

from __future__ import annotations

import fcntl
import os
import stat
import struct
import threading
from collections import OrderedDict

from ..proto.nfs3const import NfsStat3
from .errors import NfsError
from .objects import Obj

__all__ = ["InodeIndex", "generation"]

_FS_IOC_GETVERSION = 0x80087601  # _IOR('v', 1, long)


def generation(fd: int, st) -> int:
    """The inode generation (FS_IOC_GETVERSION) of a file or directory, 0 when unknown."""
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        return 0
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
    if stat.S_ISDIR(st.st_mode):
        flags |= os.O_DIRECTORY
    try:
        rfd = os.open("/proc/self/fd/%d" % fd, flags)
    except OSError:
        return 0
    try:
        buf = fcntl.ioctl(rfd, _FS_IOC_GETVERSION, b"\0" * 8)
        return struct.unpack_from("=I", buf, 0)[0]
    except OSError:
        return 0
    finally:
        os.close(rfd)


class InodeIndex:
    """The inode -> path components cache and the search of one export."""

    def __init__(self, walk, root_id: tuple[int, int], max_paths: int, search_limit: int):
        self.walk = walk                 # Containment.walk: comps -> O_PATH fd
        self.root_id = root_id
        self.search_limit = search_limit
        self._plock = threading.Lock()
        self._paths: OrderedDict[int, tuple] = OrderedDict()
        self._paths_max = max_paths

    def remember(self, ino: int, comps: tuple) -> None:
        with self._plock:
            self._paths[ino] = comps
            self._paths.move_to_end(ino)
            while len(self._paths) > self._paths_max:
                self._paths.popitem(last=False)

    def _try(self, comps, ino: int, gen: int):
        try:
            fd = self.walk(comps)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if st.st_ino == ino and st.st_dev == self.root_id[0]:
                if gen == 0 or generation(fd, st) in (0, gen):
                    return fd, st
        except OSError:
            pass
        os.close(fd)
        return None

    def open(self, fh: bytes, ino: int, gen: int, pino: int) -> Obj:
        """Open the object of an inode-mode handle, or STALE."""
        if ino == self.root_id[1]:
            r = self._try((), ino, gen)
            if r:
                return Obj(r[0], r[1], fh, ())
            raise NfsError(NfsStat3.STALE)
        with self._plock:
            comps = self._paths.get(ino)
        if comps is not None:
            r = self._try(comps, ino, gen)
            if r:
                return Obj(r[0], r[1], fh, comps)
        # the parent hint
        if pino == self.root_id[1]:
            pcomps = ()
        else:
            with self._plock:
                pcomps = self._paths.get(pino)
        if pcomps is not None:
            name = self._find_in_dir(pcomps, ino)
            if name is not None:
                comps = pcomps + (name,)
                r = self._try(comps, ino, gen)
                if r:
                    self.remember(ino, comps)
                    return Obj(r[0], r[1], fh, comps)
        # bounded search of the tree
        for comps in self._search(ino):
            r = self._try(comps, ino, gen)
            if r:
                self.remember(ino, comps)
                return Obj(r[0], r[1], fh, comps)
        raise NfsError(NfsStat3.STALE, "object not found in the export")

    def _find_in_dir(self, comps, ino: int) -> bytes | None:
        try:
            pfd = self.walk(comps)
        except OSError:
            return None
        try:
            dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pfd)
        except OSError:
            os.close(pfd)
            return None
        try:
            with os.scandir(dfd) as it:
                for e in it:
                    if e.inode() == ino:
                        return os.fsencode(e.name)
        except OSError:
            return None
        finally:
            os.close(dfd)
            os.close(pfd)
        return None

    def _search(self, ino: int):
        """Breadth-first search of the export for ``ino`` (at most
        ``search_limit`` entries), yielding candidate component tuples and
        remembering directory paths on the way."""
        budget = self.search_limit
        queue = [()]
        qi = 0
        while qi < len(queue) and budget > 0:
            comps = queue[qi]
            qi += 1
            try:
                pfd = self.walk(comps)
            except OSError:
                continue
            try:
                dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pfd)
            except OSError:
                os.close(pfd)
                continue
            found = []
            try:
                with os.scandir(dfd) as it:
                    for e in it:
                        budget -= 1
                        name = os.fsencode(e.name)
                        if e.inode() == ino:
                            found.append(comps + (name,))
                        try:
                            isdir = e.is_dir(follow_symlinks=False)
                        except OSError:
                            isdir = False
                        if isdir:
                            queue.append(comps + (name,))
                            self.remember(e.inode(), comps + (name,))
                        if budget <= 0:
                            break
            except OSError:
                pass
            finally:
                os.close(dfd)
                os.close(pfd)
            yield from found
