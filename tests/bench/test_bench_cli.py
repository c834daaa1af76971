"""loadgen bench as a user meets it: bad output paths fail at once, Ctrl-C keeps the finished runs,
`--json -` is JSON on stdout; `loadgen compare` on two real `loadgen run` files."""
import json
import os
import re
import select
import signal
import subprocess
import sys
import time

import pytest

from nfsbulk_testlib import ROOT, ServerProcess

BENCH = [sys.executable, "-m", "loadgen", "bench"]


@pytest.mark.parametrize("flag,path", [("--json", "{tmp}/missing/dir/b.json"), ("--json", "{tmp}"),
                                       ("--plot", "{tmp}/nope/b.png"), ("--json", "")])
def test_a_bad_output_path_fails_at_once(tmp_path, flag, path):
    """Checked before the first server starts: exit 2, one line, no traceback, under a second of
    work. The bound is on the process's own CPU time (from wait4): on a shared 2-core machine the
    wall time of any interpreter start also measures the neighbours' load; the wall time is
    bounded loosely (a stall would show there)."""
    path = path.format(tmp=tmp_path)
    t0 = time.monotonic()
    p = subprocess.Popen(BENCH + [flag, path], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.stdout.read(), p.stderr.read().decode()
    _, status, usage = os.wait4(p.pid, 0)
    took = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    p.stdout.close()
    p.stderr.close()
    assert p.returncode == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("loadgen bench: %s" % flag), err
    assert usage.ru_utime + usage.ru_stime < 1.0, usage       # no server started, no run done
    assert took < 5.0, took
    assert out == b""


def test_compare_rejects_a_file_of_another_kind(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"schema": "something/1"}')
    r = subprocess.run([sys.executable, "-m", "loadgen", "compare", str(bad), str(bad)], cwd=ROOT,
                       capture_output=True, timeout=30)
    assert r.returncode == 2 and "not a result file" in r.stderr.decode() and b"Traceback" not in r.stderr


def _alive(pid):
    """True while /proc/PID exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_sigint_to_the_process_group_keeps_the_finished_runs(tmp_path):
    out = tmp_path / "b.json"
    # its own session, so the test can signal bench's process group as a terminal would
    p = subprocess.Popen(BENCH + ["--profile", "rw256k", "--strategies", "single,array", "--rounds", "3",
                                  "--time", "3", "--warmup", "0.5", "--clients", "1", "--threads", "2",
                                  "--rw-file-size", str(1 << 20), "--rw-files", "2", "--seed", "3",
                                  "--json", str(out)],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    pids, lines, buf = [], [], b""
    deadline = time.monotonic() + 120
    try:
        # wait (on its progress lines) until one run has finished and the next is measuring
        while not (any(": done in" in ln for ln in lines) and lines and lines[-1].endswith(": measuring")):
            left = deadline - time.monotonic()
            assert left > 0, "no progress lines: %s" % lines
            r, _, _ = select.select([p.stderr], [], [], left)
            if not r:
                continue
            chunk = os.read(p.stderr.fileno(), 65536)
            assert chunk, "bench ended early: %s" % lines
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                lines.append(line.decode())
                m = re.search(r"rpcsrv pid (\d+) up", lines[-1])
                if m:
                    pids.append(int(m.group(1)))
        os.killpg(p.pid, signal.SIGINT)                     # as Ctrl-C at a terminal: the whole group
        stdout, stderr = p.communicate(timeout=90)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(30)
    err = "\n".join(lines) + buf.decode() + stderr.decode()
    assert p.returncode == 130, err
    assert "Traceback" not in err, err
    assert len(pids) >= 2
    assert not any(_alive(pid) for pid in pids), pids       # no rpcsrv left running
    done = [ln for ln in err.splitlines() if ": done in" in ln]
    doc = json.loads(out.read_text())
    assert doc["interrupted"] is True
    runs = [r for s in doc["profiles"]["rw256k"]["strategies"].values() for r in s["rounds"]]
    assert len(runs) == len(done) >= 1                      # every finished run, and not the cut one
    assert sorted(r["server_pid"] for r in runs) == sorted(pids[:len(done)])
    assert "interrupted after %d finished run(s)" % len(done) in stdout.decode()


def test_json_to_stdout_and_compare_two_run_files(tmp_path):
    """Two real `loadgen run` result files against one rpcsrv, then `loadgen compare` on them."""
    export = tmp_path / "export"
    export.mkdir()
    files = []
    with ServerProcess(export, threads=2) as srv:
        for i in range(2):
            f = tmp_path / ("run%d.json" % i)
            r = subprocess.run([sys.executable, "-m", "loadgen", "run", srv.url, "--profile", "rw256k",
                                "--clients", "1", "--time", "1", "--warmup", "0.2", "--rw-files", "1",
                                "--rw-file-size", str(1 << 20), "--metrics-port", "0", "--json", str(f)],
                               cwd=ROOT, capture_output=True, timeout=120)
            assert r.returncode == 0, r.stderr.decode()[-2000:]
            assert "p99.9 ms" in r.stdout.decode()
            files.append(str(f))
    d = json.loads(open(files[0]).read())
    assert d["meta"]["timestamp"] and d["meta"]["argv"]
    for key in ("p50_seconds", "p90_seconds", "p99_seconds", "p999_seconds"):
        assert d["ops"]["READ3"][key] > 0
    r = subprocess.run([sys.executable, "-m", "loadgen", "compare", *files, "--output-format", "json"],
                       cwd=ROOT, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    doc = json.loads(r.stdout)
    assert doc["kind"] == "run" and [f["path"] for f in doc["files"]] == files
    rows = {(x["entry"], x["figure"]): x for x in doc["rows"]}
    one = json.loads(open(files[1]).read())
    row = rows[("all ops", "ops_per_second")]
    assert row["values"] == [d["ops_per_second"], one["ops_per_second"]]
    assert row["ratios"][0]["ratio"] == pytest.approx(one["ops_per_second"] / d["ops_per_second"])
    assert rows[("READ3", "p999_seconds")]["values"][0] == d["ops"]["READ3"]["p999_seconds"]
    assert "A = %s" % files[0] in r.stderr.decode()


def test_run_checks_its_json_path_before_any_client_starts(tmp_path):
    r = subprocess.run([sys.executable, "-m", "loadgen", "run", "nfs://127.0.0.1/x?nfsport=9&mountport=9",
                        "--json", str(tmp_path / "no" / "r.json"), "--metrics-port", "0"],
                       cwd=ROOT, capture_output=True, timeout=30)
    err = r.stderr.decode()
    assert r.returncode == 2 and err.startswith("loadgen: --json ") and "Traceback" not in err, err


def test_loadfile_profiles(tmp_path):
    """--profile takes loadfiles as NAME=PATH or PATH beside rw256k and dbench; a missing file or
    a name taken twice is a one-line usage error before anything runs."""
    from loadgen.bench import bench
    from loadgen.__main__ import build_parser
    lf = tmp_path / "w.load"
    lf.write_text("0.0 WRITE3 \"/f\" 0 4096 2 NFS3_OK\n")

    def parse(profile):
        return bench._parse(build_parser().parse_args(["bench", "--profile", profile, "--strategies", "array",
                                                       "--baseline", "array"]))

    s = parse("rw256k,seq=%s,%s" % (lf, lf))
    assert s["profiles"] == ["rw256k", "seq", "w"]
    assert s["load"]["loadfiles"] == {"seq": str(lf), "w": str(lf)}
    for bad in ("nope=%s" % (tmp_path / "missing.load"), "seq=%s,seq=%s" % (lf, lf), "rw256k=%s" % lf):
        msg = parse(bad)
        assert isinstance(msg, str) and msg.startswith("--profile"), msg
    r = subprocess.run(BENCH + ["--profile", str(tmp_path / "missing.load")], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_baseline_may_be_a_peer(tmp_path):
    """--baseline names a strategy or a --peer (two servers compared with each other); anything else is
    a one-line usage error."""
    from loadgen.bench import bench
    from loadgen.__main__ import build_parser

    def parse(*extra):
        return bench._parse(build_parser().parse_args(["bench", "--profile", "rw256k", "--strategies", "array",
                                                       "--peer", "before=nfs://127.0.0.1/x?nfsport=9&mountport=9",
                                                       *extra]))
    s = parse("--baseline", "before")
    assert s["baseline"] == "before" and s["peers"] == {"before": "nfs://127.0.0.1/x?nfsport=9&mountport=9"}
    assert parse("--baseline", "array")["baseline"] == "array"
    msg = parse("--baseline", "after")
    assert isinstance(msg, str) and msg.startswith("--baseline after is neither"), msg
    from loadgen.bench.benchreport import compare_all
    runs = {"before": [{"round": i, "ops_per_s": 100.0 + i, "server_cpu_us_per_op": 10.0,
                        "svc_alloc_arg_us_per_call": None} for i in range(3)],
            "after": [{"round": i, "ops_per_s": 2 * (100.0 + i), "server_cpu_us_per_op": 5.0,
                       "svc_alloc_arg_us_per_call": None} for i in range(3)]}
    c = compare_all(runs, "before")["after"]
    assert abs(c["ops_per_s"]["ratio"] - 2) < 1e-9 and abs(c["server_cpu_us_per_op"]["ratio"] - 0.5) < 1e-9
    assert c["svc_alloc_arg_us_per_call"]["ratio"] is None and "before" not in compare_all(runs, "before")


def test_fast_path_off_runs_the_python_reference_path(tmp_path):
    """--fast-path off: every run's rpcsrv serves on the Python path (its ready line says so), the table
    says it, and the JSON keeps it; a value other than on/off is a usage error."""
    out = tmp_path / "b.json"
    r = subprocess.run(BENCH + ["--profile", "rw256k", "--strategies", "list,array", "--baseline", "list",
                                "--rounds", "1", "--time", "1", "--warmup", "1", "--clients", "1", "--threads", "2",
                                "--rw-file-size", str(1 << 20), "--rw-files", "1", "--fast-path", "off",
                                "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "rpcsrv on its Python reference path (--fast-path off)" in r.stdout
    doc = json.loads(out.read_text())
    assert doc["settings"]["server"]["fast_path"] == "off"
    runs = [run for s in doc["profiles"]["rw256k"]["strategies"].values() for run in s["rounds"]]
    assert len(runs) == 2 and all(run["fast_path"] is False for run in runs)
    assert all(run["calls"] > 0 for run in runs)
    bad = subprocess.run(BENCH + ["--fast-path", "maybe"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--fast-path" in bad.stderr and "Traceback" not in bad.stderr


def test_sweep_settings_and_bad_values():
    """--max-block-size makes STRATEGY@SIZE entries; --profile rw with --io-size makes one generated
    loadfile profile per size, each a valid loadfile of the NFS dialect with the size's calls; bad
    lists are one-line usage errors."""
    from loadgen.bench import bench
    from loadgen.__main__ import build_parser
    from loadgen.run.loadfile import Loop, Op, Repeat, parse_text

    def parse(*argv):
        return bench._parse(build_parser().parse_args(["bench", *argv]))
    s = parse("--profile", "rw,dbench", "--io-size", "4K,1M", "--max-block-size", "1M,4M",
              "--strategies", "array,nfree", "--rw-file-size", str(8 << 20))
    assert s["profiles"] == ["rw4k", "rw1m", "dbench"] and s["blocks"] == [1 << 20, 4 << 20]
    assert s["entries"] == ["array@1M", "array@4M", "nfree@1M", "nfree@4M"]
    for name, io in (("rw4k", 4096), ("rw1m", 1 << 20)):
        prog = parse_text(s["generated_loadfiles"][name])
        (loop,) = [it for it in prog.items if isinstance(it, Loop)]
        calls = {"READ3": 0, "WRITE3": 0, "COMMIT3": 0}
        for it in loop.body:
            op, times = (it.op, it.count) if isinstance(it, Repeat) else (it, 1)
            assert isinstance(op, Op)
            calls[op.name] += times
            if op.name in ("READ3", "WRITE3"):
                assert op.params[1].value == io
        assert calls == {"READ3": (8 << 20) // io, "WRITE3": (8 << 20) // io, "COMMIT3": 1}, (name, calls)
    for argv, start in ((("--max-block-size", "3000"), "--max-block-size: 3000 must be a multiple of 4K"),
                        (("--max-block-size", "8M"), "--max-block-size: 8M must be"),
                        (("--max-block-size", "1M,1M"), "--max-block-size: 1M given twice"),
                        (("--max-block-size", "x"), "--max-block-size: 'x' is not a size"),
                        (("--profile", "rw"), "--profile rw needs --io-size"),
                        (("--io-size", "4K"), "--io-size is for --profile rw"),
                        (("--profile", "rw", "--io-size", "8M"), "--io-size: 8M must be")):
        msg = parse(*argv)
        assert isinstance(msg, str) and msg.startswith(start), (argv, msg)


def test_sweep_comparisons_are_per_strategy_against_the_first_size():
    from loadgen.bench.bench import comparisons
    runs = {n: [{"round": r, "ops_per_s": 100.0 * f, "svc_alloc_arg_us_per_call": 1.0 * f,
                 "server_cpu_us_per_op": 10.0} for r in range(3)]
            for n, f in (("array@1M", 1), ("array@4M", 3), ("nfree@1M", 1), ("nfree@4M", 1))}
    c = comparisons(runs, {"blocks": [1 << 20, 4 << 20], "strategies": ["array", "nfree"], "baseline": "x"})
    assert set(c) == {"array@4M", "nfree@4M"}
    assert c["array@4M"]["against"] == "array@1M" and abs(c["array@4M"]["svc_alloc_arg_us_per_call"]["ratio"] - 3) < 1e-9
    assert c["nfree@4M"]["against"] == "nfree@1M" and abs(c["nfree@4M"]["svc_alloc_arg_us_per_call"]["ratio"] - 1) < 1e-9


def test_sweep_run(tmp_path):
    """A real sweep (two strategies, 1M and 4M arrays, 4 KiB I/O, two rounds): the JSON has every
    point's array size, memory per worker, pages and slots per call; array visits the whole array,
    nfree only its holes; the verdicts compare each strategy with itself at 1M; both PNGs."""
    out = tmp_path / "s.json"
    r = subprocess.run(BENCH + ["--profile", "rw", "--io-size", "4K", "--max-block-size", "1M,4M",
                                "--strategies", "array,nfree", "--rounds", "2", "--time", "1", "--warmup", "1",
                                "--clients", "1", "--threads", "2", "--rw-file-size", str(1 << 20), "--seed", "5",
                                "--json", str(out), "--plot", str(tmp_path / "s.png")],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(out.read_text())
    st = doc["profiles"]["rw4k"]["strategies"]
    for name, slots in (("array@1M", 260), ("array@4M", 1028), ("nfree@1M", 260), ("nfree@4M", 1028)):
        v = st[name]
        assert v["pages_per_worker"] == slots and v["bytes_per_worker"] == slots * 4096, name
        assert v["pages_per_call"] > 0 and v["svc_alloc_arg_us_per_call"] > 0
        if name.startswith("array"):
            # every call visits the whole array; the window's two scrapes read the call count and the
            # slots histogram while calls go on, so a call or two at an edge may be in one and not the other
            assert abs(v["slots_scanned_per_call"] - slots) * v["calls"] <= 2 * slots, (name, v["calls"])
        else:
            assert v["slots_scanned_per_call"] < 8
    c = doc["profiles"]["rw4k"]["comparisons"]
    assert c["array@4M"]["against"] == "array@1M" and c["nfree@4M"]["against"] == "nfree@1M"
    assert "== sweep: the page array against the maximum payload" in r.stdout
    assert "verdict rw4k: array@4M vs array@1M:" in r.stdout
    assert (tmp_path / "s.png").stat().st_size > 10000 and (tmp_path / "s-sweep.png").stat().st_size > 10000
