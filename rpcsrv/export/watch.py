"""inotify for the containment proofs: watches on objects, and the events that end proofs.

Owns: one inotify instance (non-blocking, close-on-exec), adding a watch on the object behind a
descriptor (through its /proc/self/fd link, so an O_PATH descriptor works and nothing is looked
up by name), removing watches, reading the queued events, and FIONREAD (how many bytes of
events are queued: one ioctl, the cost of "did anything happen?"). Also `local_fs`, whether a
file system is one whose every change goes through this kernel's VFS, and so through
fsnotify (a network or FUSE file system can change under us without an event).

No policy and no locks: rpcsrv.export.contain decides what a watch means and serialises the
reads. An Inotify is closed by its owner.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct
import termios

__all__ = ["Inotify", "local_fs", "IN_ATTRIB", "IN_MOVE_SELF", "IN_DELETE_SELF", "IN_IGNORED",
           "IN_Q_OVERFLOW", "IN_UNMOUNT", "DIR_MASK", "FILE_MASK", "LOCAL_FS_MAGIC"]

IN_ATTRIB = 0x00000004          # metadata, including the link count (link, unlink, rename over)
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000          # the watch is gone (removed, or the inode freed)
#: what ends a directory's proof: it moved (so did everything below it), or it is gone
DIR_MASK = IN_MOVE_SELF | IN_DELETE_SELF
#: what ends a non-directory's proof: any change of its links
FILE_MASK = IN_MOVE_SELF | IN_DELETE_SELF | IN_ATTRIB

_EVENT = struct.Struct("=iIII")  # wd, mask, cookie, len (then len bytes of name)
_INT = struct.Struct("=i")

#: statfs f_type of file systems whose changes all pass through the local VFS (and fsnotify):
#: ext2/3/4, xfs, btrfs, tmpfs, f2fs, reiserfs, jfs, bcachefs. Others (nfs, cifs, fuse,
#: overlay, ...) are exported without kept proofs: every use is proven afresh.
LOCAL_FS_MAGIC = frozenset((0xEF53, 0x58465342, 0x9123683E, 0x01021994, 0xF2F52010, 0x52654973,
                            0x3153464A, 0xCA451A4E))

try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _init1 = _libc.inotify_init1
    _init1.argtypes = [ctypes.c_int]
    _init1.restype = ctypes.c_int
    _add = _libc.inotify_add_watch
    _add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    _add.restype = ctypes.c_int
    _rm = _libc.inotify_rm_watch
    _rm.argtypes = [ctypes.c_int, ctypes.c_int]
    _rm.restype = ctypes.c_int
    _fstatfs = _libc.fstatfs
    _fstatfs.argtypes = [ctypes.c_int, ctypes.c_void_p]
    _fstatfs.restype = ctypes.c_int
except (OSError, AttributeError):  # pragma: no cover - not glibc
    _init1 = _add = _rm = _fstatfs = None


def local_fs(fd: int) -> bool:
    """Does the file system behind ``fd`` change only through this kernel (LOCAL_FS_MAGIC)?"""
    if _fstatfs is None:
        return False
    buf = ctypes.create_string_buffer(256)          # struct statfs; f_type is its first word
    if _fstatfs(fd, buf) != 0:
        return False
    f_type = struct.unpack_from("=q" if ctypes.sizeof(ctypes.c_long) == 8 else "=i", buf, 0)[0]
    return (f_type & 0xFFFFFFFF) in LOCAL_FS_MAGIC


class Inotify:
    """One inotify instance. ``Inotify.open()`` is None where inotify cannot be had (no more
    instances for this user, a kernel without it)."""

    __slots__ = ("fd", "_n")

    def __init__(self, fd: int):
        self.fd = fd
        self._n = bytearray(4)

    @classmethod
    def open(cls):
        if _init1 is None:
            return None
        fd = _init1(os.O_NONBLOCK | os.O_CLOEXEC)
        return None if fd < 0 else cls(fd)

    def add(self, fd: int, mask: int):
        """Watch the object behind ``fd`` for ``mask``; its watch descriptor, or None (watch
        limit reached, no read permission). The same object always gets the same descriptor."""
        wd = _add(self.fd, b"/proc/self/fd/%d" % fd, mask)
        return wd if wd >= 0 else None

    def remove(self, wd: int) -> None:
        _rm(self.fd, wd)            # EINVAL when the kernel dropped it already: nothing to do

    def pending(self) -> int:
        """Bytes of events queued (0: nothing happened since the last read)."""
        fcntl.ioctl(self.fd, termios.FIONREAD, self._n, True)
        return _INT.unpack(self._n)[0]

    def read(self, n: int = 65536) -> list[tuple[int, int]]:
        """The queued events as (wd, mask), reading ``n`` bytes (pending()'s count: what was
        queued when it was asked; later events stay for the next read); [] when none."""
        while True:
            try:
                data = os.read(self.fd, max(n, 4096))
            except BlockingIOError:
                return []
            except InterruptedError:   # pragma: no cover
                continue
            break
        out = []
        off = 0
        while off + _EVENT.size <= len(data):
            wd, mask, _cookie, ln = _EVENT.unpack_from(data, off)
            out.append((wd, mask))
            off += _EVENT.size + ln
        return out

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)
