"""loadgen run --master + loadgen worker (Locust's distributed runner) against rpcsrv on 127.0.0.1.

Every wait is on a real event: the master's first stdout line (its port), a
per-second line (stats have arrived), a process exit, an HTTP answer; each
with a deadline.  Server-side truth comes from rpcsrv's own /metrics.
"""
from __future__ import annotations

import html.parser
import importlib.util
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from nfsbulk_testlib import ROOT, ServerProcess, announced_metrics_url

# find, never import: importing locust monkey-patches the whole test process with gevent
if importlib.util.find_spec("locust") is None:
    pytest.skip("Locust is not installed (make setup installs nfsbulk[distributed])", allow_module_level=True)

# write-and-commit: FILE_SYNC writes on their own O_SYNC handle and a COMMIT3 per pass, so every
# loadfile op maps to exactly one NFS procedure on the server (see loadgen/run/ops.py)
LOADFILE = """\
MKDIR3 "/clients" *
MKDIR3 "/clients/client1" *
CREATE3 "/clients/client1/f" *
WRITE3 "/clients/client1/f" 0 4096 1 0x00000000
REPEAT 7
WRITE3 "/clients/client1/f" +4096 4096 1 0x00000000
COMMIT3 "/clients/client1/f" 0x00000000
"""
# loadfile op -> rpcsrv's procedure label
PROCS = {"MKDIR3": "mkdir", "CREATE3": "create", "WRITE3": "write", "COMMIT3": "commit"}


def _readline(proc, deadline: float) -> str:
    while time.monotonic() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], 0.5)
        if r:
            return proc.stdout.readline()
        if proc.poll() is not None:
            return proc.stdout.readline()
    raise AssertionError("no output line before the deadline")


