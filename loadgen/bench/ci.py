"""The statistics of `loadgen bench` and `loadgen compare`: spreads, ratios, their 95 % CIs and verdicts.

Method (named in README, "Reading the verdicts"):

* A figure of one strategy over rounds: the point figure is the **median** of the rounds; its
  95 % CI is a **Student t-interval on the logarithms** of the rounds (so the interval is for the
  geometric mean, multiplicative and never below zero).
* A strategy against the baseline: every round runs both, so each round gives one ratio
  x_strategy / x_baseline, and drift of the shared machine between rounds cancels in it. The
  ratio is exp(mean of the log ratios) and its 95 % CI **exp(mean +- t(0.975, n-1) * s / sqrt(n))**,
  a paired t-interval on log ratios. With one round there is no interval.
* Two result files (`compare`): the rounds are not paired, so the CI of the ratio of geometric
  means is a **Welch t-interval** on the difference of mean logs.
* Verdict: the CI lies wholly above or below 1 -> "faster" or "slower" (for costs such as us per
  call or CPU per op a ratio below 1 is faster); otherwise "no significant difference".

Pure functions over lists of floats; no I/O, no threads. NaN and non-positive values are dropped
(a log needs a positive figure). The t quantiles are a table (df 1..30) and a series beyond.
"""

from __future__ import annotations

import math
import random
import statistics

__all__ = ["t975", "summary", "paired_ratio", "unpaired_ratio", "verdict", "half_width_pct", "round_order",
           "FASTER", "SLOWER", "SAME", "UNDETERMINED"]

FASTER, SLOWER, SAME, UNDETERMINED = "faster", "slower", "no significant difference", "undetermined (1 round)"

#: t(0.975, df) for df = 1..30 (the two-sided 95 % quantile of Student's t)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def t975(df: float) -> float:
    """Two-sided 95 % quantile of Student's t with `df` degrees of freedom (df may be fractional: Welch)."""
    if df < 1:
        return float("inf")
    if df <= 30:
        lo = int(math.floor(df))
        if lo == df or lo >= 30:
            return _T975[lo - 1]
        a, b = _T975[lo - 1], _T975[lo]          # linear in 1/df between the table's rows
        w = (1 / lo - 1 / df) / (1 / lo - 1 / (lo + 1))
        return a + (b - a) * w
    z = 1.959964                                  # Cornish-Fisher expansion in 1/df
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df * df)


def _logs(values):
    return [math.log(v) for v in values if v == v and v is not None and v > 0]


def summary(values) -> dict:
    """{"median", "ci95": [lo, hi] or None, "n"} of one figure over rounds (see the module's method)."""
    vals = [v for v in values if v is not None and v == v]
    if not vals:
        return {"median": None, "ci95": None, "n": 0}
    out = {"median": statistics.median(vals), "ci95": None, "n": len(vals)}
    logs = _logs(vals)
    if len(logs) >= 2:
        m, s = statistics.fmean(logs), statistics.stdev(logs)
        h = t975(len(logs) - 1) * s / math.sqrt(len(logs))
        out["ci95"] = [math.exp(m - h), math.exp(m + h)]
    return out


def paired_ratio(pairs) -> dict:
    """{"ratio", "ci95", "n"} of x / base over rounds given as [(x, base), ...] (paired t on log ratios)."""
    d = [math.log(x / b) for x, b in pairs
         if x is not None and b is not None and x == x and b == b and x > 0 and b > 0]
    if not d:
        return {"ratio": None, "ci95": None, "n": 0}
    m = statistics.fmean(d)
    out = {"ratio": math.exp(m), "ci95": None, "n": len(d)}
    if len(d) >= 2:
        h = t975(len(d) - 1) * statistics.stdev(d) / math.sqrt(len(d))
        out["ci95"] = [math.exp(m - h), math.exp(m + h)]
    return out


def unpaired_ratio(xs, bases) -> dict:
    """{"ratio", "ci95", "n"} of geomean(xs) / geomean(bases), independent samples (Welch t on logs)."""
    a, b = _logs(xs), _logs(bases)
    if not a or not b:
        return {"ratio": None, "ci95": None, "n": min(len(a), len(b))}
    m = statistics.fmean(a) - statistics.fmean(b)
    out = {"ratio": math.exp(m), "ci95": None, "n": min(len(a), len(b))}
    if len(a) >= 2 and len(b) >= 2:
        va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
        se = math.sqrt(va + vb)
        if se == 0:
            out["ci95"] = [out["ratio"], out["ratio"]]
        else:
            df = (va + vb) ** 2 / (va * va / (len(a) - 1) + vb * vb / (len(b) - 1))
            h = t975(df) * se
            out["ci95"] = [math.exp(m - h), math.exp(m + h)]
    return out


def verdict(ci, higher_is_better: bool = True) -> str:
    """faster / slower / no significant difference, from a ratio's CI (None: one round, undetermined)."""
    if ci is None:
        return UNDETERMINED
    lo, hi = ci
    if lo > 1.0:
        return FASTER if higher_is_better else SLOWER
    if hi < 1.0:
        return SLOWER if higher_is_better else FASTER
    return SAME


def half_width_pct(ratio, ci) -> float:
    """The CI's half-width in percent of the ratio (the wider side; inf when there is no CI)."""
    if ratio is None or ci is None:
        return float("inf")
    return max(ci[1] / ratio - 1.0, 1.0 - ci[0] / ratio) * 100.0


def round_order(names, seed: int, rnd: int, salt: str = "") -> list:
    """The order of round `rnd` (0-based): a shuffle drawn from (seed, salt, round) alone (bench salts
    with the profile), so every round's order is reproducible from the seed whatever the rounds."""
    order = list(names)
    random.Random("nfsbulk-bench/%d/%s/%d" % (seed, salt, rnd)).shuffle(order)
    return order
