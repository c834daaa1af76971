"""The AUTH_SYS permission model: who the caller is and what mode bits let them do.

The server runs as root and checks the caller's rights itself, from mode
bits, as knfsd does with the caller's fsuid:

* Identity: AUTH_SYS uid/gid/gids (root_squash: uid 0 -> anon_uid, gid 0 ->
  anon_gid, also in gids); AUTH_NONE -> anon. uid 0 (not squashed) passes
  every check (CAP_DAC_OVERRIDE / CAP_FOWNER).
* lookup: x on the directory; readdir(plus): r on the directory;
  create/mkdir/symlink/mknod/remove/rmdir/rename/link: w+x on the directory
  (both directories for rename); sticky directories: only the owner of the
  entry or of the directory (or root) may remove or replace it (PERM);
  moving a directory to another parent needs w on it (to rewrite "..").
* read: r or x on the file; write and truncate: w on the file; the file's
  owner always may (knfsd's NFSD_MAY_OWNER_OVERRIDE: the client already
  checked at open, then maybe fchmod'ed).
* sattr3: chmod and explicit times: owner or root (PERM); both times to the
  server's time: owner or w; chown: root only to another uid; the owner may
  chgrp to a group it is in (PERM otherwise); unchanged uid/gid are ignored.
* ACCESS3: the bits granted from the mode bits (knfsd's table), none of
  MODIFY/EXTEND/DELETE on a read-only export.

Pure functions of stat results and a Who: no I/O, no state, any thread.
"""

from __future__ import annotations

import stat
from typing import Iterable

from ..export import NfsError
from ..proto import nfs3xdr as X
from ..proto.nfs3const import (
    ACCESS3_DELETE, ACCESS3_EXECUTE, ACCESS3_EXTEND, ACCESS3_LOOKUP, ACCESS3_MODIFY, ACCESS3_READ,
    MAXFILESIZE, NfsStat3 as S,
)

__all__ = ["Who", "who", "bits", "need_dir_write", "need_sticky", "may_read_file", "may_write_file",
           "check_sattr", "access_from_stat"]

class Who:
    """The caller as the permission checks see it (after squashing)."""

    __slots__ = ("uid", "gid", "groups")

    def __init__(self, uid, gid, groups):
        self.uid = uid
        self.gid = gid
        self.groups = groups

    def __repr__(self):
        return "Who(uid=%d, gid=%d, groups=%r)" % (self.uid, self.gid, sorted(self.groups))


def who(ctx) -> Who:
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


def bits(st, w: Who) -> int:
    """The rwx bits (0..7) of st's mode that apply to w (owner, group or other)."""
    mode = st.st_mode
    if w.uid == st.st_uid:
        return (mode >> 6) & 7
    if st.st_gid in w.groups:
        return (mode >> 3) & 7
    return mode & 7


def need_dir_bits(d, w: Who, mask: int, why: str) -> None:
    """Every rwx bit of `mask` on directory Obj d for w (root passes); ACCES `why` otherwise."""
    if w.uid != 0 and (bits(d.st, w) & mask) != mask:
        raise NfsError(S.ACCES, why)


def need_dir_write(d, w: Who) -> None:
    """w+x on directory Obj d (create/remove/rename/link entries)."""
    need_dir_bits(d, w, 3, "no write permission on the directory")


def need_sticky(dst, vst, w: Who) -> None:
    """Removing/replacing entry vst of directory dst (stat results)."""
    if (dst.st_mode & stat.S_ISVTX) and w.uid != 0 and w.uid != vst.st_uid and w.uid != dst.st_uid:
        raise NfsError(S.PERM, "sticky directory")


def may_read_file(st, w: Who) -> bool:
    return w.uid == 0 or w.uid == st.st_uid or bool(bits(st, w) & 5)


def may_write_file(st, w: Who) -> bool:
    return w.uid == 0 or w.uid == st.st_uid or bool(bits(st, w) & 2)


def check_sattr(st, sa, w: Who, new: bool):
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
        if not may_write_file(st, w):
            raise NfsError(S.ACCES)
        if size > MAXFILESIZE:
            raise NfsError(S.FBIG)
    if atime is not None or mtime is not None:
        explicit = (atime is not None and atime is not X.SERVER_TIME) or \
                   (mtime is not None and mtime is not X.SERVER_TIME)
        if not owner:
            if explicit:
                raise NfsError(S.PERM, "not the owner")
            if not may_write_file(st, w):
                raise NfsError(S.ACCES)
    return X.Sattr3(mode, uid, gid, size, atime, mtime)


def access_from_stat(st, mask: int, uid: int, gids: Iterable[int], read_only: bool = False) -> int:
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
            b = (mode >> 6) & 7
        elif st.st_gid in set(gids):
            b = (mode >> 3) & 7
        else:
            b = mode & 7
        r, w, x = bool(b & 4), bool(b & 2), bool(b & 1)
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
