"""loadgen bench --udp-pps (loadgen/bench/udpbench.py) end to end, tiny, and alloc.poolbench."""

import json
import math
import os
import subprocess
import sys

import pytest

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
    r = subprocess.run([sys.executable, "-m", "loadgen", "bench", "--udp-pps", "--rounds", "1", "--time", "1.5",
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
    # recycle release: one fresh page each, give or take the receive ring's 64 pre-filled pages
    # (counted from an idle loop before the flood to an idle loop after it, one server per round)
    over = doc["pages_per_datagram_over"]
    assert over["idle_at_end"] and over["servers"] == 1 and over["datagrams"] >= doc["datagrams"] > 0, over
    assert 0 <= over["pages_served"] - over["datagrams"] <= 64, over
    assert doc["pages_per_datagram"] == over["pages_served"] / over["datagrams"]
    assert png.stat().st_size > 1000
    xt = {r["strategy"]: r for r in doc["xdp_table"]}
    assert xt["single"]["kernel_pps"] == 3771046 and abs(xt["array"]["kernel_vs_single_pct"] - 12.68) < 0.01


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


def test_xdpbench_statistics_are_paired_and_student_t():
    sys.path.insert(0, ROOT)
    from loadgen.bench import xdpbench as xb
    assert xb.t975(1) == 12.706 and xb.t975(29) == 2.045 and xb.t975(1000) == pytest.approx(1.96, abs=3e-3)
    assert math.isnan(xb.t975(0))                       # one block: no interval
    m, ci = xb.mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and abs(ci[0] - (2.0 - 4.303 / 3 ** 0.5)) < 1e-9 and abs(ci[1] - (2.0 + 4.303 / 3 ** 0.5)) < 1e-9
    assert xb.mean_ci([5.0])[1][0] != xb.mean_ci([5.0])[1][0]           # one value: no interval (NaN)
    # blocks whose level swings but whose paired difference does not: the delta CI is tight
    blocks = []
    for level in (600.0, 900.0, 700.0, 1200.0):
        blocks.append({s: {"datagrams": 1000, "batches": 20, "rx_cpu_ns_per_datagram": level + d,
                           "calls_per_s": 1e9 / (level + d), "wall_calls_per_s": 1.0}
                       for s, d in (("single", 0.0), ("list", -10.0), ("array", -20.0))})
    pb = {"ns_per_page": {"release": {"single": 25.0, "list": 14.0, "array": 10.0}}}
    res, comp = xb.summarize(blocks, ("single", "list", "array"), pb, 1.0)
    assert comp["array"]["rx_cpu_ns_per_datagram"]["delta"] == -20.0
    assert comp["array"]["rx_cpu_ns_per_datagram"]["delta_ci95"] == [-20.0, -20.0]
    assert comp["array"]["rx_cpu_ns_per_datagram"]["predicted_delta"] == -15.0
    lo, hi = res["single"]["rx_cpu_ns_per_datagram_ci95"]
    assert hi - lo > 500                                                  # the levels alone are wide
    assert xb.checks(res, comp) == {"array_below_single_ci_excludes_zero": True,
                                    "list_between_array_and_single": True,
                                    "array_live_within_2x_of_prediction": True}
