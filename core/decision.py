"""The decision rule: is a variant within a margin δ of its reference, worse, or can the data not tell?

Both models are scored on the same examples by the same seeds (training runs), so the evidence is a pair of
boolean arrays of shape (n_seeds, n_examples): `variant[s, i]` is whether seed s's variant gets example i right,
`reference[s, i]` the same for that seed's reference. `paired_difference` turns them into the mean difference
(variant − reference, a fraction: 0.005 is half a point) with one-sided lower and upper 95 % confidence bounds;
`verdict` calls it "within" when the lower bound is above −δ, "worse" when the upper bound is below −δ, and
"undecided" otherwise; `choose_rank` walks a grid of ranks from the largest down and stops at the first that is
not "within" (fixed-sequence testing: every test runs at the full 95 %, yet the chance of calling any rank
"within" that is not stays at 5 % for the whole grid, because a rank is only tested once all larger ones passed).

How the bounds are made: a hierarchical paired bootstrap with small-sample corrections.
- Each resample draws n_seeds seeds with replacement and, independently, n_examples example indices with
  replacement; the same example indices serve every seed and both models, so the pairing and the examples that
  all seeds share stay intact (seeds and examples are crossed, not nested: Owen's "pigeonhole" bootstrap). The
  statistic is the mean difference over the drawn seeds and examples; the bounds are its percentiles (a
  bias-corrected percentile covered no better in simulation).
- One seed: only examples are resampled, and the bounds speak for that one trained model, not for training runs
  in general; only more seeds can show how much the difference moves from one training run to the next.
- The seed level is rescaled by sqrt(S / (S − 1)): a bootstrap over S units has (S − 1) / S of their variance
  (half of it with two seeds).
- One pseudo-example each way (variant right and reference wrong on every seed, and the reverse) joins the
  examples, so a variant that agrees with its reference everywhere still gets an interval of non-zero width
  (cf. Bonett and Price's "add one to each discordant cell" for paired proportions). The estimate stays the
  observed difference.
- Few-seed calibration: the distances from the estimate to the percentiles are multiplied by t(df) / z at the
  confidence level, df being the Welch–Satterthwaite degrees of freedom of var(seed means) / S (S − 1 degrees of
  freedom) plus var(example means) / N (degrees of freedom from its kurtosis, which is about twice the number of
  disagreeing examples when they are few). When the seeds disagree more than example sampling explains, df falls
  towards S − 1 and the bound widens as a t interval over seeds would; when few examples disagree, it widens as
  for a small sample; otherwise the factor is close to 1.

Measured coverage (2,000 simulated experiments each, tests/test_decision.py's generator: reference accuracy 95 %,
the variant flips about 3 % of answers, example difficulty and example-specific flip rates, and a seed effect on
the flip rate whose standard deviation is given in example-level standard errors, se). One-sided 95 % lower bound,
and the median distance from estimate to bound relative to 1.645 × the estimate's true standard deviation:

    seeds  examples  seed effect   covers   width          seeds  examples  seed effect   covers   width
      1      200        none        96.3 %   1.24            1     2000        none        95.0 %   1.04
      2      200        none        99.5 %   1.87            2     2000        none        99.2 %   1.70
      2      200       1.3 se       95.8 %   1.36            2     2000       2.0 se       94.0 %   1.70
      2      200       3.0 se       84.9 %   1.16            2     2000       4.2 se       89.0 %   1.97
      3      200       1.3 se       97.0 %   1.39            3     2000       2.0 se       95.8 %   1.45
      3      200       3.0 se       87.0 %   1.05            3     2000       4.2 se       90.7 %   1.34

So the bound is honest while the seed-to-seed spread of the difference is up to about two example standard
errors, conservative without a seed effect (2 or 3 seeds cannot show that there is none, and the examples' shared
disagreement is counted at both levels: the width is then 1.7-1.9 times what an oracle would need), and
optimistic beyond: at 3-4 se it covers 85-91 %, and no correction available with 2 or 3 seeds removes that,
because 2 or 3 draws of a skewed seed effect rarely include its bad tail. `df` says which regime a result is in:
near n_seeds − 1 the seeds, not the examples, set the width, and only more seeds make such a bound trustworthy.
"""
import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from lowrank_bench.core.io import UserError

MIN_RESAMPLES = 2000
MAX_SEEDS = 39  # the seeds' pattern of differences on an example is coded in base 3 in an int64
WITHIN, WORSE, UNDECIDED = "within", "worse", "undecided"


