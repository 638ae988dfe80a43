"""Decisions on timing rounds, torch-free: is head slower than base by more than the allowed slowdown?

A verdict compares one-sided bounds of the ratio head/base with `limit` = 1 + allowed slowdown: FAIL when the
lower bound lies above it, ok when the upper bound lies at or below it, undecided otherwise (the rounds cannot
tell). Two kinds of evidence, two distribution-free procedures, both on log-times so a ratio is a shift:

- Paired rounds (`paired_ratio`, what `lowrank-bench ab` measures): per pair, base and head run back to back in
  random order, and the pair's ratio head/base cancels whatever the machine did to both. The estimate is the
  median of the pairs' ratios; its bounds are the sign test's order statistics, exact for any distribution of
  independent pairs (no bootstrap, no normality). A process's own bias (where its tensors landed in memory) is
  in every pair it serves and does not cancel, so `ab` pairs several processes a side (`pairings_ratio`): FAIL
  needs every pairing of processes to fail on its own.
- Two separate samples (`shift_ratio`, what `gate base.json head.json` reads): the Hodges–Lehmann ratio, the
  median of all head/base ratios across the two samples, with the Mann–Whitney interval, exact for independent
  rounds whose distributions differ by a factor. Rounds measured minutes apart share no time window: a drift of the
  whole machine between the files is a real difference of the samples and no interval can tell it from the code's.

The p-value of each verdict tests "head/base ≤ limit"; `holm` adjusts a family of them so that the chance of any
false FAIL among all benchmarks of a run stays at the level (Holm's step-down, valid under any dependence).
"""
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05  # one-sided level of every bound, and the family-wise level of FAIL
FAIL, OK, UNDECIDED = "FAIL", "ok", "undecided"


@dataclass(frozen=True)
class Ratio:
    """head/base, with one-sided bounds at 1 − `alpha` each, and `p`: the p-value of "head/base ≤ limit" (small
    when head is surely slower than the limit allows), from the test the bounds invert."""
    ratio: float
    lower: float
    upper: float
    p: float
    n: int  # pairs, or rounds of the smaller side


def verdict(r: Ratio, limit: float, p_adjusted: float | None = None, alpha=ALPHA) -> str:
    """FAIL when the (family-adjusted) p-value of "head/base ≤ limit" is at most `alpha`, ok when the upper bound
    lies at or below `limit`, else undecided. A slowdown of exactly the limit passes despite float noise."""
    p = r.p if p_adjusted is None else p_adjusted
    if p <= alpha and r.lower > limit * (1 + 1e-9):
        return FAIL
    return OK if r.upper <= limit * (1 + 1e-9) else UNDECIDED


