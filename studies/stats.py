"""The statistics every study's verdict comes from.

Arms are paired by seed (the same data order and initialization seed in every arm), so a
comparison of two arms is a paired one: the per-seed differences, their mean with a
t-based 95% confidence interval, the paired t-test, and Wilcoxon's signed-rank test beside
it. The verdict is computed, never written: a hypothesis "arm A is better than arm B on
this metric" is

* ``supported`` when the paired t-test rejects equality (p < alpha) and the mean
  difference lies on the hypothesis' side;
* ``contradicted`` when it rejects equality on the other side;
* ``inconclusive`` otherwise.

With 5 seeds the exact two-sided Wilcoxon p-value cannot go below 1/16 = 0.0625, so it
is reported as a robustness check, not used for the verdict. Success or divergence
counts are compared with Fisher's exact test, with exact (Clopper-Pearson) intervals on
each rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

ALPHA = 0.05
VERDICTS = ("supported", "contradicted", "inconclusive")


@dataclass(frozen=True)
class Paired:
    """Arm ``a`` against arm ``b`` on one metric, paired by seed."""

    hypothesis: str
    metric: str
    a: str
    b: str
    a_values: list[float]
    b_values: list[float]
    higher_is_better: bool
    mean_diff: float  # mean of a - b
    ci_low: float
    ci_high: float
    t_p: float
    wilcoxon_p: float
    verdict: str

    @property
    def n(self) -> int:
        return len(self.a_values)

    def to_dict(self) -> dict:
        return asdict(self)

    def sentence(self, digits: int = 3) -> str:
        """One line for a report: the hypothesis, the numbers and the verdict."""
        f = f"{{:.{digits}f}}"
        return (
            f"{self.hypothesis}: {self.a} {f.format(np.mean(self.a_values))} vs {self.b} "
            f"{f.format(np.mean(self.b_values))} {self.metric}; difference {f.format(self.mean_diff)} "
            f"[{f.format(self.ci_low)}, {f.format(self.ci_high)}] (95% CI, {self.n} paired seeds), "
            f"paired t p = {fmt_p(self.t_p)}, Wilcoxon p = {fmt_p(self.wilcoxon_p)}: **{self.verdict}**"
        )


def paired(
    a_values: Sequence[float],
    b_values: Sequence[float],
    *,
    a: str,
    b: str,
    metric: str,
    higher_is_better: bool,
    hypothesis: str | None = None,
    alpha: float = ALPHA,
) -> Paired:
    """Compare ``a`` with ``b`` seed by seed; the hypothesis is that ``a`` is better."""
    from scipy import stats

    x, y = np.asarray(a_values, float), np.asarray(b_values, float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired values need the same seeds: {len(x)} values of {a}, {len(y)} of {b}")
    d = x - y
    n = len(d)
    mean = float(d.mean()) if n else float("nan")
    if n < 2:
        low = high = t_p = w_p = float("nan")
    elif np.allclose(d, d[0]):  # no spread: the difference is exact
        low = high = mean
        t_p = 1.0 if math.isclose(mean, 0.0, abs_tol=1e-12) else 0.0
        w_p = float(stats.wilcoxon(d).pvalue) if not np.allclose(d, 0) else 1.0
    else:
        half = float(stats.t.ppf(1 - alpha / 2, n - 1) * d.std(ddof=1) / math.sqrt(n))
        low, high = mean - half, mean + half
        t_p = float(stats.ttest_rel(x, y).pvalue)
        w_p = float(stats.wilcoxon(x, y).pvalue) if np.any(d != 0) else 1.0
    better = mean > 0 if higher_is_better else mean < 0
    if not math.isnan(t_p) and t_p < alpha:
        verdict = "supported" if better else "contradicted"
    else:
        verdict = "inconclusive"
    return Paired(
        hypothesis or f"{a} is better than {b}",
        metric,
        a,
        b,
        x.tolist(),
        y.tolist(),
        higher_is_better,
        mean,
        low,
        high,
        t_p,
        w_p,
        verdict,
    )


@dataclass(frozen=True)
class Counts:
    """Success (or divergence) counts of two arms, Fisher's exact test."""

    hypothesis: str
    what: str  # e.g. "solved", "diverged"
    a: str
    b: str
    a_count: int
    a_n: int
    b_count: int
    b_n: int
    a_ci: tuple[float, float]
    b_ci: tuple[float, float]
    p: float
    verdict: str

    def to_dict(self) -> dict:
        return asdict(self)

    def sentence(self) -> str:
        return (
            f"{self.hypothesis}: {self.a} {self.what} {self.a_count}/{self.a_n} "
            f"[{self.a_ci[0]:.2f}, {self.a_ci[1]:.2f}], {self.b} {self.b_count}/{self.b_n} "
            f"[{self.b_ci[0]:.2f}, {self.b_ci[1]:.2f}] (exact 95% CIs); Fisher p = {fmt_p(self.p)}: "
            f"**{self.verdict}**"
        )


def counts(
    a_count: int,
    a_n: int,
    b_count: int,
    b_n: int,
    *,
    a: str,
    b: str,
    what: str,
    more_is_better: bool = True,
    hypothesis: str | None = None,
    alpha: float = ALPHA,
) -> Counts:
    """Compare the rates ``a_count/a_n`` and ``b_count/b_n``; the hypothesis is that ``a`` is better
    (more ``what`` when ``more_is_better``, fewer otherwise)."""
    from scipy import stats

    p = float(stats.fisher_exact([[a_count, a_n - a_count], [b_count, b_n - b_count]]).pvalue)
    a_rate, b_rate = a_count / a_n, b_count / b_n
    better = a_rate > b_rate if more_is_better else a_rate < b_rate
    verdict = ("supported" if better else "contradicted") if p < alpha else "inconclusive"
    return Counts(
        hypothesis or f"{a} is {what} more often than {b}",
        what,
        a,
        b,
        a_count,
        a_n,
        b_count,
        b_n,
        rate_ci(a_count, a_n),
        rate_ci(b_count, b_n),
        p,
        verdict,
    )


def rate_ci(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a rate k/n."""
    from scipy import stats

    ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def mean_ci(values: Sequence[float], alpha: float = ALPHA) -> tuple[float, float, float]:
    """(mean, low, high): a t-based 95% interval of the mean over seeds."""
    from scipy import stats

    v = np.asarray(values, float)
    mean = float(v.mean())
    if len(v) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(1 - alpha / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return mean, mean - half, mean + half


def at_chance(values: Sequence[float], chance: float, *, higher_is_better: bool, alpha: float = ALPHA) -> bool:
    """True when the runs are not significantly better than ``chance`` (one-sided t-test): such an
    arm is a negative control and compares nothing."""
    from scipy import stats

    v = np.asarray(values, float)
    if len(v) < 2 or np.allclose(v, v[0]):
        return not (v.mean() > chance if higher_is_better else v.mean() < chance)
    alternative = "greater" if higher_is_better else "less"
    return float(stats.ttest_1samp(v, chance, alternative=alternative).pvalue) >= alpha


def fmt_p(p: float) -> str:
    if p is None or math.isnan(p):
        return "n/a"
    return f"{p:.2g}" if p >= 1e-4 else "< 1e-4"


__all__ = ["ALPHA", "Counts", "Paired", "VERDICTS", "at_chance", "counts", "fmt_p", "mean_ci", "paired", "rate_ci"]
