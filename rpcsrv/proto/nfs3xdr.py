# rpcsrv/nfs3xdr.py -- XDR codecs for the NFSv3 types of RFC 1813.
#
# Owns: decoding of NFSPROC3 arguments out of an xdr.Unpacker and encoding of
# the results into an xdr.Packer.  No I/O, no state, no locks: any thread may
# call anything here.
#
# Theory and invariants
# ---------------------
# * Decoders take an Unpacker and return plain tuples; they raise XdrError on
#   short or malformed input (dispatch() turns that into GARBAGE_ARGS).  What
#   is well-formed XDR but semantically wrong is NOT refused here: a filename3
#   of 300 bytes decodes (up to NAME_DECODE_MAX) and the handler answers
#   NAMETOOLONG through export.check_name; an unknown ftype3 in MKNOD decodes
#   (the union's default arm is void) and the handler answers BADTYPE.
# * A file handle is opaque<64> -> bytes; longer is GARBAGE_ARGS (as knfsd).
#   Its content is judged by Export (BADHANDLE / STALE).
# * sattr3 decodes to a Sattr3 tuple (mode, uid, gid, size, atime, mtime) in
#   which None means "do not set"; atime/mtime are None, SERVER_TIME, or a
#   (seconds, nseconds) tuple.
# * Attributes go on the wire straight from an os.stat_result with one
#   struct.pack per fattr3 (pack_post_op_attr / fattr3_bytes): results carry
#   stat results and the export's fsid, never pre-built fattr3 tuples.
#   Semantics are those of export.fattr3_from_stat (mode = low 12 bits, used =
#   st_blocks*512, times clamped to the uint32 seconds range).
# * Results: every procedure returns a Res; Res.status is the nfsstat3 and
#   Res.v the procedure-specific fields (documented at each encoder).  A READ
#   result additionally has payload_len: the server appends that many bytes
#   (already read into the reply pages by ctx.read_payload) plus XDR padding
#   after what encode_read packed; encode_read therefore ends with the data
#   length word.

import stat as _stat
import struct
from os import major as _os_major, minor as _os_minor

from .nfs3const import (
    NFS3_COOKIEVERFSIZE,
    NFS3_CREATEVERFSIZE,
    NFS3_FHSIZE,
    NFS3_MAXPATHLEN,
    NFS3_WRITEVERFSIZE,
    NFSSTAT3_NAMES,
    Ftype3,
)
from .xdr import XdrError

__all__ = [
    "NAME_DECODE_MAX", "PATH_DECODE_MAX", "SERVER_TIME", "Sattr3", "SATTR3_NONE",
    "Res", "ReadRes", "status_name",
    "fattr3_bytes", "wcc_attr_bytes", "nfstime3",
    "pack_post_op_attr", "pack_pre_op_attr", "pack_wcc_data", "pack_post_op_fh3",
    "pack_fattr3", "pack_sattr3", "pack_diropargs3",
    "decode_fh3", "decode_filename3", "decode_nfspath3", "decode_nfstime3",
    "decode_sattr3", "decode_diropargs3", "decode_fattr3", "decode_post_op_attr",
    "decode_wcc_data", "decode_post_op_fh3",
]

#: filename3 is an unbounded string in RFC 1813: accept up to this many bytes
#: so that the handler can answer NAMETOOLONG (> 255) instead of GARBAGE_ARGS.
NAME_DECODE_MAX = 4096
#: nfspath3 (SYMLINK data): Linux PATH_MAX; more is GARBAGE_ARGS.
PATH_DECODE_MAX = NFS3_MAXPATHLEN

#: sattr3 set_atime/set_mtime = SET_TO_SERVER_TIME
SERVER_TIME = "server-time"

_U32 = 0xFFFFFFFF
_TRUE = b"\0\0\0\1"
_FALSE = b"\0\0\0\0"

_u32 = struct.Struct(">I").pack
# fattr3: type mode nlink uid gid | size used | rdev(2) | fsid fileid | atime mtime ctime (s, ns)
_FATTR = struct.Struct(">5I2Q2I2Q6I")
_POST_ATTR = struct.Struct(">6I2Q2I2Q6I")       # TRUE + fattr3
_WCC_ATTR = struct.Struct(">Q4I")               # size, mtime, ctime
_PRE_ATTR = struct.Struct(">IQ4I")              # TRUE + wcc_attr
_PRE_POST = struct.Struct(">IQ4I6I2Q2I2Q6I")    # TRUE + wcc_attr + TRUE + fattr3
_TIME = struct.Struct(">2I")
_U64 = struct.Struct(">Q")