@dataclass(frozen=True)
class PairedDifference:
    """The paired difference variant − reference, as fractions (0.01 is one accuracy point).

    `lower`/`upper` are one-sided bounds at `confidence` each (so [lower, upper] is a two-sided interval at
    2 × confidence − 1, 90 % for the default); `df` is the effective degrees of freedom of the few-seed
    calibration (close to n_seeds − 1 when seed-to-seed spread dominates, large when example sampling does)."""
    mean: float
    lower: float
    upper: float
    confidence: float
    n_seeds: int
    n_examples: int
    resamples: int
    df: float


@dataclass(frozen=True)
class RankChoice:
    """Outcome of fixed-sequence testing over a grid of ranks.

    `rank`: the smallest rank that passed, None when the largest did not. `stopped_at`/`stop_verdict`: the first
    rank that was not "within" and its verdict ("worse" or "undecided"); both None when every rank passed, i.e.
    the grid ran out and a smaller rank might pass too. `tested`: ((rank, verdict), ...) largest rank first, up to
    and including the stop; ranks below the stop were not tested, so nothing may be claimed about them."""
    rank: int | None
    stopped_at: int | None
    stop_verdict: str | None
    tested: tuple


def _outcomes(variant, reference) -> np.ndarray:
    """The per-seed, per-example differences (int8 in {-1, 0, 1}) after checking shapes and types."""
    v, r = np.asarray(variant), np.asarray(reference)
    for name, a in (("variant", v), ("reference", r)):
        if a.dtype != bool:
            raise UserError(f"{name} outcomes must be a boolean array (correct or not per example), got {a.dtype}")
        if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
            raise UserError(f"{name} outcomes must have shape (n_seeds >= 1, n_examples >= 1), got {a.shape}")
    if v.shape[0] > MAX_SEEDS:
        raise UserError(f"at most {MAX_SEEDS} seeds, got {v.shape[0]}")
    if v.shape != r.shape:
        raise UserError(f"variant outcomes have shape {v.shape} but reference outcomes {r.shape}; both must be "
                        f"scored by the same seeds on the same examples, in the same order")
    return v.astype(np.int8) - r.astype(np.int8)


def check_confidence(confidence):
    if not 0.5 < confidence < 1:
        raise UserError(f"confidence must lie between 0.5 and 1 (a one-sided level such as 0.95), got {confidence}")


def paired_difference(variant, reference, *, resamples=MIN_RESAMPLES, confidence=0.95, seed=0) -> PairedDifference:
    """Mean difference variant − reference over seeds and examples, with one-sided bounds at `confidence` from
    the hierarchical paired bootstrap described in the module docstring. Deterministic for a given `seed`.

    `variant`, `reference`: boolean arrays (n_seeds, n_examples), row s of both from seed s, column i of both
    the same example."""
    d = _outcomes(variant, reference)
    check_confidence(confidence)
    if resamples < MIN_RESAMPLES:
        raise UserError(f"resamples must be at least {MIN_RESAMPLES}, got {resamples}")
    n_seeds, n_examples = d.shape
    estimate = float(d.mean())
    pseudo = np.ones((n_seeds, 1), np.int8)
    d = np.concatenate([d, pseudo, -pseudo], axis=1)
    n = n_examples + 2
    # Resampling examples only needs how many examples show each pattern of differences across the seeds (at most
    # 3 ** n_seeds patterns, and at most n): a multinomial draw over the patterns is the same as drawing n indices.
    codes, counts = np.unique(((d + 1) * 3 ** np.arange(n_seeds)[:, None]).sum(axis=0), return_counts=True)
    patterns = (codes // 3 ** np.arange(n_seeds)[:, None]) % 3 - 1  # (n_seeds, patterns)
    rng = np.random.default_rng(seed)
    drawn = rng.multinomial(n, counts / n, size=resamples)  # (resamples, patterns)
    per_seed = drawn @ patterns.T.astype(np.float64) / n  # each seed's mean difference on the drawn examples
    stat = per_seed[:, 0]
    if n_seeds > 1:
        weights = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=resamples)
        all_seeds = per_seed.mean(axis=1)
        drawn_seeds = (weights * per_seed).sum(axis=1) / n_seeds
        stat = all_seeds + math.sqrt(n_seeds / (n_seeds - 1)) * (drawn_seeds - all_seeds)
    q_low, q_high = (float(q) for q in np.quantile(stat, [1 - confidence, confidence]))
    df = _effective_df(d)
    widen = float(special.stdtrit(df, confidence) / special.ndtri(confidence))  # Student-t and normal quantiles
    centre = float(d.mean())  # the bootstrap's centre: the estimate shrunk by the pseudo-examples
    return PairedDifference(mean=estimate, lower=estimate - widen * (centre - q_low),
                            upper=estimate + widen * (q_high - centre), confidence=confidence, n_seeds=n_seeds,
                            n_examples=n_examples, resamples=resamples, df=df)