def holm(pvalues) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: reject where adjusted ≤ α and the family-wise error
    rate stays at α."""
    p = np.asarray(pvalues, float)
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (len(p) - np.arange(len(p))) * p[order])
    adjusted = np.empty_like(p)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted.tolist()


def _order_bound(n, alpha):
    """The largest c with P(Binomial(n, 1/2) < c) ≤ alpha: the sign test's one-sided lower bound of a median is
    the c-th smallest of n values, the upper bound the c-th largest (none when c is 0: too few values)."""
    return int(np.sum(stats.binom.cdf(np.arange(n + 1), n, 0.5) <= alpha))


def paired_ratio(base, head, limit, alpha=ALPHA) -> Ratio:
    """The median of the paired ratios head[i]/base[i] with the sign test's one-sided bounds at 1 − alpha; p tests
    "the median ratio ≤ limit" (how many pairs lie above the limit, against a fair coin)."""
    d = np.sort(np.log(np.asarray(head, float)) - np.log(np.asarray(base, float)))
    n = len(d)
    c = _order_bound(n, alpha)
    lower = math.exp(d[c - 1]) if c >= 1 else 0.0
    upper = math.exp(d[n - c]) if c >= 1 else math.inf
    above = int(np.sum(d > math.log(limit)))
    return Ratio(ratio=float(math.exp(np.median(d))), lower=lower, upper=upper,
                 p=float(stats.binom.sf(above - 1, n, 0.5)), n=n)


def pairings_ratio(pairings, limit, alpha=ALPHA) -> Ratio:
    """Paired rounds from independent pairings of processes, [(base times, head times), ...]: the median ratio of
    all pairs, and the pairings' own bounds and p-values taken together, an intersection-union test: the lowest
    lower bound, the highest upper bound, the largest p. So a verdict needs every pairing to reach it at `alpha`
    on its own, and a bias one process carries into all its pairs cannot decide a benchmark alone. One pairing
    is `paired_ratio`."""
    each = [paired_ratio(base, head, limit, alpha) for base, head in pairings]
    d = np.concatenate([np.log(np.asarray(head, float)) - np.log(np.asarray(base, float)) for base, head in pairings])
    return Ratio(ratio=float(math.exp(np.median(d))), lower=min(r.lower for r in each),
                 upper=max(r.upper for r in each), p=max(r.p for r in each), n=len(d))


EXACT_UP_TO = 30  # rounds per side up to which Mann–Whitney's null distribution is computed exactly


def _u_tail(m, n):
    """P(U ≥ u) for u = 0 … m·n under the null of Mann–Whitney (no ties): the exact distribution by recursion on
    the sample sizes while both are at most EXACT_UP_TO, else the normal approximation with continuity correction."""
    u = np.arange(m * n + 1)
    if max(m, n) > EXACT_UP_TO:
        return stats.norm.sf((u - m * n / 2 - 0.5) / math.sqrt(m * n * (m + n + 1) / 12))
    counts = [[np.ones(1)] * (n + 1)] + [[np.ones(1)] + [None] * n for _ in range(m)]
    for i in range(1, m + 1):  # ways(i, j, u) = ways(i − 1, j, u − j) + ways(i, j − 1, u)
        for j in range(1, n + 1):
            c = np.zeros(i * j + 1)
            c[j:j + len(counts[i - 1][j])] += counts[i - 1][j]
            c[:len(counts[i][j - 1])] += counts[i][j - 1]
            counts[i][j] = c
    pmf = counts[m][n] / counts[m][n].sum()
    return np.cumsum(pmf[::-1])[::-1]


def shift_ratio(base, head, limit, alpha=ALPHA) -> Ratio:
    """The Hodges–Lehmann ratio of two independent samples of round times (the median of head[j]/base[i] over all
    pairs i, j) with the Mann–Whitney one-sided bounds at 1 − alpha; p tests "head/base ≤ limit" by Mann–Whitney
    on head/limit against base (ties count one half, and a half rounds towards the larger p-value)."""
    b, h = np.log(np.asarray(base, float)), np.log(np.asarray(head, float))
    d = np.sort((h[None, :] - b[:, None]).ravel())
    tail = _u_tail(len(h), len(b))

    def p_value(shifts, side):
        """P-values of "head is not slower (side +1; faster, side −1) than base × e^shift" for each shift: U
        counts the pairs of rounds in which head / e^shift lies beyond base on that side."""
        above, below = len(d) - np.searchsorted(d, shifts, "right"), np.searchsorted(d, shifts, "left")
        u = (above if side > 0 else below) + 0.5 * (len(d) - above - below)
        return tail[np.floor(u).astype(int)]

    rejected_low, rejected_high = np.flatnonzero(p_value(d, +1) <= alpha), np.flatnonzero(p_value(d, -1) <= alpha)
    return Ratio(ratio=float(math.exp(np.median(d))),
                 lower=math.exp(d[rejected_low[-1]]) if len(rejected_low) else 0.0,
                 upper=math.exp(d[rejected_high[0]]) if len(rejected_high) else math.inf,
                 p=float(p_value(np.array([math.log(limit)]), +1)[0]), n=min(len(b), len(h)))
