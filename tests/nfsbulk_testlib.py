"""Shared test helpers: start rpcsrv (subprocess or in-process), tree builders, MNT/LOOKUP/READ over rpcclient.

Synchronisation is always on a real event: the server's ready line, a reply,
a process exit; every wait has a deadline.
"""
from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import sys
import time

from rpcclient import ROOT_CRED, RpcClient  # noqa: F401  (re-exported for the server tests)
from rpcsrv.proto import rpcmsg
from rpcsrv.proto.xdr import Packer

URL_RE = re.compile(r"(nfs://\S+)")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ServerProcess:
    """`python -m rpcsrv` on 127.0.0.1:0; .url, .port, .stop() -> (returncode, stderr)."""

    def __init__(self, export, strategy="array", threads=4, arena_mib=128, extra=(), env=None):
        cmd = [sys.executable, "-m", "rpcsrv", "--export", str(export), "--listen", "127.0.0.1:0",
               "--no-metrics", "--threads", str(threads), "--strategy", strategy,
               "--arena-mib", str(arena_mib), *extra]
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=e)
        self.url = None
        deadline = time.monotonic() + 60
        line = b""
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 1.0)
            if r:
                line = self.proc.stdout.readline()
                if not line:
                    break
                m = URL_RE.search(line.decode())
                if m:
                    self.url = m.group(1)
                    break
            elif self.proc.poll() is not None:
                break
        if self.url is None:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=30)
            raise RuntimeError("rpcsrv did not start: %r %s" % (line, err.decode()[-2000:]))
        self.port = int(re.search(r"nfsport=(\d+)", self.url).group(1))
        self.export = str(export)

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=30)
            raise AssertionError("rpcsrv did not stop within %ss: %s" % (timeout, err.decode()[-2000:]))
        return self.proc.returncode, err.decode()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.stop()


def leaked_pages(stderr: str) -> int:
    m = re.search(r"allocator pages still allocated: (\d+)", stderr)
    assert m, "no allocator report in rpcsrv's stderr:\n" + stderr[-2000:]
    return int(m.group(1))


def make_tree(root, seed=1):
    """A tree of files of known content (1 byte .. 3 MiB), nested dirs, a symlink; returns {relpath: bytes}."""
    import random
    rnd = random.Random(seed)
    files = {}
    sizes = [0, 1, 100, 4095, 4096, 4097, 65536, 262144 + 13, 1048576, 3 * 1048576 + 7]
    os.makedirs(os.path.join(root, "d1", "d2"), exist_ok=True)
    for i, size in enumerate(sizes):
        rel = ("d1/" if i % 3 == 1 else "d1/d2/" if i % 3 == 2 else "") + "f%d.bin" % i
        data = rnd.randbytes(size)
        with open(os.path.join(root, rel), "wb") as f:
            f.write(data)
        files[rel] = data
    os.symlink("f0.bin", os.path.join(root, "link-to-f0"))
    return files


@contextlib.contextmanager
def in_process_server(export, strategy="array", threads=2, arena_mib=64, **kw):
    """A Server in this process on 127.0.0.1:0 with its own metrics registry; stopped at exit."""
    from prometheus_client import CollectorRegistry
    from rpcsrv.server import Server, ServerConfig
    cfg = ServerConfig(export=str(export), port=0, threads=threads, strategy=strategy, arena_mib=arena_mib, **kw)
    registry = CollectorRegistry()
    srv = Server(cfg, registry=registry)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()




def mount_root(rpc, path, cred=ROOT_CRED):
    """MOUNT MNT of `path`: the root file handle."""
    p = Packer()
    p.pack_string(path.encode() if isinstance(path, str) else path)
    h, u = rpc.call(0x4D4E54, 100005, 3, 1, p.get_buffer(), cred=cred)
    assert h.accept_stat == rpcmsg.SUCCESS and u.unpack_uint() == 0
    return u.unpack_opaque(64)


def lookup_fh(rpc, export_path, name, cred=ROOT_CRED):
    """The handle of `name` in the export's root directory (LOOKUP after MNT)."""
    p = Packer()
    p.pack_opaque(mount_root(rpc, export_path, cred))
    p.pack_string(name)
    h, u = rpc.call(0x4C4B50, 100003, 3, 3, p.get_buffer(), cred=cred)
    assert h.accept_stat == rpcmsg.SUCCESS and u.unpack_uint() == 0
    return u.unpack_opaque(64)


def read_call(rpc, xid, fh, offset, count, cred=ROOT_CRED):
    """The framed bytes of a READ call (not sent)."""
    p = Packer()
    p.pack_opaque(fh)
    p.pack_uhyper(offset)
    p.pack_uint(count)
    return rpc.call_bytes(xid, 100003, 3, 6, p.get_buffer(), cred=cred)
