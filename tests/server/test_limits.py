"""Limits and memory pressure: connection caps, idle and record timeouts, a dribbling client that
must not hold a worker, a client that never reads, --allow, --secure-ports, and an arena far smaller
than demand (waits and recovers, no request fails, no deadlock, nothing leaked); each with the fast
path on and off."""
import ipaddress
import os
import json
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from nfsbulk_testlib import (ROOT, RpcClient, ServerProcess, in_process_server, leaked_pages, lookup_fh, open_fds,
                             read_call, wait_fds_back)
from rpcsrv.proto import rpcmsg

NFS = 100003

# every limit on both request paths: the compiled one (rpcsrv.fast) and the Python reference
pytestmark = pytest.mark.parametrize("fast_path", ["on", "off"])


def null_ok(port, xid=1):
    c = RpcClient(port)
    try:
        h, _ = c.call(xid, NFS, 3, 0)
        return h.accept_stat == rpcmsg.SUCCESS
    finally:
        c.close()


def closed(sock, timeout=30):
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def test_max_connections(tmp_path, fast_path):
    """At the limit a newcomer gets in and the least recently active connection is closed (as
    knfsd's svc_check_conn_limits): here the one that called first and longest ago."""
    with in_process_server(tmp_path, fast_path=fast_path == "on", threads=2, max_connections=3) as srv:
        held = [RpcClient(srv.port) for _ in range(3)]
        for i, c in enumerate(held):
            h, _ = c.call(i, NFS, 3, 0)                 # all three are really accepted
        for i in (2, 1):                                # held[0] is now the least recently active
            held[i].call(10 + i, NFS, 3, 0)
        assert null_ok(srv.port)                        # the fourth is served
        assert held[0].recv_record() is None            # held[0] made room
        for i in (1, 2):
            h, _ = held[i].call(20 + i, NFS, 3, 0)      # the others are untouched
            assert h.accept_stat == rpcmsg.SUCCESS
        for c in held:
            c.close()


def test_idle_connection_is_closed(tmp_path, fast_path):
    with in_process_server(tmp_path, fast_path=fast_path == "on", threads=2, idle_timeout=1.0) as srv:
        c = RpcClient(srv.port)
        c.call(1, NFS, 3, 0)
        t0 = time.monotonic()
        assert closed(c.sock, timeout=30)
        assert time.monotonic() - t0 >= 0.9
        assert null_ok(srv.port)


def test_dribbler_does_not_hold_a_worker_and_times_out(tmp_path, fast_path):
    with in_process_server(tmp_path, fast_path=fast_path == "on", threads=1, record_timeout=2.0) as srv:
        slow = RpcClient(srv.port)
        data = slow.call_bytes(5, NFS, 3, 0)
        slow.send_raw(data[:6])                          # marker and two bytes of the call
        for i in range(5):                               # the only worker still serves others
            assert null_ok(srv.port, 100 + i)
        assert closed(slow.sock, timeout=30)             # then the incomplete record times out
        assert srv.allocator.stats()["allocated"] >= srv.nslots    # the worker's own array only


def test_client_that_never_reads_is_dropped(tmp_path, fast_path):
    big = tmp_path / "big"
    big.write_bytes(b"\x5a" * (1 << 20))
    with in_process_server(tmp_path, fast_path=fast_path == "on", threads=2, send_timeout=1.0) as srv:
        c = RpcClient(srv.port)
        fh = lookup_fh(c, str(tmp_path), b"big")
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        for i in range(64):                              # 64 MiB of READ replies nobody reads
            try:
                c.send_raw(read_call(c, 1000 + i, fh, 0, 1 << 20))
            except OSError:
                break
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and srv.metrics.error_count("send_timeout") == 0:
            assert null_ok(srv.port)                     # others are served meanwhile
        assert srv.metrics.error_count("send_timeout") >= 1
        c.close()


def test_allow_cidr(tmp_path, fast_path):
    with in_process_server(tmp_path, fast_path=fast_path == "on", threads=1, allow=(ipaddress.ip_network("10.0.0.0/8"),)) as srv:
        s = socket.create_connection(("127.0.0.1", srv.port))
        assert closed(s)
    with in_process_server(tmp_path, fast_path=fast_path == "on", threads=1, allow=(ipaddress.ip_network("127.0.0.0/8"),)) as srv:
        assert null_ok(srv.port)


