"""The decision rule (core/decision.py): the bootstrap against independent oracles, its coverage on simulated
outcomes with a known true difference, the verdict's boundaries and the fixed-sequence rank choice."""
import math

import numpy as np
import pytest
from scipy import stats

from lowrank_bench.core.decision import (PairedDifference, RankChoice, choose_rank, data_to_decide, expected_half_width,
                           paired_difference, verdict)
from lowrank_bench.core.io import UserError

Z95 = stats.norm.ppf(0.95)


def outcomes(n, both_right, only_reference, only_variant, seed=0):
    """One seed's (variant, reference) rows over n examples with exact discordant counts, in shuffled order."""
    v = np.zeros(n, bool)
    r = np.zeros(n, bool)
    v[:both_right] = r[:both_right] = True
    r[both_right:both_right + only_reference] = True
    v[both_right + only_reference:both_right + only_reference + only_variant] = True
    order = np.random.default_rng(seed).permutation(n)
    return v[order][None, :], r[order][None, :]


# ---- the bootstrap against oracles --------------------------------------------------------------------------

def test_one_seed_large_n_matches_the_normal_approximation_of_a_paired_difference():
    """McNemar's variance of a paired difference of proportions: ((b + c) / N − ((b − c) / N)²) / N."""
    n, b, c = 20_000, 300, 500  # b: only the variant right, c: only the reference right
    v, r = outcomes(n, 18_000, c, b)
    diff = paired_difference(v, r)
    assert diff.mean == pytest.approx((b - c) / n)
    half_width = Z95 * math.sqrt(((b + c) / n - ((b - c) / n) ** 2) / n)
    assert diff.mean - diff.lower == pytest.approx(half_width, rel=0.10)
    assert diff.upper - diff.mean == pytest.approx(half_width, rel=0.10)
    assert (diff.n_seeds, diff.n_examples, diff.resamples, diff.confidence) == (1, n, 2000, 0.95)


def test_one_seed_matches_scipy_bootstrap_over_examples():
    v, r = outcomes(3_000, 2_700, 90, 60, seed=3)
    d = v[0].astype(float) - r[0]
    oracle = stats.bootstrap((d,), np.mean, confidence_level=0.90, method="percentile", n_resamples=5_000,
                             random_state=np.random.default_rng(1)).confidence_interval
    diff = paired_difference(v, r)
    assert diff.lower == pytest.approx(oracle.low, abs=0.10 * (diff.mean - oracle.low))
    assert diff.upper == pytest.approx(oracle.high, abs=0.10 * (oracle.high - diff.mean))


def test_expected_half_width_plans_what_the_bootstrap_then_delivers():
    v, r = outcomes(8_000, 7_200, 200, 120, seed=5)
    diff = paired_difference(v, r)
    planned = expected_half_width(320 / 8_000, 8_000, difference=-80 / 8_000)
    assert diff.mean - diff.lower == pytest.approx(planned, rel=0.10)
    assert expected_half_width(0.04, 1_000, seed_sd=0.01, n_seeds=4) == pytest.approx(
        Z95 * math.sqrt(0.04 / 1_000 + 0.01 ** 2 / 4))


def test_tied_seeds_and_full_agreement_never_give_a_zero_width_interval():
    v, r = outcomes(200, 150, 4, 4, seed=1)
    one = paired_difference(v, r)
    twice = paired_difference(np.vstack([v, v]), np.vstack([r, r]))  # two seeds that agree on every example
    assert twice.mean == 0 and twice.lower < -0.005 and twice.upper > 0.005
    assert twice.upper - twice.lower == pytest.approx(one.upper - one.lower, rel=0.15)
    same = np.ones((2, 200), bool)
    agree = paired_difference(same, same)  # the variant never disagrees: still not a certainty about the future
    assert agree.mean == 0 and agree.lower < 0 < agree.upper


