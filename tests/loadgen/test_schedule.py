"""The open-loop schedule (loadgen/run/replay.py Schedule), the Recorder's three histograms, and
`loadgen run --rate` usage errors."""
from __future__ import annotations

import random
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

from loadgen.run.replay import Recorder, Schedule
from loadgen.run.stats import PhaseStats
from nfsbulk_testlib import ROOT


def test_fixed_spacing_and_the_window_count():
    s = Schedule(100.0, "fixed", random.Random(1), first=10.0)
    s.window = (10.5, 11.5)
    starts = [s.take() for _ in range(80)]         # 10.00 .. 10.79
    assert starts[:3] == pytest.approx([10.0, 10.01, 10.02])
    assert s.taken == s.scheduled == 30            # 10.50 .. 10.79 fall in the window
    assert s.finish(12.0) == pytest.approx(12.0 - 10.8)
    # the rest of the window, 10.80 .. 11.49, never started
    assert s.unsent == 70 and s.scheduled == 100


@settings(max_examples=30, deadline=None)
@given(rate=st.floats(50, 5000), seed=st.integers(0, 2 ** 31))
def test_poisson_gaps_have_the_rate(rate, seed):
    s = Schedule(rate, "poisson", random.Random(seed), first=0.0)
    n = 4000
    last = [s.take() for _ in range(n)][-1]
    # n exponential gaps of mean 1/rate: the mean is within 5 sigma (sigma = 1/sqrt(n) relative)
    assert last / n * rate == pytest.approx(1.0, abs=5 / n ** 0.5)


def test_finish_when_ahead_of_the_schedule():
    s = Schedule(10.0, "fixed", random.Random(0), first=5.0)
    s.window = (0.0, 100.0)
    assert s.finish(4.0) == 0.0 and s.unsent == 0


def test_bad_schedule():
    with pytest.raises(ValueError):
        Schedule(0.0, "fixed", random.Random(0), first=0.0)
    with pytest.raises(ValueError):
        Schedule(1.0, "bursty", random.Random(0), first=0.0)


class _Ex:
    read_bytes = write_bytes = 0


def test_recorder_keeps_service_corrected_and_lag_apart():
    rec = Recorder(_Ex(), "client0")
    rec.record("READ3", 0.5, "ok", None, service=0.001)       # open loop: waited 499 ms to start
    rec.record("READ3", 0.002, "ok", None)                    # closed loop: service only
    d, _ = rec.take()
    assert d.ops["READ3"].count == 2 and d.ops["READ3"].max == pytest.approx(0.002)
    assert d.intended["READ3"].count == 1 and d.intended["READ3"].max == pytest.approx(0.5)
    assert d.lag.count == 1 and d.lag.max == pytest.approx(0.499)
    assert d.max_latency == pytest.approx(0.5)
    merged = PhaseStats()
    merged.merge(d)
    merged.merge(d)
    assert merged.intended["READ3"].count == 2 and merged.lag.count == 2 and merged.open_loop
    assert merged.all_ops("intended").count == 2 and merged.all_ops("service").count == 4
    import pickle
    back = pickle.loads(pickle.dumps(merged))
    assert back.lag.count == 2 and back.intended["READ3"].max == pytest.approx(0.5)


@pytest.mark.parametrize("args, message", [
    (["--rate", "0"], "--rate is operations per second"),
    (["--rate", "-5"], "--rate is operations per second"),
    (["--rate", "fast"], "bad rate"),
    (["--arrival", "poisson"], "--arrival needs --rate"),
    (["--rate", "100", "--run-once"], "--rate does not apply with --run-once"),
    (["--rate", "100", "--master", "--expect-workers", "1"], "--rate is not wired through --master"),
])
def test_usage_errors(args, message):
    r = subprocess.run([sys.executable, "-m", "loadgen", "run", "nfs://127.0.0.1/x", "--no-metrics", *args],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
