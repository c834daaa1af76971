"""The Export facade: one exported directory, as the NFS and MOUNT programs see it.

Callers pass file handles (bytes) and names (bytes) and get plain Python
values back (Obj, stat results, FileLease, DirEntry lists, FsStat/FsInfo/
PathConf), or an NfsError carrying the nfsstat3 for the reply. Nothing here
knows XDR, RPC or sockets; how many READDIR entries fit a reply is decided
by a budget the caller passes.

File handles name the object, not a path
    *kernel mode* (default when open_by_handle_at works, i.e. root /
    CAP_DAC_READ_SEARCH): the handle carries the kernel's own file handle, so
    it survives renames and server restarts; for non-directories the parent
    directory's kernel handle too when it fits (contain.py's link search).
    *inode mode* (fallback): (st_ino, generation, parent st_ino), found again
    through inodes.py. Every handle is sealed by a keyed MAC (handles.py).
    Wrong length, version byte or MAC -> BADHANDLE; authentic but the object
    is gone or outside the export -> STALE. A kernel handle carries the inode's
    generation, so an inode number reused after a removal is another handle.

No request reaches outside the export
    Every handle is proven inside when it is used (contain.py: a ".." walk
    for directories, a link in a proven directory for the rest, proofs kept
    only while inotify says nothing moved), whatever a local process did since
    it was handed out. Resolution is one component at a time relative to a
    directory fd (O_PATH|O_NOFOLLOW with dir_fd), never by joining strings.
    ".." at the export root is the root; ".." of a proven directory is its
    parent, inside by that proof. Symlinks are never followed for a client:
    LOOKUP returns the link's own handle. Other file systems mounted below the
    export are not exported: LOOKUP of a mount point gives ACCES (knfsd
    without crossmnt shows the covered directory instead; we cannot).

The parts: handles.py (layout, MAC, keys), contain.py (names, the containment
proofs and their watches: watch.py), inodes.py (inode-mode search), files.py (open-file leases),
readdir.py (cookies, listings). Per-user permission checks are the NFS
layer's job; this module runs everything with the server's credentials.

Threads: everything public is thread-safe (each cache has its own lock, held
only for dict bookkeeping). An Obj belongs to its caller; ``close()`` runs
after the workers stop.
"""

from __future__ import annotations

import errno
import os
import stat

from ..proto.nfs3const import (
    FSF3_CANSETTIME, FSF3_HOMOGENEOUS, FSF3_LINK, FSF3_SYMLINK, MAXFILESIZE, NFS3_FHSIZE, NFS3_MAXNAMLEN, NfsStat3,
)
from .contain import O_PATH_FLAGS, Containment, check_name, is_whole_fs_mount, split_rel
from .errors import NfsError
from .files import FileLease, OpenFiles
from .handles import KERNEL, MIN_FH, HandleCodec, kernel_handle, open_kernel_handle
from .inodes import InodeIndex, generation
from .objects import DirEntry, FsInfo, FsStat, Obj, PathConf, detach
from .readdir import COOKIE_DOT, COOKIE_DOTDOT, DirListings, page_end
from .state import StateDirError, default_state_dir, load_or_create_key, record_export

__all__ = ["Export"]

_U32 = 0xFFFFFFFF
_DIR_PATH = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


