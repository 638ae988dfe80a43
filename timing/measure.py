"""Measuring one benchmark: how a model's inference is timed, on what machine, and how repeated runs pool.

Used by the built-in suites (bench/), the pytest plugin's fixture (lowrank_bench/fixture.py) and `bench --repeat`.
The timed callable holds only the work and, on CUDA, ends with `torch.cuda.synchronize()`, so a round measures
finished kernels, not their launches; pytest-benchmark calibrates the rounds. A model is timed in one of the
`core.spec` dtypes (a converted copy; integer inputs such as token ids stay integer) and execution modes (eager, or
torch.compile'd).

Pooling (`pool_runs`): N runs of one suite, each in its own process, into one pytest-benchmark document.

A process carries a bias of its own: where its tensors land in physical memory and the caches, what the other
vCPU's neighbour is doing. On a shared 2-vCPU VM that moved single benchmarks by 30-70 % from one run to the
next while the rounds inside a run agreed within a few percent, so more rounds cannot average it away; more
processes can (pyperf spawns worker processes for the same reason). The pooled min and max are those of all
rounds together (the least and greatest over the runs): a disturbance only ever adds time, so the min of
several processes is the steadiest estimate. Every other stat is the median of that stat over the runs, so one
disturbed process cannot move it. `extra_info.run_medians` keeps every run's median so the spread stays visible,
and `stats.data` every round of every run, in run order, with `extra_info.run_rounds` saying how many came from
each run (`gate` judges all of them together). An A/B test across commits is `lowrank-bench ab`, which pairs
processes as well as rounds. The paired rounds (`extra_info.paired_times`, timing/pair.py) pool alike: every
run's rounds, with `paired_run_rounds` per run, and the paired ratios recomputed from all of them.
"""
import copy
import os
import platform
import statistics
import sys

import psutil
import torch

from lowrank_bench.core.benchjson import STAT_FIELDS, by_fullname, is_number, machine_summary
from lowrank_bench.core.schema import POSITIVE_INT, environment
from lowrank_bench.core.io import UserError
from lowrank_bench.timing import abwire
from lowrank_bench.timing.pair import MODEL, add_speedups, paired_fields


DTYPE = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# The axes' defaults per device, where neither --dtypes/--modes nor a profile say. A CPU measures fp32 eager:
# torch.compile costs seconds per model there (17 s for the first, about 1 s each after, on the 2-core CI machine).
# CUDA measures everything a deployment might run.
AXES = {"cpu": (["fp32"], ["eager"]), "cuda": (list(DTYPE), ["eager", "compiled"])}


def default_threads():
    """The thread count a benchmark session pins: $LOWRANK_THREADS, else all cores but one. A parallel region waits
    for its slowest thread, so with every core busy each interruption by the OS or pytest stalls the whole op (on 2
    vCPUs the run-to-run spread of medians fell from 46 % to 12 % with one core left free)."""
    cores = os.cpu_count() or 1
    threads = environment("LOWRANK_THREADS", POSITIVE_INT, max(1, cores - 1),
                          "set it to the number of threads a benchmark uses (1 or more), or unset it")
    if threads > cores:  # torch's thread pool at 100,000 threads crashes the process
        print(f"LOWRANK_THREADS={threads} is more than the {cores} cores here: using {cores}", file=sys.stderr)
    return min(threads, cores)


def axes(device_type, dtypes=None, modes=None):
    """(dtypes, modes) to time in: those given, else the device's defaults (`AXES`); without bf16 on a GPU that
    only emulates it (pre-Ampere), which is not what anyone deploys."""
    dtypes = dtypes or AXES[device_type][0]
    if device_type == "cuda" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        dtypes = [d for d in dtypes if d != "bf16"]
    return dtypes, modes or AXES[device_type][1]


def cast(inputs, dtype):
    """`inputs` (a tensor, or a tuple or dict of them) with floating tensors in `dtype`; integer ones (token ids,
    masks) and anything else unchanged."""
    if isinstance(inputs, tuple):
        return tuple(cast(x, dtype) for x in inputs)
    if isinstance(inputs, dict):
        return {k: cast(v, dtype) for k, v in inputs.items()}
    return inputs.to(DTYPE[dtype]) if torch.is_tensor(inputs) and inputs.is_floating_point() else inputs