_FTYPE = {
    _stat.S_IFREG: Ftype3.REG.value, _stat.S_IFDIR: Ftype3.DIR.value,
    _stat.S_IFBLK: Ftype3.BLK.value, _stat.S_IFCHR: Ftype3.CHR.value,
    _stat.S_IFLNK: Ftype3.LNK.value, _stat.S_IFSOCK: Ftype3.SOCK.value,
    _stat.S_IFIFO: Ftype3.FIFO.value,
}
_CHR_BLK = (_stat.S_IFCHR, _stat.S_IFBLK)


# --------------------------------------------------------------------------
# results


def status_name(res):
    """ProcEntry.status: the lower-case nfsstat3 name of a Res."""
    return NFSSTAT3_NAMES.get(res.status, "unknown")


class Res:
    """A procedure result: status (nfsstat3), fsid (for fattr3), v (fields)."""

    __slots__ = ("status", "fsid", "v")

    def __init__(self, status, fsid, *v):
        self.status = status
        self.fsid = fsid
        self.v = v

    def __repr__(self):
        return "Res(%s, %r)" % (NFSSTAT3_NAMES.get(self.status, self.status), self.v)


class ReadRes(Res):
    """READ result; payload_len bytes follow the packed part (see module doc)."""

    __slots__ = ("payload_len",)

    def __init__(self, status, fsid, *v, payload_len=0):
        Res.__init__(self, status, fsid, *v)
        self.payload_len = payload_len


# --------------------------------------------------------------------------
# attributes out of os.stat_result


def nfstime3(ns):
    """(seconds, nseconds) of a time in ns, clamped to nfstime3's uint32 seconds."""
    s, n = divmod(ns, 1_000_000_000)
    if s < 0:
        return 0, 0
    if s > _U32:
        return _U32, 999_999_999
    return s, n


def _times(st):
    a, an = divmod(st.st_atime_ns, 1_000_000_000)
    m, mn = divmod(st.st_mtime_ns, 1_000_000_000)
    c, cn = divmod(st.st_ctime_ns, 1_000_000_000)
    if not (0 <= a <= _U32 and 0 <= m <= _U32 and 0 <= c <= _U32):
        (a, an), (m, mn), (c, cn) = (nfstime3(st.st_atime_ns), nfstime3(st.st_mtime_ns),
                                     nfstime3(st.st_ctime_ns))
    return a, an, m, mn, c, cn


def _fattr_fields(st, fsid):
    mode = st.st_mode
    fmt = mode & 0o170000
    if fmt in _CHR_BLK:
        r1, r2 = _os_major(st.st_rdev), _os_minor(st.st_rdev)
    else:
        r1 = r2 = 0
    nlink = st.st_nlink
    if nlink > _U32:
        nlink = _U32
    return (_FTYPE.get(fmt, 1), mode & 0o7777, nlink, st.st_uid & _U32, st.st_gid & _U32,
            st.st_size, st.st_blocks * 512, r1, r2, fsid, st.st_ino) + _times(st)


def fattr3_bytes(st, fsid):
    """The 84-byte XDR fattr3 of an os.stat_result."""
    return _FATTR.pack(*_fattr_fields(st, fsid))


def wcc_attr_bytes(st):
    """The 24-byte XDR wcc_attr (size, mtime, ctime)."""
    m, mn = nfstime3(st.st_mtime_ns)
    c, cn = nfstime3(st.st_ctime_ns)
    return _WCC_ATTR.pack(st.st_size, m, mn, c, cn)


def pack_fattr3(p, st, fsid):
    p.append(_FATTR.pack(*_fattr_fields(st, fsid)))


def pack_post_op_attr(p, st, fsid):
    """post_op_attr: FALSE if st is None, else TRUE + fattr3."""
    if st is None:
        p.append(_FALSE)
    else:
        p.append(_POST_ATTR.pack(1, *_fattr_fields(st, fsid)))


