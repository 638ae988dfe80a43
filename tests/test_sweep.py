"""The sweep on tiny fixture data: stable job ids, resume after a kill, the same checkpoints whatever runs the
jobs (this process, worker processes, Ray), and a failing job that does not stop the others."""
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from test_cli import TINY, root, run  # noqa: F401 (root: the fixture data root)

from lowrank_bench.bench import harness
from lowrank_bench.fixtures import build
from lowrank_bench.training import config, embeddings, jobs
from lowrank_bench.training.studies import svd

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    monkeypatch.setenv("LOWRANK_CACHE", str(tmp_path / "cache"))
    return path


def train(capsys, tiny, root, out, *extra):
    """`train svd` in this process (--jobs 1, where monkeypatches reach the jobs) unless `extra` says otherwise."""
    return run(capsys, "train", "svd", "--profile", tiny, "--device", "cpu", "--data-root", root, "--out", out,
               "--jobs", "1", *extra)


def weights(out):
    """{file name: bytes} of every checkpoint's weights and every job's outcomes under `out`."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(Path(out).rglob("*.safetensors"))}


def ids(tiny, root, *overrides):
    profile = config.load_profile(str(tiny), "cpu", overrides)
    return {j.name: j.id for j in jobs.plan(profile, ["svd", "lora", "attention"], "cpu", root)}


def test_a_setting_changes_the_ids_of_exactly_the_jobs_it_affects_and_their_children(tiny, root):
    base = ids(tiny, root)
    # 2 seeds of: dense and 2 ranks; 6 LoRA rows; per token table dense and 2 starts × 2 ranks
    assert len(base) == 2 * (3 + 6 + 2 * 5) and len(set(base.values())) == len(base)  # ids are unique
    assert ids(tiny, root) == base  # stable
    changed = lambda *o: {name for name, i in ids(tiny, root, *o).items() if base.get(name) != i}
    assert changed("svd.retrain.lr=0.5") == {f"svd/seed{s}/svd-k{k}" for s in (0, 1) for k in (2, 4)}
    assert changed("svd.calibration_samples=7") == set()  # only a calibrated method reads it
    both = 'svd.methods=["svd", "whiten"]'
    before = ids(tiny, root, both)
    calibrated = {name for name, i in ids(tiny, root, both, "svd.calibration_samples=7").items() if before[name] != i}
    assert calibrated == {f"svd/seed{s}/whiten-k{k}" for s in (0, 1) for k in (2, 4)}
    # the dense baseline: itself, its ranks and every LoRA job (they start from it), not attention
    assert changed("svd.baseline.epochs=3") == {n for n in base if n.startswith(("svd/", "lora/"))}
    assert changed("attention.train.lr=0.5") == {n for n in base if n.startswith("attention/")}
    assert changed("svd.margin_points=3") == set()  # a decision over results, not a result
    assert changed("seeds=[0, 1, 5]") == {n.replace("seed0", "seed5") for n in base if "seed0" in n}


@pytest.mark.parametrize("executor", [pytest.param(["--jobs", "3"], id="jobs3"),
                                      pytest.param(["--executor", "ray"], marks=pytest.mark.needs("ray"), id="ray")])
def test_jobs_1_jobs_3_and_ray_give_the_same_checkpoints(root, tiny, tmp_path, capsys, executor):
    # Wide enough that the GEMM and SVD kernels' blocking, which depends on the thread count, changes the bits: with
    # cores // N threads per job instead of one, k64 differed between --jobs 1 and --jobs 3 on 2 cores.
    wide = ["--set", "svd.model.hidden=[512, 256]", "--set", "svd.ranks=[2, 64]",
            "--set", 'svd.methods=["svd", "whiten"]']
    got = {}
    for name, extra in {"1": [], "other": executor}.items():
        rc, _, err = train(capsys, tiny, root, tmp_path / name, *extra, *wide)
        assert rc == 0, err
        got[name] = weights(tmp_path / name / "tiny")
    assert len(got["1"]) == 2 * 10  # weights and outcomes of dense and svd, whiten at k2, k64, for two seeds
    assert got["other"] == got["1"]
    summary = json.loads((tmp_path / "1" / "tiny" / "svd" / "summary.json").read_text())
    variants = [("dense", None), ("svd", 2), ("svd", 64), ("whiten", 2), ("whiten", 64)]
    assert [(r["method"], r["rank"], r["seed"]) for r in summary["seed_rows"]] == [(*v, s) for s in (0, 1)
                                                                                   for v in variants]
    assert [(r["method"], r["rank"], r["n_seeds"]) for r in summary["rows"]] == [(*v, 2) for v in variants]


def test_killed_sweep_resumes_with_the_missing_jobs_only_and_ends_the_same(root, tiny, tmp_path, capsys,
                                                                           monkeypatch):
    rc, _, err = train(capsys, tiny, root, tmp_path / "whole")
    assert rc == 0, err
    out, tmp = tmp_path / "killed", tmp_path / "tmp"  # tmp: the jobs' temporary folders, here and in the child
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    cmd = [sys.executable, "-m", "lowrank_bench.cli", "train", "svd", "--profile", str(tiny), "--device", "cpu",
           "--data-root", str(root), "--out", str(out), "--set", "svd.retrain.epochs=40", "--jobs", "1"]  # slow
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while (len(list((out / "tiny" / "jobs").glob("*.json"))) < 2 or not list(tmp.glob("lowrank-job-*"))) \
            and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list((out / "tiny" / "jobs").glob("*.json")))
    assert 2 <= done < 6, "the kill came too late to leave jobs undone"
    assert list(tmp.glob("lowrank-job-*")), "the killed job's folder (its parent's checkpoint inside) is left"
    rc, stdout, err = train(capsys, tiny, root, out, "--set", "svd.retrain.epochs=40")
    assert rc == 0, err
    assert f"6 jobs ({done} already done)" in stdout
    assert not list(tmp.glob("lowrank-job-*"))  # the resumed run removed the killed one's folder
    rc, stdout, err = train(capsys, tiny, root, out, "--set", "svd.retrain.epochs=40")
    assert rc == 0 and "6 jobs (6 already done)" in stdout
    rc, stdout, err = train(capsys, tiny, root, out, "--set", "svd.retrain.epochs=40", "--force")
    assert rc == 0 and "6 jobs (0 already done)" in stdout
    # interrupted-then-resumed equals uninterrupted (the same settings, run in one go)
    rc, _, err = train(capsys, tiny, root, tmp_path / "whole40", "--set", "svd.retrain.epochs=40")
    assert weights(out / "tiny") == weights(tmp_path / "whole40" / "tiny")


def test_a_failing_job_is_named_with_its_log_and_the_others_finish(root, tiny, tmp_path, capsys, monkeypatch):
    real = svd.run_job

    def broken(job, *args, **kwargs):
        if job.rank == 4 and job.seed == 1:
            raise RuntimeError("boom in k4")
        return real(job, *args, **kwargs)
    monkeypatch.setattr(svd, "run_job", broken)
    out = tmp_path / "results"
    rc, stdout, err = train(capsys, tiny, root, out)
    assert rc == 2
    assert "FAILED svd/seed1/svd-k4: RuntimeError: boom in k4" in err
    log = out / "tiny" / "logs" / "svd" / "seed1" / "svd-k4.log"
    assert str(log) in err and "boom in k4" in log.read_text()
    assert "1 job(s) failed: svd/seed1/svd-k4" in err
    assert len(weights(out / "tiny")) == 2 * 5  # every other job finished: its weights and outcomes
    assert not (out / "tiny" / "svd" / "summary.json").exists()  # no summary from an incomplete study
    monkeypatch.setattr(svd, "run_job", real)
    rc, stdout, err = train(capsys, tiny, root, out)
    assert rc == 0 and "6 jobs (5 already done)" in stdout, err


def test_ray_executor_without_ray_says_how_to_install_it(root, tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    rc, _, err = train(capsys, tiny, root, tmp_path / "out", "--executor", "ray")
    assert rc == 2 and err == "error: --executor ray needs Ray: pip install 'lowrank-bench[ray]'\n"


@pytest.mark.parametrize("jobs", ["0", "two"])
def test_bad_jobs_is_one_line(root, tiny, tmp_path, capsys, jobs):
    rc, _, err = train(capsys, tiny, root, tmp_path / "out", "--jobs", jobs)
    assert rc == 2 and err == f"error: --jobs must be a whole number >= 1 or auto, got {jobs!r}\n"


# ---------------------------------------------------------------------------------------------------- what is run
def other_test_file(root, folder):
    """A copy of `root` whose `Test 20000.cdb` is another valid file (other images)."""
    other = shutil.copytree(root, folder)
    build.write_cdb(other / "hoda" / "Test 20000.cdb", *build.hoda_images(4, seed=99))
    return other


def test_another_data_file_means_other_jobs(root, tiny, tmp_path, capsys):
    """Job ids hash the data files' contents: another valid `Test 20000.cdb` reruns what reads Hoda and nothing
    else, and a pre-defined table only concerns the jobs that load it."""
    other = other_test_file(root, tmp_path / "other")
    base = ids(tiny, root)
    changed = {name for name, i in ids(tiny, other).items() if base[name] != i}
    assert changed == {n for n in base if n.startswith(("svd/", "lora/"))}  # lora starts from svd's dense
    table = shutil.copytree(root, tmp_path / "table")
    build.write_embedding(table / embeddings.FILE, seed=8)
    assert {name for name, i in ids(tiny, table).items() if base[name] != i} == {
        n for n in base if n.startswith("attention/") and "minilm" in n}
    out = tmp_path / "results"
    rc, stdout, err = train(capsys, tiny, root, out)
    assert rc == 0 and "6 jobs (0 already done)" in stdout, err
    rc, stdout, err = train(capsys, tiny, other, out)
    assert rc == 0 and "6 jobs (0 already done)" in stdout, err  # not "already done" with the old numbers


@pytest.mark.parametrize("overrides, key", [
    (["data.hoda_train=4", "data.stop_fraction=0.1"], "data.hoda_train = 4 with data.stop_fraction = 0.1 leaves an "
                                                      "empty stop split"),
    (["data.hoda_train=2", "data.stop_fraction=0.9"], "data.hoda_train = 2 with data.stop_fraction = 0.9 leaves an "
                                                      "empty training split"),
    (["data.hoda_test=1000"], "data.hoda_test = 1000 asks for more than the 40 samples of"),
    (["data.hoda_train=41"], "data.hoda_train = 41 asks for more than the 40 samples of"),
])
def test_a_split_the_data_cannot_hold_is_refused_before_any_job(root, tiny, tmp_path, capsys, overrides, key):
    out = tmp_path / "results"
    rc, stdout, err = train(capsys, tiny, root, out, *[w for o in overrides for w in ("--set", o)])
    assert rc == 2 and err.startswith(f"error: {key}") and err.count("\n") == 1, err
    assert "== sweep" not in stdout and not (out / "tiny" / "logs").exists()


def test_bench_retrains_what_the_profile_asks_for_now(root, tiny, tmp_path, capsys):
    """`pytest bench` with other settings (or data) than the trained results: the suite's training on demand
    compares job ids and retrains what differs, so what is timed and reported is what the profile asks for."""
    out = tmp_path / "results"
    rc, _, err = train(capsys, tiny, root, out)
    assert rc == 0, err
    changed = config.load_profile(str(tiny), "cpu", ["svd.baseline.epochs=1"])
    env = harness.Env(changed, torch.device("cpu"), out / "tiny", root)
    summary = harness.ensure_trained(env, "svd", NoCapture())
    planned = [j for j in jobs.plan(changed, ["svd"], "cpu", root) if j.study == "svd"]
    done = [jobs.stored(env.out, j) for j in planned]
    assert None not in done, "the jobs the profile asks for now were not trained"
    assert summary["seed_rows"] == [r["row"] for r in done]
    sidecar = json.loads((env.out / "svd" / "seed0" / "dense.json").read_text())
    assert sidecar["job_id"] == next(j.id for j in planned if j.name == "svd/seed0/dense")
    assert summary["seed_rows"] == json.loads((env.out / "svd" / "summary.json").read_text())["seed_rows"]
    assert harness.ensure_trained(env, "svd", Fails()) == summary  # now up to date: nothing runs


class NoCapture:
    @contextlib.contextmanager
    def global_and_fixture_disabled(self):
        yield


class Fails:
    def global_and_fixture_disabled(self):
        raise AssertionError("nothing should train")
