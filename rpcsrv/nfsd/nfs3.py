# rpcsrv/nfs3.py -- the NFSv3 procedure table (program 100003, version 3).
#
# Owns: the 22 NFSPROC3 handlers and their declared table (like the kernel's
# nfsd_procedures3).  Argument/result codecs live in nfs3xdr; the exported
# tree (handles, containment, READDIR cookies) in export.
#
# Theory and invariants
# ---------------------
# * A handler is handler(ctx, args) -> Res and never raises for anything the
#   client or the file system can cause: NfsError and OSError become the
#   nfsstat3 of the reply (export.nfsstat_from_oserror).  An exception that
#   escapes is our bug and becomes SYSTEM_ERR in dispatch().
# * Every result carries the post-op attributes / wcc_data RFC 1813 defines
#   for it, on error arms too, as far as the object could be opened.  Pre-op
#   attributes are the lstat taken when the handle was opened (Obj.st) or the
#   fstat of the file lease; post-op attributes a fresh fstat.
# * Path safety: every operation is relative to a directory fd opened by
#   handle (dir_fd=..., O_NOFOLLOW, AT_EMPTY_PATH on O_PATH fds) and every new
#   name passes check_name(name, allow_dots=False).  Symlinks are never
#   followed on a client's behalf; attribute changes go through the object's
#   own fd (fchownat/utimensat with AT_EMPTY_PATH, chmod/truncate through
#   /proc/self/fd/N only for non-symlinks).
# * Identity (permission model): the server runs as root and checks the
#   caller's rights itself, from mode bits, like knfsd does with the caller's
#   fsuid: AUTH_SYS uid/gid/gids (root_squash: uid 0 -> anon_uid, gid 0 ->
#   anon_gid, also in gids), AUTH_NONE -> anon.  Rules:
#     - lookup: x on the directory; readdir(plus): r on the directory;
#     - create/mkdir/symlink/mknod/remove/rmdir/rename/link: w+x on the
#       directory (both directories for rename); sticky directories: only the
#       owner of the entry or of the directory (or root) may remove or
#       replace it (PERM); moving a directory to another parent needs w on
#       it (to rewrite "..");
#     - read: r or x on the file; write and truncate: w on the file; the
#       file's owner always may (knfsd's NFSD_MAY_OWNER_OVERRIDE: the client
#       already checked at open, then maybe fchmod'ed);
#     - chmod and setting explicit times: owner or root (PERM); setting both
#       times to the server's time: owner or w; chown: root only to another
#       uid, the owner may chgrp to a group it is in (PERM otherwise);
#       unchanged uid/gid are ignored; a non-member chmod drops S_ISGID on
#       non-directories (as Linux does);
#     - uid 0 (not squashed) passes every check (CAP_DAC_OVERRIDE/CAP_FOWNER).
#   New objects belong to the caller: uid = caller, gid = caller's gid
#   unless the parent directory is setgid (then its gid; new directories
#   inherit S_ISGID).  Mode: the sattr3 mode, else 0644 / 0755.  CHR/BLK
#   devices only for uid 0 (PERM otherwise).
# * read-only (ctx.config.read_only or the Export's): ROFS from every
#   modifying procedure (SETATTR WRITE CREATE MKDIR SYMLINK MKNOD REMOVE
#   RMDIR RENAME LINK), checked right after the handle was opened.
# * CREATE EXCLUSIVE stores the verifier the way Linux knfsd does: mtime
#   seconds = first word & 0x7fffffff, atime seconds = second word &
#   0x7fffffff (nanoseconds 0).  A retransmission finds a regular empty file
#   with exactly those times and answers OK with its handle; anything else
#   is EXIST.  The client's follow-up SETATTR replaces the times.
# * WRITE: the data goes from the request pages to the file through
#   ctx.write_payload (os.pwritev, no copy).  FILE_SYNC -> fsync, DATA_SYNC ->
#   fdatasync before replying, and `committed` is what was done; UNSTABLE
#   stays UNSTABLE until COMMIT (fsync).  The verifier is
#   ctx.config.write_verifier (changes at each server start).
# * READ: count capped at rtmax; ctx.read_payload puts the bytes into the
#   reply pages; eof = short read or offset+count reached the size.
# * Threads: handlers share nothing but the Export (thread-safe) and ctx.
#
# The request context (provided by the server):
#   ctx.export, ctx.cred (AuthSys or None), ctx.config.{read_only, root_squash,
#   anon_uid, anon_gid, write_verifier}, ctx.read_payload(fd, off, count),
#   ctx.write_payload(fd, file_off, rec_off, length).

