"""End-to-end: `python -m loadgen run URL` against nfs-ganesha's VFS export on
loopback.  Each test gets a fresh export directory and checks the JSON
counts and byte totals against what must be on disk there."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request

import pytest

from nfsbulk_testlib import announced_metrics_url

ANCHORS = "/work/shared/anchors/dbench"
CLIENT_TXT = "/usr/share/dbench/client.txt"


def load_json(path):
    with open(path) as f:
        return json.load(f)


def test_nfs_3_load_two_clients(ganesha, tmp_path, run_loadgen):
    nfs3 = os.path.join(ANCHORS, "nfs_3.load")
    if not os.path.exists(nfs3):
        pytest.skip("nfs_3.load anchor missing")
    export = ganesha.fresh_export()
    out = tmp_path / "r.json"
    r = run_loadgen(["run", ganesha.url(export), "--clients", "2", "--warmup", "1", "--time", "3",
                     "--loadfile", nfs3, "--json", str(out), "--no-metrics"])
    assert r.returncode == 0, r.stderr + r.stdout
    d = load_json(out)
    ops = d["ops"]
    assert d["unexpected"] == 0 and d["mismatch_count"] == 0
    assert d["clients"] == 2 and d["phase_reported"] == "run"
    assert abs(d["elapsed_seconds"] - 3.0) < 0.5
    w = ops["WRITE3"]
    assert w["count"] > 1000 and w["ok"] == w["count"]
    # every WRITE3 of nfs_3.load carries 32768 bytes; READ3 never appears
    assert d["bytes"]["write"] == w["count"] * 32768
    assert d["bytes"]["read"] == 0
    # directories exist after the first pass, so every run-phase MKDIR3 fails
    # with EXIST, which the loadfile accepts ('*'): counted as expected errors
    assert ops["MKDIR3"]["error"] == ops["MKDIR3"]["count"] > 0
    assert ops["COMMIT3"]["count"] >= 1
    assert sum(ops["WRITE3"]["buckets"]) == w["count"]
    assert len(ops["WRITE3"]["buckets"]) == len(d["bucket_bounds_seconds"]) + 1
    assert d["bucket_bounds_seconds"][0] == pytest.approx(25e-6)
    assert d["bucket_bounds_seconds"][-1] == pytest.approx(13.1072)
    assert d["ops_total"] == sum(o["count"] for o in ops.values())
    assert d["mb_per_second"] == pytest.approx(
        (d["bytes"]["read"] + d["bytes"]["write"]) / 1e6 / d["elapsed_seconds"])
    # per-second lines and the table
    assert len(re.findall(r"^\s+2\s+\d+\s+[\d.]+ MB/sec\s+execute\s+\d+ sec\s+latency [\d.]+ ms$",
                          r.stdout, re.M)) >= 2
    assert re.search(r"^ WRITE3\s+\d+", r.stdout, re.M)
    assert "Throughput" in r.stdout
    # on disk: each client's file, 1001 writes of the WRITEPATTERN
    pattern = b"1234567890" * 3277
    for cid in (0, 1):
        path = os.path.join(export, "clients", f"client{cid}", "test.file")
        assert os.path.getsize(path) == 1001 * 32768
        with open(path, "rb") as f:
            assert f.read(32768) == pattern[:32768]
            f.seek(500 * 32768)
            assert f.read(32768) == pattern[:32768]
    assert not os.path.exists(os.path.join(export, "clients", "client2"))


def test_client_txt_two_clients(ganesha, tmp_path, run_loadgen):
    if not os.path.exists(CLIENT_TXT):
        pytest.skip("dbench client.txt not installed")
    export = ganesha.fresh_export()
    out = tmp_path / "c.json"
    r = run_loadgen(["run", ganesha.url(export), "--clients", "2", "--warmup", "1", "--time", "3",
                     "--json", str(out), "--no-metrics"])   # default workload = client.txt
    assert r.returncode == 0, r.stderr + r.stdout
    assert CLIENT_TXT in r.stdout
    d = load_json(out)
    assert d["workload"] == CLIENT_TXT
    assert d["unexpected"] == 0, d["mismatches"]
    ops = d["ops"]
    for name in ("NTCreateX", "Close", "WriteX", "ReadX", "QUERY_PATH_INFORMATION", "FIND_FIRST"):
        assert ops[name]["count"] > 0, name
    # client.txt expects some opens to fail (NT_STATUS_OBJECT_NAME_NOT_FOUND):
    # ENOENT from the server matches, so they are counted as expected errors
    assert ops["NTCreateX"]["error"] > 0
    assert d["bytes"]["write"] > 0 and d["bytes"]["read"] > 0
    assert d["warmup"]["ops_total"] > 0
    for cid in (0, 1):
        base = os.path.join(export, "clients", f"client{cid}")
        # first lines of client.txt: filler.000 gets 1 byte at 65534 then 16 x 64 KiB
        filler = os.path.join(base, "filler.000")
        assert os.path.getsize(filler) == 1048576
        with open(filler, "rb") as f:
            assert f.read() == bytes(1048576)     # dbench writes zero-filled buffers
        assert os.path.isdir(os.path.join(base, "~dmtmp"))


def test_rw256k_profile(ganesha, tmp_path, run_loadgen):
    export = ganesha.fresh_export()
    out = tmp_path / "p.json"
    r = run_loadgen(["run", ganesha.url(export), "--clients", "2", "--warmup", "0", "--time", "2",
                     "--profile", "rw256k", "--rw-files", "2", "--rw-file-size", "1M",
                     "--json", str(out), "--no-metrics"])
    assert r.returncode == 0, r.stderr + r.stdout
    d = load_json(out)
    ops = d["ops"]
    assert set(ops) <= {"READ3", "WRITE3", "COMMIT3"}
    assert ops["READ3"]["count"] > 0 and ops["WRITE3"]["count"] > 0
    assert d["bytes"]["read"] == ops["READ3"]["count"] * 262144
    assert d["bytes"]["write"] == ops["WRITE3"]["count"] * 262144
    assert d["unexpected"] == 0 and d["errors"] == 0
    # a pass reads the whole set before writing it: reads >= writes, and the
    # setup's writes (laying out 2 x 1 MiB) are not counted: the first op
    # of the timed phase is a READ3 of a file that already has its full size
    assert ops["READ3"]["count"] >= ops["WRITE3"]["count"]
    for cid in (0, 1):
        for i in (0, 1):
            assert os.path.getsize(os.path.join(export, "clients", f"client{cid}", "rw256k", f"f{i}")) == 1 << 20


def test_status_mismatch_reported_counted_and_strict(ganesha, tmp_path, run_loadgen):
    export = ganesha.fresh_export()
    lf = tmp_path / "mm.load"
    lf.write_text('MKDIR3 "/clients" *\n'
                  'MKDIR3 "/clients/client1" *\n'
                  '# the next line expects success on a missing name\n'
                  'LOOKUP3 "/clients/client1/missing" 0x00000000\n'
                  'LOOKUP3 "/clients/client1" 0x00000000\n')
    out = tmp_path / "mm.json"
    r = run_loadgen(["run", ganesha.url(export), "--clients", "1", "--warmup", "0", "--time", "1",
                     "--loadfile", str(lf), "--json", str(out), "--no-metrics"])
    # reported, counted, and a failed run: exit 1, the last line naming the first mismatch
    assert r.returncode == 1, r.stderr
    assert ('client0 [4] LOOKUP3 "/clients/client0/missing" got 0x00000002 (NFS3ERR_NOENT) '
            '- expected 0x00000000') in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("loadgen: FAILED: ")
    assert r.stderr.strip().splitlines()[-1].endswith(
        '; first: client0 [4] LOOKUP3 "/clients/client0/missing" got 0x00000002 (NFS3ERR_NOENT) - expected 0x00000000')
    d = load_json(out)
    assert d["unexpected"] == d["ops"]["LOOKUP3"]["unexpected"] > 0
    assert d["ops"]["LOOKUP3"]["ok"] == d["ops"]["LOOKUP3"]["unexpected"] or \
        abs(d["ops"]["LOOKUP3"]["ok"] - d["ops"]["LOOKUP3"]["unexpected"]) <= 1
    assert d["mismatch_count"] == d["unexpected"] == d["failed_ops"]
    assert d["exit_code"] == 1

    t = time.monotonic()
    r = run_loadgen(["run", ganesha.url(export), "--clients", "1", "--warmup", "0", "--time", "30",
                     "--loadfile", str(lf), "--strict", "--no-metrics"])
    assert r.returncode == 1
    assert time.monotonic() - t < 15          # fatal at once, not after --time
    assert "client0 failed (strict)" in r.stderr and "[4] LOOKUP3" in r.stderr


def test_mount_failure_is_reported_fast(ganesha, free_port, run_loadgen):
    export = ganesha.fresh_export()
    url = ganesha.url(export, nfs_port=free_port, mnt_port=free_port)
    t = time.monotonic()
    r = run_loadgen(["run", url, "--clients", "3", "--time", "5", "--no-metrics"], timeout=60)
    assert r.returncode == 1
    assert time.monotonic() - t < 30
    assert "failed (mount)" in r.stderr and "cannot mount" in r.stderr
    assert "aborting" in r.stderr


def test_malformed_loadfile_cli(tmp_path, run_loadgen):
    lf = tmp_path / "bad.load"
    lf.write_text('GETATTR3 "/a" *\nLOOP 2\n')
    r = run_loadgen(["run", "nfs://127.0.0.1/x?nfsport=1&mountport=1", "--loadfile", str(lf),
                     "--no-metrics"], timeout=30)
    assert r.returncode == 2
    assert f"{lf}:2: LOOP without ENDLOOP" in r.stderr


def test_help_explains_every_flag(run_loadgen):
    r = run_loadgen(["run", "--help"], timeout=30)
    assert r.returncode == 0
    for flag in ("--clients", "--time", "--warmup", "--loadfile", "--profile", "--strict", "--json",
                 "--metrics-port", "--metrics-addr", "--ignore-timestamps", "--seed", "--rw-files",
                 "--rw-file-size", "--start-timeout", "--rpc-timeout", "--max-mismatches"):
        assert flag in r.stdout
    r = run_loadgen(["--help"], timeout=30)
    assert r.returncode == 0 and "run" in r.stdout


def _scrape(url):
    with urllib.request.urlopen(url, timeout=2) as resp:
        return resp.read().decode()


def _sample(text, name, labels=""):
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else None


def test_metrics_across_processes_and_sigint(ganesha, tmp_path, loadgen_argv):
    nfs3 = os.path.join(ANCHORS, "nfs_3.load")
    if not os.path.exists(nfs3):
        pytest.skip("nfs_3.load anchor missing")
    export = ganesha.fresh_export()
    out = tmp_path / "i.json"
    argv, cwd = loadgen_argv
    p = subprocess.Popen([*argv, "run", ganesha.url(export), "--clients", "2",
                          "--warmup", "0", "--time", "120", "--loadfile", nfs3, "--json", str(out),
                          "--metrics-port", "0"],
                         cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        murl = announced_metrics_url(p)
        deadline = time.monotonic() + 30
        text = ""
        while time.monotonic() < deadline:
            try:
                text = _scrape(murl)
            except OSError:
                text = ""
            w = _sample(text, "nfsbulk_loadgen_ops_total", '{op="WRITE3",status="ok"}')
            if w and w > 200 and _sample(text, "nfsbulk_loadgen_clients") == 2:
                break
            assert p.poll() is None, p.communicate()
            time.sleep(0.2)
        else:
            pytest.fail(f"metrics never showed both clients writing:\n{text[-2000:]}")
        wb = _sample(text, "nfsbulk_loadgen_bytes_total", '{direction="write"}')
        w = _sample(text, "nfsbulk_loadgen_ops_total", '{op="WRITE3",status="ok"}')
        assert wb == w * 32768
        inf = _sample(text, "nfsbulk_loadgen_op_duration_seconds_bucket", '{le="+Inf",op="WRITE3"}')
        cnt = _sample(text, "nfsbulk_loadgen_op_duration_seconds_count", '{op="WRITE3"}')
        assert inf == cnt >= w
        assert 'le="2.5e-05"' in text and 'le="13.1072"' in text
        # both processes contribute: both client directories are being written
        for cid in (0, 1):
            assert os.path.exists(os.path.join(export, "clients", f"client{cid}", "test.file"))

        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 130, stderr
    assert "interrupted" in stderr
    assert "Throughput" in stdout and re.search(r"^ WRITE3\s+\d+", stdout, re.M)
    d = load_json(out)
    assert d["interrupted"] is True and d["ops"]["WRITE3"]["count"] > 0
    assert d["elapsed_seconds"] < 60


def _children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(x) for x in f.read().split()]


def test_client_killed_mid_run_fails_the_run(ganesha, tmp_path, loadgen_argv):
    nfs3 = os.path.join(ANCHORS, "nfs_3.load")
    if not os.path.exists(nfs3):
        pytest.skip("nfs_3.load anchor missing")
    export = ganesha.fresh_export()
    argv, cwd = loadgen_argv
    p = subprocess.Popen([*argv, "run", ganesha.url(export), "--clients", "2", "--warmup", "0",
                          "--time", "120", "--loadfile", nfs3, "--no-metrics"],
                         cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # wait until the run has started (first per-second line), then kill a client
        line = p.stdout.readline()
        assert line.startswith("loadgen: 2 clients"), line + p.stderr.read()
        kids = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            kids = [k for k in _children(p.pid)
                    if "loadgen" in open(f"/proc/{k}/cmdline").read() or
                    "multiprocessing" in open(f"/proc/{k}/cmdline").read()]
            if len(kids) >= 2:
                break
            time.sleep(0.05)
        assert kids, "no client processes found"
        os.kill(kids[-1], signal.SIGKILL)
        stdout, stderr = p.communicate(timeout=40)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 1
    assert re.search(r"client\d failed \(exited\): process killed by signal 9", stderr), stderr
    assert "Throughput" in stdout
