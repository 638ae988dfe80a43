"""Pooling repeated runs of the suite: min and max over all rounds, other stats the median over runs; mismatched
runs are refused."""
import copy
from pathlib import Path

import pytest

from lowrank_bench.core.benchjson import load_bench
from lowrank_bench.timing.measure import pool_runs
from lowrank_bench.core.io import UserError

SAMPLE = Path(__file__).resolve().parent.parent / "fixtures" / "bench_sample.json"


def scaled(bench, factor, only=None):
    """A copy of `bench` whose times (all, or those of the benchmark named `only`) are multiplied by `factor`."""
    bench = copy.deepcopy(bench)
    for b in bench["benchmarks"]:
        if only in (None, b["fullname"]):
            for field in ("min", "max", "mean", "median", "q1", "q3", "stddev", "iqr", "total"):
                b["stats"][field] *= factor
            b["stats"]["data"] = [t * factor for t in b["stats"]["data"]]
    return bench


@pytest.fixture
def sample():
    return load_bench(SAMPLE)


def test_each_stat_is_the_median_over_runs(sample):
    runs = [scaled(sample, 1.0), scaled(sample, 3.0), scaled(sample, 1.1)]
    pooled = pool_runs(runs, ["a", "b", "c"])
    for base, b in zip(sample["benchmarks"], pooled["benchmarks"]):
        assert b["fullname"] == base["fullname"]
        assert b["stats"]["median"] == pytest.approx(1.1 * base["stats"]["median"])
        assert b["stats"]["min"] == pytest.approx(base["stats"]["min"])  # of all rounds together
        assert b["stats"]["max"] == pytest.approx(3.0 * base["stats"]["max"])
        assert b["stats"]["rounds"] == 3 * base["stats"]["rounds"]
        assert b["extra_info"]["run_medians"] == pytest.approx([f * base["stats"]["median"] for f in (1, 3, 1.1)])


def test_every_round_is_kept_with_the_run_it_came_from(sample):
    pooled = pool_runs([scaled(sample, 1.0), scaled(sample, 3.0)], ["a", "b"])
    for base, b in zip(sample["benchmarks"], pooled["benchmarks"]):
        rounds = base["stats"]["data"]
        assert b["stats"]["data"] == pytest.approx(rounds + [3 * t for t in rounds])
        assert b["extra_info"]["run_rounds"] == [len(rounds), len(rounds)]


def test_one_disturbed_process_does_not_move_the_result(sample):
    name = sample["benchmarks"][0]["fullname"]
    pooled = pool_runs([sample, scaled(sample, 2.0, only=name), sample], ["a", "b", "c"])
    assert pooled["benchmarks"][0]["stats"]["median"] == sample["benchmarks"][0]["stats"]["median"]


def test_speedups_come_from_the_pooled_times(sample):
    infer = [b for b in sample["benchmarks"] if b["extra_info"]["kind"] == "infer"]
    dense = next(b for b in infer if b["extra_info"]["rank"] is None and b["extra_info"]["batch_size"] == 256)
    factored = next(b for b in infer if b["extra_info"]["rank"] is not None and b["extra_info"]["batch_size"] == 256)
    pooled = pool_runs([scaled(sample, f, only=dense["fullname"]) for f in (3.0, 2.0, 4.0)], ["a", "b", "c"])
    got = next(b for b in pooled["benchmarks"] if b["fullname"] == factored["fullname"])["extra_info"]
    assert got["speedup_vs_dense"] == pytest.approx(2.0 * dense["stats"]["min"] / factored["stats"]["min"])


def test_runs_of_other_suites_or_machines_are_refused(sample):
    fewer = copy.deepcopy(sample)
    fewer["benchmarks"].pop()
    with pytest.raises(UserError, match="b.json: holds other benchmarks"):
        pool_runs([sample, fewer], ["a.json", "b.json"])
    other = copy.deepcopy(sample)
    other["machine_info"]["threads"] = 99
    with pytest.raises(UserError, match="b.json: machine_info differs"):
        pool_runs([sample, other], ["a.json", "b.json"])


def test_paired_rounds_pool_with_the_run_they_came_from(sample):
    """Each run's paired rounds are kept, and the paired ratios recomputed from all of them."""
    runs = []
    for level in (2.0, 3.0, 5.0):  # one speedup per run, so the pooled median is the middle run's
        run = copy.deepcopy(sample)
        run["benchmarks"][0]["extra_info"] |= {"paired_times": {"model": [1.0] * 4, "reference": [level] * 4},
                                               "paired_rounds": 4, "speedup_paired": level}
        runs.append(run)
    got = pool_runs(runs, ["a", "b", "c"])["benchmarks"][0]["extra_info"]
    assert got["paired_times"]["reference"] == [2.0] * 4 + [3.0] * 4 + [5.0] * 4
    assert (got["paired_run_rounds"], got["paired_rounds"]) == ([4, 4, 4], 12)
    assert [got[f"speedup_paired{s}"] for s in ("_lower", "", "_upper")] == pytest.approx([2.0, 3.0, 5.0])