def pack_pre_op_attr(p, st):
    if st is None:
        p.append(_FALSE)
    else:
        m, mn = nfstime3(st.st_mtime_ns)
        c, cn = nfstime3(st.st_ctime_ns)
        p.append(_PRE_ATTR.pack(1, st.st_size, m, mn, c, cn))


def pack_wcc_data(p, pre, post, fsid):
    """wcc_data: pre_op_attr from the stat result `pre`, post_op_attr from `post`."""
    if pre is not None and post is not None:
        m, mn = nfstime3(pre.st_mtime_ns)
        c, cn = nfstime3(pre.st_ctime_ns)
        p.append(_PRE_POST.pack(1, pre.st_size, m, mn, c, cn, 1, *_fattr_fields(post, fsid)))
    else:
        pack_pre_op_attr(p, pre)
        pack_post_op_attr(p, post, fsid)


def pack_post_op_fh3(p, fh):
    if fh is None:
        p.append(_FALSE)
    else:
        p.append(_TRUE)
        p.pack_opaque(fh, NFS3_FHSIZE)


# --------------------------------------------------------------------------
# argument decoders


def decode_fh3(u):
    """nfs_fh3: opaque<NFS3_FHSIZE> -> bytes."""
    return u.unpack_opaque(NFS3_FHSIZE)


def decode_filename3(u):
    """filename3 -> bytes (up to NAME_DECODE_MAX; the handler bounds it at 255)."""
    return u.unpack_opaque(NAME_DECODE_MAX)


def decode_nfspath3(u):
    return u.unpack_opaque(PATH_DECODE_MAX)


def decode_nfstime3(u):
    return u.unpack_struct(_TIME)


def decode_diropargs3(u):
    """diropargs3 -> (dir_fh, name)."""
    return u.unpack_opaque(NFS3_FHSIZE), u.unpack_opaque(NAME_DECODE_MAX)


class Sattr3(tuple):
    """sattr3 as (mode, uid, gid, size, atime, mtime); None = leave alone."""

    __slots__ = ()

    def __new__(cls, mode=None, uid=None, gid=None, size=None, atime=None, mtime=None):
        return tuple.__new__(cls, (mode, uid, gid, size, atime, mtime))

    mode = property(lambda s: s[0])
    uid = property(lambda s: s[1])
    gid = property(lambda s: s[2])
    size = property(lambda s: s[3])
    atime = property(lambda s: s[4])
    mtime = property(lambda s: s[5])

    def empty(self):
        return self == SATTR3_NONE


SATTR3_NONE = Sattr3()


def _decode_set_time(u):
    how = u.unpack_uint()
    if how == 0:
        return None
    if how == 1:
        return SERVER_TIME
    if how == 2:
        return u.unpack_struct(_TIME)
    raise XdrError("bad time_how %d" % how)


def decode_sattr3(u):
    """sattr3 -> Sattr3."""
    ub = u.unpack_bool
    mode = u.unpack_uint() if ub() else None
    uid = u.unpack_uint() if ub() else None
    gid = u.unpack_uint() if ub() else None
    size = u.unpack_uhyper() if ub() else None
    atime = _decode_set_time(u)
    mtime = _decode_set_time(u)
    if mode is None and uid is None and gid is None and size is None \
            and atime is None and mtime is None:
        return SATTR3_NONE
    return Sattr3(mode, uid, gid, size, atime, mtime)


# --------------------------------------------------------------------------
# encoders of argument types (tests, clients) and decoders of result types


def _pack_set_time(p, t):
    if t is None:
        p.pack_uint(0)
    elif t is SERVER_TIME or t == SERVER_TIME:
        p.pack_uint(1)
    else:
        p.pack_uint(2)
        p.pack_uint(t[0])
        p.pack_uint(t[1])


def pack_sattr3(p, sa=SATTR3_NONE):
    mode, uid, gid, size, atime, mtime = sa
    for v in (mode, uid, gid):
        if v is None:
            p.pack_uint(0)
        else:
            p.pack_uint(1)
            p.pack_uint(v)
    if size is None:
        p.pack_uint(0)
    else:
        p.pack_uint(1)
        p.pack_uhyper(size)
    _pack_set_time(p, atime)
    _pack_set_time(p, mtime)


def pack_diropargs3(p, dir_fh, name):
    p.pack_opaque(dir_fh, NFS3_FHSIZE)
    p.pack_string(name)


