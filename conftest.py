"""Options shared by the test and benchmark suites, and the torch facts pytest-benchmark records per machine."""
import os
import platform

import psutil
import torch

from lowrank_bench.options import add_bench_axes, add_common


def pytest_addoption(parser):
    group = parser.getgroup("lowrank-bench")
    add_common(group.addoption)  # the CLI's --profile, --set, --device, --data-root, --out; missing results are trained
    add_bench_axes(group.addoption)  # --dtypes, --modes: the inference benchmarks' axes


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["torch"] = torch.__version__
    machine_info["cuda_version"] = torch.version.cuda
    machine_info["threads"] = torch.get_num_threads()
    machine_info["cpu_count"] = os.cpu_count()
    machine_info["memory_bytes"] = psutil.virtual_memory().total
    machine_info["processor"] = platform.processor()
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        machine_info["gpu_name"] = props.name
        machine_info["gpu_memory_bytes"] = props.total_memory
        machine_info["gpu_sm_count"] = props.multi_processor_count
        try:
            import pynvml  # clocks, where the NVML bindings are installed
            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            machine_info["gpu_sm_clock_mhz"] = pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)
            machine_info["gpu_mem_clock_mhz"] = pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM)
        except Exception:  # NVML missing or not permitted: clocks are optional facts
            pass
    else:
        machine_info["gpu_name"] = None
