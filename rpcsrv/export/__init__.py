"""The exported directory: file handles, path safety, attributes, READDIR cookies.

Theory
------
One :class:`Export` per exported directory; every worker thread calls into the
same object.  Nothing here knows about XDR, RPC or sockets: callers pass file
handles (``bytes``) and names (``bytes``) and get plain Python values back, or
an :class:`NfsError` carrying the nfsstat3 to put in the reply.

File handles name the object, not a path
    *kernel mode* (default when ``open_by_handle_at`` works, i.e. root /
    CAP_DAC_READ_SEARCH): the handle carries the kernel's own file handle from
    ``name_to_handle_at`` (type + f_handle bytes, which embed inode number and
    generation), so it survives renames and server restarts.  For
    non-directories the parent directory's kernel handle is carried too when it
    fits (see containment below).
    *inode mode* (fallback: not root, EPERM/EOPNOTSUPP from the syscalls, or a
    file system whose handles do not fit): the handle carries (st_ino,
    generation if FS_IOC_GETVERSION works else 0, parent st_ino).  Objects are
    found again through an inode->path cache filled by LOOKUP/READDIR, then the
    parent hint, then a bounded breadth-first search of the export
    (``search_limit`` entries).  Degradation: after a restart an object far from
    its recorded parent may cost a tree search, may go STALE if it is beyond
    ``search_limit``, and with generation 0 a reused inode number is not
    detected.
    Every handle ends in a 12-byte keyed BLAKE2s MAC; the key lives in the
    state dir (never in the export), so handles stay valid across restarts and
    clients cannot forge them.  Byte layout: see ``_pack_kernel`` /
    ``_pack_inode``.  Wrong length, version byte or MAC -> BADHANDLE; authentic
    but the object is gone or outside the export -> STALE.

No request reaches outside the export
    All resolution is one component at a time relative to a directory fd
    (``O_PATH|O_NOFOLLOW`` with ``dir_fd``), never by joining strings.  Names
    with ``/`` or NUL, or empty, are INVAL; longer than 255 bytes NAMETOOLONG.
    ``..`` at the export root is the root.  Symlinks are never followed for a
    client: LOOKUP returns the link's own handle.  Other file systems mounted
    below the export are not exported: LOOKUP of a mount point gives ACCES
    (knfsd without crossmnt shows the covered directory instead; we cannot).
    Objects opened by handle are checked for containment (results cached for
    ``verify_ttl`` seconds, keyed by handle):
      * if the export root is the mount point of a mount that shows its
        whole file system (mountinfo root "/", not a bind mount of a
        subdirectory), same device == inside (open_by_handle_at decodes
        through our mount);
      * directories: walk ``..`` up until the root (inside) or the fs root /
        another device (outside);
      * non-directories: the path the kernel reports for the fd
        (/proc/self/fd) is re-resolved from the root fd component by component
        and must reach the same (dev, ino); otherwise the parent recorded in the
        handle must be inside and still contain an entry with that inode
        number.  Otherwise STALE.  (So a file hard-linked both inside and
        outside is served; a file renamed into another directory while its
        dentry fell out of the kernel's cache can go STALE, like knfsd's
        subtree_check.)
    In inode mode containment holds by construction (always resolved from the
    root by name).

READDIR cookies
    cookie 0 = start, 1 = after ".", 2 = after "..", otherwise the entry's
    cookie is a 63-bit keyed hash of its name with the top bit set.  Entries are
    returned in cookie order and a page resumes with the first entry whose
    cookie is greater than the client's: entries present throughout a listing
    appear exactly once whatever is added or removed between pages, and a
    cookie stays meaningful forever (also across restarts).  So the cookie
    verifier need not change with the directory: it is a keyed hash of the
    directory's inode number.  BAD_COOKIE only for a cookie that is not of
    this form, or a non-zero verifier that is not this directory's (a zero
    verifier with a non-zero cookie is accepted, as Linux clients send it
    after invalidating their cache; knfsd ignores the verifier altogether).
    Continuation pages may reuse a sorted listing at most ``dir_snapshot_ttl``
    seconds old with the same directory mtime/ctime; a listing from cookie 0 is
    always fresh.

Threads
    Everything public is thread-safe.  Each cache (verified handles, open
    files, inode paths, directory listings) is an OrderedDict LRU behind its
    own lock; no lock is held while calling another cache's lock or doing
    blocking I/O except dict bookkeeping, so there is no lock order to obey.
    fds: an :class:`Obj` owns its O_PATH fd and closes it once (``close`` or
    ``with``).  Open files for READ/WRITE are shared and refcounted: the cache
    holds one reference, each :class:`FileLease` one more; the fd is closed
    when the count reaches zero, so eviction never closes an fd under a
    running ``preadv``.  ``Export.close()`` must run after the workers stop.

Per-user permission checks are the NFS layer's job (``access()`` computes the
ACCESS3 bits from mode bits); this module runs everything with the server's
credentials.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import hmac
import os
import stat
import struct
import threading
import time
from collections import OrderedDict
from typing import Iterable, NamedTuple

from .nfs3const import (
    ACCESS3_DELETE,
    ACCESS3_EXECUTE,
    ACCESS3_EXTEND,
    ACCESS3_LOOKUP,
    ACCESS3_MODIFY,
    ACCESS3_READ,
    FSF3_CANSETTIME,
    FSF3_HOMOGENEOUS,
    FSF3_LINK,
    FSF3_SYMLINK,
    NFS3_COOKIEVERFSIZE,
    NFS3_FHSIZE,
    NFS3_MAXNAMLEN,
    Ftype3,
    NfsStat3,
    nfsstat3_name,
)

__all__ = [
    "NfsError",
    "nfsstat_from_oserror",
    "Export",
    "Obj",
    "FileLease",
    "DirEntry",
    "FsStat",
    "FsInfo",
    "PathConf",
    "fattr3_from_stat",
    "wcc_attr_from_stat",
    "ftype3_from_mode",
    "access_from_stat",
    "check_name",
    "default_state_dir",
    "load_or_create_key",
    "FH_VERSION",
    "FH_MAC_LEN",
]


# --------------------------------------------------------------------------
# errors


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


# --------------------------------------------------------------------------
# kernel file handles through ctypes

_AT_EMPTY_PATH = 0x1000
_MAX_HANDLE_SZ = 128
_O_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_FS_IOC_GETVERSION = 0x80087601  # _IOR('v', 1, long)

try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _name_to_handle_at = _libc.name_to_handle_at
    _name_to_handle_at.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p,
                                   ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    _name_to_handle_at.restype = ctypes.c_int
    _open_by_handle_at = _libc.open_by_handle_at
    _open_by_handle_at.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    _open_by_handle_at.restype = ctypes.c_int
except (OSError, AttributeError):  # pragma: no cover - non-glibc
    _name_to_handle_at = _open_by_handle_at = None


def _kernel_handle(fd: int) -> tuple[int, bytes, int]:
    """(handle_type, f_handle, mount_id) of the object behind ``fd`` (never follows)."""
    if _name_to_handle_at is None:
        raise OSError(errno.ENOSYS, "name_to_handle_at unavailable")
    buf = ctypes.create_string_buffer(8 + _MAX_HANDLE_SZ)
    struct.pack_into("=Ii", buf, 0, _MAX_HANDLE_SZ, 0)
    mnt = ctypes.c_int(0)
    if _name_to_handle_at(fd, b"", buf, ctypes.byref(mnt), _AT_EMPTY_PATH) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    nbytes, htype = struct.unpack_from("=Ii", buf, 0)
    return htype, bytes(buf.raw[8:8 + nbytes]), mnt.value


def _open_kernel_handle(mount_fd: int, htype: int, hbytes: bytes, flags: int) -> int:
    if _open_by_handle_at is None:
        raise OSError(errno.ENOSYS, "open_by_handle_at unavailable")
    buf = ctypes.create_string_buffer(struct.pack("=Ii", len(hbytes), htype) + hbytes)
    fd = _open_by_handle_at(mount_fd, buf, flags)
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return fd


# --------------------------------------------------------------------------
# plain values


def ftype3_from_mode(mode: int) -> int:
    fmt = stat.S_IFMT(mode)
    return int({
        stat.S_IFREG: Ftype3.REG, stat.S_IFDIR: Ftype3.DIR, stat.S_IFBLK: Ftype3.BLK,
        stat.S_IFCHR: Ftype3.CHR, stat.S_IFLNK: Ftype3.LNK, stat.S_IFSOCK: Ftype3.SOCK,
        stat.S_IFIFO: Ftype3.FIFO,
    }.get(fmt, Ftype3.REG))


_U32 = 0xFFFFFFFF


def _nfstime(ns: int) -> tuple[int, int]:
    s, n = divmod(ns, 1_000_000_000)
    # nfstime3.seconds is uint32: clamp times before 1970 / after 2106
    if s < 0:
        return 0, 0
    if s > _U32:
        return _U32, 999_999_999
    return s, n


def fattr3_from_stat(st: os.stat_result, fsid: int) -> tuple:
    """fattr3 in RFC 1813 order:
    (type, mode, nlink, uid, gid, size, used, (specdata1, specdata2), fsid, fileid,
     atime, mtime, ctime) with times as (seconds, nseconds).
    mode is the low 12 bits (permissions + setuid/setgid/sticky), as RFC 1813
    defines it; the type lives only in ``type``."""
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        rdev = (os.major(st.st_rdev), os.minor(st.st_rdev))
    else:
        rdev = (0, 0)
    return (
        ftype3_from_mode(st.st_mode),
        stat.S_IMODE(st.st_mode),
        st.st_nlink,
        st.st_uid,
        st.st_gid,
        st.st_size,
        st.st_blocks * 512,
        rdev,
        fsid,
        st.st_ino,
        _nfstime(st.st_atime_ns),
        _nfstime(st.st_mtime_ns),
        _nfstime(st.st_ctime_ns),
    )


def wcc_attr_from_stat(st: os.stat_result) -> tuple:
    """wcc_attr: (size, mtime, ctime)."""
    return (st.st_size, _nfstime(st.st_mtime_ns), _nfstime(st.st_ctime_ns))


def access_from_stat(st: os.stat_result, mask: int, uid: int, gids: Iterable[int],
                     read_only: bool = False) -> int:
    """ACCESS3 bits granted from the mode bits, following knfsd's table:
    directories: READ<-r, LOOKUP<-x, MODIFY/EXTEND/DELETE<-w+x;
    others: READ<-r, MODIFY/EXTEND<-w, EXECUTE<-x (LOOKUP/DELETE never).
    ``gids`` is every group of the caller (AUTH_SYS gid plus gids).  uid 0 has
    r/w/x everywhere except execute on a non-directory without any x bit.
    A read-only export never grants MODIFY/EXTEND/DELETE."""
    mode = st.st_mode
    isdir = stat.S_ISDIR(mode)
    if uid == 0:
        r = w = True
        x = isdir or bool(mode & 0o111)
    else:
        if uid == st.st_uid:
            bits = (mode >> 6) & 7
        elif st.st_gid in set(gids):
            bits = (mode >> 3) & 7
        else:
            bits = mode & 7
        r, w, x = bool(bits & 4), bool(bits & 2), bool(bits & 1)
    granted = 0
    if r:
        granted |= ACCESS3_READ
    if isdir:
        if x:
            granted |= ACCESS3_LOOKUP
        if w and x:
            granted |= ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_DELETE
    else:
        if w:
            granted |= ACCESS3_MODIFY | ACCESS3_EXTEND
        if x:
            granted |= ACCESS3_EXECUTE
    if read_only:
        granted &= ~(ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_DELETE)
    return granted & mask


def check_name(name: bytes | str, *, allow_dots: bool = True) -> bytes:
    """Validate one filename3 and return it as bytes.
    Empty, containing '/' or NUL -> INVAL (RFC 1813 leaves the status open;
    knfsd rejects such names while decoding).  > 255 bytes -> NAMETOOLONG.
    With ``allow_dots=False`` (CREATE, MKDIR, REMOVE, RENAME...) "." and ".."
    -> INVAL as well."""
    b = name if isinstance(name, bytes) else (bytes(name) if isinstance(name, (bytearray, memoryview))
                                              else os.fsencode(name))
    if not b:
        raise NfsError(NfsStat3.INVAL, "empty name")
    if len(b) > NFS3_MAXNAMLEN:
        raise NfsError(NfsStat3.NAMETOOLONG)
    if b"/" in b or b"\0" in b:
        raise NfsError(NfsStat3.INVAL, "name contains '/' or NUL")
    if not allow_dots and b in (b".", b".."):
        raise NfsError(NfsStat3.INVAL, "name is . or ..")
    return b


class DirEntry(NamedTuple):
    """One READDIR(PLUS) entry.  ``stat``/``fh`` are None for plain READDIR,
    and may be None in READDIRPLUS (e.g. a mount point: post_op_fh3 absent)."""
    fileid: int
    name: bytes
    cookie: int
    stat: os.stat_result | None
    fh: bytes | None


class FsStat(NamedTuple):
    tbytes: int
    fbytes: int
    abytes: int
    tfiles: int
    ffiles: int
    afiles: int
    invarsec: int


class FsInfo(NamedTuple):
    rtmax: int
    rtpref: int
    rtmult: int
    wtmax: int
    wtpref: int
    wtmult: int
    dtpref: int
    maxfilesize: int
    time_delta: tuple[int, int]
    properties: int


class PathConf(NamedTuple):
    linkmax: int
    name_max: int
    no_trunc: bool
    chown_restricted: bool
    case_insensitive: bool
    case_preserving: bool


class Obj:
    """An object opened by handle: ``fd`` is an O_PATH fd (never a symlink
    target), ``st`` its lstat, ``fh`` its handle.  Owned by one caller; close it
    exactly once (``close()`` is idempotent, or use ``with``)."""

    __slots__ = ("fd", "st", "fh", "comps")

    def __init__(self, fd: int, st: os.stat_result, fh: bytes, comps: tuple | None = None):
        self.fd = fd
        self.st = st
        self.fh = fh
        self.comps = comps  # inode mode: path components from the root

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> "Obj":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # safety net only; callers close explicitly
        try:
            self.close()
        except Exception:
            pass


class _OpenFile:
    __slots__ = ("fd", "writable", "refs", "expires", "ino")

    def __init__(self, fd: int, writable: bool, expires: float, ino: int):
        self.fd = fd
        self.writable = writable
        self.refs = 1  # the cache's own reference
        self.expires = expires
        self.ino = ino


class FileLease:
    """A regular file opened for I/O, shared through the open-file cache.
    Use ``fd`` with os.preadv/os.pwritev, then ``release()`` exactly once (or
    ``with``).  ``st`` is an fstat taken when the lease was granted."""

    __slots__ = ("_export", "_of", "fd", "fh", "st", "writable")

    def __init__(self, export: "Export", of: _OpenFile, fh: bytes, st: os.stat_result):
        self._export = export
        self._of = of
        self.fd = of.fd
        self.fh = fh
        self.st = st
        self.writable = of.writable

    def stat(self) -> os.stat_result:
        return os.fstat(self.fd)

    def release(self) -> None:
        of, self._of = self._of, None
        if of is not None:
            self._export._unref(of)
            self.fd = -1

    def __enter__(self) -> "FileLease":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# --------------------------------------------------------------------------
# keys


def default_state_dir(root: str) -> str:
    """``~/.cache/nfsbulk/<sha256(realpath(root))[:16]>``."""
    real = os.path.realpath(root)
    h = hashlib.sha256(os.fsencode(real)).hexdigest()[:16]
    return os.path.join(os.path.expanduser("~"), ".cache", "nfsbulk", h)


def load_or_create_key(state_dir: str) -> bytes:
    """Read ``state_dir/handle.key`` or create it (32 random bytes, mode 0600,
    published atomically with link(2) so concurrent starters agree)."""
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    path = os.path.join(state_dir, "handle.key")
    for _ in range(2):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, os.urandom(32))
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
            continue
        try:
            key = os.read(fd, 4096)
        finally:
            os.close(fd)
        if len(key) < 16:
            raise ValueError(f"{path}: key too short ({len(key)} bytes)")
        return key
    raise RuntimeError(f"could not create {path}")  # pragma: no cover


# --------------------------------------------------------------------------
# handle layout

FH_VERSION = 0x01
FH_MAC_LEN = 12
_KIND_KERNEL = 0x01         # kernel handle of the object
_KIND_KERNEL_PARENT = 0x02  # kernel handle of the object + of its parent dir
_KIND_INODE = 0x03          # fallback: st_ino, generation, parent st_ino
_HDR = 6                    # version, kind, export id (4)
_MIN_FH = _HDR + 2 + FH_MAC_LEN

_COOKIE_DOT = 1
_COOKIE_DOTDOT = 2
_COOKIE_HIGH = 1 << 63

# XDR sizes for READDIR(PLUS) accounting
_RD_BASE = 4 + (4 + 84) + 8 + 4 + 4   # status, post_op_attr, verf, list end, eof
_FATTR_SZ = 84


def _pad4(n: int) -> int:
    return (n + 3) & ~3


class Export:
    """One exported directory.  See the module docstring for the theory.

    ``key``: handle MAC key (tests); default: read/created in ``state_dir``
    (default :func:`default_state_dir`), which must not lie inside the export.
    ``handle_mode``: "auto" (kernel if it works, else inode), "kernel", "inode".
    """

    FSINFO = FsInfo(
        rtmax=1048576, rtpref=1048576, rtmult=4096,
        wtmax=1048576, wtpref=1048576, wtmult=4096,
        dtpref=65536, maxfilesize=(1 << 63) - 1, time_delta=(0, 1),
        properties=FSF3_LINK | FSF3_SYMLINK | FSF3_HOMOGENEOUS | FSF3_CANSETTIME,
    )

    def __init__(self, root: str, *, key: bytes | None = None, read_only: bool = False,
                 state_dir: str | None = None, handle_mode: str = "auto",
                 verify_ttl: float = 2.0, open_file_cache: int = 256,
                 verified_cache: int = 65536, path_cache: int = 65536,
                 dir_snapshot_ttl: float = 1.0, dir_snapshot_cache: int = 64,
                 search_limit: int = 100_000):
        self.path = os.path.abspath(root)
        self.real = os.path.realpath(root)
        self._real_b = os.fsencode(self.real)
        self.read_only = read_only
        self.verify_ttl = verify_ttl
        self.search_limit = search_limit
        self.dir_snapshot_ttl = dir_snapshot_ttl

        self._vlock = threading.Lock()
        self._verified: OrderedDict[bytes, tuple[int, int, float]] = OrderedDict()
        self._verified_max = verified_cache
        self._dlock = threading.Lock()
        self._inside_dirs: OrderedDict[tuple[int, int], float] = OrderedDict()
        self._flock = threading.Lock()
        self._files: OrderedDict[bytes, _OpenFile] = OrderedDict()
        self._files_max = max(1, open_file_cache)
        self._plock = threading.Lock()
        self._paths: OrderedDict[int, tuple] = OrderedDict()
        self._paths_max = path_cache
        self._slock = threading.Lock()
        self._snaps: OrderedDict[tuple[int, int], tuple] = OrderedDict()
        self._snaps_max = dir_snapshot_cache
        self._closed = False
        self._root_fd = os.open(self.real, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self._init(key, state_dir, handle_mode)
        except BaseException:
            os.close(self._root_fd)
            raise

    def _init(self, key, state_dir, handle_mode):
        st = os.fstat(self._root_fd)
        self.root_st = st
        self._root_id = (st.st_dev, st.st_ino)
        if key is None:
            sd = os.path.realpath(state_dir or default_state_dir(self.real))
            if sd == self.real or sd.startswith(self.real.rstrip("/") + "/"):
                raise ValueError(f"state dir {sd} lies inside the export {self.real}")
            key = load_or_create_key(sd)
        master = hashlib.blake2s(key, person=b"nfsbmstr").digest()

        def sub(label: bytes) -> bytes:
            return hashlib.blake2s(label, key=master).digest()

        self._mac_key = sub(b"fh-mac")
        self._name_key = sub(b"readdir-cookie")
        self._verf_key = sub(b"readdir-verf")
        ident = hashlib.blake2s(self._real_b, key=sub(b"export-id")).digest()
        self.export_id = ident[:4]
        #: fattr3.fsid: stable for this export across restarts
        self.fsid = int.from_bytes(ident[4:12], "big")

        self._root_is_mount_root = False  # set below, kernel mode only

        if handle_mode not in ("auto", "kernel", "inode"):
            raise ValueError(f"handle_mode {handle_mode!r}")
        self.mode = "inode"
        self._root_kh = None
        self._mount_id = None
        if handle_mode in ("auto", "kernel"):
            try:
                htype, hb, mnt = _kernel_handle(self._root_fd)
                if not (0 <= htype <= 255) or _MIN_FH + len(hb) > NFS3_FHSIZE:
                    raise OSError(errno.EOVERFLOW, "kernel handle does not fit")
                fd = _open_kernel_handle(self._root_fd, htype, hb, os.O_PATH | os.O_CLOEXEC)
                try:
                    s2 = os.fstat(fd)
                finally:
                    os.close(fd)
                if (s2.st_dev, s2.st_ino) != self._root_id:
                    raise OSError(errno.ESTALE, "root handle does not round-trip")
                self.mode = "kernel"
                self._root_kh = (htype, hb)
                self._mount_id = mnt
                self._root_is_mount_root = _is_whole_fs_mount(mnt, self.real)
            except OSError:
                if handle_mode == "kernel":
                    raise
        self._root_fh = self._make_fh_for(self._root_fd, st, None, ())

    # ------------------------------------------------------------------ life

    def close(self) -> None:
        """Close the root fd and the cached files (leased ones close on release)."""
        if self._closed:
            return
        self._closed = True
        with self._flock:
            entries = list(self._files.values())
            self._files.clear()
        for of in entries:
            self._unref(of)
        os.close(self._root_fd)

    def __enter__(self) -> "Export":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ handles

    def _mac(self, body: bytes) -> bytes:
        return hashlib.blake2s(body, key=self._mac_key, digest_size=FH_MAC_LEN).digest()

    def _seal(self, body: bytes) -> bytes:
        fh = body + self._mac(body)
        if len(fh) > NFS3_FHSIZE:
            raise NfsError(NfsStat3.SERVERFAULT, "file handle too large")
        return fh

    def _pack_kernel(self, htype: int, hb: bytes, parent: tuple[int, bytes] | None) -> bytes:
        """Kernel-mode layout (big endian, total <= 64):
            [0] version 0x01  [1] kind 0x01|0x02  [2:6] export id
            [6] handle_type (u8)  [7] n  [8:8+n] f_handle
            kind 0x02 only: [ptype u8][pn u8][pn bytes parent f_handle]
            [-12:] MAC = keyed BLAKE2s-96 of everything before it.
        The parent is dropped when it does not fit."""
        if not 0 <= htype <= 255:
            raise NfsError(NfsStat3.SERVERFAULT, f"kernel handle type {htype} not encodable")
        body = bytes((FH_VERSION, _KIND_KERNEL)) + self.export_id + bytes((htype, len(hb))) + hb
        if parent is not None:
            ptype, pb = parent
            ext = bytes((ptype, len(pb))) + pb
            if 0 <= ptype <= 255 and len(body) + len(ext) + FH_MAC_LEN <= NFS3_FHSIZE:
                body = bytes((FH_VERSION, _KIND_KERNEL_PARENT)) + body[2:] + ext
        return self._seal(body)

    def _pack_inode(self, ino: int, gen: int, pino: int) -> bytes:
        """Inode-mode layout (38 bytes):
            [0] version 0x01  [1] kind 0x03  [2:6] export id
            [6:14] st_ino u64  [14:18] generation u32 (0 = unknown)
            [18:26] parent st_ino u64 (a search hint)  [26:38] MAC."""
        body = (bytes((FH_VERSION, _KIND_INODE)) + self.export_id
                + struct.pack(">QIQ", ino, gen & _U32, pino))
        return self._seal(body)

    def _parse(self, fh) -> tuple:
        """-> ("k", (htype, hb), parent-or-None) | ("i", ino, gen, pino); BADHANDLE/STALE."""
        if not isinstance(fh, bytes):
            try:
                fh = bytes(fh)
            except TypeError:
                raise NfsError(NfsStat3.BADHANDLE, "not bytes") from None
        n = len(fh)
        if n < _MIN_FH or n > NFS3_FHSIZE or fh[0] != FH_VERSION:
            raise NfsError(NfsStat3.BADHANDLE, "bad length or version")
        body, mac = fh[:-FH_MAC_LEN], fh[-FH_MAC_LEN:]
        if not hmac.compare_digest(mac, self._mac(body)):
            raise NfsError(NfsStat3.BADHANDLE, "bad MAC")
        kind = body[1]
        if body[2:6] != self.export_id:
            raise NfsError(NfsStat3.STALE, "handle of another export")
        if kind in (_KIND_KERNEL, _KIND_KERNEL_PARENT):
            if self.mode != "kernel":
                raise NfsError(NfsStat3.STALE, "kernel handle but export in inode mode")
            htype, hn = body[6], body[7]
            end = 8 + hn
            hb = body[8:end]
            parent = None
            pn = 0
            if kind == _KIND_KERNEL_PARENT:
                if len(body) < end + 2:
                    raise NfsError(NfsStat3.BADHANDLE, "truncated parent")
                ptype, pn = body[end], body[end + 1]
                pb = body[end + 2:end + 2 + pn]
                end += 2 + pn
                parent = (ptype, pb)
            if len(hb) != hn or end != len(body) or (parent is not None and len(parent[1]) != pn):
                raise NfsError(NfsStat3.BADHANDLE, "inconsistent lengths")
            return ("k", (htype, hb), parent)
        if kind == _KIND_INODE:
            if len(body) != _HDR + 20:
                raise NfsError(NfsStat3.BADHANDLE, "inconsistent lengths")
            if self.mode != "inode":
                raise NfsError(NfsStat3.STALE, "inode handle but export in kernel mode")
            ino, gen, pino = struct.unpack_from(">QIQ", body, _HDR)
            return ("i", ino, gen, pino)
        raise NfsError(NfsStat3.BADHANDLE, "unknown kind")

    def _make_fh_for(self, fd: int, st: os.stat_result, parent_fh_info, comps) -> bytes:
        """Handle for the object behind O_PATH ``fd``.  ``parent_fh_info``: the
        parsed handle of its directory (or None)."""
        if self.mode == "kernel":
            htype, hb, mnt = _kernel_handle(fd)
            if mnt != self._mount_id:
                raise NfsError(NfsStat3.ACCES, "object on another mount")
            parent = None
            if not stat.S_ISDIR(st.st_mode) and parent_fh_info is not None and parent_fh_info[0] == "k":
                parent = parent_fh_info[1]
            return self._pack_kernel(htype, hb, parent)
        pino = 0
        if parent_fh_info is not None and parent_fh_info[0] == "i":
            pino = parent_fh_info[1]
        gen = self._generation(fd, st)
        if comps is not None:
            self._remember_path(st.st_ino, comps)
        return self._pack_inode(st.st_ino, gen, pino)

    def root_handle(self) -> bytes:
        return self._root_fh

    # ------------------------------------------------------------------ opening

    def _open_root(self) -> Obj:
        fd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self._root_fd)
        st = os.fstat(fd)
        if st.st_nlink == 0:                  # the exported directory itself was removed
            os.close(fd)
            raise NfsError(NfsStat3.STALE, "the export was removed")
        return Obj(fd, st, self._root_fh, ())

    def open_handle(self, fh: bytes) -> Obj:
        """Open the object a handle names (O_PATH).  Caller closes the Obj.
        BADHANDLE for malformed/forged handles, STALE if gone or outside."""
        info = self._parse(fh)
        fh = bytes(fh)
        if fh == self._root_fh:
            return self._open_root()
        if info[0] == "k":
            return self._open_kernel(fh, info)
        return self._open_inode(fh, info)

    def _open_kernel(self, fh: bytes, info) -> Obj:
        _, (htype, hb), parent = info
        try:
            fd = _open_kernel_handle(self._root_fd, htype, hb, os.O_PATH | os.O_CLOEXEC)
        except OSError as e:
            if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM):
                raise NfsError(NfsStat3.JUKEBOX, str(e)) from None
            raise NfsError(NfsStat3.STALE, str(e)) from None
        try:
            st = os.fstat(fd)
            if st.st_dev != self._root_id[0] or st.st_nlink == 0:
                raise NfsError(NfsStat3.STALE, "removed or on another device")
            if not self._verified_hit(fh, st):
                if not self._contained(fd, st, parent):
                    raise NfsError(NfsStat3.STALE, "object outside the export")
                self._verified_add(fh, st)
            return Obj(fd, st, fh)
        except BaseException:
            os.close(fd)
            raise

    # --- containment (kernel mode)

    def _verified_hit(self, fh: bytes, st) -> bool:
        now = time.monotonic()
        with self._vlock:
            v = self._verified.get(fh)
            if v is None:
                return False
            if v[2] < now or v[0] != st.st_dev or v[1] != st.st_ino:
                del self._verified[fh]
                return False
            return True

    def _verified_add(self, fh: bytes, st) -> None:
        # Entries stay in insertion order, which is expiry order (a hit does not extend an
        # entry), so expired ones are dropped from the front: the cache holds about
        # verify_ttl seconds of handles, not verified_cache of them (a soak filled 65536).
        now = time.monotonic()
        with self._vlock:
            self._verified.pop(fh, None)
            self._verified[fh] = (st.st_dev, st.st_ino, now + self.verify_ttl)
            v = self._verified
            while v and (len(v) > self._verified_max or next(iter(v.values()))[2] < now):
                v.popitem(last=False)

    def _contained(self, fd: int, st, parent) -> bool:
        if self._root_is_mount_root:
            return True  # open_by_handle_at used our mount; same device checked
        if stat.S_ISDIR(st.st_mode):
            return self._dir_inside(fd, st)
        if self._kernel_path_inside(fd, st):
            return True
        if parent is None:
            return False
        try:
            pfd = _open_kernel_handle(self._root_fd, parent[0], parent[1], os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            pst = os.fstat(pfd)
            if not stat.S_ISDIR(pst.st_mode) or not self._dir_inside(pfd, pst):
                return False
            return self._dir_has_inode(pfd, st)
        finally:
            os.close(pfd)

    def _dir_inside(self, fd: int, st) -> bool:
        now = time.monotonic()
        seen = []
        cur = fd
        try:
            for _ in range(4096):
                ident = (st.st_dev, st.st_ino)
                if ident == self._root_id:
                    break
                with self._dlock:
                    exp = self._inside_dirs.get(ident)
                if exp is not None and exp >= now:
                    break
                seen.append(ident)
                nfd = os.open("..", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=cur)
                if cur != fd:
                    os.close(cur)
                cur = nfd
                pst = os.fstat(cur)
                if (pst.st_dev, pst.st_ino) == ident or pst.st_dev != self._root_id[0]:
                    return False  # reached the top of the fs / left the device
                st = pst
            else:
                return False
        except OSError:
            return False
        finally:
            if cur != fd:
                os.close(cur)
        exp = now + self.verify_ttl
        with self._dlock:
            d = self._inside_dirs
            for ident in seen:
                d.pop(ident, None)
                d[ident] = exp                     # insertion order == expiry order, as above
            while d and (len(d) > self._verified_max or next(iter(d.values())) < now):
                d.popitem(last=False)
        return True

    def _kernel_path_inside(self, fd: int, st) -> bool:
        """Re-resolve the kernel's idea of the fd's path from our root fd."""
        try:
            p = os.readlink(b"/proc/self/fd/%d" % fd)
        except OSError:
            return False
        prefix = self._real_b.rstrip(b"/") + b"/"
        if not p.startswith(prefix):
            return False
        comps = tuple(c for c in p[len(prefix):].split(b"/") if c)
        if not comps or any(c in (b".", b"..") for c in comps):
            return False
        try:
            wfd = self._walk(comps)
        except OSError:
            return False
        try:
            w = os.fstat(wfd)
        finally:
            os.close(wfd)
        return (w.st_dev, w.st_ino) == (st.st_dev, st.st_ino)

    def _dir_has_inode(self, pfd: int, st) -> bool:
        try:
            dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pfd)
        except OSError:
            return False
        try:
            with os.scandir(dfd) as it:
                for e in it:
                    if e.inode() == st.st_ino:
                        try:
                            s = os.stat(e.name, dir_fd=pfd, follow_symlinks=False)
                        except OSError:
                            continue
                        if (s.st_dev, s.st_ino) == (st.st_dev, st.st_ino):
                            return True
        except OSError:
            return False
        finally:
            os.close(dfd)
        return False

    def _walk(self, comps) -> int:
        """O_PATH fd for root/comps[0]/comps[1]..., one component at a time,
        never following a symlink (a symlink in the middle -> ENOTDIR)."""
        cur = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self._root_fd)
        try:
            for c in comps:
                nfd = os.open(c, _O_PATH_FLAGS, dir_fd=cur)
                os.close(cur)
                cur = nfd
        except BaseException:
            os.close(cur)
            raise
        return cur

    # --- inode mode

    def _generation(self, fd: int, st) -> int:
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            return 0
        flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
        if stat.S_ISDIR(st.st_mode):
            flags |= os.O_DIRECTORY
        try:
            rfd = os.open("/proc/self/fd/%d" % fd, flags)
        except OSError:
            return 0
        try:
            buf = fcntl.ioctl(rfd, _FS_IOC_GETVERSION, b"\0" * 8)
            return struct.unpack_from("=I", buf, 0)[0]
        except OSError:
            return 0
        finally:
            os.close(rfd)

    def _remember_path(self, ino: int, comps: tuple) -> None:
        with self._plock:
            self._paths[ino] = comps
            self._paths.move_to_end(ino)
            while len(self._paths) > self._paths_max:
                self._paths.popitem(last=False)

    def _try_comps(self, comps, ino: int, gen: int):
        try:
            fd = self._walk(comps)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if st.st_ino == ino and st.st_dev == self._root_id[0]:
                if gen == 0 or self._generation(fd, st) in (0, gen):
                    return fd, st
        except OSError:
            pass
        os.close(fd)
        return None

    def _open_inode(self, fh: bytes, info) -> Obj:
        _, ino, gen, pino = info
        if ino == self._root_id[1]:
            r = self._try_comps((), ino, gen)
            if r:
                return Obj(r[0], r[1], fh, ())
            raise NfsError(NfsStat3.STALE)
        with self._plock:
            comps = self._paths.get(ino)
        if comps is not None:
            r = self._try_comps(comps, ino, gen)
            if r:
                return Obj(r[0], r[1], fh, comps)
        # the parent hint
        if pino == self._root_id[1]:
            pcomps = ()
        else:
            with self._plock:
                pcomps = self._paths.get(pino)
        if pcomps is not None:
            name = self._find_in_dir(pcomps, ino)
            if name is not None:
                comps = pcomps + (name,)
                r = self._try_comps(comps, ino, gen)
                if r:
                    self._remember_path(ino, comps)
                    return Obj(r[0], r[1], fh, comps)
        # bounded search of the tree
        for comps in self._search(ino):
            r = self._try_comps(comps, ino, gen)
            if r:
                self._remember_path(ino, comps)
                return Obj(r[0], r[1], fh, comps)
        raise NfsError(NfsStat3.STALE, "object not found in the export")

    def _find_in_dir(self, comps, ino: int) -> bytes | None:
        try:
            pfd = self._walk(comps)
        except OSError:
            return None
        try:
            dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pfd)
        except OSError:
            os.close(pfd)
            return None
        try:
            with os.scandir(dfd) as it:
                for e in it:
                    if e.inode() == ino:
                        return os.fsencode(e.name)
        except OSError:
            return None
        finally:
            os.close(dfd)
            os.close(pfd)
        return None

    def _search(self, ino: int):
        """Breadth-first search of the export for ``ino`` (at most
        ``search_limit`` entries), yielding candidate component tuples and
        remembering directory paths on the way."""
        budget = self.search_limit
        queue = [()]
        qi = 0
        while qi < len(queue) and budget > 0:
            comps = queue[qi]
            qi += 1
            try:
                pfd = self._walk(comps)
            except OSError:
                continue
            try:
                dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pfd)
            except OSError:
                os.close(pfd)
                continue
            found = []
            try:
                with os.scandir(dfd) as it:
                    for e in it:
                        budget -= 1
                        name = os.fsencode(e.name)
                        if e.inode() == ino:
                            found.append(comps + (name,))
                        try:
                            isdir = e.is_dir(follow_symlinks=False)
                        except OSError:
                            isdir = False
                        if isdir:
                            queue.append(comps + (name,))
                            self._remember_path(e.inode(), comps + (name,))
                        if budget <= 0:
                            break
            except OSError:
                pass
            finally:
                os.close(dfd)
                os.close(pfd)
            yield from found

    # ------------------------------------------------------------------ lookup

    def _child(self, d: Obj, dinfo, name: bytes) -> tuple[bytes, os.stat_result, int, tuple | None]:
        """Open ``name`` in the open directory ``d``: -> (fh, st, fd, comps).
        Caller closes fd."""
        if name == b".":
            fd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=d.fd)
            return d.fh, os.fstat(fd), fd, d.comps
        if name == b"..":
            if d.fh == self._root_fh or (d.st.st_dev, d.st.st_ino) == self._root_id:
                r = self._open_root()
                return r.fh, r.st, _detach(r), ()
            if self.mode == "inode":
                comps = d.comps[:-1]
                fd = self._walk(comps)
            else:
                comps = None
                fd = os.open("..", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=d.fd)
            try:
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) == self._root_id:
                    return self._root_fh, st, fd, ()
                fh = self._make_fh_for(fd, st, None, comps)
                return fh, st, fd, comps
            except BaseException:
                os.close(fd)
                raise
        fd = os.open(name, _O_PATH_FLAGS, dir_fd=d.fd)
        try:
            st = os.fstat(fd)
            if st.st_dev != self._root_id[0]:
                raise NfsError(NfsStat3.ACCES, "mount point: other file systems are not exported")
            comps = d.comps + (name,) if d.comps is not None else None
            if (st.st_dev, st.st_ino) == self._root_id:
                return self._root_fh, st, fd, ()
            fh = self._make_fh_for(fd, st, dinfo, comps)
            return fh, st, fd, comps
        except BaseException:
            os.close(fd)
            raise

    def lookup(self, dir_fh: bytes, name: bytes | str) -> tuple[bytes, os.stat_result]:
        """LOOKUP: (handle, lstat) of ``name`` in the directory.  Symlinks are
        not followed; ``..`` at the root is the root."""
        with self.lookup_obj(dir_fh, name) as o:
            return o.fh, o.st

    def lookup_obj(self, dir_fh: bytes, name: bytes | str) -> Obj:
        """Like :meth:`lookup` but returns the open :class:`Obj` (caller closes)."""
        name = check_name(name)
        dinfo = self._parse(dir_fh)
        with self.open_handle(dir_fh) as d:
            if not d.is_dir:
                raise NfsError(NfsStat3.NOTDIR)
            try:
                fh, st, fd, comps = self._child(d, dinfo, name)
            except OSError as e:
                raise NfsError.from_oserror(e) from None
        self._verified_add(fh, st)
        return Obj(fd, st, fh, comps)

    def getattr(self, fh: bytes) -> os.stat_result:
        with self.open_handle(fh) as o:
            return o.st

    def fattr3(self, st: os.stat_result) -> tuple:
        return fattr3_from_stat(st, self.fsid)

    def readlink(self, fh: bytes) -> bytes:
        with self.open_handle(fh) as o:
            if not stat.S_ISLNK(o.st.st_mode):
                raise NfsError(NfsStat3.INVAL, "not a symlink")
            try:
                return os.readlink(b"", dir_fd=o.fd)
            except OSError as e:
                raise NfsError.from_oserror(e) from None

    def handle_for_path(self, relpath: str | bytes) -> bytes:
        """Handle of ``relpath`` below the root ("" or "/" = root), resolved
        component by component; symlinks on the way -> ACCES."""
        comps = _split_rel(relpath)
        fh = self._root_fh
        for c in comps:
            with self.lookup_obj(fh, c) as o:
                if stat.S_ISLNK(o.st.st_mode):
                    raise NfsError(NfsStat3.ACCES, "symlink in path")
                fh = o.fh
        return fh

    def mount_path_to_handle(self, dirpath: str | bytes) -> bytes:
        """MNT: ``dirpath`` is the absolute path the client sent; it must be the
        export (as configured or its realpath) or a directory below it, with no
        symlink on the way.  Raises NfsError with a status that is also a valid
        mountstat3: ACCES (not under the export, "..", a symlink), NOENT,
        NOTDIR, NAMETOOLONG, INVAL (relative path)."""
        p = dirpath if isinstance(dirpath, bytes) else os.fsencode(dirpath)
        if not p.startswith(b"/"):
            raise NfsError(NfsStat3.INVAL, "relative mount path")
        comps = [c for c in p.split(b"/") if c and c != b"."]
        if b".." in comps:
            raise NfsError(NfsStat3.ACCES, "'..' in mount path")
        rest = None
        for base in (self.path, self.real):
            bc = [c for c in os.fsencode(base).split(b"/") if c]
            if comps[:len(bc)] == bc:
                rest = comps[len(bc):]
                break
        if rest is None:
            raise NfsError(NfsStat3.ACCES, "not below the export")
        fh = self._root_fh
        for c in rest:
            if len(c) > NFS3_MAXNAMLEN:
                raise NfsError(NfsStat3.NAMETOOLONG)
            with self.lookup_obj(fh, c) as o:
                if stat.S_ISLNK(o.st.st_mode):
                    raise NfsError(NfsStat3.ACCES, "symlink in mount path")
                if not o.is_dir:
                    raise NfsError(NfsStat3.NOTDIR)
                fh = o.fh
        return fh

    # ------------------------------------------------------------------ I/O

    def reopen(self, obj: Obj, flags: int) -> int:
        """A real fd (caller closes) for an Obj, through /proc/self/fd: for
        SETATTR/COMMIT and the like.  Refuses symlinks (INVAL)."""
        if stat.S_ISLNK(obj.st.st_mode):
            raise NfsError(NfsStat3.INVAL, "symlink")
        try:
            return os.open("/proc/self/fd/%d" % obj.fd, flags | os.O_CLOEXEC)
        except OSError as e:
            raise NfsError.from_oserror(e) from None

    def open_file(self, fh: bytes, write: bool = False) -> FileLease:
        """A lease on a cached fd of a regular file (O_RDONLY, or O_RDWR when
        ``write``).  ISDIR for directories, INVAL for other types, ROFS for a
        write on a read-only export, STALE if the file was removed."""
        fh = bytes(fh)
        if write and self.read_only:
            raise NfsError(NfsStat3.ROFS)
        now = time.monotonic()
        with self._flock:
            of = self._files.get(fh)
            if of is not None and of.expires >= now and (of.writable or not write):
                of.refs += 1
                self._files.move_to_end(fh)
            else:
                of = None
        if of is not None:
            try:
                st = os.fstat(of.fd)
            except OSError:
                self._unref(of)
                raise
            if st.st_nlink == 0:
                self._drop_file(fh, of)
                self._unref(of)
                raise NfsError(NfsStat3.STALE, "file removed")
            return FileLease(self, of, fh, st)

        with self.open_handle(fh) as o:
            if stat.S_ISDIR(o.st.st_mode):
                raise NfsError(NfsStat3.ISDIR)
            if not stat.S_ISREG(o.st.st_mode):
                raise NfsError(NfsStat3.INVAL, "not a regular file")
            fd = self.reopen(o, os.O_RDWR if write else os.O_RDONLY)
        try:
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        new = _OpenFile(fd, write, now + self.verify_ttl, st.st_ino)
        new.refs = 2  # the cache + this lease
        evicted = []
        with self._flock:
            old = self._files.get(fh)
            if old is not None:
                del self._files[fh]
                evicted.append(old)
            self._files[fh] = new
            while len(self._files) > self._files_max:
                evicted.append(self._files.popitem(last=False)[1])
        for e in evicted:
            self._unref(e)
        return FileLease(self, new, fh, st)

    def read(self, fh: bytes) -> FileLease:
        """READ: a lease whose ``.fd`` suits os.preadv; release it after use."""
        return self.open_file(fh, write=False)

    def write_lease(self, fh: bytes) -> FileLease:
        """WRITE: a lease on an O_RDWR fd for os.pwritev; release it after use."""
        return self.open_file(fh, write=True)

    def _drop_file(self, fh: bytes, of: _OpenFile) -> None:
        with self._flock:
            if self._files.get(fh) is of:
                del self._files[fh]
            else:
                return
        self._unref(of)

    def _unref(self, of: _OpenFile) -> None:
        with self._flock:
            of.refs -= 1
            fd = of.fd if of.refs == 0 else -1
            if fd >= 0:
                of.fd = -1
        if fd >= 0:
            os.close(fd)

    def forget(self, fh: bytes) -> None:
        """Drop every cache entry for a handle (after REMOVE/RENAME/RMDIR when
        the caller knows the victim's handle).  Never required for safety."""
        fh = bytes(fh)
        with self._vlock:
            self._verified.pop(fh, None)
        with self._flock:
            of = self._files.pop(fh, None)
        if of is not None:
            self._unref(of)

    def open_file_count(self) -> int:
        with self._flock:
            return len(self._files)

    # ------------------------------------------------------------------ readdir

    def _name_cookie(self, name: bytes) -> int:
        h = hashlib.blake2b(name, key=self._name_key, digest_size=8).digest()
        return int.from_bytes(h, "big") | _COOKIE_HIGH

    def cookieverf(self, st: os.stat_result) -> bytes:
        return hashlib.blake2s(struct.pack(">Q", st.st_ino), key=self._verf_key,
                               digest_size=NFS3_COOKIEVERFSIZE).digest()

    def _snapshot(self, d: Obj, fresh: bool) -> list:
        """Sorted [(cookie, name, d_ino)] of the directory."""
        key = (d.st.st_dev, d.st.st_ino)
        stamp = (d.st.st_mtime_ns, d.st.st_ctime_ns)
        now = time.monotonic()
        if not fresh:
            with self._slock:
                s = self._snaps.get(key)
                if s is not None and s[0] == stamp and s[1] >= now:
                    self._snaps.move_to_end(key)
                    return s[2]
        dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=d.fd)
        try:
            with os.scandir(dfd) as it:
                ents = [(self._name_cookie(n), n, e.inode())
                        for e in it for n in (os.fsencode(e.name),)]
        finally:
            os.close(dfd)
        ents.sort()
        with self._slock:
            self._snaps[key] = (stamp, now + self.dir_snapshot_ttl, ents)
            self._snaps.move_to_end(key)
            while len(self._snaps) > self._snaps_max:
                self._snaps.popitem(last=False)
        return ents

    def readdir(self, dir_fh: bytes, cookie: int, cookieverf: bytes, count: int, *,
                plus: bool = False, maxcount: int | None = None
                ) -> tuple[list[DirEntry], bool, bytes]:
        """READDIR / READDIRPLUS.  -> (entries, eof, cookieverf).

        READDIR: ``count`` bounds the whole reply (XDR bytes).
        READDIRPLUS: ``plus=True``, ``count`` is dircount (fileid+name+cookie
        bytes) and ``maxcount`` bounds the whole reply; entries carry stat and
        handle.  "." and ".." are listed first (cookies 1, 2).
        TOOSMALL if not even one entry fits; BAD_COOKIE as in the module doc."""
        dinfo = self._parse(dir_fh)
        with self.open_handle(dir_fh) as d:
            if not d.is_dir:
                raise NfsError(NfsStat3.NOTDIR)
            verf = self.cookieverf(d.st)
            cookie = int(cookie)
            cookieverf = bytes(cookieverf)
            if cookie != 0:
                if cookieverf != verf and cookieverf != b"\0" * NFS3_COOKIEVERFSIZE:
                    raise NfsError(NfsStat3.BAD_COOKIE, "verifier of another directory")
                if cookie not in (_COOKIE_DOT, _COOKIE_DOTDOT) and not (cookie & _COOKIE_HIGH):
                    raise NfsError(NfsStat3.BAD_COOKIE, "not a cookie of ours")
            try:
                snap = self._snapshot(d, fresh=(cookie == 0))
            except OSError as e:
                raise NfsError.from_oserror(e) from None

            limit = maxcount if (plus and maxcount is not None) else count
            total = _RD_BASE
            dirbytes = 0
            out: list[DirEntry] = []

            def fits(name: bytes, fh_len: int) -> bool:
                nonlocal total, dirbytes
                e = 4 + 8 + 4 + _pad4(len(name)) + 8
                dsz = 8 + 4 + _pad4(len(name)) + 8
                if plus:
                    e += 4 + _FATTR_SZ + 4 + 4 + _pad4(fh_len)
                    if dirbytes + dsz > count:
                        return False
                if total + e > limit:
                    return False
                total += e
                dirbytes += dsz
                return True

            # "." and ".."
            dots = []
            if cookie < _COOKIE_DOT:
                dots.append((b".", _COOKIE_DOT))
            if cookie < _COOKIE_DOTDOT:
                dots.append((b"..", _COOKIE_DOTDOT))
            for name, ck in dots:
                if plus:
                    try:
                        fh, st, fd, _ = self._child(d, dinfo, name)
                        os.close(fd)
                    except (OSError, NfsError):
                        continue
                    if not fits(name, len(fh)):
                        return self._page_end(out, False, verf)
                    out.append(DirEntry(st.st_ino, name, ck, st, fh))
                else:
                    if name == b".":
                        fileid = d.st.st_ino
                    elif (d.st.st_dev, d.st.st_ino) == self._root_id:
                        fileid = d.st.st_ino
                    else:
                        try:
                            fileid = os.stat(b"..", dir_fd=d.fd, follow_symlinks=False).st_ino
                        except OSError:
                            continue
                    if not fits(name, 0):
                        return self._page_end(out, False, verf)
                    out.append(DirEntry(fileid, name, ck, None, None))

            start = 0
            if cookie > _COOKIE_DOTDOT:
                # first entry with cookie > the client's
                lo, hi = 0, len(snap)
                while lo < hi:
                    mid = (lo + hi) // 2
                    if snap[mid][0] <= cookie:
                        lo = mid + 1
                    else:
                        hi = mid
                start = lo
            for i in range(start, len(snap)):
                ck, name, dino = snap[i]
                if plus:
                    try:
                        fh, st, fd, _ = self._child(d, dinfo, name)
                        os.close(fd)
                    except FileNotFoundError:
                        continue  # removed since the listing
                    except NfsError:
                        st = None
                        fh = None
                        try:
                            st = os.stat(name, dir_fd=d.fd, follow_symlinks=False)
                        except OSError:
                            continue
                    except OSError:
                        continue
                    if not fits(name, len(fh) if fh else 0):
                        return self._page_end(out, False, verf)
                    if fh is not None:
                        self._verified_add(fh, st)
                    out.append(DirEntry(st.st_ino if st else dino, name, ck, st, fh))
                else:
                    if not fits(name, 0):
                        return self._page_end(out, False, verf)
                    out.append(DirEntry(dino, name, ck, None, None))
            return out, True, verf

    @staticmethod
    def _page_end(out, eof, verf):
        if not out:
            raise NfsError(NfsStat3.TOOSMALL, "count too small for one entry")
        return out, eof, verf

    # ------------------------------------------------------------------ fs info

    def fsstat(self, fh: bytes | None = None) -> FsStat:
        if fh is None:
            v = os.fstatvfs(self._root_fd)
        else:
            with self.open_handle(fh) as o:
                v = os.fstatvfs(o.fd)
        return FsStat(v.f_blocks * v.f_frsize, v.f_bfree * v.f_frsize, v.f_bavail * v.f_frsize,
                      v.f_files, v.f_ffree, v.f_favail, 0)

    def fsinfo(self, fh: bytes | None = None) -> FsInfo:
        if fh is not None:
            self.open_handle(fh).close()
        return self.FSINFO

    def pathconf(self, fh: bytes | None = None) -> PathConf:
        if fh is not None:
            self.open_handle(fh).close()
        try:
            linkmax = os.fpathconf(self._root_fd, "PC_LINK_MAX")
        except (OSError, ValueError):
            linkmax = 65000
        if linkmax is None or linkmax < 0 or linkmax > _U32:
            linkmax = _U32
        try:
            name_max = min(os.fstatvfs(self._root_fd).f_namemax, NFS3_MAXNAMLEN)
        except OSError:
            name_max = NFS3_MAXNAMLEN
        return PathConf(linkmax=linkmax, name_max=name_max, no_trunc=True,
                        chown_restricted=True, case_insensitive=False, case_preserving=True)

    def access(self, fh: bytes, mask: int, uid: int, gids: Iterable[int]) -> int:
        """ACCESS: the subset of ``mask`` granted (see :func:`access_from_stat`)."""
        with self.open_handle(fh) as o:
            return access_from_stat(o.st, mask, uid, gids, self.read_only)


def _is_whole_fs_mount(mount_id: int, path: str) -> bool:
    """True if ``path`` is the mount point of mount ``mount_id`` and that mount
    shows its whole file system (mountinfo root field "/", so not a bind mount
    of a subdirectory).  Then every object open_by_handle_at can reach through
    that mount is below ``path``.  False when unsure."""
    def unescape(f: str) -> str:
        return f.encode().decode("unicode_escape").encode("latin-1").decode("utf-8", "surrogateescape")

    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4 and fields[0] == str(mount_id):
                    return fields[3] == "/" and unescape(fields[4]) == path
    except OSError:
        pass
    return False


def _detach(o: Obj) -> int:
    fd, o.fd = o.fd, -1
    return fd


def _split_rel(relpath) -> list[bytes]:
    p = relpath if isinstance(relpath, bytes) else os.fsencode(relpath)
    comps = [c for c in p.split(b"/") if c and c != b"."]
    if b".." in comps:
        raise NfsError(NfsStat3.ACCES, "'..' in path")
    return comps
