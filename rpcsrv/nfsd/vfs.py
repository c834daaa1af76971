"""System calls on O_PATH fds that Python's os module does not expose, and attribute application.

Owns: fchownat/utimensat/linkat with AT_EMPTY_PATH through ctypes (so
symlinks themselves can be changed and objects linked by fd), and applying a
checked sattr3 to an object (apply_sattr) or a new object (init_new), with
the set-id rules of chown(2) and knfsd's nfsd_sanitize_attrs. chmod and
truncate go through /proc/self/fd/N, never on symlinks. Errors are OSError
(the caller maps them to nfsstat3). No state; any thread.
"""

from __future__ import annotations

import ctypes
import os
import stat

from ..export import NfsError
from ..proto import nfs3xdr as X
from ..proto.nfs3const import NfsStat3 as S

__all__ = ["fd_chown", "fd_utimes", "fd_link", "proc_path", "apply_sattr", "init_new", "new_owner",
           "open_new"]

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


def fd_chown(fd, uid, gid):
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


def fd_utimes(fd, atime, mtime):
    """utimensat on the object behind fd: atime/mtime None (omit), SERVER_TIME or (s, ns)."""
    ts = (_Timespec * 2)(_Timespec(*_ts(atime)), _Timespec(*_ts(mtime)))
    if _utimensat(fd, b"", ctypes.byref(ts), _AT_EMPTY_PATH) != 0:
        raise _oserr()


def proc_path(fd):
    return "/proc/self/fd/%d" % fd


def fd_link(fd, dir_fd, name):
    """linkat(fd, "", dir_fd, name, AT_EMPTY_PATH): link the object itself."""
    if _IS_ROOT:
        if _linkat(fd, b"", dir_fd, name, _AT_EMPTY_PATH) != 0:
            raise _oserr()
    else:  # AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; the proc link works for non-symlinks
        os.link(proc_path(fd), name, dst_dir_fd=dir_fd, follow_symlinks=True)


def apply_sattr(fd, st, sa, w, kill_sid=False):
    """Apply a checked sattr3 to the object behind fd (whose lstat is st).
    Order: size, owner, mode, times (times last: truncate moves mtime).

    kill_sid: the request set uid or gid (maybe to the unchanged value, which
    perm.check_sattr dropped): like chown(2) and knfsd's nfsd_sanitize_attrs,
    revoke S_ISUID, and S_ISGID when group-executable, of a non-directory --
    in the mode being set, else on the object itself."""
    mode, uid, gid, size, atime, mtime = sa
    is_link = stat.S_ISLNK(st.st_mode)
    if is_link or stat.S_ISDIR(st.st_mode):
        kill_sid = False
    if size is not None and not is_link:
        os.truncate(proc_path(fd), size)
    if uid is not None or gid is not None:
        fd_chown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
    elif kill_sid and mode is None:       # no chown(2) to do it for us
        cur = stat.S_IMODE(os.fstat(fd).st_mode)
        new = cur & ~stat.S_ISUID
        if new & stat.S_IXGRP:
            new &= ~stat.S_ISGID
        if new != cur:
            os.chmod(proc_path(fd), new)
    if mode is not None and not is_link:   # mode of a symlink: ignored, as knfsd
        mode &= 0o7777
        if kill_sid:
            mode &= ~stat.S_ISUID
            if mode & stat.S_IXGRP:
                mode &= ~stat.S_ISGID
        if (mode & stat.S_ISGID) and w.uid != 0 and not stat.S_ISDIR(st.st_mode):
            g = st.st_gid if gid is None else gid
            if g not in w.groups:
                mode &= ~stat.S_ISGID
        os.chmod(proc_path(fd), mode)
    if atime is not None or mtime is not None:
        fd_utimes(fd, atime, mtime)


def new_owner(d, w):
    """(uid, gid) of a new object in directory Obj d."""
    return w.uid, (d.st.st_gid if d.st.st_mode & stat.S_ISGID else w.gid)


def init_new(fd, d, sa, w, default_mode):
    """Owner, mode and the other attributes of a freshly created object."""
    st = os.fstat(fd)
    uid, gid = new_owner(d, w)
    if sa.uid is not None:
        uid = sa.uid
    if sa.gid is not None:
        gid = sa.gid
    fd_chown(fd, uid, gid)
    if not stat.S_ISLNK(st.st_mode):
        mode = default_mode if sa.mode is None else sa.mode & 0o7777
        if stat.S_ISDIR(st.st_mode) and (d.st.st_mode & stat.S_ISGID):
            mode |= stat.S_ISGID          # as the kernel does for mkdir in a setgid dir
        elif (mode & stat.S_ISGID) and w.uid != 0 and gid not in w.groups:
            mode &= ~stat.S_ISGID
        os.chmod(proc_path(fd), mode)
    if sa.size is not None and stat.S_ISREG(st.st_mode):
        os.truncate(proc_path(fd), sa.size)
    if sa.atime is not None or sa.mtime is not None:
        fd_utimes(fd, sa.atime, sa.mtime)


def open_new(d, name, want_fmt):
    """O_PATH fd of the entry just created, checked to be of the expected type."""
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=d.fd)
    if stat.S_IFMT(os.fstat(fd).st_mode) != want_fmt:
        os.close(fd)
        raise NfsError(S.EXIST, "replaced while being created")
    return fd
