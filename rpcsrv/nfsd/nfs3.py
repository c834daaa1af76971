"""The NFSv3 program (100003, version 3): the 22 NFSPROC3 handlers and their declared table.

This module owns the table, the containment wrappers (_proven, _synced) and the handlers that
read, or change one object in place (GETATTR ... COMMIT, SETATTR, WRITE); the namespace-modifying
handlers (CREATE, MKDIR, SYMLINK, MKNOD, REMOVE, RMDIR, RENAME, LINK) are rpcsrv/nfsd/nfs3ns.py,
and what both share (status of an exception, wcc_data, closing) rpcsrv/nfsd/nfs3common.py. The
theory below holds for all of them.

Theory and invariants
---------------------
* A handler is handler(ctx, args) -> its result NamedTuple (proto.nfs3res)
  and never raises for anything the client or the file system can cause:
  NfsError and OSError become the nfsstat3 of the reply. An exception that
  escapes is our bug and becomes SYSTEM_ERR in svc.dispatch.
* Every result carries the post-op attributes / wcc_data RFC 1813 defines
  for it, on error arms too, as far as the object could be opened. Pre-op
  attributes are the lstat taken when the handle was opened (Obj.st) or the
  fstat of the file lease; post-op attributes a fresh fstat.
* Path safety: every operation is relative to a directory fd opened by
  handle (dir_fd=..., O_NOFOLLOW, AT_EMPTY_PATH on O_PATH fds) and every new
  name passes check_name(name, allow_dots=False). Symlinks are never
  followed on a client's behalf; attribute changes go through the object's
  own fd (vfs.py). Who may do what: perm.py.
* New objects belong to the caller: uid = caller, gid = caller's gid unless
  the parent directory is setgid (then its gid; new directories inherit
  S_ISGID). Mode: the sattr3 mode, else 0644 / 0755. CHR/BLK devices only
  for uid 0 (PERM otherwise).
* read-only (ctx.config.read_only or the Export's): ROFS from every
  modifying procedure, checked right after the handle was opened.
* CREATE EXCLUSIVE stores the verifier the way Linux knfsd does: mtime
  seconds = first word & 0x7fffffff, atime seconds = second word &
  0x7fffffff (nanoseconds 0). A retransmission finds a regular empty file
  with exactly those times and answers OK with its handle; anything else is
  EXIST. The client's follow-up SETATTR replaces the times.
* WRITE: the data goes from the request pages to the file through
  ctx.write_payload (pwritev, no copy). FILE_SYNC -> fsync, DATA_SYNC ->
  fdatasync before replying, and `committed` is what was done; UNSTABLE
  stays UNSTABLE until COMMIT (fsync). The verifier is
  ctx.config.write_verifier (changes at each server start).
* Sizes come from the transport (ctx.limits, as knfsd's svc_max_payload):
  READ count is capped at limits.rtmax and ctx.read_payload puts the bytes
  into the reply pages (eof = short read or offset+count reached the size);
  WRITE at limits.wtmax; READDIR(PLUS) counts at limits.dirmax, with the
  reply's bytes counted by nfs3res.DirBudget; FSINFO answers limits.fsinfo.
* Containment (export.contain): the read-only procedures (GETATTR, LOOKUP,
  ACCESS, READLINK, READ, READDIR, READDIRPLUS, FSSTAT, FSINFO, PATHCONF)
  run in a read transaction and their reply stands only if every handle's
  proof held until the reply was complete; otherwise the handler runs again
  (a local rename raced it), and after contain.TRIES races its handles answer
  JUKEBOX. So no byte of a reply was read while its object was outside the
  export. Modifying procedures run in a transaction too (the queued events
  applied once at its start) and prove their handles just before they act.
* Threads: handlers share nothing but the Export (thread-safe) and ctx.

The request context (svc.svc.Request): ctx.export, ctx.cred (AuthSys or
None), ctx.config.{read_only, root_squash, anon_uid, anon_gid,
write_verifier}, ctx.limits, ctx.read_payload(fd, off, count),
ctx.write_payload(fd, file_off, rec_off, length).
"""

import os
import stat
from functools import partial, wraps

