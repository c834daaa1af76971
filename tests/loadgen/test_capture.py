"""`loadgen capture-to-loadfile`: a capture of loopback NFSv3 traffic becomes a
loadfile that replays the same workload (issue 18).

The round trip: rpcsrv (subprocess, 127.0.0.1:0) is driven by `loadgen run
--run-once` with a known loadfile while tcpdump captures its port; the capture
is converted; the result is replayed with --strict against a fresh rpcsrv,
again under tcpdump.  Compared: the NFSv3 procedures the server received
(counted by tshark on both captures, independently of the converter), loadgen's
per-operation counts, bytes read and written, and the final trees.

tcpdump synchronisation: start is its "listening on" stderr line; the end is
a sentinel UDP datagram (to a port nobody serves, in the capture filter) seen
in tcpdump's packet-buffered output pipe, so every packet before it has been
written; then SIGINT and a wait for its exit.  Needs root (tcpdump on lo) and
tshark; skipped without them.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from nfsbulk_testlib import ServerProcess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = sys.executable

pytestmark = [
    pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (make setup)"),
]
needs_tcpdump = pytest.mark.skipif(shutil.which("tcpdump") is None or os.geteuid() != 0,
                                   reason="tcpdump on lo needs tcpdump and root")

KNOWN = """\
# the workload of the round trip: every procedure the converter writes
0.000 MKDIR3 "/clients" 0x00000000
0.000 MKDIR3 "/clients/client1" 0x00000000
0.000 MKDIR3 "/clients/client1/d" 0x00000000
0.010 CREATE3 "/clients/client1/d/a" 0x00000000
0.020 WRITE3 "/clients/client1/d/a" 0 65536 0 0x00000000
0.030 WRITE3 "/clients/client1/d/a" 65536 4096 2 0x00000000
0.040 COMMIT3 "/clients/client1/d/a" 0x00000000
0.050 READ3 "/clients/client1/d/a" 0 32768 0x00000000
0.060 READ3 "/clients/client1/d/a" 65536 65536 0x00000000
0.070 CREATE3 "/clients/client1/d/b" 0x00000000
0.080 WRITE3 "/clients/client1/d/b" 0 1000 0 0x00000000
0.090 GETATTR3 "/clients/client1/d/a" 0x00000000
0.100 SETATTR3 "/clients/client1/d/a" 0x00000000
0.110 ACCESS3 "/clients/client1/d" 1 0 0x00000000
0.120 LOOKUP3 "/clients/client1/d/missing" 0x00000002
0.130 RENAME3 "/clients/client1/d/b" "/clients/client1/d/c" 0x00000000
0.140 LINK3 "/clients/client1/d/hard" "/clients/client1/d/a" 0x00000000
0.150 SYMLINK3 "/clients/client1/d/sym" "/clients/client1/d/a" 0x00000000
0.160 READLINK3 "/clients/client1/d/sym" 0x00000000
0.170 REMOVE3 "/clients/client1/d/hard" 0x00000000
0.180 MKDIR3 "/clients/client1/e" 0x00000000
0.190 RMDIR3 "/clients/client1/e" 0x00000000
0.200 RMDIR3 "/clients/client1/d" 0x00000042
0.210 READDIRPLUS3 "/clients/client1/d" 0x00000000
0.220 FSSTAT3 0x00000000
0.230 REMOVE3 "/clients/client1/d/missing" 0x00000002
"""

# loadgen operations that send exactly their own procedure once (no implicit
# LOOKUP3/GETATTR3/ACCESS3/COMMIT3 of libnfs counted under another name)
ONE_TO_ONE = ("MKDIR3", "CREATE3", "WRITE3", "READ3", "SETATTR3", "RENAME3", "LINK3", "SYMLINK3",
              "READLINK3", "REMOVE3", "RMDIR3", "READDIRPLUS3", "FSSTAT3", "LOOKUP3")


class Tcpdump:
    """tcpdump -i lo on `port`, packets streamed to a pipe and kept in memory."""

    def __init__(self, port: int, path: str):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        self.sentinel_sock = s                  # bound, never read: nobody answers the sentinel
        self.sentinel_port = s.getsockname()[1]
        self.sentinel = os.urandom(16).hex().encode()
        self.path = path
        self.proc = subprocess.Popen(
            ["tcpdump", "-i", "lo", "-n", "-s", "0", "-B", "16384", "-U", "-w", "-",
             f"port {port} or udp port {self.sentinel_port}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.buf = bytearray()
        self.seen = threading.Event()
        self.stderr = b""
        deadline = time.monotonic() + 20
        line = b""
        while b"listening on" not in line:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.proc.kill()
                raise AssertionError(f"tcpdump did not start: {line!r} {self.proc.stderr.read()!r}")
            r, _, _ = select.select([self.proc.stderr], [], [], left)
            if r:
                line = self.proc.stderr.readline()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        while True:
            chunk = self.proc.stdout.read1(65536)
            if not chunk:
                return
            self.buf += chunk
            if self.sentinel in self.buf[-len(chunk) - len(self.sentinel):]:
                self.seen.set()

    def stop(self) -> str:
        """Send the sentinel, wait until tcpdump wrote it, stop, write the pcap; returns the stats."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(self.sentinel, ("127.0.0.1", self.sentinel_port))
        ok = self.seen.wait(30)
        self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        self.reader.join(30)
        self.sentinel_sock.close()
        assert ok, "tcpdump never wrote the sentinel packet"
        with open(self.path, "wb") as f:
            f.write(self.buf)
        return err.decode()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.sentinel_sock.close()


