"""A small ONC RPC client codec (RFC 5531 / 4506) for the tools that speak RPC without python-libnfs.

python-libnfs covers the NFS load; the UDP flood and the fuzzer need raw
calls: this module packs call headers (AUTH_NONE or AUTH_SYS), XDR basics
and record marking, and reads reply headers. It is loadgen's own, so loadgen
never imports rpcsrv (it is an outside client of the server it measures).

Pure functions and one small blocking TCP client; no state shared between
threads.
"""

from __future__ import annotations

import socket
import struct

__all__ = ["NFS_PROGRAM", "NFS_V3", "MOUNT_PROGRAM", "MOUNT_V3", "RpcWireError", "u32", "u64", "opaque",
           "string", "auth_sys", "pack_call", "frame", "RecordReader", "parse_reply", "TcpRpcClient"]

NFS_PROGRAM, NFS_V3 = 100003, 3
MOUNT_PROGRAM, MOUNT_V3 = 100005, 3
_CALL = struct.Struct(">6I")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_AUTH_NONE = b"\0" * 8


class RpcWireError(Exception):
    """A reply that is not an accepted SUCCESS, or a malformed one; the message says which."""


def u32(v: int) -> bytes:
    return _U32.pack(v)


def u64(v: int) -> bytes:
    return _U64.pack(v)


def opaque(data: bytes) -> bytes:
    """Variable-length opaque (and string): length, bytes, zero padding to 4."""
    return _U32.pack(len(data)) + data + b"\0" * ((-len(data)) & 3)


string = opaque


def auth_sys(uid: int = 0, gid: int = 0, gids=(0,), machine: bytes = b"loadgen", stamp: int = 1) -> bytes:
    """An AUTH_SYS opaque_auth (flavor 1, length, authsys_parms)."""
    body = u32(stamp) + opaque(machine) + u32(uid) + u32(gid) + u32(len(gids)) + b"".join(u32(g) for g in gids)
    return u32(1) + opaque(body)


def pack_call(xid: int, prog: int, vers: int, proc: int, args: bytes = b"", cred: bytes | None = None) -> bytes:
    """A call: header, credential (AUTH_NONE unless an opaque_auth from auth_sys()), an AUTH_NONE
    verifier, then the arguments."""
    return _CALL.pack(xid, 0, 2, prog, vers, proc) + (cred or _AUTH_NONE) + _AUTH_NONE + args


def frame(body: bytes, max_fragment: int | None = None) -> bytes:
    """Record marking: body in fragments of at most max_fragment bytes, the last one flagged."""
    if max_fragment is None or max_fragment >= len(body):
        return _U32.pack(0x80000000 | len(body)) + body
    out = []
    for i in range(0, len(body), max_fragment):
        chunk = body[i:i + max_fragment]
        last = i + max_fragment >= len(body)
        out.append(_U32.pack((0x80000000 if last else 0) | len(chunk)) + chunk)
    return b"".join(out)


class RecordReader:
    """Reassembles records from a byte stream: feed(data) -> the records completed by it."""

    def __init__(self, max_record: int = 1 << 24):
        self.max_record = max_record
        self._buf = bytearray()
        self._rec = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out = []
        while len(self._buf) >= 4:
            marker = _U32.unpack_from(self._buf)[0]
            n = marker & 0x7FFFFFFF
            if len(self._buf) < 4 + n:
                break
            self._rec += self._buf[4:4 + n]
            del self._buf[:4 + n]
            if len(self._rec) > self.max_record:
                raise RpcWireError("record over %d bytes" % self.max_record)
            if marker & 0x80000000:
                out.append(bytes(self._rec))
                self._rec.clear()
        return out


def parse_reply(data: bytes) -> tuple[int, int]:
    """(xid, offset of the results) of an accepted SUCCESS reply; RpcWireError otherwise."""
    if len(data) < 12:
        raise RpcWireError("reply of %d bytes" % len(data))
    xid, mtype, stat = struct.unpack_from(">3I", data)
    if mtype != 1:
        raise RpcWireError("xid %#x: not a reply" % xid)
    if stat != 0:
        raise RpcWireError("xid %#x: call denied (reject_stat %d)" % (
            xid, _U32.unpack_from(data, 12)[0] if len(data) >= 16 else -1))
    if len(data) < 24:
        raise RpcWireError("xid %#x: short accepted reply" % xid)
    vlen = _U32.unpack_from(data, 16)[0]
    off = 20 + vlen + ((-vlen) & 3)
    if len(data) < off + 4:
        raise RpcWireError("xid %#x: short accepted reply" % xid)
    acc = _U32.unpack_from(data, off)[0]
    if acc != 0:
        raise RpcWireError("xid %#x: accept_stat %d" % (xid, acc))
    return xid, off + 4


class TcpRpcClient:
    """One blocking TCP connection: call() sends a record and returns the results of the reply."""

    def __init__(self, host: str, port: int, timeout: float = 5.0, cred: bytes | None = None):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.reader = RecordReader()
        self.cred = cred

    def call(self, xid: int, prog: int, vers: int, proc: int, args: bytes = b"") -> bytes:
        self.sock.sendall(frame(pack_call(xid, prog, vers, proc, args, self.cred)))
        while True:
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("connection closed by the server")
            recs = self.reader.feed(data)
            if recs:
                rxid, off = parse_reply(recs[0])
                if rxid != xid:
                    raise RpcWireError("reply to xid %#x, expected %#x" % (rxid, xid))
                return recs[0][off:]

    def close(self) -> None:
        self.sock.close()