from ..export import NfsError
from ..export.contain import TRIES
from ..proto import nfs3res as R
from ..proto import nfs3xdr as X
from ..proto.nfs3const import (MAXFILESIZE, NFS_PROGRAM, NFS_V3, NFSPROC3_IDEMPOTENT, NFSPROC3_READS, NfsProc3 as P,
                               NfsStat3 as S, StableHow)
from ..svc.dispatch import ProcEntry, Program, null_entry
from . import vfs
from .nfs3common import OK, _attrs, _close, _fstat, _open_dir, _read_only, _release, _status, _wcc
from .nfs3ns import (nfs3_create, nfs3_link, nfs3_mkdir, nfs3_mknod, nfs3_remove, nfs3_rename, nfs3_rmdir,
                     nfs3_symlink)
from .perm import access_from_stat, check_sattr, may_read_file, may_write_file, need_dir_bits, who

__all__ = ["make_program", "make_table", "PROCEDURES"]

_DIR_REPLY_MAX = 1 << 20          # bound on READDIR(PLUS) reply bytes we agree to build


def _proven(handler):
    """A read-only ``handler`` in a containment read transaction (see the module doc).
    Before a rerun ``ctx.rewind()`` forgets the payload a READ put in the reply pages."""
    @wraps(handler)
    def run(ctx, args):
        c = ctx.export.contain
        for attempt in range(TRIES):
            if attempt:
                ctx.rewind()
            txn = c.begin(True)
            try:
                res = handler(ctx, args)
            finally:
                held = c.end(txn)
            if held:
                return res
        ctx.rewind()
        with c.refusing(S.JUKEBOX):
            return handler(ctx, args)
    return run


def _synced(handler):
    """A modifying ``handler`` in a containment transaction: the queued events applied once at
    its start, before it proves its handles."""
    @wraps(handler)
    def run(ctx, args):
        c = ctx.export.contain
        txn = c.begin(False)
        try:
            return handler(ctx, args)
        finally:
            c.end(txn)
    return run



# --------------------------------------------------------------------------
# read side

def nfs3_getattr(ctx, fh):
    e = ctx.export
    try:
        return R.GetattrRes(OK, e.fsid, e.getattr(fh))
    except (NfsError, OSError) as exc:
        return R.GetattrRes(_status(exc), e.fsid)


def nfs3_lookup(ctx, args):
    dfh, name = args
    e = ctx.export
    d = None
    try:
        d = _open_dir(e, dfh)
        need_dir_bits(d, who(ctx), 1, "no search permission")
        fh, st = e.lookup(dfh, name)
        return R.LookupRes(OK, e.fsid, fh, st, d.st)
    except (NfsError, OSError) as exc:
        return R.LookupRes(_status(exc), e.fsid, dir_attr=d.st if d is not None else _attrs(e, dfh))
    finally:
        _close(d)


def nfs3_access(ctx, args):
    fh, mask = args
    e = ctx.export
    try:
        st = e.getattr(fh)
        w = who(ctx)
        granted = access_from_stat(st, mask, w.uid, w.groups, _read_only(ctx))
        return R.AccessRes(OK, e.fsid, st, granted)
    except (NfsError, OSError) as exc:
        return R.AccessRes(_status(exc), e.fsid)


def nfs3_readlink(ctx, fh):
    e = ctx.export
    o = None
    try:
        o = e.open_handle(fh)
        if not stat.S_ISLNK(o.st.st_mode):
            raise NfsError(S.INVAL, "not a symlink")
        target = os.readlink(b"", dir_fd=o.fd)
        return R.ReadlinkRes(OK, e.fsid, o.st, target)
    except (NfsError, OSError) as exc:
        return R.ReadlinkRes(_status(exc), e.fsid, o.st if o is not None else None)
    finally:
        _close(o)


def nfs3_read(ctx, args):
    fh, offset, count = args
    e = ctx.export
    lease = None
    try:
        lease = e.read(fh)
        st = lease.st
        if not may_read_file(st, who(ctx)):
            raise NfsError(S.ACCES)
        if count > ctx.limits.rtmax:        # the transport's largest READ payload
            count = ctx.limits.rtmax
        if offset > MAXFILESIZE:
            return R.ReadRes(OK, e.fsid, st, 0, True)
        n = ctx.read_payload(lease.fd, offset, count) if count else 0
        st = os.fstat(lease.fd)
        eof = n < count or offset + n >= st.st_size
        return R.ReadRes(OK, e.fsid, st, n, eof)
    except (NfsError, OSError) as exc:
        st = lease.st if lease is not None else _attrs(e, fh)
        return R.ReadRes(_status(exc), e.fsid, st)
    finally:
        _release(lease)