import ctypes
import os
import stat

from . import nfs3xdr as X
from .dispatch import ProcEntry, Program, null_entry
from .export import Export, NfsError, access_from_stat, check_name, nfsstat_from_oserror
from .nfs3const import NFS_PROGRAM, NFS_V3, NfsProc3 as P, NfsStat3 as S, StableHow

__all__ = ["make_program", "make_table", "PROCEDURES", "Who", "who"]

OK = 0
_MAXFILESIZE = Export.FSINFO.maxfilesize
_DIR_REPLY_MAX = 1 << 20          # bound on READDIR(PLUS) reply bytes we agree to build
_S_ISGID = stat.S_ISGID
_S_ISVTX = stat.S_ISVTX

# --------------------------------------------------------------------------
# syscalls Python's os module does not expose on O_PATH fds

_AT_FDCWD = -100
_AT_SYMLINK_NOFOLLOW = 0x100
_AT_EMPTY_PATH = 0x1000
_UTIME_NOW = (1 << 30) - 1
_UTIME_OMIT = (1 << 30) - 2
_IS_ROOT = os.geteuid() == 0


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_libc = ctypes.CDLL(None, use_errno=True)
_fchownat = _libc.fchownat
_fchownat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_int]
_fchownat.restype = ctypes.c_int
_utimensat = _libc.utimensat
_utimensat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
_utimensat.restype = ctypes.c_int
_linkat = _libc.linkat
_linkat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
_linkat.restype = ctypes.c_int


def _oserr():
    e = ctypes.get_errno()
    return OSError(e, os.strerror(e))


def _fd_chown(fd, uid, gid):
    """chown the object behind fd (O_PATH ok, symlinks themselves); -1 = unchanged."""
    if _fchownat(fd, b"", uid & 0xFFFFFFFF, gid & 0xFFFFFFFF,
                 _AT_EMPTY_PATH | _AT_SYMLINK_NOFOLLOW) != 0:
        raise _oserr()


def _ts(t):
    if t is None:
        return 0, _UTIME_OMIT
    if t is X.SERVER_TIME:
        return 0, _UTIME_NOW
    return t[0], t[1]


def _fd_utimes(fd, atime, mtime):
    """utimensat on the object behind fd: atime/mtime None (omit), SERVER_TIME or (s, ns)."""
    ts = (_Timespec * 2)(_Timespec(*_ts(atime)), _Timespec(*_ts(mtime)))
    if _utimensat(fd, b"", ctypes.byref(ts), _AT_EMPTY_PATH) != 0:
        raise _oserr()


def _proc(fd):
    return "/proc/self/fd/%d" % fd


def _fd_link(fd, dir_fd, name):
    """linkat(fd, "", dir_fd, name, AT_EMPTY_PATH): link the object itself."""
    if _IS_ROOT:
        if _linkat(fd, b"", dir_fd, name, _AT_EMPTY_PATH) != 0:
            raise _oserr()
    else:  # AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; the proc link works for non-symlinks
        os.link(_proc(fd), name, dst_dir_fd=dir_fd, follow_symlinks=True)


# --------------------------------------------------------------------------
# identity and permissions


class Who:
    """The caller as the permission checks see it (after squashing)."""

    __slots__ = ("uid", "gid", "groups")

    def __init__(self, uid, gid, groups):
        self.uid = uid
        self.gid = gid
        self.groups = groups

    def __repr__(self):
        return "Who(uid=%d, gid=%d, groups=%r)" % (self.uid, self.gid, sorted(self.groups))


def who(ctx):
    """The caller's identity from ctx.cred and ctx.config (root_squash, anon ids)."""
    cfg = ctx.config
    cred = ctx.cred
    if cred is None:
        return Who(cfg.anon_uid, cfg.anon_gid, frozenset((cfg.anon_gid,)))
    uid, gid, gids = cred.uid, cred.gid, cred.gids
    if cfg.root_squash:
        ag = cfg.anon_gid
        if uid == 0:
            uid = cfg.anon_uid
        if gid == 0:
            gid = ag
        gids = [ag if g == 0 else g for g in gids]
    groups = frozenset(gids)
    if gid not in groups:
        groups = groups | {gid}
    return Who(uid, gid, groups)


