"""libnfs return values as statuses: the NFS3 status (nfsstat3) and the SMB NT status of each errno.

libnfs hands back a negative errno for a failed call; the NFS loadfile's expected statuses are
nfsstat3 values (``0x...``) and client.txt's are NT status names, so :mod:`ops` checks a call
against the status reconstructed here (see its docstring, "Expected statuses"). Pure tables and
functions.
"""
from __future__ import annotations

import errno

__all__ = ["NFS3_NAMES", "nfs3_status", "fmt_nfs", "nt_status", "nt_expected_ok"]

# errno (as libnfs maps nfsstat3 to it) -> nfsstat3
_ERRNO_TO_NFS3 = {
    errno.EPERM: 1, errno.ENOENT: 2, errno.EIO: 5, errno.ENXIO: 6, errno.EACCES: 13,
    errno.EEXIST: 17, errno.EXDEV: 18, errno.ENODEV: 19, errno.ENOTDIR: 20,
    errno.EISDIR: 21, errno.EINVAL: 22, errno.EFBIG: 27, errno.ENOSPC: 28,
    errno.EROFS: 30, errno.EMLINK: 31, errno.ENAMETOOLONG: 63, errno.ENOTEMPTY: 66,
    errno.EDQUOT: 69, errno.ESTALE: 70, errno.ENOTSUP: 10004, errno.EAGAIN: 10008,
}
NFS3_NAMES = {
    0: "NFS3_OK", 1: "NFS3ERR_PERM", 2: "NFS3ERR_NOENT", 5: "NFS3ERR_IO", 6: "NFS3ERR_NXIO",
    11: "NFS3ERR_LOCKED(local)", 13: "NFS3ERR_ACCES", 17: "NFS3ERR_EXIST", 18: "NFS3ERR_XDEV",
    19: "NFS3ERR_NODEV", 20: "NFS3ERR_NOTDIR", 21: "NFS3ERR_ISDIR", 22: "NFS3ERR_INVAL",
    27: "NFS3ERR_FBIG", 28: "NFS3ERR_NOSPC", 30: "NFS3ERR_ROFS", 31: "NFS3ERR_MLINK",
    63: "NFS3ERR_NAMETOOLONG", 66: "NFS3ERR_NOTEMPTY", 69: "NFS3ERR_DQUOT", 70: "NFS3ERR_STALE",
    10004: "NFS3ERR_NOTSUPP", 10008: "NFS3ERR_JUKEBOX",
}
_ERRNO_TO_NT = {
    errno.ENOENT: "NT_STATUS_OBJECT_NAME_NOT_FOUND",
    errno.ENOTDIR: "NT_STATUS_OBJECT_PATH_NOT_FOUND",
    errno.EEXIST: "NT_STATUS_OBJECT_NAME_COLLISION",
    errno.EACCES: "NT_STATUS_ACCESS_DENIED", errno.EPERM: "NT_STATUS_ACCESS_DENIED",
    errno.ENOTEMPTY: "NT_STATUS_DIRECTORY_NOT_EMPTY",
    errno.EISDIR: "NT_STATUS_FILE_IS_A_DIRECTORY",
}


def nfs3_status(rc: int):
    """NFS3 status for a libnfs return value, or None when the errno has no
    NFS3 equivalent (a client-side failure such as a timeout)."""
    if rc >= 0:
        return 0
    return _ERRNO_TO_NFS3.get(-rc)


def fmt_nfs(rc: int) -> str:
    st = nfs3_status(rc)
    if st is None:
        return f"{errno.errorcode.get(-rc, str(-rc))} (no NFS3 status)"
    return f"0x{st:08x} ({NFS3_NAMES.get(st, '?')})"


def nt_status(rc: int) -> str:
    if rc >= 0:
        return "NT_STATUS_OK"
    return _ERRNO_TO_NT.get(-rc, f"NT_STATUS_UNSUCCESSFUL({errno.errorcode.get(-rc, -rc)})")


def nt_expected_ok(status: str) -> bool:
    """dbench fileio's expected_status(): OK for NT_STATUS_OK and 0x0."""
    if status == "NT_STATUS_OK":
        return True
    return status.startswith("0x") and int(status, 16) == 0

