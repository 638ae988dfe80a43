"""Read pytest-benchmark JSON (`pytest --benchmark-json=FILE`) and check that it is what it claims to be.

The gate and the collector both start here, so a file that is not pytest-benchmark output, or a benchmark that
lacks what the report needs, fails once with one line naming the file instead of as a KeyError deep inside.
The shape is the one `pytest_benchmark_generate_json` writes (plugin.py in pytest-benchmark 5.x):
{"machine_info", "commit_info", "benchmarks": [{"group", "name", "fullname", "params", "param", "extra_info",
"options", "stats": {Stats.fields..., "iterations"}}], "datetime", "version"}.
No pytest import here, like pytest-benchmark's own stats.py, so plain scripts can use it. Every value something
reads is checked against the schema below when the file is loaded (core/schema.py): a benchmark file is input from
anyone (a CI artifact, a file attached to a pull request).
"""
from lowrank_bench.core.io import UserError, read_json
from lowrank_bench.core.schema import (COUNT, FRACTION, NON_NEGATIVE, POSITIVE_INT, Invalid, boolean, list_of, name,
                                       nullable, number, one_of, record, relative_path, text, validate)
from lowrank_bench.core.spec import DTYPES, INITS, KINDS, MODES, STUDIES

# Stats.fields (pytest_benchmark/stats.py) plus the "iterations" that Metadata.as_dict adds.
STAT_FIELDS = ("min", "max", "mean", "stddev", "rounds", "median", "iqr", "q1", "q3", "iqr_outliers",
               "stddev_outliers", "outliers", "ld15iqr", "hd15iqr", "ops", "total", "iterations")
# What must be equal for two files' timings to be comparable. Label -> path inside machine_info: "cpu" is
# py-cpuinfo's dict that pytest-benchmark stores; the other keys are added by bench/conftest.py through
# pytest_benchmark_update_machine_info.
MACHINE_FIELDS = {"cpu": ("cpu", "brand_raw"), "gpu": ("gpu_name",), "threads": ("threads",),
                  "torch": ("torch",)}
_HINT = "write it with `pytest bench --benchmark-json=FILE`"
_RERUN = "not what the benchmark suite writes: rerun it (lowrank-bench bench)"
# The extra_info every benchmark carries, the contract between bench/ and the report (a study adds its own, its
# spec's `extra_info`). `accuracy` is the mean over seeds (with `accuracy_ci95`, `n_seeds`); `accuracy_timed` the
# timed checkpoint's (`seed_timed`) in the benchmark's own dtype and mode.
COMMON_EXTRA_INFO = ("study", "kind", "method", "rank", "init", "batch_size", "device", "dtype", "mode", "threads",
                     "accuracy", "accuracy_ci95", "n_seeds", "seed_timed", "accuracy_timed", "params_total",
                     "params_trainable", "flops", "weights_bytes", "peak_mem_bytes", "flop_ratio")
# What the pytest plugin's `lowrank` fixture writes besides: its reference's size and cost, which flop_ratio divides by.
REFERENCE_EXTRA_INFO = ("reference_params_total", "reference_flops")
# And, for a model whose accuracy came as per-example outcomes: their file beside the JSON (core/bench_outcomes.py)
# and the margin in points they are decided by.
OUTCOME_EXTRA_INFO = ("outcomes", "outcomes_sha256", "margin_points")
# What the fixture writes where a model is timed in alternation with its reference (timing/pair.py): each
# callable's fastest call in every round, seconds ({"model": [...], "reference": [...], and in the SVD suite
# "ceiling_reference", "ceiling_model"}), how many rounds (per run of a `--repeat` pool too), and their ratios.
PAIRED_EXTRA_INFO = ("paired_times", "paired_rounds", "paired_run_rounds", "speedup_paired", "speedup_paired_lower",
                     "speedup_paired_upper", "ceiling_speedup", "ceiling_efficiency")

IDENTITY = ("fullname", "name", "group", "param", "params")  # pytest-benchmark's, beside the stats in `rows`
# Names a user's own extra_info fields may not take: the fixture's, and the columns `rows` puts beside them.
RESERVED_EXTRA_INFO = frozenset((*COMMON_EXTRA_INFO, *REFERENCE_EXTRA_INFO, *OUTCOME_EXTRA_INFO, *PAIRED_EXTRA_INFO,
                                 "cv", *IDENTITY, *STAT_FIELDS))


