"""loadgen bench with tiny settings: the JSON's names, every figure consistent with the server's own
metrics and the load generator's counts, the shuffled order reproducible from the seed, compare."""
import json
import math
import subprocess
import sys

import pytest

from loadgen.bench import ci

from nfsbulk_testlib import ROOT, ServerProcess
SEED = 11


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory):
    """Two strategies and a peer (a second rpcsrv, its CPU read through --peer-pid) over two rounds."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    png = out.with_suffix(".png")
    peer_export = tmp_path_factory.mktemp("peer")
    with ServerProcess(peer_export, threads=4) as peer:
        r = _bench(out, png, peer)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    assert png.stat().st_size > 10000
    return json.loads(out.read_text()), r.stdout.decode(), str(out)


def _bench(out, png, peer):
    return subprocess.run([sys.executable, "-m", "loadgen", "bench", "--profile", "rw256k",
                           "--strategies", "single,array", "--rounds", "2", "--time", "3", "--warmup", "1",
                           "--clients", "2", "--threads", "4", "--rw-file-size", str(2 << 20), "--seed", str(SEED),
                           "--peer", "other=" + peer.url, "--peer-pid", "other=%d" % peer.pid,
                           "--json", str(out), "--plot", str(png)],
                          cwd=ROOT, capture_output=True, timeout=300)


def test_table_and_verdict_lines(bench_json):
    _, text, _ = bench_json
    assert "Single page:" in text and "Bulk array:" in text
    assert "us per call over" in text
    assert "25.007 us per call over 532,571 calls" in text          # the kernel's, from --list-strategies
    assert "p50 / p90 / p99 / p99.9" in text
    assert "JSON written to" in text and "plot written to" in text
    tail = [ln for ln in text.splitlines() if ln.strip()][-2:]          # ends with the verdicts
    assert tail[0].startswith("verdict rw256k: array vs single: ops/s x")
    assert "svc_alloc_arg us/call x" in tail[0] and "server CPU us/op x" in tail[0]
    assert tail[1].startswith("verdict rw256k: other vs single: ops/s x")   # the peer has no svc_alloc_arg
    assert "svc_alloc_arg" not in tail[1] and "server CPU us/op x" in tail[1]


def test_json_names(bench_json):
    doc, _, _ = bench_json
    meta = doc["meta"]
    assert meta["timestamp"].endswith("+00:00") and meta["argv"][0].endswith("__main__.py")
    assert "--seed" in meta["argv"] and len(meta["git_commit"] or "x" * 40) == 40
    for key in ("hostname", "kernel", "cpu_model", "cpus", "python", "nfsbulk_version"):
        assert key in meta
    assert doc["schema"].startswith("nfsbulk-bench/") and doc["settings"]["seed"] == SEED
    assert doc["interrupted"] is False
    assert doc["settings"]["server"]["fast_path"] == "on"       # the default: the compiled request path
    assert all(run["fast_path"] is True for s in doc["profiles"]["rw256k"]["strategies"].values()
               for run in s["rounds"])
    for s in ("single", "array"):
        d = doc["strategies"][s]
        for key in ("ops_per_s", "server_cpu_us_per_op", "svc_alloc_arg_us_per_call", "calls", "pages_per_call",
                    "mb_per_s", "svc_alloc_arg_cpu_share"):
            assert isinstance(d[key], (int, float)) and not math.isnan(d[key]), (s, key)
        for key in ("ops_per_s_ci95", "svc_alloc_arg_us_per_call_ci95", "server_cpu_us_per_op_ci95"):
            lo, hi = d[key]
            assert lo <= hi, (s, key)
        for op in ("READ3", "WRITE3"):
            p = d["ops"][op]
            assert 0 < p["p50_seconds"] <= p["p90_seconds"] <= p["p99_seconds"] <= p["p999_seconds"] <= p["max_seconds"]
    c = doc["comparisons"]["array"]
    assert set(c) == {"ops_per_s", "svc_alloc_arg_us_per_call", "server_cpu_us_per_op"}
    for fig, v in c.items():
        assert v["ratio"] > 0 and v["ci95"][0] <= v["ratio"] <= v["ci95"][1]
        assert v["verdict"] in (ci.FASTER, ci.SLOWER, ci.SAME)
    assert "single" not in doc["comparisons"]
    peer = doc["peers"]["other"]                       # a peer: same load, its CPU measured by pid
    assert peer["ops_per_s"] > 0 and peer["server_cpu_us_per_op"] > 0 and len(peer["ops_per_s_ci95"]) == 2
    pc = doc["comparisons"]["other"]
    assert pc["ops_per_s"]["ratio"] > 0 and pc["server_cpu_us_per_op"]["verdict"] in (ci.FASTER, ci.SLOWER, ci.SAME)
    assert pc["svc_alloc_arg_us_per_call"]["ratio"] is None and pc["svc_alloc_arg_us_per_call"]["verdict"] == "n/a"
    assert doc["kernel"]["array"]["kernel_us"] == 4.59


def test_ratios_are_the_rounds_paired(bench_json):
    doc, _, _ = bench_json
    prof = doc["profiles"]["rw256k"]
    base = {r["round"]: r for r in prof["strategies"]["single"]["rounds"]}
    arr = prof["strategies"]["array"]["rounds"]
    logs = [math.log(r["ops_per_s"] / base[r["round"]]["ops_per_s"]) for r in arr]
    assert prof["comparisons"]["array"]["ops_per_s"]["ratio"] == pytest.approx(math.exp(sum(logs) / len(logs)))


def test_order_recorded_and_reproducible_from_the_seed(bench_json):
    doc, _, _ = bench_json
    prof = doc["profiles"]["rw256k"]
    assert prof["rounds_done"] == 2 and prof["stop_reason"] == "rounds"
    names = ["single", "array", "other"]
    assert prof["orders"] == [ci.round_order(names, SEED, r, "rw256k") for r in range(2)]
    runs = [dict(x, name=s) for group in ("strategies", "peers") for s, v in prof[group].items() for x in v["rounds"]]
    for r, order in enumerate(prof["orders"]):          # every entry ran once per round, in that order
        this = sorted((x for x in runs if x["round"] == r), key=lambda x: x["start_unix"])
        assert [x["name"] for x in this] == order


def test_counts_consistent_with_server_metrics(bench_json):
    doc, _, _ = bench_json
    for s in ("single", "array"):
        for run in doc["profiles"]["rw256k"]["strategies"][s]["rounds"]:
            assert run["pages_leaked"] == 0 and run["unexpected"] == 0
            # one svc_alloc_arg call precedes every turn a worker takes on a connection, as in the
            # kernel's svc_recv: a turn that finds a partial record or a closed connection counts a
            # call and serves no request, so calls >= requests (minus the workers' in-flight edges),
            # and only records bigger than one receive arrive in pieces: here the 256 KiB WRITEs.
            # On a loaded machine a share of them does (4 % extra turns seen): allow on average one
            # extra turn per WRITE, which a second call per request (calls ~ 2 x requests, of which
            # WRITEs are under half) would still exceed.
            writes = run["server_write_bytes"] / 262144
            assert run["calls"] >= run["requests"] - 8, run
            assert run["calls"] <= run["requests"] + writes + 8, run
            # the load generator's ops are the server's requests in the same window (in-flight at the edges)
            assert abs(run["requests"] - run["ops"]) <= 0.05 * run["ops"] + 8, run
            for side in ("read", "write"):
                srv, cli = run["server_%s_bytes" % side], run["loadgen_%s_bytes" % side]
                assert abs(srv - cli) <= 0.05 * cli + 8 * 262144, (side, srv, cli)
            # rw256k: READ replies take 65 pages (header + 64), WRITE and COMMIT replies one
            assert 1 < run["pages_per_call"] < 65
            assert run["ops_per_s"] == pytest.approx(run["ops"] / run["elapsed_seconds"], rel=1e-6)
            assert run["svc_alloc_arg_us_per_call"] > 0 and run["p50_us"] <= run["p99_us"]
            # CPU: the server's own time over the window, per op; svc_alloc_arg is a part of it
            assert run["server_cpu_us_per_op"] == pytest.approx(run["server_cpu_seconds"] / run["ops"] * 1e6)
            assert 0 < run["server_cpu_seconds"] <= 2 * 3.0 * 1.2 + 0.1    # 2 cores, a 3 s window
            assert 0 < run["svc_alloc_arg_cpu_share"] < 1


def test_compare_a_bench_file_with_itself(bench_json, tmp_path):
    _, _, path = bench_json
    r = subprocess.run([sys.executable, "-m", "loadgen", "compare", path, path, "--json", "-"],
                       cwd=ROOT, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    doc = json.loads(r.stdout)                       # stdout is the JSON alone; the table went to stderr
    assert doc["kind"] == "bench" and len(doc["files"]) == 2
    rows = {(x["entry"], x["figure"]): x for x in doc["rows"]}
    row = rows[("array", "ops_per_s")]
    assert row["ratios"][0]["ratio"] == pytest.approx(1.0) and row["ratios"][0]["verdict"] == ci.SAME
    assert "B/A" in r.stderr.decode()
