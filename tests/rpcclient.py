"""The tests' one raw ONC RPC client, and the client-side codecs the server itself never needs.

RpcClient speaks RPC over TCP (record marking) or UDP to a live server and
lets a test build calls byte by byte (call_bytes, send_raw) or make whole
calls (call -> (ReplyHeader, Unpacker at the results)). Nfs3 wraps it with
the NFSv3 and MOUNT calls the server tests make by hand. The client-side
codecs (pack_call, decode_reply, the sattr3/diropargs3 encoders and the
fattr3/wcc decoders) live here, not in rpcsrv.proto: only tests use them.
"""
from __future__ import annotations

import itertools
import os
import socket
import struct

from rpcsrv.proto import nfs3xdr as X
from rpcsrv.proto import record
from rpcsrv.proto.nfs3const import NFS3_FHSIZE
from rpcsrv.proto.rpcmsg import (
    AUTH_ERROR, AUTH_SYS, CALL, GARBAGE_ARGS, MAX_AUTH_BYTES, MAX_GIDS, MAX_MACHINENAME,
    MSG_ACCEPTED, MSG_DENIED, PROC_UNAVAIL, PROG_MISMATCH, PROG_UNAVAIL, REPLY, RPC_MISMATCH, RPC_VERSION,
    SUCCESS, SYSTEM_ERR, AuthSys,
)
from rpcsrv.proto.xdr import Packer, Unpacker, XdrError

NFS, MOUNT = 100003, 100005
_CALL_HEAD = struct.Struct(">6I")
_TIME = struct.Struct(">2I")
_FATTR = struct.Struct(">5I2Q2I2Q6I")
_WCC_ATTR = struct.Struct(">Q4I")
_ACCEPT_STATS = frozenset((SUCCESS, PROG_UNAVAIL, PROG_MISMATCH, PROC_UNAVAIL, GARBAGE_ARGS, SYSTEM_ERR))
ROOT_CRED = AuthSys(1, b"nfsbulk-test", 0, 0, [0])


# --------------------------------------------------------------------------
# RPC: calls out, reply headers in

class ReplyHeader:
    """A decoded reply header (for tests and the raw RPC test client).

    stat is MSG_ACCEPTED or MSG_DENIED.  Accepted: verf_flavor, verf_body,
    accept_stat, and low/high for PROG_MISMATCH.  Denied: reject_stat, and
    low/high for RPC_MISMATCH or auth_stat for AUTH_ERROR.  Unused fields are
    None.  On SUCCESS the Unpacker is left at the procedure results.
    """

    __slots__ = ("xid", "stat", "verf_flavor", "verf_body", "accept_stat", "reject_stat",
                 "low", "high", "auth_stat")

    def __init__(self, xid, stat):
        self.xid = xid
        self.stat = stat
        self.verf_flavor = None
        self.verf_body = None
        self.accept_stat = None
        self.reject_stat = None
        self.low = None
        self.high = None
        self.auth_stat = None

    def __repr__(self):
        fields = ", ".join("%s=%r" % (k, getattr(self, k)) for k in self.__slots__
                           if getattr(self, k) is not None)
        return "ReplyHeader(%s)" % fields


def pack_authsys(packer, cred):
    """Append authsys_parms (without the opaque_auth flavor/length wrapper)."""
    packer.pack_uint(cred.stamp)
    packer.pack_string(cred.machinename, MAX_MACHINENAME)
    packer.pack_uint(cred.uid)
    packer.pack_uint(cred.gid)
    packer.pack_array(cred.gids, packer.pack_uint, MAX_GIDS)


def _pack_opaque_auth(packer, auth):
    if auth is None:
        packer.append(b"\0\0\0\0\0\0\0\0")
    elif isinstance(auth, AuthSys):
        packer.pack_uint(AUTH_SYS)
        pos = packer.reserve_uint()
        start = len(packer)
        pack_authsys(packer, auth)
        n = len(packer) - start
        if n > MAX_AUTH_BYTES:
            raise ValueError("AUTH_SYS credential of %d bytes exceeds %d" % (n, MAX_AUTH_BYTES))
        packer.patch_uint(pos, n)
    else:
        flavor, body = auth
        packer.pack_uint(flavor)
        packer.pack_opaque(body, MAX_AUTH_BYTES)


