"""The pytest plugin `lowrank` (entry point `pytest11`; `-p no:lowrank` turns it off): the `lowrank` fixture.

A test that asks for `lowrank` benchmarks one model the way the built-in suites do (they use it too;
lowrank_bench/fixture.py) and runs once per dtype and execution mode of `--dtypes`/`--modes` (else fp32 eager on a
CPU and every dtype and mode on CUDA), its id ending in them (`test_mine[8-fp32-eager]`). A test that times
something else in those axes asks for `lowrank_dtype` and `lowrank_mode` alone. The plugin declares the two
options, the benchmark axes of every suite, here and nowhere else; a conftest.py whose tests have defaults of their
own (the built-in suites: their profile's) implements the hook `pytest_lowrank_axes`. The fixture times at the
thread count the built-in suites use ($LOWRANK_THREADS, else all cores but one) and restores the session's after
each call, so a user's other benchmarks run as they would without it.
`--paired-seconds`/`--paired-rounds` set how long its paired rounds of a model and its reference last.
Per-example outcomes a test gives the fixture are stored beside --benchmark-json (core/bench_outcomes.py), with
the margin of --margin-points that `collect` and `gate` decide them by.
A session that never asks for the fixture is left as it was: no parametrization, no machine facts, no torch import.
"""
import sys

import pytest

from lowrank_bench.options import add_bench_axes
from lowrank_bench.timing import abwire

_USED = pytest.StashKey[bool]()  # set once a test of the session has used the fixture
_REFERENCES = pytest.StashKey[dict]()  # the reference models' measurements, once per session


class Hooks:
    @pytest.hookspec(firstresult=True)
    def pytest_lowrank_axes(self, metafunc):
        """(dtypes, modes) the test of `metafunc` is timed in, or None for the plugin's choice."""


def register(pluginmanager):
    """Register this plugin where its entry point did not (a checkout run without installing it, or installed
    before the entry point existed), unless `-p no:lowrank` blocked it. For a conftest.py's pytest_addoption."""
    if not pluginmanager.is_registered(sys.modules[__name__]) and not pluginmanager.is_blocked("lowrank"):
        pluginmanager.register(sys.modules[__name__], "lowrank")


def pytest_addhooks(pluginmanager):
    pluginmanager.add_hookspecs(Hooks)


def _points(text):
    """--margin-points: a number of accuracy points >= 0."""
    import argparse
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 100:
        raise argparse.ArgumentTypeError(f"--margin-points must be a number of points in [0, 100), got {text!r}")
    return value


def _at_least(least, kind):
    """An option's type: a number of `kind` that is at least `least`."""
    import argparse

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = least - 1
        if not value >= least:
            raise argparse.ArgumentTypeError(f"must be a number >= {least}, got {text!r}")
        return value
    return parse


def pytest_addoption(parser):
    group = parser.getgroup("lowrank-bench")
    add_bench_axes(group.addoption)
    # Defaults: timing/pair.py's (not imported here: a session without the fixture imports no numpy or scipy)
    group.addoption("--paired-seconds", metavar="S", type=_at_least(0, float), default=None,
                    help="how long the paired rounds of a model and its reference last at least: long enough to "
                         "span the machine's changes of load, which on a shared machine last seconds (default 2)")
    group.addoption("--paired-rounds", metavar="N", type=_at_least(5, int), default=None,
                    help="the fewest paired rounds, at least the 5 from which the sign test bounds speedup_paired "
                         "(default 20)")
    group.addoption("--margin-points", metavar="POINTS", type=_points, default=0.5,  # the built-in studies' default
                    help="the margin δ, in accuracy points, that `lowrank-bench collect` and `gate` decide "
                         "benchmarks with per-example outcomes by: within δ of the study's reference or not "
                         "(default 0.5)")


def _store(config, fullname):
    """store(outcomes) for the fixture: writes them beside --benchmark-json and returns the extra_info naming them
    and the margin; without --benchmark-json a warning, since nothing would keep them."""
    def store(outcomes):
        path = config.getoption("benchmark_json", None)
        if path is None:
            import warnings
            warnings.warn("lowrank: per-example outcomes are kept only beside --benchmark-json FILE; without it "
                          "collect and gate cannot decide from them", stacklevel=2)
            return {}
        from lowrank_bench.core import bench_outcomes
        written = bench_outcomes.write(config.invocation_params.dir / path, fullname, outcomes)
        return {**written, "margin_points": config.getoption("margin_points")}
    return store


@pytest.hookimpl(trylast=True)  # after the test's own parametrize marks, so the axes end its id
def pytest_generate_tests(metafunc):
    if not {"lowrank_dtype", "lowrank_mode"} & set(metafunc.fixturenames):
        return
    config = metafunc.config
    dtypes_modes = config.hook.pytest_lowrank_axes(metafunc=metafunc)
    if dtypes_modes is None:
        import torch

        from lowrank_bench.timing.measure import axes
        dtypes_modes = axes("cuda" if torch.cuda.is_available() else "cpu", config.getoption("dtypes"),
                            config.getoption("modes"))
    dtypes, modes = dtypes_modes
    metafunc.parametrize("lowrank_dtype", dtypes, ids=str)
    metafunc.parametrize("lowrank_mode", modes, ids=str)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """Under `lowrank-bench ab`, tests run in the order of their ids, so both sides meet shared benchmarks alike."""
    if abwire.active():
        items.sort(key=lambda item: item.nodeid)


def pytest_collection_finish(session):
    if abwire.active():
        abwire.hello(item.nodeid for item in session.items)


@pytest.fixture
def lowrank_dtype():
    """The dtype this test times its model in (parametrized from --dtypes)."""
    return "fp32"


@pytest.fixture
def lowrank_mode():
    """The execution mode this test times its model in (parametrized from --modes)."""
    return "eager"


@pytest.fixture
def lowrank(benchmark, request, lowrank_dtype, lowrank_mode):
    """Benchmark a (low-rank) model against its reference: call it once, as
    `lowrank(model, inputs, reference=dense, study="mine", method="svd", rank=8, accuracy=fn)`.

    See lowrank_bench.fixture.LowRank for every argument and the extra_info it writes.
    """
    from lowrank_bench.fixture import LowRank
    from lowrank_bench.core.io import UserError
    from lowrank_bench.timing.measure import default_threads
    try:
        default_threads()  # what the fixture's calls run at (fixture.pinned_threads), checked before any of them
    except UserError as e:  # a bad $LOWRANK_THREADS: the reason, not a traceback
        pytest.fail(str(e), pytrace=False)
    request.config.stash[_USED] = True
    return LowRank(benchmark, lowrank_dtype, lowrank_mode, request.config.stash.setdefault(_REFERENCES, {}),
                   _store(request.config, request.node.nodeid),
                   {key: value for key, option in (("seconds", "paired_seconds"), ("min_rounds", "paired_rounds"))
                    if (value := request.config.getoption(option)) is not None})


@pytest.hookimpl(optionalhook=True)  # pytest-benchmark's hook: a session run with -p no:benchmark has no such hook
def pytest_benchmark_update_machine_info(config, machine_info):
    """torch, thread and GPU facts, which `lowrank-bench gate` reads to decide whether two files' times compare."""
    if config.stash.get(_USED, False):
        from lowrank_bench.timing.measure import default_threads, machine_info as torch_facts
        machine_info.update(torch_facts(), threads=default_threads())  # what the fixture timed at
