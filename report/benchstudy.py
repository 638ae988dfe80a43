"""Tables and figures of a study of the user's own, known only from its benchmarks (the `lowrank` fixture's).

Such a study has no results folder (no summary.json, no training), so everything comes from the benchmark file:
per benchmark its latency, the speedup over its study's reference benchmark (the model with no rank whose FLOP
ratio is 1: the reference itself; a ratio of min times, as timing/pair.py), parameters, FLOPs, peak memory,
accuracy and every field of the user's own extra_info; and the figures of latency and accuracy against rank, one
line per method.
"""
import pandas as pd

from lowrank_bench.core.benchjson import RESERVED_EXTRA_INFO, by_fullname, load_bench
from lowrank_bench.core.spec import STUDIES
from lowrank_bench.report import fmt, plots
from lowrank_bench.report.figures import _latency_panels
from lowrank_bench.report.results import bench_order

# The extra_info fields the table always shows; every other field a benchmark carries is the user's own.
SHOWN = ("method", "rank", "batch_size", "dtype", "mode", "params_total", "flops", "flop_ratio", "peak_mem_bytes",
         "accuracy")


def studies(bench):
    """The studies of the benchmark rows that are none of the built-in ones, in file order."""
    return list(dict.fromkeys(b["study"] for b in bench if b["study"] not in STUDIES))


def _reference(rows, b):
    """The study's reference benchmark in `b`'s batch size, dtype and mode: no rank and a FLOP ratio of 1."""
    return next((r for r in rows if r["rank"] is None and r["flop_ratio"] == 1 and r["kind"] == "infer"
                 and (r["batch_size"], r["dtype"], r["mode"]) == (b["batch_size"], b["dtype"], b["mode"])), None)


def table(study, bench, path):
    """(raw, shown) of the study's benchmarks in the reference file `path` (rows as report.results gives them)."""
    rows = sorted((b for b in bench if b["study"] == study and b["file"] == bench[0]["file"]),
                  key=lambda b: (b["dtype"], b["mode"], b["batch_size"], b["method"] != "dense", b["method"],
                                 bench_order(b)))
    info = {name: b["extra_info"] for name, b in by_fullname(load_bench(path)).items()}
    own = list(dict.fromkeys(k for b in rows for k in info[b["fullname"]] if k not in RESERVED_EXTRA_INFO))
    raw, shown = [], []
    for b in rows:
        e, ref = info[b["fullname"]], _reference(rows, b)
        speedup = ref["min_ms"] / b["min_ms"] if ref and b["min_ms"] else None
        raw.append({"fullname": b["fullname"], **{k: e.get(k) for k in SHOWN}, "median_ms": b["median_ms"],
                    "iqr_ms": b["iqr_ms"], "min_ms": b["min_ms"], "speedup_vs_reference": speedup,
                    **{k: e.get(k) for k in own}})
        shown.append({"method": b["method"], "rank": fmt.count(b["rank"]), "batch": b["batch_size"],
                      "dtype": b["dtype"], "mode": b["mode"],
                      "median ms [IQR]": f"{b['median_ms']:.4g} [{b['iqr_ms']:.3g}]", "speedup (min)": fmt.num(speedup),
                      "params": fmt.count(e.get("params_total")),
                      "FLOPs": fmt.si(e.get("flops")), "FLOP ratio": fmt.num(e.get("flop_ratio"), ".3g"),
                      "peak MiB": fmt.mib(e.get("peak_mem_bytes")), "accuracy (%)": fmt.pct(e.get("accuracy")),
                      **{k: _cell(e.get(k)) for k in own}})
    return pd.DataFrame(raw), pd.DataFrame(shown)


def _cell(v):
    """A field of the user's own as a table cell: 4 significant digits for a float, "-" for null, else as text."""
    return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def figures(study, bench, figures_dir):
    """{name: {"png", "pdf"}}: latency against rank per batch size and accuracy against rank, a line per method
    and the unranked models (the reference) as horizontal lines; rows of one dtype and mode."""
    rows = [{**b, "series": b["method"]} for b in bench
            if b["study"] == study and b["file"] == bench[0]["file"] and b["kind"] == "infer"]
    ranked = sorted((b for b in rows if b["rank"] is not None), key=lambda b: b["rank"])
    if not ranked:
        return {}
    xlabel = "rank k (log$_2$ scale)"
    figs = {f"{study}_latency": plots.latency_vs_rank(_latency_panels(study, rows), figures_dir / f"{study}_latency",
                                                      xlabel)}
    largest = max(b["batch_size"] for b in ranked)  # one accuracy per model: the largest batch's benchmark
    series = {}
    for b in (b for b in ranked if b["batch_size"] == largest and b["accuracy"] is not None):
        series.setdefault(b["method"], []).append((b["rank"], b["accuracy"], None))
    refs = [{"name": b["label"], "test_acc": b["accuracy"]} for b in rows
            if b["rank"] is None and b["batch_size"] == largest and b["accuracy"] is not None]
    if series:
        figs[f"{study}_accuracy"] = plots.accuracy_vs_rank(series, refs, None, figures_dir / f"{study}_accuracy",
                                                           xlabel)
    return figs