def pack_call(packer, xid, prog, vers, proc, cred=None, verf=None, rpcvers=RPC_VERSION):
    """Append a call header.  cred/verf: None (AUTH_NONE), an AuthSys, or (flavor, body).

    The caller then appends the arguments.
    """
    try:
        packer.append(_CALL_HEAD.pack(xid, CALL, rpcvers, prog, vers, proc))
    except struct.error as e:
        raise ValueError("cannot pack call header: %s" % e) from None
    _pack_opaque_auth(packer, cred)
    _pack_opaque_auth(packer, verf)


def decode_reply(u):
    """Decode a reply header; raises XdrError if malformed.

    On MSG_ACCEPTED SUCCESS, u is left at the results.
    """
    xid = u.unpack_uint()
    mtype = u.unpack_uint()
    if mtype != REPLY:
        raise XdrError("msg_type %d is not REPLY" % mtype)
    stat = u.unpack_uint()
    r = ReplyHeader(xid, stat)
    if stat == MSG_ACCEPTED:
        r.verf_flavor = u.unpack_uint()
        r.verf_body = u.unpack_opaque(MAX_AUTH_BYTES)
        r.accept_stat = a = u.unpack_uint()
        if a == PROG_MISMATCH:
            r.low = u.unpack_uint()
            r.high = u.unpack_uint()
        elif a not in _ACCEPT_STATS:
            raise XdrError("bad accept_stat %d" % a)
    elif stat == MSG_DENIED:
        r.reject_stat = rs = u.unpack_uint()
        if rs == RPC_MISMATCH:
            r.low = u.unpack_uint()
            r.high = u.unpack_uint()
        elif rs == AUTH_ERROR:
            r.auth_stat = u.unpack_uint()
        else:
            raise XdrError("bad reject_stat %d" % rs)
    else:
        raise XdrError("bad reply_stat %d" % stat)
    return r


# --------------------------------------------------------------------------
# NFSv3 argument encoders and result decoders

def _pack_set_time(p, t):
    if t is None:
        p.pack_uint(0)
    elif t is X.SERVER_TIME or t == X.SERVER_TIME:
        p.pack_uint(1)
    else:
        p.pack_uint(2)
        p.pack_uint(t[0])
        p.pack_uint(t[1])


def pack_sattr3(p, sa=X.SATTR3_NONE):
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
    """fattr3 -> (type, mode, nlink, uid, gid, size, used, (spec1, spec2), fsid, fileid, atime, mtime, ctime)."""
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


# --------------------------------------------------------------------------
# the client


class RpcClient:
    """One TCP connection (or UDP socket with udp=True) to a server on `port`, or over a socket
    the test connected itself (sock=, e.g. from a privileged source port)."""

    def __init__(self, port=None, host="127.0.0.1", timeout=30.0, udp=False, sock=None):
        self.udp = udp
        if sock is not None:
            self.sock = sock
        elif udp:
            self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.connect((host, port))
            self.sock.settimeout(timeout)
        else:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = record.RecordBuffer((4 << 20) + (1 << 16))      # a 4 MiB READ reply and its header
        self.pending = []
        self.last = None                 # the last reply record call() received

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data: bytes):
        if self.udp:
            self.sock.send(data)
        else:
            self.sock.sendall(data)

    def call_bytes(self, xid, prog, vers, proc, args=b"", cred=None):
        """The bytes of a call as sent: record-marked over TCP, a bare datagram over UDP."""
        p = Packer()
        pack_call(p, xid, prog, vers, proc, cred=cred)
        p.append(args)
        return bytes(p.get_buffer()) if self.udp else record.frame(p.get_buffer())

    def recv_record(self):
        """The next reply record (or datagram), or None when the server closed the connection."""
        if self.udp:
            return self.sock.recv(70000)
        while not self.pending:
            data = self.sock.recv(1 << 20)
            if not data:
                return None
            self.pending.extend(self.buf.feed(data))
        return self.pending.pop(0)

    def call(self, xid, prog, vers, proc, args=b"", cred=None):
        """Send a call, return (ReplyHeader, Unpacker at the results)."""
        self.send_raw(self.call_bytes(xid, prog, vers, proc, args, cred))
        rec = self.last = self.recv_record()
        assert rec is not None, "connection closed instead of a reply"
        u = Unpacker.from_bytes(rec)
        return decode_reply(u), u