def loadgen(*args, timeout=120):
    return subprocess.run([PY, "-m", "loadgen", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def run_captured(tmp_path, name, loadfile):
    """rpcsrv on a fresh export + tcpdump + `loadgen run --run-once --strict`.
    Returns (export dir, pcap path, server port, loadgen JSON)."""
    export = tmp_path / f"{name}-export"
    export.mkdir()
    pcap = str(tmp_path / f"{name}.pcap")
    js = str(tmp_path / f"{name}.json")
    with ServerProcess(export, threads=2, arena_mib=32) as srv:
        td = Tcpdump(srv.port, pcap)
        try:
            r = loadgen("run", srv.url + "&version=3", "--loadfile", str(loadfile), "--run-once", "--strict",
                        "--clients", "1", "--time", "1", "--metrics-port", "0", "--json", js)
        finally:
            stats = td.stop() if td.proc.poll() is None else td.kill()
        assert r.returncode == 0, r.stdout + r.stderr
        assert re.search(r"^0 packets dropped by kernel", stats, re.M), stats
        port = srv.port
    with open(js) as f:
        return export, pcap, port, json.load(f)


def wire_calls(pcap, port) -> Counter:
    """NFSv3 calls per procedure number, as tshark decodes them (not the converter)."""
    out = subprocess.run(["tshark", "-n", "-r", pcap, "-d", f"tcp.port=={port},rpc", "-Y",
                          "rpc.msgtyp == 0 && rpc.program == 100003", "-T", "fields", "-e", "rpc.procedure"],
                         capture_output=True, text=True, timeout=120).stdout
    c = Counter()
    for line in out.split():
        for p in line.split(","):
            c[int(p)] += 1
    return c


def tree(root) -> dict:
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = ("symlink", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("dir",)
            else:
                with open(p, "rb") as f:
                    out[rel] = ("file", os.path.getsize(p), hashlib.sha256(f.read()).hexdigest())
    return out


def op_counts(doc) -> dict:
    return {k: v["count"] for k, v in doc["ops"].items()}


@needs_tcpdump
def test_round_trip_capture_convert_replay(tmp_path):
    known = tmp_path / "known.load"
    known.write_text(KNOWN)
    exp1, pcap1, port1, doc1 = run_captured(tmp_path, "orig", known)

    out = tmp_path / "conv.load"
    r = loadgen("capture-to-loadfile", pcap1, "-o", str(out), "--server", f"127.0.0.1:{port1}",
                "--client-per", "none", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    text = out.read_text()
    print(text, r.stderr)

    exp2, pcap2, port2, doc2 = run_captured(tmp_path, "replay", out)

    # what the server received: the same procedures, the same number of times
    w1, w2 = wire_calls(pcap1, port1), wire_calls(pcap2, port2)
    assert w1 == w2, (w1, w2)
    assert w1[7] == 3 and w1[6] == 2 and w1[14] == 1          # WRITE3, READ3, RENAME3 really captured
    # loadgen's own per-operation counts for the operations it sends one to one
    c1, c2 = op_counts(doc1), op_counts(doc2)
    assert {k: c1.get(k) for k in ONE_TO_ONE} == {k: c2.get(k) for k in ONE_TO_ONE}, (c1, c2)
    # bytes
    assert doc1["bytes"] == doc2["bytes"] and doc1["bytes"]["write"] == 65536 + 4096 + 1000
    assert doc1["bytes"]["read"] == 32768 + 4096
    # the final tree, contents and symlink targets included
    t1, t2 = tree(exp1), tree(exp2)
    assert t1 == t2
    assert t1["clients/client0/d/c"][:2] == ("file", 1000) and t1["clients/client0/d/sym"][0] == "symlink"
