"""Untrusted input, round 3: a results folder, a benchmark or job file, a profile setting, an environment variable
or a fixture argument that is not what the harness writes ends as one line naming the file or value and the
field, exit 2, never a traceback, a hang, or a write outside the folder it belongs to."""
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_cli import TINY, root, run  # noqa: F401 (root: the fixture data root)
from test_collect import BENCH, write_results
from test_gate import dump, suite, write_expectations
from test_jobfiles import trained  # noqa: F401 (a results folder with the tiny profile's svd study)
from test_plugin import run_tiny

from lowrank_bench import cli
from lowrank_bench.core import io, proc
from lowrank_bench.core.io import UserError, read_json, write_json
from lowrank_bench.report import collect as collect_mod
from lowrank_bench.report import gate, latex
from lowrank_bench.report.results import load_study
from lowrank_bench.training import config, data, executors, jobs, stats
from lowrank_bench.timing import measure

pytest_plugins = ["pytester"]


def tree_hash(folder):
    """One SHA-256 over every path and file content under `folder`: equal before and after means nothing changed."""
    h = hashlib.sha256()
    for p in sorted(Path(folder).rglob("*")):
        h.update(str(p.relative_to(folder)).encode())
        if p.is_file() and not p.is_symlink():
            h.update(p.read_bytes())
    return h.hexdigest()


def one_line_error(capsys, rc):
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    return err


# ---- 1. no write or removal through a symbolic link --------------------------------------------------------------

@pytest.fixture(scope="module")
def collected_once(tmp_path_factory):
    """A collected results folder (synthetic studies and the sample benchmark file), collected once: the figures
    take seconds to draw."""
    results = tmp_path_factory.mktemp("collected") / "smoke"
    write_results(results)
    collect_mod.collect(results, [BENCH])
    return results


