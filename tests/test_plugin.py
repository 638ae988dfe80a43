"""The pytest plugin and the public API as a user meets them: the package installed into a fresh virtual
environment outside the repository, the README's test file in an empty folder, and the commands the README names.

The virtual environment sees the system's packages (torch, pytest-benchmark, pip, setuptools, ...) and gets this
checkout installed without dependencies, so it takes seconds. Every command runs without PYTHONPATH, from a folder
outside the repository: only the installed package can be found. The fixture's own cases run inline (pytester).
"""
import json
import os
import re
import site
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
# pytester drops the modules an inline run imported; torch registers its operator libraries once per process, so
# the lazily imported torch._dynamo (which the fixture's profiling pulls in) must be imported out here, once.
import torch._dynamo  # noqa: F401

from lowrank_bench.core.benchjson import COMMON_EXTRA_INFO, check_study_extra_info, load_bench
from lowrank_bench.core.spec import STUDIES
from lowrank_bench.fixtures.build import build_data_root

pytest_plugins = ["pytester"]  # the fixture's own tests below run pytest inline on tiny files
REPO = Path(__file__).resolve().parents[1]
UNRELATED = '''\
import sys

import pytest


@pytest.mark.parametrize("n", [10, 100])
def test_sum(benchmark, n):
    assert benchmark(sum, range(n)) == n * (n - 1) // 2


def test_plain():
    assert "torch" not in sys.modules  # nothing in this session imports torch, the plugin included
'''

# The user's own test beside the README's, in the same session: their `models` and `core` stay theirs.
THEIRS = '''\
import core
import models


def test_their_packages_are_theirs():
    assert (models.WHOSE, core.WHOSE) == ("the user's models", "the user's core")
'''