def _bits(st, w):
    mode = st.st_mode
    if w.uid == st.st_uid:
        return (mode >> 6) & 7
    if st.st_gid in w.groups:
        return (mode >> 3) & 7
    return mode & 7


def _need_dir_write(d, w):
    """w+x on directory Obj d (create/remove/rename/link entries)."""
    if w.uid != 0 and (_bits(d.st, w) & 3) != 3:
        raise NfsError(S.ACCES, "no write permission on the directory")


def _need_sticky(dst, vst, w):
    """Removing/replacing entry vst of directory dst (stat results)."""
    if (dst.st_mode & _S_ISVTX) and w.uid != 0 and w.uid != vst.st_uid and w.uid != dst.st_uid:
        raise NfsError(S.PERM, "sticky directory")


def _may_read_file(st, w):
    return w.uid == 0 or w.uid == st.st_uid or bool(_bits(st, w) & 5)


def _may_write_file(st, w):
    return w.uid == 0 or w.uid == st.st_uid or bool(_bits(st, w) & 2)


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


def _open_dir(e, fh):
    """Open a directory by handle; NOTDIR (with the Obj closed) otherwise."""
    d = e.open_handle(fh)
    if not d.is_dir:
        d.close()
        raise NfsError(S.NOTDIR)
    return d


# --------------------------------------------------------------------------
# sattr3

def _check_sattr(st, sa, w, new):
    """Permission checks of sattr3 `sa` on an object with lstat `st` (or, when
    `new`, the object about to be created by w).  Returns the sattr to apply:
    unchanged uid/gid dropped.  Raises NfsError."""
    mode, uid, gid, size, atime, mtime = sa
    root = w.uid == 0
    owner = root or new or w.uid == st.st_uid
    if uid is not None and (new or uid != st.st_uid):
        if not root and not (new and uid == w.uid):
            raise NfsError(S.PERM, "only root may give files away")
    elif uid is not None:
        uid = None
    if gid is not None and (new or gid != st.st_gid):
        if not root and not (owner and gid in w.groups):
            raise NfsError(S.PERM, "not the owner or not a member of the group")
    elif gid is not None:
        gid = None
    if mode is not None and not owner:
        raise NfsError(S.PERM, "not the owner")
    if size is not None and not new:
        if stat.S_ISDIR(st.st_mode):
            raise NfsError(S.ISDIR)
        if not stat.S_ISREG(st.st_mode):
            raise NfsError(S.INVAL, "size of a non-regular file")
        if not _may_write_file(st, w):
            raise NfsError(S.ACCES)
        if size > _MAXFILESIZE:
            raise NfsError(S.FBIG)
    if atime is not None or mtime is not None:
        explicit = (atime is not None and atime is not X.SERVER_TIME) or \
                   (mtime is not None and mtime is not X.SERVER_TIME)
        if not owner:
            if explicit:
                raise NfsError(S.PERM, "not the owner")
            if not _may_write_file(st, w):
                raise NfsError(S.ACCES)
    return X.Sattr3(mode, uid, gid, size, atime, mtime)


def _apply_sattr(fd, st, sa, w, kill_sid=False):
    """Apply a checked sattr3 to the object behind fd (whose lstat is st).
    Order: size, owner, mode, times (times last: truncate moves mtime).

    kill_sid: the request set uid or gid (maybe to the unchanged value, which
    _check_sattr dropped): like chown(2) and knfsd's nfsd_sanitize_attrs,
    revoke S_ISUID, and S_ISGID when group-executable, of a non-directory --
    in the mode being set, else on the object itself."""
    mode, uid, gid, size, atime, mtime = sa
    is_link = stat.S_ISLNK(st.st_mode)
    if is_link or stat.S_ISDIR(st.st_mode):
        kill_sid = False
    if size is not None and not is_link:
        os.truncate(_proc(fd), size)
    if uid is not None or gid is not None:
        _fd_chown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
    elif kill_sid and mode is None:       # no chown(2) to do it for us
        cur = stat.S_IMODE(os.fstat(fd).st_mode)
        new = cur & ~stat.S_ISUID
        if new & stat.S_IXGRP:
            new &= ~_S_ISGID
        if new != cur:
            os.chmod(_proc(fd), new)
    if mode is not None and not is_link:   # mode of a symlink: ignored, as knfsd
        mode &= 0o7777
        if kill_sid:
            mode &= ~stat.S_ISUID
            if mode & stat.S_IXGRP:
                mode &= ~_S_ISGID
        if (mode & _S_ISGID) and w.uid != 0 and not stat.S_ISDIR(st.st_mode):
            g = st.st_gid if gid is None else gid
            if g not in w.groups:
                mode &= ~_S_ISGID
        os.chmod(_proc(fd), mode)
    if atime is not None or mtime is not None:
        _fd_utimes(fd, atime, mtime)