# Older files name torch's dtype and have no mode: they were timed eager, before dtype and mode became axes.
_OLD_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}

_TIME = number(above=0)  # seconds: a time of 0 or less is no measurement
_STATS = record({"median": _TIME, "min": _TIME, "rounds": POSITIVE_INT},
                {**{f: _TIME for f in ("max", "mean", "q1", "q3", "ld15iqr", "hd15iqr", "ops", "total")},
                 "stddev": NON_NEGATIVE, "iqr": NON_NEGATIVE, "iqr_outliers": COUNT, "stddev_outliers": COUNT,
                 "outliers": text, "iterations": POSITIVE_INT, "data": list_of(_TIME)})
_ACCURACY = nullable(FRACTION)
_AMOUNT = nullable(NON_NEGATIVE)
_RATIO = nullable(number(above=0))
_EXTRA_FIELDS = {
    # a study and method by name: a user's own (the lowrank plugin) as well as the built-in ones
    "study": name, "kind": one_of(*KINDS), "method": name,
    "rank": nullable(POSITIVE_INT), "init": nullable(one_of(*INITS)), "embedding": nullable(name),
    "batch_size": POSITIVE_INT, "device": name, "dtype": one_of(*DTYPES, *_OLD_DTYPES), "mode": one_of(*MODES),
    "threads": nullable(POSITIVE_INT), "profile": name, "n_seeds": POSITIVE_INT, "seed_timed": nullable(COUNT),
    **{f: _ACCURACY for f in ("accuracy", "accuracy_timed", "accuracy_truncated", "val_accuracy",
                              "val_accuracy_truncated", "accuracy_random", "accuracy_trained")},
    **{f: _AMOUNT for f in ("accuracy_ci95", "flops", "peak_mem_bytes", "train_step_peak_mem_bytes",
                            "checkpoint_bytes", "alpha", "cv")},
    **{f: nullable(COUNT) for f in ("params_total", "params_trainable", "weights_bytes", "adapter_bytes",
                                    "qkv_params")},
    **{f: _RATIO for f in ("flop_ratio", "speedup_vs_dense", "speedup_paired", "speedup_paired_lower",
                           "speedup_paired_upper", "ceiling_speedup", "ceiling_efficiency")},
    "paired_times": record(optional={f: list_of(_TIME, 1) for f in ("model", "reference", "ceiling_reference",
                                                                     "ceiling_model")}),
    "paired_rounds": POSITIVE_INT, "paired_run_rounds": list_of(POSITIVE_INT, 1),
    **{f: POSITIVE_INT for f in ("seq_len", "d_model", "heads", "d_ff")},
    "merged": nullable(boolean), "costs_more_than_dense": boolean,
    "outcomes": relative_path, "outcomes_sha256": text, "margin_points": number(low=0, high=100)}
_EXTRA_INFO = record(optional=_EXTRA_FIELDS)


def _own_value(v):
    """A user's own extra_info value: null, a flag, a string without control characters or a finite number."""
    return v if v is None or isinstance(v, bool) else text(v) if isinstance(v, str) else number()(v)


def extra_info(v):
    """A benchmark's extra_info as the `lowrank` fixture writes it: the contract's fields as the readers check
    them, and a user's own fields plain values (NaN, Infinity, lists and objects are refused)."""
    _EXTRA_INFO(v)
    for k, item in v.items():
        if k not in _EXTRA_FIELDS:
            try:
                _own_value(item)
            except Invalid as e:
                raise Invalid(k, e.message) from None
    return v


_BENCHMARK = record({"stats": _STATS},
                    {"extra_info": _EXTRA_INFO, "name": nullable(text), "group": nullable(text),
                     "param": nullable(text)})
_FILE = record({"machine_info": record(optional={
    "node": nullable(text), "cpu": nullable(record(optional={"brand_raw": nullable(text)})),
    "gpu_name": nullable(text), "threads": nullable(POSITIVE_INT), "torch": nullable(text)})},
    {"datetime": nullable(text)})


def axes(extra_info) -> tuple:
    """(dtype, mode) a benchmark ran in, from its extra_info: ("bf16", "compiled"), ("fp32", "eager")."""
    return _OLD_DTYPES.get(extra_info.get("dtype"), extra_info.get("dtype")), extra_info.get("mode", "eager")


