"""Session-wide settings and data for the benchmark suites; the options live in the root conftest.py."""
import os

import pytest
import torch

from harness import Env


def pytest_configure(config):
    # Pin the thread count for the whole session so every benchmark (and its record) uses the same one.
    torch.set_num_threads(int(os.environ.get("LOWRANK_THREADS", os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def env(pytestconfig):
    try:
        return Env.from_config(pytestconfig)
    except ValueError as e:  # e.g. --device cuda on a machine without one
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def capture(pytestconfig):
    return pytestconfig.pluginmanager.getplugin("capturemanager")