class Nfs3:
    """NFSv3 and MOUNT calls by hand over an RpcClient; each returns (status, ...) from the reply."""

    def __init__(self, port, cred=ROOT_CRED, seen=None):
        self.rpc = RpcClient(port)
        self.cred = cred
        self.xids = itertools.count(0x5000)
        #: when a list: every reply record received is appended to it (tests that look for bytes
        #: that must never reach a client)
        self.seen = seen

    def close(self):
        self.rpc.close()

    def call(self, proc, args, cred=None, prog=NFS):
        h, u = self.rpc.call(next(self.xids), prog, 3, proc, args, cred=cred or self.cred)
        if self.seen is not None:
            self.seen.append(self.rpc.last)
        assert h.stat == MSG_ACCEPTED and h.accept_stat == SUCCESS, (h.stat, h.accept_stat)
        return u

    def mnt(self, path):
        p = Packer()
        p.pack_string(os.fsencode(path))
        u = self.call(1, p.get_buffer(), prog=MOUNT)
        assert u.unpack_uint() == 0
        return u.unpack_opaque(64)

    def lookup(self, dfh, name, cred=None):
        p = Packer()
        pack_diropargs3(p, dfh, name)
        u = self.call(3, p.get_buffer(), cred)
        st = u.unpack_uint()
        return st, (u.unpack_opaque(64) if st == 0 else None)

    def getattr(self, fh):
        p = Packer()
        p.pack_opaque(fh)
        u = self.call(1, p.get_buffer())
        st = u.unpack_uint()
        return st, (decode_fattr3(u) if st == 0 else None)

    @staticmethod
    def setattr_args(fh, sa, guard=None):
        p = Packer()
        p.pack_opaque(fh)
        pack_sattr3(p, sa)
        if guard is None:
            p.pack_uint(0)
        else:
            p.pack_uint(1)
            p.pack_uint(guard[0])
            p.pack_uint(guard[1])
        return p.get_buffer()

    def setattr(self, fh, sa, guard=None, cred=None):
        u = self.call(2, self.setattr_args(fh, sa, guard), cred)
        st = u.unpack_uint()
        return st, decode_wcc_data(u)

    @staticmethod
    def create_args(dfh, name, how, attr=X.SATTR3_NONE):
        p = Packer()
        pack_diropargs3(p, dfh, name)
        p.pack_uint(how)
        if how == 2:
            p.pack_fopaque(8, attr)
        else:
            pack_sattr3(p, attr)
        return p.get_buffer()

    @staticmethod
    def decode_diropres(u):
        st = u.unpack_uint()
        if st == 0:
            fh = decode_post_op_fh3(u)
            attr = decode_post_op_attr(u)
            return st, fh, attr, decode_wcc_data(u)
        return st, None, None, decode_wcc_data(u)

    def create(self, dfh, name, how=0, attr=X.SATTR3_NONE, cred=None):
        return self.decode_diropres(self.call(8, self.create_args(dfh, name, how, attr), cred))

    def mkdir(self, dfh, name, sa=X.SATTR3_NONE, cred=None):
        p = Packer()
        pack_diropargs3(p, dfh, name)
        pack_sattr3(p, sa)
        return self.decode_diropres(self.call(9, p.get_buffer(), cred))

    @staticmethod
    def write_args(fh, offset, data, stable):
        p = Packer()
        p.pack_opaque(fh)
        p.pack_uhyper(offset)
        p.pack_uint(len(data))
        p.pack_uint(stable)
        p.pack_opaque(data)
        return p.get_buffer()

    def write(self, fh, offset, data, stable=2, cred=None):
        """-> (status, count, committed, verf)"""
        u = self.call(7, self.write_args(fh, offset, data, stable), cred)
        st = u.unpack_uint()
        decode_wcc_data(u)
        if st != 0:
            return st, None, None, None
        return st, u.unpack_uint(), u.unpack_uint(), u.unpack_fopaque(8)

    def commit(self, fh, offset=0, count=0):
        p = Packer()
        p.pack_opaque(fh)
        p.pack_uhyper(offset)
        p.pack_uint(count)
        u = self.call(21, p.get_buffer())
        st = u.unpack_uint()
        decode_wcc_data(u)
        return st, (u.unpack_fopaque(8) if st == 0 else None)

    @staticmethod
    def dirop_args(dfh, name):
        p = Packer()
        pack_diropargs3(p, dfh, name)
        return p.get_buffer()

    def remove(self, dfh, name, cred=None):
        return self.call(12, self.dirop_args(dfh, name), cred).unpack_uint()

    def rmdir(self, dfh, name, cred=None):
        return self.call(13, self.dirop_args(dfh, name), cred).unpack_uint()

    @staticmethod
    def rename_args(fdfh, fname, tdfh, tname):
        p = Packer()
        pack_diropargs3(p, fdfh, fname)
        pack_diropargs3(p, tdfh, tname)
        return p.get_buffer()

    def rename(self, fdfh, fname, tdfh, tname, cred=None):
        return self.call(14, self.rename_args(fdfh, fname, tdfh, tname), cred).unpack_uint()

    def read(self, fh, offset=0, count=65536, cred=None):
        """-> (status, data or None, eof or None)"""
        p = Packer()
        p.pack_opaque(fh)
        p.pack_uhyper(offset)
        p.pack_uint(count)
        u = self.call(6, p.get_buffer(), cred)
        st = u.unpack_uint()
        decode_post_op_attr(u)
        if st != 0:
            return st, None, None
        u.unpack_uint()
        eof = u.unpack_bool()
        return st, u.unpack_opaque(1 << 24), eof

    def access(self, fh, mask=0x3F, cred=None):
        p = Packer()
        p.pack_opaque(fh)
        p.pack_uint(mask)
        return self.call(4, p.get_buffer(), cred).unpack_uint()

    def readlink(self, fh, cred=None):
        """-> (status, target or None)"""
        p = Packer()
        p.pack_opaque(fh)
        u = self.call(5, p.get_buffer(), cred)
        st = u.unpack_uint()
        decode_post_op_attr(u)
        return st, (u.unpack_opaque(4096) if st == 0 else None)

    def link(self, fh, dfh, name, cred=None):
        p = Packer()
        p.pack_opaque(fh)
        pack_diropargs3(p, dfh, name)
        return self.call(15, p.get_buffer(), cred).unpack_uint()

    def readdirplus(self, dfh, cred=None, maxcount=65536):
        """Every page of READDIRPLUS: -> (status, [(name, fh or None)]); the status of the first
        page that failed, if any (the entries so far are returned with it)."""
        out = []
        cookie, verf = 0, b"\0" * 8
        while True:
            p = Packer()
            p.pack_opaque(dfh)
            p.pack_uhyper(cookie)
            p.pack_fopaque(8, verf)
            p.pack_uint(maxcount // 4)
            p.pack_uint(maxcount)
            u = self.call(17, p.get_buffer(), cred)
            st = u.unpack_uint()
            decode_post_op_attr(u)
            if st != 0:
                return st, out
            verf = u.unpack_fopaque(8)
            while u.unpack_bool():
                u.unpack_uhyper()
                name = u.unpack_opaque(4096)
                cookie = u.unpack_uhyper()
                decode_post_op_attr(u)
                out.append((name, decode_post_op_fh3(u)))
            if u.unpack_bool():
                return 0, out
