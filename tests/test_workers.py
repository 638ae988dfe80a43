"""Sweep workers end with their driver, however it ends (SIGTERM, SIGINT, SIGKILL), and leave no job folder behind;
a Ray address that does not answer is one line, not minutes of retries."""
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from test_cli import root  # noqa: F401 (the fixture data root)
from test_sweep import REPO, tiny  # noqa: F401 (tiny: the tiny profile file)


def command(tiny, root, out, *extra):
    return [sys.executable, "-m", "lowrank_bench.cli", "train", "svd", "--profile", str(tiny), "--device", "cpu",
            "--data-root", str(root), "--out", str(out), *extra]


def job_folders(tmp):
    return sorted(p.name for p in tmp.glob("lowrank-job-*"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_workers_and_job_folders_end_with_the_driver(root, tiny, tmp_path, sig):
    tmp = tmp_path / "tmp"  # the jobs' temporary folders go here (TMPDIR), to be counted
    tmp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp)}
    slow = ["--set", "svd.baseline.epochs=100000", "--set", "svd.baseline.patience=100000"]  # minutes of work
    driver = subprocess.Popen(command(tiny, root, tmp_path / "out", "--jobs", "2", *slow), cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    children = []
    try:
        deadline = time.time() + 180
        while len(job_folders(tmp)) < 2 and time.time() < deadline and driver.poll() is None:
            time.sleep(0.1)
        assert len(job_folders(tmp)) == 2, "two workers never got busy"
        children = psutil.Process(driver.pid).children(recursive=True)  # the workers and the resource tracker
        assert len(children) >= 2
        driver.send_signal(sig)
        _, err = driver.communicate(timeout=60)
        assert "Traceback" not in err
        _, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, f"outlived their driver: {alive}"
        assert job_folders(tmp) == []
    finally:
        for p in [driver, *children]:
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                p.kill()
        driver.wait()


def test_a_ray_address_that_does_not_answer_is_one_line(root, tiny, tmp_path):
    proc = subprocess.run(command(tiny, root, tmp_path / "out", "--executor", "ray", "--ray-address", "127.0.0.1:1"),
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: --ray-address 127.0.0.1:1: no Ray cluster answers there")
    assert not (Path(tmp_path) / "out" / "tiny" / "jobs").exists()
