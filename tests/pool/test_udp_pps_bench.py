"""loadgen bench --udp-pps (loadgen/udpbench.py) end to end, tiny, and alloc.poolbench."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_udp_pps_bench_json(tmp_path):
    out = tmp_path / "udp.json"
    r = subprocess.run([sys.executable, "-m", "loadgen", "bench", "--udp-pps", "--pool-strategies", "single,array",
                        "--rounds", "1", "--time", "0.6", "--warmup", "0.3", "--clients", "2", "--threads", "2",
                        "--arena-mib", "64", "--udp-window", "8", "--json", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Bulk array" in r.stdout and "3,771,046" in r.stdout and "ns/page" in r.stdout
    doc = json.loads(out.read_text())
    ps = doc["pool_strategies"]
    assert set(ps) == {"single", "array"}
    for s, v in ps.items():
        assert isinstance(v["calls_per_s"], float) and v["calls_per_s"] > 0
        assert isinstance(v["refills"], int) and isinstance(v["pages_from_allocator"], int)
        assert v["refills"] > 0
    # release mode (the default): single refills one page at a time, array 64
    assert ps["single"]["pages_from_allocator"] == ps["single"]["refills"]
    assert ps["array"]["pages_from_allocator"] >= 32 * ps["array"]["refills"]
    assert doc["poolbench"]["allocated_after"] == 0


def test_poolbench_table():
    r = subprocess.run([sys.executable, "-m", "alloc.poolbench", "--pages", "64000", "--rounds", "1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "release:" in r.stdout and "direct:" in r.stdout and "array" in r.stdout