def decode_fattr3(u):
    """fattr3 -> tuple in the order of export.fattr3_from_stat."""
    f = u.unpack_struct(_FATTR)
    return (f[0], f[1], f[2], f[3], f[4], f[5], f[6], (f[7], f[8]), f[9], f[10],
            (f[11], f[12]), (f[13], f[14]), (f[15], f[16]))


def decode_post_op_attr(u):
    return decode_fattr3(u) if u.unpack_bool() else None


def decode_wcc_attr(u):
    s, m, mn, c, cn = u.unpack_struct(_WCC_ATTR)
    return (s, (m, mn), (c, cn))


def decode_wcc_data(u):
    pre = decode_wcc_attr(u) if u.unpack_bool() else None
    return pre, decode_post_op_attr(u)


def decode_post_op_fh3(u):
    return u.unpack_opaque(NFS3_FHSIZE) if u.unpack_bool() else None


# sizes (also used by the server to bound replies)
FATTR3_SIZE = _FATTR.size
COOKIEVERF_SIZE = NFS3_COOKIEVERFSIZE
CREATEVERF_SIZE = NFS3_CREATEVERFSIZE
WRITEVERF_SIZE = NFS3_WRITEVERFSIZE


# --------------------------------------------------------------------------
# NFSPROC3 arguments: unpacker -> tuple

def decode_getattr(u):
    """GETATTR3args, and every other fh-only argument (READLINK, FSSTAT, FSINFO, PATHCONF)."""
    return u.unpack_opaque(NFS3_FHSIZE)


def decode_setattr(u):
    """SETATTR3args -> (fh, Sattr3, guard ctime (s, ns) or None)."""
    fh = u.unpack_opaque(NFS3_FHSIZE)
    sa = decode_sattr3(u)
    guard = u.unpack_struct(_TIME) if u.unpack_bool() else None
    return fh, sa, guard


decode_lookup = decode_diropargs3


def decode_access(u):
    """ACCESS3args -> (fh, mask)."""
    return u.unpack_opaque(NFS3_FHSIZE), u.unpack_uint()


_OFF_CNT = struct.Struct(">QI")


def decode_read(u):
    """READ3args -> (fh, offset, count)."""
    fh = u.unpack_opaque(NFS3_FHSIZE)
    off, cnt = u.unpack_struct(_OFF_CNT)
    return fh, off, cnt


decode_commit = decode_read      # COMMIT3args has the same shape


_OFF_CNT_HOW = struct.Struct(">QIi")


def decode_write(u):
    """WRITE3args -> (fh, offset, count, stable, (record_offset, length)).

    The data is NOT copied: (record_offset, length) is unpack_opaque_ref's
    answer, for ctx.write_payload.  count != length is GARBAGE_ARGS (as knfsd)."""
    fh = u.unpack_opaque(NFS3_FHSIZE)
    off, cnt, how = u.unpack_struct(_OFF_CNT_HOW)
    if not 0 <= how <= 2:
        raise XdrError("bad stable_how %d" % how)
    ref = u.unpack_opaque_ref()
    if ref[1] != cnt:
        raise XdrError("WRITE count %d but %d data bytes" % (cnt, ref[1]))
    return fh, off, cnt, how, ref


def decode_create(u):
    """CREATE3args -> (dir_fh, name, createmode, Sattr3 | createverf bytes)."""
    dfh = u.unpack_opaque(NFS3_FHSIZE)
    name = u.unpack_opaque(NAME_DECODE_MAX)
    how = u.unpack_int()
    if how == 0 or how == 1:
        return dfh, name, how, decode_sattr3(u)
    if how == 2:
        return dfh, name, how, u.unpack_fopaque(NFS3_CREATEVERFSIZE)
    raise XdrError("bad createmode3 %d" % how)


def decode_mkdir(u):
    """MKDIR3args -> (dir_fh, name, Sattr3)."""
    dfh = u.unpack_opaque(NFS3_FHSIZE)
    name = u.unpack_opaque(NAME_DECODE_MAX)
    return dfh, name, decode_sattr3(u)


