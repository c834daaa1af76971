"""`loadgen worker` before and without a master: a bad --master is refused at parse time, a host
that does not resolve before any process starts (exit 2, one line); a master that cannot be
reached is retried for --connect-timeout, then named with the cause (exit 1); Ctrl-C while
waiting is exit 130, each process and the supervisor saying so. Runs with a worker and a master
are in test_loadgen_distributed.py.

No server and no master is needed: "nothing listens" is a socket this test binds and never
listens on (the kernel refuses connections to it, and no other process can take the port), "no
master answers" one it listens on and never reads. Every wait is on a line or an exit, with a
deadline.
"""
from __future__ import annotations

import importlib.util
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from nfsbulk_testlib import ROOT, wait_for_line

if importlib.util.find_spec("locust") is None:
    pytest.skip("Locust is not installed (make setup installs nfsbulk[distributed])", allow_module_level=True)

WORKER = [sys.executable, "-m", "loadgen", "worker"]


def _error_lines(stderr):
    """stderr without argparse's usage block: the lines a user has to read."""
    return [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith(("usage:", " "))]


@pytest.mark.parametrize("value, message", [
    ("somehost", "'somehost': must be HOST:PORT"),
    ("somehost:", "'somehost:': must be HOST:PORT"),
    ("", "'': must be HOST:PORT"),
    ("somehost:0", "'somehost:0': port must be 1 to 65535"),
    ("somehost:65536", "'somehost:65536': port must be 1 to 65535"),
])
def test_a_bad_master_is_refused_at_parse_time(value, message):
    r = subprocess.run([*WORKER, "--master", value], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert _error_lines(r.stderr) == ["loadgen worker: error: argument --master: " + message], r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("argv, message", [
    (["--processes", "0"], "argument --processes: must be >= 1"),
    (["--connect-timeout", "0"], "argument --connect-timeout: 0 s: must be more than 0 s"),
    (["--master-timeout", "1"], "argument --master-timeout: 1: must be 2 s or more"),
])
def test_bad_worker_numbers_are_refused_at_parse_time(argv, message):
    r = subprocess.run([*WORKER, "--master", "127.0.0.1:5557", *argv], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2, r.stderr
    assert _error_lines(r.stderr) == ["loadgen worker: error: " + message], r.stderr


def test_a_host_that_does_not_resolve_is_refused_before_any_process_starts():
    # .invalid never resolves (RFC 2606); with 3 processes, one line says no child was started
    r = subprocess.run([*WORKER, "--master", "nosuchhost.invalid:5557", "--processes", "3"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("loadgen worker: --master nosuchhost.invalid:5557: cannot resolve host "
                               "'nosuchhost.invalid': "), r.stderr


@pytest.mark.parametrize("listening, cause", [
    (False, r"connection refused \(nothing listens on port \d+ there; is the master started\?\)"),
    (True, r"the port accepts connections but no loadgen master answered \(another service on that port\?\)"),
], ids=["refused", "no-master"])
def test_an_unreachable_master_is_named_with_the_cause(listening, cause):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        if listening:
            s.listen(8)
        port = s.getsockname()[1]
        t0 = time.monotonic()
        r = subprocess.run([*WORKER, "--master", f"127.0.0.1:{port}", "--connect-timeout", "1.5"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
        took = time.monotonic() - t0
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[0] == f"loadgen worker: waiting for the master at 127.0.0.1:{port} (retrying for up to 1.5 s)", lines
    assert len(lines) == 2 and re.fullmatch(
        r"loadgen worker: cannot connect to master 127\.0\.0\.1:%d within 1\.5 s: %s; exit 1" % (port, cause),
        lines[1]), lines
    assert took < 20, took


def test_ctrl_c_while_waiting_for_the_master_is_130_for_each_process():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))              # bound, never listening: connections are refused
        port = s.getsockname()[1]
        p = subprocess.Popen([*WORKER, "--master", f"127.0.0.1:{port}", "--processes", "2"], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            for _ in range(2):                    # both children are in their connect loop
                wait_for_line(p.stderr, r"^loadgen worker: waiting for the master at 127\.0\.0\.1:%d " % port, p)
            p.send_signal(signal.SIGINT)          # to the supervisor, which forwards it
            p.wait(timeout=30)
            err = p.stderr.read()                 # through the pipe's buffer, which holds what followed
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert p.returncode == 130, err
    lines = err.strip().splitlines()
    assert lines == [f"loadgen worker: interrupted (SIGINT) while waiting for the master at 127.0.0.1:{port}; "
                     "exit 130"] * 2 + ["loadgen worker: 2 processes ended, exit 130"], err