def _effective_df(d) -> float:
    """Welch–Satterthwaite degrees of freedom of var(seed means) / S + var(example means) / N.

    The example term's degrees of freedom come from its kurtosis, 2 N / (kurtosis − (N − 3) / (N − 1)), not
    N − 1: when few examples disagree the variance rests on those few (about twice their number), and the bound
    must widen as for a small sample."""
    n_seeds, n = d.shape
    by_example = d.mean(axis=0)
    centred = by_example - by_example.mean()
    kurtosis = np.mean(centred ** 4) / np.mean(centred ** 2) ** 2
    df_example = 2 * n / (kurtosis - (n - 3) / (n - 1))
    v_example = by_example.var(ddof=1) / n
    if n_seeds == 1:
        return float(df_example)
    v_seed = d.mean(axis=1).var(ddof=1) / n_seeds
    return float((v_seed + v_example) ** 2 / (v_seed ** 2 / (n_seeds - 1) + v_example ** 2 / df_example))


def _check_margin(margin):
    if isinstance(margin, bool) or not isinstance(margin, int | float) or not math.isfinite(margin) or margin < 0:
        raise UserError(f"the margin must be a finite number >= 0 (a fraction: 0.005 is half a point), got {margin!r}")


def verdict(diff: PairedDifference, margin: float) -> str:
    """"within" when the lower bound lies above −margin, "worse" when the upper bound lies below it, else
    "undecided". `margin` is in the unit of the difference (a fraction)."""
    _check_margin(margin)
    if diff.lower > -margin:
        return WITHIN
    if diff.upper < -margin:
        return WORSE
    return UNDECIDED


def choose_rank(rows, margin: float) -> RankChoice:
    """Fixed-sequence choice over (rank, PairedDifference) pairs: test from the largest rank down, stop at the
    first rank that is not "within"; the choice is the last rank that passed."""
    _check_margin(margin)
    rows = sorted(rows, key=lambda row: row[0], reverse=True)
    ranks = [rank for rank, _ in rows]
    if len(set(ranks)) != len(ranks):
        raise UserError(f"each rank may appear once in the grid, got {sorted(ranks)}")
    chosen, tested = None, []
    for rank, diff in rows:
        v = verdict(diff, margin)
        tested.append((rank, v))
        if v != WITHIN:
            return RankChoice(rank=chosen, stopped_at=rank, stop_verdict=v, tested=tuple(tested))
        chosen = rank
    return RankChoice(rank=chosen, stopped_at=None, stop_verdict=None, tested=tuple(tested))


def data_to_decide(diff: PairedDifference, margin: float) -> float:
    """How many times the present amount of data an undecided difference needs to be decided, if its estimate
    stayed where it is and the bound's distance to it shrank as one over the square root of the data (more
    examples when example sampling dominates, more seeds when `df` is near n_seeds − 1). 1.0 or less when it is
    already decided; infinite when the estimate sits exactly on −margin."""
    _check_margin(margin)
    gap = diff.mean + margin
    if gap == 0:
        return math.inf
    half_width = diff.mean - diff.lower if gap > 0 else diff.upper - diff.mean
    return (half_width / abs(gap)) ** 2


def expected_half_width(discordance, n_examples, *, difference=0.0, n_seeds=1, seed_sd=0.0,
                        confidence=0.95) -> float:
    """Planning: the expected distance from the estimate to its one-sided bound, normal approximation.

    `discordance`: the fraction of examples on which variant and reference disagree (one right, one wrong),
    `difference`: the expected mean difference, `seed_sd`: the expected standard deviation of one seed's
    difference around the mean over seeds. The example term is McNemar's variance of a paired difference,
    (discordance − difference²) / n_examples, taken as if the seeds shared every disagreeing example, which is
    the conservative end (seeds that disagree on different examples divide it by up to n_seeds). With 2 or 3
    seeds the bound `paired_difference` delivers can be wider (the module docstring's table)."""
    check_confidence(confidence)
    if not 0 <= abs(difference) <= discordance <= 1 or n_examples < 1 or n_seeds < 1 or seed_sd < 0:
        raise UserError(f"need 0 <= |difference| <= discordance <= 1, n_examples, n_seeds >= 1 and seed_sd >= 0; "
                        f"got difference {difference}, discordance {discordance}, n_examples {n_examples}, "
                        f"n_seeds {n_seeds}, seed_sd {seed_sd}")
    variance = (discordance - difference ** 2) / n_examples + seed_sd ** 2 / n_seeds
    return float(special.ndtri(confidence) * math.sqrt(variance))
