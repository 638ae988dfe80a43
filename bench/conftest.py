"""Session-wide settings and data for the benchmark suites; the options live in the root conftest.py."""
import os

import pytest
import torch

from harness import Env


def pytest_configure(config):
    # Pin the thread count for the whole session so every benchmark (and its record) uses the same one. The default
    # leaves one core to the OS and pytest: a parallel region waits for its slowest thread, so with every core busy
    # each interruption stalls the whole op (on 2 vCPUs the run-to-run spread of medians fell from 46 % to 12 %).
    torch.set_num_threads(int(os.environ.get("LOWRANK_THREADS", max(1, (os.cpu_count() or 1) - 1))))


@pytest.fixture(scope="session")
def env(pytestconfig):
    try:
        return Env.from_config(pytestconfig)
    except ValueError as e:  # e.g. --device cuda on a machine without one
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def capture(pytestconfig):
    return pytestconfig.pluginmanager.getplugin("capturemanager")


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """Speedups that need two benchmarks: factored vs dense model, and the raw-GEMM ceiling for the same k.

    For each Study 1 inference benchmark: `speedup_vs_dense` = dense min / this min at the same batch size;
    `ceiling_speedup` = bare dense GEMM chain min / bare factored GEMM chain min (every factored layer in one
    call); and
    `ceiling_efficiency` = speedup_vs_dense / ceiling_speedup (1.0 = the model gets all the GEMMs allow).
    """
    from report.benchjson import check_study_extra_info
    from report.speedups import add_speedups
    check_study_extra_info(output_json, "this benchmark run")  # a suite that breaks the contract fails here
    add_speedups(output_json["benchmarks"])
