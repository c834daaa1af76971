"""Connection abuse on both request paths: while hostile connections are held open (idle ones,
half records of 1 MiB that stop short, slow drips, more than --max-connections in all), a
well-behaved python-libnfs client mounts, writes and reads back within 2 s; the stopped records
are closed by the parking and stall rules; when the hostile connections go, no page and no
descriptor is left behind.

The server runs with a small arena (16 MiB: a parking budget of a few records), 2 workers and
--max-connections 48, so every kind of abuse reaches its limit with few connections."""
from __future__ import annotations

import os
import socket
import struct
import time

import pytest

from loadgen.run.nfsctx import NfsContext
from nfsbulk_testlib import ServerProcess, leaked_pages, open_fds, wait_fds_back

pytestmark = pytest.mark.parametrize("fast_path", ["on", "off"])


def _hostile(port):
    """20 idle, 24 half records (1 MiB announced, all but 100 bytes sent), 6 slow drips: 50 > 48."""
    socks = []
    for kind in ["idle"] * 20 + ["half"] * 24 + ["drip"] * 6:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        try:
            if kind == "half":
                s.sendall(struct.pack(">I", 0x80000000 | (1 << 20)) + b"\0" * ((1 << 20) - 100))
            elif kind == "drip":
                s.sendall(struct.pack(">I", 0x80000000 | 1000) + b"\0" * 10)
        except OSError:                     # the server already closed it (parking full, evicted)
            pass
        socks.append(s)
    return socks


def test_a_good_client_is_served_while_hostile_connections_are_held(tmp_path, fast_path):
    export = tmp_path / "export"
    export.mkdir()
    srv = ServerProcess(export, threads=2, arena_mib=16, fast_path=fast_path,
                        extra=["--max-connections", "48", "--record-stall", "3"])
    socks = []
    try:
        base = open_fds(srv.pid)
        socks = _hostile(srv.port)
        data = os.urandom(256 << 10)
        t0 = time.monotonic()
        ctx = NfsContext(srv.url, 10)
        try:
            rc, fh = ctx.creat("/good.bin")
            assert rc == 0, rc
            assert ctx.pwrite(fh, 0, len(data), bytearray(data)) == len(data)
            assert ctx.close(fh) == 0
            rc, fh = ctx.open("/good.bin", os.O_RDONLY)
            assert rc == 0, rc
            buf = bytearray(len(data))
            assert ctx.pread(fh, 0, len(data), buf) == len(data) and bytes(buf) == data
            ctx.close(fh)
        finally:
            ctx.destroy()
        took = time.monotonic() - t0
        assert took < 2.0, "the good client took %.1f s beside the hostile connections" % took
        for s in socks:
            s.close()
        socks = []
        wait_fds_back(srv.pid, base, 15)
    finally:
        for s in socks:
            s.close()
        code, err = srv.stop()
    assert code == 0, err[-2000:]
    assert leaked_pages(err) == 0
