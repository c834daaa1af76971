"""Shared test helpers: start rpcsrv (subprocess or in-process), tree builders, MNT/LOOKUP/READ over rpcclient.

Synchronisation is always on a real event: the server's ready line, a reply,
a process exit; every wait has a deadline.
"""
from __future__ import annotations

import contextlib
import os
import re

from rpcclient import ROOT_CRED, RpcClient  # noqa: F401  (re-exported for the server tests)
from rpcsrv.proto import rpcmsg
from rpcsrv.proto.xdr import Packer

from loadgen.common.serverproc import RpcsrvProcess

URL_RE = re.compile(r"(nfs://\S+)")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ServerProcess(RpcsrvProcess):
    """`python -m rpcsrv` on 127.0.0.1:0 through loadgen's launcher (loadgen/common/serverproc.py), started from
    the repository root; .url, .port, .export, .proc, .stop() -> (returncode, stderr)."""

    def __init__(self, export, strategy="array", threads=4, arena_mib=128, extra=(), env=None, fast_path=None,
                 metrics=False):
        # metrics=True: a /metrics endpoint on a free port (.metrics_url); the launcher retries when
        # another process takes the port between its probe and the server's bind
        super().__init__(export, strategy=strategy, threads=threads, arena_mib=arena_mib, extra=extra,
                         env=env, cwd=ROOT, fast_path=fast_path, metrics=metrics)


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
    if kw.get("fast_path") and srv.fast is None:
        raise RuntimeError("fast path asked for and not usable: %s" % srv.fast_unusable)
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


def announced_metrics_url(proc, timeout=60.0) -> str:
    """The URL `loadgen run --metrics-port 0` announces on stderr ("loadgen: metrics URL").

    Reads the process's stderr line by line (a text pipe) up to that line, so a test never probes
    a port itself and races another process for it. Fails with what was said if the process ends
    or says nothing of the kind before the deadline."""
    import select
    import time
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        line = proc.stderr.readline()
        if not line:
            break
        m = re.match(r"loadgen: metrics (http://\S+/metrics)$", line.strip())
        if m:
            return m.group(1)
        seen.append(line)
    raise AssertionError("no metrics URL announced on stderr:\n" + "".join(seen))


def kernel_handles_work(path) -> bool:
    """Can an Export of `path` use kernel file handles here (open_by_handle_at: root)?"""
    from rpcsrv.export import Export
    try:
        with Export(str(path), key=b"m" * 32, handle_mode="kernel"):
            return True
    except OSError:
        return False


def wait_for_line(stream, pattern: str, proc, timeout: float = 60.0) -> str:
    """Read `stream` (a child's text pipe) until a line matches the regex `pattern`; return it.
    Fails if the child closes the stream first or no such line comes within `timeout` (checked
    between lines)."""
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        assert line, "the process ended first (status %s)" % proc.poll()
        if re.search(pattern, line):
            return line
    raise AssertionError("no line matching %r in %g s" % (pattern, timeout))


def open_fds(pid: int) -> int:
    """How many descriptors process `pid` holds."""
    return len(os.listdir("/proc/%d/fd" % pid))


def wait_fds_back(pid: int, base: int, timeout: float = 15.0, slack: int = 2) -> None:
    """Wait (polling, with a deadline) until `pid` holds at most base + slack descriptors; assert it."""
    import time
    deadline = time.monotonic() + timeout
    while open_fds(pid) > base + slack and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_fds(pid) <= base + slack, (base, open_fds(pid))