def _readdir(ctx, args, plus):
    if plus:
        dfh, cookie, verf, count, maxcount = args
    else:
        dfh, cookie, verf, count = args
        maxcount = None
    e = ctx.export
    d = None
    try:
        d = _open_dir(e, dfh)
        need_dir_bits(d, who(ctx), 4, "no read permission on the directory")
        limit = min(_DIR_REPLY_MAX, ctx.limits.dirmax)   # the reply must fit what the transport carries
        count = min(count, limit)
        if plus:
            maxcount = min(maxcount, limit)
        entries, eof, cverf = e.readdir(dfh, cookie, verf, R.DirBudget(count, maxcount, plus), plus=plus)
        return R.ReaddirRes(OK, e.fsid, d.st, cverf, entries, eof)
    except (NfsError, OSError) as exc:
        return R.ReaddirRes(_status(exc), e.fsid, d.st if d is not None else None)
    finally:
        _close(d)


nfs3_readdir = partial(_readdir, plus=False)
nfs3_readdirplus = partial(_readdir, plus=True)


def _fsquery(ctx, fh, fn):
    e = ctx.export
    st = None
    try:
        st = e.getattr(fh)
        return R.InfoRes(OK, e.fsid, st, fn(fh))
    except (NfsError, OSError) as exc:
        return R.InfoRes(_status(exc), e.fsid, st)


def nfs3_fsstat(ctx, fh):
    return _fsquery(ctx, fh, ctx.export.fsstat)


def nfs3_fsinfo(ctx, fh):
    return _fsquery(ctx, fh, lambda fh: ctx.limits.fsinfo)


def nfs3_pathconf(ctx, fh):
    return _fsquery(ctx, fh, ctx.export.pathconf)


# --------------------------------------------------------------------------
# write side

def nfs3_setattr(ctx, args):
    fh, sa, guard = args
    e = ctx.export
    o = None
    try:
        o = e.open_handle(fh)
        if _read_only(ctx):
            raise NfsError(S.ROFS)
        if guard is not None and tuple(guard) != X.nfstime3(o.st.st_ctime_ns):
            raise NfsError(S.NOT_SYNC, "ctime guard")
        w = who(ctx)
        # chown to the same owner still revokes set-id bits, for those who may chown at all
        kill_sid = (sa.uid is not None or sa.gid is not None) and (w.uid == 0 or w.uid == o.st.st_uid)
        sa = check_sattr(o.st, sa, w, new=False)
        vfs.apply_sattr(o.fd, o.st, sa, w, kill_sid)
        return R.WccRes(OK, e.fsid, o.st, _fstat(o.fd))
    except (NfsError, OSError) as exc:
        return R.WccRes(_status(exc), e.fsid, *_wcc(o))
    finally:
        _close(o)


def nfs3_write(ctx, args):
    fh, offset, count, stable, (rec_off, length) = args
    e = ctx.export
    lease = None
    pre = None
    try:
        if _read_only(ctx):
            raise NfsError(S.ROFS)
        lease = e.write_lease(fh)
        pre = lease.st
        if not may_write_file(pre, who(ctx)):
            raise NfsError(S.ACCES)
        if length > ctx.limits.wtmax:
            length = ctx.limits.wtmax
        if offset + length > MAXFILESIZE:
            raise NfsError(S.FBIG)
        n = ctx.write_payload(lease.fd, offset, rec_off, length) if length else 0
        if stable == StableHow.FILE_SYNC:
            os.fsync(lease.fd)
        elif stable == StableHow.DATA_SYNC:
            os.fdatasync(lease.fd)
        post = os.fstat(lease.fd)
        return R.WriteRes(OK, e.fsid, pre, post, n, stable, ctx.config.write_verifier)
    except (NfsError, OSError) as exc:
        post = _fstat(lease.fd) if lease is not None else _attrs(e, fh)
        return R.WriteRes(_status(exc), e.fsid, pre, post)
    finally:
        _release(lease)