def _new_owner(d, w):
    """(uid, gid) of a new object in directory Obj d."""
    return w.uid, (d.st.st_gid if d.st.st_mode & _S_ISGID else w.gid)


def _init_new(fd, d, sa, w, default_mode):
    """Owner, mode and the other attributes of a freshly created object."""
    st = os.fstat(fd)
    uid, gid = _new_owner(d, w)
    if sa.uid is not None:
        uid = sa.uid
    if sa.gid is not None:
        gid = sa.gid
    _fd_chown(fd, uid, gid)
    if not stat.S_ISLNK(st.st_mode):
        mode = default_mode if sa.mode is None else sa.mode & 0o7777
        if stat.S_ISDIR(st.st_mode) and (d.st.st_mode & _S_ISGID):
            mode |= _S_ISGID          # as the kernel does for mkdir in a setgid dir
        elif (mode & _S_ISGID) and w.uid != 0 and gid not in w.groups:
            mode &= ~_S_ISGID
        os.chmod(_proc(fd), mode)
    if sa.size is not None and stat.S_ISREG(st.st_mode):
        os.truncate(_proc(fd), sa.size)
    if sa.atime is not None or sa.mtime is not None:
        _fd_utimes(fd, sa.atime, sa.mtime)


def _open_new(d, name, want_fmt):
    """O_PATH fd of the entry just created, checked to be of the expected type."""
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=d.fd)
    if stat.S_IFMT(os.fstat(fd).st_mode) != want_fmt:
        os.close(fd)
        raise NfsError(S.EXIST, "replaced while being created")
    return fd


# --------------------------------------------------------------------------
# read side

def nfs3_getattr(ctx, fh):
    e = ctx.export
    try:
        return X.Res(OK, e.fsid, e.getattr(fh))
    except (NfsError, OSError) as exc:
        return X.Res(_status(exc), e.fsid)


def nfs3_lookup(ctx, args):
    dfh, name = args
    e = ctx.export
    d = None
    try:
        d = _open_dir(e, dfh)
        w = who(ctx)
        if w.uid != 0 and not (_bits(d.st, w) & 1):
            raise NfsError(S.ACCES, "no search permission")
        fh, st = e.lookup(dfh, name)
        return X.Res(OK, e.fsid, fh, st, d.st)
    except (NfsError, OSError) as exc:
        return X.Res(_status(exc), e.fsid, d.st if d is not None else _attrs(e, dfh))
    finally:
        _close(d)


def nfs3_access(ctx, args):
    fh, mask = args
    e = ctx.export
    try:
        st = e.getattr(fh)
        w = who(ctx)
        granted = access_from_stat(st, mask, w.uid, w.groups, _read_only(ctx))
        return X.Res(OK, e.fsid, st, granted)
    except (NfsError, OSError) as exc:
        return X.Res(_status(exc), e.fsid, None)


def nfs3_readlink(ctx, fh):
    e = ctx.export
    o = None
    try:
        o = e.open_handle(fh)
        if not stat.S_ISLNK(o.st.st_mode):
            raise NfsError(S.INVAL, "not a symlink")
        target = os.readlink(b"", dir_fd=o.fd)
        return X.Res(OK, e.fsid, o.st, target)
    except (NfsError, OSError) as exc:
        return X.Res(_status(exc), e.fsid, o.st if o is not None else None)
    finally:
        _close(o)


