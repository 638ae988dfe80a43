"""Job files from a results folder are input from strangers: checked against their schema when read, never able to
make the sweep read or write outside its folders, and a job whose file does not fit simply runs again."""
import hashlib
import json
import os
import shutil
import tempfile

import pytest
from test_cli import TINY, root  # noqa: F401 (root: the fixture data root)
from test_sweep import tiny, train  # noqa: F401 (tiny: the tiny profile file)

from lowrank_bench.core.io import UserError
from lowrank_bench import cli
from lowrank_bench.training import config, jobfiles, jobs


@pytest.fixture(scope="module")
def trained(root, tmp_path_factory):
    """A results folder with the tiny profile's svd study trained once (6 jobs), to copy and spoil."""
    folder = tmp_path_factory.mktemp("trained")
    (folder / "tiny.toml").write_text(TINY)
    with pytest.MonkeyPatch.context() as m:
        m.setenv("LOWRANK_CACHE", str(folder / "cache"))
        rc = cli.main(["train", "svd", "--profile", str(folder / "tiny.toml"), "--device", "cpu", "--jobs", "1",
                       "--data-root", str(root), "--out", str(folder / "results")])
    assert rc == 0
    return folder / "results"


@pytest.fixture
def job_tmp(tmp_path, monkeypatch):
    """A private temporary directory for the jobs' folders (tempfile.gettempdir() in this process)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def planned(tiny, root):
    return {j.name: j for j in jobs.plan(config.load_profile(str(tiny), "cpu"), ["svd"], "cpu", root)}


def job_file(out, job):
    return out / "tiny" / "jobs" / f"{job.id}.json"


def test_a_parent_job_file_naming_a_file_outside_writes_nothing_there(root, tiny, trained, tmp_path, capsys,
                                                                     job_tmp):
    """A dense job's file lists `../escape.txt` (with that file's true SHA-256, so the hashes agree): the children
    that start from it must not copy it outside their job folder; the job runs again instead."""
    out = shutil.copytree(trained, tmp_path / "results")
    dense = planned(tiny, root)["svd/seed0/dense"]
    bait = out / "escape.txt"  # out/tiny/../escape.txt
    bait.write_text("attacker's bytes")
    kept = json.loads(job_file(out, dense).read_text())
    kept["files"]["../escape.txt"] = hashlib.sha256(bait.read_bytes()).hexdigest()
    job_file(out, dense).write_text(json.dumps(kept))
    rc, stdout, err = train(capsys, tiny, root, out, "--set", "svd.retrain.lr=0.5")  # its children run again
    assert rc == 0, err
    assert not (job_tmp / "escape.txt").exists() and not list(job_tmp.rglob("escape.txt"))
    assert f"{job_file(out, dense)}: files: '../escape.txt' is not one of this job's files" in err
    assert "the job runs again" in err and err.count(str(job_file(out, dense))) == 1
    assert "../escape.txt" not in job_file(out, dense).read_text()  # replaced by the rerun's own


@pytest.mark.parametrize("field, value, said", [
    ("files", None, "files must be a table"),
    ("row.val_acc", "0.9", "row.val_acc must be a number in [0, 1], got '0.9'"),
    ("row.rank", "4", "row.rank must be 4"),
    ("row.test_acc", 1.5, "row.test_acc must be a number in [0, 1]"),
    ("row.params_total", -1, "row.params_total must not be negative"),
    ("row.checkpoint", "/etc/passwd", "row.checkpoint: '/etc/passwd' is not a plain relative file name"),
    ("extra.note", "x) \\input{/etc/hostname} (", "extra.note must be a number, true/false, null or a plain name"),
    ("id", "0" * 16, "id must be"),
])
def test_a_job_file_of_the_wrong_shape_is_said_in_one_line_and_the_job_runs_again(root, tiny, trained, tmp_path,
                                                                                   capsys, field, value, said):
    out = shutil.copytree(trained, tmp_path / "results")
    k4 = planned(tiny, root)["svd/seed1/svd-k4"]
    kept = json.loads(job_file(out, k4).read_text())
    *parents, leaf = field.split(".")
    node = kept
    for p in parents:
        node = node[p]
    node[leaf] = value
    job_file(out, k4).write_text(json.dumps(kept))
    rc, stdout, err = train(capsys, tiny, root, out)
    assert rc == 0, err
    assert "6 jobs (5 already done)" in stdout
    line = next(x for x in err.splitlines() if str(job_file(out, k4)) in x)
    assert said in line and line.endswith("the job runs again") and "Traceback" not in err
    assert jobfiles.check(json.loads(job_file(out, k4).read_text()), k4, "rewritten") is None
    summary = json.loads((out / "tiny" / "svd" / "summary.json").read_text())
    assert all(isinstance(r["val_acc"], float) for r in summary["seed_rows"])


def test_names_must_stay_inside_their_folder(tmp_path):
    folder = tmp_path / "out"
    (folder / "svd").mkdir(parents=True)
    assert jobfiles.inside(folder, "svd/seed0/k4.json", "w") == folder / "svd" / "seed0" / "k4.json"
    for name in ["../x", "svd/../../x", "/etc/passwd", "svd//x", "./svd/x", "svd\\..\\x", "", None, 3, "svd/"]:
        with pytest.raises(UserError, match="not a plain relative file name"):
            jobfiles.inside(folder, name, "w")
    os.symlink(tmp_path, folder / "link")  # a folder inside that leads out
    with pytest.raises(UserError, match="is a symbolic link"):
        jobfiles.inside(folder, "link/x", "w")


def test_a_worker_result_naming_another_file_is_refused_before_anything_is_written(root, tiny, tmp_path):
    """What a worker (on Ray, another machine) hands back is checked before the driver writes any of it."""
    out = tmp_path / "results"
    k2 = planned(tiny, root)["svd/seed0/svd-k2"]
    row = {"study": "svd", "method": "svd", "rank": 2, "init": None, "embedding": None, "seed": 0, "val_acc": 0.5,
           "test_acc": 0.5, "checkpoint": k2.name, "outcomes": k2.name, "train_dtype": "fp32"}
    good = {"row": row, "extra": {}, "files": {f"{k2.name}.json": b"{}"}, "seconds": 1.0, "log": ""}
    assert jobs.record(out, k2, good)["files"] == {f"{k2.name}.json": hashlib.sha256(b"{}").hexdigest()}
    for name in ["svd/seed0/svd-k4.json", "svd/seed0/svd-k2.json/../../../x", "../../x"]:
        with pytest.raises(UserError):
            jobs.record(out, k2, {**good, "files": {name: b"x"}})
    with pytest.raises(UserError, match="row.seed must be 0"):
        jobs.record(out, k2, {**good, "row": {**row, "seed": 1}})
    assert not out.exists()
