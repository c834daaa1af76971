"""The namespace-modifying NFSv3 procedures: CREATE, MKDIR, SYMLINK, MKNOD, REMOVE, RMDIR,
RENAME and LINK. The rest of the program, its table and its containment wrappers are
rpcsrv.nfsd.nfs3, whose module doc states the theory these handlers follow.

Invariants
----------
* A handler is handler(ctx, args) -> its result NamedTuple (proto.nfs3res) and never raises for
  anything the client or the file system can cause; its reply carries the wcc_data of every
  directory it opened, on error arms too.
* Each runs inside nfs3's _synced transaction (wrapped by the table, not here) and proves its
  handles by opening them just before it acts.
* ROFS and w+x on the directory come first (_dir_op_checks); every new name passes
  check_name(name, allow_dots=False); every call is relative to a directory fd (dir_fd=..., no
  symlink followed). New objects belong to the caller (vfs.init_new); CREATE EXCLUSIVE stores the
  verifier in the times the way Linux knfsd does (nfs3's module doc).
* Ownership: a handler closes every Obj and fd it opened, in its finally; nothing outlives the call.
* Threads: handlers share nothing but the Export (thread-safe) and ctx.
"""

import os
import stat
from functools import partial

from ..export import NfsError, check_name
from ..proto import nfs3res as R
from ..proto import nfs3xdr as X
from ..proto.nfs3const import NfsStat3 as S
from . import vfs
from .nfs3common import OK, _close, _fstat, _open_dir, _read_only, _status, _wcc
from .perm import bits, check_sattr, may_write_file, need_dir_write, need_sticky, who

def _dir_op_checks(ctx, d, name):
    """Common checks of the directory-modifying procedures on the open
    directory Obj d: ROFS, the new name, w+x on d.  -> (name, Who)."""
    if _read_only(ctx):
        raise NfsError(S.ROFS)
    name = check_name(name, allow_dots=False)
    w = who(ctx)
    need_dir_write(d, w)
    return name, w


def _created(ctx, d, dfh, name):
    """The DiropRes of the entry `name` just created in the open directory d."""
    e = ctx.export
    fh, st = e.lookup(dfh, name)
    return R.DiropRes(OK, e.fsid, fh, st, d.st, _fstat(d.fd))


_EXCL_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NS = 1_000_000_000


def _init_created(ctx, d, dfh, name, fd, sa, w, default_mode):
    """Owner and attributes of the object just made, through its fd `fd` (closed here); its result."""
    try:
        vfs.init_new(fd, d, sa, w, default_mode)
    finally:
        os.close(fd)
    return _created(ctx, d, dfh, name)


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
                    return _created(ctx, d, dfh, name)   # a retransmission
                raise NfsError(S.EXIST)
            try:
                vfs.fd_chown(fd, *vfs.new_owner(d, w))
                os.utime(fd, ns=(va * _NS, vm * _NS))
            finally:
                os.close(fd)
        else:                                          # UNCHECKED, GUARDED
            sa = check_sattr(None, attr, w, new=True)
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
                        if not may_write_file(o.st, w):
                            raise NfsError(S.ACCES)
                        os.truncate(vfs.proc_path(o.fd), sa.size)
                    return R.DiropRes(OK, e.fsid, o.fh, os.fstat(o.fd), d.st, _fstat(d.fd))
                finally:
                    o.close()
            return _init_created(ctx, d, dfh, name, fd, sa, w, 0o644)
        return _created(ctx, d, dfh, name)
    except (NfsError, OSError) as exc:
        return R.DiropRes(_status(exc), e.fsid, None, None, *_wcc(d))
    finally:
        _close(d)


def _make_entry(ctx, dfh, name, sa, precheck, create, default_mode, with_mode=True):
    """MKDIR / SYMLINK / MKNOD: the common checks, precheck(w) (the procedure's
    own), the sattr3 checks, create(d, name) -> the S_IFMT it made; then owner
    and attributes are set through the new object's own fd."""
    e = ctx.export
    d = None
    try:
        d = _open_dir(e, dfh)
        name, w = _dir_op_checks(ctx, d, name)
        precheck(w)
        sa = check_sattr(None, sa, w, new=True)
        fmt = create(d, name)
        fd = vfs.open_new(d, name, fmt)
        sa = X.Sattr3(sa.mode if with_mode else None, sa.uid, sa.gid, None, sa.atime, sa.mtime)
        return _init_created(ctx, d, dfh, name, fd, sa, w, default_mode)
    except (NfsError, OSError) as exc:
        return R.DiropRes(_status(exc), e.fsid, None, None, *_wcc(d))
    finally:
        _close(d)