def decode_symlink(u):
    """SYMLINK3args -> (dir_fh, name, Sattr3, target bytes)."""
    dfh = u.unpack_opaque(NFS3_FHSIZE)
    name = u.unpack_opaque(NAME_DECODE_MAX)
    sa = decode_sattr3(u)
    return dfh, name, sa, u.unpack_opaque(PATH_DECODE_MAX)


def decode_mknod(u):
    """MKNOD3args -> (dir_fh, name, ftype3, Sattr3 | None, (major, minor) | None).

    The union's default arm is void: any other type decodes (BADTYPE later)."""
    dfh = u.unpack_opaque(NFS3_FHSIZE)
    name = u.unpack_opaque(NAME_DECODE_MAX)
    ftype = u.unpack_int()
    if ftype == 4 or ftype == 3:          # CHR, BLK: devicedata3
        sa = decode_sattr3(u)
        spec = u.unpack_struct(_TIME)     # specdata3: two uint32
        return dfh, name, ftype, sa, spec
    if ftype == 6 or ftype == 7:          # SOCK, FIFO: sattr3
        return dfh, name, ftype, decode_sattr3(u), None
    return dfh, name, ftype, None, None


decode_remove = decode_diropargs3
decode_rmdir = decode_diropargs3


def decode_rename(u):
    """RENAME3args -> (from_dir_fh, from_name, to_dir_fh, to_name)."""
    o = u.unpack_opaque
    return o(NFS3_FHSIZE), o(NAME_DECODE_MAX), o(NFS3_FHSIZE), o(NAME_DECODE_MAX)


def decode_link(u):
    """LINK3args -> (file_fh, dir_fh, name)."""
    o = u.unpack_opaque
    return o(NFS3_FHSIZE), o(NFS3_FHSIZE), o(NAME_DECODE_MAX)


_RD = struct.Struct(">Q8sI")
_RDP = struct.Struct(">Q8sII")


def decode_readdir(u):
    """READDIR3args -> (dir_fh, cookie, cookieverf, count)."""
    fh = u.unpack_opaque(NFS3_FHSIZE)
    return (fh,) + u.unpack_struct(_RD)


def decode_readdirplus(u):
    """READDIRPLUS3args -> (dir_fh, cookie, cookieverf, dircount, maxcount)."""
    fh = u.unpack_opaque(NFS3_FHSIZE)
    return (fh,) + u.unpack_struct(_RDP)


# --------------------------------------------------------------------------
# NFSPROC3 results: (packer, Res) -> None.  Res.v per procedure:
#   getattr      ok (st,)                         | fail ()
#   setattr      (pre, post)                      both arms: wcc_data
#   lookup       ok (fh, st, dir_st)              | fail (dir_st,)
#   access       ok (st, granted)                 | fail (st,)
#   readlink     ok (st, target)                  | fail (st,)
#   read         ok (st, count, eof) +payload_len | fail (st,)
#   write        ok (pre, post, count, committed, verf) | fail (pre, post)
#   create/mkdir/symlink/mknod  ok (fh, st, dpre, dpost) | fail (dpre, dpost)
#   remove/rmdir (dpre, dpost)
#   rename       (fpre, fpost, tpre, tpost)
#   link         (st, dpre, dpost)
#   readdir(plus) ok (dir_st, verf, entries, eof)  | fail (dir_st,)
#   fsstat/fsinfo/pathconf ok (st, value)          | fail (st,)
#   commit       ok (pre, post, verf)              | fail (pre, post)
# "st" values are os.stat_result or None (post_op_attr absent).


def encode_getattr(p, r):
    if r.status == 0:
        p.append(_POST_ATTR.pack(0, *_fattr_fields(r.v[0], r.fsid)))   # status OK + fattr3
    else:
        p.append(_u32(r.status))


def encode_wcc_only(p, r):
    """SETATTR, REMOVE, RMDIR: status + wcc_data in both arms."""
    p.append(_u32(r.status))
    pack_wcc_data(p, r.v[0], r.v[1], r.fsid)


def encode_lookup(p, r):
    p.append(_u32(r.status))
    if r.status == 0:
        fh, st, dst = r.v
        p.pack_opaque(fh, NFS3_FHSIZE)
        pack_post_op_attr(p, st, r.fsid)
        pack_post_op_attr(p, dst, r.fsid)
    else:
        pack_post_op_attr(p, r.v[0], r.fsid)


