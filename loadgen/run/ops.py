"""One loadfile operation -> python-libnfs calls, and the status check.

python-libnfs wraps libnfs's POSIX-like sync API, not raw RPCs, so an
operation named after an NFSv3 procedure does not always send exactly that
procedure.  What each one really sends (libnfs 4.0, NFSv3 over one TCP
connection; "LOOKUP3s" = one LOOKUP3 per path component below the export
root, libnfs keeps no name cache across calls):

NFS loadfile (nfs.load, nfs_2.load, nfs_3.load, nfs_lock.load)
  GETATTR3 p        nfs_stat64(p): LOOKUP3s + GETATTR3
  LOOKUP3 p         nfs_lstat64(p): LOOKUP3s + GETATTR3 (no lookup-only call exists)
  PATHCONF3 p       substitute: nfs_stat64(p), LOOKUP3s + GETATTR3 (PATHCONF3 not wrapped)
  FSINFO3           substitute: nfs_stat64("/"), GETATTR3 of the root (FSINFO3 not wrapped;
                    libnfs sends FSINFO3 once, at mount)
  FSSTAT3           nfs_statvfs64("/") via ctypes: FSSTAT3
  ACCESS3 p d g     nfs_access(p, mode): LOOKUP3s + ACCESS3; the loadfile's ACCESS3 bits d are
                    translated to the POSIX mode libnfs takes (READ -> R_OK; MODIFY, EXTEND,
                    DELETE -> W_OK; LOOKUP, EXECUTE -> X_OK) and libnfs asks for those back
  SETATTR3 p        nfs_utimes(p, NULL) via ctypes: LOOKUP3s + SETATTR3 (times = server time)
  CREATE3 p         nfs_creat(p, 0644): LOOKUP3s of the parent + CREATE3 UNCHECKED; the
                    handle is kept in the client's name->handle cache
  MKDIR3 / RMDIR3 / REMOVE3 p   nfs_mkdir / nfs_rmdir / nfs_unlink: LOOKUP3s + the procedure
  RENAME3 a b       nfs_rename(a, b): LOOKUP3s of both parents + RENAME3
  LINK3 new old     nfs_link(old, new): LOOKUP3s + LINK3 with file=old's handle and
                    link.dir=new's parent (RFC 1813 order; dbench's libnfs glue swaps
                    them, see LICENSE-NOTE of the anchors)
  SYMLINK3 link tgt nfs_symlink(tgt, link): LOOKUP3s of link's parent + SYMLINK3
  READLINK3 p       nfs_readlink(p): LOOKUP3s + READLINK3
  READDIRPLUS3 / READDIR3 p  nfs_opendir + nfs_readdir: LOOKUP3s + READDIRPLUS3 until EOF
  READ3 p off n     nfs_pread on a cached handle: READ3 (split at the server's rtmax)
  WRITE3 p off n s  nfs_pwrite on a cached handle: WRITE3 UNSTABLE when s == 0, FILE_SYNC
                    otherwise (handle opened with O_SYNC; libnfs cannot send DATA_SYNC)
  COMMIT3 p         nfs_fsync on the cached handle: COMMIT3
                    (READ3/WRITE3/COMMIT3 on a name not yet cached first open it:
                    LOOKUP3s + ACCESS3, inside that op's latency, like dbench's
                    name->handle cache)
  Deltree p         client-side walk: READDIRPLUS3 per directory, REMOVE3 / RMDIR3 per
                    entry, RMDIR3 of p; a missing p is success
  LOCK4/UNLOCK4/TEST4 p off len   no RPC: python-libnfs wraps no lock call and the
                    test servers run without NLM; a client-local byte-range table
                    answers (0 granted, 0x0000000b when a range this client holds
                    conflicts). Not comparable with dbench's NLM traffic.
  NULL3             no RPC (python-libnfs has no NULL call); counted only

  Expected statuses: ``*`` accepts anything; ``0x...`` is compared with the
  NFS3 status reconstructed from libnfs's negative errno (NOENT, EXIST,
  NOTDIR, ISDIR, NOTEMPTY, ... map back one to one; errors with no NFS3
  equivalent such as timeouts never match).

client.txt (recorded SMB calls), checked the way dbench's fileio backend does
  NTCreateX p opts disp fnum   opts & 1 (directory): nfs_mkdir(p) first, ignoring
                    its result.  nfs_open(p, O_RDWR | O_CREAT for FILE_CREATE |
                    O_CREAT|O_TRUNC for FILE_OVERWRITE(_IF)): LOOKUP3s + ACCESS3
                    (+ CREATE3 / SETATTR3 size 0), then nfs_fstat64: GETATTR3.
                    Checked: failure when NT_STATUS_OK was expected, or success when
                    an error was expected, is a mismatch.
  Close fnum        nfs_close: no RPC
  ReadX fnum off n r   nfs_pread: READ3; a return other than r is a mismatch
  WriteX fnum off n r  nfs_pwrite (zero-filled buffer): WRITE3 UNSTABLE; return != r
                    is a mismatch
  QUERY_PATH_INFORMATION p   dbench's resolve_name: nfs_stat64 (LOOKUP3s + GETATTR3),
                    on failure a READDIRPLUS3 of the parent; not checked (as dbench)
  QUERY_FILE_INFORMATION fnum   nfs_fstat64: GETATTR3
  QUERY_FS_INFORMATION    nfs_statvfs64("/"): FSSTAT3
  SET_FILE_INFORMATION fnum   nfs_fstat64 (GETATTR3) then nfs_utimes(name, atime-10,
                    mtime-12): LOOKUP3s + SETATTR3
  FIND_FIRST p      resolve_name(p); when the name has a wildcard (<>*?"): READDIRPLUS3
                    of the parent (libnfs reads the whole directory)
  Flush fnum        nfs_fsync: COMMIT3
  Rename a b        nfs_rename: checked
  Unlink p          nfs_unlink: REMOVE3, checked
  Mkdir p           nfs_mkdir: MKDIR3, not checked
  Rmdir p           nfs_rmdir: RMDIR3, checked
  Deltree p         as above
  LockX/UnlockX fnum off len   no RPC: client-local lock table (dbench's fcntl on
                    a local file); not checked, as dbench

An unknown SMB handle is a mismatch (dbench exits there).  Every libnfs return
value is checked; results become a status label: ``ok`` (success, or an
unchecked op that succeeded), ``error`` (a failure that was expected, or an
unchecked op that failed), ``unexpected`` (a status mismatch).
"""
from __future__ import annotations

