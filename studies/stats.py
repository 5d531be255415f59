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
is reported as a robustness check, not used for the verdict.

Success or divergence counts of arms paired by seed are compared pair by pair: McNemar's
exact test (:func:`mcnemar_exact`), a two-sided binomial test of the discordant pairs (the
seeds where exactly one arm succeeded). Fisher's exact test treats the two arms as
independent samples, which seed-paired arms are not, so no study uses it. With n paired
seeds the exact paired p-value cannot go below 2 / 2**n, so 5 seeds never reach p < 0.05
(:func:`min_discordant`: 6 discordant pairs, all one way, are needed). Every rate gets an exact (Clopper-Pearson) interval.

A claim of "no effect" (an arm at chance) is an equivalence claim: :func:`within` supports it
only when the 95% interval lies inside a stated margin around the reference, never merely
because a test failed to reject.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

ALPHA = 0.05
VERDICTS = ("supported", "contradicted", "inconclusive")
# Differences at most this far apart (or from zero) are exact ties: float noise of identical runs,
# not a spread for a t-test to divide by.
TIE_TOL = 1e-12


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
    elif np.ptp(d) <= TIE_TOL:  # no spread: the difference is exact
        low = high = mean
        zero = abs(mean) <= TIE_TOL
        t_p = 1.0 if zero else 0.0
        w_p = 1.0 if zero else float(stats.wilcoxon(d).pvalue)
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


def mcnemar_exact(a_outcomes: Sequence[bool], b_outcomes: Sequence[bool]) -> float:
    """Two-sided exact McNemar p-value of two arms' yes/no outcomes paired unit by unit (seed): a
    binomial test, against 1/2, of the discordant pairs (exactly one arm yes); 1 when there are none."""
    a, b = _outcomes(a_outcomes, b_outcomes)
    return sign_test(a.astype(int), b.astype(int))


def sign_test(a_values: Sequence[float], b_values: Sequence[float]) -> float:
    """Two-sided exact sign test of paired values: a binomial test, against 1/2, of how many pairs have
    ``a > b`` among the pairs that differ; 1 when none differ. On yes/no outcomes it is McNemar's exact test."""
    from scipy import stats

    x, y = np.asarray(a_values, float), np.asarray(b_values, float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"a sign test needs paired values: {len(x)} against {len(y)}; pass one value per seed")
    a_more, b_more = int(np.sum(x > y)), int(np.sum(x < y))
    if a_more + b_more == 0:
        return 1.0
    return float(stats.binomtest(a_more, a_more + b_more, 0.5).pvalue)


def min_discordant(alpha: float = ALPHA) -> int:
    """The fewest discordant pairs, all one way, at which a two-sided exact paired test (McNemar, sign
    test) can reject at ``alpha``: 6 at 0.05 (2 / 2**6 = 0.031; 5 give 0.0625)."""
    k = 1
    while 2.0 * 0.5**k >= alpha:
        k += 1
    return k


def _outcomes(a_outcomes, b_outcomes) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a_outcomes, bool), np.asarray(b_outcomes, bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(
            f"paired outcomes need the same seeds: {len(a)} against {len(b)}; pass one outcome per seed, in seed order"
        )
    return a, b


@dataclass(frozen=True)
class MatchedCounts:
    """Events (solved, diverged) of two arms paired by seed, compared pair by pair with an exact test.

    With one run per arm and seed the test is McNemar's exact test; where a seed holds several runs per
    arm (one per learning rate) it is the sign test of the per-seed event counts, so that the seed, not
    the run, is the unit."""

    hypothesis: str
    what: str  # e.g. "solved", "diverged"
    a: str
    b: str
    a_count: int
    a_n: int
    b_count: int
    b_n: int
    seeds: int
    a_more: int  # seeds where a has more events than b
    b_more: int
    a_ci: tuple[float, float] | None  # exact 95% CIs, where a rate has one run per seed
    b_ci: tuple[float, float] | None
    test: str
    p: float
    verdict: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MatchedCounts:
        return cls(**{**d, "a_ci": _tuple(d["a_ci"]), "b_ci": _tuple(d["b_ci"])})

    def counts_text(self) -> str:
        def rate(k, n, ci):
            return f"{k}/{n}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")

        return (
            f"{self.a} {self.what} {rate(self.a_count, self.a_n, self.a_ci)}, {self.b} "
            f"{rate(self.b_count, self.b_n, self.b_ci)}" + (" (exact 95% CIs)" if self.a_ci else "")
        )

    def discordant_text(self) -> str:
        k = f"{self.a_more + self.b_more} of {self.seeds} paired seeds discordant"
        if self.test.startswith("McNemar"):
            return f"{k} ({self.a_more} {self.what} only with {self.a}, {self.b_more} only with {self.b})"
        return f"{k} (seeds with more runs {self.what}: {self.a_more} under {self.a}, {self.b_more} under {self.b})"

    def sentence(self) -> str:
        return (
            f"{self.hypothesis}: {self.counts_text()}; {self.discordant_text()}; {self.test} p = "
            f"{fmt_p(self.p)}: **{self.verdict}**{self.floor_note()}"
        )

    def floor_note(self) -> str:
        """Why an inconclusive result could not have been otherwise, when the design cannot reach alpha."""
        need = min_discordant()
        if self.verdict != "inconclusive" or self.seeds >= need or self.a_more + self.b_more == 0:
            return ""
        return (
            f" (the floor with {self.seeds} paired seeds is p = {2 * 0.5**self.seeds:.4g}: p < {ALPHA:g} needs at "
            f"least {need} discordant seeds, all one way)"
        )


