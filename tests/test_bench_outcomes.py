"""Decisions for a study of the user's own: per-example outcomes from the `lowrank` fixture, stored beside the
benchmark JSON (core/bench_outcomes.py), decided by `collect` and `gate` with the built-in rule.

Oracles: the stored files read back with safetensors alone, and core.decision applied to them by hand; the
studies below are built so that their verdicts are known (a model that flips no answer is within any margin, one
that flips a fifth of them is worse)."""
import csv
import hashlib
import json

import numpy as np
import pytest
# pytester drops the modules an inline run imported; torch registers its operator libraries once per process, so
# the lazily imported torch._dynamo (which the fixture's profiling pulls in) must be imported out here, once.
import torch._dynamo  # noqa: F401
from safetensors.numpy import load_file, save_file

from lowrank_bench.cli import main as cli
from lowrank_bench.core import bench_outcomes
from lowrank_bench.core.benchjson import load_bench
from lowrank_bench.core.decision import choose_rank, paired_difference, verdict
from lowrank_bench.core.io import UserError
from lowrank_bench.report.collect import collect

pytest_plugins = ["pytester"]

# A study of known answers: the reference gets 90 % of 400 examples right; rank k's model loses a fraction of
# them (FLIPS, from the environment for the gate's head run), the same examples for every seed.
STUDY = '''\
import os

import numpy as np
import pytest
import torch

N, SEEDS = 400, int(os.environ.get("SEEDS", "1"))
FLIPS = {None: 0.0, 4: 0.3, 8: 0.12, 16: float(os.environ.get("FLIP16", "0"))}
truth = np.random.default_rng(0).random((SEEDS, N)) < 0.9
dense = torch.nn.Linear(16, 4)
x = torch.ones(8, 16)


@pytest.mark.parametrize("rank", [None, 4, 8, 16])
def test_study(lowrank, rank):
    correct = truth & ~(np.random.default_rng(rank or 0).random(N) < FLIPS[rank])
    if SEEDS == 1:
        seeds = {"accuracy": lambda model: torch.from_numpy(correct[0])}
    else:
        seeds = {"accuracy": float(correct[0].mean()), "over_seeds": {
            "accuracy": float(correct.mean()), "accuracy_ci95": None, "n_seeds": SEEDS, "seed_timed": 0,
            "outcomes": correct}}
    lowrank(dense, x, reference=dense, study="mine", method="dense" if rank is None else "svd", rank=rank, **seeds)
'''


def run_study(pytester, monkeypatch, name="out.json", margin="2", **env):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    pytester.makepyfile(test_study=STUDY)
    out = pytester.path / name
    result = pytester.runpytest("-p", "no:cacheprovider", f"--benchmark-json={out}", f"--margin-points={margin}",
                                "--benchmark-min-rounds=1", "--benchmark-max-time=0")
    result.assert_outcomes(passed=4)
    return out


def stored(out):
    """{test name: (extra_info, outcomes read with safetensors alone)}, checking each file's hash by hand."""
    found = {}
    for b in load_bench(out)["benchmarks"]:
        file = out.parent / b["extra_info"]["outcomes"]
        assert hashlib.sha256(file.read_bytes()).hexdigest() == b["extra_info"]["outcomes_sha256"]
        found[b["name"]] = b["extra_info"], load_file(str(file))["outcomes"]
    return found


@pytest.mark.parametrize("seeds", ["1", "3"])
def test_collect_decides_as_core_decision_does_on_the_stored_outcomes(pytester, monkeypatch, seeds):
    out = run_study(pytester, monkeypatch, SEEDS=seeds)
    files = stored(out)
    ref = files["test_study[None-fp32-eager]"][1]
    assert ref.shape == (int(seeds), 400) and ref.dtype == bool
    collected = collect(pytester.path / "results", [out])
    table = {r["fullname"].rpartition("::")[2]: r
             for r in csv.DictReader((pytester.path / "results" / "tables" / "mine_bench.csv").open())}
    diffs = {}
    for name, (info, outcomes) in files.items():
        assert info["accuracy"] == pytest.approx(outcomes.mean(), abs=1e-12) and info["margin_points"] == 2
        if name == "test_study[None-fp32-eager]":
            assert table[name]["verdict"] == ""  # the reference itself is not decided
            continue
        diff = paired_difference(outcomes, ref)
        diffs[info["rank"]] = diff
        row = table[name]
        assert (float(row["diff"]), float(row["diff_lower"]), float(row["diff_upper"])) == \
            (diff.mean, diff.lower, diff.upper)
        assert row["verdict"] == verdict(diff, 0.02)
    choice = choose_rank(list(diffs.items()), 0.02)
    assert choice.rank == 16 and choice.stopped_at == 8 and choice.stop_verdict == "worse"  # the known answers
    assert {table[f"test_study[{k}-fp32-eager]"]["sequence"] for k in (4, 8, 16)} == {"not tested", "stop", "chosen"}
    assert table["test_study[16-fp32-eager]"]["sequence"] == "chosen"
    assert [(c["method"], c["rank"], c["stopped_at"], c["stop_verdict"], c["tested"])
            for c in collected["bench_choices"]["mine"]] == \
        [("svd", choice.rank, choice.stopped_at, choice.stop_verdict, [k for k, _ in choice.tested])]
    assert (pytester.path / "results" / "figures" / "mine_forest.png").is_file()