def _no_precheck(w):
    pass


def nfs3_mkdir(ctx, args):
    dfh, name, sa = args

    def create(d, name):
        os.mkdir(name, 0o700, dir_fd=d.fd)
        return stat.S_IFDIR
    return _make_entry(ctx, dfh, name, sa, _no_precheck, create, 0o755)


def nfs3_symlink(ctx, args):
    dfh, name, sa, target = args

    def precheck(w):
        if b"\0" in target:
            raise NfsError(S.INVAL, "NUL in symlink target")

    def create(d, name):
        os.symlink(target, name, dir_fd=d.fd)
        return stat.S_IFLNK
    return _make_entry(ctx, dfh, name, sa, precheck, create, 0o777, with_mode=False)


_MKNOD_FMT = {3: stat.S_IFBLK, 4: stat.S_IFCHR, 6: stat.S_IFSOCK, 7: stat.S_IFIFO}


def nfs3_mknod(ctx, args):
    dfh, name, ftype, sa, spec = args
    fmt = _MKNOD_FMT.get(ftype)

    def precheck(w):
        if fmt is None:
            raise NfsError(S.BADTYPE, "MKNOD of type %d" % ftype)
        if fmt in (stat.S_IFBLK, stat.S_IFCHR) and w.uid != 0:
            raise NfsError(S.PERM, "only root may create device nodes")

    def create(d, name):
        os.mknod(name, fmt | 0o600, os.makedev(*spec) if spec is not None else 0, dir_fd=d.fd)
        return fmt
    return _make_entry(ctx, dfh, name, sa, precheck, create, 0o644)


def _remove(ctx, args, isdir):
    dfh, name = args
    e = ctx.export
    d = None
    try:
        d = _open_dir(e, dfh)
        name, w = _dir_op_checks(ctx, d, name)
        vst = os.stat(name, dir_fd=d.fd, follow_symlinks=False)
        need_sticky(d.st, vst, w)
        if isdir:
            os.rmdir(name, dir_fd=d.fd)
        else:
            os.unlink(name, dir_fd=d.fd)
            if vst.st_nlink <= 1:
                e.forget_inode(vst.st_dev, vst.st_ino)
        return R.WccRes(OK, e.fsid, d.st, _fstat(d.fd))
    except (NfsError, OSError) as exc:
        return R.WccRes(_status(exc), e.fsid, *_wcc(d))
    finally:
        _close(d)


nfs3_remove = partial(_remove, isdir=False)
nfs3_rmdir = partial(_remove, isdir=True)


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
        need_dir_write(fd_, w)
        need_dir_write(td, w)
        sst = os.stat(fname, dir_fd=fd_.fd, follow_symlinks=False)
        need_sticky(fd_.st, sst, w)
        try:
            tst = os.stat(tname, dir_fd=td.fd, follow_symlinks=False)
        except FileNotFoundError:
            tst = None
        if tst is not None and (tst.st_dev, tst.st_ino) != (sst.st_dev, sst.st_ino):
            need_sticky(td.st, tst, w)
        if (stat.S_ISDIR(sst.st_mode) and w.uid != 0
                and (fd_.st.st_dev, fd_.st.st_ino) != (td.st.st_dev, td.st.st_ino)
                and not (bits(sst, w) & 2)):
            raise NfsError(S.ACCES, "moving a directory needs write permission on it")
        os.rename(fname, tname, src_dir_fd=fd_.fd, dst_dir_fd=td.fd)
        return R.RenameRes(OK, e.fsid, fd_.st, _fstat(fd_.fd), td.st, _fstat(td.fd))
    except (NfsError, OSError) as exc:
        return R.RenameRes(_status(exc), e.fsid, *(_wcc(fd_) + _wcc(td)))
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
        vfs.fd_link(o.fd, d.fd, name)
        return R.LinkRes(OK, e.fsid, _fstat(o.fd), d.st, _fstat(d.fd))
    except (NfsError, OSError) as exc:
        st = _fstat(o.fd) if o is not None else None
        return R.LinkRes(_status(exc), e.fsid, st, *_wcc(d))
    finally:
        _close(o, d)
