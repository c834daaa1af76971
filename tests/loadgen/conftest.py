"""Fixtures for loadgen tests: an nfs-ganesha server on loopback.

One ganesha per test session, with several VFS exports so each test gets a
fresh export directory (deleting files behind ganesha's back would leave its
caches stale).  Ports are picked free (ganesha takes any port in
NFS_CORE_PARAM); rpcbind is started only if nothing listens on
127.0.0.1:111 (ganesha refuses to start without it).  Readiness is a real
MOUNT + NFS mount through python-libnfs, polled against a deadline.  The
server (and an rpcbind we started) is always killed at teardown.
"""
from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

NEXPORTS = 10
READY_TIMEOUT = 40.0
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = sys.executable


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _try_mount(url: str) -> str | None:
    """None when a libnfs mount works, else the error (in a subprocess so a
    wedged libnfs call cannot hang the test session)."""
    code = ("import sys, libnfs\n"
            "c = libnfs.nfs_init_context()\n"
            "u = libnfs.nfs_parse_url_dir(c, sys.argv[1])\n"
            "rc = libnfs.nfs_mount(c, u.server, u.path)\n"
            "print(rc, libnfs.nfs_get_error(c)); sys.exit(0 if rc == 0 else 1)\n")
    try:
        r = subprocess.run([PYTHON, "-c", code, url], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return "mount attempt timed out"
    return None if r.returncode == 0 else (r.stdout + r.stderr).strip()


class Ganesha:
    def __init__(self, base: str, nfs_port: int, mnt_port: int, exports: list[str]):
        self.base = base
        self.nfs_port = nfs_port
        self.mnt_port = mnt_port
        self.exports = exports
        self._next = itertools.count()

    def url(self, export: str, nfs_port: int | None = None, mnt_port: int | None = None) -> str:
        return (f"nfs://127.0.0.1{export}?nfsport={nfs_port or self.nfs_port}"
                f"&mountport={mnt_port or self.mnt_port}&version=3")

    def fresh_export(self) -> str:
        i = next(self._next)
        if i >= len(self.exports):
            pytest.fail("tests used more ganesha exports than the fixture made; raise NEXPORTS")
        return self.exports[i]


@pytest.fixture(scope="session")
def ganesha(tmp_path_factory):
    if shutil.which("ganesha.nfsd") is None:
        pytest.skip("ganesha.nfsd is not installed (apt-get install nfs-ganesha nfs-ganesha-vfs rpcbind)")
    base = str(tmp_path_factory.mktemp("ganesha"))
    procs = []
    try:
        if not _listening("127.0.0.1", 111):
            rpcbind = shutil.which("rpcbind") or "/usr/sbin/rpcbind"
            if not os.path.exists(rpcbind):
                pytest.fail("nothing listens on 127.0.0.1:111 and rpcbind is not installed")
            rb = subprocess.Popen([rpcbind, "-w", "-f"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(rb)
            deadline = time.monotonic() + 10
            while not _listening("127.0.0.1", 111):
                if rb.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"rpcbind did not come up (exit {rb.poll()})")
                time.sleep(0.05)

        exports = []
        blocks = []
        for i in range(1, NEXPORTS + 1):
            d = os.path.join(base, f"export{i}")
            os.makedirs(d)
            exports.append(d)
            blocks.append(
                f"EXPORT {{ Export_Id = {i}; Path = {d}; Pseudo = /export{i}; Access_Type = RW; "
                f"Squash = No_Root_Squash; Protocols = 3; Transports = TCP; SecType = sys; "
                f"FSAL {{ Name = VFS; }} }}")
        # ganesha's ports must be written into its configuration, so they are probed first;
        # another process may take one between the probe and ganesha's bind: then ganesha
        # exits saying so, and the fixture starts it again on new ports
        for attempt in range(1, 4):
            g, server, log = _start_ganesha(base, exports, blocks, attempt)
            procs.append(g)
            status = _wait_ganesha(g, server, log)
            if status is None:
                break
            busy = g.poll() is not None and os.path.exists(log) and "Address already in use" in open(log).read()
            _stop(g)
            if not busy or attempt == 3:
                pytest.fail(status)
        yield server
    finally:
        for p in reversed(procs):
            _stop(p)


def _start_ganesha(base: str, exports: list[str], blocks: list[str], attempt: int):
    """ganesha.nfsd on four probed ports: (process, Ganesha, its log's path)."""
    nfs_port, mnt_port, nlm_port, rq_port = _free_ports(4)
    conf = os.path.join(base, f"ganesha-{attempt}.conf")
    with open(conf, "w") as f:
        f.write(
            "NFS_CORE_PARAM {\n  Protocols = 3;\n"
            f"  NFS_Port = {nfs_port};\n  MNT_Port = {mnt_port};\n"
            f"  NLM_Port = {nlm_port};\n  Rquota_Port = {rq_port};\n"
            "  Enable_NLM = false;\n  Enable_RQUOTA = false;\n  Bind_addr = 127.0.0.1;\n}\n"
            "NFSV4 { Graceless = true; }\n" + "\n".join(blocks) + "\n")
    log = os.path.join(base, f"ganesha-{attempt}.log")
    pid = os.path.join(base, f"ganesha-{attempt}.pid")
    g = subprocess.Popen(["ganesha.nfsd", "-F", "-f", conf, "-L", log, "-p", pid, "-N", "NIV_EVENT"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    return g, Ganesha(base, nfs_port, mnt_port, exports), log


def _wait_ganesha(g: subprocess.Popen, server: Ganesha, log: str) -> str | None:
    """None once a libnfs mount of the first export works, else why not (with the log's tail)."""
    deadline = time.monotonic() + READY_TIMEOUT
    last = "not tried"
    while True:
        if g.poll() is not None:
            tail = open(log).read()[-3000:] if os.path.exists(log) else ""
            return f"ganesha.nfsd exited with {g.returncode} during startup:\n{tail}"
        if _listening("127.0.0.1", server.nfs_port) and _listening("127.0.0.1", server.mnt_port):
            last = _try_mount(server.url(server.exports[0]))
            if last is None:
                return None
        if time.monotonic() > deadline:
            return f"ganesha not ready within {READY_TIMEOUT} s: {last}"
        time.sleep(0.1)          # polling interval of a condition with a deadline


def _run_loadgen(args: list[str], timeout: float = 60.0, **kw) -> subprocess.CompletedProcess:
    """python -m loadgen ARGS as a subprocess, from the project root."""
    return subprocess.run([PYTHON, "-m", "loadgen", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, **kw)


@pytest.fixture
def run_loadgen():
    return _run_loadgen


@pytest.fixture
def loadgen_argv():
    """(argv prefix, cwd) to start `python -m loadgen` with Popen."""
    return [PYTHON, "-m", "loadgen"], ROOT


@pytest.fixture
def free_port():
    return _free_ports(1)[0]
