"""The regression gate on synthetic pytest-benchmark JSON pairs, plus one real pytest-benchmark run (pytester)
proving the synthetic shape is the real one."""
import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest

from lowrank_bench.report import gate
from lowrank_bench.core.benchjson import by_fullname, load_bench, machine_summary, require_extra_info, rows
from lowrank_bench.core.io import UserError

pytest_plugins = ["pytester"]

MACHINE = {"node": "ci", "processor": "x86_64", "machine": "x86_64", "python_version": "3.11.7",
           "system": "Linux", "cpu": {"brand_raw": "AMD EPYC", "count": 2}, "torch": "2.14.1", "threads": 2,
           "gpu_name": None}
KS = ("dense", "k1", "k2", "k4", "k8")
BATCHES = (1, 256)


def stats(median):
    """Every field pytest-benchmark's Stats.as_dict writes, plus iterations, consistent with `median`."""
    mean = median * 1.02
    return {"min": median * 0.9, "max": median * 1.5, "mean": mean, "stddev": median * 0.05, "rounds": 10,
            "median": median, "iqr": median * 0.1, "q1": median * 0.95, "q3": median * 1.05, "iqr_outliers": 0,
            "stddev_outliers": 1, "outliers": "1;0", "ld15iqr": median * 0.9, "hd15iqr": median * 1.2,
            "ops": 1 / mean, "total": mean * 10, "iterations": 1}


def suite(time_scale=1.0, machine=None, rename=(), **extra):
    """A 10-benchmark svd suite (5 k × 2 batch sizes); `extra` overrides extra_info on every benchmark. No
    per-round times: the gate judges such files on the stored statistic (the point rule)."""
    benchmarks = []
    for k in KS:
        for batch in BATCHES:
            param = f"{k}-{batch}"
            name = f"test_infer[{param}]"
            if param in rename:
                name = f"test_infer_renamed[{param}]"
            info = {"study": "svd", "kind": "infer", "method": "dense" if k == "dense" else "svd",
                    "rank": None if k == "dense" else int(k[1:]), "init": None, "batch_size": batch, "device": "cpu",
                    "dtype": "fp32", "mode": "eager", "threads": 2, "accuracy": 0.95, "params_total": 10_000,
                    "params_trainable": 10_000, "flops": 20_000, "weights_bytes": 40_000,
                    "peak_mem_bytes": 8 * 2**20, "flop_ratio": 1.0} | extra
            benchmarks.append({
                "group": "svd-infer", "name": name, "fullname": f"bench/test_hoda_svd.py::{name}",
                "params": {"k": k, "batch_size": batch}, "param": param, "extra_info": info,
                "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": 5, "max_time": 1.0,
                            "min_time": 5e-06, "warmup": False},
                "stats": stats(1e-3 * batch ** 0.5 * time_scale)})
    return {"machine_info": machine or MACHINE,
            "commit_info": {"id": "abc123", "time": None, "author_time": None, "dirty": False,
                            "project": "lowrank-bench", "branch": "main"},
            "benchmarks": benchmarks, "datetime": "2026-01-01T00:00:00+00:00", "version": "5.3.1"}


def with_rounds(bench, runs=((1.0, 0.03),), rounds=10, seed=0):
    """`bench` with per-round times: for each (scale, spread) in `runs` one run of `rounds` times, log-normal
    around scale × the benchmark's median with that relative spread (several runs: pooled, with run_rounds)."""
    rng = np.random.default_rng(seed)
    for b in bench["benchmarks"]:
        b["stats"]["data"] = [float(t) for scale, spread in runs
                              for t in b["stats"]["median"] * scale * rng.lognormal(0, spread, rounds)]
        if len(runs) > 1:
            b["extra_info"]["run_rounds"] = [rounds] * len(runs)
    return bench


def dump(path, obj):
    path.write_text(json.dumps(obj))
    return str(path)


def run_gate(tmp_path, base, head, *opts):
    return gate.main([dump(tmp_path / "base.json", base), dump(tmp_path / "head.json", head), *opts])


