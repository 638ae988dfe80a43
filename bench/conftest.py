"""The one parametrization of the three suites, their session settings, and what is added to the JSON at the end.

The suites' options (the CLI's --profile, --set, --device, --data-root, --out; lowrank_bench/options.py) are
declared here, so they exist only in a session that runs these suites (`pytest bench`, `lowrank-bench bench`), never
in a user's own pytest session, where the plugin is active too. Each suite module sets `STUDY`; every test asking
for `method` and `rank` runs once per variant of that study (ids from `variant_id`: `dense`, `svd-k32`, `r4`),
`merged` adds LoRA's merged forms and `batch_size` takes the profile's benchmark batch sizes. Inference is timed
through the pytest plugin's `lowrank` fixture, as a user's model is; the plugin parametrizes the inference axes
(`lowrank_dtype`, `lowrank_mode`) from `pytest_lowrank_axes` below: --dtypes/--modes, else the profile's
bench.dtypes/modes, else the device's default. Ids read `svd-k32-b256-bf16-compiled`: the axes are always named,
fp32 eager too, so an id alone says what was timed.
"""
import pytest
import torch

from lowrank_bench import plugin
from lowrank_bench.bench.harness import Env, Suite, axes, profile_of
from lowrank_bench.timing.pair import add_speedups
from lowrank_bench.core.benchjson import check_study_extra_info
from lowrank_bench.core.io import UserError
from lowrank_bench.core.variants import variant_id
from lowrank_bench.options import add_common
from lowrank_bench.training.studies import timed
from lowrank_bench.timing.measure import default_threads, machine_info as torch_facts


def pytest_addoption(parser, pluginmanager):
    add_common(parser.getgroup("lowrank-bench").addoption)  # missing results are trained
    plugin.register(pluginmanager)  # the `lowrank` fixture times inference


def pytest_benchmark_update_machine_info(config, machine_info):
    """torch, thread and GPU facts for every run of the suites (the plugin adds them only once its fixture ran)."""
    machine_info.update(torch_facts())


def pytest_configure(config):
    # Pin the thread count for the whole session so every benchmark (and its record) uses the same one.
    try:
        torch.set_num_threads(default_threads())
    except UserError as e:  # a bad $LOWRANK_THREADS: one line, not an INTERNALERROR
        raise pytest.UsageError(str(e)) from None


def pytest_generate_tests(metafunc):
    study = getattr(metafunc.module, "STUDY", None)
    if study is None:
        return
    profile = profile_of(metafunc.config)
    if "merged" in metafunc.fixturenames:  # merging only exists for LoRA adapters
        cases = [(m, r, False) for m, r in timed(study, profile)]
        cases += [(m, r, True) for m, r in timed(study, profile) if m == "lora"]
        metafunc.parametrize("method,rank,merged", cases, ids=[
            f"{variant_id(study, m, r)}-{'merged' if merged else 'unmerged'}" for m, r, merged in cases])
    elif "rank" in metafunc.fixturenames:
        cases = timed(study, profile)
        metafunc.parametrize("method,rank", cases, ids=[variant_id(study, m, r) for m, r in cases])
    if "batch_size" in metafunc.fixturenames:
        metafunc.parametrize("batch_size", getattr(profile, study).bench.batch_sizes, ids=lambda b: f"b{b}")


def pytest_lowrank_axes(metafunc):
    """The inference axes of a suite's tests (training steps keep the study's own precision and ask for none)."""
    study = getattr(metafunc.module, "STUDY", None)
    return None if study is None else axes(metafunc.config, study)


def pytest_collection_modifyitems(config, items):
    """Each benchmark's settings, from its study's profile, as the marker pytest-benchmark reads: `rounds`
    rounds, each calibrated by the plugin to last at least `min_time`, after one warm-up round (max_time 0:
    exactly `rounds`, however short a round is). The group names the study, the batch size, and for inference the
    dtype and mode (`svd-b256-fp32-eager`), so `pytest-benchmark compare --group-by=group` never mixes them."""
    profile = None
    for item in items:
        study = getattr(item.module, "STUDY", None)
        if study is None:
            continue
        profile = profile or profile_of(config)
        bench = getattr(profile, study).bench
        params = item.callspec.params
        batch_size = params.get("batch_size")
        group = f"{study}-b{batch_size}" if batch_size else f"{study}-{item.originalname.removeprefix('test_')}"
        if "lowrank_dtype" in params:  # precisions and modes never share a group, so no comparison mixes them
            group += f"-{params['lowrank_dtype']}-{params['lowrank_mode']}"
        item.add_marker(pytest.mark.benchmark(group=group, min_rounds=bench.rounds, min_time=bench.min_time,
                                              max_time=0, warmup=True, warmup_iterations=1))


@pytest.fixture(scope="session")
def env(pytestconfig):
    try:
        return Env.from_config(pytestconfig)
    except ValueError as e:  # e.g. --device cuda on a machine without one
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def suite(request, env, pytestconfig):
    """The module's study: trained results (trained once if missing), models and test split on the device."""
    return Suite(env, request.module.STUDY, pytestconfig.pluginmanager.getplugin("capturemanager"))


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """The one ratio that needs two benchmarks: for each Study 1 inference benchmark, `speedup_vs_dense` = dense
    min / this min at the same batch size, dtype and mode. The paired ratios (`speedup_paired` with its bounds,
    `ceiling_speedup`, `ceiling_efficiency`) the `lowrank` fixture wrote while each benchmark ran (timing/pair.py).
    """
    check_study_extra_info(output_json, "this benchmark run")  # a suite that breaks the contract fails here
    add_speedups(output_json["benchmarks"])
