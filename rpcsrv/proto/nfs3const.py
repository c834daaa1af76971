"""NFSv3 and MOUNTv3 protocol constants (RFC 1813).

Owns: the numbers on the wire and the lower-case names used in metrics and
logs.  Pure data, no imports beyond enum and errno, no state: safe to use from any
thread.  Invariants: every enum value is the RFC 1813 value; the ``*_NAMES``
tables are total over their enum (a test checks it) and the names are the
lower-case RFC names without their prefix (``NFS3ERR_NOENT`` -> ``"noent"``,
``NFSPROC3_GETATTR`` -> ``"getattr"``), which is what metric labels use.
"""

from __future__ import annotations

import errno
from enum import IntEnum, IntFlag

# --- programs ---------------------------------------------------------------
NFS_PROGRAM = 100003
NFS_V3 = 3
MOUNT_PROGRAM = 100005
MOUNT_V3 = 3

# --- sizes (RFC 1813 section 2.4) -------------------------------------------
NFS3_FHSIZE = 64            # maximum size in bytes of an NFSv3 file handle
NFS3_COOKIEVERFSIZE = 8     # cookieverf3
NFS3_CREATEVERFSIZE = 8     # createverf3
NFS3_WRITEVERFSIZE = 8      # writeverf3
MNTPATHLEN = 1024           # maximum bytes in a MOUNT path name
MNTNAMLEN = 255             # maximum bytes in a MOUNT name
NFS3_MAXNAMLEN = 255        # what this server enforces for a filename3 (Linux NAME_MAX)
NFS3_MAXPATHLEN = 4096      # what this server enforces for a nfspath3 (Linux PATH_MAX)
MAXFILESIZE = (1 << 63) - 1  # FSINFO maxfilesize: larger sizes and offsets are FBIG


class NfsProc3(IntEnum):
    NULL = 0
    GETATTR = 1
    SETATTR = 2
    LOOKUP = 3
    ACCESS = 4
    READLINK = 5
    READ = 6
    WRITE = 7
    CREATE = 8
    MKDIR = 9
    SYMLINK = 10
    MKNOD = 11
    REMOVE = 12
    RMDIR = 13
    RENAME = 14
    LINK = 15
    READDIR = 16
    READDIRPLUS = 17
    FSSTAT = 18
    FSINFO = 19
    PATHCONF = 20
    COMMIT = 21


NFSPROC3_NAMES: dict[int, str] = {p.value: p.name.lower() for p in NfsProc3}

#: False: the procedure changes the tree in a way a retransmission must not repeat, so the
#: duplicate request cache keeps its replies (rpcsrv.nfsd.nfs3's table and the fast path both read
#: this; WRITE and COMMIT are idempotent, as in knfsd)
NFSPROC3_IDEMPOTENT: dict[int, bool] = {p.value: p not in (
    NfsProc3.SETATTR, NfsProc3.CREATE, NfsProc3.MKDIR, NfsProc3.SYMLINK, NfsProc3.MKNOD,
    NfsProc3.REMOVE, NfsProc3.RMDIR, NfsProc3.RENAME, NfsProc3.LINK) for p in NfsProc3}

#: True: the procedure only reads, and runs in a containment transaction (its handles' proofs are
#: checked before the reply goes); False: it changes the tree and proves its handles after applying
#: the queued events (rpcsrv.nfsd.nfs3's _proven and _synced; the fast path's fp_req.reading).
#: NULL touches nothing and is neither.
NFSPROC3_READS: dict[int, bool] = {p.value: p in (
    NfsProc3.GETATTR, NfsProc3.LOOKUP, NfsProc3.ACCESS, NfsProc3.READLINK, NfsProc3.READ,
    NfsProc3.READDIR, NfsProc3.READDIRPLUS, NfsProc3.FSSTAT, NfsProc3.FSINFO, NfsProc3.PATHCONF)
    for p in NfsProc3}


