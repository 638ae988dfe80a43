"""The benchmark suites' parametrization, collected (not run) as `pytest bench` would: ids, options, the gate's file."""
import subprocess
import sys
from pathlib import Path

from lowrank_bench.report import gate

REPO = Path(__file__).resolve().parent.parent


def collected_ids(*options):
    proc = subprocess.run([sys.executable, "-m", "pytest", "bench", "--collect-only", "-q", *options],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [line for line in proc.stdout.splitlines() if "::" in line]


def test_every_inference_benchmark_is_timed_through_the_lowrank_fixture():
    """The built-in suites time inference as a user's test does, with the plugin's fixture; the benchmarks of other
    callables (training steps, GEMM chains, one attention block) do without it."""
    code = ("import pytest\n"
            "class Fixtures:\n"
            "    def pytest_collection_finish(self, session):\n"
            "        print(*[f'{i.nodeid} {\"lowrank\" in i.fixturenames}' for i in session.items], sep='\\n')\n"
            "raise SystemExit(pytest.main(['bench', '--collect-only', '-q', '-p', 'no:cacheprovider'], "
            "plugins=[Fixtures()]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    uses = dict(line.rsplit(" ", 1) for line in proc.stdout.splitlines() if line.endswith((" True", " False")))
    assert len({i.split("::")[0] for i in uses}) == 3
    assert {i for i, used in uses.items() if used == "True"} == {i for i in uses if "::test_infer[" in i}


def test_ids_follow_the_profile_and_its_overrides(tmp_path):
    ids = collected_ids("--profile", "smoke", "--set", "svd.ranks=[2, 8]", "--set", "lora.ranks=[3]")
    svd = [i for i in ids if i.startswith("bench/test_hoda_svd.py::test_infer")]
    assert svd == [f"bench/test_hoda_svd.py::test_infer[{m}-b{b}-fp32-eager]"
                   for m in ("dense", "svd-k2", "svd-k8", "whiten-k2", "whiten-k8")
                   for b in (1, 256)]  # a CPU's default axes: fp32 eager; every method at every rank
    assert "bench/test_fashion_lora.py::test_infer[r3-merged-b256-fp32-eager]" in ids
    assert "bench/test_fashion_lora.py::test_train_step[head]" in ids
    assert not any("[svd-k4-" in i or "r1-" in i for i in ids if "attention" not in i)
    mine = tmp_path / "mine.toml"
    mine.write_text("[attention]\nranks = [5]\nbench = { batch_sizes = [7] }\n")
    attention = [i for i in collected_ids("--profile", str(mine)) if "test_imdb_attention.py::test_infer" in i]
    assert attention == ["bench/test_imdb_attention.py::test_infer[dense-b7-fp32-eager]",
                         "bench/test_imdb_attention.py::test_infer[svd-k5-b7-fp32-eager]",
                         "bench/test_imdb_attention.py::test_infer[whiten-k5-b7-fp32-eager]"]


def test_dtypes_and_modes_are_axes_of_every_inference_benchmark(tmp_path):
    """--dtypes/--modes give every combination for dense and each k, with distinct ids; training steps keep one."""
    ids = collected_ids("--profile", "smoke", "--device", "cpu", "--dtypes", "fp32,bf16", "--modes", "eager,compiled",
                        "-k", "hoda")
    for test in ("test_infer", "test_gemm"):
        assert sorted(i for i in ids if f"::{test}[" in i) == sorted(
            f"bench/test_hoda_svd.py::{test}[{m}-b{b}-{d}-{mode}]" for m in ("dense", "svd-k4", "svd-k32", "svd-k128",
                                                                             "whiten-k4", "whiten-k32", "whiten-k128")
            for b in (1, 256) for d in ("fp32", "bf16") for mode in ("eager", "compiled"))
    assert sorted(i for i in ids if "test_train_step" in i) == sorted(
        f"bench/test_hoda_svd.py::test_train_step[{m}]"
        for m in ("dense", "svd-k4", "svd-k32", "svd-k128", "whiten-k4", "whiten-k32", "whiten-k128"))
    mine = tmp_path / "mine.toml"  # the profile's own axes, for one study
    mine.write_text('[attention]\nranks = [5]\nbench = { batch_sizes = [7], dtypes = ["bf16"], modes = ["compiled"] }\n')
    block = [i for i in collected_ids("--profile", str(mine)) if "test_attention_block" in i]
    assert block == ["bench/test_imdb_attention.py::test_attention_block[dense-b7-bf16-compiled]",
                     "bench/test_imdb_attention.py::test_attention_block[svd-k5-b7-bf16-compiled]",
                     "bench/test_imdb_attention.py::test_attention_block[whiten-k5-b7-bf16-compiled]"]


def test_a_bad_axis_value_is_refused_before_anything_runs():
    proc = subprocess.run([sys.executable, "-m", "pytest", "bench", "--collect-only", "-q", "--dtypes", "fp32,int8"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "--dtypes must be a comma-separated list" in proc.stderr


def test_committed_expectations_name_exactly_the_smoke_suite():
    """CI gates results/smoke/bench.json against this file: an id the suite no longer has would be 'missing'."""
    expected = gate.load_expect(REPO / "bench" / "expected" / "smoke.json")
    assert sorted(expected["benchmarks"]) == sorted(collected_ids("--profile", "smoke"))
    accuracy = [e for name, e in expected["benchmarks"].items() if "test_gemm" not in name]
    assert accuracy and all("accuracy_min" in e and "params_total" in e for e in accuracy)
