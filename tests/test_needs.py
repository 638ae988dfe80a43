"""The root conftest.py's `needs` marker: what a machine lacks skips the test with the reason, or fails it under CI."""
from pathlib import Path

import pytest

# pytester drops the modules an inline run imported, and torch cannot be imported twice in one process: the data
# module the marker reads (torch with it) is imported out here, once.
import lowrank_bench.training.data  # noqa: F401
from lowrank_bench.fixtures.build import build_data_root

pytest_plugins = ["pytester"]
REPO = Path(__file__).resolve().parents[1]
NEEDY = '''\
import pytest


@pytest.mark.needs("imdb", "latexmk")
def test_needy():
    pass
'''


@pytest.fixture
def needy(pytester, monkeypatch, tmp_path):
    pytester.makeconftest((REPO / "conftest.py").read_text())
    pytester.makepyfile(NEEDY)
    monkeypatch.setenv("LOWRANK_CACHE", str(tmp_path / "cache"))  # the default data root: empty
    monkeypatch.delenv("LOWRANK_DATA", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no latexmk
    return pytester


def test_what_is_missing_skips_with_the_reason(needy, tmp_path):
    result = needy.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.re_match_lines([f".*data set imdb is not in {tmp_path / 'cache' / 'data'}: missing imdb/train"
                                  r".*lowrank-bench data --download.*; latexmk is not installed: apt-get install.*"])


def test_under_ci_what_is_missing_fails(needy, monkeypatch):
    monkeypatch.setenv("CI", "true")
    result = needy.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.re_match_lines([".*CI lacks what this test needs: data set imdb is not in.*"])


def test_the_data_is_found_as_the_cli_finds_it(needy, tmp_path, monkeypatch):
    monkeypatch.setenv("LOWRANK_DATA", str(build_data_root(tmp_path / "data", per_class=1)))
    monkeypatch.setenv("CI", "true")
    (tmp_path / "latexmk").write_text("#!/bin/sh\n")
    (tmp_path / "latexmk").chmod(0o755)
    needy.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
