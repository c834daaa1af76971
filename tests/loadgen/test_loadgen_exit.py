"""loadgen run's verdict and start-up: exit 1 naming the first failure (a --read-only rpcsrv),
failures not counted as operations, the --clients bound, Ctrl-C during start-up (every client
gone within 2 s), the start-up progress line, a client dying mid-run (DEGRADED), --plot
without matplotlib, and --metrics-port 0."""
from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time

import pytest

from nfsbulk_testlib import ROOT, ServerProcess, wait_for_line


def loadgen(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "loadgen", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


def children(pid: int) -> list[int]:
    """The client processes of loadgen `pid` (multiprocessing's spawned children, not its resource
    tracker)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                try:
                    with open(f"/proc/{d}/cmdline", "rb") as f:
                        if b"spawn_main" in f.read():
                            out.append(int(d))
                except OSError:
                    pass
    return out


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.fixture(scope="module")
def ro_server(tmp_path_factory):
    export = tmp_path_factory.mktemp("ro-export")
    with ServerProcess(export, threads=2, arena_mib=64, extra=("--read-only",)) as srv:
        yield srv


def test_read_only_server_rw256k_exits_1_naming_the_failure(ro_server):
    r = loadgen("run", ro_server.url, "--profile", "rw256k", "--clients", "1", "--time", "2", "--warmup", "0",
                "--no-metrics")
    assert r.returncode == 1, r.stdout + r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("loadgen: aborting: 1 of 1 clients failed before the start; first: client0 (setup): "
                           "rw256k setup: mkdir /clients failed: Read-only file system"), last
    assert "Traceback" not in r.stderr


def test_unexpected_statuses_exit_1_and_are_not_ops(ro_server, tmp_path):
    out = tmp_path / "run.json"
    r = loadgen("run", ro_server.url, "--loadfile", "metadata", "--clients", "1", "--time", "2", "--warmup", "0",
                "--no-metrics", "--json", str(out))
    assert r.returncode == 1, r.stdout + r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("loadgen: FAILED: "), last
    # the first cause: client, loadfile line, operation, path, status (NOENT: the client's own
    # directory could not be made on the read-only export, so its subdirectory has no parent)
    assert '; first: client0 [9] MKDIR3 "/clients/client0/meta" got 0x00000002 (NFS3ERR_NOENT) - expected ' \
        '0x00000000' in last, last
    doc = json.loads(out.read_text())
    assert doc["exit_code"] == 1 and doc["first_failure"] in last
    assert doc["failed_ops"] == doc["unexpected"] > 0
    per_op = sum(v["count"] for v in doc["ops"].values())
    assert doc["ops_total"] == per_op - doc["failed_ops"]           # failures are not operations
    assert "(failures: not in Operations or ops/sec)" in r.stdout


@pytest.mark.parametrize("n", ["257", "100000"])
def test_clients_upper_bound(n):
    r = loadgen("run", "nfs://127.0.0.1/x?nfsport=1&mountport=1", "--clients", n, "--no-metrics", timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip() == ("loadgen: --clients %s: at most 256: each client is a separate Python process "
                                "with its own connection (over 100 MB resident and a slow start each), so more "
                                "would measure this machine's process scheduler rather than the server" % n)


def test_ctrl_c_during_start_up_stops_every_client_within_2s():
    """Clients that hang in MOUNT (a listener that accepts and never answers): a progress line
    after a second, then SIGINT: loadgen exits 130 and every client process is gone in 2 s."""
    n = 4
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(16)
        port = lsock.getsockname()[1]
        p = subprocess.Popen([sys.executable, "-m", "loadgen", "run",
                              "nfs://127.0.0.1/x?nfsport=%d&mountport=%d" % (port, port), "--clients", str(n),
                              "--no-metrics", "--start-timeout", "120", "--rpc-timeout", "120"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, text=True)
        accepted = []
        try:
            deadline = time.monotonic() + 60
            while len(accepted) < n:                     # every client is in its MOUNT call
                left = deadline - time.monotonic()
                assert left > 0, "clients did not connect"
                r, _, _ = select.select([lsock], [], [], left)
                if r:
                    accepted.append(lsock.accept()[0])
            progress = ""
            while "loadgen: starting: %d/%d clients spawned, 0 mounted, 0 set up after " % (n, n) \
                    not in progress:                     # start-up takes > 1 s: a progress line
                left = deadline - time.monotonic()
                assert left > 0, "no progress line: %r" % progress
                r, _, _ = select.select([p.stderr], [], [], left)
                if r:
                    line = p.stderr.readline()
                    assert line, "loadgen exited: %r" % progress
                    progress += line
            kids = children(p.pid)
            assert len(kids) == n, kids
            t = time.monotonic()
            p.send_signal(signal.SIGINT)
            p.wait(timeout=10)
            took = time.monotonic() - t
            err = p.stderr.read()
            assert p.returncode == 130, err
            assert took <= 2.0, took
            assert all(gone(k) for k in kids), [k for k in kids if not gone(k)]
            assert "interrupted during start-up, stopping %d clients" % n in err
            assert "Traceback" not in err
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
            p.stderr.close()
            for s in accepted:
                s.close()


def test_client_dying_mid_run_marks_the_run_degraded(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    with ServerProcess(export, threads=2, arena_mib=64) as srv:
        p = subprocess.Popen([sys.executable, "-m", "loadgen", "run", srv.url, "--loadfile", "mixed-rw",
                              "--clients", "2", "--time", "30", "--warmup", "0", "--no-metrics"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, text=True)
        try:
            deadline = time.monotonic() + 60
            while True:                                  # the first per-second line of the run
                assert time.monotonic() < deadline
                line = p.stdout.readline()
                assert line, p.stderr.read()
                if " execute " in line:
                    break
            kids = children(p.pid)
            assert kids
            os.kill(kids[0], signal.SIGKILL)
            out, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert p.returncode == 1, err
    assert "DEGRADED: client" in out and "failed (exited)" in out, out
    assert err.strip().splitlines()[-1].startswith("loadgen: FAILED: 1 client(s) failed; first: client"), err


def test_plot_without_matplotlib_is_a_hint_before_any_run(tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from loadgen.__main__ import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-c", code, "bench", "--rounds", "1", "--time", "1",
                        "--plot", str(tmp_path / "x.png")], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip() == ("loadgen bench: --plot needs matplotlib, an optional extra: "
                                "pip install 'nfsbulk[plot]' (make setup installs it)")
    assert r.stdout == ""
    assert not (tmp_path / "x.png").exists()
    assert time.monotonic() - t < 30


def test_metrics_port_zero_picks_a_free_port(tmp_path):
    """loadgen run --metrics-port 0: a free port, announced on stderr before the clients start,
    serving the loadgen families without _created series (the run lasts until its end)."""
    import re
    import urllib.request
    srv = ServerProcess(tmp_path, threads=2, arena_mib=64)
    p = subprocess.Popen([sys.executable, "-m", "loadgen", "run", srv.url, "--loadfile", "metadata",
                          "--clients", "1", "--time", "2", "--warmup", "0", "--metrics-port", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, text=True)
    try:
        line = p.stderr.readline()              # the first thing loadgen says
        m = re.match(r"loadgen: metrics (http://127\.0\.0\.1:(\d+)/metrics)$", line.strip())
        assert m and int(m.group(2)) != 0, line
        with urllib.request.urlopen(m.group(1), timeout=10) as r:
            text = r.read().decode()
        assert "nfsbulk_loadgen_clients" in text and "_created" not in text
        p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
        srv.stop()
    assert p.returncode == 0


def test_a_server_killed_mid_run_is_named_and_the_run_ends_with_what_it_has(tmp_path):
    """SIGKILL on the server during the run: the per-second lines say STALLED instead of repeating
    the averages, one line names the server, the cause and the time, the run ends within 10 s of
    the kill with its table and JSON, and the verdict is FAILED (exit 1)."""
    export = tmp_path / "export"
    export.mkdir()
    out = tmp_path / "run.json"
    with ServerProcess(export, threads=2, arena_mib=64) as srv:
        p = subprocess.Popen([sys.executable, "-m", "loadgen", "run", srv.url, "--loadfile", "mixed-rw",
                              "--clients", "2", "--time", "120", "--warmup", "0", "--no-metrics", "--json", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, text=True)
        try:
            wait_for_line(p.stdout, r" execute ", p)      # the first per-second line of the run
            srv.proc.kill()
            killed = time.monotonic()
            stdout, stderr = p.communicate(timeout=60)
            took = time.monotonic() - killed
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert p.returncode == 1, stderr
    assert took < 10, took
    assert "STALLED 1 s: no operation succeeded" in stdout, stdout
    assert "Throughput" in stdout
    last = stderr.strip().splitlines()[-1]
    assert re.match(r"loadgen: FAILED: the server at 127\.0\.0\.1:%d refused the connection at t=\d+\.\d s; "
                    r"\d+ operations before it$" % srv.port, last), stderr
    assert "Traceback" not in stderr
    doc = json.loads(out.read_text())
    assert "refused the connection" in doc["server_gone"] and doc["ops_total"] > 0
    assert any(row.get("stalled") for row in doc["per_second"])
