"""The compiled fast path against the Python path: the same stream of calls, the same replies.

Two servers run side by side, one with the fast path on and one with it off, each on its own copy
of the same tree (built by the same code, so the same names, sizes, modes and owners). A script of
calls goes to both: every procedure the fast path serves, with bad, forged and stale handles,
truncated and over-long arguments, AUTH_NONE, other users, permission failures, READDIRPLUS paging
with good and bad cookies, and retransmissions of the non-idempotent calls (the reply cache). Each
server gets the script with its own handles (bound from its own earlier replies).

The replies must be equal byte for byte except for the fields that cannot be equal across two
export directories, which the decoder below names and replaces before comparing:
  handles and fileids  replaced by the order of their first appearance (the first new handle in
                       each server's replies is H1, and so on: the same object in both scripts);
                       fileids are named afresh after a REMOVE, whose inode number the file
                       system may hand to a new file in one export and not in the other;
  fsid                 one per export; compared as "the export's";
  times                atime, mtime, ctime (fattr3 and wcc), which the clock decides;
  verifiers            the write verifier (random per server start) and the READDIR cookie
                       verifier (a keyed hash of the directory's inode number);
  FSSTAT space         bytes and files free, which the other server's writes change.
Everything else (statuses, sizes, modes, owners, link counts, counts, eof flags, data, names,
READDIR cookies and the page boundaries, RPC headers and lengths) must be identical.
"""
import os
import struct

import pytest
from prometheus_client import CollectorRegistry

from rpcclient import RpcClient
from rpcsrv.proto import rpcmsg
from rpcsrv.server import Server, ServerConfig

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the fast path serves kernel handles (root)")

NFS, MOUNT = 100003, 100005
ROOT = rpcmsg.AuthSys(1, b"diff", 0, 0, [0])
USER = rpcmsg.AuthSys(1, b"diff", 1000, 1000, [1000])
OTHER = rpcmsg.AuthSys(1, b"diff", 2000, 2000, [2000, 3000])


def u32(v):
    return struct.pack(">I", v)


def u64(v):
    return struct.pack(">Q", v)


def opq(b):
    return u32(len(b)) + b + b"\0" * ((-len(b)) & 3)


def sattr(mode=None, uid=None, gid=None, size=None, atime=0, mtime=0):
    out = b""
    for v in (mode, uid, gid):
        out += u32(0) if v is None else u32(1) + u32(v)
    out += u32(0) if size is None else u32(1) + u64(size)
    for t in (atime, mtime):
        out += u32(t) if isinstance(t, int) else u32(2) + u32(t[0]) + u32(t[1])
    return out


def build_tree(root):
    os.makedirs(root / "dir" / "sub")
    os.makedirs(root / "sticky")
    os.chmod(root / "sticky", 0o1777)
    (root / "data.bin").write_bytes(bytes(range(256)) * 40 + b"tail!")      # 10245 bytes
    (root / "small.txt").write_bytes(b"hello fast path\n")
    (root / "private").write_bytes(b"secret")
    os.chmod(root / "private", 0o600)
    (root / "userfile").write_bytes(b"u" * 100)
    os.chown(root / "userfile", 1000, 1000)
    (root / "sticky" / "owned-by-2000").write_bytes(b"x")
    os.chown(root / "sticky" / "owned-by-2000", 2000, 2000)
    for i in range(40):
        (root / "dir" / ("entry-%02d-%s" % (i, "n" * (i % 7)))).write_bytes(b"e" * i)
    os.symlink("small.txt", root / "link")
    os.chmod(root / "dir" / "sub", 0o700)


