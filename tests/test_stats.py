"""Statistics over seeds against independent oracles: numpy for mean and spread, a t table for the interval."""
import numpy as np
import pytest

from training.stats import interval, over_seeds


def test_interval_is_student_t_against_a_table():
    values = [0.90, 0.92, 0.91]
    mean, std, ci95 = interval(values)
    assert mean == pytest.approx(np.mean(values)) and std == pytest.approx(np.std(values, ddof=1))
    assert ci95 == pytest.approx(4.302653 * std / np.sqrt(3), rel=1e-6)  # t(0.975, df=2) from a printed table
    assert interval([0.5]) == (0.5, None, None) and interval([]) == (None, None, None)


def row(method, rank, seed, val, test, init=None, params=100):
    return {"study": "svd", "method": method, "rank": rank, "init": init, "seed": seed, "val_acc": val,
            "test_acc": test, "params_total": params, "checkpoint": f"svd/seed{seed}/{method}{rank or ''}"}


def test_summary_pairs_differences_by_seed():
    # Seed 1 is harder for both: unpaired, the k4 interval overlaps dense; paired, k4 is clearly 1 point lower.
    rows = [row("dense", None, 0, 0.95, 0.94), row("dense", None, 1, 0.85, 0.84), row("dense", None, 2, 0.90, 0.89),
            row("svd", 4, 0, 0.94, 0.93, params=10), row("svd", 4, 1, 0.84, 0.83, params=10),
            row("svd", 4, 2, 0.89, 0.88, params=10)]
    dense, k4 = over_seeds(rows, reference=("svd", "dense", None, None, None))
    assert (dense["method"], dense["n_seeds"], dense["seeds"]) == ("dense", 3, [0, 1, 2]) and "seed" not in dense
    assert dense["val_acc"] == pytest.approx(0.90) and dense["val_acc_diff"] is None
    assert k4["val_acc"] == pytest.approx(0.89) and k4["params_total"] == 10 and k4["rank"] == 4
    assert k4["val_acc_diff"] == pytest.approx(-0.01) and k4["val_acc_diff_ci95"] == pytest.approx(0, abs=1e-9)
    assert k4["val_acc_ci95"] > 0.1  # the seeds' spread, which the pairing removes


def test_one_seed_has_no_interval():
    dense, k4 = over_seeds([row("dense", None, 0, 0.9, 0.9), row("svd", 4, 0, 0.8, 0.8)],
                           ("svd", "dense", None, None, None))
    assert k4["val_acc_diff"] == pytest.approx(-0.1) and k4["val_acc_diff_ci95"] is None