@pytest.fixture
def collected_results(collected_once, tmp_path):
    """A copy of the collected results folder of its own, and a folder outside it."""
    results = tmp_path / "results" / "smoke"
    shutil.copytree(collected_once, results, symlinks=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    return results, outside


@pytest.mark.parametrize("folder", ["tables", "figures"])
def test_collect_and_report_never_write_or_delete_through_a_linked_tables_or_figures_folder(collected_results, folder,
                                                                                          capsys):
    results, outside = collected_results
    listed = sorted(p.name for p in (results / folder).iterdir())
    for name in listed:  # the files collected.json names, as the linked folder's own
        (outside / name).write_text("the user's own file")
    before = tree_hash(outside)
    shutil.rmtree(results / folder)
    os.symlink(outside, results / folder)
    err = one_line_error(capsys, cli.main(["collect", "--profile", "smoke", "--out", str(results.parent),
                                           str(BENCH)]))
    assert f"{results / folder} is a symbolic link" in err
    with pytest.raises(UserError, match="is a symbolic link"):
        latex.build_report(results, results.parent.parent / "build")
    assert tree_hash(outside) == before


@pytest.mark.parametrize("folder", ["tiny/jobs", "tiny/logs/svd/seed0", "tiny/svd/seed0", "tiny"])
def test_train_force_never_writes_through_a_linked_folder_of_the_results(trained, root, tmp_path, folder,  # noqa: F811
                                                                        capsys):
    results = tmp_path / "results"
    shutil.copytree(trained, results)
    (tmp_path / "tiny.toml").write_text(TINY)
    outside = tmp_path / "outside"
    shutil.copytree(results / folder, outside)
    before = tree_hash(outside)
    shutil.rmtree(results / folder)
    os.symlink(outside, results / folder)
    rc = cli.main(["train", "svd", "--profile", str(tmp_path / "tiny.toml"), "--device", "cpu", "--jobs", "1",
                   "--data-root", str(root), "--out", str(results), "--force"])
    assert f"{results / folder} is a symbolic link" in one_line_error(capsys, rc)
    assert tree_hash(outside) == before


def test_a_checkpoint_linked_to_a_system_file_says_to_remove_the_link(tmp_path):
    os.symlink("/etc/hostname", tmp_path / "k4.safetensors")
    with pytest.raises(UserError, match=r"k4.safetensors is a symbolic link \(to /etc/hostname\).*remove the link"):
        jobs.jobfiles.inside(tmp_path, "k4.safetensors", "job svd/seed0/k4's result: files")


# ---- 2. every reader through the schema ----------------------------------------------------------------------

def test_a_summary_without_its_reference_rows_is_refused_not_called_the_dense_baseline(tmp_path):
    write_results(tmp_path, bench=False)
    path = tmp_path / "svd" / "summary.json"
    summary = json.loads(path.read_text())
    summary["rows"] = [r for r in summary["rows"] if r["method"] != "dense"]
    summary["seed_rows"] = [r for r in summary["seed_rows"] if r["method"] != "dense"]
    path.write_text(json.dumps(summary))
    with pytest.raises(UserError, match=r"summary.json: rows: no dense row .*the reference every row is compared"):
        load_study(tmp_path, "svd")


@pytest.mark.parametrize("value", ["float('nan')", "float('inf')", "-float('inf')"])
def test_extra_info_with_nan_or_infinity_fails_the_test_that_gives_it(pytester, value):
    result, bench = run_tiny(pytester, f'extra_info={{"score": {value}}}')
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([r".*lowrank\(\.\.\.\): score: .*is not a finite number.*"])
    assert bench is None


def test_nan_and_infinity_are_never_read_nor_written(tmp_path):
    path = tmp_path / "head.json"
    path.write_text('{"benchmarks": [{"stats": {"median": NaN}}]}')
    with pytest.raises(UserError, match=r"head.json: not valid JSON \(NaN is not a number JSON allows\)"):
        read_json(path)
    with pytest.raises(UserError, match=r"out.json: not written: .*NaN or Infinity is not JSON"):
        write_json(tmp_path / "out.json", {"x": float("inf")})
    assert not (tmp_path / "out.json").exists()


def test_a_benchmark_file_without_its_profile_is_refused_against_a_results_folder(tmp_path):
    write_results(tmp_path, bench=False)
    bench = json.loads(BENCH.read_text())
    for b in bench["benchmarks"]:
        del b["extra_info"]["profile"]
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(bench))
    with pytest.raises(UserError, match=r"bench.json: its benchmarks carry no extra_info.profile"):
        collect_mod.collect(tmp_path, [path])
    collect_mod.collect(tmp_path, [path], across_profiles=True)  # said so: accepted


def test_summaries_carry_no_seed_t_interval_beside_the_bootstrap_bounds():
    rows = [{"study": "svd", "method": "dense", "rank": None, "init": None, "embedding": None, "seed": s,
             "val_acc": 0.9, "test_acc": 0.9, "acc_truncated": None} for s in (0, 1)]  # two seeds that tie
    variants, _ = stats.over_seeds(rows, ("svd", "dense", None, None, None), lambda r: None, 0.01)
    assert variants[0]["test_acc_std"] == 0.0 and not [f for f in variants[0] if f.endswith("_ci95")]


def test_distill_without_its_temperature_is_one_line_naming_the_field(tmp_path):
    write_results(tmp_path, bench=False)
    path = tmp_path / "svd" / "summary.json"
    summary = json.loads(path.read_text())
    summary["retrain"] = {"epochs": 2, "lr": 0.001, "warmup_frac": 0.1, "distill": 0.5}
    path.write_text(json.dumps(summary))
    with pytest.raises(UserError, match=r"summary.json: retrain.distill_temperature: missing, and distill is set"):
        load_study(tmp_path, "svd")


def _head_with(tmp_path, change):
    head = suite()
    change(head)
    return dump(tmp_path / "head.json", head)