def compiled(fn, mode, device):
    """`fn` as timed in `mode`: itself (eager), or torch.compile'd (compiled).

    Small batches on small layers are bound by per-op launch overhead, where a factored model (twice the layers)
    loses to dense; CUDA graphs ("reduce-overhead") replay the whole forward as one launch, and inductor fuses bias,
    ReLU and the folded normalisation into the GEMMs' epilogues. fullgraph: a graph break would time a half-eager
    model under the name "compiled", so it is an error instead. dynamic=False: the graph is specialised to the
    benchmark's batch size, as a deployment compiles it.
    """
    if mode == "eager":
        return fn
    # Every model of a suite runs the same forward code, and dynamo recompiles it per model instance up to its
    # recompile limit (8), then silently runs eager: starting from a clean cache keeps "compiled" compiled.
    torch.compiler.reset()
    return torch.compile(fn, mode="reduce-overhead" if torch.device(device).type == "cuda" else None, fullgraph=True,
                         dynamic=False)


def for_inference(model, dtype, mode, device):
    """(the model in `dtype`, the callable its inference is timed through in `mode`). Another dtype than fp32
    converts a copy, so the caller's fp32 model stays as it was."""
    if dtype != "fp32":
        model = copy.deepcopy(model).to(DTYPE[dtype])
    return model, compiled(model, mode, device)


def synchronized(fn, device):
    """`fn` followed by a device synchronisation, so the timer sees finished work."""
    if torch.device(device).type != "cuda":
        return fn

    def run():
        out = fn()
        torch.cuda.synchronize(device)
        return out
    return run


def run_timed(benchmark, fn, device):
    """Time `fn` (synchronised) with pytest-benchmark's own calibration; record the coefficient of variation too.

    Rounds and minimum round time reach pytest-benchmark through its options or the benchmark marker.
    """
    timed = synchronized(fn, device)
    timed()  # lazy initialisation and compilation stay out of the calibration
    if abwire.active():  # `lowrank-bench ab` runs the rounds, alternating this side with the other
        return abwire.serve(benchmark, timed)
    result = benchmark(timed)
    if benchmark.stats:  # None under --benchmark-disable
        stats = benchmark.stats.stats
        benchmark.extra_info["cv"] = stats.stddev / stats.mean if stats.mean else None
    return result


def machine_info():
    """The torch, CPU and GPU facts a benchmark file records in machine_info (core.benchjson.MACHINE_FIELDS reads
    some of them to decide whether two files' timings compare)."""
    info = {"torch": torch.__version__, "cuda_version": torch.version.cuda, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "memory_bytes": psutil.virtual_memory().total,
            "processor": platform.processor(), "gpu_name": None}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu_name=props.name, gpu_memory_bytes=props.total_memory, gpu_sm_count=props.multi_processor_count)
        try:
            import pynvml  # clocks, where the NVML bindings are installed
            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            info["gpu_sm_clock_mhz"] = pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)
            info["gpu_mem_clock_mhz"] = pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM)
        except Exception:  # NVML missing or not permitted: clocks are optional facts
            pass
    return info


def pool_runs(runs: list[dict], paths: list) -> dict:
    """One document from `runs` (loaded pytest-benchmark JSON, `paths` name them in errors)."""
    first, keyed = runs[0], [by_fullname(run) for run in runs]
    for run, benches, path in zip(runs[1:], keyed[1:], paths[1:]):
        if machine_summary(run) != machine_summary(first):
            raise UserError(f"{path}: machine_info differs from {paths[0]} ({machine_summary(run)} vs "
                            f"{machine_summary(first)}); pool only runs of one machine and thread count")
        if benches.keys() != keyed[0].keys():
            raise UserError(f"{path}: holds other benchmarks than {paths[0]}; pool only runs of one suite")
    pooled = []
    for name, bench in keyed[0].items():
        records = [k[name]["stats"] for k in keyed]
        stats = {field: statistics.median(r[field] for r in records) if is_number(bench["stats"][field])
                 else bench["stats"][field] for field in STAT_FIELDS if field in bench["stats"]}
        stats |= {"min": min(r["min"] for r in records), "max": max(r["max"] for r in records),
                  "rounds": sum(r["rounds"] for r in records)}
        extra = {**bench["extra_info"], "run_medians": [r["median"] for r in records]}
        if all("data" in r for r in records):  # every round, and which run it came from, for the gate's interval
            stats["data"] = [t for r in records for t in r["data"]]
            extra["run_rounds"] = [len(r["data"]) for r in records]
        paired = [k[name]["extra_info"].get("paired_times") for k in keyed]
        if all(paired):  # the paired rounds of every run, and which run they came from
            extra["paired_times"] = {f: [t for run in paired for t in run[f]] for f in paired[0]}
            extra["paired_run_rounds"] = [len(run[MODEL]) for run in paired]
            extra["paired_rounds"] = sum(extra["paired_run_rounds"])
            extra |= paired_fields(extra["paired_times"])
        pooled.append({**bench, "stats": stats, "extra_info": extra})
    add_speedups(pooled)  # from the pooled times, not any one run's
    return {**first, "benchmarks": pooled, "datetime": runs[-1].get("datetime")}
