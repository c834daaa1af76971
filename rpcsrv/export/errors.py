"""Errors of the exported tree: NfsError carries the nfsstat3 of the reply.

Owns: the exception every export and nfsd function raises for anything a
client or the file system can cause, and the errno -> nfsstat3 table (as
knfsd's nfserrno). Pure: no I/O, no state.
"""

from __future__ import annotations

import errno

from ..proto.nfs3const import NfsStat3, nfsstat3_name

__all__ = ["NfsError", "nfsstat_from_oserror"]


class NfsError(Exception):
    """A failed operation; ``status`` is the nfsstat3 for the reply."""

    def __init__(self, status: int, detail: str = ""):
        self.status = int(status)
        self.name = nfsstat3_name(self.status)
        self.detail = detail
        super().__init__(f"{self.name}({self.status})" + (f": {detail}" if detail else ""))

    @classmethod
    def from_oserror(cls, exc: OSError) -> "NfsError":
        return cls(nfsstat_from_oserror(exc), str(exc))


_ERRNO_TO_NFS: dict[int, int] = {
    errno.EPERM: NfsStat3.PERM,
    errno.ENOENT: NfsStat3.NOENT,
    errno.EIO: NfsStat3.IO,
    errno.ENXIO: NfsStat3.NXIO,
    errno.EACCES: NfsStat3.ACCES,
    errno.EEXIST: NfsStat3.EXIST,
    errno.EXDEV: NfsStat3.XDEV,
    errno.ENODEV: NfsStat3.NODEV,
    errno.ENOTDIR: NfsStat3.NOTDIR,
    errno.EISDIR: NfsStat3.ISDIR,
    errno.EINVAL: NfsStat3.INVAL,
    errno.EFBIG: NfsStat3.FBIG,
    errno.ENOSPC: NfsStat3.NOSPC,
    errno.EROFS: NfsStat3.ROFS,
    errno.EMLINK: NfsStat3.MLINK,
    errno.ENAMETOOLONG: NfsStat3.NAMETOOLONG,
    errno.ENOTEMPTY: NfsStat3.NOTEMPTY,
    errno.EDQUOT: NfsStat3.DQUOT,
    errno.ESTALE: NfsStat3.STALE,
    # knfsd: EBADF -> stale (the object behind the fd went away)
    errno.EBADF: NfsStat3.STALE,
    # knfsd: ELOOP -> nfserr_symlink, which nfsd3_map_status turns into INVAL
    errno.ELOOP: NfsStat3.INVAL,
    errno.EOPNOTSUPP: NfsStat3.NOTSUPP,
    errno.ENOTSUP: NfsStat3.NOTSUPP,
    errno.ENOSYS: NfsStat3.NOTSUPP,
    errno.ETXTBSY: NfsStat3.ACCES,
    # transient server-side shortage: ask the client to retry (knfsd: jukebox)
    errno.EAGAIN: NfsStat3.JUKEBOX,
    errno.ENOMEM: NfsStat3.JUKEBOX,
    errno.ETIMEDOUT: NfsStat3.JUKEBOX,
    errno.EINTR: NfsStat3.JUKEBOX,
    errno.EMFILE: NfsStat3.JUKEBOX,
    errno.ENFILE: NfsStat3.JUKEBOX,
}


def nfsstat_from_oserror(exc: OSError) -> int:
    """Map an OSError to nfsstat3.  Unknown errnos -> SERVERFAULT (log those)."""
    return int(_ERRNO_TO_NFS.get(exc.errno, NfsStat3.SERVERFAULT))