def test_an_integer_of_400_digits_is_one_line_exit_2_in_every_reader(tmp_path, capsys):
    big = 10 ** 400
    base = dump(tmp_path / "base.json", suite())
    head = _head_with(tmp_path, lambda h: h["benchmarks"][0]["stats"].update(median=big))
    err = one_line_error(capsys, gate.main([base, head]))
    assert "benchmarks[0].stats.median: an integer of 401 digits" in err
    exp = write_expectations(tmp_path, suite())
    entries = json.loads(exp.read_text())
    next(iter(entries["benchmarks"].values()))["accuracy_min"] = big
    exp.write_text(json.dumps(entries))
    err = one_line_error(capsys, gate.main(["--expect", str(exp), base]))
    assert "accuracy_min: an integer of 401 digits" in err
    write_results(tmp_path / "r", bench=False)
    path = tmp_path / "r" / "svd" / "summary.json"
    path.write_text(path.read_text().replace('"params_total": ', f'"params_total": {big}0', 1))
    with pytest.raises(UserError, match=r"rows\[0\].params_total: an integer of \d+ digits is past the 64-bit"):
        load_study(tmp_path / "r", "svd")


def test_json_nested_200000_deep_is_one_line_exit_2(tmp_path, capsys):
    base = dump(tmp_path / "base.json", suite())
    head = tmp_path / "head.json"
    head.write_text("[" * 200_000 + "]" * 200_000)
    assert "nested too deeply" in one_line_error(capsys, gate.main([base, str(head)]))
    head.write_text('{"a": ' * 100 + "1" + "}" * 100)  # within the parser's reach, past what the harness writes
    assert "nested more than 64 levels" in one_line_error(capsys, gate.main([base, str(head)]))


def test_a_job_file_nested_200000_deep_reruns_the_job(trained, root, tmp_path, capsys):  # noqa: F811
    results = tmp_path / "results"
    shutil.copytree(trained, results)
    (tmp_path / "tiny.toml").write_text(TINY)
    profile = config.load_profile(str(tmp_path / "tiny.toml"), "cpu")
    planned = jobs.plan(profile, ["svd"], "cpu", root)
    path = jobs.result_path(results / "tiny", planned[0])
    path.write_text("[" * 200_000 + "]" * 200_000)
    assert jobs.stored(results / "tiny", planned[0]) is None
    err = capsys.readouterr().err
    assert "nested too deeply" in err and "the job runs again" in err
    rc = cli.main(["train", "svd", "--profile", str(tmp_path / "tiny.toml"), "--device", "cpu", "--jobs", "1",
                   "--data-root", str(root), "--out", str(results)])
    assert rc == 0 and read_json(path)["id"] == planned[0].id


@pytest.mark.parametrize("value, expected", [
    ("0", r"\$LOWRANK_THREADS=0: 0 is not an integer >= 1"),
    ("-1", r"\$LOWRANK_THREADS=-1: -1 is not an integer >= 1"),
    ("abc", r"\$LOWRANK_THREADS='abc' is not a whole number"),
    ("9" * 40, r"is not a whole number"),
])
def test_a_bad_lowrank_threads_is_one_line(monkeypatch, value, expected):
    monkeypatch.setenv("LOWRANK_THREADS", value)
    with pytest.raises(UserError, match=expected):
        measure.default_threads()


def test_lowrank_threads_above_the_cores_is_capped_with_a_line(monkeypatch, capsys):
    monkeypatch.setenv("LOWRANK_THREADS", "100000")
    assert measure.default_threads() == os.cpu_count()
    assert f"LOWRANK_THREADS=100000 is more than the {os.cpu_count()} cores here" in capsys.readouterr().err


def test_a_bad_lowrank_threads_fails_a_fixture_test_with_the_reason_not_internalerror(pytester, monkeypatch):
    monkeypatch.setenv("LOWRANK_THREADS", "abc")
    result, _ = run_tiny(pytester, "rank=None")
    result.assert_outcomes(errors=1)  # the fixture's setup: the test is not run
    assert "INTERNALERROR" not in result.stdout.str()
    result.stdout.re_match_lines([r".*\$LOWRANK_THREADS='abc' is not a whole number.*"])


