"""NFSv3 results (RFC 1813): one NamedTuple per procedure, their encoders, and their sizes.

Owns: the result types the nfsd handlers return (status, fsid for fattr3,
and named fields, with defaults for the arms that leave them out), the
encoders that pack them into an xdr.Packer, the worst-case encoded size of
each result (RES_MAX, the kernel's pc_xdrressize, declared in the procedure
table and checked by dispatch), and DirBudget, the byte accounting of a
READDIR(PLUS) reply while its entries are chosen. READ's data is not in its
result: the handler already put ReadRes.count bytes into the reply pages
and the table declares them as the reply's payload (read_payload_len).

No I/O, no state, no locks: any thread may call anything here.
"""

import struct
from typing import Any, NamedTuple

from .nfs3const import NFS3_COOKIEVERFSIZE, NFS3_FHSIZE, NFS3_MAXPATHLEN, NFS3_WRITEVERFSIZE, NFSSTAT3_NAMES
from .nfs3xdr import (FATTR3_STRUCT, POST_OP_ATTR_STRUCT, U64_STRUCT, XDR_FALSE, XDR_TRUE, fattr3_fields,
                      pack_post_op_attr, pack_post_op_fh3, pack_u32, pack_wcc_data)

__all__ = [
    "GetattrRes", "WccRes", "LookupRes", "AccessRes", "ReadlinkRes", "ReadRes", "WriteRes",
    "DiropRes", "RenameRes", "LinkRes", "ReaddirRes", "InfoRes", "CommitRes",
    "status_name", "read_payload_len", "RES_MAX", "READDIR_RES_BASE", "DirBudget",
    "encode_getattr", "encode_wcc_only", "encode_lookup", "encode_access", "encode_readlink",
    "encode_read", "encode_write", "encode_diropres", "encode_rename", "encode_link", "encode_readdir",
    "encode_readdirplus", "encode_fsstat", "encode_fsinfo", "encode_pathconf", "encode_commit",
]


# --------------------------------------------------------------------------
# results


def status_name(res):
    """ProcEntry.status: the lower-case nfsstat3 name of a result."""
    return NFSSTAT3_NAMES.get(res.status, "unknown")


class GetattrRes(NamedTuple):
    status: int
    fsid: int
    attr: Any = None                # os.stat_result (OK arm only)


class WccRes(NamedTuple):
    """SETATTR, REMOVE, RMDIR: wcc_data in both arms."""
    status: int
    fsid: int
    pre: Any = None
    post: Any = None


class LookupRes(NamedTuple):
    status: int
    fsid: int
    fh: bytes = b""
    attr: Any = None                # the object's (OK arm)
    dir_attr: Any = None            # the directory's (both arms)


class AccessRes(NamedTuple):
    status: int
    fsid: int
    attr: Any = None
    access: int = 0


class ReadlinkRes(NamedTuple):
    status: int
    fsid: int
    attr: Any = None
    target: bytes = b""


class ReadRes(NamedTuple):
    """READ: count data bytes are already in the reply pages (the payload)."""
    status: int
    fsid: int
    attr: Any = None
    count: int = 0
    eof: bool = False


class WriteRes(NamedTuple):
    status: int
    fsid: int
    pre: Any = None
    post: Any = None
    count: int = 0
    committed: int = 0
    verf: bytes = b""


class DiropRes(NamedTuple):
    """CREATE, MKDIR, SYMLINK, MKNOD."""
    status: int
    fsid: int
    fh: bytes | None = None
    attr: Any = None
    dir_pre: Any = None
    dir_post: Any = None


class RenameRes(NamedTuple):
    status: int
    fsid: int
    from_pre: Any = None
    from_post: Any = None
    to_pre: Any = None
    to_post: Any = None


class LinkRes(NamedTuple):
    status: int
    fsid: int
    attr: Any = None
    dir_pre: Any = None
    dir_post: Any = None


class ReaddirRes(NamedTuple):
    """READDIR and READDIRPLUS; entries are export.DirEntry values."""
    status: int
    fsid: int
    dir_attr: Any = None
    verf: bytes = b""
    entries: tuple = ()
    eof: bool = False


class InfoRes(NamedTuple):
    """FSSTAT, FSINFO, PATHCONF: info is the FsStat / FsInfo / PathConf value."""
    status: int
    fsid: int
    attr: Any = None
    info: Any = None


class CommitRes(NamedTuple):
    status: int
    fsid: int
    pre: Any = None
    post: Any = None
    verf: bytes = b""


def read_payload_len(res: ReadRes) -> int:
    """ProcEntry.payload of READ: the data bytes that follow the packed reply."""
    return res.count if res.status == 0 else 0


# --------------------------------------------------------------------------
# sizes: worst-case encoded results (bytes), as the kernel's pc_xdrressize