def nfs3_read(ctx, args):
    fh, offset, count = args
    e = ctx.export
    lease = None
    try:
        lease = e.read(fh)
        st = lease.st
        if not _may_read_file(st, who(ctx)):
            raise NfsError(S.ACCES)
        if count > e.FSINFO.rtmax:          # the server may size it below 1 MiB (small arenas)
            count = e.FSINFO.rtmax
        if offset > _MAXFILESIZE:
            return X.ReadRes(OK, e.fsid, st, 0, True, payload_len=0)
        n = ctx.read_payload(lease.fd, offset, count) if count else 0
        st = os.fstat(lease.fd)
        eof = n < count or offset + n >= st.st_size
        return X.ReadRes(OK, e.fsid, st, n, eof, payload_len=n)
    except (NfsError, OSError) as exc:
        st = lease.st if lease is not None else _attrs(e, fh)
        return X.ReadRes(_status(exc), e.fsid, st)
    finally:
        if lease is not None:
            lease.release()


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
        w = who(ctx)
        if w.uid != 0 and not (_bits(d.st, w) & 4):
            raise NfsError(S.ACCES, "no read permission on the directory")
        limit = min(_DIR_REPLY_MAX, e.FSINFO.rtmax)   # the reply must fit the request's pages
        if plus:
            maxcount = min(maxcount, limit)
        else:
            count = min(count, limit)
        entries, eof, cverf = e.readdir(dfh, cookie, verf, count, plus=plus, maxcount=maxcount)
        return X.Res(OK, e.fsid, d.st, cverf, entries, eof)
    except (NfsError, OSError) as exc:
        return X.Res(_status(exc), e.fsid, d.st if d is not None else None)
    finally:
        _close(d)


def nfs3_readdir(ctx, args):
    return _readdir(ctx, args, False)


def nfs3_readdirplus(ctx, args):
    return _readdir(ctx, args, True)


def _fsquery(ctx, fh, fn):
    e = ctx.export
    st = None
    try:
        st = e.getattr(fh)
        return X.Res(OK, e.fsid, st, fn(fh))
    except (NfsError, OSError) as exc:
        return X.Res(_status(exc), e.fsid, st)


def nfs3_fsstat(ctx, fh):
    return _fsquery(ctx, fh, ctx.export.fsstat)


def nfs3_fsinfo(ctx, fh):
    return _fsquery(ctx, fh, ctx.export.fsinfo)


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
        sa = _check_sattr(o.st, sa, w, new=False)
        _apply_sattr(o.fd, o.st, sa, w, kill_sid)
        return X.Res(OK, e.fsid, o.st, _fstat(o.fd))
    except (NfsError, OSError) as exc:
        return X.Res(_status(exc), e.fsid, *_wcc(o))
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
        if not _may_write_file(pre, who(ctx)):
            raise NfsError(S.ACCES)
        if length > e.FSINFO.wtmax:
            length = e.FSINFO.wtmax
        if offset + length > _MAXFILESIZE:
            raise NfsError(S.FBIG)
        n = ctx.write_payload(lease.fd, offset, rec_off, length) if length else 0
        if stable == StableHow.FILE_SYNC:
            os.fsync(lease.fd)
        elif stable == StableHow.DATA_SYNC:
            os.fdatasync(lease.fd)
        post = os.fstat(lease.fd)
        return X.Res(OK, e.fsid, pre, post, n, stable, ctx.config.write_verifier)
    except (NfsError, OSError) as exc:
        post = _fstat(lease.fd) if lease is not None else _attrs(e, fh)
        return X.Res(_status(exc), e.fsid, pre, post)
    finally:
        if lease is not None:
            lease.release()


def nfs3_commit(ctx, args):
    fh, offset, count = args
    e = ctx.export
    lease = None
    try:
        lease = e.read(fh)
        pre = lease.st
        os.fsync(lease.fd)
        return X.Res(OK, e.fsid, pre, _fstat(lease.fd), ctx.config.write_verifier)
    except (NfsError, OSError) as exc:
        if lease is not None:
            return X.Res(_status(exc), e.fsid, lease.st, _fstat(lease.fd))
        return X.Res(_status(exc), e.fsid, None, _attrs(e, fh))
    finally:
        if lease is not None:
            lease.release()