# ---- 3. the fixture checks its arguments when called -------------------------------------------------------

FIXTURE_CALL = """\
import torch

dense = torch.nn.Linear(16, 4)


def test_call(lowrank):
    lowrank(dense, {inputs}, reference=dense, {arguments})
"""


@pytest.mark.parametrize("arguments, message", [
    ('study="a/b", method="svd"', r"study: 'a/b' is not a name"),
    ('study="..", method="svd"', r"study: '\.\.' is not a name"),
    ('study="a\\nb", method="svd"', r"study: 'a\\nb' is not a name"),
    ('study="x" * 250, method="svd"', r"study: .* is not a name of at most 100 characters \(it has 250\)"),
    ('study="mine", method="svd", over_seeds={"accuracy": 0.5, "accuracy_ci95": None, "n_seeds": 0, '
     '"seed_timed": 0}', r"n_seeds: 0 is not an integer >= 1"),
    ('study="mine", method="svd", extra_info={"big": 10 ** 400}', r"big: .* is not a finite number"),
    ('study="mine", method="svd", extra_info={"nested": [1, 2]}', r"nested: \[1, 2\] is not a finite number"),
    ('study="mine", method="svd", extra_info={"profile": "a/b"}', r"profile: 'a/b' is not a name"),
])
def test_the_fixture_refuses_what_the_readers_would_refuse(pytester, arguments, message):
    pytester.makepyfile(FIXTURE_CALL.format(inputs="torch.ones(8, 16)", arguments=arguments))
    result = pytester.runpytest("-p", "no:cacheprovider", "--benchmark-disable")
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([f"E +ValueError: lowrank\\(\\.\\.\\.\\): {message}.*"])


def test_the_fixture_refuses_an_empty_batch_in_one_line(pytester):
    pytester.makepyfile(FIXTURE_CALL.format(inputs="torch.ones(0, 16)", arguments='study="mine", method="svd"'))
    result = pytester.runpytest("-p", "no:cacheprovider", "--benchmark-disable")
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([r".*inputs is an empty batch \(its first dimension is 0\).*"])
    assert "ZeroDivisionError" not in result.stdout.str()


# ---- 4. no hang, no leftovers ------------------------------------------------------------------------------------

def test_a_ray_address_that_accepts_and_never_answers_is_one_line_within_the_timeout(monkeypatch):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held = []
    threading.Thread(target=lambda: held.append(listener.accept()), daemon=True).start()  # accepts, says nothing
    monkeypatch.setattr(executors, "CONNECT_S", 1)
    t0 = time.monotonic()
    with pytest.raises(UserError, match=r"took the connection but did not answer within 1 s, as no Ray cluster does"):
        executors.check_reachable(f"127.0.0.1:{listener.getsockname()[1]}")
    assert time.monotonic() - t0 < 5
    listener.close()


def test_a_ray_address_that_answers_something_else_is_one_line():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def answer():
        conn, _ = listener.accept()
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        conn.close()
    threading.Thread(target=answer, daemon=True).start()
    with pytest.raises(UserError, match="what answers there is not a Ray cluster"):
        executors.check_reachable(f"127.0.0.1:{listener.getsockname()[1]}")
    listener.close()


def test_a_child_ends_when_its_parent_is_killed(tmp_path):
    """SIGKILL of `bench` ended pytest only 11 s later, which then wrote into a file nobody would read."""
    code = ("import sys; from lowrank_bench.core import proc; "
            "proc.run([sys.executable, '-c', 'import os, time; print(os.getpid(), flush=True); time.sleep(60)'])")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parent.parent)
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while io.alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not io.alive(child)


