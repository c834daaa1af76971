"""READDIR cookies and directory listings.

Theory
------
cookie 0 = start, 1 = after ".", 2 = after "..", otherwise the entry's cookie
is a 63-bit keyed hash of its name with the top bit set. Entries are returned
in cookie order and a page resumes with the first entry whose cookie is
greater than the client's: entries present throughout a listing appear
exactly once whatever is added or removed between pages, and a cookie stays
meaningful forever (also across restarts). So the cookie verifier need not
change with the directory: it is a keyed hash of the directory's inode
number. BAD_COOKIE only for a cookie that is not of this form, or a non-zero
verifier that is not this directory's (a zero verifier with a non-zero
cookie is accepted, as Linux clients send it after invalidating their cache;
knfsd ignores the verifier altogether). Continuation pages may reuse a
sorted listing at most ``ttl`` seconds old with the same directory
mtime/ctime; a listing from cookie 0 is always fresh.

How many entries fit a reply is not this module's business: the caller
passes a budget (``fits(name, fh_len) -> bool``, from the wire codec), and a
page ends at the first entry that does not fit. TOOSMALL if not even one does.

Threads: the listing cache has its own lock, held only for dict bookkeeping.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import time
from collections import OrderedDict

from ..proto.nfs3const import NFS3_COOKIEVERFSIZE, NfsStat3
from .errors import NfsError
from .objects import DirEntry, Obj

__all__ = ["DirListings", "COOKIE_DOT", "COOKIE_DOTDOT"]

COOKIE_DOT = 1
COOKIE_DOTDOT = 2
_COOKIE_HIGH = 1 << 63
_ZERO_VERF = b"\0" * NFS3_COOKIEVERFSIZE


class DirListings:
    """Cookies, verifiers and the sorted-listing cache of one export."""

    def __init__(self, name_key: bytes, verf_key: bytes, ttl: float, max_dirs: int):
        self._name_key = name_key
        self._verf_key = verf_key
        self.ttl = ttl
        self._lock = threading.Lock()
        self._snaps: OrderedDict[tuple[int, int], tuple] = OrderedDict()
        self._max = max_dirs

    def name_cookie(self, name: bytes) -> int:
        h = hashlib.blake2b(name, key=self._name_key, digest_size=8).digest()
        return int.from_bytes(h, "big") | _COOKIE_HIGH

    def cookieverf(self, st: os.stat_result) -> bytes:
        return hashlib.blake2s(struct.pack(">Q", st.st_ino), key=self._verf_key,
                               digest_size=NFS3_COOKIEVERFSIZE).digest()

    def check_cookie(self, cookie: int, cookieverf: bytes, verf: bytes) -> None:
        """BAD_COOKIE for a verifier of another directory or a cookie not of our form."""
        if cookie != 0:
            if cookieverf != verf and cookieverf != _ZERO_VERF:
                raise NfsError(NfsStat3.BAD_COOKIE, "verifier of another directory")
            if cookie not in (COOKIE_DOT, COOKIE_DOTDOT) and not (cookie & _COOKIE_HIGH):
                raise NfsError(NfsStat3.BAD_COOKIE, "not a cookie of ours")

    def snapshot(self, d: Obj, fresh: bool) -> list:
        """Sorted [(cookie, name, d_ino)] of the directory."""
        key = (d.st.st_dev, d.st.st_ino)
        stamp = (d.st.st_mtime_ns, d.st.st_ctime_ns)
        now = time.monotonic()
        if not fresh:
            with self._lock:
                s = self._snaps.get(key)
                if s is not None and s[0] == stamp and s[1] >= now:
                    self._snaps.move_to_end(key)
                    return s[2]
        dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=d.fd)
        try:
            with os.scandir(dfd) as it:
                ents = [(self.name_cookie(n), n, e.inode())
                        for e in it for n in (os.fsencode(e.name),)]
        finally:
            os.close(dfd)
        ents.sort()
        with self._lock:
            self._snaps[key] = (stamp, now + self.ttl, ents)
            self._snaps.move_to_end(key)
            while len(self._snaps) > self._max:
                self._snaps.popitem(last=False)
        return ents

    @staticmethod
    def start_index(snap: list, cookie: int) -> int:
        """Index of the first entry whose cookie is greater than ``cookie``."""
        if cookie <= COOKIE_DOTDOT:
            return 0
        lo, hi = 0, len(snap)
        while lo < hi:
            mid = (lo + hi) // 2
            if snap[mid][0] <= cookie:
                lo = mid + 1
            else:
                hi = mid
        return lo


def page_end(out: list, eof: bool, verf: bytes):
    """The result of a page that stopped at an entry that did not fit."""
    if not out:
        raise NfsError(NfsStat3.TOOSMALL, "count too small for one entry")
    return out, eof, verf


__all__ += ["page_end", "DirEntry"]