def _dir_op_checks(ctx, d, name):
    """Common checks of the directory-modifying procedures on the open
    directory Obj d: ROFS, the new name, w+x on d.  -> (name, Who)."""
    if _read_only(ctx):
        raise NfsError(S.ROFS)
    name = check_name(name, allow_dots=False)
    w = who(ctx)
    _need_dir_write(d, w)
    return name, w


def _created(ctx, dfh, name):
    """(fh, st) of the entry `name` just created in directory dfh, for post_op_fh3/attr."""
    return ctx.export.lookup(dfh, name)


_EXCL_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NS = 1_000_000_000


def nfs3_create(ctx, args):
    dfh, name, how, attr = args
    e = ctx.export
    d = None
    try:
        d = _open_dir(e, dfh)
        name, w = _dir_op_checks(ctx, d, name)
        if how == 2:                                   # EXCLUSIVE
            vm = int.from_bytes(attr[:4], "big") & 0x7FFFFFFF
            va = int.from_bytes(attr[4:], "big") & 0x7FFFFFFF
            try:
                fd = os.open(name, _EXCL_FLAGS, 0o600, dir_fd=d.fd)
            except FileExistsError:
                st = os.stat(name, dir_fd=d.fd, follow_symlinks=False)
                if (stat.S_ISREG(st.st_mode) and st.st_size == 0
                        and st.st_mtime_ns == vm * _NS and st.st_atime_ns == va * _NS):
                    fh, st = _created(ctx, dfh, name)   # a retransmission
                    return X.Res(OK, e.fsid, fh, st, d.st, _fstat(d.fd))
                raise NfsError(S.EXIST)
            try:
                _fd_chown(fd, *_new_owner(d, w))
                os.utime(fd, ns=(va * _NS, vm * _NS))
            finally:
                os.close(fd)
        else:                                          # UNCHECKED, GUARDED
            sa = _check_sattr(None, attr, w, new=True)
            try:
                fd = os.open(name, _EXCL_FLAGS, 0o600, dir_fd=d.fd)
            except FileExistsError:
                if how == 1:
                    raise NfsError(S.EXIST) from None
                # UNCHECKED on an existing entry: only a regular file is
                # accepted, and only the size is applied (as knfsd).
                o = e.lookup_obj(dfh, name)
                try:
                    if not stat.S_ISREG(o.st.st_mode):
                        raise NfsError(S.EXIST)
                    if sa.size is not None:
                        if not _may_write_file(o.st, w):
                            raise NfsError(S.ACCES)
                        os.truncate(_proc(o.fd), sa.size)
                    return X.Res(OK, e.fsid, o.fh, os.fstat(o.fd), d.st, _fstat(d.fd))
                finally:
                    o.close()
            try:
                _init_new(fd, d, sa, w, 0o644)
            finally:
                os.close(fd)
        fh, st = _created(ctx, dfh, name)
        return X.Res(OK, e.fsid, fh, st, d.st, _fstat(d.fd))
    except (NfsError, OSError) as exc:
        return X.Res(_status(exc), e.fsid, *_wcc(d))
    finally:
        _close(d)


def nfs3_mkdir(ctx, args):
    dfh, name, sa = args
    e = ctx.export
    d = None
    try:
        d = _open_dir(e, dfh)
        name, w = _dir_op_checks(ctx, d, name)
        sa = _check_sattr(None, sa, w, new=True)
        os.mkdir(name, 0o700, dir_fd=d.fd)
        fd = _open_new(d, name, stat.S_IFDIR)
        try:
            _init_new(fd, d, X.Sattr3(sa.mode, sa.uid, sa.gid, None, sa.atime, sa.mtime),
                      w, 0o755)
        finally:
            os.close(fd)
        fh, st = _created(ctx, dfh, name)
        return X.Res(OK, e.fsid, fh, st, d.st, _fstat(d.fd))
    except (NfsError, OSError) as exc:
        return X.Res(_status(exc), e.fsid, *_wcc(d))
    finally:
        _close(d)


