"""Per-example outcome files: they round-trip exactly, and a damaged file or a pairing across splits is refused with
one clear error. (That a job's file equals a recomputation from its checkpoint: tests/test_cli.py, end to end.)"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from lowrank_bench.core.io import UserError
from lowrank_bench.training import outcomes
from lowrank_bench.training.data import _indices, split_id

REPO = Path(__file__).resolve().parent.parent


def split_ids(seed=0, decide=20):
    """The decide and test split ids of a small data set split with `seed` and `decide` examples to decide."""
    y = np.repeat(np.arange(4), 50)
    index = _indices(y, y, stop_fraction=0.1, decide_size=decide, seed=seed, train_subset=100, test_subset=40)
    return split_id("toy", "decide", index["decide"]), split_id("toy", "test", index["test"])


def example(seed=0, decide=20):
    rng = np.random.default_rng(seed)
    val_split, test_split = split_ids(seed, decide)
    return {"val": rng.random(decide) < 0.8, "test": rng.random(40) < 0.7, "val_split": val_split,
            "test_split": test_split}


def test_round_trip(tmp_path):
    want = example()
    path = outcomes.save(tmp_path, "svd/seed0/k4", want)
    assert path == tmp_path / "svd" / "seed0" / "k4.outcomes.safetensors"
    got = outcomes.load_outcomes(tmp_path, "svd/seed0/k4")
    assert got.val.dtype == bool and np.array_equal(got.val, want["val"]) and np.array_equal(got.test, want["test"])
    assert (got.val_split, got.test_split) == (want["val_split"], want["test_split"])
    assert got.val_split.startswith("toy/decide/20/") and got.test_split.startswith("toy/test/40/")


def test_split_ids_name_the_examples_not_the_seed():
    assert split_ids(0) == split_ids(0)
    assert split_ids(1)[0] != split_ids(0)[0] and split_ids(0, decide=24)[0] != split_ids(0)[0]


def test_stack_pairs_outcomes_of_one_split_and_refuses_others(tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("other", 1)):
        outcomes.save(tmp_path, name, {**example(seed), "test_split": split_ids(0)[1]})  # only val differs
    a, b, other = (outcomes.load_outcomes(tmp_path, n) for n in ("a", "b", "other"))
    assert np.array_equal(outcomes.stack([a, b]), np.stack([a.val, b.val]))
    assert outcomes.stack([a, other], "test").shape == (2, 40)  # the same test examples pair up
    with pytest.raises(UserError, match="2 different val splits .* cannot be paired by example"):
        outcomes.stack([a, other])


@pytest.mark.parametrize("damage, message", [
    (lambda d: {**d, "val": d["val"].astype(np.uint8)}, "`val` is uint8"),
    (lambda d: {**d, "test": d["test"][:-1]}, "`test` is bool of shape \\(39,\\)"),
    (lambda d: {"val": d["val"]}, "not a lowrank-bench outcomes file"),
])
def test_a_damaged_file_is_one_clear_error(tmp_path, damage, message):
    good = example()
    arrays = damage({"val": good["val"], "test": good["test"]})
    meta = {"format": outcomes.FORMAT, "val_split": good["val_split"], "test_split": good["test_split"]}
    save_file(arrays, str(tmp_path / "x.outcomes.safetensors"), metadata={"outcomes": json.dumps(meta)})
    with pytest.raises(UserError, match=message) as e:
        outcomes.load_outcomes(tmp_path, "x")
    assert "\n" not in str(e.value) and "x.outcomes.safetensors" in str(e.value)


def test_missing_or_foreign_file_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="x.outcomes.safetensors is missing"):
        outcomes.load_outcomes(tmp_path, "x")
    (tmp_path / "x.outcomes.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="not a readable outcomes file"):
        outcomes.load_outcomes(tmp_path, "x")


def test_the_same_outcomes_are_the_same_bytes_in_any_process(tmp_path):
    """A job's files must not depend on the process that wrote them (the sweep compares and resumes by SHA-256)."""
    code = ("import sys, numpy as np; from training import outcomes; outcomes.save(sys.argv[1], 'x', "
            "{'val': np.arange(20) % 3 == 0, 'test': np.arange(40) % 2 == 0, 'val_split': 'toy/decide/20/ab', "
            "'test_split': 'toy/test/40/cd'})")
    for run in ("a", "b", "c"):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / run)], check=True, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert len({(tmp_path / run / "x.outcomes.safetensors").read_bytes() for run in ("a", "b", "c")}) == 1