def test_seeds_that_disagree_widen_the_interval():
    v0, r0 = outcomes(2_000, 1_800, 30, 30, seed=1)
    v1, r1 = outcomes(2_000, 1_800, 90, 10, seed=2)  # seed 1's variant is 4 points worse than seed 0's
    close = paired_difference(np.vstack([v0, v0]), np.vstack([r0, r0]))
    apart = paired_difference(np.vstack([v0, v1]), np.vstack([r0, r1]))
    assert apart.mean == pytest.approx(-0.02)
    assert apart.mean - apart.lower > 3 * (close.mean - close.lower)
    assert apart.df < 3 < close.df  # the seeds, not the examples, set the width


def test_deterministic_for_a_seed():
    v, r = outcomes(5_000, 4_000, 200, 100)
    assert paired_difference(v, r) == paired_difference(v, r)
    assert len({paired_difference(v, r, seed=s).lower for s in range(10)}) > 1  # the seed is used


@pytest.mark.parametrize("variant, reference, message", [
    (np.ones((2, 10), bool), np.ones((2, 11), bool), "same seeds on the same examples"),
    (np.ones((2, 10), int), np.ones((2, 10), bool), "boolean"),
    (np.ones(10, bool), np.ones(10, bool), "shape"),
    (np.ones((0, 10), bool), np.ones((0, 10), bool), "shape"),
    (np.ones((40, 10), bool), np.ones((40, 10), bool), "at most 39 seeds"),
])
def test_bad_outcomes_are_refused(variant, reference, message):
    with pytest.raises(UserError, match=message):
        paired_difference(variant, reference)


def test_too_few_resamples_and_bad_confidence_are_refused():
    v, r = outcomes(100, 90, 2, 2)
    with pytest.raises(UserError, match="at least 2000"):
        paired_difference(v, r, resamples=500)
    with pytest.raises(UserError, match="confidence"):
        paired_difference(v, r, confidence=95)


# ---- coverage on simulated experiments ----------------------------------------------------------------------

ACCURACY, FLIP = 0.95, 0.03


def simulate(rng, n_seeds, n_examples, seed_sd):
    """One experiment: the reference gets example i right with probability p_i ~ Beta (mean 95 %), shared by the
    seeds; the variant flips the reference's answer with probability logistic(logit(3 %) + a_s + g_i), a seed
    effect a_s ~ N(0, seed_sd) and an example effect g_i ~ N(0, 1), both on the logit scale."""
    p = rng.beta(ACCURACY * 5, (1 - ACCURACY) * 5, size=n_examples)
    g = rng.normal(0, 1, size=n_examples)
    a = rng.normal(0, seed_sd, size=n_seeds)
    reference = rng.random((n_seeds, n_examples)) < p
    flip = rng.random((n_seeds, n_examples)) < 1 / (1 + np.exp(-(math.log(FLIP / (1 - FLIP)) + a[:, None] + g)))
    return reference ^ flip, reference


def true_difference(seed_sd):
    """E[flip] (1 − 2 E[p]): a + g ~ N(0, seed_sd² + 1), integrated by Gauss–Hermite quadrature."""
    x, w = np.polynomial.hermite_e.hermegauss(80)
    logit = math.log(FLIP / (1 - FLIP)) + math.hypot(seed_sd, 1) * x
    return float(np.sum(w / (1 + np.exp(-logit))) / w.sum() * (1 - 2 * ACCURACY))


@pytest.mark.parametrize("n_seeds, n_examples, seed_sd", [
    (1, 200, 0.0),    # smoke-sized validation, one seed: sparse disagreement (about 6 examples)
    (2, 200, 0.5),    # a seed effect of 1.3 example standard errors
    (2, 2000, 0.25),  # quick-sized: 2.0 example standard errors
    (3, 2000, 0.25),
])
def test_the_one_sided_95_percent_bounds_cover_a_known_difference(n_seeds, n_examples, seed_sd):
    truth = true_difference(seed_sd)
    rng = np.random.default_rng(20_240_024)
    runs = 600
    low = high = 0
    for i in range(runs):
        diff = paired_difference(*simulate(rng, n_seeds, n_examples, seed_sd), seed=i)
        low += diff.lower <= truth
        high += diff.upper >= truth
    coverage = f"lower bound covers {low / runs:.3f}, upper bound {high / runs:.3f}"
    assert 0.93 <= low / runs <= 0.97, coverage
    assert 0.93 <= high / runs, coverage  # the upper bound errs on the safe side (skewed, sparse disagreement)