def verdicts(out, metric):
    """Verdicts printed in the table's rows for one metric."""
    return [line.split()[-1] for line in out.splitlines() if line.split()[1:2] == [metric]]


# ---- A/B mode ---------------------------------------------------------------------------------------------

def test_identical_files_pass(tmp_path, capsys):
    assert run_gate(tmp_path, suite(), suite()) == 0
    out = capsys.readouterr().out
    assert verdicts(out, "time") == ["ok"] * 10
    assert out.strip().splitlines()[-1].startswith("gate: ok, 0 of 50 checks failed; 10/10 base benchmarks")


def test_25_percent_slowdown_fails(tmp_path, capsys):
    assert run_gate(tmp_path, suite(), suite(time_scale=1.25)) == 1
    out = capsys.readouterr().out
    assert verdicts(out, "time") == ["FAIL"] * 10
    assert "+25.0%" in out
    assert verdicts(out, "accuracy") == ["ok"] * 10  # only the metric that regressed fails


def test_5_percent_slowdown_passes_at_15_percent(tmp_path):
    assert run_gate(tmp_path, suite(), suite(time_scale=1.05), "--max-slowdown", "15%") == 0


def test_slowdown_tolerance_is_honoured(tmp_path):
    assert run_gate(tmp_path, suite(), suite(time_scale=1.25), "--max-slowdown", "0.30") == 0


def test_without_per_round_times_the_summary_names_the_point_rule(tmp_path, capsys):
    assert run_gate(tmp_path, suite(), suite(time_scale=1.05)) == 0
    assert "10 benchmark(s) without per-round times judged on the median alone" in capsys.readouterr().out
    assert run_gate(tmp_path, with_rounds(suite()), with_rounds(suite(), seed=1)) == 0
    assert "median alone" not in capsys.readouterr().out


# ---- time decided on the rounds: Hodges–Lehmann ratio, Mann–Whitney bounds, Holm over the benchmarks ----------

def test_steady_rounds_identical_code_passes(tmp_path, capsys):
    assert run_gate(tmp_path, with_rounds(suite()), with_rounds(suite(), seed=1)) == 0
    out = capsys.readouterr().out
    assert verdicts(out, "time") == ["ok"] * 10
    assert re.search(r"test_infer\[dense-1\] +time .* [+-]\d+\.\d% \[-\d+\.\d%, \+\d+\.\d%\] p=\S+ +ok$", out, re.M)
    assert "0 undecided" in out and "cannot cancel what the machine did" in out and "lowrank-bench ab" in out


def test_a_25_percent_slowdown_of_every_round_fails(tmp_path, capsys):
    base = with_rounds(suite())
    head = with_rounds(suite(), runs=((1.25, 0.03),), seed=1)
    assert run_gate(tmp_path, base, head) == 1
    out = capsys.readouterr().out
    assert verdicts(out, "time") == ["FAIL"] * 10
    assert run_gate(tmp_path, base, head, "--max-slowdown", "40%") == 0
    head["machine_info"] = MACHINE | {"threads": 16}
    assert run_gate(tmp_path, base, head, "--allow-different-machine") == 0
    assert verdicts(capsys.readouterr().out, "time")[-10:] == ["info"] * 10


def test_noisy_rounds_make_a_slowdown_beyond_the_limit_undecided_exit_3_unless_passed(tmp_path, capsys):
    """Rounds spread by 30 %: a 20 % shift of the median is beyond +15 % but inside the noise."""
    base = with_rounds(suite(), runs=((1.0, 0.3),))
    head = with_rounds(suite(), runs=((1.2, 0.3),), seed=1)
    assert run_gate(tmp_path, base, head) == 3
    out = capsys.readouterr().out
    assert verdicts(out, "time").count("undecided") >= 5 and "FAIL" not in verdicts(out, "time")
    n = verdicts(out, "time").count("undecided")
    assert f"{n} undecided" in out and "gate: ok" in out
    assert run_gate(tmp_path, base, head, "--undecided", "pass") == 0
    # the point rule on the same medians would have failed every benchmark
    assert run_gate(tmp_path, suite(), suite(time_scale=1.2)) == 1