def _tuple(v):
    return None if v is None else (float(v[0]), float(v[1]))


def matched_counts(
    a_events: Sequence,
    b_events: Sequence,
    *,
    a: str,
    b: str,
    what: str,
    runs_per_seed: int = 1,
    more_is_better: bool = True,
    hypothesis: str | None = None,
    alpha: float = ALPHA,
) -> MatchedCounts:
    """Compare two arms' events seed by seed; the hypothesis is that ``a`` is better (more ``what`` when
    ``more_is_better``, fewer otherwise). ``a_events``/``b_events`` hold one entry per seed, in seed order:
    a bool (one run per seed: McNemar's exact test) or, with ``runs_per_seed`` > 1, the seed's number of
    events over its runs (the sign test)."""
    one = runs_per_seed == 1
    if one:  # yes/no per seed: the sign test of 0/1 outcomes is McNemar's exact test
        x, y = (v.astype(float) for v in _outcomes(a_events, b_events))
    else:
        x, y = np.asarray(a_events, float), np.asarray(b_events, float)
    p, test = sign_test(x, y), "McNemar exact" if one else "sign test over seeds"
    a_more, b_more = int(np.sum(x > y)), int(np.sum(x < y))
    better = a_more > b_more if more_is_better else a_more < b_more
    verdict = ("supported" if better else "contradicted") if p < alpha else "inconclusive"
    n = len(x) * runs_per_seed
    a_k, b_k = int(round(x.sum())), int(round(y.sum()))
    return MatchedCounts(
        hypothesis or f"{a} is {what} more often than {b}",
        what,
        a,
        b,
        a_k,
        n,
        b_k,
        n,
        len(x),
        a_more,
        b_more,
        rate_ci(a_k, n) if one else None,
        rate_ci(b_k, n) if one else None,
        test,
        p,
        verdict,
    )


def rate_ci(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a rate k/n."""
    from scipy import stats

    ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def sample_std(values: Sequence[float]) -> float:
    """The seeds' standard deviation as an estimate of the recipe's (ddof 1; 0 for one seed)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def mean_ci(values: Sequence[float], alpha: float = ALPHA) -> tuple[float, float, float]:
    """(mean, low, high): a t-based 95% interval of the mean over seeds."""
    from scipy import stats

    v = np.asarray(values, float)
    mean = float(v.mean())
    if len(v) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(1 - alpha / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return mean, mean - half, mean + half


@dataclass(frozen=True)
class Within:
    """An equivalence check: is the mean's 95% interval inside ``center`` +- ``margin``?"""

    mean: float
    low: float
    high: float
    center: float
    margin: float
    verdict: str  # supported: inside; contradicted: entirely outside; inconclusive: straddles an edge

    def to_dict(self) -> dict:
        return asdict(self)


def within(values: Sequence[float], center: float, margin: float, alpha: float = ALPHA) -> Within:
    """Equivalence to ``center`` within ``margin``: supported only when the t-based 95% interval of the mean
    lies inside [center - margin, center + margin], contradicted when it lies entirely outside, inconclusive
    otherwise (a failure to reject a difference is not evidence of none)."""
    if margin <= 0:
        raise ValueError(f"an equivalence margin must be positive, got {margin}; state how close counts as equal")
    v = np.asarray(values, float)
    if len(v) == 0:
        return Within(float("nan"), float("nan"), float("nan"), center, margin, "inconclusive")
    mean, low, high = mean_ci(v, alpha)
    if len(v) < 2:
        verdict = "inconclusive"
    elif np.ptp(v) <= TIE_TOL:
        low = high = mean
        verdict = "supported" if abs(mean - center) <= margin else "contradicted"
    elif center - margin <= low and high <= center + margin:
        verdict = "supported"
    elif high < center - margin or low > center + margin:
        verdict = "contradicted"
    else:
        verdict = "inconclusive"
    return Within(mean, low, high, center, margin, verdict)


def at_chance(values: Sequence[float], chance: float, *, higher_is_better: bool, alpha: float = ALPHA) -> bool:
    """True when the runs are not significantly better than ``chance`` (one-sided t-test): such an
    arm is a negative control and compares nothing."""
    from scipy import stats

    v = np.asarray(values, float)
    if len(v) < 2 or np.ptp(v) <= TIE_TOL:  # no spread for a t-test: compare the value itself
        return not (v.mean() > chance if higher_is_better else v.mean() < chance)
    alternative = "greater" if higher_is_better else "less"
    return float(stats.ttest_1samp(v, chance, alternative=alternative).pvalue) >= alpha


def fmt_p(p: float) -> str:
    if p is None or math.isnan(p):
        return "n/a"
    return f"{p:.2g}" if p >= 1e-4 else "< 1e-4"


__all__ = [
    "ALPHA",
    "TIE_TOL",
    "VERDICTS",
    "MatchedCounts",
    "Paired",
    "Within",
    "at_chance",
    "fmt_p",
    "matched_counts",
    "mcnemar_exact",
    "mean_ci",
    "min_discordant",
    "paired",
    "rate_ci",
    "sign_test",
    "within",
]
