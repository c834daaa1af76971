"""loadgen/bench/ci.py on synthetic rounds with known answers, and the shuffled round orders.

Rounds are drawn as a bench makes them: each round shares a drift factor (the shared machine
getting slower or faster) and each run adds its own lognormal noise.
"""
import random

import pytest

from loadgen.bench import ci


def _rounds(rnd, n, true_ratio, noise=0.05, drift=0.08):
    """[(x, base)] for n rounds: x's true level is true_ratio times base's."""
    out = []
    for _ in range(n):
        d = rnd.lognormvariate(0, drift)
        out.append((1000 * true_ratio * d * rnd.lognormvariate(0, noise), 1000 * d * rnd.lognormvariate(0, noise)))
    return out


def test_t_quantiles():
    assert ci.t975(1) == pytest.approx(12.706)
    assert ci.t975(4) == pytest.approx(2.776)
    assert ci.t975(30) == pytest.approx(2.042)
    assert ci.t975(1000) == pytest.approx(1.962, abs=2e-3)
    assert ci.t975(4) > ci.t975(4.5) > ci.t975(5)            # Welch's fractional df in between
    assert ci.t975(0.5) == float("inf")


def test_a_real_ten_percent_difference_is_found_as_faster():
    rnd = random.Random(10)
    found, covered = 0, 0
    trials = 300
    for _ in range(trials):
        pr = ci.paired_ratio(_rounds(rnd, 16, 1.10))
        found += ci.verdict(pr["ci95"], higher_is_better=True) == ci.FASTER
        covered += pr["ci95"][0] <= 1.10 <= pr["ci95"][1]
    assert found / trials >= 0.97                            # 16 rounds are enough at 5 % noise per run
    assert covered / trials >= 0.92                          # and the interval holds the true ratio
    # for a cost (us per call) a 10 % higher figure is slower
    pr = ci.paired_ratio(_rounds(random.Random(3), 8, 1.10))
    assert ci.verdict(pr["ci95"], higher_is_better=False) == ci.SLOWER


def test_one_round_gives_no_verdict():
    pr = ci.paired_ratio([(110.0, 100.0)])
    assert pr["ratio"] == pytest.approx(1.1) and pr["ci95"] is None
    assert ci.verdict(pr["ci95"]) == ci.UNDETERMINED


def test_identical_distributions_give_no_significant_difference():
    """Identical distributions: "no significant difference" in at least 95 % of 4000 seeded trials
    of five rounds. The interval's level is nominal (exact for lognormal runs), so the share over
    trials is 95 % give or take binomial noise (one standard error is 0.34 %); this seed, chosen
    before the result was seen, gives 95.6 %. A z-interval in place of t (too narrow with five
    rounds) gives about 88 % here and fails; the upper bound catches a needlessly wide one."""
    rnd = random.Random(2026)
    trials, same = 4000, 0
    for _ in range(trials):
        pr = ci.paired_ratio(_rounds(rnd, 5, 1.0))
        same += ci.verdict(pr["ci95"]) == ci.SAME
    assert 0.95 <= same / trials <= 0.985, same / trials


def test_unpaired_ratio_of_two_files():
    rnd = random.Random(5)
    a = [1000 * rnd.lognormvariate(0, 0.05) for _ in range(6)]
    b = [1200 * rnd.lognormvariate(0, 0.05) for _ in range(6)]
    r = ci.unpaired_ratio(b, a)
    assert r["ratio"] == pytest.approx(1.2, rel=0.08)
    assert ci.verdict(r["ci95"]) == ci.FASTER
    assert ci.verdict(ci.unpaired_ratio(a, a)["ci95"]) == ci.SAME


def test_summary_median_and_ci():
    s = ci.summary([10.0, 12.0, 11.0, float("nan")])
    assert s["median"] == 11.0 and s["n"] == 3
    assert s["ci95"][0] < 11.0 < s["ci95"][1]
    assert ci.summary([5.0])["ci95"] is None
    assert ci.summary([])["median"] is None


def test_half_width():
    assert ci.half_width_pct(1.0, [0.9, 1.05]) == pytest.approx(10.0)
    assert ci.half_width_pct(1.0, None) == float("inf")


