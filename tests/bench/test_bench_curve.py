"""loadgen bench --curve with tiny settings: a strategy and a peer (a second rpcsrv, CPU through
--peer-pid) each calibrated closed loop and run open loop below and above their maximum; the
JSON's figures consistent with the runs they summarise; the knee rule; usage errors."""
import json
import subprocess
import sys

import pytest

from loadgen.bench import curve

from nfsbulk_testlib import ROOT, ServerProcess


@pytest.fixture(scope="module")
def curve_doc(tmp_path_factory):
    out = tmp_path_factory.mktemp("curve") / "curve.json"
    png = out.with_suffix(".png")
    with ServerProcess(tmp_path_factory.mktemp("peer"), threads=4) as peer:
        r = subprocess.run([sys.executable, "-m", "loadgen", "bench", "--profile", "rw256k", "--strategies", "array",
                            "--curve", "30,200", "--rounds", "2", "--time", "1.5", "--warmup", "0.5",
                            "--clients", "2", "--threads", "4", "--rw-file-size", str(2 << 20), "--seed", "5",
                            "--peer", "other=" + peer.url, "--peer-pid", "other=%d" % peer.pid,
                            "--json", str(out), "--plot", str(png)], cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert png.stat().st_size > 10000
    return json.loads(out.read_text()), r.stdout


def test_points_below_and_above_the_maximum(curve_doc):
    doc, text = curve_doc
    entries = doc["curve"]["rw256k"]["entries"]
    assert set(entries) == {"array", "other"} and entries["other"]["peer"]
    for name, e in entries.items():
        m = e["max_ops_per_s"]
        assert m > 100 and e["calibration"]["open_loop"] is None       # closed loop
        low, high = e["points"]["30"], e["points"]["200"]
        assert low["rounds_done"] == high["rounds_done"] == 2
        # each point ran at its percentage of the calibrated maximum
        for pct, f in (("30", low), ("200", high)):
            for run in e["rounds"][pct]:
                assert run["open_loop"]["rate"] == pytest.approx(m * int(pct) / 100)
        assert low["offered_ops_per_s"]["median"] == pytest.approx(0.3 * m, rel=0.1)
        assert low["achieved_ops_per_s"]["median"] == pytest.approx(low["offered_ops_per_s"]["median"], rel=0.05)
        # twice the maximum cannot be achieved: the schedule falls behind and the tail is the backlog
        assert high["behind"] == 2
        assert high["achieved_ops_per_s"]["median"] < 0.8 * high["offered_ops_per_s"]["median"]
        assert high["p99_seconds"]["median"] > 10 * low["p99_seconds"]["median"]
        assert e["knee_pct"] == 30
        assert low["server_cpu_us_per_op"]["median"] > 0      # the peer's CPU too, through --peer-pid
        # the medians are the rounds' figures
        p99s = sorted(r["open_loop"]["all"]["p99_seconds"] for r in e["rounds"]["200"])
        assert high["p99_seconds"]["median"] == pytest.approx(sum(p99s) / 2)
        assert set(low["ops"]) <= {"READ3", "WRITE3", "COMMIT3"} and low["ops"]["READ3"]["p50_seconds"] > 0
    assert "latency against offered load" in text and "<- knee" in text
    assert "rw256k: array knee at 30 %" in text and "rw256k: other knee at 30 %" in text
    # the shuffled orders are recorded: 2 rounds of 2 entries x 2 points
    orders = doc["curve"]["rw256k"]["orders"]
    assert len(orders) == 2 and sorted(orders[0]) == sorted(["array@30%", "array@200%", "other@30%", "other@200%"])


def _f(med, offered=None, achieved=None):
    return {"p99_seconds": {"median": med}, "offered_ops_per_s": {"median": offered},
            "achieved_ops_per_s": {"median": achieved}}


def test_knee_rule():
    # p99 within KNEE_P99_FACTOR x the lightest point's, achieved within 95 % of offered
    k = curve.KNEE_P99_FACTOR
    pts = {10: _f(0.001, 100, 100), 50: _f(0.0025, 500, 499), 90: _f(0.001 * k * 1.01, 900, 890),
           100: _f(0.002, 1000, 940)}
    assert curve.knee(pts) == 50                 # 90 %: p99 just over the factor; the knee is the point before
    pts[90] = _f(0.001 * k * 0.99, 900, 890)
    assert curve.knee(pts) == 90                 # 100 %: 94 % achieved
    assert curve.knee({10: _f(None)}) is None


@pytest.mark.parametrize("args, message", [
    (["--curve", "0,50"], "outside 1..400"),
    (["--curve", "abc"], "is not a percentage"),
    (["--curve", "50,50"], "given twice"),
    (["--curve", "50", "--max-block-size", "1M,2M"], "does not combine"),
])
def test_usage(args, message):
    r = subprocess.run([sys.executable, "-m", "loadgen", "bench", "--strategies", "array", *args],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
