"""XDR codecs for the NFSv3 types of RFC 1813 (the server side): arguments and attributes.

Owns: decoding of NFSPROC3 arguments out of an xdr.Unpacker and the encoding
of attributes (fattr3, wcc_data, post_op_fh3) into an xdr.Packer; the
results and their encoders are nfs3res's.  No I/O, no state, no locks: any
thread may call anything here.

Theory and invariants
---------------------
* Decoders take an Unpacker and return plain tuples; they raise XdrError on
  short or malformed input (dispatch() turns that into GARBAGE_ARGS).  What
  is well-formed XDR but semantically wrong is NOT refused here: a filename3
  of 300 bytes decodes (up to NAME_DECODE_MAX) and the handler answers
  NAMETOOLONG through export.check_name; an unknown ftype3 in MKNOD decodes
  (the union's default arm is void) and the handler answers BADTYPE.
* A file handle is opaque<64> -> bytes; longer is GARBAGE_ARGS (as knfsd).
  Its content is judged by Export (BADHANDLE / STALE).
* sattr3 decodes to a Sattr3 tuple (mode, uid, gid, size, atime, mtime) in
  which None means "do not set"; atime/mtime are None, SERVER_TIME, or a
  (seconds, nseconds) tuple.
* Attributes go on the wire straight from an os.stat_result with one
  struct.pack per fattr3 (pack_fattr3 / pack_post_op_attr): results carry
  stat results and the export's fsid, never pre-built fattr3 tuples.
  mode = the low 12 bits, used = st_blocks*512, times clamped to the uint32
  seconds range.
* Results, their encoders and their sizes: proto.nfs3res.
"""

import stat as _stat
import struct
from os import major as _os_major, minor as _os_minor

from .nfs3const import NFS3_CREATEVERFSIZE, NFS3_FHSIZE, NFS3_MAXPATHLEN, Ftype3
from .xdr import XdrError

__all__ = [
    "NAME_DECODE_MAX", "PATH_DECODE_MAX", "SERVER_TIME", "Sattr3", "SATTR3_NONE",
    "nfstime3",
    "pack_post_op_attr", "pack_pre_op_attr", "pack_wcc_data", "pack_post_op_fh3", "pack_fattr3",
    "decode_fh3", "decode_filename3", "decode_nfspath3", "decode_nfstime3",
    "decode_sattr3", "decode_diropargs3",
    # the encoding pieces nfs3res builds its replies from
    "XDR_TRUE", "XDR_FALSE", "pack_u32", "FATTR3_STRUCT", "POST_OP_ATTR_STRUCT", "U64_STRUCT", "fattr3_fields",
]

#: filename3 is an unbounded string in RFC 1813: accept up to this many bytes
#: so that the handler can answer NAMETOOLONG (> 255) instead of GARBAGE_ARGS.
NAME_DECODE_MAX = 4096
#: nfspath3 (SYMLINK data): Linux PATH_MAX; more is GARBAGE_ARGS.
PATH_DECODE_MAX = NFS3_MAXPATHLEN

#: sattr3 set_atime/set_mtime = SET_TO_SERVER_TIME
SERVER_TIME = "server-time"

_U32 = 0xFFFFFFFF
XDR_TRUE = b"\0\0\0\1"
XDR_FALSE = b"\0\0\0\0"

pack_u32 = struct.Struct(">I").pack
# fattr3: type mode nlink uid gid | size used | rdev(2) | fsid fileid | atime mtime ctime (s, ns)
FATTR3_STRUCT = struct.Struct(">5I2Q2I2Q6I")
POST_OP_ATTR_STRUCT = struct.Struct(">6I2Q2I2Q6I")       # TRUE + fattr3
_PRE_ATTR = struct.Struct(">IQ4I")              # TRUE + wcc_attr
_PRE_POST = struct.Struct(">IQ4I6I2Q2I2Q6I")    # TRUE + wcc_attr + TRUE + fattr3
_TIME = struct.Struct(">2I")
U64_STRUCT = struct.Struct(">Q")

_FTYPE = {
    _stat.S_IFREG: Ftype3.REG.value, _stat.S_IFDIR: Ftype3.DIR.value,
    _stat.S_IFBLK: Ftype3.BLK.value, _stat.S_IFCHR: Ftype3.CHR.value,
    _stat.S_IFLNK: Ftype3.LNK.value, _stat.S_IFSOCK: Ftype3.SOCK.value,
    _stat.S_IFIFO: Ftype3.FIFO.value,
}
_CHR_BLK = (_stat.S_IFCHR, _stat.S_IFBLK)


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


def fattr3_fields(st, fsid):
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


def pack_fattr3(p, st, fsid):
    p.append(FATTR3_STRUCT.pack(*fattr3_fields(st, fsid)))


def pack_post_op_attr(p, st, fsid):
    """post_op_attr: FALSE if st is None, else TRUE + fattr3."""
    if st is None:
        p.append(XDR_FALSE)
    else:
        p.append(POST_OP_ATTR_STRUCT.pack(1, *fattr3_fields(st, fsid)))


def pack_pre_op_attr(p, st):
    if st is None:
        p.append(XDR_FALSE)
    else:
        m, mn = nfstime3(st.st_mtime_ns)
        c, cn = nfstime3(st.st_ctime_ns)
        p.append(_PRE_ATTR.pack(1, st.st_size, m, mn, c, cn))


def pack_wcc_data(p, pre, post, fsid):
    """wcc_data: pre_op_attr from the stat result `pre`, post_op_attr from `post`."""
    if pre is not None and post is not None:
        m, mn = nfstime3(pre.st_mtime_ns)
        c, cn = nfstime3(pre.st_ctime_ns)
        p.append(_PRE_POST.pack(1, pre.st_size, m, mn, c, cn, 1, *fattr3_fields(post, fsid)))
    else:
        pack_pre_op_attr(p, pre)
        pack_post_op_attr(p, post, fsid)


def pack_post_op_fh3(p, fh):
    if fh is None:
        p.append(XDR_FALSE)
    else:
        p.append(XDR_TRUE)
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