def test_the_time_is_judged_on_the_rounds_not_the_stored_stats(tmp_path, capsys):
    base = with_rounds(suite())
    head = copy.deepcopy(base)
    for b in head["benchmarks"]:  # every round 40 % slower, the stored stats left alone
        b["stats"]["data"] = [1.4 * t for t in b["stats"]["data"]]
    assert run_gate(tmp_path, base, head) == 1
    assert verdicts(capsys.readouterr().out, "time") == ["FAIL"] * 10


def test_normalize_scales_the_rounds_too(tmp_path):
    base = with_rounds(suite())
    drifted = with_rounds(suite(), runs=((1.3, 0.03),), seed=1)
    assert run_gate(tmp_path, base, drifted) == 1
    assert run_gate(tmp_path, base, drifted, "--normalize") == 0


@pytest.mark.parametrize("field, value, message", [
    ("data", [1e-3, -1e-3], "stats.data"),
    ("data", [], "stats.data"),
    ("data", "fast", "stats.data"),
])
def test_broken_round_data_is_an_invalid_file(tmp_path, capsys, field, value, message):
    broken = with_rounds(suite())
    broken["benchmarks"][2]["stats"][field] = value
    assert run_gate(tmp_path, with_rounds(suite()), broken) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "head.json" in err and "test_infer[k1-1]" in err and message in err


def test_normalize_cancels_machine_drift_but_not_a_relative_regression(tmp_path, capsys):
    drifted = suite(time_scale=1.3)  # the whole machine ran 30 % slower
    assert run_gate(tmp_path, suite(), drifted) == 1
    assert run_gate(tmp_path, suite(), drifted, "--normalize") == 0
    assert "head ran 1.300x base" in capsys.readouterr().out
    drifted["benchmarks"][4]["stats"]["median"] *= 1.25  # and one benchmark 25 % slower than the rest
    assert run_gate(tmp_path, suite(), drifted, "--normalize") == 1
    assert verdicts(capsys.readouterr().out, "time").count("FAIL") == 1


def test_accuracy_drop_beyond_tolerance_fails(tmp_path, capsys):
    assert run_gate(tmp_path, suite(), suite(accuracy=0.94)) == 1  # 1 point > 0.5
    out = capsys.readouterr().out
    assert verdicts(out, "accuracy") == ["FAIL"] * 10
    assert "-1.00 pt" in out
    assert run_gate(tmp_path, suite(), suite(accuracy=0.947)) == 0  # 0.3 point
    assert run_gate(tmp_path, suite(), suite(accuracy=0.945)) == 0  # exactly 0.5 point: at the tolerance
    assert run_gate(tmp_path, suite(), suite(accuracy=0.94), "--max-acc-drop", "1.5") == 0
    assert run_gate(tmp_path, suite(), suite(accuracy=0.99)) == 0  # improvements never fail


def test_parameter_growth_fails(tmp_path, capsys):
    assert run_gate(tmp_path, suite(), suite(params_trainable=10_001)) == 1
    assert verdicts(capsys.readouterr().out, "params_trainable") == ["FAIL"] * 10
    assert run_gate(tmp_path, suite(), suite(params_total=10_001)) == 1
    assert run_gate(tmp_path, suite(), suite(params_total=9_000, params_trainable=9_000)) == 0


def test_memory_growth_fails(tmp_path, capsys):
    assert run_gate(tmp_path, suite(), suite(peak_mem_bytes=int(8 * 2**20 * 1.2))) == 1
    assert verdicts(capsys.readouterr().out, "peak_mem") == ["FAIL"] * 10
    assert run_gate(tmp_path, suite(), suite(peak_mem_bytes=int(8 * 2**20 * 1.05))) == 0


def test_metric_missing_in_head_fails(tmp_path, capsys):
    head = suite()
    del head["benchmarks"][0]["extra_info"]["accuracy"]
    assert run_gate(tmp_path, suite(), head) == 1
    assert "missing in head" in capsys.readouterr().out


