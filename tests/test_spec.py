"""The study spec is the one place facts about a study live; the layers point one way."""
import ast
import re
import subprocess
from pathlib import Path

import pytest

from lowrank_bench.core.spec import STUDIES
from lowrank_bench.core.variants import variant_id
from lowrank_bench.training import config
from lowrank_bench.training.studies import MODULES, timed, variants

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "models", "training", "timing", "bench", "report", "lowrank_bench")
DECIDE = "timing.decide"  # timing's statistics: a layer of their own, torch-free, so that the report may use them
# Dict literals whose keys are study names but not about studies: a method that shares its name with a study, and
# a checkpoint's structure, which names the LoRA adapter it holds.
NOT_ABOUT_STUDIES = {("models/methods.py", "svd"), ("training/studies/lora.py", "lora")}


def sources(*packages):
    """The packages' Python files under version control: a report build copies listings into report/build/."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", *packages],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    return [REPO / p for p in sorted(listed) if p.endswith(".py")]


def study_keyed_dicts(path):
    """(line, key) of every dict literal in `path` that has a study's name as a key."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Dict):
            found += [(node.lineno, k.value) for k in node.keys
                      if isinstance(k, ast.Constant) and k.value in STUDIES]
    return found


def test_no_table_keyed_by_study_name_outside_the_spec():
    tables = [f"{p.relative_to(REPO)}:{line} ({key})" for p in sources(*PACKAGES) if p.name != "spec.py"
              for line, key in study_keyed_dicts(p) if (p.relative_to(REPO).as_posix(), key) not in NOT_ABOUT_STUDIES]
    assert tables == [], "facts about a study belong in core/spec.py"


def test_the_grep_finds_a_table(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('ARCH = {"svd": "MLP", "lora": "MLP"}\nfine = {"study": "svd"}\n')
    assert study_keyed_dicts(bad) == [(1, "svd"), (1, "lora")]


def layer(module):
    """The layer an imported module belongs to: the subpackage of lowrank_bench (timing/decide.py its own), or the
    top-level name."""
    parts = module.split(".")
    if parts[0] != "lowrank_bench" or len(parts) < 2 or parts[1] not in PACKAGES:
        return parts[0]
    return DECIDE if parts[1:3] == DECIDE.split(".") else parts[1]


def imports(path):
    tree = ast.parse(path.read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    return {layer(name) for name in names}


@pytest.mark.parametrize("package,forbidden", [
    ("core", {"torch", "models", "training", "timing", DECIDE, "bench", "report", "lowrank_bench"}),
    ("models", {"training", "timing", DECIDE, "bench", "report", "lowrank_bench"}),
    ("training", {"timing", DECIDE, "bench", "report", "lowrank_bench"}),
    ("timing", {"models", "training", "bench", "report", "lowrank_bench"}),
    ("bench", {"report", "lowrank_bench"}),
    ("report", {"torch", "models", "training", "timing", "bench", "lowrank_bench"}),
])
def test_layers_point_one_way(package, forbidden):
    # bench/conftest.py is pytest's entry into the suites, imported by no module: like the command line, it sits on
    # top, declaring the command line's options (lowrank_bench/options.py) and registering the plugin.
    wrong = {p.relative_to(REPO).as_posix(): sorted(imports(p) & (forbidden - {"lowrank_bench"}
                                                                    if p.name == "conftest.py" else forbidden))
             for p in sources(package)}
    assert {p: w for p, w in wrong.items() if w} == {}


def test_timing_statistics_need_no_torch():
    """The gate and the report use timing/decide.py, so it imports no torch and nothing that does."""
    assert imports(REPO / "timing" / "decide.py") & {"torch", "models", "training", "timing", "bench", "report",
                                                      "lowrank_bench"} == set()


def test_every_study_has_a_module_and_a_config_and_a_suite():
    profile = config.load_profile("smoke", "cpu")
    assert list(MODULES) == list(STUDIES)
    for name, spec in STUDIES.items():
        assert hasattr(profile, name) and (REPO / "report" / "templates" / spec.template).is_file()
        assert any(re.search(rf'^STUDY = "{name}"$', p.read_text(), re.M) for p in (REPO / "bench").glob("test_*.py"))


def test_variants_are_enumerated_once_with_the_reference_among_them():
    profile = config.load_profile("smoke", "cpu", ["svd.ranks=[4,8]"])
    keys = variants("svd", profile)
    assert keys[0] == ("svd", "dense", None, None, None)
    assert [k[2] for k in keys if k[1] == "svd"] == [4, 8]
    assert timed("svd", profile)[0] == ("dense", None) and len(timed("svd", profile)) == len(keys)
    lora = variants("lora", profile)
    assert {k[1] for k in lora if k[2] is None} == set(STUDIES["lora"].plain)
    assert [m for m, r in timed("lora", profile) if r is None] == list(STUDIES["lora"].timed)


def test_ids_name_the_method_where_methods_share_a_rank():
    assert variant_id("svd", "svd", 32) == "svd-k32" and variant_id("svd", "dense") == "dense"
    assert variant_id("lora", "lora", 4) == "r4"
    assert variant_id("attention", "svd", 8, "trained", "minilm") == "minilm-trained-svd-k8"
