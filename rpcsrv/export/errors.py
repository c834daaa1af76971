"""Errors of the exported tree: NfsError carries the nfsstat3 of the reply.

Owns: the exception every export and nfsd function raises for anything a
client or the file system can cause, and the errno -> nfsstat3 mapping (as
knfsd's nfserrno; its table is rpcsrv.proto.nfs3const.ERRNO_TO_NFSSTAT3). Pure: no I/O, no state.
"""

from __future__ import annotations

from ..proto.nfs3const import ERRNO_TO_NFSSTAT3, NfsStat3, nfsstat3_name

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


def nfsstat_from_oserror(exc: OSError) -> int:
    """Map an OSError to nfsstat3.  Unknown errnos -> SERVERFAULT (log those)."""
    return int(ERRNO_TO_NFSSTAT3.get(exc.errno, NfsStat3.SERVERFAULT))