class Export:
    """One exported directory.  See the module docstring for the theory.

    ``key``: handle MAC key (tests); default: read/created in ``state_dir``
    (default state.default_state_dir), which must not lie inside the export.
    ``handle_mode``: "auto" (kernel if it works, else inode), "kernel", "inode".
    ``fd_ttl``: how long the open-file cache keeps an fd (never a proof: every use is proven);
    ``proof_cache``: objects whose proofs are kept (one inotify watch each).
    """

    FSINFO = FsInfo(
        rtmax=1048576, rtpref=1048576, rtmult=4096,
        wtmax=1048576, wtpref=1048576, wtmult=4096,
        dtpref=65536, maxfilesize=MAXFILESIZE, time_delta=(0, 1),
        properties=FSF3_LINK | FSF3_SYMLINK | FSF3_HOMOGENEOUS | FSF3_CANSETTIME,
    )

    def __init__(self, root: str, *, key: bytes | None = None, read_only: bool = False,
                 state_dir: str | None = None, handle_mode: str = "auto",
                 fd_ttl: float = 2.0, open_file_cache: int = 256,
                 proof_cache: int = 16384, path_cache: int = 65536,
                 dir_snapshot_ttl: float = 1.0, dir_snapshot_cache: int = 64,
                 search_limit: int = 100_000):
        if handle_mode not in ("auto", "kernel", "inode"):
            raise ValueError(f"handle_mode {handle_mode!r}")
        self.path = os.path.abspath(root)
        self.real = os.path.realpath(root)
        self.read_only = read_only
        self.fd_ttl = fd_ttl
        self.on_forget_inode = None      # f(dev, ino), set by the fast path
        self.on_opened = None            # f(fh, dev, ino): a handle proven inside (the fast path's fd cache)
        self._closed = False
        self._root_fd = os.open(self.real, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            st = os.fstat(self._root_fd)
            self.root_st = st
            self._root_id = (st.st_dev, st.st_ino)
            if key is None:
                sd = os.path.realpath(state_dir or default_state_dir(self.real))
                if sd == self.real or sd.startswith(self.real.rstrip("/") + "/"):
                    raise StateDirError(state_dir or sd, f"lies inside the export {self.real}", 2)
                try:
                    key = load_or_create_key(sd)
                    if state_dir is None:
                        record_export(sd, self.real)
                except OSError as e:
                    raise StateDirError(state_dir or sd, "cannot keep the file-handle key there: %s"
                                        % (e.strerror or e)) from e
                except ValueError as e:
                    raise StateDirError(state_dir or sd, str(e)) from e
            real_b = os.fsencode(self.real)
            self.codec = HandleCodec(key, real_b)
            self.fsid = self.codec.fsid
            self.contain = Containment(self._root_fd, self._root_id, real_b, proof_cache)
            self.inodes = InodeIndex(self.contain.walk, self._root_id, path_cache, search_limit)
            self.files = OpenFiles(self.open_handle, self.contain.prove, fd_ttl, open_file_cache,
                                   on_gone=self.forget_inode)
            self.listings = DirListings(self.codec.name_key, self.codec.verf_key, dir_snapshot_ttl,
                                        dir_snapshot_cache)
            self.mode, self._root_kh, self._mount_id = "inode", None, None
            if handle_mode in ("auto", "kernel"):
                try:
                    self._try_kernel_mode()
                except OSError:
                    if handle_mode == "kernel":
                        raise
            self._root_fh = self._make_fh_for(self._root_fd, st, None, ())
        except BaseException:
            if getattr(self, "contain", None) is not None:
                self.contain.close()
            os.close(self._root_fd)
            raise

    def _try_kernel_mode(self) -> None:
        htype, hb, mnt = kernel_handle(self._root_fd)
        if not (0 <= htype <= 255) or MIN_FH + len(hb) > NFS3_FHSIZE:
            raise OSError(errno.EOVERFLOW, "kernel handle does not fit")
        fd = open_kernel_handle(self._root_fd, htype, hb, os.O_PATH | os.O_CLOEXEC)
        try:
            s2 = os.fstat(fd)
        finally:
            os.close(fd)
        if (s2.st_dev, s2.st_ino) != self._root_id:
            raise OSError(errno.ESTALE, "root handle does not round-trip")
        self.mode = "kernel"
        self._root_kh = (htype, hb)
        self._mount_id = mnt
        self.contain.mount_id = mnt
        self.contain.whole_fs = is_whole_fs_mount(mnt, self.real)

    # ------------------------------------------------------------------ life

    def close(self) -> None:
        """Close the root fd and the cached files (leased ones close on release)."""
        if self._closed:
            return
        self._closed = True
        self.files.close()
        self.contain.close()
        os.close(self._root_fd)

    def __enter__(self) -> "Export":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ handles

    def parse(self, fh) -> tuple:
        """The parsed handle (handles.HandleCodec.parse); BADHANDLE / STALE."""
        return self.codec.parse(fh, self.mode)

    def _make_fh_for(self, fd: int, st: os.stat_result, parent_fh_info, comps) -> bytes:
        """Handle for the object behind O_PATH ``fd``.  ``parent_fh_info``: the
        parsed handle of its directory (or None)."""
        if self.mode == "kernel":
            htype, hb, mnt = kernel_handle(fd)
            if mnt != self._mount_id:
                raise NfsError(NfsStat3.ACCES, "object on another mount")
            parent = None
            if not stat.S_ISDIR(st.st_mode) and parent_fh_info is not None and parent_fh_info[0] == KERNEL:
                parent = parent_fh_info[1]
            return self.codec.pack_kernel(htype, hb, parent)
        pino = 0
        if parent_fh_info is not None and parent_fh_info[0] != KERNEL:
            pino = parent_fh_info[1]
        gen = generation(fd, st)
        if comps is not None:
            self.inodes.remember(st.st_ino, comps)
        return self.codec.pack_inode(st.st_ino, gen, pino)

    def root_handle(self) -> bytes:
        return self._root_fh

    @property
    def root_fd(self) -> int:
        """The export root's O_RDONLY|O_DIRECTORY fd (open until close())."""
        return self._root_fd

    @property
    def mount_id(self):
        """The root's mount id in kernel mode (handles of other mounts are refused), else None."""
        return self._mount_id

    # ------------------------------------------------------------------ opening

    def _open_root(self) -> Obj:
        fd = os.open(".", _DIR_PATH, dir_fd=self._root_fd)
        st = os.fstat(fd)
        if st.st_nlink == 0:                  # the exported directory itself was removed
            os.close(fd)
            raise NfsError(NfsStat3.STALE, "the export was removed")
        return Obj(fd, st, self._root_fh, ())

    def open_handle(self, fh: bytes) -> Obj:
        """Open the object a handle names (O_PATH).  Caller closes the Obj.
        BADHANDLE for malformed/forged handles, STALE if gone or outside."""
        info = self.parse(fh)
        fh = bytes(fh)
        if fh == self._root_fh:
            return self._open_root()
        if info[0] == KERNEL:
            return self._open_kernel(fh, info)
        o = self.inodes.open(fh, *info[1:])
        try:
            if not self.contain.prove(o.fd, o.st, None):
                raise NfsError(NfsStat3.STALE, "object outside the export")
        except BaseException:
            o.close()
            raise
        return o

    def _open_kernel(self, fh: bytes, info) -> Obj:
        _, (htype, hb), parent = info
        try:
            fd = open_kernel_handle(self._root_fd, htype, hb, os.O_PATH | os.O_CLOEXEC)
        except OSError as e:
            if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM):
                raise NfsError(NfsStat3.JUKEBOX, str(e)) from None
            raise NfsError(NfsStat3.STALE, str(e)) from None
        try:
            st = os.fstat(fd)
            if st.st_dev != self._root_id[0]:
                raise NfsError(NfsStat3.STALE, "on another device")
            if st.st_nlink == 0:              # removed (locally, or by another server's client):
                self.forget_inode(st.st_dev, st.st_ino)   # let its space go now, not at expiry
                raise NfsError(NfsStat3.STALE, "removed")
            if not self.contain.prove(fd, st, parent):
                raise NfsError(NfsStat3.STALE, "object outside the export")
            if self.on_opened is not None:
                self.on_opened(fh, st.st_dev, st.st_ino)
            return Obj(fd, st, fh, parent=parent)
        except BaseException:
            os.close(fd)
            raise

    # ------------------------------------------------------------------ lookup

    def _child(self, d: Obj, dinfo, name: bytes) -> tuple[bytes, os.stat_result, int, tuple | None]:
        """Open ``name`` in the open directory ``d``: -> (fh, st, fd, comps).
        Caller closes fd."""
        if name == b".":
            fd = os.open(".", _DIR_PATH, dir_fd=d.fd)
            return d.fh, os.fstat(fd), fd, d.comps
        if name == b"..":
            if d.fh == self._root_fh or (d.st.st_dev, d.st.st_ino) == self._root_id:
                r = self._open_root()
                return r.fh, r.st, detach(r), ()
            if self.mode == "inode":
                comps = d.comps[:-1]
                fd = self.contain.walk(comps)
            else:
                comps = None
                fd = os.open("..", _DIR_PATH, dir_fd=d.fd)
            try:
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) == self._root_id:
                    return self._root_fh, st, fd, ()
                fh = self._make_fh_for(fd, st, None, comps)
                return fh, st, fd, comps
            except BaseException:
                os.close(fd)
                raise
        fd = os.open(name, O_PATH_FLAGS, dir_fd=d.fd)
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
        dinfo = self.parse(dir_fh)
        with self.open_handle(dir_fh) as d:
            if not d.is_dir:
                raise NfsError(NfsStat3.NOTDIR)
            try:
                fh, st, fd, comps = self._child(d, dinfo, name)
            except OSError as e:
                raise NfsError.from_oserror(e) from None
        if self.on_opened is not None and self.mode == "kernel":
            self.on_opened(fh, st.st_dev, st.st_ino)
        return Obj(fd, st, fh, comps)

    def getattr(self, fh: bytes) -> os.stat_result:
        with self.open_handle(fh) as o:
            return o.st

    def _resolve(self, comps, *, dirs_only: bool) -> bytes:
        fh = self._root_fh
        for c in comps:
            if len(c) > NFS3_MAXNAMLEN:
                raise NfsError(NfsStat3.NAMETOOLONG)
            with self.lookup_obj(fh, c) as o:
                if stat.S_ISLNK(o.st.st_mode):
                    raise NfsError(NfsStat3.ACCES, "symlink in path")
                if dirs_only and not o.is_dir:
                    raise NfsError(NfsStat3.NOTDIR)
                fh = o.fh
        return fh

    def handle_for_path(self, relpath: str | bytes) -> bytes:
        """Handle of ``relpath`` below the root ("" or "/" = root), resolved
        component by component; symlinks on the way -> ACCES."""
        return self._resolve(split_rel(relpath), dirs_only=False)

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
        for base in (self.path, self.real):
            bc = [c for c in os.fsencode(base).split(b"/") if c]
            if comps[:len(bc)] == bc:
                return self._resolve(comps[len(bc):], dirs_only=True)
        raise NfsError(NfsStat3.ACCES, "not below the export")

    # ------------------------------------------------------------------ I/O

    def open_file(self, fh: bytes, write: bool = False) -> FileLease:
        """A lease on a cached fd of a regular file (O_RDONLY, or O_RDWR when
        ``write``).  ISDIR for directories, INVAL for other types, ROFS for a
        write on a read-only export, STALE if the file was removed."""
        if write and self.read_only:
            raise NfsError(NfsStat3.ROFS)
        return self.files.lease(bytes(fh), write)

    def read(self, fh: bytes) -> FileLease:
        """READ: a lease whose ``.fd`` suits os.preadv; release it after use."""
        return self.open_file(fh, write=False)

    def write_lease(self, fh: bytes) -> FileLease:
        """WRITE: a lease on an O_RDWR fd for os.pwritev; release it after use."""
        return self.open_file(fh, write=True)

    def forget(self, fh: bytes) -> None:
        """Drop every fd cached for a handle (after REMOVE/RENAME/RMDIR when
        the caller knows the victim's handle).  Never required for safety."""
        fh = bytes(fh)
        self.contain.forget(fh)
        self.files.forget(fh)

    def forget_inode(self, dev: int, ino: int) -> None:
        """The object (dev, ino) lost its last link: close the fds held for it (the open-file
        cache, and the fast path's through ``on_forget_inode``) so its space is free at once."""
        self.files.forget_inode(ino)
        if self.on_forget_inode is not None:
            self.on_forget_inode(dev, ino)

    def open_file_count(self) -> int:
        return self.files.count()

    # ------------------------------------------------------------------ readdir

    def cookieverf(self, st: os.stat_result) -> bytes:
        return self.listings.cookieverf(st)

    def readdir(self, dir_fh: bytes, cookie: int, cookieverf: bytes, budget, *, plus: bool = False
                ) -> tuple[list[DirEntry], bool, bytes]:
        """READDIR / READDIRPLUS.  -> (entries, eof, cookieverf).

        ``budget.fits(name, fh_len)`` says whether one more entry fits the
        reply (and accounts for it); READDIRPLUS entries carry stat and handle.
        "." and ".." are listed first (cookies 1, 2). TOOSMALL if not even one
        entry fits; BAD_COOKIE as in readdir.py."""
        fits = budget.fits
        dinfo = self.parse(dir_fh)
        with self.open_handle(dir_fh) as d:
            if not d.is_dir:
                raise NfsError(NfsStat3.NOTDIR)
            verf = self.listings.cookieverf(d.st)
            cookie = int(cookie)
            self.listings.check_cookie(cookie, bytes(cookieverf), verf)
            try:
                snap = self.listings.snapshot(d, fresh=(cookie == 0))
            except OSError as e:
                raise NfsError.from_oserror(e) from None
            out: list[DirEntry] = []
            for name, ck in ((b".", COOKIE_DOT), (b"..", COOKIE_DOTDOT)):
                if cookie >= ck:
                    continue
                if plus:
                    try:
                        fh, st, fd, _ = self._child(d, dinfo, name)
                        os.close(fd)
                    except (OSError, NfsError):
                        continue
                    if not fits(name, len(fh)):
                        return page_end(out, False, verf)
                    out.append(DirEntry(st.st_ino, name, ck, st, fh))
                else:
                    if name == b"." or (d.st.st_dev, d.st.st_ino) == self._root_id:
                        fileid = d.st.st_ino
                    else:
                        try:
                            fileid = os.stat(b"..", dir_fd=d.fd, follow_symlinks=False).st_ino
                        except OSError:
                            continue
                    if not fits(name, 0):
                        return page_end(out, False, verf)
                    out.append(DirEntry(fileid, name, ck, None, None))
            for i in range(DirListings.start_index(snap, cookie), len(snap)):
                ck, name, dino = snap[i]
                if plus:
                    try:
                        fh, st, fd, _ = self._child(d, dinfo, name)
                        os.close(fd)
                    except FileNotFoundError:
                        continue  # removed since the listing
                    except NfsError:
                        fh = None
                        try:
                            st = os.stat(name, dir_fd=d.fd, follow_symlinks=False)
                        except OSError:
                            continue
                    except OSError:
                        continue
                    if not fits(name, len(fh) if fh else 0):
                        return page_end(out, False, verf)
                    if fh is not None and self.on_opened is not None and self.mode == "kernel":
                        self.on_opened(fh, st.st_dev, st.st_ino)
                    out.append(DirEntry(st.st_ino, name, ck, st, fh))
                else:
                    if not fits(name, 0):
                        return page_end(out, False, verf)
                    out.append(DirEntry(dino, name, ck, None, None))
            return out, True, verf

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
