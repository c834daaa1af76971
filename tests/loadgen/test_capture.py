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
            # bounded: at most 120 s (timeout relays our SIGINT) and 200000 packets
            ["timeout", "120", "tcpdump", "-c", "200000", "-i", "lo", "-n", "-s", "0", "-B", "16384", "-U", "-w", "-",
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


def run_captured(tmp_path, name, loadfile, clients=1, premade=()):
    """rpcsrv on a fresh export (with the directories `premade`) + tcpdump +
    `loadgen run --run-once --strict`; --time and --warmup say 600 and 5 s, which
    --run-once overrides (one pass, all of it measured).
    Returns (export dir, pcap path, server port, loadgen JSON)."""
    export = tmp_path / f"{name}-export"
    export.mkdir()
    for d in premade:
        (export / d).mkdir(parents=True)
    pcap = str(tmp_path / f"{name}.pcap")
    js = str(tmp_path / f"{name}.json")
    with ServerProcess(export, threads=2, arena_mib=32) as srv:
        td = Tcpdump(srv.port, pcap)
        try:
            r = loadgen("run", srv.url + "&version=3", "--loadfile", str(loadfile), "--run-once", "--strict",
                        "--clients", str(clients), "--time", "600", "--warmup", "5", "--metrics-port", "0",
                        "--json", js)
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


def convert(pcap, out, *args):
    return loadgen("capture-to-loadfile", str(pcap), "-o", str(out), *args, timeout=120)


def no_traceback(r):
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """The known loadfile run once under tcpdump: (export, pcap, port, loadgen JSON)."""
    if shutil.which("tcpdump") is None or os.geteuid() != 0:
        pytest.skip("tcpdump on lo needs tcpdump and root")
    tmp = tmp_path_factory.mktemp("capture")
    known = tmp / "known.load"
    known.write_text(KNOWN)
    return run_captured(tmp, "orig", known)


@pytest.fixture(scope="module")
def converted(original, tmp_path_factory):
    """convert(*flags) of the original capture, each conversion made once:
    (completed process, output path)."""
    exp1, pcap1, port1, _ = original
    tmp = tmp_path_factory.mktemp("converted")
    done = {}

    def get(*flags):
        if flags not in done:
            out = tmp / f"conv{len(done)}.load"
            done[flags] = (convert(pcap1, out, "--server", f"127.0.0.1:{port1}", *flags), out)
        return done[flags]
    return get


def test_round_trip_capture_convert_replay(original, converted, tmp_path):
    exp1, pcap1, port1, doc1 = original
    r, out = converted("--client-per", "none")
    assert r.returncode == 0, r.stderr
    no_traceback(r)
    assert "wrote 26 operation lines" in r.stderr, r.stderr

    exp2, pcap2, port2, doc2 = run_captured(tmp_path, "replay", out)     # --strict: statuses as captured

    # what the server received: the same procedures, the same number of times
    w1, w2 = wire_calls(pcap1, port1), wire_calls(pcap2, port2)
    assert w1 == w2, (w1, w2)
    assert w1[7] == 3 and w1[6] == 2 and w1[14] == 1 and w1[3] > 30     # WRITE3, READ3, RENAME3, walks
    # --run-once: exactly one pass of the known file although --time said 600 s and --warmup 5 s
    c1, c2 = op_counts(doc1), op_counts(doc2)
    assert doc1["run_once"] and doc1["elapsed_seconds"] < 60
    assert c1 == Counter(ln.split(" ")[1] for ln in KNOWN.splitlines() if not ln.startswith("#"))
    # loadgen's own per-operation counts for the operations it sends one to one
    assert {k: c1.get(k) for k in ONE_TO_ONE} == {k: c2.get(k) for k in ONE_TO_ONE}, (c1, c2)
    assert doc2["unexpected"] == 0 and doc2["errors"] == doc1["errors"] == 3
    # bytes read and written
    assert doc1["bytes"] == doc2["bytes"]
    assert doc1["bytes"] == {"write": 65536 + 4096 + 1000, "read": 32768 + 4096}
    # the final tree, contents and symlink targets included
    t1, t2 = tree(exp1), tree(exp2)
    assert t1 == t2
    assert t1["clients/client0/d/c"][:2] == ("file", 1000) and t1["clients/client0/d/sym"][0] == "symlink"
    assert t1["clients/client0/d/a"][:2] == ("file", 65536 + 4096)


def test_client_per_port_puts_each_client_under_clients_clientN(original, converted, tmp_path):
    exp1, pcap1, port1, doc1 = original
    r, out = converted("--timestamps", "drop")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in out.read_text().splitlines() if not ln.startswith("#")]
    assert lines[:3] == ['Deltree "/clients/client1" 0x00000000', 'MKDIR3 "/clients" *',
                         'MKDIR3 "/clients/client1" *']
    assert all(not ln[0].isdigit() for ln in lines)                        # no timestamps
    paths = [t for ln in lines for t in ln.split(" ") if t.startswith('"/')]
    assert paths and all(p.startswith('"/clients') for p in paths)
    # the captured client worked in /clients/client0: re-rooted there, not nested
    assert '"/clients/client1/d/a"' in paths and not any("/clients/client1/clients" in p for p in paths)
    # replayed by loadgen's client0 (client1 is rewritten to client0, as dbench does)
    exp2, pcap2, port2, doc2 = run_captured(tmp_path, "replay", out)
    t1, t2 = tree(exp1), tree(exp2)
    assert t1 and t2 == t1
    assert doc1["bytes"] == doc2["bytes"]