def test_secure_ports(tmp_path, fast_path):
    with in_process_server(tmp_path, fast_path=fast_path == "on", threads=1, secure_ports=True) as srv:
        c = RpcClient(srv.port)                              # an ephemeral (>= 1024) source port
        h, _ = c.call(1, NFS, 3, 0)
        assert h.stat == rpcmsg.MSG_DENIED and h.auth_stat == rpcmsg.AUTH_TOOWEAK
        c.close()
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        for port in range(1023, 600, -1):                 # root may bind a privileged port
            try:
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                break
            except OSError:
                s.close()
        else:
            pytest.skip("no free privileged port")
        s.connect(("127.0.0.1", srv.port))
        c = RpcClient(sock=s)
        h, _ = c.call(2, NFS, 3, 0)
        assert h.accept_stat == rpcmsg.SUCCESS
        c.close()


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_memory_pressure_waits_and_recovers(tmp_path, fast_path):
    """8 MiB arena, 8 workers of 259 pages (overcommitted), 16 clients of 256 KiB I/O for 8 s."""
    export = tmp_path / "export"
    export.mkdir()
    srv = ServerProcess(export, threads=8, arena_mib=8, fast_path=fast_path, metrics=True,
                        extra=("--pages-per-request", "259"))
    try:
        out = tmp_path / "run.json"
        r = subprocess.run([sys.executable, "-m", "loadgen", "run", srv.url, "--profile", "rw256k",
                            "--clients", "16", "--time", "8", "--warmup", "1", "--rw-files", "1",
                            "--rw-file-size", str(1 << 20), "--no-metrics", "--json", str(out)],
                           cwd=ROOT, capture_output=True, timeout=240)
        assert r.returncode == 0, r.stdout.decode()[-2000:] + r.stderr.decode()[-2000:]
        doc = json.loads(out.read_text())
        assert doc["unexpected"] == 0 and doc["errors"] == 0 and doc["ops_total"] > 100
        m = scrape(srv.metrics_url)
        assert m['nfsbulk_svc_alloc_arg_waits_total{strategy="array"}'] > 0
        assert m['nfsbulk_alloc_bulk_fallbacks_total{reason="watermark"}'] > 0
        assert null_ok(srv.port)                         # still answering afterwards
    finally:
        code, err = srv.stop()
    assert code == 0, err
    assert leaked_pages(err) == 0


@pytest.mark.parametrize("limit,hostile", [(64, 120), (1024, 1100)], ids=["64fds", "1024fds"])
def test_out_of_descriptors_the_listeners_rest(tmp_path, fast_path, limit, hostile):
    """accept() failing with EMFILE must not spin, on the NFS listener nor on /metrics: with the
    descriptor limit lowered to `limit`, `hostile` connections waiting and four scrapers
    connecting to /metrics, the server uses under 10 % of a core over 2 s and logs at most one
    line per listener per 10 s (plus one); when the connections go, a new client is served at
    once, the waiting scrapers get their metrics, which count the failures of both listeners
    (nfsbulk_rpc_accept_errors_total{listener, errno}), and no descriptor is left behind."""
    import resource
    srv = ServerProcess(tmp_path, threads=2, fast_path=fast_path, metrics=True)
    mhost, mport = re.match(r"http://([^:/]+):(\d+)/", srv.metrics_url).groups()
    socks, scrapers = [], []
    try:
        base = open_fds(srv.pid)
        resource.prlimit(srv.pid, resource.RLIMIT_NOFILE, (limit, limit))
        t_exhausted = time.monotonic()
        for _ in range(hostile):
            socks.append(socket.create_connection(("127.0.0.1", srv.port), timeout=10))
        # the server takes connections until it is out of descriptors, then rests
        deadline = time.monotonic() + 30
        while open_fds(srv.pid) < limit and time.monotonic() < deadline:
            time.sleep(0.05)                      # polling a condition with a deadline
        assert open_fds(srv.pid) >= limit - 1, open_fds(srv.pid)
        for _ in range(4):
            s = socket.create_connection((mhost, int(mport)), timeout=10)
            s.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            scrapers.append(s)
        cpu0, t0 = srv.cpu_seconds(), time.monotonic()
        time.sleep(2.0)                            # the window the CPU is measured over
        share = (srv.cpu_seconds() - cpu0) / (time.monotonic() - t0)
        assert share < 0.10, "the server spun at %.0f %% of a core while out of descriptors" % (share * 100)
        for s in socks:
            s.close()
        socks = []
        deadline = time.monotonic() + 10
        while True:                                # the backlog drains once descriptors are free again
            try:
                if null_ok(srv.port):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "no NULL reply after the hostile connections went"
            time.sleep(0.05)
        for s in scrapers:                         # each waiting scrape is answered, in full
            body = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                body += chunk
            assert body.startswith(b"HTTP/1.0 200"), body[:200]
        from prometheus_client.parser import text_string_to_metric_families
        header_end = body.index(b"\r\n\r\n") + 4
        errors = {(smp.labels["listener"], smp.labels["errno"]): smp.value
                  for fam in text_string_to_metric_families(body[header_end:].decode())
                  if fam.name == "nfsbulk_rpc_accept_errors" for smp in fam.samples}
        assert errors.get(("rpc", "emfile"), 0) >= 1 and errors.get(("metrics", "emfile"), 0) >= 1, errors
        wait_fds_back(srv.pid, base, 10)
    finally:
        for s in socks + scrapers:
            s.close()
        code, err = srv.stop()
    elapsed = time.monotonic() - t_exhausted
    assert code == 0, err[-2000:]
    bound = 1 + int(elapsed // 10) + 1
    for prefix in ("", "metrics: "):
        lines = [ln for ln in err.splitlines() if re.search(r"\b%saccept failed" % prefix, ln)
                 and (prefix or "metrics: accept" not in ln)]
        assert 1 <= len(lines) <= bound, (prefix, bound, lines)
        assert "Too many open files" in lines[0] and "rests" in lines[0]