def nfs3_commit(ctx, args):
    fh = args[0]                    # offset and count are not used: fsync commits the whole file
    e = ctx.export
    lease = None
    try:
        lease = e.read(fh)
        pre = lease.st
        os.fsync(lease.fd)
        return R.CommitRes(OK, e.fsid, pre, _fstat(lease.fd), ctx.config.write_verifier)
    except (NfsError, OSError) as exc:
        if lease is not None:
            return R.CommitRes(_status(exc), e.fsid, lease.st, _fstat(lease.fd))
        return R.CommitRes(_status(exc), e.fsid, None, _attrs(e, fh))
    finally:
        _release(lease)


# --------------------------------------------------------------------------
# the table

def _e(proc, decode, handler, encode, payload=None):
    """The entry of `proc`: idempotent, and read-only (_proven) or modifying (_synced), as
    rpcsrv.proto.nfs3const declares it (NFSPROC3_IDEMPOTENT, NFSPROC3_READS; the fast path reads
    the same tables)."""
    run = (_proven if NFSPROC3_READS[int(proc)] else _synced)(handler)
    return ProcEntry(P(proc).name.lower(), decode, run, encode, NFSPROC3_IDEMPOTENT[int(proc)],
                     R.status_name, reply_max=R.RES_MAX[int(proc)], payload=payload)


def make_table():
    """{proc: ProcEntry} for NFSv3, indexed by NFSPROC3 number."""
    t = {
        P.NULL: null_entry("null"),
        P.GETATTR: _e(P.GETATTR, X.decode_getattr, nfs3_getattr, R.encode_getattr),
        P.SETATTR: _e(P.SETATTR, X.decode_setattr, nfs3_setattr, R.encode_wcc_only),
        P.LOOKUP: _e(P.LOOKUP, X.decode_lookup, nfs3_lookup, R.encode_lookup),
        P.ACCESS: _e(P.ACCESS, X.decode_access, nfs3_access, R.encode_access),
        P.READLINK: _e(P.READLINK, X.decode_getattr, nfs3_readlink, R.encode_readlink),
        P.READ: _e(P.READ, X.decode_read, nfs3_read, R.encode_read, payload=R.read_payload_len),
        P.WRITE: _e(P.WRITE, X.decode_write, nfs3_write, R.encode_write),
        P.CREATE: _e(P.CREATE, X.decode_create, nfs3_create, R.encode_diropres),
        P.MKDIR: _e(P.MKDIR, X.decode_mkdir, nfs3_mkdir, R.encode_diropres),
        P.SYMLINK: _e(P.SYMLINK, X.decode_symlink, nfs3_symlink, R.encode_diropres),
        P.MKNOD: _e(P.MKNOD, X.decode_mknod, nfs3_mknod, R.encode_diropres),
        P.REMOVE: _e(P.REMOVE, X.decode_remove, nfs3_remove, R.encode_wcc_only),
        P.RMDIR: _e(P.RMDIR, X.decode_rmdir, nfs3_rmdir, R.encode_wcc_only),
        P.RENAME: _e(P.RENAME, X.decode_rename, nfs3_rename, R.encode_rename),
        P.LINK: _e(P.LINK, X.decode_link, nfs3_link, R.encode_link),
        P.READDIR: _e(P.READDIR, X.decode_readdir, nfs3_readdir, R.encode_readdir),
        P.READDIRPLUS: _e(P.READDIRPLUS, X.decode_readdirplus, nfs3_readdirplus,
                          R.encode_readdirplus),
        P.FSSTAT: _e(P.FSSTAT, X.decode_getattr, nfs3_fsstat, R.encode_fsstat),
        P.FSINFO: _e(P.FSINFO, X.decode_getattr, nfs3_fsinfo, R.encode_fsinfo),
        P.PATHCONF: _e(P.PATHCONF, X.decode_getattr, nfs3_pathconf, R.encode_pathconf),
        P.COMMIT: _e(P.COMMIT, X.decode_commit, nfs3_commit, R.encode_commit),
    }
    return {int(k): v for k, v in t.items()}


PROCEDURES = make_table()


def make_program():
    """dispatch.Program for NFS (100003) version 3."""
    return Program(NFS_PROGRAM, "nfs", {NFS_V3: make_table()})