def nfs3_symlink(ctx, args):
    dfh, name, sa, target = args
    e = ctx.export
    d = None
    try:
        d = _open_dir(e, dfh)
        name, w = _dir_op_checks(ctx, d, name)
        if b"\0" in target:
            raise NfsError(S.INVAL, "NUL in symlink target")
        sa = _check_sattr(None, sa, w, new=True)
        os.symlink(target, name, dir_fd=d.fd)
        fd = _open_new(d, name, stat.S_IFLNK)
        try:
            _init_new(fd, d, X.Sattr3(None, sa.uid, sa.gid, None, sa.atime, sa.mtime), w, 0o777)
        finally:
            os.close(fd)
        fh, st = _created(ctx, dfh, name)
        return X.Res(OK, e.fsid, fh, st, d.st, _fstat(d.fd))
    except (NfsError, OSError) as exc:
        return X.Res(_status(exc), e.fsid, *_wcc(d))
    finally:
        _close(d)


_MKNOD_FMT = {3: stat.S_IFBLK, 4: stat.S_IFCHR, 6: stat.S_IFSOCK, 7: stat.S_IFIFO}


def nfs3_mknod(ctx, args):
    dfh, name, ftype, sa, spec = args
    e = ctx.export
    d = None
    try:
        d = _open_dir(e, dfh)
        name, w = _dir_op_checks(ctx, d, name)
        fmt = _MKNOD_FMT.get(ftype)
        if fmt is None:
            raise NfsError(S.BADTYPE, "MKNOD of type %d" % ftype)
        if fmt in (stat.S_IFBLK, stat.S_IFCHR) and w.uid != 0:
            raise NfsError(S.PERM, "only root may create device nodes")
        sa = _check_sattr(None, sa, w, new=True)
        dev = os.makedev(*spec) if spec is not None else 0
        os.mknod(name, fmt | 0o600, dev, dir_fd=d.fd)
        fd = _open_new(d, name, fmt)
        try:
            _init_new(fd, d, X.Sattr3(sa.mode, sa.uid, sa.gid, None, sa.atime, sa.mtime), w, 0o644)
        finally:
            os.close(fd)
        fh, st = _created(ctx, dfh, name)
        return X.Res(OK, e.fsid, fh, st, d.st, _fstat(d.fd))
    except (NfsError, OSError) as exc:
        return X.Res(_status(exc), e.fsid, *_wcc(d))
    finally:
        _close(d)


def _remove(ctx, args, isdir):
    dfh, name = args
    e = ctx.export
    d = None
    try:
        d = _open_dir(e, dfh)
        name, w = _dir_op_checks(ctx, d, name)
        vst = os.stat(name, dir_fd=d.fd, follow_symlinks=False)
        _need_sticky(d.st, vst, w)
        if isdir:
            os.rmdir(name, dir_fd=d.fd)
        else:
            os.unlink(name, dir_fd=d.fd)
        return X.Res(OK, e.fsid, d.st, _fstat(d.fd))
    except (NfsError, OSError) as exc:
        return X.Res(_status(exc), e.fsid, *_wcc(d))
    finally:
        _close(d)


def nfs3_remove(ctx, args):
    return _remove(ctx, args, False)


def nfs3_rmdir(ctx, args):
    return _remove(ctx, args, True)


def nfs3_rename(ctx, args):
    fdfh, fname, tdfh, tname = args
    e = ctx.export
    fd_ = td = None
    try:
        fd_ = _open_dir(e, fdfh)
        td = _open_dir(e, tdfh)
        if _read_only(ctx):
            raise NfsError(S.ROFS)
        fname = check_name(fname, allow_dots=False)
        tname = check_name(tname, allow_dots=False)
        w = who(ctx)
        _need_dir_write(fd_, w)
        _need_dir_write(td, w)
        sst = os.stat(fname, dir_fd=fd_.fd, follow_symlinks=False)
        _need_sticky(fd_.st, sst, w)
        try:
            tst = os.stat(tname, dir_fd=td.fd, follow_symlinks=False)
        except FileNotFoundError:
            tst = None
        if tst is not None and (tst.st_dev, tst.st_ino) != (sst.st_dev, sst.st_ino):
            _need_sticky(td.st, tst, w)
        if (stat.S_ISDIR(sst.st_mode) and w.uid != 0
                and (fd_.st.st_dev, fd_.st.st_ino) != (td.st.st_dev, td.st.st_ino)
                and not (_bits(sst, w) & 2)):
            raise NfsError(S.ACCES, "moving a directory needs write permission on it")
        os.rename(fname, tname, src_dir_fd=fd_.fd, dst_dir_fd=td.fd)
        return X.Res(OK, e.fsid, fd_.st, _fstat(fd_.fd), td.st, _fstat(td.fd))
    except (NfsError, OSError) as exc:
        return X.Res(_status(exc), e.fsid, *(_wcc(fd_) + _wcc(td)))
    finally:
        _close(fd_, td)


