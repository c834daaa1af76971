"""One python-libnfs context: mount, and the few calls python-libnfs lacks.

The only module that imports ``libnfs``.  A :class:`NfsContext` is owned by
exactly one client process (python-libnfs holds the GIL during a call, so
concurrency comes from processes, each with its own context and TCP
connection).  It is never shared or pickled.

python-libnfs 1.0.post4 (a SWIG wrapper from 2016) wraps libnfs's sync
POSIX-like API but not ``nfs_set_timeout``, ``nfs_statvfs64`` and a usable
``nfs_utimes`` (it cannot build a ``struct timeval[2]``).  Those three are
called through ctypes on the same ``libnfs.so.13`` with the context pointer
SWIG exposes (``int(swig_pointer)`` is the C address).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os

import libnfs as _nfs

__all__ = ["NfsContext", "MountError", "lib"]


class MountError(RuntimeError):
    pass


class _StatVfs64(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in (
        "f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files",
        "f_ffree", "f_favail", "f_fsid", "f_flag", "f_namemax")]


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


def _load_lib():
    name = ctypes.util.find_library("nfs") or "libnfs.so.13"
    lib = ctypes.CDLL(name)
    lib.nfs_set_timeout.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.nfs_set_timeout.restype = None
    lib.nfs_statvfs64.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(_StatVfs64)]
    lib.nfs_statvfs64.restype = ctypes.c_int
    lib.nfs_utimes.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(_Timeval)]
    lib.nfs_utimes.restype = ctypes.c_int
    return lib


lib = _load_lib()


class NfsContext:
    """A mounted libnfs context. Every method returns a negative errno on
    failure (never raises for an NFS error), like libnfs itself."""

    def __init__(self, url: str, rpc_timeout: float = 0.0):
        self.url = url
        ctx = _nfs.nfs_init_context()
        if ctx is None:
            raise MountError("nfs_init_context failed")
        self.ctx = ctx
        self.ptr = int(ctx)
        if rpc_timeout > 0:
            # libnfs wants whole seconds, in milliseconds
            lib.nfs_set_timeout(self.ptr, max(1, int(round(rpc_timeout))) * 1000)
        u = _nfs.nfs_parse_url_dir(ctx, url)
        if u is None:
            raise MountError(f"bad NFS URL {url!r}: {_nfs.nfs_get_error(ctx)}")
        self._url = u
        rc = _nfs.nfs_mount(ctx, u.server, u.path)
        if rc != 0:
            raise MountError(f"cannot mount {url}: MOUNT/NFS to {u.server}:{u.path} failed: {os.strerror(-rc) if rc < 0 else rc} "
                             f"({_nfs.nfs_get_error(ctx)})")
        self.readmax = _nfs.nfs_get_readmax(ctx)
        self.writemax = _nfs.nfs_get_writemax(ctx)
        self._st = _nfs.nfs_stat_64()

    def error(self) -> str:
        return _nfs.nfs_get_error(self.ctx) or ""

    # -- path calls -----------------------------------------------------
    def stat(self, path):
        """LOOKUP3 per component, then GETATTR3. Returns (rc, nfs_stat_64)."""
        rc = _nfs.nfs_stat64(self.ctx, path, self._st)
        return rc, self._st

    def lstat(self, path):
        rc = _nfs.nfs_lstat64(self.ctx, path, self._st)
        return rc, self._st

    def mkdir(self, path):
        return _nfs.nfs_mkdir(self.ctx, path)

    def rmdir(self, path):
        return _nfs.nfs_rmdir(self.ctx, path)

    def unlink(self, path):
        return _nfs.nfs_unlink(self.ctx, path)

    def rename(self, old, new):
        return _nfs.nfs_rename(self.ctx, old, new)

    def link(self, existing, newpath):
        return _nfs.nfs_link(self.ctx, existing, newpath)

    def symlink(self, target, linkpath):
        return _nfs.nfs_symlink(self.ctx, target, linkpath)

    def readlink(self, path, buf: bytearray):
        return _nfs.nfs_readlink(self.ctx, path, buf, len(buf))

    def access(self, path, mode):
        return _nfs.nfs_access(self.ctx, path, mode)

    def utimes(self, path, times=None):
        """SETATTR3. times None: both times set to server time; else
        ((atime_s, atime_us), (mtime_s, mtime_us))."""
        if times is None:
            return lib.nfs_utimes(self.ptr, path.encode(), None)
        tv = (_Timeval * 2)(_Timeval(*times[0]), _Timeval(*times[1]))
        return lib.nfs_utimes(self.ptr, path.encode(), tv)

    def statvfs(self, path="/"):
        sv = _StatVfs64()
        return lib.nfs_statvfs64(self.ptr, path.encode(), ctypes.byref(sv))

    def listdir(self, path):
        """READDIRPLUS3 until EOF (libnfs loops the cookies). Returns
        (rc, [(name, nf3type), ...])."""
        dp = _nfs.new_NFSDirHandle()
        rc = _nfs.nfs_opendir(self.ctx, path, dp)
        if rc < 0:
            return rc, []
        d = _nfs.NFSDirHandle_value(dp)
        out = []
        while True:
            de = _nfs.nfs_readdir(self.ctx, d)
            if de is None:
                break
            out.append((de.name, de.type))
        _nfs.nfs_closedir(self.ctx, d)
        return 0, out

    # -- file handle calls ----------------------------------------------
    def open(self, path, flags):
        """LOOKUP3s (+ ACCESS3, + SETATTR3 for O_TRUNC, CREATE3 for O_CREAT
        of a missing file). Returns (rc, fh)."""
        fhp = _nfs.new_NFSFileHandle()
        rc = _nfs.nfs_open(self.ctx, path, flags, fhp)
        if rc < 0:
            return rc, None
        return 0, _nfs.NFSFileHandle_value(fhp)

    def creat(self, path, mode=0o644):
        """LOOKUP3s of the parent, CREATE3 (UNCHECKED). Returns (rc, fh)."""
        fhp = _nfs.new_NFSFileHandle()
        rc = _nfs.nfs_creat(self.ctx, path, mode, fhp)
        if rc < 0:
            return rc, None
        return 0, _nfs.NFSFileHandle_value(fhp)

    def close(self, fh):
        return _nfs.nfs_close(self.ctx, fh)

    def pread(self, fh, offset, count, buf):
        return _nfs.nfs_pread(self.ctx, fh, offset, count, buf)

    def pwrite(self, fh, offset, count, buf):
        return _nfs.nfs_pwrite(self.ctx, fh, offset, count, buf)

    def fsync(self, fh):
        return _nfs.nfs_fsync(self.ctx, fh)

    def fstat(self, fh):
        rc = _nfs.nfs_fstat64(self.ctx, fh, self._st)
        return rc, self._st

    def ftruncate(self, fh, length):
        return _nfs.nfs_ftruncate(self.ctx, fh, length)

    def destroy(self):
        if self.ctx is not None:
            _nfs.nfs_destroy_url(self._url)
            _nfs.nfs_destroy_context(self.ctx)
            self.ctx = None


# NF3 file types as reported in nfsdirent.type
NF3REG, NF3DIR, NF3LNK = 1, 2, 5
S_IFDIR = 0o040000
ENOENT = errno.ENOENT