_STATUS = re.compile(r"(0x[0-9a-f]{8}|\*)\Z")


def check_dbench_grammar(text: str) -> int:
    """dbench's child.c rules, checked line by line; returns the number of operations."""
    from loadgen.run.loadfile import OP_SPECS
    n = 0
    for line in text.splitlines():
        assert line == line.strip() and "\t" not in line and "  " not in line, repr(line)
        assert len(line) < 1023, "longer than dbench's line buffer"
        if line.startswith("#"):
            continue
        toks = line.split(" ")                       # single spaces
        assert 2 <= len(toks) <= 19, line
        if toks[0][0].isdigit():                     # optional timestamp
            float(toks[0])
            toks = toks[1:]
        op, fields, status = toks[0], toks[1:-1], toks[-1]
        assert op in OP_SPECS and _STATUS.match(status), line
        sig = OP_SPECS[op]
        assert len(fields) == len(sig), line
        for kind, tok in zip(sig, fields):
            if kind == "P":                          # quoted, absolute: survives all_string_sub(" /", " ")
                assert tok.startswith('"') and tok.endswith('"') and '"' not in tok[1:-1], line
                assert tok[1] == "/" or op == "SYMLINK3", line
            else:
                assert tok.isdigit(), line
        n += 1
    return n


def test_generated_file_follows_dbench_grammar(converted):
    from loadgen.run.loadfile import parse_text
    counts = {}
    for flags in (("--client-per", "none"), ("--timestamps", "drop"), (), ("--walks", "keep")):
        r, out = converted(*flags)
        assert r.returncode == 0, r.stderr
        text = out.read_text()
        n = check_dbench_grammar(text)
        prog = parse_text(text, source=str(out))       # loadgen's own parser
        assert len(prog.items) == n
        assert prog.dialects == frozenset({"nfs"})
        counts[flags] = n
    # --walks keep writes every call: the walks, the mount's FSINFO3, the close-time COMMIT3s
    r, out = converted("--walks", "keep")
    assert "FSINFO3" in out.read_text() and counts[("--walks", "keep")] > counts[()] + 60