def load_bench(path) -> dict:
    """Load one pytest-benchmark JSON file; raise UserError naming `path` if its shape is wrong."""
    bench = read_json(path)
    if not isinstance(bench, dict) or not isinstance(bench.get("benchmarks"), list) \
            or not isinstance(bench.get("machine_info"), dict):
        raise UserError(f"{path}: not pytest-benchmark JSON (needs 'machine_info' and 'benchmarks'); {_HINT}")
    seen = set()
    for i, b in enumerate(bench["benchmarks"]):
        name = b.get("fullname") if isinstance(b, dict) else None
        if not isinstance(name, str) or not name:
            raise UserError(f"{path}: benchmarks[{i}] has no 'fullname'; not pytest-benchmark JSON, {_HINT}")
        validate(name, text, path, _RERUN, where=f"benchmarks[{i}].fullname")  # it names the benchmark in messages
        if name in seen:
            raise UserError(f"{path}: benchmark {name} appears twice; the file must come from one pytest run")
        seen.add(name)
        stats = b.get("stats")
        if not isinstance(stats, dict) or "median" not in stats:
            raise UserError(f"{path}: benchmark {name} has no stats.median; not pytest-benchmark JSON, {_HINT}")
        validate(b, _BENCHMARK, path, _RERUN, where=f"benchmark {name}")
    return validate(bench, _FILE, path, _RERUN)


def require_extra_info(bench, fields, path):
    """Raise UserError listing every benchmark (by fullname) that lacks one of `fields` in extra_info.

    A field present with the value null counts as present: gemm benchmarks legitimately have no accuracy.
    """
    missing = {}
    for b in bench["benchmarks"]:
        lacks = [f for f in fields if f not in b.get("extra_info", {})]
        if lacks:
            missing[b["fullname"]] = lacks
    if missing:
        shown = "; ".join(f"{name} ({', '.join(lacks)})" for name, lacks in list(missing.items())[:5])
        more = f"; and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise UserError(f"{path}: {len(missing)} benchmark(s) lack extra_info fields: {shown}{more}; "
                        f"set them with benchmark.extra_info[...] in bench/")


def check_study_extra_info(bench, path):
    """require_extra_info with the full per-study contract: the common fields plus the study's own (none for a
    study of the user's own, benchmarked through the pytest plugin's `lowrank` fixture)."""
    named = [e["study"] for b in bench["benchmarks"] if isinstance((e := b.get("extra_info", {})).get("study"), str)]
    own = {**dict.fromkeys(named, ()), **{name: spec.extra_info for name, spec in STUDIES.items()}}
    for study, fields in own.items():
        mine = {**bench, "benchmarks": [b for b in bench["benchmarks"] if b["extra_info"].get("study") == study]}
        require_extra_info(mine, COMMON_EXTRA_INFO + fields, path)
    require_extra_info(bench, ("study",), path)


def by_fullname(bench) -> dict[str, dict]:
    """The benchmarks keyed by fullname (unique: load_bench checked), in file order."""
    return {b["fullname"]: b for b in bench["benchmarks"]}


def rows(bench) -> list[dict]:
    """One flat dict per benchmark: fullname, name, group, param, params, the stats, then extra_info.

    Flat so a collector can hand it to a table as is. An extra_info key that would shadow a stat or an
    identity column is refused rather than silently overwriting it.
    """
    out = []
    for b in bench["benchmarks"]:
        row = {k: b.get(k) for k in IDENTITY}
        row |= {k: b["stats"].get(k) for k in STAT_FIELDS}
        clash = row.keys() & b.get("extra_info", {}).keys()
        if clash:
            raise UserError(f"benchmark {b['fullname']}: extra_info keys {sorted(clash)} clash with "
                            f"pytest-benchmark's own fields; rename them in bench/")
        out.append(row | b.get("extra_info", {}))
    return out


def machine_summary(bench) -> dict:
    """The machine facts that decide whether timings are comparable (MACHINE_FIELDS), None where absent."""
    out = {}
    for label, keys in MACHINE_FIELDS.items():
        value = bench["machine_info"]
        for k in keys:
            value = value.get(k) if isinstance(value, dict) else None
        out[label] = value
    return out


def is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)