def nfs3_link(ctx, args):
    fh, dfh, name = args
    e = ctx.export
    o = d = None
    try:
        o = e.open_handle(fh)
        d = _open_dir(e, dfh)
        name, w = _dir_op_checks(ctx, d, name)
        if o.is_dir:
            raise NfsError(S.ISDIR, "hard link to a directory")
        _fd_link(o.fd, d.fd, name)
        return X.Res(OK, e.fsid, _fstat(o.fd), d.st, _fstat(d.fd))
    except (NfsError, OSError) as exc:
        st = _fstat(o.fd) if o is not None else None
        return X.Res(_status(exc), e.fsid, st, *_wcc(d))
    finally:
        _close(o, d)


# --------------------------------------------------------------------------
# the table


def _e(proc, decode, handler, encode, idempotent=True):
    return ProcEntry(P(proc).name.lower(), decode, handler, encode, idempotent, X.status_name)


def make_table():
    """{proc: ProcEntry} for NFSv3, indexed by NFSPROC3 number."""
    t = {
        P.NULL: null_entry("null"),
        P.GETATTR: _e(P.GETATTR, X.decode_getattr, nfs3_getattr, X.encode_getattr),
        P.SETATTR: _e(P.SETATTR, X.decode_setattr, nfs3_setattr, X.encode_wcc_only, False),
        P.LOOKUP: _e(P.LOOKUP, X.decode_lookup, nfs3_lookup, X.encode_lookup),
        P.ACCESS: _e(P.ACCESS, X.decode_access, nfs3_access, X.encode_access),
        P.READLINK: _e(P.READLINK, X.decode_getattr, nfs3_readlink, X.encode_readlink),
        P.READ: _e(P.READ, X.decode_read, nfs3_read, X.encode_read),
        P.WRITE: _e(P.WRITE, X.decode_write, nfs3_write, X.encode_write),
        P.CREATE: _e(P.CREATE, X.decode_create, nfs3_create, X.encode_diropres, False),
        P.MKDIR: _e(P.MKDIR, X.decode_mkdir, nfs3_mkdir, X.encode_diropres, False),
        P.SYMLINK: _e(P.SYMLINK, X.decode_symlink, nfs3_symlink, X.encode_diropres, False),
        P.MKNOD: _e(P.MKNOD, X.decode_mknod, nfs3_mknod, X.encode_diropres, False),
        P.REMOVE: _e(P.REMOVE, X.decode_remove, nfs3_remove, X.encode_wcc_only, False),
        P.RMDIR: _e(P.RMDIR, X.decode_rmdir, nfs3_rmdir, X.encode_wcc_only, False),
        P.RENAME: _e(P.RENAME, X.decode_rename, nfs3_rename, X.encode_rename, False),
        P.LINK: _e(P.LINK, X.decode_link, nfs3_link, X.encode_link, False),
        P.READDIR: _e(P.READDIR, X.decode_readdir, nfs3_readdir, X.encode_readdir),
        P.READDIRPLUS: _e(P.READDIRPLUS, X.decode_readdirplus, nfs3_readdirplus,
                          X.encode_readdirplus),
        P.FSSTAT: _e(P.FSSTAT, X.decode_getattr, nfs3_fsstat, X.encode_fsstat),
        P.FSINFO: _e(P.FSINFO, X.decode_getattr, nfs3_fsinfo, X.encode_fsinfo),
        P.PATHCONF: _e(P.PATHCONF, X.decode_getattr, nfs3_pathconf, X.encode_pathconf),
        P.COMMIT: _e(P.COMMIT, X.decode_commit, nfs3_commit, X.encode_commit),
    }
    return {int(k): v for k, v in t.items()}


PROCEDURES = make_table()


def make_program():
    """dispatch.Program for NFS (100003) version 3."""
    return Program(NFS_PROGRAM, "nfs", {NFS_V3: make_table()})
