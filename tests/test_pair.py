"""Ratios of times: the paired rounds' order and ratios, and speedup_vs_dense from two benchmarks' min times."""
import numpy as np
import pytest

from lowrank_bench.timing.pair import add_speedups, calibrate, order, paired_fields, paired_rounds


def test_the_order_rotates_by_one_place_per_round():
    names = ["model", "reference", "ceiling_reference", "ceiling_model"]
    assert [order(names, r) for r in range(5)] == [
        ["model", "reference", "ceiling_reference", "ceiling_model"],
        ["reference", "ceiling_reference", "ceiling_model", "model"],
        ["ceiling_reference", "ceiling_model", "model", "reference"],
        ["ceiling_model", "model", "reference", "ceiling_reference"],
        ["model", "reference", "ceiling_reference", "ceiling_model"]]


def test_rounds_call_each_callable_once_per_round_in_the_rotated_order_for_whole_turns():
    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = paired_rounds(fns, seconds=0, min_rounds=4, loop_seconds=0)  # loops of one call each
    warm_up_and_calibration = ["a", "b", "c", "a", "a", "a", "b", "b", "b", "c", "c", "c"]
    assert calls[:12] == warm_up_and_calibration
    rounds = [calls[i:i + 3] for i in range(12, len(calls), 3)]
    assert rounds == [order(list("abc"), r) for r in range(6)]  # 4 asked for, 6 to end on a whole turn
    assert {name: len(t) for name, t in times.items()} == {"a": 6, "b": 6, "c": 6}


def test_a_loop_is_calibrated_to_its_minimum_length():
    now = [0.0]

    def call():  # a call that takes 0.1 ms on a simulated clock
        now[0] += 1e-4
    clock = lambda: now[0]  # noqa: E731
    n = calibrate(call, 1e-3, clock)
    assert 10 <= n <= 12  # a loop of at least 1 ms, and not much more
    assert paired_rounds({"a": call}, seconds=0, min_rounds=2, loop_seconds=1e-3, clock=clock)["a"] == \
        [pytest.approx(1e-4)] * 2  # seconds per call, not per loop


def test_a_round_keeps_the_fastest_call_of_its_loop():
    """A call the machine delayed (10x here) does not move the round's time."""
    now, durations = [0.0], iter([1e-3] * 4 + [1e-2, 1e-3, 1e-3] * 2)

    def call():
        now[0] += next(durations)
    times = paired_rounds({"a": call}, seconds=0, min_rounds=2, loop_seconds=3e-3, clock=lambda: now[0])
    assert times["a"] == [pytest.approx(1e-3)] * 2


def test_paired_fields_are_medians_of_per_round_ratios():
    rng = np.random.default_rng(0)
    t = {name: list(rng.uniform(1, 2, 21)) for name in ("model", "reference", "ceiling_reference", "ceiling_model")}
    got = paired_fields(t)
    speedup = np.array(t["reference"]) / np.array(t["model"])
    ceiling = np.array(t["ceiling_reference"]) / np.array(t["ceiling_model"])
    assert got["speedup_paired"] == pytest.approx(np.median(speedup))
    assert got["speedup_paired_lower"] < got["speedup_paired"] < got["speedup_paired_upper"]
    assert got["ceiling_speedup"] == pytest.approx(np.median(ceiling))
    assert got["ceiling_efficiency"] == pytest.approx(np.median(speedup / ceiling))  # per round, then the median
    assert set(paired_fields({"model": t["model"], "reference": t["reference"]})) == {
        "speedup_paired", "speedup_paired_lower", "speedup_paired_upper"}


def test_a_shift_of_the_whole_machine_cancels_in_paired_ratios():
    """Rounds 10-19 run twice as slow (a neighbour's busy phase) for every callable alike: the ratio stays."""
    slow = [1.0] * 10 + [2.0] * 10
    got = paired_fields({"model": [0.5 * s for s in slow], "reference": [1.5 * s for s in slow]})
    assert got["speedup_paired"] == pytest.approx(3.0)


def bench(kind, k, batch_size, fastest, method=None):
    return {"stats": {"min": fastest, "median": 2 * fastest},
            "extra_info": {"study": "svd", "kind": kind, "method": method or ("dense" if k is None else "svd"),
                           "rank": k, "batch_size": batch_size}}


def test_speedup_vs_dense_is_the_ratio_of_min_times():
    rows = [bench("infer", None, 256, 10.0), bench("infer", 8, 256, 4.0), bench("infer", 8, 1, 1.0),
            bench("infer", 8, 256, 5.0, "whiten"), bench("gemm_factored", 8, 256, 1.5)]
    add_speedups(rows)
    assert rows[1]["extra_info"]["speedup_vs_dense"] == pytest.approx(2.5)
    assert rows[3]["extra_info"]["speedup_vs_dense"] == pytest.approx(2.0)  # methods that share a rank: each its own
    assert "speedup_vs_dense" not in rows[0]["extra_info"]  # dense is the reference
    assert "speedup_vs_dense" not in rows[2]["extra_info"]  # no dense run at batch 1: nothing to compare
    assert "speedup_vs_dense" not in rows[4]["extra_info"]  # only inference benchmarks


def test_other_studies_untouched():
    rows = [{"stats": {"min": 1.0, "median": 1.0},
             "extra_info": {"study": "lora", "kind": "infer", "rank": 4, "batch_size": 1}}]
    add_speedups(rows)
    assert rows[0]["extra_info"] == {"study": "lora", "kind": "infer", "rank": 4, "batch_size": 1}


def test_speedups_compare_like_with_like():
    """A bf16 compiled model is measured against the bf16 compiled dense model, never the fp32 eager one."""
    def at(k, fastest, dtype, mode):
        b = bench("infer", k, 256, fastest)
        b["extra_info"] |= {"dtype": dtype, "mode": mode}
        return b
    rows = [at(None, 10.0, "fp32", "eager"), at(None, 4.0, "bf16", "compiled"), at(8, 5.0, "fp32", "eager"),
            at(8, 1.6, "bf16", "compiled")]
    add_speedups(rows)
    assert rows[2]["extra_info"]["speedup_vs_dense"] == pytest.approx(2.0)
    assert rows[3]["extra_info"]["speedup_vs_dense"] == pytest.approx(2.5)
