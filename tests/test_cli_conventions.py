"""What every entry point (rpcsrv, loadgen and its subcommands, alloc.bench, alloc.poolbench) owes
its user (clikit): --version; output paths proven before any work (exit 2, one line, no file and
no run); bad numbers refused at parse time in the flag's own units; SIGTERM handled as Ctrl-C, so
what finished is printed and written, marked interrupted (exit 130); no traceback."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from nfsbulk_testlib import ROOT, ServerProcess, wait_for_line

PY = sys.executable
#: a URL nothing answers at: every check below must fail before any connection is tried
DEAD_URL = "nfs://127.0.0.1/x?nfsport=9&mountport=9"


def _run(argv, timeout=60):
    t0 = time.monotonic()
    r = subprocess.run([PY, *argv], capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    return r, time.monotonic() - t0


def _error_lines(stderr):
    """stderr without argparse's usage block: the lines a user has to read."""
    return [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith(("usage:", " "))]


def test_every_entry_point_has_a_version_matching_pyproject():
    version = re.search(r'^version = "([^"]+)"', open(os.path.join(ROOT, "pyproject.toml")).read(), re.M).group(1)
    for prog, argv in (("rpcsrv", ["-m", "rpcsrv"]), ("loadgen", ["-m", "loadgen"]),
                       ("alloc.bench", ["-m", "alloc.bench"]), ("alloc.poolbench", ["-m", "alloc.poolbench"])):
        r, _ = _run([*argv, "--version"])
        assert r.returncode == 0 and r.stdout.strip() == "%s (nfsbulk) %s" % (prog, version), (prog, r)


BAD_PATHS = ["/proc/nfsbulk-out.json", "/nonexistent-dir/out.json", "/"]


@pytest.mark.parametrize("path", BAD_PATHS, ids=["proc", "no-dir", "a-dir"])
@pytest.mark.parametrize("argv", [
    ["-m", "alloc.bench", "--rounds", "1000000"],
    ["-m", "loadgen", "run", DEAD_URL, "--time", "600"],
    ["-m", "loadgen", "bench", "--rounds", "100"],
    ["-m", "loadgen", "soak", "--time", "600"],
], ids=["alloc.bench", "run", "bench", "soak"])
def test_a_bad_output_path_fails_before_any_work(tmp_path, argv, path):
    r, took = _run([*argv, "--json", path])
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = _error_lines(r.stderr)
    assert len(lines) == 1 and "--json" in lines[0] and path in lines[0], r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert took < 20, took                  # no run happened (each would take minutes)


@pytest.mark.parametrize("argv,expect", [
    (["-m", "alloc.poolbench", "--rounds", "0"], "--rounds: 0: must be 1 rounds or more"),
    (["-m", "alloc.poolbench", "--pages", "-1"], "--pages: -1: must be 1 pages or more"),
    (["-m", "alloc.bench", "--rounds", "0"], "--rounds: 0: must be 1 rounds or more"),
    (["-m", "alloc.bench", "--arena-mib", "x"], "--arena-mib: 'x' is not an integer"),
    (["-m", "loadgen", "fuzz", "--time", "0"], "0 s: must be more than 0 s"),
    (["-m", "loadgen", "fuzz", "--seconds", "-5"], "-5 s: must be more than 0 s"),
    (["-m", "loadgen", "bench", "--time", "0"], "--time: 0 s: must be more than 0 s"),
    (["-m", "loadgen", "bench", "--clients", "0"], "--clients: 0: must be 1 clients or more"),
    (["-m", "loadgen", "run", DEAD_URL, "--time", "0"], "--time: 0 s: must be more than 0 s"),
    (["-m", "loadgen", "soak", "--time", "nan"], "--time: 'nan': a finite number of seconds"),
    (["-m", "rpcsrv", "--threads", "0"], "--threads: 0: must be 1 threads or more"),
    (["-m", "rpcsrv", "--arena-mib", "-3"], "--arena-mib: -3: must be 1 MiB or more"),
    (["-m", "rpcsrv", "--idle-timeout", "0"], "--idle-timeout: 0 s: must be more than 0 s"),
    (["-m", "rpcsrv", "--min-record-rate", "-1"], "--min-record-rate: -1: must be 0 bytes/s or more"),
])
def test_bad_numbers_are_refused_in_the_flags_units(argv, expect):
    r, _ = _run(argv)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = _error_lines(r.stderr)
    assert len(lines) == 1 and expect in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_fuzz_time_and_its_old_spelling_are_one_flag():
    r, _ = _run(["-m", "loadgen", "fuzz", "--help"])
    assert r.returncode == 0 and "--time SECONDS, --seconds SECONDS" in r.stdout, r.stdout


