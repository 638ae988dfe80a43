"""Byte-level readers: a .cdb whose pixels are worked out by hand, round trips through the fixture writers, and
each kind of damage the readers must refuse."""
import gzip
import re
import struct

import numpy as np
import pytest

from lowrank_bench.fixtures import build
from lowrank_bench.training import formats


def cdb_header(count, labels, *, height=0, width=0, image_type=0):
    counts = np.bincount(labels, minlength=128).tolist()
    return struct.pack("<HBBBBI128IB256s245x", 2005, 8, 4, height, width, count, *counts, image_type, b"by hand")


def test_cdb_pixels_from_hand_written_runs(tmp_path):
    # record 1: label 3, 4 wide, 3 high. Runs alternate background/ink and restart with background on each row.
    rec1 = bytes([0xFF, 3, 4, 3]) + struct.pack("<H", 9) + bytes([1, 2, 1,  # . # # .
                                                               0, 4,  # # # # #   (a 0 background run first)
                                                               2, 0, 0, 2])  # . . # #   (zero runs mid-row)
    # record 2: label 7, 2 wide, 2 high
    rec2 = bytes([0xFF, 7, 2, 2]) + struct.pack("<H", 4) + bytes([2,  # . .
                                                               0, 1, 1])  # # .
    path = tmp_path / "hand.cdb"
    path.write_bytes(cdb_header(2, [3, 7]) + rec1 + rec2)
    images, labels = formats.read_cdb(path)
    assert labels.tolist() == [3, 7]
    np.testing.assert_array_equal(images[0], [[0, 255, 255, 0], [255, 255, 255, 255], [0, 0, 255, 255]])
    np.testing.assert_array_equal(images[1], [[0, 0], [255, 0]])
    assert formats.cdb_header(path.read_bytes()).comment == "by hand"


def test_cdb_fixed_size_records_carry_no_size_bytes(tmp_path):
    rec = bytes([0xFF, 1]) + struct.pack("<H", 4) + bytes([2, 0, 1, 1])  # 2x2: [. .], [# .]
    path = tmp_path / "fixed.cdb"
    path.write_bytes(cdb_header(1, [1], height=2, width=2) + rec)
    images, labels = formats.read_cdb(path)
    np.testing.assert_array_equal(images[0], [[0, 0], [255, 0]])


def test_cdb_round_trip_binary_and_grey(tmp_path):
    images, labels = build.hoda_images(2, seed=0)
    got, got_labels = formats.read_cdb(build.write_cdb(tmp_path / "b.cdb", images, labels))
    assert got_labels.tolist() == labels.tolist()
    assert all(np.array_equal(a, b) for a, b in zip(got, images))

    rng = np.random.default_rng(0)
    grey = [rng.integers(0, 256, (h, w), dtype=np.uint8) for h, w in ((3, 5), (7, 2), (1, 1))]
    path = build.write_cdb(tmp_path / "g.cdb", grey, [0, 1, 2], grey=True)
    assert formats.cdb_header(path.read_bytes()).image_type == 1
    got, _ = formats.read_cdb(path)
    assert all(np.array_equal(a, b) for a, b in zip(got, grey))


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:-5], "truncated"),
    (lambda b: b[:1000], "header"),
    (lambda b: b[:1024] + b"\x00" + b[1025:], "not 0xff"),
    (lambda b: b + b"\xff", "after the last"),
    (lambda b: b[:10] + struct.pack("<I", 99) + b[14:], "per-label counts"),
])
def test_cdb_damage_is_refused(tmp_path, damage, message):
    path = tmp_path / "bad.cdb"
    path.write_bytes(damage(build.cdb_bytes(*build.hoda_images(1, seed=0))))
    with pytest.raises(formats.FormatError, match=message):
        formats.read_cdb(path)


def test_hoda_mat_round_trip(tmp_path):
    images, labels = build.hoda_images(2, seed=0)
    got, got_labels = formats.read_hoda_mat(build.write_hoda_mat(tmp_path / "h.mat", images, labels))
    assert got_labels.tolist() == labels.tolist()
    assert all(np.array_equal(a, b) and a.dtype == np.uint8 for a, b in zip(got, images))


def test_hoda_mat_damage_is_refused(tmp_path):
    import scipy.io

    scipy.io.savemat(tmp_path / "nolabels.mat", {"Data": np.zeros((2, 2))})
    with pytest.raises(formats.FormatError, match="'labels'"):
        formats.read_hoda_mat(tmp_path / "nolabels.mat")
    (tmp_path / "junk.mat").write_bytes(b"not matlab at all" * 20)
    with pytest.raises(formats.FormatError, match="MATLAB"):
        formats.read_hoda_mat(tmp_path / "junk.mat")


def test_idx_round_trip_and_damage(tmp_path):
    x = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(formats.read_idx(build.write_idx_gz(tmp_path / "x.gz", x), 3), x)
    with pytest.raises(formats.FormatError, match="magic number 0x00000999"):
        formats.read_idx(build.write_idx_gz(tmp_path / "m.gz", x, magic=0x999), 3)
    with pytest.raises(formats.FormatError, match="magic"):  # a labels file where images are expected
        formats.read_idx(build.write_idx_gz(tmp_path / "l.gz", np.zeros(5)), 3)
    (tmp_path / "short.gz").write_bytes(gzip.compress(build.idx_bytes(x)[:-1]))
    with pytest.raises(formats.FormatError, match="body has 23"):
        formats.read_idx(tmp_path / "short.gz", 3)
    (tmp_path / "plain.gz").write_bytes(build.idx_bytes(x))
    with pytest.raises(formats.FormatError, match="gzip"):
        formats.read_idx(tmp_path / "plain.gz", 3)


def test_imdb_labels_and_bad_parquet(tmp_path):
    path = build.write_imdb_parquet(tmp_path / "ok.parquet", ["good", "bad", "fine"], [1, 0, 1])
    assert formats.read_imdb_labels(path).tolist() == [1, 0, 1]
    with pytest.raises(formats.FormatError, match="no column 'label'"):
        formats.read_imdb_labels(build.write_imdb_parquet(tmp_path / "t.parquet", ["a"], [0], columns=("text",)))
    with pytest.raises(formats.FormatError, match=r"values \[2\]"):
        formats.read_imdb_labels(build.write_imdb_parquet(tmp_path / "l.parquet", ["a", "b"], [0, 2]))
    (tmp_path / "cut.parquet").write_bytes(path.read_bytes()[:-20])
    with pytest.raises(formats.FormatError, match="parquet"):
        formats.read_imdb_labels(tmp_path / "cut.parquet")


@pytest.mark.parametrize("texts, message", [
    (["good", "", "fine", ""], "0 NULL and 2 empty texts of 4, the first in row 1"),
    (["good", "fine", None], "1 NULL and 0 empty texts of 3, the first in row 2"),
    (["   ", "\n"], "0 NULL and 2 empty texts of 2, the first in row 0"),
])
def test_imdb_empty_and_null_texts_are_refused_naming_the_first_row(tmp_path, texts, message):
    path = build.write_imdb_parquet(tmp_path / "e.parquet", texts, [0] * len(texts))
    with pytest.raises(formats.FormatError, match=re.escape(message)):
        formats.read_imdb_labels(path)
