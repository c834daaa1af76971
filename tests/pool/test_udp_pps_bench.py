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
                        "--arena-mib", "64", "--udp-window", "8", "--udp-path", "python", "--json", str(out)],
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


def test_udp_pps_xdp_bench_json_names(tmp_path):
    """The compiled path (the default): the JSON names the checks rely on, the XDP-form table, a plot."""
    out, png = tmp_path / "xdp.json", tmp_path / "xdp.png"
    r = subprocess.run([sys.executable, "-m", "loadgen", "bench", "--udp-pps", "--rounds", "1", "--time", "1",
                        "--warmup", "0.3", "--udp-block", "0.5", "--udp-rate", "50000", "--udp-procs", "1",
                        "--threads", "2", "--arena-mib", "64", "--json", str(out), "--plot", str(png)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "XDP form" in r.stdout and "3,771,046" in r.stdout and "+12.68%" in r.stdout and "+4.49%" in r.stdout
    doc = json.loads(out.read_text())
    ps, pc = doc["pool_strategies"], doc["pool_comparisons"]
    assert set(ps) == {"single", "list", "array"} and set(pc) == {"list", "array"}
    for v in ps.values():
        assert v["calls_per_s"] > 0 and v["rx_cpu_ns_per_datagram"] > 0 and v["datagrams"] > 0
        lo, hi = v["rx_cpu_ns_per_datagram_ci95"]
        assert lo <= v["rx_cpu_ns_per_datagram"] <= hi
    for v in pc.values():
        lo, hi = v["rx_cpu_ns_per_datagram"]["delta_ci95"]
        assert lo <= v["rx_cpu_ns_per_datagram"]["delta"] <= hi
        assert v["calls_per_s"]["ratio"] > 0
        assert v["rx_cpu_ns_per_datagram"]["predicted_delta"] < 0      # poolbench: bulk refills are cheaper
    assert abs(doc["pages_per_datagram"] - 1.0) < 0.01                  # recycle release: one fresh page each
    assert png.stat().st_size > 1000


def test_udp_pps_bench_usage_errors():
    for bad in (["--udp-rate", "0"], ["--udp-interleave", "4", "--pool-strategies", "single,array"],
                ["--pool-strategies", "list,array", "--udp-interleave", "0"]):
        r = subprocess.run([sys.executable, "-m", "loadgen", "bench", "--udp-pps", *bad], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "Traceback" not in r.stderr, (bad, r.stderr)


def test_poolbench_table():
    r = subprocess.run([sys.executable, "-m", "alloc.poolbench", "--pages", "64000", "--rounds", "1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "release:" in r.stdout and "direct:" in r.stdout and "array" in r.stdout
