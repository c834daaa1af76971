"""Workloads other than a user-supplied loadfile: the shipped default loadfile
and the rw256k profile.  Both are :class:`loadfile.Program` values, so the
client runs them through the same interpreter and accounting.

``rw256k``: each client owns ``/clients/client<N>/rw256k/f0..f<k-1>``, laid
out (created and written in full) by :func:`rw256k_setup` before the clock
starts; one pass then READs every file sequentially in 256 KiB calls, then
WRITEs every file sequentially in 256 KiB calls followed by one COMMIT3 per
file.  All NFSv3, one RPC per call when the server's rtmax/wtmax >= 256 KiB
(the client warns otherwise).
"""
from __future__ import annotations

import errno
import os

from .loadfile import Expr, Op, Program, parse_text

__all__ = ["DEFAULT_CLIENT_TXT", "DEFAULT_LOADFILE", "default_program", "rw256k_program",
           "rw256k_setup", "RW_BLOCK", "LOADFILE_DIR", "shipped_loadfiles", "resolve_loadfile"]

DEFAULT_CLIENT_TXT = "/usr/share/dbench/client.txt"
#: the project's own loadfiles (dbench's NFS dialect), usable by name: ``--loadfile seq-write``
LOADFILE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "loadfiles")
RW_BLOCK = 256 * 1024

# Shipped fallback when Debian's dbench client.txt is absent: a small
# metadata + data mix in the NFS loadfile dialect, written for nfsbulk.
DEFAULT_LOADFILE = """\
# nfsbulk default loadfile (NFS dialect): a small office-like mix per client.
Deltree "/clients/client1" *
MKDIR3 "/clients" *
MKDIR3 "/clients/client1" *
MKDIR3 "/clients/client1/docs" 0x00000000
LOOP 4
RANDOMSTRING 1 "/clients/client1/docs/doc[0123456789][0123456789].txt"
CREATE3 $1 *
WRITE3 $1 0 65536 0 0x00000000
REPEAT 7
WRITE3 $1 +65536 65536 0 0x00000000
COMMIT3 $1 0x00000000
GETATTR3 $1 0x00000000
READ3 $1 0 65536 0x00000000
REPEAT 7
READ3 $1 +65536 65536 0x00000000
READ3 $1 */4096%458752 4096 0x00000000
SETATTR3 $1 0x00000000
ACCESS3 $1 5 0 0x00000000
ENDLOOP
READDIRPLUS3 "/clients/client1/docs" 0x00000000
CREATE3 "/clients/client1/docs/tmp.file" 0x00000000
WRITE3 "/clients/client1/docs/tmp.file" 0 4096 1 0x00000000
RENAME3 "/clients/client1/docs/tmp.file" "/clients/client1/docs/saved.file" 0x00000000
LOOKUP3 "/clients/client1/docs/tmp.file" 0x00000002
SYMLINK3 "/clients/client1/docs/saved.link" "/clients/client1/docs/saved.file" 0x00000000
READLINK3 "/clients/client1/docs/saved.link" 0x00000000
REMOVE3 "/clients/client1/docs/saved.link" 0x00000000
REMOVE3 "/clients/client1/docs/saved.file" 0x00000000
FSSTAT3 0x00000000
"""


def shipped_loadfiles() -> dict[str, str]:
    """Name -> path of every loadfile shipped in loadgen/loadfiles (seq-write, metadata, mixed-rw)."""
    try:
        names = sorted(os.listdir(LOADFILE_DIR))
    except OSError:
        return {}
    return {n[:-5]: os.path.join(LOADFILE_DIR, n) for n in names if n.endswith(".load")}


def resolve_loadfile(arg: str) -> str | None:
    """The path a --loadfile argument names: an existing file as given, else a shipped loadfile of
    that name (with or without ``.load``); None when it is neither."""
    if os.path.isfile(arg):
        return os.path.abspath(arg)
    if os.sep not in arg:
        name = arg[:-5] if arg.endswith(".load") else arg
        return shipped_loadfiles().get(name)
    return None


def default_program():
    """(Program, description): Debian's client.txt when present, else ours."""
    from .loadfile import parse_file
    if os.path.exists(DEFAULT_CLIENT_TXT):
        return parse_file(DEFAULT_CLIENT_TXT), DEFAULT_CLIENT_TXT
    return parse_text(DEFAULT_LOADFILE, source="<loadgen default>"), "<loadgen default>"


def _file(i: int) -> str:
    return f"/clients/client1/rw256k/f{i}"


def rw256k_program(nfiles: int, file_size: int) -> Program:
    ok = "0x00000000"
    blocks = range(0, file_size, RW_BLOCK)
    items = []
    for i in range(nfiles):
        for off in blocks:
            n = min(RW_BLOCK, file_size - off)
            items.append(Op(0, "READ3", (_file(i),), (Expr("const", off), Expr("const", n)), ok))
    for i in range(nfiles):
        for off in blocks:
            n = min(RW_BLOCK, file_size - off)
            items.append(Op(0, "WRITE3", (_file(i),),
                            (Expr("const", off), Expr("const", n), Expr("const", 0)), ok))
        items.append(Op(0, "COMMIT3", (_file(i),), (), ok))
    return Program(items, source="<profile rw256k>", dialects=frozenset({"nfs"}))


def rw256k_setup(nfs, cname: str, nfiles: int, file_size: int) -> None:
    """Lay out this client's file set (untimed). Raises RuntimeError with the
    failing call on any error."""
    def chk(rc, what, allow=()):
        if rc < 0 and -rc not in allow:
            raise RuntimeError(f"rw256k setup: {what} failed: {os.strerror(-rc)} ({nfs.error()})")

    base = f"/clients/{cname}"
    chk(nfs.mkdir("/clients"), "mkdir /clients", (errno.EEXIST,))
    chk(nfs.mkdir(base), f"mkdir {base}", (errno.EEXIST,))
    chk(nfs.mkdir(base + "/rw256k"), f"mkdir {base}/rw256k", (errno.EEXIST,))
    buf = bytearray(b"nfsbulk-rw256k\n" * (RW_BLOCK // 15 + 1))[:RW_BLOCK]
    for i in range(nfiles):
        path = _file(i).replace("client1", cname)
        rc, fh = nfs.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        chk(rc, f"open {path}")
        try:
            for off in range(0, file_size, RW_BLOCK):
                n = min(RW_BLOCK, file_size - off)
                w = nfs.pwrite(fh, off, n, buf)
                chk(w, f"write {path}@{off}")
                if w != n:
                    raise RuntimeError(f"rw256k setup: short write {w}/{n} on {path}@{off}")
            chk(nfs.fsync(fh), f"commit {path}")
        finally:
            nfs.close(fh)