def _start_master(url, tmp_path, workers, extra=()):
    lf = tmp_path / "wc.load"
    lf.write_text(LOADFILE)
    out = tmp_path / "master.json"
    p = subprocess.Popen([sys.executable, "-m", "loadgen", "run", url, "--master", "--master-bind", "127.0.0.1:0",
                          "--expect-workers", str(workers), "--loadfile", str(lf), "--warmup", "0",
                          "--metrics-port", "0", "--start-timeout", "60", "--json", str(out), *extra],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = _readline(p, time.monotonic() + 60)
    m = re.search(r"master listening on 127\.0\.0\.1:(\d+)", line)
    assert m, line + (p.stderr.read() if p.poll() is not None else "")
    ui = re.search(r"web UI (http://\S+/)", line)
    return p, int(m.group(1)), out, (ui.group(1) if ui else None)


def _start_worker(port, processes, extra=()):
    return subprocess.Popen([sys.executable, "-m", "loadgen", "worker", "--master", f"127.0.0.1:{port}",
                             "--processes", str(processes), *extra], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _worker_lines(stderr: str) -> list[str]:
    """A worker's own lines (its "loadgen worker: ..." ones), in order, without the note a worker
    gives when the master has not answered within a second (a busy machine may make it appear)."""
    return [ln for ln in stderr.splitlines()
            if ln.startswith("loadgen worker: ") and not ln.startswith("loadgen worker: waiting for the master")]


CONNECTED = r"^loadgen worker: connected to master 127\.0\.0\.1:%d as \S+$"


def _wait_execute_line(p, deadline):
    """Lines until the first per-second line of the run: stats from the clients have arrived."""
    lines = []
    while True:
        line = _readline(p, deadline)
        assert line, "master ended before a per-second line:\n" + "".join(lines) + p.stderr.read()
        lines.append(line)
        if " execute " in line:
            return lines


def _cleanup(*procs):
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL) if p.args[3] == "worker" else p.kill()
            except (ProcessLookupError, IndexError):
                p.kill()
        p.communicate()


def _scrape(where) -> str:
    """/metrics text from a URL, or from a port on 127.0.0.1."""
    url = where if isinstance(where, str) else f"http://127.0.0.1:{where}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def _server_count(text, proc) -> int:
    return int(sum(float(v) for v in re.findall(
        r'^nfsbulk_rpc_requests_total\{[^}]*procedure="%s",program="nfs"[^}]*\} (\S+)$' % proc, text, re.M)))


def test_master_two_workers_two_processes_match_server_counters(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    with ServerProcess(export, threads=2, metrics=True) as srv:
        master, port, out, _ = _start_master(srv.url, tmp_path, 4, ("--time", "2"))
        w1, w2 = _start_worker(port, 2), _start_worker(port, 2)
        try:
            mout, merr = master.communicate(timeout=90)
            (_, e1), (_, e2) = w1.communicate(timeout=30), w2.communicate(timeout=30)
        finally:
            _cleanup(master, w1, w2)
        assert master.returncode == 0, mout + merr
        assert (w1.returncode, w2.returncode) == (0, 0), (e1, e2)
        metrics = _scrape(srv.metrics_url)
    assert "loadgen: 4 clients on 1 host(s)" in mout, mout
    assert len(re.findall(r"^\s+4\s+\d+\s+[\d.]+ MB/sec  execute", mout, re.M)) >= 1, mout
    assert "Throughput" in mout
    doc = json.loads(out.read_text())
    # the same schema as a single-machine run (meta included), plus the workers' rows
    from loadgen.common.meta import SCHEMA_RUN
    assert doc["schema"] == SCHEMA_RUN and doc["clients"] == 4 and doc["exit_code"] == 0
    assert doc["meta"]["argv"] and doc["meta"]["timestamp"]
    assert doc["warmup"]["ops_total"] == 0
    for op, proc in PROCS.items():
        assert doc["ops"][op]["count"] == _server_count(metrics, proc), (op, doc["ops"][op]["count"], metrics)
    wbytes = float(re.search(r"^nfsbulk_nfs_write_bytes_total (\S+)$", metrics, re.M).group(1))
    assert doc["bytes"]["write"] == wbytes == doc["ops"]["WRITE3"]["count"] * 4096
    rows = doc["workers"]
    assert sorted(r["client"] for r in rows) == [0, 1, 2, 3]
    assert len({r["worker"] for r in rows}) == 4 and len({r["group"] for r in rows}) == 2
    assert all(r["state"] == "done" and r["ops_total"] > 0 for r in rows), rows
    assert sum(r["ops_total"] for r in rows) == doc["ops_total"]
    assert sum(r["bytes"]["write"] for r in rows) == doc["bytes"]["write"]
    # each client worked in its own directory
    dirs = sorted(os.listdir(export / "clients"))
    assert dirs == ["client0", "client1", "client2", "client3"], dirs
    assert all((export / "clients" / d / "f").stat().st_size == 8 * 4096 for d in dirs)
    # each worker process said when it connected, when its client started and ended (with the ops
    # the master counted for it), in that order; the supervisor said once that both ended
    ops_of = {r["client"]: r["ops_total"] for r in rows}
    seen = set()
    for err in (e1, e2):
        lines = _worker_lines(err)
        assert len(lines) == 7 and "Traceback" not in err, err
        assert all(re.match(CONNECTED % port, ln) for ln in lines[:2]), lines
        started = [re.match(r"^loadgen worker: client (\d) started: workload %s, warmup 0 s, run 2 s, server "
                            r"nfs://127\.0\.0\.1/" % re.escape(str(tmp_path / "wc.load")), ln) for ln in lines[2:4]]
        assert all(started), lines
        ended = [re.match(r"^loadgen worker: client (\d) ended: (\d+) ops measured, the master ended the run "
                          r"\(time up\); exit 0$", ln) for ln in lines[4:6]]
        assert all(ended), lines
        assert {m.group(1) for m in started} == {m.group(1) for m in ended}, lines
        for m in ended:
            assert int(m.group(2)) == ops_of[int(m.group(1))] > 0, (lines, rows)
            seen.add(int(m.group(1)))
        assert lines[6] == "loadgen worker: 2 processes ended, exit 0", lines
    assert seen == {0, 1, 2, 3}


def test_worker_killed_mid_run_fails_the_run_and_keeps_survivors(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    with ServerProcess(export, threads=2) as srv:
        master, port, out, _ = _start_master(srv.url, tmp_path, 2, ("--time", "60"))
        w1 = _start_worker(port, 1)
        w2 = _start_worker(port, 1)
        late = None
        try:
            _wait_execute_line(master, time.monotonic() + 60)
            # a worker that connects after the start is refused and exits 1
            late = _start_worker(port, 1)
            late_out, late_err = late.communicate(timeout=60)
            assert late.returncode == 1, late_err
            lines = _worker_lines(late_err)
            assert len(lines) == 2 and re.match(CONNECTED % port, lines[0]), late_err
            assert lines[1] == "loadgen worker: refused by the master (run already started); exit 1", late_err
            victim = w2.pid
            os.killpg(w2.pid, signal.SIGKILL)
            mout, merr = master.communicate(timeout=60)
            w1.wait(timeout=30)
        finally:
            _cleanup(master, w1, w2, *([late] if late else []))
    assert master.returncode == 1, mout + merr
    assert re.search(r"refused worker \S+: it connected after the clients were assigned", merr), merr
    m = re.search(r"worker (\S+) \(client(\d), host \S+ pid %d\) lost at ([\d.]+) s" % victim, merr)
    assert m, merr
    doc = json.loads(out.read_text())
    assert doc["exit_code"] == 1
    rows = {r["client"]: r for r in doc["workers"]}
    lost = rows[int(m.group(2))]
    alive = rows[1 - int(m.group(2))]
    assert lost["state"] == "lost" and lost["pid"] == victim and lost["lost_at_seconds"] > 0
    assert alive["state"] == "done" and alive["ops_total"] > 0
    assert doc["ops_total"] >= alive["ops_total"] > 0
    assert [f["stage"] for f in doc["client_failures"]] == ["lost"]
    assert "Throughput" in mout


class _Table(html.parser.HTMLParser):
    """Rows of every <table> in a DOM, as lists of cell texts."""

    def __init__(self):
        super().__init__()
        self.rows, self._row, self._cell = [], None, None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def test_web_ui_in_headless_chromium_and_ctrl_c_stops_workers(tmp_path):
    chromium = "/usr/bin/chromium"
    if not os.path.exists(chromium):
        pytest.skip("Debian's chromium is not installed (make setup installs it)")
    export = tmp_path / "export"
    export.mkdir()
    with ServerProcess(export, threads=2) as srv:
        master, port, out, ui = _start_master(srv.url, tmp_path, 1, ("--time", "120", "--web-ui", "127.0.0.1:0"))
        murl = announced_metrics_url(master)
        assert ui, "no web UI address announced"
        w = _start_worker(port, 1)
        try:
            _wait_execute_line(master, time.monotonic() + 60)
            # Locust workers report every 3 s: wait for the master's stats to show a rate
            deadline = time.monotonic() + 30
            while True:
                with urllib.request.urlopen(ui + "stats/requests", timeout=5) as r:
                    st = json.load(r)
                if any(s["name"] == "WRITE3" and s["current_rps"] > 0 for s in st["stats"]):
                    break
                assert time.monotonic() < deadline, st
                time.sleep(0.2)       # polling interval of a condition with a deadline
            common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                      f"--user-data-dir={tmp_path / 'chromium'}"]
            dom = subprocess.run([*common, "--dump-dom", ui], capture_output=True, text=True, timeout=60).stdout
            shot = tmp_path / "locust-web-ui.png"
            subprocess.run([*common, "--window-size=1400,900", f"--screenshot={shot}", ui],
                           capture_output=True, timeout=60)
            print(f"web UI screenshot: {shot}")
            # the master's /metrics: the same families as a single-machine run
            text = _scrape(murl)
            m = re.search(r'^nfsbulk_loadgen_ops_total\{op="WRITE3",status="ok"\} (\S+)$', text, re.M)
            assert m and float(m.group(1)) > 0, text
            assert re.search(r"^nfsbulk_loadgen_clients 1\.0$", text, re.M), text
            assert re.search(r'^nfsbulk_loadgen_bytes_total\{direction="write"\} [1-9]', text, re.M), text
            assert 'nfsbulk_loadgen_op_duration_seconds_bucket{le="+Inf",op="COMMIT3"}' in text, text
            master.send_signal(signal.SIGINT)          # Ctrl-C on the master
            mout, merr = master.communicate(timeout=60)
            wcode = w.wait(timeout=30)                  # the worker must end by itself
        finally:
            _cleanup(master, w)
    p = _Table()
    p.feed(dom)
    header = next((r for r in p.rows if "Current RPS" in r), None)
    assert header, dom[-3000:]
    rows = {r[1]: r for r in p.rows if len(r) == len(header)}
    for op in PROCS:
        assert op in rows, (op, list(rows))
    assert float(rows["WRITE3"][header.index("Current RPS")]) > 0, rows["WRITE3"]
    assert shot.exists() and shot.stat().st_size > 1000
    assert master.returncode == 130, mout + merr
    assert "interrupted" in merr and "Throughput" in mout
    assert wcode == 0, w.stderr.read()
    assert json.loads(out.read_text())["interrupted"] is True


def test_shipped_locustfile_with_locusts_own_cli(tmp_path):
    """`locust -f loadgen/locustfile.py --host URL`: one client per process, Locust's CSV has the NFS ops."""
    locust_bin = os.path.join(os.path.dirname(sys.executable), "locust")
    export = tmp_path / "export"
    export.mkdir()
    lf = tmp_path / "wc.load"
    lf.write_text(LOADFILE)
    with ServerProcess(export, threads=2) as srv:
        r = subprocess.run([locust_bin, "-f", os.path.join(ROOT, "loadgen", "locustfile.py"), "--host", srv.url,
                            "--headless", "-u", "2", "-r", "2", "-t", "2s", "--processes", "2",
                            "--nfs-loadfile", str(lf), "--csv", str(tmp_path / "run")],
                           cwd=tmp_path, capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    import csv
    with open(tmp_path / "run_stats.csv") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    for op in PROCS:
        assert int(rows[op]["Request Count"]) > 0 and rows[op]["Failure Count"] == "0", rows
    assert sorted(os.listdir(export / "clients")) == ["client0", "client1"]


#: a URL nothing answers at: a worker's mount fails at once
DEAD_URL = "nfs://127.0.0.1/x?nfsport=9&mountport=9&version=3"


def test_worker_whose_client_fails_exits_1_saying_why(tmp_path):
    """No server: the worker connects, its mount is refused, it says so and exits 1; the master aborts."""
    master, port, out, _ = _start_master(DEAD_URL, tmp_path, 1, ("--time", "60"))
    w = _start_worker(port, 1)
    try:
        _, werr = w.communicate(timeout=60)
        mout, merr = master.communicate(timeout=60)
    finally:
        _cleanup(master, w)
    assert w.returncode == 1, werr
    lines = _worker_lines(werr)
    assert len(lines) == 2 and re.match(CONNECTED % port, lines[0]), werr
    assert re.match(r"^loadgen worker: client 0 ended: failed \(mount\): cannot mount nfs://127\.0\.0\.1/x\S*: "
                    r".+; exit 1$", lines[1]), werr
    assert "Traceback" not in werr
    assert master.returncode == 1 and "1 of 1 clients failed before the start" in merr, mout + merr


def test_worker_whose_master_dies_exits_1_master_lost(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    with ServerProcess(export, threads=2) as srv:
        master, port, out, _ = _start_master(srv.url, tmp_path, 1, ("--time", "60"))
        w = _start_worker(port, 1, ("--master-timeout", "2"))
        try:
            _wait_execute_line(master, time.monotonic() + 60)
            master.kill()                           # no quit, no heartbeats: the worker must notice
            t0 = time.monotonic()
            _, werr = w.communicate(timeout=30)
            took = time.monotonic() - t0
        finally:
            _cleanup(master, w)
    assert w.returncode == 1, werr
    lines = _worker_lines(werr)
    assert len(lines) == 3 and re.match(CONNECTED % port, lines[0]), werr
    assert lines[1].startswith("loadgen worker: client 0 started: workload "), lines
    assert re.match(r"^loadgen worker: client 0 ended: \d+ ops measured, master lost \(no heartbeat from it "
                    r"for 2 s\); exit 1$", lines[2]), lines
    assert took < 15, took


def test_worker_interrupted_mid_run_exits_130_and_the_master_names_it(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    with ServerProcess(export, threads=2) as srv:
        master, port, out, _ = _start_master(srv.url, tmp_path, 1, ("--time", "60"))
        w = _start_worker(port, 1)
        try:
            _wait_execute_line(master, time.monotonic() + 60)
            w.send_signal(signal.SIGINT)            # Ctrl-C on the worker's host
            _, werr = w.communicate(timeout=30)
            mout, merr = master.communicate(timeout=60)
        finally:
            _cleanup(master, w)
    assert w.returncode == 130, werr
    lines = _worker_lines(werr)
    assert len(lines) == 3 and re.match(CONNECTED % port, lines[0]), werr
    assert re.match(r"^loadgen worker: client 0 ended: \d+ ops measured, interrupted \(SIGINT\); exit 130$",
                    lines[2]), lines
    # the master: the worker quit, named as such; not taken for a STOP in Locust's web UI
    assert master.returncode == 1, mout + merr
    assert re.search(r"client0 failed \(lost\): worker \S+ \(client0, host \S+ pid %d\) lost at [\d.]+ s into "
                     r"the run: it quit \(stopped on its host\)" % w.pid, merr), merr
    assert "web UI" not in merr and "interrupted" not in merr and "You can't start" not in merr, merr


@pytest.mark.parametrize("argv, message", [
    (["run", "nfs://127.0.0.1/x", "--master"], "--master needs --expect-workers N"),
    (["run", "nfs://127.0.0.1/x", "--expect-workers", "2"], "--expect-workers and --web-ui need --master"),
    (["run", "nfs://127.0.0.1/x", "--master", "--expect-workers", "2", "--clients", "3"],
     "--clients does not apply with --master"),
    (["run", "nfs://127.0.0.1/x", "--master", "--expect-workers", "2", "--run-once"],
     "--run-once does not apply with --master"),
    (["run", "nfs://127.0.0.1/x", "--master", "--expect-workers", "2", "--master-bind", "h:99999"],
     "argument --master-bind: 'h:99999': port must be 0 to 65535"),
    (["run", "nfs://127.0.0.1/x", "--master", "--expect-workers", "2", "--master-bind", "nohost"],
     "argument --master-bind: 'nohost': must be HOST:PORT"),
    (["run", "nfs://127.0.0.1/x", "--master", "--expect-workers", "2", "--web-ui", "h:x"],
     "argument --web-ui: 'h:x': must be HOST:PORT"),
    (["run", "nfs://127.0.0.1/x", "--master", "--expect-workers", "2", "--json", "/nonexistent-dir/m.json"],
     "--json /nonexistent-dir/m.json: directory /nonexistent-dir does not exist"),
])
def test_distributed_usage_errors(argv, message):
    r = subprocess.run([sys.executable, "-m", "loadgen", *argv], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2, r.stderr
    # one line for the user, beside argparse's usage block for a flag refused at parse time
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith(("usage:", " "))]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("where", ["busy", "not-here"])
def test_master_bind_that_cannot_listen_fails_before_any_wait(where):
    import socket
    holder = socket.socket()
    try:
        if where == "busy":
            holder.bind(("127.0.0.1", 0))
            holder.listen(1)
            addr, why = "127.0.0.1:%d" % holder.getsockname()[1], "address already in use"
        else:
            addr, why = "192.0.2.1:0", "not an address of this host"      # TEST-NET-1: no host has it
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "loadgen", "run", DEAD_URL, "--master", "--expect-workers", "1",
                            "--master-bind", addr, "--start-timeout", "600", "--no-metrics"],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
        took = time.monotonic() - t0
    finally:
        holder.close()
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"loadgen: --master-bind {addr}: cannot listen there: {why}"), \
        r.stderr
    assert "listening" not in r.stdout and took < 20, (r.stdout, took)
