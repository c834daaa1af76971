"""Open-loop runs (`loadgen run --rate`) against rpcsrv: what the corrected latency shows and what it
does not.

One rpcsrv and one closed-loop calibration run per module give the single client's maximum rate
(M) and service time; the tests then hold the open loop to:

* at 5 % of M, the latency from the intended start is the closed-loop service time (within
  2x + 300 us: a server idle between calls wakes more slowly than a busy one, about 100-250 us
  on the 2-core VM), not the schedule's gap (20 / M, about 40x the service time) leaking in,
  and the schedule keeps up;
* at 4x M, achieved < offered, the lag grows from second to second, the corrected p99 reaches
  seconds, the run says how many clients the rate needs, and it still ends on time;
* a server stopped (SIGSTOP) for 1 s in the middle of a run: the corrected p99 and p99.9 show the
  stall, the uncorrected service-time p99 and p99.9 do not (only its max does).

The stall starts on a real event (the run's second per-second line); the 1 s is the stall's
length, not a wait for something.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from nfsbulk_testlib import ROOT, ServerProcess

#: 4 KiB READs and GETATTRs of one file per client: short calls, little disk or copy cost
LOADFILE = """\
# test loadfile: small READs and GETATTRs
Deltree "/clients/client1" *
MKDIR3 "/clients" *
MKDIR3 "/clients/client1" *
CREATE3 "/clients/client1/f" 0x00000000
WRITE3 "/clients/client1/f" 0 4096 0 0x00000000
COMMIT3 "/clients/client1/f" 0x00000000
LOOP 1000000
READ3 "/clients/client1/f" 0 4096 0x00000000
GETATTR3 "/clients/client1/f" 0x00000000
ENDLOOP
"""


def loadgen(args, timeout=120):
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "loadgen", "run", *args], capture_output=True, text=True,
                       cwd=ROOT, timeout=timeout)
    return r, time.monotonic() - t


def load(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    """rpcsrv, the loadfile and one closed-loop run of one client: (server, loadfile, doc, wall seconds)."""
    tmp = tmp_path_factory.mktemp("open-loop")
    lf = tmp / "small.load"
    lf.write_text(LOADFILE)
    export = tmp / "export"
    export.mkdir()
    srv = ServerProcess(str(export), threads=2)
    try:
        out = tmp / "closed.json"
        r, wall = loadgen([srv.url, "--clients", "1", "--warmup", "0.5", "--time", "2", "--loadfile", str(lf),
                           "--no-metrics", "--json", str(out)])
        assert r.returncode == 0, r.stderr
        yield srv, lf, load(out), wall
    finally:
        srv.stop()


def test_low_rate_latency_is_the_service_time(calib, tmp_path):
    srv, lf, closed, _ = calib
    rate = 0.05 * closed["ops_per_second"]
    out = tmp_path / "low.json"
    r, _ = loadgen([srv.url, "--clients", "1", "--warmup", "0.5", "--time", "3", "--loadfile", str(lf),
                    "--no-metrics", "--json", str(out), "--rate", "%.1f" % rate])
    assert r.returncode == 0, r.stderr
    d = load(out)
    ol = d["open_loop"]
    assert not ol["behind"] and ol["unsent"] == 0, ol
    assert ol["achieved_ops_per_second"] == pytest.approx(rate, rel=0.05)
    assert ol["offered_ops_per_second"] == pytest.approx(rate, rel=0.02)
    for op in ("READ3", "GETATTR3"):
        service = closed["ops"][op]["p50_seconds"]
        corrected = ol["ops"][op]["p50_seconds"]
        assert 0.5 * service <= corrected <= 2 * service + 300e-6, (op, service, corrected)
        # the open loop's own service time is kept beside it, and is never above the corrected one
        assert d["ops"][op]["p50_seconds"] <= corrected * 1.05
    assert "Open loop: offered" in r.stdout and "Latency from the intended start" in r.stdout
    assert "fell behind" not in r.stderr


def test_above_the_maximum_latency_grows_and_the_run_ends_on_time(calib, tmp_path):
    srv, lf, closed, closed_wall = calib
    rate = 4 * closed["ops_per_second"]
    out = tmp_path / "high.json"
    r, wall = loadgen([srv.url, "--clients", "1", "--warmup", "0.5", "--time", "2", "--loadfile", str(lf),
                       "--no-metrics", "--json", str(out), "--rate", "%.1f" % rate])
    assert r.returncode == 0, r.stderr
    d = load(out)
    ol = d["open_loop"]
    assert ol["behind"] and ol["unsent"] > 0
    assert ol["achieved_ops_per_second"] < 0.6 * ol["offered_ops_per_second"], ol
    # the lag grows second by second: behind by about 3/4 of the time run so far
    lags = [row["max_lag_seconds"] for row in d["per_second"] if row["phase"] == "run"]
    assert len(lags) >= 2 and lags[-1] > lags[0] + 0.3, lags
    assert ol["lag_end_seconds"] > 1.0 and ol["all"]["p99_seconds"] > 1.0, ol["all"]
    # what the rate would need: one call in flight per client
    assert ol["clients_needed"] >= 3
    assert "the schedule fell behind" in r.stderr and "needs at least %d clients" % ol["clients_needed"] in r.stderr
    # on time: the measured window is --time, and the whole run takes no longer than the closed one
    # (same start-up) plus a margin far below the 2 s of backlog it leaves unsent
    assert d["elapsed_seconds"] == pytest.approx(2.0, abs=0.3)
    assert wall < closed_wall + 1.5, (wall, closed_wall)


def test_a_stall_shows_in_the_corrected_percentiles_only(tmp_path, calib):
    _, lf, closed, _ = calib
    export = tmp_path / "export"
    export.mkdir()
    srv = ServerProcess(str(export), threads=2)
    out = tmp_path / "stall.json"
    rate = 0.5 * closed["ops_per_second"]           # 2 clients at a quarter of one client's maximum each
    p = subprocess.Popen([sys.executable, "-m", "loadgen", "run", srv.url, "--clients", "2", "--warmup", "1",
                          "--time", "5", "--loadfile", str(lf), "--no-metrics", "--json", str(out),
                          "--rate", "%.1f" % rate], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    stopped = False
    try:
        seen = 0
        for line in p.stdout:                      # the per-second lines: stall after the 2nd of the run
            if " execute " in line:
                seen += 1
                if seen == 2:
                    os.kill(srv.pid, signal.SIGSTOP)
                    stopped = True
                    time.sleep(1.0)                 # the stall itself
                    os.kill(srv.pid, signal.SIGCONT)
                    stopped = False
                    break
        assert seen == 2, "the run never reached its second measured second"
        stdout, stderr = p.communicate(timeout=60)
    finally:
        if stopped:
            os.kill(srv.pid, signal.SIGCONT)
        if p.poll() is None:
            p.kill()
            p.communicate()
        srv.stop()
    assert p.returncode == 0, stderr
    d = load(out)
    ol = d["open_loop"]
    n = ol["all"]["count"]
    assert n > 3000, "too few operations for p99.9 to exclude two stalled calls: %d" % n
    corrected, service = ol["all"], ol["service_all"]
    # about a fifth of the intended starts fell in the stall or the catch-up after it
    assert corrected["p99_seconds"] > 0.5 and corrected["p999_seconds"] > 0.5, corrected
    # one call per client waited out the stall: it is in the service time's max, not its tail
    assert service["max_seconds"] > 0.9, service
    assert service["p99_seconds"] < 0.1 and service["p999_seconds"] < 0.1, service