class Run:
    """One server and the script's bindings against it."""

    def __init__(self, tmp, fast, block=1 << 20):
        export = tmp / "export"
        build_tree(export)
        self.block = block
        cfg = ServerConfig(export=str(export), port=0, threads=2, arena_mib=64 if block <= 1 << 20 else 128,
                           fast_path=fast, state_dir=str(tmp.parent / "state"), write_verifier=os.urandom(8),
                           max_block_size=block)
        self.server = Server(cfg, registry=CollectorRegistry())
        assert (self.server.fast is not None) == fast, self.server.fast_unusable
        self.server.start()
        self.rpc = RpcClient(self.server.port)
        self.export = export
        self.h = {}
        self.replies = []
        self.xid = 0x10000

    def local(self, label, fn):
        """A change a local process makes to the export between two calls (the same in both
        runs); the normalizer names fileids afresh after it, as after a REMOVE."""
        fn(self.export, self.export.parent / "archive")
        self.replies.append((label, None, None, None))

    def call(self, prog, proc, args, cred=ROOT, xid=None, label=""):
        if xid is None:
            self.xid += 1
            xid = self.xid
        self.rpc.send_raw(self.rpc.call_bytes(xid, prog, 3, proc, args, cred))
        rec = self.rpc.recv_record()
        assert rec is not None, label
        self.replies.append((label, prog, proc, rec))
        return rec

    def call_fragments(self, prog, proc, args, label, cuts):
        """A call sent as fragments: the body cut at `cuts` (record offsets), each cut an empty
        fragment as well as a boundary, and an empty last fragment after the data."""
        self.xid += 1
        body = self.rpc.call_bytes(self.xid, prog, 3, proc, args, ROOT)[4:]
        out, prev = b"", 0
        for cut in list(cuts) + [len(body)]:
            out += struct.pack(">I", cut - prev) + body[prev:cut] + struct.pack(">I", 0)
            prev = cut
        self.rpc.send_raw(out + struct.pack(">I", 0x80000000))
        rec = self.rpc.recv_record()
        assert rec is not None, label
        self.replies.append((label, prog, proc, rec))
        return rec

    def close(self):
        self.rpc.close()
        self.server.stop()


def results(rec):
    """The bytes after an accepted SUCCESS header, or None."""
    xid, mtype, stat, vf, vl = struct.unpack_from(">5I", rec)
    if stat != 0:                                   # MSG_DENIED: no verifier follows
        return None
    acc = struct.unpack_from(">I", rec, 20 + vl)[0]
    return rec[24 + vl:] if stat == 0 and acc == 0 else None


def bind_fh(rec):
    """The handle of a LOOKUP (fh3) or CREATE (post_op_fh3) reply, or None."""
    res = results(rec)
    if res is None or struct.unpack_from(">I", res)[0] != 0:
        return None
    return res[8:8 + struct.unpack_from(">I", res, 4)[0]]


def bind_create_fh(rec):
    res = results(rec)
    if res is None or struct.unpack_from(">I", res)[0] != 0 or struct.unpack_from(">I", res, 4)[0] != 1:
        return None
    return res[12:12 + struct.unpack_from(">I", res, 8)[0]]


