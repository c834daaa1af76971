"""Load against rpcsrv (issue 4): the dbench loadfiles through `python -m loadgen`, and client
processes churning files (8 for 10 s in `make test`, 16 for 60 s with `pytest -m long`).

* nfs_3.load (CREATE3, a long sequential WRITE3 run, COMMIT3) and the classic client.txt run from
  python-libnfs with no unexpected status; the JSON's byte counts agree with its op counts and with
  the server's own WRITE byte counter; the files are on disk with the right content.
* concurrent client processes create, write, overwrite, read back, rename and delete files in
  their own directories for an exact time, each keeping a record of what every surviving name must
  hold; afterwards every file on disk matches the record (nothing lost, nothing extra) and the
  server returns every allocator page when it stops.
"""
import hashlib
import json
import multiprocessing as mp
import os
import queue
import random
import shutil
import subprocess
import sys
import time
import traceback

import pytest

from nfsbulk_testlib import ROOT, ServerProcess, in_process_server, leaked_pages

NFS_3_LOAD = "/work/shared/anchors/dbench/nfs_3.load"
CLIENT_TXT = "/usr/share/dbench/client.txt"


def run_loadgen(url, tmp_path, *extra, seconds=5):
    out = tmp_path / "loadgen.json"
    cmd = [sys.executable, "-m", "loadgen", "run", url, "--clients", "2", "--time", str(seconds),
           "--warmup", "1", "--no-metrics", "--json", str(out), *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    with open(out) as f:
        return json.load(f), r


def server_write_bytes(srv):
    return srv.registry.get_sample_value("nfsbulk_nfs_write_bytes_total") or 0.0


def test_nfs_3_load(tmp_path):
    if not os.path.exists(NFS_3_LOAD):
        pytest.skip("nfs_3.load anchor missing")
    export = tmp_path / "export"
    export.mkdir()
    with in_process_server(export, threads=4, state_dir=str(tmp_path / "state")) as srv:
        d, r = run_loadgen(srv.url(), tmp_path, "--loadfile", NFS_3_LOAD)
        written = server_write_bytes(srv)
    assert srv.allocator.stats()["allocated"] == 0
    ops = d["ops"]
    assert d["unexpected"] == 0 and d["mismatch_count"] == 0, d["mismatches"]
    assert d["client_failures"] == [] and d["phase_reported"] == "run"
    w = ops["WRITE3"]
    assert w["count"] > 1001 and w["ok"] == w["count"]           # at least one whole pass
    assert d["bytes"]["write"] == w["count"] * 32768 and d["bytes"]["read"] == 0
    assert ops["COMMIT3"]["count"] >= 1 and ops["COMMIT3"]["ok"] == ops["COMMIT3"]["count"]
    assert ops["CREATE3"]["ok"] == ops["CREATE3"]["count"] >= 1
    assert ops["MKDIR3"]["error"] == ops["MKDIR3"]["count"]      # EXIST after the first pass, as expected ('*')
    assert d["ops_total"] == sum(o["count"] for o in ops.values())
    # the server received what the clients counted (warmup + run), give or take the one
    # WRITE3 per client in flight when a phase ended
    counted = d["bytes"]["write"] + d["warmup"]["bytes"]["write"]
    assert 0 <= written - counted <= 2 * 2 * 32768, (written, counted)
    pattern = (b"1234567890" * 3277)[:32768]
    for cid in (0, 1):
        path = export / "clients" / ("client%d" % cid) / "test.file"
        data = path.read_bytes()
        assert len(data) == 1001 * 32768
        assert data == pattern * 1001
    assert sorted(os.listdir(export / "clients")) == ["client0", "client1"]


def test_client_txt(tmp_path):
    if not os.path.exists(CLIENT_TXT):
        pytest.skip("dbench client.txt not installed")
    export = tmp_path / "export"
    export.mkdir()
    with in_process_server(export, threads=4, state_dir=str(tmp_path / "state")) as srv:
        d, r = run_loadgen(srv.url(), tmp_path)                  # the default workload is client.txt
        written = server_write_bytes(srv)
    assert srv.allocator.stats()["allocated"] == 0
    assert d["workload"] == CLIENT_TXT
    assert d["unexpected"] == 0 and d["mismatch_count"] == 0, d["mismatches"]
    assert d["client_failures"] == []
    ops = d["ops"]
    for name in ("NTCreateX", "Close", "WriteX", "ReadX", "QUERY_PATH_INFORMATION", "FIND_FIRST",
                 "Unlink", "Rename"):
        assert ops[name]["count"] > 0, name
        assert ops[name]["unexpected"] == 0, name
    assert ops["WriteX"]["ok"] == ops["WriteX"]["count"]
    assert ops["NTCreateX"]["error"] > 0                         # NAME_NOT_FOUND lines, matched by NOENT
    assert d["bytes"]["write"] > 0 and d["bytes"]["read"] > 0
    counted = d["bytes"]["write"] + d["warmup"]["bytes"]["write"]
    assert 0 <= written - counted <= 2 * 2 * 65536, (written, counted)
    for cid in (0, 1):
        base = export / "clients" / ("client%d" % cid)
        filler = base / "filler.000"          # 1 byte at 65534, then 16 x 64 KiB of dbench's zeroes
        assert filler.read_bytes() == bytes(1048576)
        assert (base / "~dmtmp").is_dir()


# --------------------------------------------------------------------------
# N clients x T s: a short run in `make test`, the full 16 x 60 s one with `pytest -m long`

CHURN_RUNS = [
    pytest.param(8, 10.0, id="short"),
    pytest.param(16, 60.0, id="60s", marks=pytest.mark.long),
]


def _check(rc, what, ctx):
    if rc < 0:
        raise AssertionError("%s: %d %s" % (what, rc, ctx.error()))
    return rc


def _churn(url, cid, go, end_at, results):
    """One client process: churn files in /cNN, keep {name: content}, report {name: sha256}."""
    try:
        from loadgen.run.nfsctx import NfsContext
        ctx = NfsContext(url, rpc_timeout=60)
        rnd = random.Random(4000 + cid)
        d = "/c%02d" % cid
        _check(ctx.mkdir(d), "mkdir " + d, ctx)
        files = {}
        ops = dict(create=0, overwrite=0, rename=0, delete=0, verify=0, truncate=0)
        nbytes = 0
        serial = 0
        results.put(("ready", cid, None))
        if not go.wait(180):
            raise AssertionError("never told to start")
        end = end_at.value

        def write(name, off, data, flags):
            rc, fh = ctx.open("%s/%s" % (d, name), flags)
            _check(rc, "open %s" % name, ctx)
            pos = 0
            while pos < len(data):            # nfs_pwrite may write less than asked
                chunk = bytearray(data[pos:pos + (1 << 20)])
                pos += _check(ctx.pwrite(fh, off + pos, len(chunk), chunk), "pwrite %s" % name, ctx)
            _check(ctx.close(fh), "close %s" % name, ctx)

        while time.monotonic() < end:
            r = rnd.random()
            if r < 0.3 or len(files) < 4:
                serial += 1
                name = "f%06d" % serial
                data = rnd.randbytes(rnd.choice([0, 1, 4095, 65536, 200000, 262147, rnd.randrange(1, 700000)]))
                rc, fh = ctx.creat("%s/%s" % (d, name), 0o644)
                _check(rc, "creat " + name, ctx)
                _check(ctx.close(fh), "close", ctx)
                write(name, 0, data, os.O_WRONLY)
                files[name] = data
                nbytes += len(data)
                ops["create"] += 1
            elif r < 0.45:
                name = rnd.choice(sorted(files))
                old = files[name]
                off = rnd.randrange(0, len(old) + 5000)
                data = rnd.randbytes(rnd.choice([1, 512, 8192, 100000]))
                write(name, off, data, os.O_WRONLY)
                new = bytearray(old)
                if off > len(new):
                    new += bytes(off - len(new))
                new[off:off + len(data)] = data
                files[name] = bytes(new)
                nbytes += len(data)
                ops["overwrite"] += 1
            elif r < 0.6:
                src = rnd.choice(sorted(files))
                if rnd.random() < 0.3 and len(files) > 1:
                    dst = rnd.choice(sorted(set(files) - {src}))   # over an existing file
                else:
                    serial += 1
                    dst = "r%06d" % serial
                _check(ctx.rename("%s/%s" % (d, src), "%s/%s" % (d, dst)), "rename %s %s" % (src, dst), ctx)
                files[dst] = files.pop(src)
                ops["rename"] += 1
            elif r < 0.72:
                name = rnd.choice(sorted(files))
                _check(ctx.unlink("%s/%s" % (d, name)), "unlink " + name, ctx)
                del files[name]
                ops["delete"] += 1
            elif r < 0.8:
                name = rnd.choice(sorted(files))
                size = rnd.choice([0, len(files[name]) // 2, len(files[name]) + 3000])
                rc, fh = ctx.open("%s/%s" % (d, name), os.O_WRONLY)
                _check(rc, "open " + name, ctx)
                _check(ctx.ftruncate(fh, size), "ftruncate " + name, ctx)
                _check(ctx.close(fh), "close", ctx)
                files[name] = files[name][:size] + bytes(max(0, size - len(files[name])))
                ops["truncate"] += 1
            else:
                name = rnd.choice(sorted(files))
                rc, fh = ctx.open("%s/%s" % (d, name), os.O_RDONLY)
                _check(rc, "open " + name, ctx)
                got = bytearray()
                while True:
                    buf = bytearray(1 << 20)
                    n = _check(ctx.pread(fh, len(got), len(buf), buf), "pread " + name, ctx)
                    if n == 0:
                        break
                    got += buf[:n]
                _check(ctx.close(fh), "close", ctx)
                if bytes(got) != files[name]:
                    raise AssertionError("read back %s: %d bytes, expected %d" % (name, len(got), len(files[name])))
                ops["verify"] += 1
        ctx.destroy()
        record = {n: hashlib.sha256(b).hexdigest() for n, b in files.items()}
        results.put(("done", cid, (record, ops, nbytes)))
    except BaseException:
        results.put(("error", cid, traceback.format_exc()))


@pytest.mark.parametrize("clients, seconds", CHURN_RUNS)
def test_clients_churn_files(tmp_path, clients, seconds):
    export = tmp_path / "export"
    export.mkdir()
    spawn = mp.get_context("spawn")
    results = spawn.Queue()
    go = spawn.Event()
    end_at = spawn.Value("d", 0.0)
    with ServerProcess(export, strategy="array", threads=8, arena_mib=256,
                       extra=["--state-dir", str(tmp_path / "state")]) as srv:
        procs = [spawn.Process(target=_churn, args=(srv.url, i, go, end_at, results), daemon=True)
                 for i in range(clients)]
        for p in procs:
            p.start()
        try:
            ready = set()
            deadline = time.monotonic() + 180
            while len(ready) < clients:
                kind, cid, info = results.get(timeout=max(1, deadline - time.monotonic()))
                assert kind == "ready", (kind, cid, info)
                ready.add(cid)
            t0 = time.monotonic()
            end_at.value = t0 + seconds
            go.set()
            done = {}
            while len(done) < clients:
                try:
                    kind, cid, info = results.get(timeout=max(1, t0 + seconds + 120 - time.monotonic()))
                except queue.Empty:
                    raise AssertionError("clients still running: %s" % sorted(set(range(clients)) - set(done)))
                assert kind == "done", "client %d: %s" % (cid, info)
                done[cid] = info
            elapsed = time.monotonic() - t0
            for p in procs:
                p.join(60)
                assert p.exitcode == 0
        finally:
            for p in procs:
                if p.is_alive():
                    p.kill()
        code, err = srv.stop()
    assert code == 0, err[-2000:]
    assert leaked_pages(err) == 0
    assert seconds <= elapsed < seconds + 60
    totals = {}
    total_bytes = 0
    for cid, (record, ops, nbytes) in sorted(done.items()):
        for k, v in ops.items():
            totals[k] = totals.get(k, 0) + v
        total_bytes += nbytes
        cdir = export / ("c%02d" % cid)
        on_disk = {}
        for name in os.listdir(cdir):
            with open(cdir / name, "rb") as f:
                on_disk[name] = hashlib.sha256(f.read()).hexdigest()
        assert set(on_disk) == set(record), (cid, sorted(set(on_disk) ^ set(record)))
        bad = [n for n in record if on_disk[n] != record[n]]
        assert not bad, (cid, bad)
    assert sorted(os.listdir(export)) == ["c%02d" % i for i in range(clients)]
    shutil.rmtree(export)                      # a few GB were written; the survivors are not needed any more
    print("%d clients, %.1f s: %d ops %r, %.1f MB written" % (clients, elapsed, sum(totals.values()), totals,
                                                              total_bytes / 1e6))
    assert all(totals[k] > 0 for k in totals), totals
    assert sum(totals.values()) >= 10 * clients