FATTR3_SIZE = FATTR3_STRUCT.size                       # 84
_POST_OP_ATTR = 4 + FATTR3_SIZE                 # 88
_WCC_DATA = (4 + 24) + _POST_OP_ATTR            # pre_op_attr + post_op_attr
_FH3 = 4 + NFS3_FHSIZE
_POST_OP_FH3 = 4 + _FH3
_ST = 4                                         # nfsstat3

#: NFSPROC3 number -> largest encoded result in bytes (READ: without its data;
#: READDIR/READDIRPLUS: None, bounded by the count argument, see DirBudget)
RES_MAX = {
    0: 0,                                                   # NULL
    1: _ST + FATTR3_SIZE,                                   # GETATTR
    2: _ST + _WCC_DATA,                                     # SETATTR
    3: _ST + _FH3 + 2 * _POST_OP_ATTR,                      # LOOKUP
    4: _ST + _POST_OP_ATTR + 4,                             # ACCESS
    5: _ST + _POST_OP_ATTR + 4 + NFS3_MAXPATHLEN,           # READLINK
    6: _ST + _POST_OP_ATTR + 12,                            # READ (+ data)
    7: _ST + _WCC_DATA + 8 + NFS3_WRITEVERFSIZE,            # WRITE
    8: _ST + _POST_OP_FH3 + _POST_OP_ATTR + _WCC_DATA,      # CREATE
    9: _ST + _POST_OP_FH3 + _POST_OP_ATTR + _WCC_DATA,      # MKDIR
    10: _ST + _POST_OP_FH3 + _POST_OP_ATTR + _WCC_DATA,     # SYMLINK
    11: _ST + _POST_OP_FH3 + _POST_OP_ATTR + _WCC_DATA,     # MKNOD
    12: _ST + _WCC_DATA,                                    # REMOVE
    13: _ST + _WCC_DATA,                                    # RMDIR
    14: _ST + 2 * _WCC_DATA,                                # RENAME
    15: _ST + _POST_OP_ATTR + _WCC_DATA,                    # LINK
    16: None,                                               # READDIR
    17: None,                                               # READDIRPLUS
    18: _ST + _POST_OP_ATTR + 52,                           # FSSTAT
    19: _ST + _POST_OP_ATTR + 48,                           # FSINFO
    20: _ST + _POST_OP_ATTR + 24,                           # PATHCONF
    21: _ST + _WCC_DATA + NFS3_WRITEVERFSIZE,               # COMMIT
}

#: READDIR(PLUS)3resok without entries: status, post_op_attr, cookieverf, list end, eof
READDIR_RES_BASE = _ST + _POST_OP_ATTR + NFS3_COOKIEVERFSIZE + 4 + 4


def _pad4(n: int) -> int:
    return (n + 3) & ~3


class DirBudget:
    """Byte accounting of a READDIR / READDIRPLUS reply while its entries are chosen.

    READDIR: ``count`` bounds the whole reply. READDIRPLUS: ``maxcount``
    bounds the whole reply and ``count`` (dircount) the fileid + name +
    cookie bytes. ``fits(name, fh_len)`` says whether one more entry fits and,
    if so, counts it; ``total`` is then the size encode_readdir(plus) produces.
    """

    __slots__ = ("plus", "count", "limit", "total", "dirbytes")

    def __init__(self, count: int, maxcount: int | None = None, plus: bool = False):
        self.plus = plus
        self.count = count
        self.limit = maxcount if (plus and maxcount is not None) else count
        self.total = READDIR_RES_BASE
        self.dirbytes = 0

    def fits(self, name: bytes, fh_len: int) -> bool:
        n = _pad4(len(name))
        e = 4 + 8 + 4 + n + 8                       # value follows, fileid, name, cookie
        dsz = 8 + 4 + n + 8
        if self.plus:
            e += _POST_OP_ATTR + 4 + 4 + _pad4(fh_len)   # name_attributes, post_op_fh3
            if self.dirbytes + dsz > self.count:
                return False
        if self.total + e > self.limit:
            return False
        self.total += e
        self.dirbytes += dsz
        return True


# --------------------------------------------------------------------------
# NFSPROC3 results: (packer, result) -> None.  "attr"-like fields are
# os.stat_result or None (post_op_attr absent).


def encode_getattr(p, r):
    if r.status == 0:
        p.append(POST_OP_ATTR_STRUCT.pack(0, *fattr3_fields(r.attr, r.fsid)))   # status OK + fattr3
    else:
        p.append(pack_u32(r.status))


def encode_wcc_only(p, r):
    """SETATTR, REMOVE, RMDIR: status + wcc_data in both arms."""
    p.append(pack_u32(r.status))
    pack_wcc_data(p, r.pre, r.post, r.fsid)


