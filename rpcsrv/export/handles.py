"""File handles: their byte layout, the keyed MAC that seals them, and the kernel's own handles.

Owns: the keys derived from the export's handle key (the key itself and the
state directory it lives in: rpcsrv.export.state), packing a handle for an object and parsing one back
(BADHANDLE for anything malformed or forged, STALE for an authentic handle
of another export or mode), and the name_to_handle_at / open_by_handle_at
wrappers. No caches, no locks: a HandleCodec is immutable after __init__ and
shared by every worker thread.

Layouts (big endian, at most NFS3_FHSIZE = 64 bytes, the last 12 bytes a
keyed BLAKE2s-96 MAC of everything before them):
  kernel  [0] version 0x01  [1] kind 0x01 | 0x02  [2:6] export id
          [6] handle_type (u8)  [7] n  [8:8+n] f_handle
          kind 0x02 only: [ptype u8][pn u8][pn bytes: the parent's f_handle]
          (the parent is left out when it does not fit)
  inode   [0] version 0x01  [1] kind 0x03  [2:6] export id
          [6:14] st_ino u64  [14:18] generation u32 (0 = unknown)
          [18:26] parent st_ino u64 (a search hint)  (38 bytes with the MAC)
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import hmac
import os
import struct

from ..proto.nfs3const import NFS3_FHSIZE, NfsStat3
from .errors import NfsError

__all__ = ["HandleCodec", "FH_VERSION", "FH_MAC_LEN", "kernel_handle", "open_kernel_handle", "KERNEL", "INODE"]

FH_VERSION = 0x01
FH_MAC_LEN = 12
_KIND_KERNEL = 0x01         # kernel handle of the object
_KIND_KERNEL_PARENT = 0x02  # kernel handle of the object + of its parent dir
_KIND_INODE = 0x03          # fallback: st_ino, generation, parent st_ino
_HDR = 6                    # version, kind, export id (4)
MIN_FH = _HDR + 2 + FH_MAC_LEN
_U32 = 0xFFFFFFFF
#: parse() results: ("k", (htype, f_handle), parent | None) or ("i", ino, gen, parent_ino)
KERNEL, INODE = "k", "i"

# --------------------------------------------------------------------------
# kernel file handles through ctypes

_AT_EMPTY_PATH = 0x1000
_MAX_HANDLE_SZ = 128

try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _name_to_handle_at = _libc.name_to_handle_at
    _name_to_handle_at.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p,
                                   ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    _name_to_handle_at.restype = ctypes.c_int
    _open_by_handle_at = _libc.open_by_handle_at
    _open_by_handle_at.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    _open_by_handle_at.restype = ctypes.c_int
except (OSError, AttributeError):  # pragma: no cover - non-glibc
    _name_to_handle_at = _open_by_handle_at = None


def kernel_handle(fd: int) -> tuple[int, bytes, int]:
    """(handle_type, f_handle, mount_id) of the object behind ``fd`` (never follows)."""
    if _name_to_handle_at is None:
        raise OSError(errno.ENOSYS, "name_to_handle_at unavailable")
    buf = ctypes.create_string_buffer(8 + _MAX_HANDLE_SZ)
    struct.pack_into("=Ii", buf, 0, _MAX_HANDLE_SZ, 0)
    mnt = ctypes.c_int(0)
    if _name_to_handle_at(fd, b"", buf, ctypes.byref(mnt), _AT_EMPTY_PATH) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    nbytes, htype = struct.unpack_from("=Ii", buf, 0)
    return htype, bytes(buf.raw[8:8 + nbytes]), mnt.value


def open_kernel_handle(mount_fd: int, htype: int, hbytes: bytes, flags: int) -> int:
    """open_by_handle_at: a new fd (caller closes) or OSError."""
    if _open_by_handle_at is None:
        raise OSError(errno.ENOSYS, "open_by_handle_at unavailable")
    buf = ctypes.create_string_buffer(struct.pack("=Ii", len(hbytes), htype) + hbytes)
    fd = _open_by_handle_at(mount_fd, buf, flags)
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return fd


# --------------------------------------------------------------------------
# --------------------------------------------------------------------------
# the codec


class HandleCodec:
    """Packs and parses one export's handles (see the module doc for the layouts).

    Derives, from the state-dir key and the export's real path: the MAC key,
    the READDIR cookie and verifier keys (``name_key``, ``verf_key``), the
    4-byte export id in every handle and the 64-bit fsid of fattr3.
    """

    __slots__ = ("mac_key", "name_key", "verf_key", "export_id", "fsid")

    def __init__(self, key: bytes, real_path: bytes):
        master = hashlib.blake2s(key, person=b"nfsbmstr").digest()

        def sub(label: bytes) -> bytes:
            return hashlib.blake2s(label, key=master).digest()

        self.mac_key = sub(b"fh-mac")
        self.name_key = sub(b"readdir-cookie")
        self.verf_key = sub(b"readdir-verf")
        ident = hashlib.blake2s(real_path, key=sub(b"export-id")).digest()
        self.export_id = ident[:4]
        #: fattr3.fsid: stable for this export across restarts
        self.fsid = int.from_bytes(ident[4:12], "big")

    def mac(self, body: bytes) -> bytes:
        return hashlib.blake2s(body, key=self.mac_key, digest_size=FH_MAC_LEN).digest()

    def _seal(self, body: bytes) -> bytes:
        fh = body + self.mac(body)
        if len(fh) > NFS3_FHSIZE:
            raise NfsError(NfsStat3.SERVERFAULT, "file handle too large")
        return fh

    def pack_kernel(self, htype: int, hb: bytes, parent: tuple[int, bytes] | None) -> bytes:
        """A kernel-mode handle; the parent's kernel handle is carried when it fits."""
        if not 0 <= htype <= 255:
            raise NfsError(NfsStat3.SERVERFAULT, f"kernel handle type {htype} not encodable")
        body = bytes((FH_VERSION, _KIND_KERNEL)) + self.export_id + bytes((htype, len(hb))) + hb
        if parent is not None:
            ptype, pb = parent
            ext = bytes((ptype, len(pb))) + pb
            if 0 <= ptype <= 255 and len(body) + len(ext) + FH_MAC_LEN <= NFS3_FHSIZE:
                body = bytes((FH_VERSION, _KIND_KERNEL_PARENT)) + body[2:] + ext
        return self._seal(body)

    def pack_inode(self, ino: int, gen: int, pino: int) -> bytes:
        """An inode-mode handle (38 bytes)."""
        body = (bytes((FH_VERSION, _KIND_INODE)) + self.export_id
                + struct.pack(">QIQ", ino, gen & _U32, pino))
        return self._seal(body)

    def parse(self, fh, mode: str) -> tuple:
        """-> (KERNEL, (htype, hb), parent-or-None) | (INODE, ino, gen, pino).

        BADHANDLE: not bytes, bad length or version, bad MAC, inconsistent
        lengths, unknown kind. STALE: another export's handle, or a handle of
        the other mode than the export's ``mode`` ("kernel" or "inode").
        """
        if not isinstance(fh, bytes):
            try:
                fh = bytes(fh)
            except TypeError:
                raise NfsError(NfsStat3.BADHANDLE, "not bytes") from None
        n = len(fh)
        if n < MIN_FH or n > NFS3_FHSIZE or fh[0] != FH_VERSION:
            raise NfsError(NfsStat3.BADHANDLE, "bad length or version")
        body, mac = fh[:-FH_MAC_LEN], fh[-FH_MAC_LEN:]
        if not hmac.compare_digest(mac, self.mac(body)):
            raise NfsError(NfsStat3.BADHANDLE, "bad MAC")
        kind = body[1]
        if body[2:6] != self.export_id:
            raise NfsError(NfsStat3.STALE, "handle of another export")
        if kind in (_KIND_KERNEL, _KIND_KERNEL_PARENT):
            if mode != "kernel":
                raise NfsError(NfsStat3.STALE, "kernel handle but export in inode mode")
            htype, hn = body[6], body[7]
            end = 8 + hn
            hb = body[8:end]
            parent = None
            pn = 0
            if kind == _KIND_KERNEL_PARENT:
                if len(body) < end + 2:
                    raise NfsError(NfsStat3.BADHANDLE, "truncated parent")
                ptype, pn = body[end], body[end + 1]
                pb = body[end + 2:end + 2 + pn]
                end += 2 + pn
                parent = (ptype, pb)
            if len(hb) != hn or end != len(body) or (parent is not None and len(parent[1]) != pn):
                raise NfsError(NfsStat3.BADHANDLE, "inconsistent lengths")
            return (KERNEL, (htype, hb), parent)
        if kind == _KIND_INODE:
            if len(body) != _HDR + 20:
                raise NfsError(NfsStat3.BADHANDLE, "inconsistent lengths")
            if mode != "inode":
                raise NfsError(NfsStat3.STALE, "inode handle but export in kernel mode")
            ino, gen, pino = struct.unpack_from(">QIQ", body, _HDR)
            return (INODE, ino, gen, pino)
        raise NfsError(NfsStat3.BADHANDLE, "unknown kind")