def encode_access(p, r):
    p.append(_u32(r.status))
    pack_post_op_attr(p, r.v[0], r.fsid)
    if r.status == 0:
        p.append(_u32(r.v[1]))


def encode_readlink(p, r):
    p.append(_u32(r.status))
    pack_post_op_attr(p, r.v[0], r.fsid)
    if r.status == 0:
        p.pack_opaque(r.v[1])


def encode_read(p, r):
    """Everything of READ3resok up to and including the data length word;
    the server appends r.payload_len data bytes and the padding."""
    p.append(_u32(r.status))
    pack_post_op_attr(p, r.v[0], r.fsid)
    if r.status == 0:
        n = r.v[1]
        p.append(struct.pack(">III", n, 1 if r.v[2] else 0, n))


def encode_write(p, r):
    p.append(_u32(r.status))
    v = r.v
    pack_wcc_data(p, v[0], v[1], r.fsid)
    if r.status == 0:
        p.append(struct.pack(">Ii", v[2], v[3]))
        p.pack_fopaque(NFS3_WRITEVERFSIZE, v[4])


def encode_diropres(p, r):
    """CREATE, MKDIR, SYMLINK, MKNOD."""
    p.append(_u32(r.status))
    v = r.v
    if r.status == 0:
        pack_post_op_fh3(p, v[0])
        pack_post_op_attr(p, v[1], r.fsid)
        pack_wcc_data(p, v[2], v[3], r.fsid)
    else:
        pack_wcc_data(p, v[0], v[1], r.fsid)


def encode_rename(p, r):
    p.append(_u32(r.status))
    v = r.v
    pack_wcc_data(p, v[0], v[1], r.fsid)
    pack_wcc_data(p, v[2], v[3], r.fsid)


def encode_link(p, r):
    p.append(_u32(r.status))
    v = r.v
    pack_post_op_attr(p, v[0], r.fsid)
    pack_wcc_data(p, v[1], v[2], r.fsid)


def _encode_readdir(p, r, plus):
    p.append(_u32(r.status))
    fsid = r.fsid
    pack_post_op_attr(p, r.v[0], fsid)
    if r.status != 0:
        return
    _, verf, entries, eof = r.v
    p.pack_fopaque(NFS3_COOKIEVERFSIZE, verf)
    append = p.append
    pack_opaque = p.pack_opaque
    u64 = _U64.pack
    for e in entries:
        append(_TRUE)
        append(u64(e.fileid))
        pack_opaque(e.name)
        append(u64(e.cookie))
        if plus:
            pack_post_op_attr(p, e.stat, fsid)
            pack_post_op_fh3(p, e.fh)
    append(_FALSE)
    append(_TRUE if eof else _FALSE)


def encode_readdir(p, r):
    _encode_readdir(p, r, False)


def encode_readdirplus(p, r):
    _encode_readdir(p, r, True)


_FSSTAT = struct.Struct(">6QI")
_FSINFO = struct.Struct(">7IQ2II")
_PATHCONF = struct.Struct(">6I")


def encode_fsstat(p, r):
    p.append(_u32(r.status))
    pack_post_op_attr(p, r.v[0], r.fsid)
    if r.status == 0:
        p.append(_FSSTAT.pack(*r.v[1]))


def encode_fsinfo(p, r):
    p.append(_u32(r.status))
    pack_post_op_attr(p, r.v[0], r.fsid)
    if r.status == 0:
        i = r.v[1]
        p.append(_FSINFO.pack(i.rtmax, i.rtpref, i.rtmult, i.wtmax, i.wtpref, i.wtmult,
                              i.dtpref, i.maxfilesize, i.time_delta[0], i.time_delta[1],
                              i.properties))


def encode_pathconf(p, r):
    p.append(_u32(r.status))
    pack_post_op_attr(p, r.v[0], r.fsid)
    if r.status == 0:
        c = r.v[1]
        p.append(_PATHCONF.pack(c.linkmax, c.name_max, bool(c.no_trunc),
                                bool(c.chown_restricted), bool(c.case_insensitive),
                                bool(c.case_preserving)))


def encode_commit(p, r):
    p.append(_u32(r.status))
    v = r.v
    pack_wcc_data(p, v[0], v[1], r.fsid)
    if r.status == 0:
        p.pack_fopaque(NFS3_WRITEVERFSIZE, v[2])