def test_gate_fails_a_model_newly_decided_worse(pytester, monkeypatch, capsys):
    base = run_study(pytester, monkeypatch, "base.json")
    head = run_study(pytester, monkeypatch, "head.json", FLIP16="0.2")
    assert cli(["gate", str(base), str(head), "--allow-different-machine"]) == 1
    lines = capsys.readouterr().out.splitlines()
    verdicts = [line.split()[-1] for line in lines if " verdict " in line]
    assert verdicts == ["ok", "ok", "FAIL"]  # ranks 4 and 8 were worse already; 16 became worse
    # The same file: every verdict as it was (the one-round times cannot tell, so they may not fail it here).
    assert cli(["gate", str(base), str(base), "--undecided", "pass"]) == 0
    assert [line.split()[-1] for line in capsys.readouterr().out.splitlines() if " verdict " in line] == ["ok"] * 3


def test_collect_refuses_a_changed_sidecar_in_one_line(pytester, monkeypatch, capsys):
    out = run_study(pytester, monkeypatch)
    info, outcomes = stored(out)["test_study[8-fp32-eager]"]
    save_file({"outcomes": ~outcomes}, str(out.parent / info["outcomes"]))  # a well-formed file, other answers
    capsys.readouterr()
    assert cli(["collect", str(out), "--out", str(pytester.path / "results")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "test_study[8-fp32-eager]" in err and "SHA-256" in err, err


def test_one_study_is_decided_at_one_margin(pytester, monkeypatch):
    out = run_study(pytester, monkeypatch)
    bench = json.loads(out.read_text())
    bench["benchmarks"][1]["extra_info"]["margin_points"] = 1.0
    out.write_text(json.dumps(bench))
    with pytest.raises(UserError, match=r"study mine were run with margins \[1.0, 2.0\] points"):
        collect(pytester.path / "results", [out])


# ---- the format itself -----------------------------------------------------------------------------------------

def written(tmp_path, outcomes=None):
    """(json path, extra_info) of one benchmark whose outcomes were written."""
    outcomes = np.array([[True, False, True, True]]) if outcomes is None else outcomes
    path = tmp_path / "run.json"
    info = bench_outcomes.write(path, "t.py::test[a/b]", outcomes)
    return path, {**info, "n_seeds": len(outcomes), "accuracy": float(outcomes.mean())}


def test_round_trip(tmp_path):
    outcomes = np.random.default_rng(1).random((3, 50)) < 0.5
    path, info = written(tmp_path, outcomes)
    assert info["outcomes"].startswith("run.outcomes/") and "/" not in info["outcomes"].split("/", 1)[1]
    assert np.array_equal(bench_outcomes.read(path, "t.py::test[a/b]", info), outcomes)
    assert np.array_equal(load_file(str(tmp_path / info["outcomes"]))["outcomes"], outcomes)
    again = bench_outcomes.write(path, "t.py::test[a/b]", outcomes)
    assert again == {k: info[k] for k in again}  # the same bytes whoever writes them


def _rewrite(tensors, metadata):
    def change(file, info):
        save_file(tensors, str(file), metadata=metadata)
        info["outcomes_sha256"] = hashlib.sha256(file.read_bytes()).hexdigest()
    return change


@pytest.mark.parametrize("change, message", [
    (lambda file, info: info.update(outcomes="../run.outcomes/x.safetensors"), "not a file of the sidecar folder"),
    (lambda file, info: info.update(outcomes="elsewhere/x.safetensors"), "not a file of the sidecar folder"),
    (lambda file, info: file.unlink(), "is missing"),
    (lambda file, info: file.write_bytes(file.read_bytes() + b" "), "does not have the SHA-256"),
    (lambda file, info: info.update(outcomes_sha256=hashlib.sha256(b"x").hexdigest()) or file.write_bytes(b"x"),
     "not a readable outcomes file"),
    (_rewrite({"outcomes": np.ones((1, 4), bool)}, {"outcomes": json.dumps({"format": "other"})}),
     "not this benchmark's outcomes file"),
    (_rewrite({"outcomes": np.ones((1, 4), np.uint8)}, {"outcomes": json.dumps(
        {"format": bench_outcomes.FORMAT, "fullname": "t.py::test[a/b]"})}), "holds uint8 of shape"),
    (lambda file, info: info.update(n_seeds=2), r"expected bool of shape \(n_seeds = 2"),
    (lambda file, info: info.update(accuracy=0.5), "gives accuracy 0.75 but extra_info.accuracy is 0.5"),
])
def test_a_bad_sidecar_is_refused_in_one_line(tmp_path, change, message):
    path, info = written(tmp_path)
    change(tmp_path / info["outcomes"], info)
    with pytest.raises(UserError, match=message) as e:
        bench_outcomes.read(path, "t.py::test[a/b]", info)
    assert "\n" not in str(e.value) and "t.py::test[a/b]" in str(e.value)


def test_a_sidecar_too_large_is_not_read(tmp_path, monkeypatch):
    path, info = written(tmp_path)
    monkeypatch.setattr(bench_outcomes, "MAX_BYTES", 16)
    with pytest.raises(UserError, match="more than 16"):
        bench_outcomes.read(path, "t.py::test[a/b]", info)


@pytest.mark.parametrize("values, message", [
    (np.array([1, 0, 1]), "must be a boolean array"), (np.zeros((2, 2, 2), bool), "must be a boolean array"),
    (np.zeros(0, bool), "must be a boolean array"), (np.zeros((40, 3), bool), "at most 39 seeds"),
])
def test_outcomes_must_be_booleans_per_example(values, message):
    with pytest.raises(ValueError, match=message):
        bench_outcomes.as_matrix(values, "accuracy")
