"""loadgen bench with tiny settings: the JSON's shape, and every figure consistent with the
server's own metrics and the load generator's counts."""
import json
import math
import subprocess
import sys

import pytest

ROOT = __import__("nfsbulk_testlib").ROOT


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    png = out.with_suffix(".png")
    r = subprocess.run([sys.executable, "-m", "loadgen", "bench", "--profile", "rw256k",
                        "--strategies", "single,array", "--rounds", "1", "--time", "3", "--warmup", "1",
                        "--clients", "2", "--threads", "4", "--rw-file-size", str(2 << 20),
                        "--json", str(out), "--plot", str(png)],
                       cwd=ROOT, capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    text = r.stdout.decode()
    assert png.stat().st_size > 10000
    return json.loads(out.read_text()), text


def test_table_in_the_seeds_words(bench_json):
    _, text = bench_json
    assert "Single page:" in text and "Bulk array:" in text
    assert "us per call over" in text
    assert "25.007 us per call over 532,571 calls" in text          # the kernel's, labelled as such
    assert "vs single" in text


def test_json_shape(bench_json):
    doc, _ = bench_json
    for s in ("single", "array"):
        d = doc["strategies"][s]
        for key in ("svc_alloc_arg_us_per_call", "calls", "pages_per_call", "waits", "ops_per_s", "mb_per_s"):
            assert key in d and isinstance(d[key], (int, float)) and not math.isnan(d[key]), (s, key)
    assert doc["peers"] == {}
    assert doc["kernel"]["svc_alloc_arg_us_per_call"]["array"] == 4.590
    rounds = doc["profiles"]["rw256k"]["strategies"]["array"]["rounds"]
    assert len(rounds) == 1 and rounds[0]["histogram"]


def test_counts_consistent_with_server_metrics(bench_json):
    doc, _ = bench_json
    for s in ("single", "array"):
        run = doc["profiles"]["rw256k"]["strategies"][s]["rounds"][0]
        assert run["pages_leaked"] == 0 and run["unexpected"] == 0
        # one svc_alloc_arg call precedes every turn a worker takes on a connection, as in the
        # kernel's svc_recv: a turn that finds a partial record or a closed connection counts a
        # call and serves no request, so calls >= requests (minus the workers' in-flight edges),
        # and those extra turns are a small share (a 256 KiB WRITE seldom arrives in pieces).
        assert run["calls"] >= run["requests"] - 8, run
        assert run["calls"] <= 1.03 * run["requests"] + 8, run
        # the load generator's ops are the server's requests in the same window (in-flight at the edges)
        assert abs(run["requests"] - run["ops"]) <= 0.05 * run["ops"] + 8, run
        # payload bytes: server counters vs the clients' own
        for side in ("read", "write"):
            srv, cli = run["server_%s_bytes" % side], run["loadgen_%s_bytes" % side]
            assert abs(srv - cli) <= 0.05 * cli + 8 * 262144, (side, srv, cli)
        # rw256k: READ replies take 65 pages (header + 64), WRITE and COMMIT replies one
        assert 1 < run["pages_per_call"] < 65
        assert run["ops_per_s"] == pytest.approx(run["ops"] / run["elapsed_seconds"], rel=1e-6)
        assert run["svc_alloc_arg_us_per_call"] > 0 and run["p50_us"] <= run["p99_us"]