@pytest.mark.skipif(shutil.which("dbench") is None, reason="dbench is not installed")
def test_real_dbench_parses_every_line(converted, tmp_path):
    """Debian's dbench 4.00 runs its fileio backend, which knows no NFS
    operation: each line it parses reports "[N] Unknown operation OP"
    (Deltree it runs, in a scratch directory).  Its
    parser predates the '*' status (dbench 5 accepts it), so only the '*'
    lines may be refused as "Badly formed status"."""
    r, out = converted("--timestamps", "drop")
    assert r.returncode == 0, r.stderr
    lines = out.read_text().splitlines()
    want = {i: ln.split(" ")[0] for i, ln in enumerate(lines, 1)
            if not ln.startswith("#") and not ln.endswith(" *") and not ln.startswith("Deltree ")}
    stars = sum(1 for ln in lines if ln.endswith(" *"))
    workdir = tmp_path / "dbench"
    workdir.mkdir()
    p = subprocess.Popen(["dbench", "-c", str(out), "-t", "30", "-D", str(workdir), "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen, bad = {}, 0
    try:
        deadline = time.monotonic() + 60
        while len(seen) < len(want) and time.monotonic() < deadline:
            r_, _, _ = select.select([p.stdout], [], [], deadline - time.monotonic())
            if not r_:
                break
            line = p.stdout.readline()
            if not line:
                break
            m = re.match(r"\[(\d+)\] Unknown operation (\S+)", line)
            if m:
                seen[int(m.group(1))] = m.group(2)
            elif line.startswith("Badly formed status"):
                bad += 1
    finally:
        p.kill()
        p.wait(10)
    assert seen == want
    assert bad == stars


def test_truncated_capture_is_summarised(original, tmp_path):
    exp1, pcap1, port1, _ = original
    data = open(pcap1, "rb").read()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) // 2])            # ends inside a packet
    out = tmp_path / "cut.load"
    r = convert(cut, out, "--server", f"127.0.0.1:{port1}")
    no_traceback(r)
    assert r.returncode == 0, r.stderr
    assert "capture cut short" in r.stderr and "in the middle of a packet" in r.stderr
    n = check_dbench_grammar(out.read_text())
    assert 3 < n < 28
    tiny = tmp_path / "tiny.pcap"
    tiny.write_bytes(data[:30])                         # inside the first packet header
    r = convert(tiny, tmp_path / "tiny.load")
    no_traceback(r)
    assert r.returncode == 1 and "nothing written" in r.stderr and "cut short" in r.stderr
    assert not (tmp_path / "tiny.load").exists()


@pytest.mark.skipif(shutil.which("editcap") is None, reason="editcap (wireshark-common) is not installed")
def test_dropped_packets_are_reported(original, tmp_path):
    """Frames deleted from the middle of the capture, as a capture that
    dropped packets: the summary says so; the intact capture has no such
    warning."""
    exp1, pcap1, port1, _ = original
    r = convert(pcap1, tmp_path / "whole.load", "--server", f"127.0.0.1:{port1}")
    assert r.returncode == 0 and "dropped packets" not in r.stderr, r.stderr
    holed = tmp_path / "holed.pcap"
    subprocess.run(["editcap", str(pcap1), str(holed), "40-45"], check=True, capture_output=True)
    r = convert(holed, tmp_path / "holed.load", "--server", f"127.0.0.1:{port1}")
    no_traceback(r)
    assert r.returncode == 0, r.stderr
    m = re.search(r"warning: the capture dropped packets: (\d+) frames", r.stderr)
    assert m and int(m.group(1)) >= 1, r.stderr


def test_capture_starting_mid_connection(original, tmp_path):
    """Frames from inside a multi-segment WRITE3 record on: the tail of that
    record cannot be decoded, the handles come from before the capture."""
    exp1, pcap1, port1, _ = original
    fields = subprocess.run(["tshark", "-n", "-r", pcap1, "-d", f"tcp.port=={port1},rpc", "-T", "fields",
                             "-e", "frame.number", "-e", "tcp.len", "-e", "rpc.xid"],
                            capture_output=True, text=True, timeout=60).stdout.splitlines()
    # a data segment that carries no whole RPC message: part of a record split over segments
    parts = [int(f.split("\t")[0]) for f in fields if f.split("\t")[1] not in ("", "0") and not f.split("\t")[2]]
    assert parts, "no RPC record split over TCP segments in the capture"
    start = parts[-1]
    mid = tmp_path / "mid.pcap"
    subprocess.run(["tshark", "-r", pcap1, "-Y", f"frame.number >= {start}", "-w", str(mid)],
                   check=True, capture_output=True, timeout=60)
    out = tmp_path / "mid.load"
    r = convert(mid, out, "--server", f"127.0.0.1:{port1}")
    no_traceback(r)
    assert r.returncode == 0, r.stderr
    assert "were in use before the capture started" in r.stderr
    assert "not a decodable RPC message" in r.stderr
    text = out.read_text()
    assert re.search(r"^# \d+ file handles were in use before the capture started", text, re.M)
    assert '/pre-capture/fh-' in text
    check_dbench_grammar(text)


def _pcap(packets) -> bytes:
    """A classic pcap (Ethernet) of (proto, sport, dport, payload) IPv4 packets on 127.0.0.1."""
    import struct
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, (proto, sport, dport, payload) in enumerate(packets):
        if proto == "tcp":
            l4 = struct.pack(">HHIIBBHHH", sport, dport, 1000 + i, 1, 5 << 4, 0x18, 65535, 0, 0) + payload
            pnum = 6
        else:
            l4 = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload
            pnum = 17
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), i, 0, 64, pnum, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])) + l4
        frame = b"\x00" * 12 + b"\x08\x00" + ip
        out.append(struct.pack("<IIII", 1_700_000_000 + i, 0, len(frame), len(frame)) + frame)
    return b"".join(out)