def readme_test_file():
    """The first Python block of the README's "Benchmark your own model" section."""
    section = (REPO / "README.md").read_text().split("## Benchmark your own model\n", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def run(cmd, cwd, env, check=True):
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, f"{cmd} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """(python of a fresh venv with this package's wheel installed, the environment to run it in, a scratch folder).

    The wheel is built offline from a copy of what the package ships (so the build writes nothing into the
    checkout), by the interpreter's own setuptools (the `test` extra's), and installed without dependencies into a
    venv of its own. For torch, pytest and the rest, a .pth file there lists the system's site-packages folders:
    their packages are found, but no .pth file in them runs, so an editable install of a checkout (a .pth file and
    its finder) stays hidden. Every command runs without PYTHONPATH, from a folder outside the repository: only the
    wheel's package can be found.
    """
    root = tmp_path_factory.mktemp("user")
    src = root / "src"
    folders = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values()
    for name in ("pyproject.toml", "README.md"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes((REPO / name).read_bytes())
    for folder in folders:
        for path in (REPO / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                (src / path.relative_to(REPO)).parent.mkdir(parents=True, exist_ok=True)
                (src / path.relative_to(REPO)).write_bytes(path.read_bytes())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", root / "dist", src], root, env)
    wheel, = (root / "dist").glob("lowrank_bench-*.whl")
    run([sys.executable, "-m", "venv", "--without-pip", root / "venv"], root, env)
    python = root / "venv" / "bin" / "python"
    purelib = run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], root, env).stdout
    system = [*site.getsitepackages(), *([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])]
    (Path(purelib.strip()) / "system-site-packages.pth").write_text("".join(f"{folder}\n" for folder in system))
    run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", "--no-index",
         "--force-reinstall", wheel], root, env)
    env["PATH"] = f"{root / 'venv' / 'bin'}{os.pathsep}{env['PATH']}"
    return python, env, root


@pytest.fixture(scope="module")
def readme_run(venv):
    """The README's test file run in a folder that holds nothing else but the user's own `models` and `core`
    packages and a test of theirs: (folder, pytest's result)."""
    python, env, root = venv
    user = root / "mine"
    for package in ("models", "core"):
        (user / package).mkdir(parents=True)
        (user / package / "__init__.py").write_text(f'WHOSE = "the user\'s {package}"\n')
    (user / "test_theirs.py").write_text(THEIRS)
    (user / "test_mine.py").write_text(readme_test_file())
    return user, run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--benchmark-json=out.json"], user,
                     env)


def test_only_the_wheels_package_can_be_found(venv):
    """One import name, from the wheel in the venv: no top-level `models` or `core`, nothing of the checkout."""
    python, env, root = venv
    code = ("import importlib.util, sys, lowrank_bench.plugin, lowrank_bench.models\n"
            "print(lowrank_bench.plugin.__file__, lowrank_bench.models.__file__, *lowrank_bench.__path__)\n"
            "print([n for n in ('models', 'core', 'training', 'timing', 'bench', 'report', 'fixtures') "
            "if importlib.util.find_spec(n)])\n"
            "print(*sys.path)")
    where, top_level, path = run([python, "-c", code], root, env).stdout.splitlines()
    assert all(Path(p).is_relative_to(root / "venv") for p in where.split()), where
    assert top_level == "[]" and not any(Path(p).resolve().is_relative_to(REPO) for p in path.split()), path


def test_readme_file_uses_only_the_public_api():
    imports = re.findall(r"^(?:from (\S+) import|import (\S+))", readme_test_file(), re.M)
    assert {a or b for a, b in imports} == {"pytest", "torch", "lowrank_bench"}


def test_readme_file_passes_and_writes_the_contract(readme_run):
    user, result = readme_run
    assert re.search(r"\b4 passed\b", result.stdout), result.stdout  # the README's 3 and the user's own
    bench = load_bench(user / "out.json")
    check_study_extra_info(bench, "out.json")  # the built-in suites' contract, for a study of the user's own
    info = {b["name"]: b["extra_info"] for b in bench["benchmarks"]}
    assert sorted(info) == ["test_mlp[16-fp32-eager]", "test_mlp[64-fp32-eager]", "test_mlp[None-fp32-eager]"]
    assert all(set(COMMON_EXTRA_INFO) <= set(e) for e in info.values())
    dense, k16 = info["test_mlp[None-fp32-eager]"], info["test_mlp[16-fp32-eager]"]
    # Independent oracles: Linear(512, 512) then Linear(512, 10); rank k: k(512 + 512) weights and the bias.
    assert dense["params_total"] == 512 * 512 + 512 + 512 * 10 + 10 == dense["reference_params_total"]
    assert k16["params_total"] == 16 * 1024 + 512 + 512 * 10 + 10
    assert dense["flops"] == 2 * (512 * 512 + 512 * 10) == k16["reference_flops"]
    assert k16["flops"] == 2 * (16 * 1024 + 512 * 10)
    assert k16["flop_ratio"] == k16["flops"] / dense["flops"] and dense["flop_ratio"] == 1
    assert dense["accuracy"] == 1.0 == dense["accuracy_timed"]  # the dense model agrees with itself
    assert (k16["study"], k16["method"], k16["rank"], k16["kind"], k16["batch_size"], k16["dtype"], k16["mode"]) == \
        ("mlp", "svd", 16, "infer", 256, "fp32", "eager")
    assert k16["weights_bytes"] == 4 * k16["params_total"] and k16["peak_mem_bytes"] >= k16["weights_bytes"]
    assert {b["group"] for b in bench["benchmarks"]} == {"mlp-b256-fp32-eager"}
    assert bench["machine_info"]["torch"] and bench["machine_info"]["threads"] >= 1  # the plugin's machine facts


def test_compare_collect_and_gate_read_it(venv, readme_run):
    python, env, _ = venv
    user, _ = readme_run
    table = run([python, "-m", "pytest_benchmark", "compare", "out.json"], user, env).stdout
    assert all(f"test_mlp[{k}-fp32-eager]" in table for k in ("None", "16", "64")) and "Median" in table, table
    said = run(["lowrank-bench", "collect", "out.json"], user, env).stdout
    assert said.startswith("collected mlp with 1 benchmark file(s)"), said
    out = user / "results" / "out"  # a folder named after the file: a user's study is no profile's
    rows = (out / "tables" / "mlp_bench.md").read_text().splitlines()[2:]
    assert [r.split(" | ")[:2] for r in rows] == [["| dense", "-"], ["| svd", "16"], ["| svd", "64"]]
    assert "22,026" in rows[1]  # k16's parameter count, as the JSON has it
    assert {p.name for p in (out / "figures").iterdir()} == {
        f"mlp_{f}.{e}" for f in ("latency", "accuracy", "forest") for e in ("png", "pdf")}
    # The README's decisions: rank 64 within half a point of dense and chosen, rank 16 worse, where testing stopped.
    assert [r.split(" | ")[-2:] for r in rows] == [["-", "- |"], ["worse", "stop |"], ["within", "chosen |"]]
    gate = run(["lowrank-bench", "gate", "out.json", "out.json"], user, env)
    assert "gate: ok, 0 of " in gate.stdout and "test_mlp[16-fp32-eager]" in gate.stdout


def test_plugin_does_nothing_to_a_session_without_its_fixture(venv):
    """An unrelated test file runs the same with the plugin as with `-p no:lowrank`: same tests, same output,
    same JSON but for the times, no torch imported."""
    python, env, root = venv
    folder = root / "unrelated"
    folder.mkdir()
    (folder / "test_unrelated.py").write_text(UNRELATED)
    numbers = lambda text: re.sub(r"[\d.,;]+", "N", re.sub(r"[ -]+", " ", text))  # noqa: E731  times, widths
    outputs, files = [], []
    for off in ([], ["-p", "no:lowrank"]):
        base = [python, "-m", "pytest", "-p", "no:cacheprovider", *off]
        listed = run([*base, "--collect-only", "-q"], folder, env).stdout
        ran = run([*base, "-q", f"--benchmark-json=out{len(files)}.json"], folder, env).stdout
        outputs.append((numbers(listed), numbers(ran)))
        files.append(json.loads((folder / f"out{len(files)}.json").read_text()))
    assert outputs[0] == outputs[1]
    assert "N passed" in outputs[0][1] and "test_sum[N]" in outputs[0][0] and "Median" in outputs[0][1]
    same = lambda f: (sorted(f["machine_info"]), [(b["name"], b["group"], b["params"], b["extra_info"], b["options"])
                                                  for b in f["benchmarks"]])  # noqa: E731
    assert same(files[0]) == same(files[1])
    assert "torch" not in files[0]["machine_info"]


# ---- the fixture in one process (pytester), on a tiny model -----------------------------------------------------

TINY = '''\
import pytest
import torch

dense = torch.nn.Linear(16, 4)
x = torch.ones(8, 16)


def test_tiny(lowrank):
    lowrank(dense, x, reference=dense, study="tiny", method="dense", {arguments})
'''


def run_tiny(pytester, arguments, *options):
    pytester.makepyfile(TINY.replace("{arguments}", arguments))
    out = pytester.path / "out.json"
    result = pytester.runpytest("-p", "no:cacheprovider", f"--benchmark-json={out}",
                                "--benchmark-min-rounds=1", "--benchmark-max-time=0", *options)
    return result, (load_bench(out) if out.exists() and out.stat().st_size else None)


def test_dtypes_and_modes_parametrize_and_convert(pytester):
    accuracy = "accuracy=lambda m: float(m(x).dtype == torch.bfloat16)"
    result, bench = run_tiny(pytester, accuracy, "--dtypes=fp32,bf16", "--modes=eager")
    result.assert_outcomes(passed=2)
    info = {b["name"]: b["extra_info"] for b in bench["benchmarks"]}
    fp32, bf16 = info["test_tiny[fp32-eager]"], info["test_tiny[bf16-eager]"]
    assert (fp32["accuracy"], bf16["accuracy"]) == (0.0, 1.0)  # the accuracy function gets the model as timed
    assert 2 * bf16["weights_bytes"] == fp32["weights_bytes"] == 4 * (16 * 4 + 4)
    assert {b["group"] for b in bench["benchmarks"]} == {"tiny-b8-fp32-eager", "tiny-b8-bf16-eager"}


def test_accuracy_over_seeds_stands_beside_the_timed_models(pytester):
    over = 'over_seeds={"accuracy": 0.75, "accuracy_ci95": 0.05, "n_seeds": 3, "seed_timed": 2}'
    result, bench = run_tiny(pytester, f"rank=None, accuracy=0.5, {over}")
    result.assert_outcomes(passed=1)
    info = bench["benchmarks"][0]["extra_info"]
    assert [info[k] for k in ("accuracy", "accuracy_ci95", "n_seeds", "seed_timed", "accuracy_timed")] == \
        [0.75, 0.05, 3, 2, 0.5]


def test_a_built_in_study_name_takes_that_studys_own_fields(pytester):
    own = ", ".join(f'"{f}": 1' for f in STUDIES["svd"].extra_info)
    pytester.makepyfile(TINY.replace('study="tiny", ', 'study="svd", ').replace("{arguments}",
                                                                               f"extra_info={{{own}}}"))
    pytester.runpytest("-p", "no:cacheprovider", "--benchmark-disable").assert_outcomes(passed=1)


def test_an_accuracy_dict_adds_its_fields(pytester):
    result, bench = run_tiny(pytester, 'rank=None, accuracy=lambda m: {"accuracy": 0.25, "cosine": 1.0}, '
                                       'extra_info={"note": "mine"}')
    result.assert_outcomes(passed=1)
    info = bench["benchmarks"][0]["extra_info"]
    assert (info["accuracy"], info["accuracy_timed"], info["cosine"], info["note"]) == (0.25, 0.25, 1.0, "mine")


@pytest.mark.parametrize("arguments, message", [
    ("rank=0", "rank must be a positive int or None, got 0"),
    ('extra_info={"flops": 1}', r"extra_info may not set \['flops'\]"),
    ("accuracy=1.5", r"accuracy must be a fraction in \[0, 1\], got 1.5"),
    ('accuracy=lambda m: {"acc": 1}', "returned \\['acc'\\], without the key 'accuracy'"),
    ('over_seeds={"accuracy": 1}', r"over_seeds must hold exactly \['accuracy', 'accuracy_ci95', 'n_seeds', "
                                   r"'seed_timed'\] \(and optionally 'outcomes'\), got \['accuracy'\]"),
    ("accuracy=torch.ones(2, 3, dtype=torch.bool)", "accuracy must hold one outcome per example"),
    ("accuracy=torch.ones(3)", r"accuracy must be a boolean array, one entry per example"),
    ('accuracy=torch.ones(3, dtype=torch.bool), over_seeds={"accuracy": 1.0, "accuracy_ci95": None, "n_seeds": 2, '
     '"seed_timed": 0}', r"with over_seeds, give every seed's outcomes as over_seeds\['outcomes'\]"),
    ('over_seeds={"accuracy": 0.5, "accuracy_ci95": None, "n_seeds": 2, "seed_timed": 0, '
     '"outcomes": torch.ones(2, 3, dtype=torch.bool)}', r"it must have n_seeds = 2 rows whose mean is"),
])
def test_bad_arguments_fail_the_test_with_the_reason(pytester, arguments, message):
    result, _ = run_tiny(pytester, arguments)
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([f".*{message}.*"])


def test_a_built_in_study_name_is_refused(pytester):
    pytester.makepyfile(TINY.replace('study="tiny", ', 'study="svd", ').replace("{arguments}", "rank=None"))
    result = pytester.runpytest("-p", "no:cacheprovider", "--benchmark-disable")
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([".*study 'svd' is a built-in study's name; give yours another.*"])


def test_public_api_loads_torch_only_when_used():
    code = ("import sys, lowrank_bench\n"
            "assert 'torch' not in sys.modules  # the `lowrank-bench` command and the plugin import the package\n"
            "from lowrank_bench import factorize, measure\n"
            "print(sorted(lowrank_bench.__all__), factorize.__module__, measure.__module__)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = run([sys.executable, "-c", code], REPO, env).stdout.split()
    assert out == ["['LoRAConfig',", "'METHODS',", "'Measurement',", "'add_lora',", "'calibrate',", "'factorize',",
                   "'measure',", "'merge_lora',", "'paired_difference',", "'verdict']",
                   "lowrank_bench.models.methods", "lowrank_bench.training.measure"]


# The smoke profile cut to seconds (fixture data of 4 records per class), for a run from the user's folder.
SMOKE_CUT = [
    "seeds=[0]", "data.stop_fraction=0.2", "data.hoda_train=30", "data.hoda_test=20", "data.hoda_decide=8",
    "data.fashion_train=30", "data.fashion_test=20", "data.fashion_decide=8", "data.imdb_train=6", "data.imdb_test=8",
    "data.imdb_decide=2", "svd.model.hidden=[24, 16]", "svd.ranks=[2]", 'svd.methods=["svd"]', "svd.baseline.epochs=1",
    "svd.baseline.batch_size=8", "svd.retrain.batch_size=8", "svd.bench.batch_sizes=[4]", "svd.bench.rounds=1",
    "lora.ranks=[1]", "lora.train.epochs=1", "lora.train.batch_size=8", "lora.bench.batch_sizes=[4]",
    "lora.bench.rounds=1", "attention.model={d_model = 16, n_heads = 2, d_ff = 32}", "attention.ranks=[2]",
    'attention.methods=["svd"]', 'attention.inits=["random"]', 'attention.embeddings=["learned"]',
    "attention.train.epochs=1", "attention.train.batch_size=4", "attention.bench.batch_sizes=[2]",
    "attention.bench.rounds=1"]


def files(folder):
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_run_from_the_users_folder_writes_there_only(venv, readme_run):
    """`lowrank-bench run` in the user's folder, whose own pytest configuration would break the suites if they read
    it: every result lands in its results/, the relative --data-root is read from there, and nothing is written
    into the installed package (no cache, no bytecode) or the checkout."""
    python, env, root = venv
    user, _ = readme_run
    data = build_data_root(root / "data", per_class=4)
    env = {**env, "LOWRANK_CACHE": str(root / "cache")}
    (user / "pytest.ini").write_text("[pytest]\naddopts = -p no:lowrank\n")  # the suites need the plugin
    installed = root / "venv"
    before = {"venv": files(installed), "user": files(user), "checkout": files(REPO / "results")}
    try:
        result = run(["lowrank-bench", "run", "--profile", "smoke", "--no-report", "--device", "cpu", "--jobs", "1",
                      "--data-root", os.path.relpath(data, user), "--offline", *[f"--set={s}" for s in SMOKE_CUT]],
                     user, env)
    finally:
        (user / "pytest.ini").unlink()
    out = user / "results" / "smoke"
    assert f"results in {out}" in result.stdout, result.stdout
    new = files(user) - before["user"]
    assert new and all(p.startswith("results/smoke/") for p in new), new
    assert {f"results/smoke/{s}/summary.json" for s in STUDIES} | {"results/smoke/bench.json"} <= new
    assert "results/smoke/tables/svd_latency.md" in new
    bench = load_bench(out / "bench.json")
    assert bench["benchmarks"] and all(b["fullname"].startswith("bench/test_") for b in bench["benchmarks"])
    assert files(installed) == before["venv"] and files(REPO / "results") == before["checkout"]


PAIRED = '''\
import torch

torch.manual_seed(0)
dense = torch.nn.Linear(64, 64)
factored = torch.nn.Sequential(torch.nn.Linear(64, 4, bias=False), torch.nn.Linear(4, 64))
x = torch.ones(32, 64)
w, a, b = dense.weight.detach(), factored[0].weight.detach(), factored[1].weight.detach()


def test_paired(lowrank):
    lowrank(factored, x, reference=dense, study="tiny", method="svd", rank=4,
            ceiling=(lambda: x @ w.T, lambda: (x @ a.T) @ b.T))
'''


def test_the_fixture_times_model_reference_and_ceiling_in_paired_rounds(pytester):
    """The paired rounds land in extra_info (checked against the schema on loading) and their ratios are the
    medians of the per-round ratios of the stored times; pytest-benchmark's own stats of the model stay."""
    pytester.makepyfile(PAIRED)
    out = pytester.path / "out.json"
    pytester.runpytest("-p", "no:cacheprovider", f"--benchmark-json={out}", "--benchmark-min-rounds=3",
                       "--benchmark-max-time=0").assert_outcomes(passed=1)
    b = load_bench(out)["benchmarks"][0]
    e, t = b["extra_info"], {k: np.array(v) for k, v in b["extra_info"]["paired_times"].items()}
    assert sorted(t) == ["ceiling_model", "ceiling_reference", "model", "reference"]
    assert {len(v) for v in t.values()} == {e["paired_rounds"]} and e["paired_rounds"] % 4 == 0
    assert e["paired_rounds"] >= 20 and b["stats"]["rounds"] >= 3 and len(b["stats"]["data"]) == b["stats"]["rounds"]
    speedup = t["reference"] / t["model"]
    assert e["speedup_paired"] == pytest.approx(np.exp(np.median(np.log(speedup))))  # a median of an even count:
    # the geometric mean of the middle two, as a ratio's median is taken on log-times
    assert e["speedup_paired_lower"] <= e["speedup_paired"] <= e["speedup_paired_upper"]
    ceiling = t["ceiling_reference"] / t["ceiling_model"]
    assert e["ceiling_speedup"] == pytest.approx(np.median(ceiling))
    assert e["ceiling_efficiency"] == pytest.approx(np.median(speedup / ceiling))


def test_paired_seconds_and_rounds_set_how_long_the_pairs_last(pytester):
    pytester.makepyfile(PAIRED)
    out = pytester.path / "out.json"
    pytester.runpytest("-p", "no:cacheprovider", f"--benchmark-json={out}", "--benchmark-min-rounds=1",
                       "--benchmark-max-time=0", "--paired-seconds=0", "--paired-rounds=5").assert_outcomes(passed=1)
    assert load_bench(out)["benchmarks"][0]["extra_info"]["paired_rounds"] == 8  # 5, then the rotation's whole turn
    result = pytester.runpytest("-p", "no:cacheprovider", "--paired-rounds=4")  # 4 rounds: no bounds at 95 %
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "--paired-rounds: must be a number >= 5, got '4'" in \
        result.stderr.str()


THREADS_USER = '''\
import torch


def test_first(lowrank):
    inside = []

    class Probe(torch.nn.Linear):
        def forward(self, x):
            inside.append(torch.get_num_threads())
            return super().forward(x)
    model, dense = Probe(8, 8), torch.nn.Linear(8, 8)
    lowrank(model, torch.ones(2, 8), reference=dense, study="tiny", method="mine")
    assert set(inside) == {1}, inside  # timed at $LOWRANK_THREADS
'''
THREADS_PLAIN = '''\
import torch


def test_second(benchmark):
    benchmark.extra_info["threads_seen"] = torch.get_num_threads()
    benchmark(torch.ones(8).sum)
'''


def test_a_plain_benchmark_after_the_fixture_runs_at_the_sessions_thread_count(pytester, monkeypatch):
    """The fixture pins threads for its timed calls only: a user's next test file, with plain `benchmark`, gets
    the thread count the session had before."""
    monkeypatch.setenv("LOWRANK_THREADS", "1")
    pytester.makeconftest("import torch\n\n\ndef pytest_configure(config):\n    torch.set_num_threads(3)\n")
    pytester.makepyfile(test_a_lowrank=THREADS_USER, test_b_plain=THREADS_PLAIN)
    out = pytester.path / "out.json"
    before = torch.get_num_threads()
    try:
        result = pytester.runpytest("-p", "no:cacheprovider", f"--benchmark-json={out}", "--benchmark-min-rounds=1",
                                    "--benchmark-max-time=0")
    finally:
        torch.set_num_threads(before)  # the inline session shares this process
    result.assert_outcomes(passed=2)
    bench = load_bench(out)
    info = {b["name"]: b["extra_info"] for b in bench["benchmarks"]}
    assert info["test_second"]["threads_seen"] == 3
    assert info["test_first[fp32-eager]"]["threads"] == bench["machine_info"]["threads"] == 1  # what it timed at
