"""Statistics on timing rounds, torch-free (numpy and scipy only): `report/gate.py` and the report use them.

`ratio_bounds`: the ratio head/base of a timing statistic with a bootstrap interval over runs and rounds.
"""
from dataclasses import dataclass

import numpy as np

from lowrank_bench.core.decision import MIN_RESAMPLES, check_confidence
from lowrank_bench.core.io import UserError


@dataclass(frozen=True)
class Ratio:
    """statistic(head) / statistic(base) over all rounds, with one-sided bounds at `confidence` each."""
    ratio: float
    lower: float
    upper: float
    confidence: float
    resamples: int


def _resample_runs(runs, rng, resamples) -> np.ndarray:
    """(resamples, n_runs × longest) times: runs drawn with replacement, then rounds with replacement inside each
    drawn run, as many as the longest run has, so every run weighs the same."""
    longest = max(len(r) for r in runs)
    table = np.stack([np.resize(r, longest) for r in runs])  # padding repeats a run's own rounds; never drawn
    lengths = np.array([len(r) for r in runs])
    chosen = rng.integers(0, len(runs), size=(resamples, len(runs)))
    within = (rng.random((resamples, len(runs), longest)) * lengths[chosen][:, :, None]).astype(np.intp)
    return table[chosen[:, :, None], within].reshape(resamples, -1)


def ratio_bounds(base_runs, head_runs, statistic, *, resamples=MIN_RESAMPLES, confidence=0.95, seed=0) -> Ratio:
    """The ratio head/base of a timing statistic with a bootstrap interval, for the time gate.

    `base_runs`, `head_runs`: per-round times, one 1-D array per run (a process of the suite: one for a plain
    file, N for a `--repeat N` pool); `statistic(array, axis)` such as np.median. Base and head are resampled
    independently (their rounds are not paired): runs with replacement, then rounds inside each drawn run, so a
    pool's interval also spans its runs' disagreement; the bounds are percentiles of the resampled ratios. A
    single run per side can only show the spread of its own rounds, not a shift of the whole run."""
    check_confidence(confidence)
    if resamples < MIN_RESAMPLES:
        raise UserError(f"resamples must be at least {MIN_RESAMPLES}, got {resamples}")
    base_runs, head_runs = [np.asarray(r, float) for r in base_runs], [np.asarray(r, float) for r in head_runs]
    rng = np.random.default_rng(seed)
    ratios = statistic(_resample_runs(head_runs, rng, resamples), axis=1) / \
        statistic(_resample_runs(base_runs, rng, resamples), axis=1)
    low, high = np.quantile(ratios, [1 - confidence, confidence])
    observed = statistic(np.concatenate(head_runs), axis=0) / statistic(np.concatenate(base_runs), axis=0)
    return Ratio(ratio=float(observed), lower=float(low), upper=float(high), confidence=confidence,
                 resamples=resamples)