def test_non_nfs_traffic_is_summarised(tmp_path):
    pcap = tmp_path / "web.pcap"
    pcap.write_bytes(_pcap([
        ("tcp", 40000, 80, b"GET / HTTP/1.0\r\n\r\n"),
        ("tcp", 80, 40000, b"HTTP/1.0 200 OK\r\n\r\nhello"),
        ("udp", 40001, 53, b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"),
        ("tcp", 40002, 2049, b"\x80\x00\x00\x08not-rpc!"),      # a record mark, then no RPC
    ]))
    out = tmp_path / "web.load"
    for extra in ((), ("--server", "127.0.0.1:2049")):
        r = convert(pcap, out, *extra)
        no_traceback(r)
        assert r.returncode == 1, r.stderr
        assert "capture " in r.stderr and "4 frames" in r.stderr
        assert "0 NFSv3 calls" in r.stderr and "nothing written" in r.stderr
        assert "not a decodable RPC message" in r.stderr
        assert not out.exists()


def test_cli_errors_are_one_line(tmp_path):
    notcap = tmp_path / "x.pcap"
    notcap.write_bytes(b"\xd4\xc3\xb2\xa1" + b"\xff" * 40)     # pcap magic, nonsense header
    for args in ((str(tmp_path / "missing.pcap"), "-o", str(tmp_path / "o")),
                 (str(notcap), "-o", str(tmp_path / "o"), "--server", "nohost:1"),
                 (str(notcap), "-o", str(tmp_path / "o"), "--server", "127.0.0.1:99999")):
        r = loadgen("capture-to-loadfile", *args, timeout=60)
        no_traceback(r)
        assert r.returncode == 2, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = loadgen("capture-to-loadfile", str(notcap), timeout=60)          # -o is required: usage
    assert r.returncode == 2 and "usage" in r.stderr


def test_missing_tshark_is_a_clear_error(original, tmp_path):
    env = dict(os.environ, PATH="/nonexistent")
    r = subprocess.run([PY, "-m", "loadgen", "capture-to-loadfile", original[1], "-o", str(tmp_path / "o")],
                       cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    no_traceback(r)
    assert r.returncode == 2 and "tshark is not installed" in r.stderr


def test_help_explains_capture_and_every_flag():
    r = loadgen("capture-to-loadfile", "--help", timeout=60)
    assert r.returncode == 0
    for flag in ("--output", "--client-per", "--timestamps", "--server", "--walks"):
        assert flag in r.stdout
    assert "tcpdump -i lo -s 0 -w nfs.pcap port P" in r.stdout
    r = loadgen("run", "--help", timeout=60)
    assert "--run-once" in r.stdout


@needs_tcpdump
def test_nfs_over_udp(tmp_path):
    """MNT, LOOKUP3, GETATTR3, READ3 and a LOOKUP3 that fails, over UDP (loadgen's
    own UDP RPC client; libnfs has no NFS over UDP)."""
    import struct
    from loadgen.flood.udpflood import call_once, mount_root, pack_opaque
    export = tmp_path / "export"
    export.mkdir()
    (export / "f").write_bytes(b"x" * 5000)
    pcap = str(tmp_path / "udp.pcap")
    with ServerProcess(export, threads=2, arena_mib=32, extra=("--udp",)) as srv:
        td = Tcpdump(srv.port, pcap)
        try:
            root = mount_root("127.0.0.1", srv.port, str(export))
            res = call_once("127.0.0.1", srv.port, 100003, 3, 3, pack_opaque(root) + pack_opaque(b"f"))
            assert struct.unpack_from(">I", res)[0] == 0
            n, = struct.unpack_from(">I", res, 4)
            fh = res[8:8 + n]
            call_once("127.0.0.1", srv.port, 100003, 3, 1, pack_opaque(fh))
            call_once("127.0.0.1", srv.port, 100003, 3, 6, pack_opaque(fh) + struct.pack(">QI", 4096, 2000))
            call_once("127.0.0.1", srv.port, 100003, 3, 3, pack_opaque(root) + pack_opaque(b"nope"))
        finally:
            td.stop()
        port = srv.port
    out = tmp_path / "udp.load"
    r = convert(pcap, out, "--server", f"127.0.0.1:{port}", "--client-per", "host", "--timestamps", "drop")
    no_traceback(r)
    assert r.returncode == 0, r.stderr
    ops = [ln for ln in out.read_text().splitlines() if not ln.startswith("#")]
    assert ops == ['Deltree "/clients/client1" 0x00000000', 'MKDIR3 "/clients" *', 'MKDIR3 "/clients/client1" *',
                   'GETATTR3 "/clients/client1/f" 0x00000000',
                   'READ3 "/clients/client1/f" 4096 2000 0x00000000',
                   'LOOKUP3 "/clients/client1/nope" 0x00000002'], r.stderr
    assert "client1 = 127.0.0.1" in r.stderr


KNOWN2 = """\
MKDIR3 "/client1" 0x00000000
CREATE3 "/client1/f" 0x00000000
WRITE3 "/client1/f" 0 8192 0 0x00000000
READ3 "/client1/f" 0 8192 0x00000000
RENAME3 "/client1/f" "/client1/g" 0x00000000
REMOVE3 "/client1/missing" 0x00000002
"""


@needs_tcpdump
def test_two_captured_clients(tmp_path):
    """Two loadgen clients (two connections, working in /client0 and /client1)
    captured together.  --client-per port gives each its own /clients/clientN;
    one replaying loadgen client (client0: it rewrites client1 to client0, as
    dbench does) runs both streams with the statuses they saw."""
    known = tmp_path / "known2.load"
    known.write_text(KNOWN2)
    exp1, pcap1, port1, doc1 = run_captured(tmp_path, "two", known, clients=2)
    assert doc1["ops"]["WRITE3"]["count"] == 2

    out = tmp_path / "port.load"
    r = convert(pcap1, out, "--server", f"127.0.0.1:{port1}")
    assert r.returncode == 0, r.stderr
    assert "clients: 2" in r.stderr and "client2 = 127.0.0.1:" in r.stderr
    text = out.read_text()
    assert text.count("Deltree") == 1 and 'Deltree "/clients/client1" 0x00000000' in text
    for k in (1, 2):
        assert re.search(rf'WRITE3 "/clients/client1/c{k}/client[01]/f" 0 8192 0 0x00000000', text)
    exp2, pcap2, port2, doc2 = run_captured(tmp_path, "replay", out)
    t1, t2 = tree(exp1), tree(exp2)

    def sub(t, top):
        return {k[len(top) + 1:]: v for k, v in t.items() if k.startswith(top + "/")}
    orig = sub(t1, "client0")
    assert orig and orig == sub(t1, "client1") and set(orig) == {"g"}
    # captured client k's tree is under clients/client1/c<k>, client1 replayed as client0
    got = [sub(t2, f"clients/client0/c{k}/client{j}") for k in (1, 2) for j in (0, 1)]
    assert sorted(map(len, got)) == [0, 0, len(orig), len(orig)] and all(g == orig for g in got if g)
    assert len(t2) == 6 + 2 * len(orig)
    assert doc1["bytes"] == doc2["bytes"] == {"read": 16384, "write": 16384}
    c1, c2 = op_counts(doc1), op_counts(doc2)
    assert c2.pop("MKDIR3") == c1.pop("MKDIR3") + 4 and c2.pop("Deltree") == 1    # the setup lines
    assert {k: c1.get(k) for k in ONE_TO_ONE} == {k: c2.get(k) for k in ONE_TO_ONE}, (c1, c2)

    host = tmp_path / "host.load"
    r = convert(pcap1, host, "--server", f"127.0.0.1:{port1}", "--client-per", "host")
    assert r.returncode == 0 and "clients: 1" in r.stderr, r.stderr
    merged = tmp_path / "merged.load"
    r = convert(pcap1, merged, "--server", f"127.0.0.1:{port1}", "--client-per", "none")
    assert r.returncode == 0, r.stderr
    assert "contain client1" in r.stderr and "contain client1" in merged.read_text()


@needs_tcpdump
def test_records_split_over_segments_and_several_per_segment(tmp_path):
    """Hand-framed RPC records over one TCP connection: two calls in one
    segment, and one call sent in two segments (TCP_NODELAY, two sends)."""
    from nfsbulk_testlib import RpcClient, lookup_fh, mount_root
    from rpcsrv.proto.xdr import Packer
    export = tmp_path / "export"
    export.mkdir()
    (export / "f").write_bytes(b"y" * 8192)
    pcap = str(tmp_path / "seg.pcap")

    def args(fh, *nums):
        p = Packer()
        p.pack_opaque(fh)
        if nums:
            p.pack_uhyper(nums[0])
            p.pack_uint(nums[1])
        return p.get_buffer()

    with ServerProcess(export, threads=2, arena_mib=32) as srv:
        td = Tcpdump(srv.port, pcap)
        try:
            with RpcClient(srv.port) as rpc:
                rpc.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                mount_root(rpc, str(export))
                fh = lookup_fh(rpc, str(export), "f")
                two = rpc.call_bytes(0x5001, 100003, 3, 1, args(fh)) + rpc.call_bytes(0x5002, 100003, 3, 6,
                                                                                    args(fh, 0, 100))
                rpc.send_raw(two)                                   # one segment, two records
                assert rpc.recv_record() is not None and rpc.recv_record() is not None
                split = rpc.call_bytes(0x5003, 100003, 3, 6, args(fh, 4096, 50))
                rpc.send_raw(split[:7])                             # the record mark and 3 bytes
                rpc.send_raw(split[7:])
                assert rpc.recv_record() is not None
        finally:
            td.stop()
        port = srv.port
    # what tshark's frames look like: a frame with two calls, a call reassembled from two frames
    f = subprocess.run(["tshark", "-n", "-r", pcap, "-d", f"tcp.port=={port},rpc", "-Y",
                        "rpc.msgtyp == 0", "-T", "fields", "-e", "rpc.xid", "-e", "tcp.len"],
                       capture_output=True, text=True, timeout=60).stdout.splitlines()
    assert "0x00005001,0x00005002\t" in "\n".join(f), f
    assert any(ln.startswith("0x00005003\t") and ln.split("\t")[1] != str(len(split)) for ln in f), f
    out = tmp_path / "seg.load"
    r = convert(pcap, out, "--server", f"127.0.0.1:{port}", "--client-per", "none", "--walks", "keep",
                "--timestamps", "drop")
    no_traceback(r)
    assert r.returncode == 0, r.stderr
    assert [ln for ln in out.read_text().splitlines() if not ln.startswith("#")] == [
        'LOOKUP3 "/f" 0x00000000', 'GETATTR3 "/f" 0x00000000',
        'READ3 "/f" 0 100 0x00000000', 'READ3 "/f" 4096 50 0x00000000']