import errno
import os

from .loadfile import LoadfileError, field_error
from .nfsctx import NF3DIR, S_IFDIR
from .statuses import fmt_nfs, nfs3_status, nt_expected_ok, nt_status

__all__ = ["Executor"]

_LOCKED = 11   # status the local lock table answers on conflict

FILE_DIRECTORY_FILE = 0x1
FILE_CREATE, FILE_OVERWRITE, FILE_OVERWRITE_IF = 2, 4, 5
_WILDCARDS = set('<>*?"')


class _Handle:
    __slots__ = ("fh", "path", "is_dir")

    def __init__(self, fh, path, is_dir):
        self.fh, self.path, self.is_dir = fh, path, is_dir


class Executor:
    """Runs operations for one client.  Owns that client's name->handle cache
    (NFS dialect), SMB handle table, variables, last field values, write
    pattern and local lock table.  Not thread-safe; one per client process."""

    def __init__(self, nfs, client_id: int, nclients: int, rng):
        self.nfs = nfs
        self.cid = client_id
        self.nclients = nclients
        self.cname = f"client{client_id}"
        self.rng = rng
        self.vars: dict[str, str] = {}
        self.last: dict[tuple, int] = {}
        self.pattern = b""
        self._wbufs: dict[int, bytearray] = {}
        self._rbuf = bytearray(65536)
        self.fhcache: dict[tuple, object] = {}
        self.handles: dict[int, _Handle] = {}
        self.locks: dict[str, list] = {}
        self.read_bytes = 0
        self.write_bytes = 0
        self.handlers = {
            "NULL3": self._null, "GETATTR3": self._getattr, "LOOKUP3": self._lookup,
            "PATHCONF3": self._getattr, "FSINFO3": self._fsinfo, "FSSTAT3": self._fsstat,
            "ACCESS3": self._access, "SETATTR3": self._setattr, "CREATE3": self._create,
            "MKDIR3": self._mkdir, "RMDIR3": self._rmdir, "REMOVE3": self._remove,
            "RENAME3": self._rename, "LINK3": self._link, "SYMLINK3": self._symlink,
            "READLINK3": self._readlink, "READDIR3": self._readdir, "READDIRPLUS3": self._readdir,
            "READ3": self._read3, "WRITE3": self._write3, "COMMIT3": self._commit3,
            "LOCK4": self._lock4, "UNLOCK4": self._unlock4, "TEST4": self._test4,
            "Deltree": self._deltree,
            "NTCreateX": self._ntcreatex, "Close": self._close, "ReadX": self._readx,
            "WriteX": self._writex, "QUERY_PATH_INFORMATION": self._qpathinfo,
            "QUERY_FILE_INFORMATION": self._qfileinfo, "QUERY_FS_INFORMATION": self._qfsinfo,
            "SET_FILE_INFORMATION": self._sfileinfo, "FIND_FIRST": self._findfirst,
            "Flush": self._flush, "Rename": self._smb_rename, "Unlink": self._smb_unlink,
            "Mkdir": self._smb_mkdir, "Rmdir": self._smb_rmdir,
            "LockX": self._lockx, "UnlockX": self._unlockx,
        }

    # -- helpers ---------------------------------------------------------
    def path(self, raw: str) -> str:
        if raw[0] == "$":
            raw = self.vars.get(raw, raw)
        return raw.replace("client1", self.cname)

    def values(self, op) -> list[int]:
        """The operation's numbers for this call. A random or relative value out of its field's
        bound (loadfile.FIELD_LIMITS) raises LoadfileError naming the line; constants were
        checked when the loadfile was read."""
        out = []
        for i, e in enumerate(op.params):
            if e.kind == "const":
                v = e.value
            else:
                v = e.evaluate(self.rng, self.last.get((op.name, i)), self.cid, self.nclients)
                bad = field_error(op.name, i, v)
                if bad:
                    raise LoadfileError(op.lineno, bad + " (as evaluated)")
            self.last[(op.name, i)] = v
            out.append(v)
        return out

    def set_pattern(self, pattern: bytes) -> None:
        self.pattern = pattern
        self._wbufs.clear()

    def wbuf(self, size: int) -> bytearray:
        b = self._wbufs.get(size)
        if b is None:
            if self.pattern:
                reps = size // len(self.pattern) + 1
                b = bytearray((self.pattern * reps)[:size])
            else:
                b = bytearray(size)
            if len(self._wbufs) > 64:
                self._wbufs.clear()
            self._wbufs[size] = b
        return b

    def rbuf(self, size: int) -> bytearray:
        if len(self._rbuf) < size:
            self._rbuf = bytearray(size)
        return self._rbuf

    def execute(self, op):
        """Run one operation. Returns (label, mismatch message or None)."""
        return self.handlers[op.name](op)

    def _nfs_check(self, op, rc: int, what: str):
        exp = op.status
        if exp == "*":
            return ("ok" if rc >= 0 else "error"), None
        want = int(exp, 16)
        got = nfs3_status(rc)
        if got == want:
            return ("ok" if rc >= 0 else "error"), None
        return "unexpected", f"[{op.lineno}] {op.name} {what} got {fmt_nfs(rc)} - expected {exp}"

    def _nt_check(self, op, rc: int, what: str):
        exp_ok = nt_expected_ok(op.status)
        if (rc >= 0) == exp_ok:
            return ("ok" if rc >= 0 else "error"), None
        return "unexpected", f"[{op.lineno}] {op.name} {what} got {nt_status(rc)} - expected {op.status}"

    @staticmethod
    def _plain(rc: int):
        return ("ok" if rc >= 0 else "error"), None

    def _drop_cached(self, prefix: str) -> None:
        for key in [k for k in self.fhcache if k[0] == prefix or k[0].startswith(prefix + "/")]:
            self.nfs.close(self.fhcache.pop(key))

    def _cached_fh(self, path: str, sync: bool = False):
        key = (path, sync)
        fh = self.fhcache.get(key)
        if fh is not None:
            return 0, fh
        rc, fh = self.nfs.open(path, os.O_RDWR | (os.O_SYNC if sync else 0))
        if rc < 0:
            return rc, None
        self.fhcache[key] = fh
        return 0, fh

    # -- NFS dialect -----------------------------------------------------
    def _null(self, op):
        return "ok", None

    def _getattr(self, op):
        p = self.path(op.paths[0])
        rc, _ = self.nfs.stat(p)
        return self._nfs_check(op, rc, f'"{p}"')

    def _lookup(self, op):
        p = self.path(op.paths[0])
        rc, _ = self.nfs.lstat(p)
        return self._nfs_check(op, rc, f'"{p}"')

    def _fsinfo(self, op):
        rc, _ = self.nfs.stat("/")
        return self._nfs_check(op, rc, '"/"')

    def _fsstat(self, op):
        rc = self.nfs.statvfs("/")
        return self._nfs_check(op, rc, '"/"')

    def _access(self, op):
        p = self.path(op.paths[0])
        desired, _granted = self.values(op)
        mode = (os.R_OK if desired & 0x01 else 0) | (os.W_OK if desired & 0x1C else 0) | \
            (os.X_OK if desired & 0x22 else 0)
        rc = self.nfs.access(p, mode)
        return self._nfs_check(op, rc, f'"{p}"')

    def _setattr(self, op):
        p = self.path(op.paths[0])
        rc = self.nfs.utimes(p, None)
        return self._nfs_check(op, rc, f'"{p}"')

    def _create(self, op):
        p = self.path(op.paths[0])
        rc, fh = self.nfs.creat(p, 0o644)
        if rc >= 0:
            old = self.fhcache.pop((p, False), None)
            if old is not None:
                self.nfs.close(old)
            self.fhcache[(p, False)] = fh
        return self._nfs_check(op, rc, f'"{p}"')

    def _mkdir(self, op):
        p = self.path(op.paths[0])
        return self._nfs_check(op, self.nfs.mkdir(p), f'"{p}"')

    def _rmdir(self, op):
        p = self.path(op.paths[0])
        return self._nfs_check(op, self.nfs.rmdir(p), f'"{p}"')

    def _remove(self, op):
        p = self.path(op.paths[0])
        self._drop_cached(p)
        return self._nfs_check(op, self.nfs.unlink(p), f'"{p}"')

    def _rename(self, op):
        a, b = self.path(op.paths[0]), self.path(op.paths[1])
        self._drop_cached(a)
        self._drop_cached(b)
        return self._nfs_check(op, self.nfs.rename(a, b), f'"{a}" "{b}"')

    def _link(self, op):
        new, old = self.path(op.paths[0]), self.path(op.paths[1])
        return self._nfs_check(op, self.nfs.link(old, new), f'"{new}" "{old}"')

    def _symlink(self, op):
        link, target = self.path(op.paths[0]), self.path(op.paths[1])
        return self._nfs_check(op, self.nfs.symlink(target, link), f'"{link}" "{target}"')

    def _readlink(self, op):
        p = self.path(op.paths[0])
        rc = self.nfs.readlink(p, self.rbuf(4096))
        return self._nfs_check(op, rc, f'"{p}"')

    def _readdir(self, op):
        p = self.path(op.paths[0])
        rc, _ = self.nfs.listdir(p)
        return self._nfs_check(op, rc, f'"{p}"')

    def _read3(self, op):
        p = self.path(op.paths[0])
        off, size = self.values(op)
        rc, fh = self._cached_fh(p)
        if rc >= 0:
            rc = self.nfs.pread(fh, off, size, self.rbuf(size))
            if rc > 0:
                self.read_bytes += rc
        return self._nfs_check(op, rc, f'"{p}" {off} {size}')

    def _write3(self, op):
        p = self.path(op.paths[0])
        off, size, stable = self.values(op)
        rc, fh = self._cached_fh(p, sync=bool(stable))
        if rc >= 0:
            rc = self.nfs.pwrite(fh, off, size, self.wbuf(size))
            if rc > 0:
                self.write_bytes += rc
            if 0 <= rc != size:
                return "unexpected", f'[{op.lineno}] {op.name} "{p}" wrote {rc} of {size} bytes'
        return self._nfs_check(op, rc, f'"{p}" {off} {size}')

    def _commit3(self, op):
        p = self.path(op.paths[0])
        rc, fh = self._cached_fh(p)
        if rc >= 0:
            rc = self.nfs.fsync(fh)
        return self._nfs_check(op, rc, f'"{p}"')

    def _deltree_rc(self, p: str) -> int:
        rc, entries = self.nfs.listdir(p)
        if rc < 0:
            return 0 if rc == -errno.ENOENT else rc
        first_err = 0
        for name, typ in entries:
            if name in (".", ".."):
                continue
            child = p.rstrip("/") + "/" + name
            if typ == NF3DIR:
                r = self._deltree_rc(child)
            else:
                r = self.nfs.unlink(child)
            if r < 0 and not first_err and r != -errno.ENOENT:
                first_err = r
        r = self.nfs.rmdir(p)
        if r < 0 and not first_err and r != -errno.ENOENT:
            first_err = r
        return first_err

    def _deltree(self, op):
        p = self.path(op.paths[0])
        self._drop_cached(p)
        for fnum in [f for f, h in self.handles.items() if h.path == p or h.path.startswith(p + "/")]:
            h = self.handles.pop(fnum)
            if h.fh is not None:
                self.nfs.close(h.fh)
        rc = self._deltree_rc(p)
        return self._plain(rc)

    def _locktable(self, op, mode):
        p = self.path(op.paths[0])
        off, length = self.values(op)
        held = self.locks.setdefault(p, [])
        end = off + (length if length else 1 << 64)
        if mode == "unlock":
            held[:] = [r for r in held if r[1] <= off or r[0] >= end]
            return self._nfs_check(op, 0, f'"{p}"')
        conflict = any(r[0] < end and off < r[1] for r in held)
        if mode == "lock" and not conflict:
            held.append((off, end))
        return self._nfs_check(op, -_LOCKED if conflict else 0, f'"{p}" {off} {length}')

    def _lock4(self, op):
        return self._locktable(op, "lock")

    def _unlock4(self, op):
        return self._locktable(op, "unlock")

    def _test4(self, op):
        return self._locktable(op, "test")

    # -- client.txt (SMB) dialect ---------------------------------------
    def _handle(self, op, fnum):
        h = self.handles.get(fnum)
        if h is None:
            return None, ("unexpected", f"[{op.lineno}] {op.name} handle {fnum} was not found")
        return h, None

    def _ntcreatex(self, op):
        p = self.path(op.paths[0])
        options, disposition, fnum = self.values(op)
        flags = os.O_RDWR
        if disposition == FILE_CREATE:
            flags |= os.O_CREAT
        elif disposition in (FILE_OVERWRITE, FILE_OVERWRITE_IF):
            flags |= os.O_CREAT | os.O_TRUNC
        if options & FILE_DIRECTORY_FILE:
            self.nfs.mkdir(p)            # result ignored, as dbench
            flags = os.O_RDONLY
        rc, fh = self.nfs.open(p, flags)
        is_dir = False
        if rc >= 0:
            src, st = self.nfs.fstat(fh)
            if src < 0:
                self.nfs.close(fh)
                rc = src
            else:
                is_dir = bool(st.nfs_mode & S_IFDIR) and (st.nfs_mode & 0o170000) == S_IFDIR
        label, msg = self._nt_check(op, rc, f'"{p}" handle {fnum}')
        if rc >= 0:
            if label == "unexpected":
                self.nfs.close(fh)
            else:
                old = self.handles.pop(fnum, None)
                if old is not None and old.fh is not None:
                    self.nfs.close(old.fh)
                self.handles[fnum] = _Handle(fh, p, is_dir)
        return label, msg

    def _close(self, op):
        (fnum,) = self.values(op)
        h = self.handles.pop(fnum, None)
        if h is None:
            return "unexpected", f"[{op.lineno}] Close handle {fnum} was not found"
        return self._plain(self.nfs.close(h.fh))

    def _readx(self, op):
        fnum, off, size, ret = self.values(op)
        h, err = self._handle(op, fnum)
        if err:
            return err
        rc = self.nfs.pread(h.fh, off, size, self.rbuf(size))
        if rc > 0:
            self.read_bytes += rc
        if rc != ret:
            got = f"{rc} bytes" if rc >= 0 else nt_status(rc)
            return "unexpected", f"[{op.lineno}] ReadX handle {fnum} ({h.path}) read {got}, expected {ret} bytes"
        return self._plain(rc)

    def _writex(self, op):
        fnum, off, size, ret = self.values(op)
        h, err = self._handle(op, fnum)
        if err:
            return err
        rc = self.nfs.pwrite(h.fh, off, size, self.wbuf(size))
        if rc > 0:
            self.write_bytes += rc
        if rc != ret:
            got = f"{rc} bytes" if rc >= 0 else nt_status(rc)
            return "unexpected", f"[{op.lineno}] WriteX handle {fnum} ({h.path}) wrote {got}, expected {ret} bytes"
        return self._plain(rc)

    def _resolve(self, p: str) -> int:
        rc, _ = self.nfs.stat(p)
        if rc >= 0:
            return rc
        parent = p.rsplit("/", 1)[0] or "/"
        self.nfs.listdir(parent)       # dbench scans the parent case-insensitively
        return rc

    def _qpathinfo(self, op):
        p = self.path(op.paths[0])
        self.values(op)
        return self._plain(self._resolve(p))

    def _qfileinfo(self, op):
        fnum, _level = self.values(op)
        h, err = self._handle(op, fnum)
        if err:
            return err
        rc, _ = self.nfs.fstat(h.fh)
        return self._plain(rc)

    def _qfsinfo(self, op):
        self.values(op)
        return self._plain(self.nfs.statvfs("/"))

    def _sfileinfo(self, op):
        fnum, _level = self.values(op)
        h, err = self._handle(op, fnum)
        if err:
            return err
        rc, st = self.nfs.fstat(h.fh)
        if rc >= 0:
            times = ((st.nfs_atime - 10, 0), (st.nfs_mtime - 12, 0))
            rc = self.nfs.utimes(h.path, times)
        return self._plain(rc)

    def _findfirst(self, op):
        p = self.path(op.paths[0])
        _level, maxcnt, _count = self.values(op)
        rc = self._resolve(p)
        name = p.rsplit("/", 1)[-1]
        if _WILDCARDS.intersection(name):
            parent = p.rsplit("/", 1)[0] or "/"
            rc, _entries = self.nfs.listdir(parent)
        return self._plain(rc)

    def _flush(self, op):
        (fnum,) = self.values(op)
        h, err = self._handle(op, fnum)
        if err:
            return err
        return self._plain(self.nfs.fsync(h.fh))

    def _smb_rename(self, op):
        a, b = self.path(op.paths[0]), self.path(op.paths[1])
        return self._nt_check(op, self.nfs.rename(a, b), f'"{a}" "{b}"')

    def _smb_unlink(self, op):
        p = self.path(op.paths[0])
        self.values(op)
        return self._nt_check(op, self.nfs.unlink(p), f'"{p}"')

    def _smb_mkdir(self, op):
        p = self.path(op.paths[0])
        return self._plain(self.nfs.mkdir(p))

    def _smb_rmdir(self, op):
        p = self.path(op.paths[0])
        return self._nt_check(op, self.nfs.rmdir(p), f'"{p}"')

    def _lockx(self, op):
        fnum, off, size = self.values(op)
        h, err = self._handle(op, fnum)
        if err:
            return err
        self.locks.setdefault(h.path, []).append((off, off + size))
        return "ok", None

    def _unlockx(self, op):
        fnum, off, size = self.values(op)
        h, err = self._handle(op, fnum)
        if err:
            return err
        held = self.locks.get(h.path, [])
        if (off, off + size) in held:
            held.remove((off, off + size))
        return "ok", None

    def close_all(self) -> None:
        for fh in self.fhcache.values():
            self.nfs.close(fh)
        self.fhcache.clear()
        for h in self.handles.values():
            if h.fh is not None:
                self.nfs.close(h.fh)
        self.handles.clear()
