"""The MOUNT v3 program (100005, version 3; RFC 1813 appendix I).

Owns: MNT/DUMP/UMNT/UMNTALL/EXPORT handlers, their XDR, and MountRegistry,
the list of active mounts that DUMP reports.

Theory and invariants
---------------------
* MNT accepts the export's absolute path (as configured or its realpath)
  and any directory below it, as knfsd does (nfs-cat / nfs-cp mount a
  file's parent directory): Export.mount_path_to_handle resolves it one
  component at a time, symlinks refused.  Its NfsError statuses are valid
  mountstat3 values; anything else becomes MNT3ERR_SERVERFAULT.  A path of
  more than MNTPATHLEN (1024) bytes is NAMETOOLONG (decoded up to 4096 so
  that this is an answer, not GARBAGE_ARGS).
* The reply offers AUTH_SYS then AUTH_NONE (the flavors rpcmsg accepts).
* The registry is advisory (as rmtab is): MNT adds (client host, path),
  UMNT removes it, UMNTALL removes every entry of the host.  It is bounded
  (oldest entries dropped) so a client cannot grow it without limit.  The
  host is the client's address as the server saw it (ctx.addr[0]).
* EXPORT lists the one export with an empty groups list (everyone).
* Handlers never raise for client errors; MNT answers a MntRes.
* Threads: MountRegistry is locked; everything else is stateless.

The request context (provided by the server): ctx.export, ctx.addr,
ctx.config.mount_clients (a MountRegistry) unless make_program was given
a registry.
"""

import threading
from collections import OrderedDict
from typing import NamedTuple

from ..export import NfsError, nfsstat_from_oserror
from ..proto.nfs3const import (
    MNTNAMLEN, MNTPATHLEN, MOUNT_PROGRAM, MOUNT_V3, MOUNTSTAT3_NAMES, NFS3_FHSIZE,
    MountProc3 as P, MountStat3,
)
from ..proto.rpcmsg import AUTH_NONE, AUTH_SYS
from ..svc.dispatch import ProcEntry, Program, decode_void, encode_void, null_entry

__all__ = ["MountRegistry", "MntRes", "make_program", "make_table", "AUTH_FLAVORS",
           "DIRPATH_DECODE_MAX"]

AUTH_FLAVORS = (AUTH_SYS, AUTH_NONE)
DIRPATH_DECODE_MAX = 4096
_VALID = frozenset(s.value for s in MountStat3)


class MountRegistry:
    """Thread-safe record of active mounts: (hostname, dirpath) pairs, oldest first."""

    def __init__(self, max_entries=4096):
        self._lock = threading.Lock()
        self._d = OrderedDict()
        self._max = max_entries

    @staticmethod
    def _key(host, path):
        if isinstance(host, str):
            host = host.encode("utf-8", "surrogateescape")
        if isinstance(path, str):
            path = path.encode("utf-8", "surrogateescape")
        return bytes(host[:MNTNAMLEN]), bytes(path[:MNTPATHLEN])

    def add(self, host, path):
        k = self._key(host, path)
        with self._lock:
            self._d[k] = True
            self._d.move_to_end(k)
            while len(self._d) > self._max:
                self._d.popitem(last=False)

    def remove(self, host, path):
        k = self._key(host, path)
        with self._lock:
            self._d.pop(k, None)

    def remove_all(self, host):
        h = self._key(host, b"")[0]
        with self._lock:
            for k in [k for k in self._d if k[0] == h]:
                del self._d[k]

    def entries(self):
        """[(hostname bytes, dirpath bytes)], oldest first."""
        with self._lock:
            return list(self._d)

    def __len__(self):
        with self._lock:
            return len(self._d)

    def __contains__(self, item):
        k = self._key(*item)
        with self._lock:
            return k in self._d


# --------------------------------------------------------------------------
# XDR

def decode_dirpath(u):
    return u.unpack_opaque(DIRPATH_DECODE_MAX)


class MntRes(NamedTuple):
    """mountres3: status (mountstat3); the handle and auth flavors when OK."""
    status: int
    fh: bytes | None = None
    flavors: tuple = ()


def encode_mnt(p, r):
    p.pack_uint(r.status)
    if r.status == 0:
        p.pack_opaque(r.fh, NFS3_FHSIZE)
        p.pack_array(r.flavors, p.pack_int)


#: the largest mountres3: status, fhandle3, the flavors array
MNT_RES_MAX = 4 + 4 + NFS3_FHSIZE + 4 + 4 * 2


def encode_dump(p, entries):
    """mountlist: linked list of (ml_hostname name, ml_directory dirpath)."""
    for host, path in entries:
        p.pack_uint(1)
        p.pack_opaque(host, MNTNAMLEN)
        p.pack_opaque(path, MNTPATHLEN)
    p.pack_uint(0)


def encode_export(p, exports):
    """exports: linked list of (ex_dir dirpath, ex_groups list of names)."""
    for path, groups in exports:
        p.pack_uint(1)
        p.pack_opaque(path, MNTPATHLEN)
        for g in groups:
            p.pack_uint(1)
            p.pack_opaque(g, MNTNAMLEN)
        p.pack_uint(0)
    p.pack_uint(0)


def mnt_status(r):
    return MOUNTSTAT3_NAMES.get(r.status, "unknown")


# --------------------------------------------------------------------------
# handlers

def _host(ctx):
    addr = getattr(ctx, "addr", None)
    if not addr:
        return b"unknown"
    return str(addr[0]).encode("utf-8", "surrogateescape")


def make_table(registry=None):
    """{proc: ProcEntry} for MOUNT v3.  registry: a MountRegistry, else
    ctx.config.mount_clients is used at each call."""

    def reg(ctx):
        return registry if registry is not None else ctx.config.mount_clients

    def mnt(ctx, path):
        if len(path) > MNTPATHLEN:
            return MntRes(MountStat3.NAMETOOLONG.value)
        try:
            fh = ctx.export.mount_path_to_handle(path)
        except NfsError as e:
            return MntRes(e.status if e.status in _VALID else MountStat3.SERVERFAULT.value)
        except OSError as e:
            st = nfsstat_from_oserror(e)
            return MntRes(st if st in _VALID else MountStat3.SERVERFAULT.value)
        reg(ctx).add(_host(ctx), path)
        return MntRes(0, fh, AUTH_FLAVORS)

    def dump(ctx, args):
        return reg(ctx).entries()

    def umnt(ctx, path):
        reg(ctx).remove(_host(ctx), path)

    def umntall(ctx, args):
        reg(ctx).remove_all(_host(ctx))

    def export(ctx, args):
        return [(ctx.export.path.encode("utf-8", "surrogateescape")[:MNTPATHLEN], ())]

    return {
        P.NULL.value: null_entry("null"),
        P.MNT.value: ProcEntry("mnt", decode_dirpath, mnt, encode_mnt, True, mnt_status,
                               reply_max=MNT_RES_MAX),
        P.DUMP.value: ProcEntry("dump", decode_void, dump, encode_dump),
        P.UMNT.value: ProcEntry("umnt", decode_dirpath, umnt, encode_void, reply_max=0),
        P.UMNTALL.value: ProcEntry("umntall", decode_void, umntall, encode_void, reply_max=0),
        P.EXPORT.value: ProcEntry("export", decode_void, export, encode_export),
    }


def make_program(registry=None):
    """dispatch.Program for MOUNT (100005) version 3."""
    return Program(MOUNT_PROGRAM, "mount", {MOUNT_V3: make_table(registry)})