def test_the_next_run_removes_what_a_killed_writer_left_and_keeps_a_running_ones(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = tmp_path / f".bench.json.{dead.pid}.abc123.tmp"
    running = tmp_path / f".bench.json.{os.getppid()}.def456.tmp"
    other = tmp_path / f".svd_accuracy.png.{dead.pid}.x.tmp"
    for p in (left, running, other):
        p.write_text("half")
    io.remove_leftovers(tmp_path, "bench.json")
    assert not left.exists() and running.exists() and other.exists()
    io.remove_leftovers(tmp_path)
    assert not other.exists() and running.exists()


def test_a_killed_collect_leaves_nothing_after_the_next_collect(collected_results):
    results, _ = collected_results
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for folder in ("figures", "tables", "."):
        (results / folder / f".x.png.{dead.pid}.abc.tmp").write_bytes(b"half a figure")
    collect_mod.collect(results, [BENCH])
    assert not list(results.rglob(".*.tmp"))


# ---- 5. errors that name their cause -----------------------------------------------------------------------------

def test_a_name_too_long_for_the_file_system_says_which_limit(tmp_path):
    with pytest.raises(UserError, match=r"a name of 300 bytes .*more than the 255 a file name may have"):
        io.atomic_write(tmp_path / ("x" * 300), "data")


def test_a_full_disk_under_the_report_build_says_the_disk_is_full(collected_results, tmp_path, monkeypatch):
    results, _ = collected_results
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "latexmk").write_text("#!/bin/sh\nprintf '%s\\n' '! I can not write on file report.pdf.' "
                                  "'fwrite() failed' > report.log\nexit 12\n")
    (fake / "latexmk").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    with pytest.raises(UserError, match=r"latexmk failed: the disk holding .*build is full \(fwrite\(\) failed\); "
                                        r"free disk space"):
        latex.build_report(results, tmp_path / "build")


def test_a_seed_past_64_bits_is_refused_at_load():
    with pytest.raises(ValueError, match=r"seeds must be a non-empty list of integers >= 0, below 2\^63, got "
                                         r"\[99999999999999999999\]"):
        config.load_profile("smoke", "cpu", ["seeds=[99999999999999999999]"])


def test_a_decide_part_the_data_cannot_hold_is_refused_before_any_job(root, tmp_path, capsys):  # noqa: F811
    (tmp_path / "tiny.toml").write_text(TINY)
    rc, _, err = run(capsys, "train", "svd", "--profile", tmp_path / "tiny.toml", "--device", "cpu",
                     "--data-root", root, "--out", tmp_path / "out", "--set", "data.hoda_decide=70000")
    assert rc == 2 and err.count("\n") == 1 and "data.hoda_decide = 70000 does not fit" in err
    assert not (tmp_path / "out" / "tiny" / "jobs").exists()


def test_lowrank_data_naming_a_file_says_it_is_a_file(tmp_path, monkeypatch):
    (tmp_path / "data.zip").write_text("")
    monkeypatch.setenv("LOWRANK_DATA", str(tmp_path / "data.zip"))
    with pytest.raises(UserError, match=r"LOWRANK_DATA .*data.zip is a file, not a folder"):
        data.resolve_root(None)


# ---- 6. worker counts ------------------------------------------------------------------------------------------

def test_jobs_above_the_cores_or_the_memory_are_capped_with_a_line(monkeypatch, capsys):
    from types import SimpleNamespace
    monkeypatch.setattr(executors, "cores", lambda: 16)
    monkeypatch.setattr(executors.psutil, "virtual_memory", lambda: SimpleNamespace(available=64 * 2**30))
    assert executors.capped(10_000) == 16 and "--jobs 10000: capped at 16 (16 cores)" in capsys.readouterr().err
    monkeypatch.setattr(executors.psutil, "virtual_memory", lambda: SimpleNamespace(available=3.5 * 2**30))
    assert executors.capped(10_000) == 3
    assert "capped at 3 (3.5 GiB of memory available, 1 GiB per worker)" in capsys.readouterr().err
    assert executors.capped(3) == 3 and capsys.readouterr().err == ""