# ---- verdict ------------------------------------------------------------------------------------------------

def diff(lower, upper, mean=None):
    mean = (lower + upper) / 2 if mean is None else mean
    return PairedDifference(mean=mean, lower=lower, upper=upper, confidence=0.95, n_seeds=2, n_examples=1000,
                            resamples=2000, df=100.0)


@pytest.mark.parametrize("lower, upper, expected", [
    (-0.004, 0.01, "within"),
    (-0.005, 0.01, "undecided"),   # a lower bound exactly on −δ is not above it
    (-0.0049999, 0.01, "within"),
    (-0.02, -0.006, "worse"),
    (-0.02, -0.005, "undecided"),  # an upper bound exactly on −δ is not below it
    (-0.02, 0.01, "undecided"),
    (0.001, 0.02, "within"),
])
def test_verdict_boundaries(lower, upper, expected):
    assert verdict(diff(lower, upper), 0.005) == expected


def test_zero_margin_demands_no_loss_at_all():
    assert verdict(diff(-0.0001, 0.01), 0) == "undecided"
    assert verdict(diff(0.0001, 0.01), 0) == "within"


@pytest.mark.parametrize("margin", [-0.005, math.nan, math.inf, "0.5", True])
def test_bad_margin_is_refused(margin):
    with pytest.raises(UserError, match="margin"):
        verdict(diff(-0.01, 0.01), margin)
    with pytest.raises(UserError, match="margin"):
        choose_rank([], margin)


# ---- fixed-sequence rank choice -----------------------------------------------------------------------------

WITHIN, UNDECIDED, WORSE = diff(-0.002, 0.004), diff(-0.012, 0.002), diff(-0.05, -0.02)


def test_a_grid_that_passes_everywhere_chooses_its_smallest_rank_and_says_the_grid_ran_out():
    choice = choose_rank([(4, WITHIN), (64, WITHIN), (16, WITHIN)], 0.005)
    assert choice == RankChoice(rank=4, stopped_at=None, stop_verdict=None,
                                tested=((64, "within"), (16, "within"), (4, "within")))


def test_a_grid_that_fails_at_the_top_chooses_nothing():
    choice = choose_rank([(64, WORSE), (16, WITHIN), (4, WITHIN)], 0.005)
    assert choice == RankChoice(rank=None, stopped_at=64, stop_verdict="worse", tested=((64, "worse"),))


def test_an_undecided_rank_stops_the_walk_even_with_passing_ranks_below():
    choice = choose_rank([(64, WITHIN), (32, WITHIN), (16, UNDECIDED), (8, WITHIN), (4, WORSE)], 0.005)
    assert choice == RankChoice(rank=32, stopped_at=16, stop_verdict="undecided",
                                tested=((64, "within"), (32, "within"), (16, "undecided")))


def test_duplicate_ranks_and_empty_grids():
    with pytest.raises(UserError, match="once"):
        choose_rank([(8, WITHIN), (8, WORSE)], 0.005)
    assert choose_rank([], 0.005) == RankChoice(rank=None, stopped_at=None, stop_verdict=None, tested=())


# ---- what would decide it -----------------------------------------------------------------------------------

def test_data_to_decide_scales_the_half_width_to_the_gap():
    undecided = diff(-0.012, 0.002, mean=-0.002)  # half-width 1 point, 0.3 points above −δ
    assert data_to_decide(undecided, 0.005) == pytest.approx((0.010 / 0.003) ** 2)
    leaning_worse = diff(-0.02, -0.004, mean=-0.01)  # upper half-width 0.6 points, 0.5 points below −δ
    assert data_to_decide(leaning_worse, 0.005) == pytest.approx((0.006 / 0.005) ** 2)
    assert data_to_decide(diff(-0.01, 0.0, mean=-0.005), 0.005) == math.inf
    assert data_to_decide(WITHIN, 0.005) <= 1