def test_round_orders_are_shuffled_and_reproducible_from_the_seed():
    names = ["single", "list", "array", "range", "single-py", "ganesha"]
    a = [ci.round_order(names, 42, r, "rw256k") for r in range(20)]
    assert a == [ci.round_order(names, 42, r, "rw256k") for r in range(20)]
    assert all(sorted(o) == sorted(names) for o in a)
    assert len({tuple(o) for o in a}) > 10                    # really shuffled, round by round
    assert a != [ci.round_order(names, 43, r, "rw256k") for r in range(20)]
    assert a != [ci.round_order(names, 42, r, "dbench") for r in range(20)]
    # a round's order does not depend on how many rounds there are (--target-ci adds rounds)
    assert ci.round_order(names, 42, 7, "rw256k") == a[7]


def _fake_settings(**kw):
    s = {"profiles": ["rw256k", "dbench"], "strategies": ["single", "array"], "peers": {}, "peer_pids": {},
         "baseline": "single", "seed": 9, "rounds": 2, "target_ci_pct": None, "max_rounds": 2,
         "load": {"time": 1.0, "warmup": 0.0}}
    s.update(kw)
    return s


def _fake_runs(monkeypatch, noise):
    """bench.run_rounds with strategy_run replaced by synthetic figures (array 10 % cheaper per call)."""
    from loadgen.bench import bench
    rnd = random.Random(1)
    calls = []

    def fake(name, root, opts, tell):
        calls.append((opts["profile"], name))
        f = rnd.lognormvariate(0, noise)
        return {"ops_per_s": 1000.0 * f, "server_cpu_us_per_op": 50.0 * f,
                "svc_alloc_arg_us_per_call": (0.9 if name == "array" else 1.0) * f}
    monkeypatch.setattr(bench, "strategy_run", fake)
    return bench, calls


def test_target_ci_adds_rounds_until_the_cap(monkeypatch, capsys):
    bench, calls = _fake_runs(monkeypatch, noise=0.2)
    settings = _fake_settings(target_ci_pct=0.5, max_rounds=4)
    state = {"rw256k": {}, "dbench": {}}
    bench.run_rounds(settings, {}, "/nonexistent", bench.Progress(settings), state)
    assert len(state["rw256k"]["orders"]) == 4 and state["rw256k"]["stop_reason"].startswith("max-rounds reached")
    # the profiles alternate run by run, each in its own order from the seed
    assert [p for p, _ in calls[:4]] == ["rw256k", "dbench", "rw256k", "dbench"]
    for prof in ("rw256k", "dbench"):
        assert [n for p, n in calls if p == prof] == [n for r in range(4) for n in ci.round_order(["single", "array"], 9, r, prof)]
    assert "about" in capsys.readouterr().err


def test_target_ci_stops_when_reached(monkeypatch):
    bench, _ = _fake_runs(monkeypatch, noise=0.0001)
    settings = _fake_settings(target_ci_pct=5.0, max_rounds=10)
    state = {"rw256k": {}, "dbench": {}}
    bench.run_rounds(settings, {}, "/nonexistent", bench.Progress(settings), state)
    assert len(state["dbench"]["orders"]) == 2 and state["dbench"]["stop_reason"].startswith("target-ci reached")


def test_eta_counts_every_planned_run_and_learns_each_profile():
    """Progress.left(): planned runs x expected length; before any run the window plus the first
    guess of overhead, then the measured runs of the profile, or the other profiles' overhead."""
    from loadgen.bench import bench
    settings = _fake_settings(rounds=3, load={"time": 5.0, "warmup": 2.0})   # 2 profiles x 2 entries x 3
    prog = bench.Progress(settings)
    guess = bench.Progress.FIRST_GUESS_OVERHEAD
    assert prog.left() == pytest.approx(12 * (7.0 + guess))
    prog.durations["rw256k"].append(9.0)                    # 2 s of overhead measured on rw256k
    assert prog.left() == pytest.approx(5 * 9.0 + 6 * (7.0 + 2.0))
    prog.durations["dbench"].append(8.0)
    prog.durations["rw256k"].append(11.0)                   # each profile now by its own mean
    assert prog.left() == pytest.approx(4 * 10.0 + 5 * 8.0)
    for prof in ("rw256k", "dbench"):
        prog.durations[prof].extend([8.0] * 6)
    assert prog.left() == 0                                 # --target-ci's extra rounds are not planned