def test_renamed_benchmarks_below_90_percent_exit_2(tmp_path, capsys):
    assert run_gate(tmp_path, suite(), suite(rename=("k1-1", "k2-256"))) == 2  # 8/10 matched
    captured = capsys.readouterr()
    assert "unmatched: bench/test_hoda_svd.py::test_infer[k1-1]" in captured.out
    assert "new: bench/test_hoda_svd.py::test_infer_renamed[k1-1]" in captured.out
    assert captured.err.startswith("error: ") and "8 of 10" in captured.err


@pytest.mark.parametrize("field,value", [("dtype", "bf16"), ("mode", "compiled")])
def test_a_bf16_or_compiled_row_is_never_compared_with_fp32_eager(tmp_path, capsys, field, value):
    """Same names, different precision or mode: refused (exit 2) instead of gated as a code change."""
    assert run_gate(tmp_path, suite(), suite(0.5, **{field: value})) == 2
    err = capsys.readouterr().err
    assert "only like compares with like" in err and "test_infer[dense-1]" in err


def test_old_files_name_torch_dtypes_and_ran_eager(tmp_path):
    """A file from before the axes ("float32", no mode) is fp32 eager, so it still gates against one that says so."""
    old = suite(dtype="float32")
    for b in old["benchmarks"]:
        del b["extra_info"]["mode"]
    assert run_gate(tmp_path, old, suite()) == 0


def test_one_rename_at_90_percent_fails_unless_missing_is_allowed(tmp_path, capsys):
    assert run_gate(tmp_path, suite(), suite(rename=("k1-1",))) == 1
    out = capsys.readouterr().out
    assert "unmatched: bench/test_hoda_svd.py::test_infer[k1-1]" in out
    assert "9/10 base benchmarks matched, 1 new" in out
    assert verdicts(out, "present") == ["FAIL", "FAIL"]  # missing in head, and missing in base
    assert run_gate(tmp_path, suite(), suite(rename=("k1-1",)), "--allow-missing") == 0
    assert verdicts(capsys.readouterr().out, "present") == ["info", "info"]


@pytest.mark.parametrize("side", ["base", "head"])
def test_a_benchmark_only_one_side_has_fails(tmp_path, capsys, side):
    short = suite()
    del short["benchmarks"][3]
    pair = (short, suite()) if side == "base" else (suite(), short)
    assert run_gate(tmp_path, *pair) == 1
    assert f"missing in {side}" in capsys.readouterr().out


@pytest.mark.parametrize("where, field", [("stats", "median"), ("stats", "min"), ("stats", "data"),
                                          ("extra_info", "accuracy"), ("extra_info", "peak_mem_bytes"),
                                          ("extra_info", "params_total")])
