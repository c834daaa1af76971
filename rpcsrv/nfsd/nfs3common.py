"""What the NFSv3 procedures share (rpcsrv.nfsd.nfs3 and rpcsrv.nfsd.nfs3ns): the nfsstat3 of
an exception, the post-op attributes and wcc_data of an open object, closing the objects and
releasing the file lease a procedure took, opening a directory by handle.

Invariants
----------
* Nothing here raises for what the client or the file system can cause, except _open_dir (NOTDIR,
  or the open's own NfsError/OSError), which the procedures turn into their reply.
* Pre-op attributes are the lstat taken when the handle was opened (Obj.st); post-op attributes a
  fresh fstat, None when it fails. _attrs gives None for error replies.
* Ownership: _close closes the Objs it is given (None skipped), _release gives back a file lease;
  the procedure that opened an object calls them, in its finally.
* Threads: stateless functions; they share nothing but the Export (thread-safe) and ctx.
"""

import os

from ..export import NfsError, nfsstat_from_oserror
from ..proto.nfs3const import NfsStat3 as S

OK = 0


def _read_only(ctx):
    return ctx.config.read_only or ctx.export.read_only


def _status(exc):
    if isinstance(exc, NfsError):
        return exc.status
    return nfsstat_from_oserror(exc)


def _fstat(fd):
    try:
        return os.fstat(fd)
    except OSError:
        return None


def _attrs(e, fh):
    """post_op_attr of a handle, or None (for error replies)."""
    try:
        return e.getattr(fh)
    except (NfsError, OSError):
        return None


def _wcc(o):
    """(pre, post) of an open Obj, or (None, None)."""
    if o is None:
        return None, None
    return o.st, _fstat(o.fd)


def _close(*objs):
    for o in objs:
        if o is not None:
            o.close()


def _release(lease):
    """Give back a file lease (export.files) if one was taken."""
    if lease is not None:
        lease.release()


def _open_dir(e, fh):
    """Open a directory by handle; NOTDIR (with the Obj closed) otherwise."""
    d = e.open_handle(fh)
    if not d.is_dir:
        d.close()
        raise NfsError(S.NOTDIR)
    return d
