"""Options shared by the test and benchmark suites, and the torch facts pytest-benchmark records per machine."""
from lowrank_bench import plugin
from lowrank_bench.options import add_common
from lowrank_bench.timing.measure import machine_info as torch_facts


def pytest_addoption(parser, pluginmanager):
    group = parser.getgroup("lowrank-bench")
    add_common(group.addoption)  # the CLI's --profile, --set, --device, --data-root, --out; missing results are trained
    # --dtypes and --modes, the inference benchmarks' axes, are the pytest plugin's (lowrank_bench/plugin.py). An
    # installed package registers it through its entry point; a checkout run without installing it (or installed
    # before the entry point existed) registers it here, unless `-p no:lowrank` blocked it.
    if not pluginmanager.is_registered(plugin) and not pluginmanager.is_blocked("lowrank"):
        pluginmanager.register(plugin, "lowrank")


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info.update(torch_facts())
