"""The benchmark suites' parametrization, collected (not run) as `pytest bench` would: ids, options, the gate's file."""
import subprocess
import sys
from pathlib import Path

from report import gate

REPO = Path(__file__).resolve().parent.parent


def collected_ids(*options):
    proc = subprocess.run([sys.executable, "-m", "pytest", "bench", "--collect-only", "-q", *options],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [line for line in proc.stdout.splitlines() if "::" in line]


def test_ids_follow_the_profile_and_its_overrides(tmp_path):
    ids = collected_ids("--profile", "smoke", "--set", "svd.ranks=[2, 8]", "--set", "lora.ranks=[3]")
    svd = [i for i in ids if i.startswith("bench/test_hoda_svd.py::test_infer")]
    assert svd == [f"bench/test_hoda_svd.py::test_infer[{m}-b{b}]" for m in ("dense", "k2", "k8") for b in (1, 256)]
    assert "bench/test_fashion_lora.py::test_infer[r3-merged-b256]" in ids
    assert "bench/test_fashion_lora.py::test_train_step[head]" in ids
    assert not any("[k4-" in i or "r1-" in i for i in ids if "attention" not in i)
    mine = tmp_path / "mine.toml"
    mine.write_text("[attention]\nranks = [5]\nbench = { batch_sizes = [7] }\n")
    attention = [i for i in collected_ids("--profile", str(mine)) if "test_imdb_attention.py::test_infer" in i]
    assert attention == ["bench/test_imdb_attention.py::test_infer[dense-b7]", "bench/test_imdb_attention.py::test_infer[k5-b7]"]


def test_committed_expectations_name_exactly_the_smoke_suite():
    """CI gates results/smoke/bench.json against this file: an id the suite no longer has would be 'missing'."""
    expected = gate.load_expect(REPO / "bench" / "expected" / "smoke.json")
    assert sorted(expected["benchmarks"]) == sorted(collected_ids("--profile", "smoke"))
    accuracy = [e for name, e in expected["benchmarks"].items() if "test_gemm" not in name]
    assert accuracy and all("accuracy_min" in e and "params_total" in e for e in accuracy)
