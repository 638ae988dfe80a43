"""Statistics over seeds against independent oracles: numpy for mean and spread."""
import numpy as np
import pytest

from lowrank_bench.core.decision import paired_difference
from lowrank_bench.training.outcomes import Outcomes
from lowrank_bench.training.stats import over_seeds, spread


def test_spread_is_numpys_mean_and_sample_deviation():
    values = [0.90, 0.92, 0.91]
    mean, std = spread(values)
    assert mean == pytest.approx(np.mean(values)) and std == pytest.approx(np.std(values, ddof=1))
    assert spread([0.5]) == (0.5, None) and spread([]) == (None, None)


def row(method, rank, seed, val, test, init=None, params=100):
    return {"study": "svd", "method": method, "rank": rank, "init": init, "embedding": None, "seed": seed,
            "val_acc": val, "test_acc": test, "params_total": params,
            "outcomes": f"svd/seed{seed}/{method}{rank or ''}"}


def outcomes_of(table):
    """An `outcomes(row)` over {outcomes name: (val bools, test bools)}, on one split."""
    return lambda r: Outcomes(*table[r["outcomes"]], "hoda/decide/8/x", "hoda/test/8/y")


DENSE = ("svd", "dense", None, None, None)


def test_means_over_seeds_and_the_decision_paired_by_seed_and_example():
    rng = np.random.default_rng(0)
    right = {f"svd/seed{s}/{m}": (rng.random(400) < p, rng.random(300) < p) for s in (0, 1, 2)
             for m, p in (("dense", 0.9), ("svd4", 0.8))}
    rows = [row(m, k, s, right[f"svd/seed{s}/{m}{k or ''}"][0].mean(), right[f"svd/seed{s}/{m}{k or ''}"][1].mean(),
                params=10 if k else 100) for m, k in (("dense", None), ("svd", 4)) for s in (0, 1, 2)]
    (dense, k4), diffs = over_seeds(rows, DENSE, outcomes_of(right), margin=0.005)
    assert (dense["method"], dense["n_seeds"], dense["seeds"]) == ("dense", 3, [0, 1, 2]) and "seed" not in dense
    assert dense["val_acc"] == pytest.approx(np.mean([right[f"svd/seed{s}/dense"][0].mean() for s in (0, 1, 2)]))
    assert dense["verdict"] is None and dense["val_diff"] is None and k4["params_total"] == 10
    oracle = paired_difference(np.stack([right[f"svd/seed{s}/svd4"][0] for s in (0, 1, 2)]),
                               np.stack([right[f"svd/seed{s}/dense"][0] for s in (0, 1, 2)]))
    assert (k4["val_diff"], k4["val_diff_lower"], k4["val_diff_upper"]) == (oracle.mean, oracle.lower, oracle.upper)
    assert k4["verdict"] == "worse" and k4["val_diff_upper"] < -0.005  # 10 points worse, thousands of examples
    assert k4["test_diff"] == pytest.approx(np.mean([right[f"svd/seed{s}/svd4"][1].mean()
                                                     - right[f"svd/seed{s}/dense"][1].mean() for s in (0, 1, 2)]))
    assert diffs[("svd", "svd", 4, None, None)][0] == oracle


def test_tied_seeds_never_give_a_zero_width_interval():
    same = np.arange(200) % 10 != 0  # 90 % right
    other = np.roll(same, 3)  # 90 % right too, on other examples
    right = {f"svd/seed{s}/{m}": (v, v) for s in (0, 1) for m, v in (("dense", same), ("svd4", other))}
    rows = [row(m, k, s, 0.9, 0.9) for m, k in (("dense", None), ("svd", 4)) for s in (0, 1)]
    _, k4 = over_seeds(rows, DENSE, outcomes_of(right), margin=0.005)[0]
    assert k4["val_diff"] == 0 and k4["val_diff_lower"] < -0.01 < 0.01 < k4["val_diff_upper"]
    assert k4["verdict"] == "undecided"  # the seeds agree exactly; the examples still say it cannot tell
