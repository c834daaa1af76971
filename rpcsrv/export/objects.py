"""Values the export hands out: opened objects and file-system information.

Owns: Obj (an O_PATH fd opened by handle, owned by one caller that closes it
once), DirEntry (one READDIR(PLUS) entry), FsStat, FsInfo and PathConf (plain
values, in RFC 1813 field order). No locks; an Obj is never shared.
"""

from __future__ import annotations

import os
import stat
from typing import NamedTuple

__all__ = ["Obj", "DirEntry", "FsStat", "FsInfo", "PathConf", "detach"]


class DirEntry(NamedTuple):
    """One READDIR(PLUS) entry.  ``stat``/``fh`` are None for plain READDIR,
    and may be None in READDIRPLUS (e.g. a mount point: post_op_fh3 absent)."""
    fileid: int
    name: bytes
    cookie: int
    stat: os.stat_result | None
    fh: bytes | None


class FsStat(NamedTuple):
    tbytes: int
    fbytes: int
    abytes: int
    tfiles: int
    ffiles: int
    afiles: int
    invarsec: int


class FsInfo(NamedTuple):
    rtmax: int
    rtpref: int
    rtmult: int
    wtmax: int
    wtpref: int
    wtmult: int
    dtpref: int
    maxfilesize: int
    time_delta: tuple[int, int]
    properties: int


class PathConf(NamedTuple):
    linkmax: int
    name_max: int
    no_trunc: bool
    chown_restricted: bool
    case_insensitive: bool
    case_preserving: bool


class Obj:
    """An object opened by handle: ``fd`` is an O_PATH fd (never a symlink
    target), ``st`` its lstat, ``fh`` its handle, ``parent`` the kernel handle
    (type, bytes) of the directory its handle records, if any.  Owned by one
    caller; close it exactly once (``close()`` is idempotent, or use ``with``)."""

    __slots__ = ("fd", "st", "fh", "comps", "parent")

    def __init__(self, fd: int, st: os.stat_result, fh: bytes, comps: tuple | None = None, parent=None):
        self.fd = fd
        self.st = st
        self.fh = fh
        self.comps = comps  # inode mode: path components from the root
        self.parent = parent

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> "Obj":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # safety net only; callers close explicitly
        try:
            self.close()
        except Exception:
            pass


def detach(o: Obj) -> int:
    """Take the fd out of an Obj (the caller now owns it)."""
    fd, o.fd = o.fd, -1
    return fd
