"""rpcsrv's start-up: errors that name the option and the cause (one line, no traceback, the
right exit status), the unwritable-export warning, --metrics-port 0 / off / --metrics-addr, and the
state directory (temporary exports leave nothing; stale entries are pruned)."""
from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from nfsbulk_testlib import ROOT

READY = re.compile(r"rpcsrv: serving (nfs://\S+)")


def rpcsrv(*args, env=None, prefix=()):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.Popen([*prefix, sys.executable, "-m", "rpcsrv", "--listen", "127.0.0.1:0", "--threads", "2",
                             "--arena-mib", "32", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=e, text=True)


def fails(*args, code, env=None):
    """Run rpcsrv expecting it to refuse to start: (its one stderr line)."""
    p = rpcsrv(*args, env=env)
    out, err = p.communicate(timeout=60)
    assert p.returncode == code, (p.returncode, out, err)
    assert out == ""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def ready_line(p, timeout=60):
    """The ready line on stdout (the wait is on the pipe, with a deadline)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([p.stdout], [], [], 1.0)
        if r:
            line = p.stdout.readline()
            assert line, "rpcsrv exited: %s" % p.communicate(timeout=30)[1]
            if READY.search(line):
                return line
        elif p.poll() is not None:
            break
    p.kill()
    raise AssertionError("no ready line: %s" % p.communicate(timeout=30)[1])


def stop(p):
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    return err


def test_missing_export(tmp_path):
    line = fails("--export", str(tmp_path / "nope"), "--no-metrics", code=2)
    assert line == "rpcsrv: --export %s: does not exist" % (tmp_path / "nope")


def test_export_not_a_directory(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    line = fails("--export", str(f), "--no-metrics", code=2)
    assert line == "rpcsrv: --export %s: is not a directory" % f


def test_arena_too_large(tmp_path):
    line = fails("--export", str(tmp_path), "--arena-mib", "4000000", "--no-metrics", code=1)
    assert line.startswith("rpcsrv: --arena-mib 4000000: cannot map 4000000 MiB: "), line
    assert "127.0.0.1" not in line


def test_state_dir_unusable(tmp_path):
    (tmp_path / "exp").mkdir()
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the state directory's parent should be")
    sd = blocker / "state"
    line = fails("--export", str(tmp_path / "exp"), "--state-dir", str(sd), "--no-metrics", code=1)
    assert line.startswith("rpcsrv: --state-dir %s: cannot keep the file-handle key there: " % sd), line
    assert "127.0.0.1" not in line


def test_state_dir_inside_export(tmp_path):
    line = fails("--export", str(tmp_path), "--state-dir", str(tmp_path / "s"), "--no-metrics", code=2)
    assert line.startswith("rpcsrv: --state-dir %s: lies inside the export" % (tmp_path / "s")), line


def test_listen_port_taken(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = subprocess.run([sys.executable, "-m", "rpcsrv", "--export", str(tmp_path), "--listen",
                            "127.0.0.1:%d" % port, "--threads", "2", "--arena-mib", "32", "--no-metrics"],
                           capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 1
    assert p.stderr.strip() == "rpcsrv: --listen 127.0.0.1:%d: cannot listen: Address already in use" % port


def test_metrics_port_taken(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        line = fails("--export", str(tmp_path), "--metrics-port", str(port), code=1)
    assert line == "rpcsrv: --metrics-port %d: cannot serve metrics on 127.0.0.1: Address already in use" % port


def test_metrics_port_bad_value(tmp_path):
    p = rpcsrv("--export", str(tmp_path), "--metrics-port", "sometimes")
    _, err = p.communicate(timeout=60)
    assert p.returncode == 2 and "--metrics-port: expected a port number or 'off'" in err


def _drop_write(export):
    """What makes `export` unwritable for the server: chmod for a normal user; for root, also a
    bounding set without CAP_DAC_OVERRIDE (root ignores mode bits otherwise)."""
    os.chmod(export, 0o555)
    if os.geteuid() != 0:
        return ()
    return ("setpriv", "--bounding-set=-dac_override,-dac_read_search")


def test_unwritable_export_warns(tmp_path):
    export = tmp_path / "ro"
    export.mkdir()
    prefix = _drop_write(export)
    try:
        p = rpcsrv("--export", str(export), "--no-metrics", prefix=prefix)
        ready_line(p)
        err = stop(p)
        assert ("rpcsrv: warning: --export %s: the server cannot create files in it (Permission denied)"
                % export) in err, err
        p = rpcsrv("--export", str(export), "--no-metrics", "--read-only", prefix=prefix)
        ready_line(p)
        err = stop(p)
        assert "warning" not in err, err
        assert os.listdir(export) == []      # the probe leaves nothing
    finally:
        os.chmod(export, 0o755)


def test_writable_export_no_warning(tmp_path):
    p = rpcsrv("--export", str(tmp_path), "--no-metrics")
    ready_line(p)
    err = stop(p)
    assert "warning" not in err, err
    assert os.listdir(tmp_path) == []


def _scrape(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def test_metrics_port_zero_picks_a_free_port(tmp_path):
    p = rpcsrv("--export", str(tmp_path), "--metrics-port", "0", "--metrics-addr", "127.0.0.2")
    try:
        line = ready_line(p)
        m = re.search(r" metrics (http://127\.0\.0\.2:(\d+)/metrics)", line)
        assert m, line
        assert int(m.group(2)) != 0
        text = _scrape(m.group(1))
        assert "nfsbulk_build_info{" in text and "nfsbulk_rpc_disconnects_total" in text
        assert "_created" not in text
    finally:
        stop(p)


@pytest.mark.parametrize("how", [("--no-metrics",), ("--metrics-port", "off")])
def test_metrics_off(tmp_path, how):
    p = rpcsrv("--export", str(tmp_path), *how)
    try:
        line = ready_line(p)
        assert " metrics http" not in line, line
    finally:
        stop(p)


def test_temporary_export_leaves_no_state(tmp_path):
    home = tmp_path / "home"
    p = rpcsrv("--no-metrics", env={"NFSBULK_STATE_HOME": str(home)})
    line = ready_line(p)
    export = re.search(r"nfs://127\.0\.0\.1(/[^?]+)\?", line).group(1)
    assert os.path.isdir(export)
    stop(p)
    assert not os.path.exists(export)
    assert not home.exists() or os.listdir(home) == []


def test_stale_state_entries_are_pruned(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    live_export = tmp_path / "live"
    live_export.mkdir()

    def entry(name, record=None, age_days=0.0):
        d = home / name
        d.mkdir()
        (d / "handle.key").write_bytes(os.urandom(32))
        if record is not None:
            (d / "export").write_text(record + "\n")
        t = time.time() - age_days * 86400
        os.utime(d / "handle.key", (t, t))
        return d

    gone = entry("0123456789abcdef", str(tmp_path / "deleted-export"))
    legacy_old = entry("00000000000000aa", None, age_days=30)
    legacy_new = entry("00000000000000bb", None, age_days=1)
    other = entry("0123456789abcdee", str(tmp_path))         # its export still exists
    not_ours = home / "notes.txt"
    not_ours.write_text("not a state entry")
    p = rpcsrv("--export", str(live_export), "--no-metrics", env={"NFSBULK_STATE_HOME": str(home)})
    ready_line(p)
    err = stop(p)
    assert "rpcsrv: removed 2 stale state entries" in err, err
    assert not gone.exists() and not legacy_old.exists()
    assert legacy_new.exists() and other.exists() and not_ours.exists()
    # the live export got its own entry, with the record that keeps it
    records = {(d / "export").read_text().strip() for d in home.iterdir() if (d / "export").exists()}
    assert str(live_export) in records


def test_tracemalloc_dir_not_writable(tmp_path):
    line = fails("--export", str(tmp_path), "--no-metrics", "--tracemalloc-dir", str(tmp_path / "none"), code=2)
    assert line == "rpcsrv: --tracemalloc-dir %s: not a writable directory" % (tmp_path / "none")


def test_tracemalloc_snapshot_on_sigusr2(tmp_path):
    """--tracemalloc-dir: each SIGUSR2 writes a snapshot of the traced heap that tracemalloc loads,
    in which the server's own modules appear (the heap was traced from start-up)."""
    import tracemalloc
    export, snaps = tmp_path / "export", tmp_path / "snaps"
    export.mkdir()
    snaps.mkdir()
    p = rpcsrv("--export", str(export), "--no-metrics", "--state-dir", str(tmp_path / "state"),
               "--tracemalloc-dir", str(snaps))
    err = ""
    try:
        ready_line(p)
        for n in range(2):
            path = snaps / ("rpcsrv-%d-%d.tracemalloc" % (p.pid, n))
            p.send_signal(signal.SIGUSR2)
            deadline = time.monotonic() + 30
            # the server names the file on stderr once it is written: wait for that (with a deadline)
            while "tracemalloc snapshot %s " % path not in err:
                r, _, _ = select.select([p.stderr], [], [], max(0.0, deadline - time.monotonic()))
                assert r, "no snapshot line within 30 s: %r" % err
                chunk = os.read(p.stderr.fileno(), 65536).decode()
                assert chunk, "rpcsrv exited: %r" % err
                err += chunk
    finally:
        stop(p)
    a = tracemalloc.Snapshot.load(str(snaps / ("rpcsrv-%d-0.tracemalloc" % p.pid)))
    b = tracemalloc.Snapshot.load(str(snaps / ("rpcsrv-%d-1.tracemalloc" % p.pid)))
    for snap in (a, b):
        files = {s.traceback[0].filename for s in snap.statistics("filename")}
        assert any(f.endswith(os.path.join("rpcsrv", "server.py")) for f in files), sorted(files)[:20]
        assert sum(s.size for s in snap.statistics("filename")) > 1 << 20     # the whole traced heap