def script(r):
    """The stream of calls. `r.h` binds names to this server's handles as replies come."""
    h = r.h
    c = r.call
    res = results(c(MOUNT, 1, opq(os.fsencode(r.server.export.path)), label="mnt"))
    h["root"] = res[8:8 + struct.unpack_from(">I", res, 4)[0]]
    c(NFS, 0, b"", label="null")
    for name in ("data.bin", "small.txt", "private", "userfile", "dir", "sticky", "link"):
        h[name] = bind_fh(c(NFS, 3, opq(h["root"]) + opq(name.encode()), label="lookup " + name))
    h["sub"] = bind_fh(c(NFS, 3, opq(h["dir"]) + opq(b"sub"), label="lookup sub"))
    h["owned"] = bind_fh(c(NFS, 3, opq(h["sticky"]) + opq(b"owned-by-2000"), label="lookup owned"))
    # -- lookups that fail, and names the Python path answers
    for name in (b"missing", b"a" * 256, b"bad/name", b"", b".", b"..", b"x\0y"):
        c(NFS, 3, opq(h["root"]) + opq(name), label="lookup %r" % name[:10])
    c(NFS, 3, opq(h["small.txt"]) + opq(b"x"), label="lookup in a file")
    c(NFS, 3, opq(h["sub"]) + opq(b"x"), cred=USER, label="lookup without x")
    c(NFS, 3, opq(h["dir"]) + opq(b"entry-03-nnn"), cred=None, label="lookup as AUTH_NONE")
    # -- getattr / access / fsstat / fsinfo, with bad and foreign handles
    bad = bytearray(h["data.bin"])
    bad[-1] ^= 1
    for label, fh in (("root", h["root"]), ("data", h["data.bin"]), ("link", h["link"]), ("bad mac", bytes(bad)),
                      ("short", h["root"][:10]), ("zero", b"\0" * 40), ("long", b"\1" * 64)):
        c(NFS, 1, opq(fh), label="getattr " + label)
    c(NFS, 1, opq(h["root"]) + b"\0\0\0\0", label="getattr trailing bytes")
    c(NFS, 1, b"\0\0", label="getattr truncated")
    c(NFS, 1, u32(65) + b"\0" * 68, label="getattr fh over 64")
    for cred in (ROOT, USER, OTHER, None):
        for name in ("data.bin", "private", "dir", "sub", "userfile"):
            c(NFS, 4, opq(h[name]) + u32(0x3F), cred=cred, label="access %s" % name)
    c(NFS, 4, opq(h["data.bin"]) + u32(0x5), label="access subset")
    for fh in (h["root"], h["data.bin"]):
        c(NFS, 18, opq(fh), label="fsstat")
        c(NFS, 19, opq(fh), label="fsinfo")
    # -- read
    for off, cnt in ((0, 4096), (0, 10245), (10240, 100), (10245, 10), (99999, 10), (0, 0), (1, 3),
                     (5, 1 << 20), (2 ** 63, 4)):
        c(NFS, 6, opq(h["data.bin"]) + u64(off) + u32(cnt), label="read %d+%d" % (off, cnt))
    c(NFS, 6, opq(h["private"]) + u64(0) + u32(10), cred=USER, label="read denied")
    c(NFS, 6, opq(h["dir"]) + u64(0) + u32(10), label="read a directory")
    c(NFS, 6, opq(h["link"]) + u64(0) + u32(10), label="read a symlink")
    c(NFS, 6, opq(h["data.bin"]) + u64(0), label="read truncated args")
    # -- write and commit
    for off, data, stable in ((0, b"W" * 5000, 0), (4999, b"z", 1), (10245, b"appended", 2), (20000, b"hole", 0)):
        c(NFS, 7, opq(h["data.bin"]) + u64(off) + u32(len(data)) + u32(stable) + opq(data),
          label="write %d+%d/%d" % (off, len(data), stable))
    c(NFS, 7, opq(h["data.bin"]) + u64(0) + u32(5) + u32(0) + opq(b"four"), label="write count mismatch")
    c(NFS, 7, opq(h["data.bin"]) + u64(0) + u32(4) + u32(3) + opq(b"four"), label="write bad stable")
    c(NFS, 7, opq(h["data.bin"]) + u64(2 ** 63 - 2) + u32(4) + u32(0) + opq(b"four"), label="write FBIG")
    c(NFS, 7, opq(h["private"]) + u64(0) + u32(4) + u32(0) + opq(b"four"), cred=USER, label="write denied")
    c(NFS, 7, opq(h["userfile"]) + u64(0) + u32(4) + u32(2) + opq(b"mine"), cred=USER, label="write as owner")
    c(NFS, 7, opq(h["dir"]) + u64(0) + u32(4) + u32(0) + opq(b"four"), label="write a directory")
    c(NFS, 7, opq(h["data.bin"]) + u64(0) + u32(4) + u32(0) + opq(b"four") + b"tail", label="write trailing")
    c(NFS, 21, opq(h["data.bin"]) + u64(0) + u32(0), label="commit")
    c(NFS, 21, opq(h["dir"]) + u64(0) + u32(0), label="commit a directory")
    for off, cnt in ((0, 30000), (19990, 100)):
        c(NFS, 6, opq(h["data.bin"]) + u64(off) + u32(cnt), label="read back %d" % off)
    # -- create
    h["new1"] = bind_create_fh(c(NFS, 8, opq(h["root"]) + opq(b"new1") + u32(0) + sattr(mode=0o640),
                                 label="create unchecked"))
    c(NFS, 8, opq(h["root"]) + opq(b"new1") + u32(0) + sattr(size=3), label="create unchecked existing")
    c(NFS, 8, opq(h["root"]) + opq(b"new1") + u32(1) + sattr(), label="create guarded existing")
    c(NFS, 8, opq(h["root"]) + opq(b"dir") + u32(0) + sattr(), label="create over a directory")
    c(NFS, 8, opq(h["root"]) + opq(b"g") + u32(1) + sattr(mode=0o2755, gid=3000), cred=OTHER,
      label="create setgid in another group")
    c(NFS, 8, opq(h["root"]) + opq(b"u2") + u32(0) + sattr(uid=5), cred=USER, label="create giving away")
    c(NFS, 8, opq(h["sub"]) + opq(b"x") + u32(0) + sattr(), cred=USER, label="create denied")
    for name in (b".", b"..", b"a/b", b"n" * 256):
        c(NFS, 8, opq(h["root"]) + opq(name) + u32(0) + sattr(), label="create %r" % name[:8])
    verf = b"VERF0001"
    h["ex"] = bind_create_fh(c(NFS, 8, opq(h["root"]) + opq(b"ex") + u32(2) + verf, label="create exclusive"))
    c(NFS, 8, opq(h["root"]) + opq(b"ex") + u32(2) + verf, label="create exclusive again (same verf)")
    c(NFS, 8, opq(h["root"]) + opq(b"ex") + u32(2) + b"VERF0002", label="create exclusive other verf")
    c(NFS, 8, opq(h["root"]) + opq(b"times") + u32(0) + sattr(mode=0o600, size=7, atime=(1, 2), mtime=(3, 4)),
      label="create with times and size")
    # -- setattr
    c(NFS, 2, opq(h["new1"]) + sattr(mode=0o4711) + u32(0), label="setattr mode")
    c(NFS, 2, opq(h["new1"]) + sattr(uid=1000, gid=1000) + u32(0), label="setattr chown (kills setuid)")
    c(NFS, 2, opq(h["new1"]) + sattr(size=100) + u32(0), label="setattr size")
    c(NFS, 2, opq(h["new1"]) + sattr(atime=1, mtime=(1000, 5)) + u32(0), label="setattr times")
    c(NFS, 2, opq(h["new1"]) + sattr(mode=0o600) + u32(1) + u32(1) + u32(2), label="setattr guard mismatch")
    c(NFS, 2, opq(h["new1"]) + sattr(mode=0o777) + u32(0), cred=OTHER, label="setattr not owner")
    c(NFS, 2, opq(h["new1"]) + sattr(atime=1, mtime=1) + u32(0), cred=OTHER, label="setattr server times, no w")
    c(NFS, 2, opq(h["dir"]) + sattr(size=0) + u32(0), label="setattr size of a dir")
    c(NFS, 2, opq(h["link"]) + sattr(mode=0o600) + u32(0), label="setattr mode of a symlink")
    c(NFS, 2, opq(h["userfile"]) + sattr(gid=2000) + u32(0), cred=USER, label="setattr chgrp not member")
    c(NFS, 2, opq(h["new1"]) + sattr()[:10], label="setattr truncated")
    c(NFS, 1, opq(h["new1"]), label="getattr after setattr")
    # -- readdirplus paging, cookies, verifiers
    cookie, verf = 0, b"\0" * 8
    for page in range(20):
        rec = c(NFS, 17, opq(h["dir"]) + u64(cookie) + verf + u32(600) + u32(1500), label="rdp page %d" % page)
        res = results(rec)
        if res is None or struct.unpack_from(">I", res)[0] != 0:
            break
        off = 4 + 4 + (84 if struct.unpack_from(">I", res, 4)[0] else 0)
        verf = res[off:off + 8]
        off += 8
        last, eof = None, False
        while struct.unpack_from(">I", res, off)[0]:
            off += 12
            n = struct.unpack_from(">I", res, off)[0]
            off += 4 + n + ((-n) & 3)
            last = struct.unpack_from(">Q", res, off)[0]
            off += 8
            off += 4 + (84 if struct.unpack_from(">I", res, off)[0] else 0)
            if struct.unpack_from(">I", res, off)[0]:
                n = struct.unpack_from(">I", res, off + 4)[0]
                off += 8 + n + ((-n) & 3)
            else:
                off += 4
        eof = struct.unpack_from(">I", res, off + 4)[0]
        if eof or last is None:
            break
        cookie = last
    c(NFS, 17, opq(h["root"]) + u64(0) + b"\0" * 8 + u32(8192) + u32(65536), label="rdp root")
    c(NFS, 17, opq(h["dir"]) + u64(12345) + b"\0" * 8 + u32(600) + u32(1500), label="rdp cookie not ours")
    c(NFS, 17, opq(h["dir"]) + u64(1 << 63 | 5) + b"VERFBAD!" + u32(600) + u32(1500), label="rdp bad verifier")
    c(NFS, 17, opq(h["dir"]) + u64(0) + b"\0" * 8 + u32(600) + u32(150), label="rdp toosmall")
    c(NFS, 17, opq(h["sub"]) + u64(0) + b"\0" * 8 + u32(600) + u32(4000), cred=USER, label="rdp denied")
    c(NFS, 17, opq(h["small.txt"]) + u64(0) + b"\0" * 8 + u32(600) + u32(4000), label="rdp of a file")
    # -- remove, stale handles, retransmissions
    c(NFS, 12, opq(h["root"]) + opq(b"missing"), label="remove missing")
    c(NFS, 12, opq(h["sticky"]) + opq(b"owned-by-2000"), cred=USER, label="remove sticky")
    c(NFS, 12, opq(h["root"]) + opq(b"dir"), label="remove a directory")
    c(NFS, 12, opq(h["root"]) + opq(b".."), label="remove ..")
    rm = opq(h["root"]) + opq(b"small.txt")
    c(NFS, 12, rm, xid=0xAB0001, label="remove")
    c(NFS, 12, rm, xid=0xAB0001, label="remove retransmitted")
    c(NFS, 12, rm, xid=0xAB0002, label="remove again, new xid")
    c(NFS, 1, opq(h["small.txt"]), label="getattr of a removed file")
    c(NFS, 6, opq(h["small.txt"]) + u64(0) + u32(10), label="read of a removed file")
    cr = opq(h["root"]) + opq(b"retx") + u32(1) + sattr(mode=0o644)
    c(NFS, 8, cr, xid=0xAB0003, label="create guarded")
    c(NFS, 8, cr, xid=0xAB0003, label="create guarded retransmitted")
    sa = opq(h["new1"]) + sattr(mode=0o640) + u32(0)
    c(NFS, 2, sa, xid=0xAB0004, label="setattr")
    c(NFS, 2, sa, xid=0xAB0004, label="setattr retransmitted")
    # -- RPC-level: unknown procedure, bad credentials, other program
    c(NFS, 22, b"", label="proc 22")
    ga = opq(h["root"])
    authsys = u32(1) + opq(b"diff") + u32(1000) + u32(1000)
    c(NFS, 1, ga, cred=(1, authsys + u32(1)), label="auth_sys body cut inside the gids")
    c(NFS, 1, ga, cred=(1, u32(1) + opq(b"m" * 256) + u32(0) + u32(0) + u32(0)), label="machinename over 255")
    c(NFS, 1, ga, cred=(1, authsys + u32(17) + b"".join(u32(g) for g in range(17))), label="17 gids")
    c(NFS, 1, ga, cred=(1, authsys + u32(0) + u32(0)), label="auth_sys body with trailing bytes")
    c(NFS, 1, ga, cred=(3, b"\0" * 8), label="AUTH_DH")
    c(NFS, 1, ga, cred=(6, b"\0" * 8), label="RPCSEC_GSS")
    c(NFS, 1, ga, cred=(99, b""), label="unknown flavor")
    c(NFS, 4, ga + u32(0x3F), cred=rpcmsg.AuthSys(1, b"diff", 65534, 65534, []), label="access as nobody")
    c(NFS, 5, opq(h["link"]), label="readlink (python path)")
    c(NFS, 9, opq(h["root"]) + opq(b"mk") + sattr(), label="mkdir (python path)")
    # -- payloads at and over the server's maximum (--max-block-size)
    big = bytes(range(251)) * ((r.block + 250) // 251)
    for n in (r.block, r.block + 1000):
        c(NFS, 7, opq(h["data.bin"]) + u64(0) + u32(n) + u32(2) + opq(big[:n]), label="write %d" % n)
    for off, n in ((0, r.block), (0, r.block + 4096), (4096, r.block)):
        c(NFS, 6, opq(h["data.bin"]) + u64(off) + u32(n), label="read %d+%d" % (off, n))
    # -- offsets at the top of the range: offset + count must not wrap (NFS3ERR_FBIG on both paths)
    for off in (2 ** 64 - 1, 2 ** 64 - 10, 2 ** 63 - 1, 2 ** 63):
        c(NFS, 7, opq(h["data.bin"]) + u64(off) + u32(10) + u32(0) + opq(b"x" * 10), label="write 10 at %d" % off)
        c(NFS, 6, opq(h["data.bin"]) + u64(off) + u32(10), label="read 10 at %d" % off)
    c(NFS, 7, opq(h["data.bin"]) + u64(2 ** 64 - 1) + u32(0) + u32(0) + opq(b""), label="write 0 at 2^64-1")
    # -- record marking: empty fragments (RFC 5531 allows them) around and after the data
    r.call_fragments(NFS, 1, opq(h["root"]), "getattr in fragments with empty ones", (0, 12, 40))
    r.call_fragments(NFS, 7, opq(h["data.bin"]) + u64(0) + u32(5000) + u32(0) + opq(big[:5000]),
                     "write in fragments with empty ones", (4, 4096, 4100))


class Normalizer:
    """Walks a reply and names what may differ between the two exports (see the module doc)."""

    def __init__(self):
        self.ids = {}
        self.counts = {}
        self.out = []

    def canon(self, kind, value):
        key = (kind, value)
        if key not in self.ids:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            self.ids[key] = "%s%d" % (kind, self.counts[kind])
        return self.ids[key]

    def forget_fileids(self):
        """After a successful REMOVE: the file system may give the freed inode number to the next
        new file in one export and not in the other (ext4 takes the lowest free inode of the group,
        and when the last reference goes depends on which handle caches still hold the file). From
        here on every fileid gets a new name at its next appearance, in both servers alike."""
        self.ids = {k: v for k, v in self.ids.items() if k[0] != "I"}

    def attrs(self, b, off):
        f = struct.unpack_from(">5I2Q2I2Q6I", b, off)
        self.out.append(("fattr", f[:9], "fsid", self.canon("F", f[9]), self.canon("I", f[10])))
        return off + 84

    def post(self, b, off):
        present = struct.unpack_from(">I", b, off)[0]
        self.out.append(("post", present))
        return self.attrs(b, off + 4) if present else off + 4

    def wcc(self, b, off):
        present = struct.unpack_from(">I", b, off)[0]
        self.out.append(("pre", present, struct.unpack_from(">Q", b, off + 4)[0] if present else None))
        return self.post(b, off + 4 + (24 if present else 0))

    def fh(self, b, off):
        n = struct.unpack_from(">I", b, off)[0]
        self.out.append(("fh", n, self.canon("H", b[off + 4:off + 4 + n])))
        return off + 4 + n + ((-n) & 3)

    def reply(self, label, prog, proc, rec):
        if rec is None:                                 # a local change (Run.local)
            self.out.append(("local", label))
            self.forget_fileids()
            return
        self.out.append(("reply", label, len(rec), rec[:24]))
        res = results(rec)
        if res is not None and prog == MOUNT and proc == 1 and struct.unpack_from(">I", res)[0] == 0:
            self.out.append(("rest", res[self.fh(res, 4) - 0:]))
            return
        if res is None or prog != NFS or proc == 0:
            self.out.append(("rest", rec[24:]))
            return
        st = struct.unpack_from(">I", res)[0]
        off = 4
        if proc == 1 and st == 0:
            off = self.attrs(res, off)
        elif proc in (2, 12):
            off = self.wcc(res, off)
        elif proc == 3:
            if st == 0:
                off = self.post(res, self.fh(res, off))
            off = self.post(res, off)
        elif proc in (4, 5, 6, 18, 19):
            off = self.post(res, off)
            if proc == 18 and st == 0:
                self.out.append(("fsstat invarsec", res[off + 48:off + 52]))
                off += 52
        elif proc in (7, 21):
            off = self.wcc(res, off)
            if st == 0:
                off += 8 if proc == 7 else 0
                self.out.append(("counts", res[off - 8:off] if proc == 7 else b""))
                off += 8                                       # the write verifier
        elif proc in (8, 9):
            if st == 0:
                present = struct.unpack_from(">I", res, off)[0]
                off = self.fh(res, off + 4) if present else off + 4
                off = self.post(res, off)
            off = self.wcc(res, off)
        elif proc == 17:
            off = self.post(res, off)
            if st == 0:
                off += 8                                       # the cookie verifier
                while struct.unpack_from(">I", res, off)[0]:
                    fileid = struct.unpack_from(">Q", res, off + 4)[0]
                    n = struct.unpack_from(">I", res, off + 12)[0]
                    name = res[off + 16:off + 16 + n]
                    off += 16 + n + ((-n) & 3)
                    self.out.append(("entry", name, self.canon("I", fileid), res[off:off + 8]))
                    off = self.post(res, off + 8)
                    present = struct.unpack_from(">I", res, off)[0]
                    off = self.fh(res, off + 4) if present else off + 4
                off += 4
        self.out.append(("status", st, "rest", res[off:]))
        if proc == 12 and st == 0:
            self.forget_fileids()


def compare(fast, python):
    """The two runs' replies, normalized (Normalizer), equal call by call."""
    assert len(fast.replies) == len(python.replies)
    nf, np_ = Normalizer(), Normalizer()
    for a, b in zip(fast.replies, python.replies):
        nf.reply(*a)
        np_.reply(*b)
        assert nf.out == np_.out, "%s:\n fast   %r\n python %r" % (a[0], nf.out[-3:], np_.out[-3:])


def contain_script(r):
    """Containment (rpcsrv.export.contain): the same local moves, removals and symlink swaps in
    both exports between the same calls, and the calls through the handles they affect."""
    h = r.h
    c = r.call
    (r.export.parent / "archive").mkdir()
    (r.export.parent / "archive" / "outside.txt").write_bytes(b"outside the export")
    res = results(c(MOUNT, 1, opq(os.fsencode(r.server.export.path)), label="mnt"))
    h["root"] = res[8:8 + struct.unpack_from(">I", res, 4)[0]]
    for name in ("dir", "data.bin", "userfile", "sticky"):
        h[name] = bind_fh(c(NFS, 3, opq(h["root"]) + opq(name.encode()), label="lookup " + name))
    h["sub"] = bind_fh(c(NFS, 3, opq(h["dir"]) + opq(b"sub"), label="lookup sub"))
    h["e1"] = bind_fh(c(NFS, 3, opq(h["dir"]) + opq(b"entry-01-n"), label="lookup e1"))
    h["owned"] = bind_fh(c(NFS, 3, opq(h["sticky"]) + opq(b"owned-by-2000"), label="lookup owned"))

    def through(tag):
        """Every procedure the fast path serves, and some it does not, through the handles of dir
        (and below it) and of userfile."""
        for fh in ("dir", "sub", "e1", "userfile"):
            c(NFS, 1, opq(h[fh]), label="%s getattr %s" % (tag, fh))
            c(NFS, 4, opq(h[fh]) + u32(0x3F), label="%s access %s" % (tag, fh))
            c(NFS, 18, opq(h[fh]), label="%s fsstat %s" % (tag, fh))
            c(NFS, 19, opq(h[fh]), label="%s fsinfo %s" % (tag, fh))
        for name in (b"..", b".", b"entry-02-nn", b"sub"):
            c(NFS, 3, opq(h["dir"]) + opq(name), label="%s lookup dir/%r" % (tag, name))
        c(NFS, 3, opq(h["sub"]) + opq(b".."), label=tag + " lookup sub/..")
        for fh in ("e1", "userfile"):
            c(NFS, 6, opq(h[fh]) + u64(0) + u32(100), label="%s read %s" % (tag, fh))
            c(NFS, 7, opq(h[fh]) + u64(0) + u32(1) + u32(0) + opq(b"w"), label="%s write %s" % (tag, fh))
            c(NFS, 2, opq(h[fh]) + sattr(mode=0o640) + u32(0), label="%s setattr %s" % (tag, fh))
            c(NFS, 21, opq(h[fh]) + u64(0) + u32(0), label="%s commit %s" % (tag, fh))
        c(NFS, 17, opq(h["dir"]) + u64(0) + b"\0" * 8 + u32(8192) + u32(65536), label=tag + " rdp dir")
        c(NFS, 17, opq(h["sub"]) + u64(0) + b"\0" * 8 + u32(8192) + u32(65536), label=tag + " rdp sub")
        c(NFS, 8, opq(h["dir"]) + opq(b"made-" + tag.encode()) + u32(1) + sattr(mode=0o644),
          label=tag + " create in dir")
        c(NFS, 12, opq(h["dir"]) + opq(b"made-" + tag.encode()), label=tag + " remove in dir")

    through("inside")
    r.local("mv dir and userfile out", lambda e, a: (os.rename(e / "dir", a / "dir"),
                                                      os.rename(e / "userfile", a / "userfile")))
    through("outside")
    c(NFS, 9, opq(h["dir"]) + opq(b"mk") + sattr(), label="mkdir in the moved dir")
    c(NFS, 14, opq(h["dir"]) + opq(b"entry-03-nnn") + opq(h["root"]) + opq(b"stolen"),
      label="rename out of the moved dir")
    c(NFS, 15, opq(h["e1"]) + opq(h["root"]) + opq(b"hardlink"), label="link of a moved file")
    c(NFS, 5, opq(h["dir"]), label="readlink of a moved dir")
    r.local("mv them back", lambda e, a: (os.rename(a / "dir", e / "dir"), os.rename(a / "userfile", e / "userfile")))
    through("back")
    r.local("remove and recreate data.bin", lambda e, a: (os.unlink(e / "data.bin"),
                                                          (e / "data.bin").write_bytes(b"recreated")))
    c(NFS, 1, opq(h["data.bin"]), label="getattr of the recreated file's old handle")
    c(NFS, 6, opq(h["data.bin"]) + u64(0) + u32(100), label="read of the recreated file's old handle")
    h["data2"] = bind_fh(c(NFS, 3, opq(h["root"]) + opq(b"data.bin"), label="lookup the new data.bin"))
    c(NFS, 6, opq(h["data2"]) + u64(0) + u32(100), label="read the new data.bin")
    r.local("swap a symlink in for sticky", lambda e, a: (os.rename(e / "sticky", e / "sticky.old"),
                                                           os.symlink("../archive", e / "sticky")))
    h["slink"] = bind_fh(c(NFS, 3, opq(h["root"]) + opq(b"sticky"), label="lookup the swapped-in symlink"))
    c(NFS, 3, opq(h["slink"]) + opq(b"outside.txt"), label="lookup through the symlink")
    c(NFS, 17, opq(h["slink"]) + u64(0) + b"\0" * 8 + u32(8192) + u32(65536), label="rdp of the symlink")
    c(NFS, 6, opq(h["slink"]) + u64(0) + u32(100), label="read of the symlink")
    c(NFS, 8, opq(h["slink"]) + opq(b"x") + u32(0) + sattr(), label="create in the symlink")
    c(NFS, 1, opq(h["sticky"]), label="getattr of the old sticky handle (now sticky.old)")
    c(NFS, 3, opq(h["sticky"]) + opq(b"owned-by-2000"), label="lookup in the old sticky handle")


def test_fast_and_python_paths_contain_alike(tmp_path):
    runs = [Run(tmp_path / "fast", True), Run(tmp_path / "python", False)]
    try:
        for r in runs:
            contain_script(r)
        fast, python = runs
        compare(fast, python)
        statuses = [struct.unpack_from(">I", results(rec))[0] for label, prog, proc, rec in python.replies
                    if rec is not None and label.startswith("outside") and results(rec) is not None]
        assert statuses and set(statuses) == {70}, statuses          # every call outside: STALE
        # the compiled path decided for itself: it walked, found the moved objects outside, and
        # served the calls through them in C once they were back
        ps = fast.server.fast.srv.proof_stats()
        assert ps["walks"] > 0 and ps["outside"] > 0 and ps["hits"] > 0, ps
    finally:
        for r in runs:
            r.close()


@pytest.mark.parametrize("block", [1 << 20, 4 << 20], ids=["1M", "4M"])
def test_fast_and_python_paths_answer_alike(tmp_path, block):
    runs = [Run(tmp_path / "fast", True, block), Run(tmp_path / "python", False, block)]
    try:
        for r in runs:
            script(r)
        fast, python = runs
        compare(fast, python)
        # both paths were exercised: every fast procedure served in C, and calls handed to Python
        snap = fast.server.fast.metrics_snapshot()[0]
        in_c = {k[2] for k in snap["requests"]}
        assert in_c == {"null", "getattr", "setattr", "lookup", "access", "read", "write", "create", "remove",
                        "readdirplus", "fsstat", "fsinfo", "commit"}, in_c
        assert sum(snap["requests"].values()) > 100 and sum(snap["fallbacks"].values()) > 20, snap["fallbacks"]
    finally:
        for r in runs:
            r.close()