class MountProc3(IntEnum):
    NULL = 0
    MNT = 1
    DUMP = 2
    UMNT = 3
    UMNTALL = 4
    EXPORT = 5


MOUNTPROC3_NAMES: dict[int, str] = {p.value: p.name.lower() for p in MountProc3}


class NfsStat3(IntEnum):
    OK = 0
    PERM = 1
    NOENT = 2
    IO = 5
    NXIO = 6
    ACCES = 13
    EXIST = 17
    XDEV = 18
    NODEV = 19
    NOTDIR = 20
    ISDIR = 21
    INVAL = 22
    FBIG = 27
    NOSPC = 28
    ROFS = 30
    MLINK = 31
    NAMETOOLONG = 63
    NOTEMPTY = 66
    DQUOT = 69
    STALE = 70
    REMOTE = 71
    BADHANDLE = 10001
    NOT_SYNC = 10002
    BAD_COOKIE = 10003
    NOTSUPP = 10004
    TOOSMALL = 10005
    SERVERFAULT = 10006
    BADTYPE = 10007
    JUKEBOX = 10008


NFSSTAT3_NAMES: dict[int, str] = {s.value: s.name.lower() for s in NfsStat3}


#: errno -> nfsstat3 (as knfsd's nfserrno); an errno not here is SERVERFAULT (rpcsrv.export.errors
#: and the fast path's fp_nfsstat both read this table)
ERRNO_TO_NFSSTAT3: dict[int, int] = {
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


def nfsstat3_name(status: int) -> str:
    """Lower-case metric name of an nfsstat3 value (``"unknown"`` if not one)."""
    return NFSSTAT3_NAMES.get(int(status), "unknown")


class MountStat3(IntEnum):
    OK = 0
    PERM = 1
    NOENT = 2
    IO = 5
    ACCES = 13
    NOTDIR = 20
    INVAL = 22
    NAMETOOLONG = 63
    NOTSUPP = 10004
    SERVERFAULT = 10006


MOUNTSTAT3_NAMES: dict[int, str] = {s.value: s.name.lower() for s in MountStat3}


class Ftype3(IntEnum):
    REG = 1
    DIR = 2
    BLK = 3
    CHR = 4
    LNK = 5
    SOCK = 6
    FIFO = 7


class StableHow(IntEnum):
    UNSTABLE = 0
    DATA_SYNC = 1
    FILE_SYNC = 2


class CreateMode3(IntEnum):
    UNCHECKED = 0
    GUARDED = 1
    EXCLUSIVE = 2


class TimeHow(IntEnum):
    DONT_CHANGE = 0
    SET_TO_SERVER_TIME = 1
    SET_TO_CLIENT_TIME = 2


class Access3(IntFlag):
    READ = 0x0001
    LOOKUP = 0x0002
    MODIFY = 0x0004
    EXTEND = 0x0008
    DELETE = 0x0010
    EXECUTE = 0x0020


ACCESS3_READ = Access3.READ.value
ACCESS3_LOOKUP = Access3.LOOKUP.value
ACCESS3_MODIFY = Access3.MODIFY.value
ACCESS3_EXTEND = Access3.EXTEND.value
ACCESS3_DELETE = Access3.DELETE.value
ACCESS3_EXECUTE = Access3.EXECUTE.value
ACCESS3_ALL = 0x3F


class Fsf3(IntFlag):
    LINK = 0x0001
    SYMLINK = 0x0002
    HOMOGENEOUS = 0x0008
    CANSETTIME = 0x0010


FSF3_LINK = Fsf3.LINK.value
FSF3_SYMLINK = Fsf3.SYMLINK.value
FSF3_HOMOGENEOUS = Fsf3.HOMOGENEOUS.value
FSF3_CANSETTIME = Fsf3.CANSETTIME.value

__all__ = [n for n in list(globals())
           if (n[0].isupper() and n not in ("IntEnum", "IntFlag")) or n == "nfsstat3_name"]
