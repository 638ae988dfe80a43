"""The sweep on tiny fixture data: stable job ids, resume after a kill, the same checkpoints whatever runs the
jobs (this process, worker processes, Ray), and a failing job that does not stop the others."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli import TINY, root, run  # noqa: F401 (root: the fixture data root)

from training import config, jobs
from training.studies import svd

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    monkeypatch.setenv("LOWRANK_CACHE", str(tmp_path / "cache"))
    return path


def train(capsys, tiny, root, out, *extra):
    return run(capsys, "train", "svd", "--profile", tiny, "--device", "cpu", "--data-root", root, "--out", out, *extra)


def weights(out):
    """{checkpoint name: weight bytes} of every checkpoint under `out`."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(Path(out).rglob("*.safetensors"))}


def ids(tiny, *overrides):
    profile = config.load_profile(str(tiny), "cpu", overrides)
    return {j.name: j.id for j in jobs.plan(profile, ["svd", "lora", "attention"], "cpu")}


def test_a_setting_changes_the_ids_of_exactly_the_jobs_it_affects_and_their_children(tiny):
    base = ids(tiny)
    # 2 seeds of: dense and 2 ranks; 6 LoRA rows; per token table dense and 2 starts × 2 ranks
    assert len(base) == 2 * (3 + 6 + 2 * 5) and len(set(base.values())) == len(base)  # ids are unique
    assert ids(tiny) == base  # stable
    changed = lambda *o: {name for name, i in ids(tiny, *o).items() if base.get(name) != i}
    assert changed("svd.retrain.lr=0.5") == {f"svd/seed{s}/svd-k{k}" for s in (0, 1) for k in (2, 4)}
    assert changed("svd.calibration_samples=7") == set()  # only a calibrated method reads it
    both = 'svd.methods=["svd", "whiten"]'
    calibrated = {name for name, i in ids(tiny, both, "svd.calibration_samples=7").items() if ids(tiny, both)[name] != i}
    assert calibrated == {f"svd/seed{s}/whiten-k{k}" for s in (0, 1) for k in (2, 4)}
    # the dense baseline: itself, its ranks and every LoRA job (they start from it), not attention
    assert changed("svd.baseline.epochs=3") == {n for n in base if n.startswith(("svd/", "lora/"))}
    assert changed("attention.train.lr=0.5") == {n for n in base if n.startswith("attention/")}
    assert changed("svd.tolerance_points=3") == set()  # a decision over results, not a result
    assert changed("seeds=[0, 1, 5]") == {n.replace("seed0", "seed5") for n in base if "seed0" in n}


def test_jobs_1_jobs_3_and_ray_give_the_same_checkpoints(root, tiny, tmp_path, capsys):
    # Wide enough that the GEMM and SVD kernels' blocking, which depends on the thread count, changes the bits: with
    # cores // N threads per job instead of one, k64 differed between --jobs 1 and --jobs 3 on 2 cores.
    wide = ["--set", "svd.model.hidden=[512, 256]", "--set", "svd.ranks=[2, 64]",
            "--set", 'svd.methods=["svd", "whiten"]']
    runs = {"1": ["--jobs", "1", *wide], "3": ["--jobs", "3", *wide]}
    try:
        import ray  # noqa: F401
        runs["ray"] = ["--executor", "ray", *wide]
    except ImportError:
        pass  # .ci/run installs the extra, so CI always runs the Ray leg
    got = {}
    for name, extra in runs.items():
        rc, _, err = train(capsys, tiny, root, tmp_path / name, *extra)
        assert rc == 0, err
        got[name] = weights(tmp_path / name / "tiny")
    assert len(got["1"]) == 10  # dense and svd, whiten at k2, k64, for two seeds
    for name in runs:
        assert got[name] == got["1"], name
    summary = json.loads((tmp_path / "1" / "tiny" / "svd" / "summary.json").read_text())
    variants = [("dense", None), ("svd", 2), ("svd", 64), ("whiten", 2), ("whiten", 64)]
    assert [(r["method"], r["rank"], r["seed"]) for r in summary["seed_rows"]] == [(*v, s) for s in (0, 1)
                                                                                   for v in variants]
    assert [(r["method"], r["rank"], r["n_seeds"]) for r in summary["rows"]] == [(*v, 2) for v in variants]


def test_killed_sweep_resumes_with_the_missing_jobs_only_and_ends_the_same(root, tiny, tmp_path, capsys):
    rc, _, err = train(capsys, tiny, root, tmp_path / "whole")
    assert rc == 0, err
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "lowrank_bench.cli", "train", "svd", "--profile", str(tiny), "--device", "cpu",
           "--data-root", str(root), "--out", str(out), "--set", "svd.retrain.epochs=40"]  # slow enough to kill
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(list((out / "tiny" / "jobs").glob("*.json"))) < 2 and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list((out / "tiny" / "jobs").glob("*.json")))
    assert 2 <= done < 6, "the kill came too late to leave jobs undone"
    rc, stdout, err = train(capsys, tiny, root, out, "--set", "svd.retrain.epochs=40")
    assert rc == 0, err
    assert f"6 jobs ({done} already done)" in stdout
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
    assert len(weights(out / "tiny")) == 5  # every other job finished
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