@pytest.mark.parametrize("side", ["base", "head"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_value_is_an_invalid_file(tmp_path, capsys, where, field, side, value):
    """NaN and Infinity are no JSON numbers: refused where the file is read, before any field of it is used."""
    broken = suite()
    broken["benchmarks"][2][where][field] = value
    pair = (broken, suite()) if side == "base" else (suite(), broken)
    assert run_gate(tmp_path, *pair) == 2
    err = capsys.readouterr().err
    assert f"{side}.json: not valid JSON ({'NaN' if value != value else 'Infinity'} is not a number" in err
    assert err.count("\n") == 1
    assert gate.main(["--expect", str(Path(__file__).resolve().parent.parent / "bench/expected/smoke.json"),
                      dump(tmp_path / "broken.json", broken)]) == 2


@pytest.mark.parametrize("content", [
    json.dumps({"study": "svd", "rows": []}),                      # a training summary.json
    json.dumps({"machine_info": {}, "benchmarks": [{"fullname": "x", "stats": {"mean": 1.0}}]}),  # no median
    json.dumps([1, 2, 3]),
    "{not json",
], ids=["summary", "no-median", "list", "garbage"])
def test_not_pytest_benchmark_json_exits_2_naming_the_file(tmp_path, capsys, content):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    assert gate.main([dump(tmp_path / "base.json", suite()), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {bad}")


def test_different_machine_fails_time_unless_allowed(tmp_path, capsys):
    other = MACHINE | {"threads": 16, "gpu_name": "NVIDIA H100 80GB HBM3"}
    assert run_gate(tmp_path, suite(), suite(machine=other)) == 1  # identical timings, still refused
    out = capsys.readouterr().out
    assert verdicts(out, "threads") == ["FAIL"] and verdicts(out, "gpu") == ["FAIL"]
    assert "NVIDIA H100 80GB HBM3" in out
    assert run_gate(tmp_path, suite(), suite(machine=other), "--allow-different-machine") == 0
    assert run_gate(tmp_path, suite(), suite(time_scale=1.25, machine=other), "--allow-different-machine") == 0
    out = capsys.readouterr().out
    assert verdicts(out, "time")[-10:] == ["info"] * 10 and "reported, not gated" in out
    # the other metrics stay gated on a different machine
    assert run_gate(tmp_path, suite(), suite(accuracy=0.9, machine=other), "--allow-different-machine") == 1


def test_machine_summary_reads_cpu_brand():
    assert machine_summary(suite()) == {"cpu": "AMD EPYC", "gpu": None, "threads": 2, "torch": "2.14.1"}


def test_bad_option_values_are_refused_early(capsys):
    with pytest.raises(SystemExit):
        gate.main(["a.json", "b.json", "--max-slowdown=-5%"])
    assert "must be >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        gate.main(["a.json", "b.json", "--undecided", "maybe"])
    assert "invalid choice: 'maybe'" in capsys.readouterr().err


def test_wrong_file_count_exits_2(tmp_path, capsys):
    assert gate.main([dump(tmp_path / "h.json", suite())]) == 2
    assert "BASE.json HEAD.json" in capsys.readouterr().err


# ---- benchjson helpers ------------------------------------------------------------------------------------

def test_require_extra_info_lists_benchmarks_and_fields(tmp_path):
    bench = suite()
    del bench["benchmarks"][1]["extra_info"]["flops"]
    require_extra_info(bench, ["accuracy", "params_total"], "b.json")
    with pytest.raises(UserError, match=r"^b.json: 1 benchmark\(s\) .*: bench/test_hoda_svd.py::"
                                        r"test_infer\[dense-256\] \(flops\); set them"):
        require_extra_info(bench, ["flops", "accuracy"], "b.json")
    with pytest.raises(UserError, match=r"b.json: 10 benchmark\(s\).*\[dense-256\] \(flops, nope\);.*and 5 more"):
        require_extra_info(bench, ["flops", "nope"], "b.json")


def test_rows_are_flat_and_refuse_clashes():
    bench = suite()
    row = rows(bench)[0]
    assert row["fullname"] == "bench/test_hoda_svd.py::test_infer[dense-1]"
    assert row["median"] == 1e-3 and row["accuracy"] == 0.95 and row["params"] == {"k": "dense", "batch_size": 1}
    bench["benchmarks"][0]["extra_info"]["median"] = 5
    with pytest.raises(UserError, match="clash"):
        rows(bench)


def test_duplicate_fullname_is_refused(tmp_path):
    bench = suite()
    bench["benchmarks"].append(bench["benchmarks"][0])
    with pytest.raises(UserError, match="appears twice"):
        load_bench(dump(tmp_path / "dup.json", bench))


# ---- expectations mode ------------------------------------------------------------------------------------

def write_expectations(tmp_path, bench, *opts):
    exp = tmp_path / "expected" / "smoke.json"
    assert gate.main(["--write-expect", str(exp), dump(tmp_path / "run.json", bench), *opts]) == 0
    return exp


def expect(tmp_path, exp, head):
    return gate.main(["--expect", str(exp), dump(tmp_path / "head.json", head)])


def test_write_expect_round_trip(tmp_path):
    exp = write_expectations(tmp_path, suite(accuracy=0.9512))
    data = gate.load_expect(exp)
    assert data["margin_points"] == 2.0 and data["source"]["commit"] == "abc123"
    assert set(data["benchmarks"]) == set(by_fullname(suite()))
    entry = data["benchmarks"]["bench/test_hoda_svd.py::test_infer[k4-256]"]
    assert entry == {"accuracy_min": 0.9312, "params_total": 10_000, "params_trainable": 10_000}
    assert [p.name for p in exp.parent.iterdir()] == ["smoke.json"]  # atomic: no temp file left behind
    assert expect(tmp_path, exp, suite(accuracy=0.9512)) == 0
    exp = write_expectations(tmp_path, suite(accuracy=0.9512), "--margin", "0.5")
    assert gate.load_expect(exp)["benchmarks"]["bench/test_hoda_svd.py::test_infer[k4-256]"]["accuracy_min"] == 0.9462


def test_expect_pass_and_fail(tmp_path, capsys):
    exp = write_expectations(tmp_path, suite())  # floors at 93 %
    assert expect(tmp_path, exp, suite(accuracy=0.935)) == 0  # within the margin
    capsys.readouterr()
    assert expect(tmp_path, exp, suite(accuracy=0.92)) == 1
    assert verdicts(capsys.readouterr().out, "accuracy") == ["FAIL"] * 10
    assert expect(tmp_path, exp, suite(params_total=9_999)) == 1  # exact: shrinking fails too
    assert expect(tmp_path, exp, suite(time_scale=3.0, machine=MACHINE | {"threads": 64})) == 0  # machine-free


def test_expect_missing_benchmark_fails(tmp_path, capsys):
    exp = write_expectations(tmp_path, suite())
    head = suite()
    head["benchmarks"].pop()
    assert expect(tmp_path, exp, head) == 1
    out = capsys.readouterr().out
    assert re.search(r"^bench/test_hoda_svd.py::test_infer\[k8-256\] +present +expected +missing +FAIL$", out, re.M)
    assert "(1 expected benchmark(s) missing)" in out


def selectors(*entries):
    return {"format": gate.EXPECT_FORMAT, "benchmarks": {}, "selectors": list(entries)}


def test_expect_selector_by_fields(tmp_path, capsys):
    exp = tmp_path / "sel.json"
    exp.write_text(json.dumps(selectors({"match": {"study": "svd", "rank": 4}, "accuracy_min": 0.9},
                                        {"match": {"study": "svd", "kind": "infer", "rank": None},
                                         "params_total": 10_000})))
    assert expect(tmp_path, exp, suite()) == 0
    out = capsys.readouterr().out
    assert len(verdicts(out, "accuracy")) == 2 and len(verdicts(out, "params_total")) == 2  # both batch sizes
    assert expect(tmp_path, exp, suite(accuracy=0.8)) == 1
    exp.write_text(json.dumps(selectors({"match": {"study": "svd", "rank": 16}})))
    assert expect(tmp_path, exp, suite()) == 1  # a selector that matches nothing is a missing benchmark
    exp.write_text(json.dumps(selectors({"match": {"kind": "train_step", "rank": 4}})))
    assert expect(tmp_path, exp, suite()) == 1  # every field must match
    exp.write_text(json.dumps(selectors({"match": {"rank": "4"}})))
    assert expect(tmp_path, exp, suite()) == 1  # typed: the string "4" is not the rank 4


@pytest.mark.parametrize("content", [
    {"benchmarks": {"b::x": {}}},                                            # no format
    {"format": "lowrank-bench-expect/1", "benchmarks": {}},                 # would pass anything
    {"format": "lowrank-bench-expect/1", "benchmarks": {}, "selectors": [{"rank": 4}]},  # no match object
    {"format": "lowrank-bench-expect/1", "benchmarks": {"b::x": {"acc": 0.9}}},
    {"format": "lowrank-bench-expect/1", "benchmarks": {"b::x": {"accuracy_min": "high"}}},
], ids=["format", "empty", "selector", "field", "value"])
def test_bad_expectations_file_exits_2(tmp_path, capsys, content):
    exp = tmp_path / "exp.json"
    exp.write_text(json.dumps(content))
    assert expect(tmp_path, exp, suite()) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {exp}")


# ---- the real tool ----------------------------------------------------------------------------------------

def test_real_pytest_benchmark_output_is_accepted(pytester, tmp_path):
    pytester.makepyfile(test_tiny="""
        import pytest

        @pytest.mark.parametrize("k", ["dense", "k2"])
        def test_infer(benchmark, k):
            benchmark.extra_info.update(study="svd", kind="infer", accuracy=0.9, params_total=10, params_trainable=10,
                                        peak_mem_bytes=1024)
            benchmark.pedantic(sum, args=(range(100),), rounds=3, iterations=2)
    """)
    out = tmp_path / "bench.json"
    result = pytester.runpytest("-p", "no:cacheprovider", f"--benchmark-json={out}")
    result.assert_outcomes(passed=2)
    bench = load_bench(out)
    require_extra_info(bench, ["study", "accuracy", "params_total", "peak_mem_bytes"], out)
    assert set(bench) == {"machine_info", "commit_info", "benchmarks", "datetime", "version"}
    names = list(by_fullname(bench))
    assert names == ["test_tiny.py::test_infer[dense]", "test_tiny.py::test_infer[k2]"]
    # the synthetic files above have exactly the real shape
    real = bench["benchmarks"][0]
    fake = suite()["benchmarks"][0]
    assert set(real) == set(fake)
    assert set(real["stats"]) - {"data"} == set(fake["stats"])
    assert len(real["stats"]["data"]) == 3  # --benchmark-json keeps every round: the gate's interval needs them
    assert rows(bench)[1]["params"] == {"k": "k2"} and rows(bench)[1]["rounds"] == 3
    assert gate.main([str(out), str(out)]) == 3  # three rounds a side cannot bound a ratio: undecided
    assert gate.main([str(out), str(out), "--undecided", "pass"]) == 0


def test_study_contract_names_the_missing_field(tmp_path):
    from lowrank_bench.core.benchjson import check_study_extra_info
    bench = suite(accuracy_truncated=0.5, val_accuracy=0.6, val_accuracy_truncated=0.5, accuracy_ci95=None, n_seeds=1,
                  seed_timed=0, accuracy_timed=0.95, cost=None)
    check_study_extra_info(bench, "ok.json")  # every svd field present
    del bench["benchmarks"][2]["extra_info"]["accuracy_truncated"]
    with pytest.raises(UserError, match=r"1 benchmark\(s\) lack extra_info fields: .*\(accuracy_truncated\)"):
        check_study_extra_info(bench, "bad.json")


@pytest.mark.parametrize("where, field, value", [
    ("stats", "rounds", 0), ("stats", "min", 0.0), ("stats", "median", -1e-3), ("stats", "q1", 0),
    ("extra_info", "accuracy", True), ("extra_info", "params_total", False), ("stats", "rounds", True),
    ("extra_info", "accuracy", "0.99"), ("stats", "min", "…"), ("extra_info", "accuracy", 95.0),
])
def test_a_head_that_measured_nothing_or_holds_wrong_types_exits_2(tmp_path, capsys, where, field, value):
    """Zero rounds, a time of 0 or less, a boolean or a string where a number belongs: unusable input (exit 2, one
    line naming the field), never a pass (exit 0) or a "regression" (exit 1)."""
    head = suite()
    for b in head["benchmarks"]:
        b[where][field] = value
    assert run_gate(tmp_path, suite(), head) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "head.json" in err and f"{where}.{field}: " in err
    assert gate.main(["--expect", str(Path(__file__).resolve().parent.parent / "bench/expected/smoke.json"),
                      dump(tmp_path / "h.json", head)]) == 2


def test_a_fullname_with_a_line_break_is_one_line(tmp_path, capsys):
    head = suite()
    head["benchmarks"][0]["fullname"] += "\nok"
    assert run_gate(tmp_path, suite(), head) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_folder_given_as_a_benchmark_file_exits_2(tmp_path, capsys):
    assert gate.main([dump(tmp_path / "base.json", suite()), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path} is a folder, not a JSON file; give the file's path\n"


def test_write_expect_never_replaces_a_special_file(tmp_path, capsys):
    import os
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert gate.main(["--write-expect", str(fifo), dump(tmp_path / "head.json", suite())]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--write-expect {fifo} is a FIFO, not a regular file" in err
    assert fifo.is_fifo()