def encode_lookup(p, r):
    p.append(pack_u32(r.status))
    if r.status == 0:
        p.pack_opaque(r.fh, NFS3_FHSIZE)
        pack_post_op_attr(p, r.attr, r.fsid)
    pack_post_op_attr(p, r.dir_attr, r.fsid)


def encode_access(p, r):
    p.append(pack_u32(r.status))
    pack_post_op_attr(p, r.attr, r.fsid)
    if r.status == 0:
        p.append(pack_u32(r.access))


def encode_readlink(p, r):
    p.append(pack_u32(r.status))
    pack_post_op_attr(p, r.attr, r.fsid)
    if r.status == 0:
        p.pack_opaque(r.target)


_READ_TAIL = struct.Struct(">III")


def encode_read(p, r):
    """Everything of READ3resok up to and including the data length word;
    the server appends r.count data bytes and the padding."""
    p.append(pack_u32(r.status))
    pack_post_op_attr(p, r.attr, r.fsid)
    if r.status == 0:
        p.append(_READ_TAIL.pack(r.count, 1 if r.eof else 0, r.count))


_WRITE_TAIL = struct.Struct(">Ii")


def encode_write(p, r):
    p.append(pack_u32(r.status))
    pack_wcc_data(p, r.pre, r.post, r.fsid)
    if r.status == 0:
        p.append(_WRITE_TAIL.pack(r.count, r.committed))
        p.pack_fopaque(NFS3_WRITEVERFSIZE, r.verf)


def encode_diropres(p, r):
    """CREATE, MKDIR, SYMLINK, MKNOD."""
    p.append(pack_u32(r.status))
    if r.status == 0:
        pack_post_op_fh3(p, r.fh)
        pack_post_op_attr(p, r.attr, r.fsid)
    pack_wcc_data(p, r.dir_pre, r.dir_post, r.fsid)


def encode_rename(p, r):
    p.append(pack_u32(r.status))
    pack_wcc_data(p, r.from_pre, r.from_post, r.fsid)
    pack_wcc_data(p, r.to_pre, r.to_post, r.fsid)


def encode_link(p, r):
    p.append(pack_u32(r.status))
    pack_post_op_attr(p, r.attr, r.fsid)
    pack_wcc_data(p, r.dir_pre, r.dir_post, r.fsid)


def _encode_readdir(p, r, plus):
    p.append(pack_u32(r.status))
    fsid = r.fsid
    pack_post_op_attr(p, r.dir_attr, fsid)
    if r.status != 0:
        return
    p.pack_fopaque(NFS3_COOKIEVERFSIZE, r.verf)
    append = p.append
    pack_opaque = p.pack_opaque
    u64 = U64_STRUCT.pack
    for e in r.entries:
        append(XDR_TRUE)
        append(u64(e.fileid))
        pack_opaque(e.name)
        append(u64(e.cookie))
        if plus:
            pack_post_op_attr(p, e.stat, fsid)
            pack_post_op_fh3(p, e.fh)
    append(XDR_FALSE)
    append(XDR_TRUE if r.eof else XDR_FALSE)


def encode_readdir(p, r):
    _encode_readdir(p, r, False)


def encode_readdirplus(p, r):
    _encode_readdir(p, r, True)


_FSSTAT = struct.Struct(">6QI")
_FSINFO = struct.Struct(">7IQ2II")
_PATHCONF = struct.Struct(">6I")


def encode_fsstat(p, r):
    p.append(pack_u32(r.status))
    pack_post_op_attr(p, r.attr, r.fsid)
    if r.status == 0:
        p.append(_FSSTAT.pack(*r.info))


def encode_fsinfo(p, r):
    p.append(pack_u32(r.status))
    pack_post_op_attr(p, r.attr, r.fsid)
    if r.status == 0:
        i = r.info
        p.append(_FSINFO.pack(i.rtmax, i.rtpref, i.rtmult, i.wtmax, i.wtpref, i.wtmult,
                              i.dtpref, i.maxfilesize, i.time_delta[0], i.time_delta[1],
                              i.properties))


def encode_pathconf(p, r):
    p.append(pack_u32(r.status))
    pack_post_op_attr(p, r.attr, r.fsid)
    if r.status == 0:
        c = r.info
        p.append(_PATHCONF.pack(c.linkmax, c.name_max, bool(c.no_trunc),
                                bool(c.chown_restricted), bool(c.case_insensitive),
                                bool(c.case_preserving)))


def encode_commit(p, r):
    p.append(pack_u32(r.status))
    pack_wcc_data(p, r.pre, r.post, r.fsid)
    if r.status == 0:
        p.pack_fopaque(NFS3_WRITEVERFSIZE, r.verf)
