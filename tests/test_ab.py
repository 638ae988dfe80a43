"""`lowrank-bench ab` end to end on a tiny user project in a temporary git repository: a toy model that HEAD makes
20 times slower fails, identical sides do not, and what cannot be compared exits 2 with one line. Verdicts are
asserted only where the design guarantees them (a 20-fold difference), never a timing."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOY = '''
import torch

REPEAT = {repeat}


class Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(64, 64)

    def forward(self, x):
        for _ in range(REPEAT):
            x = self.lin(x)
        return x


def test_toy(lowrank):
    torch.manual_seed(0)
    model = Toy()
    lowrank(model, torch.randn(8, 64), reference=Toy(), study="toy", method="dense")
'''
EXTRA = '''

def test_new(lowrank):
    model = torch.nn.Linear(8, 8)
    lowrank(model, torch.randn(2, 8), reference=model, study="toy", method="dense")
'''


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", *args], check=True,
                   capture_output=True)


def ab(cwd, *args):
    """`lowrank-bench ab` of this checkout (its plugin too, through PYTHONPATH) in `cwd`."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "LOWRANK_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "lowrank_bench.cli", "ab", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Commits: `fast` (the toy), `slow` (its forward 20 times the work, and a benchmark only it has), and
    `noplugin` (the toy with the lowrank plugin switched off: a side without ab's protocol)."""
    repo = tmp_path_factory.mktemp("project")
    git(repo, "init", "-q")
    (repo / "test_toy.py").write_text(TOY.format(repeat=1))
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "fast")
    git(repo, "tag", "fast")
    (repo / "test_toy.py").write_text(TOY.format(repeat=20) + EXTRA)
    git(repo, "commit", "-qam", "slow")
    git(repo, "tag", "slow")
    (repo / "pytest.ini").write_text("[pytest]\naddopts = -p no:lowrank\n")
    (repo / "test_toy.py").write_text(TOY.format(repeat=1))
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "noplugin")
    git(repo, "tag", "noplugin")
    git(repo, "checkout", "-q", "fast")
    return repo


def test_a_20_times_slower_head_fails_and_a_benchmark_of_one_side_is_reported(project, tmp_path):
    rc, out, err = ab(project, "fast", "slow", "--budget", "20", "--base-json", tmp_path / "b.json",
                      "--head-json", tmp_path / "h.json")
    assert rc == 1, out + err
    assert "test_toy.py::test_toy[fp32-eager]" in out and " FAIL " in out
    assert "test_toy.py::test_new[fp32-eager]" in out and "only in head" in out
    pairs = int(re.search(r"test_toy\[fp32-eager\] .* (\d+) pairs", out).group(1))
    for side in ("b", "h"):  # each side's JSON holds the rounds of both its processes, one per pair
        bench, = [b for b in json.loads((tmp_path / f"{side}.json").read_text())["benchmarks"] if b["name"] ==
                  "test_toy[fp32-eager]"]
        assert bench["stats"]["rounds"] == pairs
        assert "speedup_paired" not in bench["extra_info"]  # ab's pairs are across commits, not against a reference
    listed = subprocess.run(["git", "-C", str(project), "worktree", "list"], capture_output=True, text=True).stdout
    assert len(listed.splitlines()) == 1  # the temporary worktrees are gone


def test_identical_sides_do_not_fail(project, tmp_path):
    rc, out, err = ab(project, "fast", "fast", "--budget", "5", "--base-json", tmp_path / "b.json",
                      "--head-json", tmp_path / "h.json")
    assert rc in (0, 3), out + err
    assert not [line for line in out.splitlines() if line.startswith("test_toy") and " FAIL " in line]


@pytest.mark.parametrize("revisions, pytest_args, message", [
    (("fast", "nosuchrev"), (), "head 'nosuchrev': not a commit of"),
    (("noplugin", "fast"), (), "base process 1 (noplugin = "),
    (("fast", "fast"), ("-k", "nothing_matches"), "neither side timed a benchmark"),
])
def test_what_cannot_be_compared_exits_2(project, tmp_path, revisions, pytest_args, message):
    rc, out, err = ab(project, *revisions, "--budget", "5", "--processes", "1", "--base-json", tmp_path / "b.json",
                      "--head-json", tmp_path / "h.json", "--", *pytest_args)
    assert rc == 2 and message in err and err.startswith("error: ")
    assert not (tmp_path / "b.json").exists()


def test_outside_a_git_repository_exits_2(tmp_path):
    rc, _, err = ab(tmp_path, "a", "b")
    assert rc == 2 and err.count("\n") == 1 and "not in a git repository" in err


def test_no_process_is_refused(project):
    rc, _, err = ab(project, "fast", "fast", "--processes", "0")
    assert rc == 2 and err == "error: --processes must be 1 or more, got 0\n"


def test_a_dirty_tree_is_named_and_the_commits_compared_as_committed(project, tmp_path):
    (project / "test_toy.py").write_text(TOY.format(repeat=3))
    try:
        rc, out, err = ab(project, "fast", "nosuchrev")
        assert rc == 2  # the revision is checked first
        rc, out, err = ab(project, "fast", "noplugin", "--budget", "5", "--processes", "1")
        assert "uncommitted changes; ab compares the commits as committed" in out
    finally:
        git(project, "checkout", "-q", "--", "test_toy.py")