def test_an_oversized_loadfile_number_is_refused_with_its_line(tmp_path):
    lf = tmp_path / "big.load"
    lf.write_text('GETATTR3 "/clients/client1" 0x00000000\n'
                  'WRITE3 "/clients/client1/x" 0 99999999999 0 0x00000000\n')
    r, took = _run(["-m", "loadgen", "run", DEAD_URL, "--loadfile", str(lf), "--time", "600"])
    assert r.returncode == 2, r
    lines = _error_lines(r.stderr)
    assert lines == ["loadgen: %s:2: WRITE3 length 99,999,999,999 bytes: must be 0 to 67,108,864 bytes" % lf], lines
    assert took < 20


def test_an_oversized_number_from_a_random_expression_is_a_loadfile_error():
    from loadgen.run.loadfile import LoadfileError, field_error, parse_text
    prog = parse_text('READ3 "/f" 0 *%1 0x00000000\n')      # a random length (0) is checked when used
    assert prog is not None
    assert field_error("READ3", 1, 1 << 40) == "READ3 length 1,099,511,627,776 bytes: must be 0 to 67,108,864 bytes"
    assert field_error("READ3", 1, 1 << 26) is None
    assert field_error("WRITE3", 0, 1 << 64) is not None and field_error("WRITE3", 0, (1 << 64) - 1) is None
    with pytest.raises(LoadfileError, match="stable flag 7"):
        parse_text('WRITE3 "/f" 0 10 7 0x00000000\n')


def test_sigterm_on_alloc_bench_keeps_the_rounds_that_finished(tmp_path):
    out = tmp_path / "bench.json"
    p = subprocess.Popen([PY, "-m", "alloc.bench", "--rounds", "100000000", "--slots", "259", "--holes", "16",
                          "--strategies", "array,single", "--arena-mib", "64", "--json", str(out)],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_line(p.stderr, r"round 1/100000000", p)
        p.send_signal(signal.SIGTERM)
        stdout, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 130, stderr
    assert "array" in stdout and "JSON written to" in stdout
    assert "interrupted after" in stderr and "Traceback" not in stderr
    doc = json.loads(out.read_text())
    assert doc["interrupted"] is True and doc["config"]["rounds_done"] >= 1
    assert doc["results"]["259"]["array"]["16"]["ns_per_call"] > 0


def test_sigterm_on_loadgen_run_prints_the_table_and_writes_the_json(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    out = tmp_path / "run.json"
    with ServerProcess(export, threads=2, arena_mib=64) as srv:
        p = subprocess.Popen([PY, "-m", "loadgen", "run", srv.url, "--loadfile", "mixed-rw", "--clients", "2",
                              "--time", "60", "--warmup", "0", "--no-metrics", "--json", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, text=True)
        try:
            wait_for_line(p.stdout, r" execute ", p)          # the first per-second line of the run
            t0 = time.monotonic()
            p.send_signal(signal.SIGTERM)
            stdout, stderr = p.communicate(timeout=60)
            took = time.monotonic() - t0
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert p.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert "Throughput" in stdout
    doc = json.loads(out.read_text())
    assert doc["interrupted"] is True and sum(v["count"] for v in doc["ops"].values()) > 0
    assert took < 20, took


def test_an_unmountable_peer_fails_before_any_run():
    r, took = _run(["-m", "loadgen", "bench", "--peer", "gone=" + DEAD_URL, "--rounds", "5", "--time", "60"])
    assert r.returncode == 1, r
    lines = _error_lines(r.stderr)
    assert len(lines) == 1 and lines[0].startswith("loadgen bench: --peer gone: cannot mount " + DEAD_URL), r.stderr
    assert "round" not in r.stdout + r.stderr and "Traceback" not in r.stderr
    assert took < 20, took
