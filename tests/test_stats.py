"""studies.stats: the paired tests every study's verdict comes from."""

import pytest
from scipy import stats as sps

from studies import stats as S


def test_mcnemar_exact_tests_the_discordant_seeds():
    # 5/5 vs 0/5 on the same seeds: Fisher's test of two independent samples says 0.0079, but the
    # seeds pair the arms and 5 discordant seeds give at best 2 / 2**5.
    assert sps.fisher_exact([[5, 0], [0, 5]]).pvalue < 0.01
    assert S.mcnemar_exact([True] * 5, [False] * 5) == pytest.approx(0.0625)
    assert S.mcnemar_exact([False] * 5, [True] * 5) == pytest.approx(0.0625)
    # Concordant seeds carry no information: 3 one way and 1 the other is binomtest(3, 4).
    a = [True, False, True, True, False, True]
    b = [False, True, False, False, False, True]
    assert S.mcnemar_exact(a, b) == pytest.approx(sps.binomtest(3, 4).pvalue)
    assert S.mcnemar_exact([True, False], [True, False]) == 1.0  # no discordant pair
    with pytest.raises(ValueError, match="same seeds"):
        S.mcnemar_exact([True] * 5, [False] * 4)


def test_five_paired_seeds_cannot_reach_five_percent():
    assert S.min_discordant() == 6
    assert S.mcnemar_exact([True] * 6, [False] * 6) == pytest.approx(2 / 2**6)
    assert S.sign_test([3, 1, 2, 0, 1], [0, 0, 0, 0, 1]) == pytest.approx(sps.binomtest(3, 3).pvalue)  # ties drop out


def test_matched_counts_verdicts_and_sentence():
    five = S.matched_counts([True] * 5, [False] * 5, a="chrono", b="plain", what="solved")
    assert (five.test, five.seeds, five.a_more, five.b_more) == ("McNemar exact", 5, 5, 0)
    assert five.verdict == "inconclusive" and five.p == pytest.approx(0.0625)
    assert "at least 6 discordant seeds" in five.sentence()
    assert S.MatchedCounts.from_dict(five.to_dict()) == five
    six = S.matched_counts([True] * 6, [False] * 6, a="chrono", b="plain", what="solved")
    assert six.verdict == "supported" and "discordant seeds" not in six.sentence().split("**")[-1]
    # Fewer events is better for divergence; more of them in arm a contradicts.
    worse = S.matched_counts([True] * 6, [False] * 6, a="clipped", b="unclipped", what="diverged", more_is_better=False)
    assert worse.verdict == "contradicted"
    # Several runs per seed (one per learning rate): the seed's count of events, sign-tested over seeds.
    pooled = S.matched_counts(
        [0, 0, 0, 0, 0],
        [1, 0, 1, 1, 2],
        a="clipped",
        b="unclipped",
        what="diverged",
        runs_per_seed=3,
        more_is_better=False,
    )
    assert (pooled.test, pooled.a_count, pooled.a_n, pooled.b_count, pooled.b_n) == (
        "sign test over seeds",
        0,
        15,
        5,
        15,
    )
    assert (pooled.a_more, pooled.b_more, pooled.a_ci) == (0, 4, None)
    assert pooled.p == pytest.approx(0.125) and pooled.verdict == "inconclusive"


def test_paired_treats_float_noise_as_spread_not_as_an_exact_difference():
    d = [3e-9, -2e-9, 4e-9, 1e-9, 0.0]
    p = S.paired(d, [0.0] * 5, a="a", b="b", metric="m", higher_is_better=True)
    assert p.verdict == "inconclusive" and p.t_p > 0.05
    exact = S.paired([1.5] * 5, [1.0] * 5, a="a", b="b", metric="m", higher_is_better=True)
    assert (exact.t_p, exact.verdict) == (0.0, "supported")
    tie = S.paired([1.0 + 1e-13] * 5, [1.0] * 5, a="a", b="b", metric="m", higher_is_better=True)
    assert (tie.t_p, tie.wilcoxon_p, tie.verdict) == (1.0, 1.0, "inconclusive")


def test_at_chance_uses_the_same_tie_tolerance():
    # Nanoscale noise around chance is not "above chance" just because allclose calls it constant.
    assert S.at_chance([0.5 + 3e-9, 0.5 - 2e-9, 0.5 + 4e-9, 0.5 + 1e-9, 0.5], 0.5, higher_is_better=True)
    assert not S.at_chance([1.0] * 5, 0.5, higher_is_better=True)


def test_within_is_an_equivalence_check():
    inside = S.within([0.499, 0.498, 0.500, 0.500, 0.499], 0.5, 0.02)
    assert inside.verdict == "supported" and 0.48 <= inside.low <= inside.high <= 0.52
    # Not significantly above chance, but far too wide to show it is at chance.
    wide = S.within([0.45, 0.55, 0.50, 0.47, 0.53], 0.5, 0.02)
    assert wide.verdict == "inconclusive"
    assert S.at_chance([0.45, 0.55, 0.50, 0.47, 0.53], 0.5, higher_is_better=True)
    assert S.within([0.60, 0.61, 0.62, 0.60, 0.61], 0.5, 0.02).verdict == "contradicted"
    assert S.within([0.5] * 5, 0.5, 0.02).verdict == "supported"
    with pytest.raises(ValueError, match="margin"):
        S.within([0.5] * 5, 0.5, 0.0)
