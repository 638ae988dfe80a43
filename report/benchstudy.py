"""Tables and figures of a study of the user's own, known only from its benchmarks (the `lowrank` fixture's).

Such a study has no results folder (no summary.json, no training), so everything comes from the benchmark file:
per benchmark its latency, the speedup over its study's reference benchmark (the model with no rank whose FLOP
ratio is 1: the reference itself; a ratio of min times, as timing/pair.py), parameters, FLOPs, peak memory,
accuracy and every field of the user's own extra_info; and the figures of latency and accuracy against rank, one
line per method.

Where the benchmarks carry per-example outcomes (core/bench_outcomes.py), the study is decided as the built-in ones
are (core/decision.py): each benchmark's paired difference to the reference benchmark of its batch size, dtype and
mode, with one-sided 95 % bounds, its verdict at the margin the benchmarks were run with (--margin-points), and per
method (with its start, batch size, dtype and mode) the rank chosen by fixed-sequence testing from the largest rank
down; in the table and as a forest plot.
"""
import pandas as pd

from lowrank_bench.core import bench_outcomes
from lowrank_bench.core.benchjson import RESERVED_EXTRA_INFO, by_fullname, load_bench
from lowrank_bench.core.decision import choose_rank, paired_difference, verdict
from lowrank_bench.core.io import UserError
from lowrank_bench.core.spec import STUDIES
from lowrank_bench.report import fmt, plots
from lowrank_bench.report.figures import _latency_panels, _literal
from lowrank_bench.report.results import bench_order

# What a decided benchmark carries: its paired difference to the reference (a fraction) with one-sided 95 % bounds,
# its verdict, and its place in its method's fixed sequence ("chosen", "passed", "stop", "not tested"; None for
# an unranked model), and the margin in points it was decided at.
DECIDED = ("diff", "diff_lower", "diff_upper", "verdict", "sequence", "margin_points")

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


def _study_rows(study, bench):
    """The study's benchmarks of the reference (first) file, in the table's order."""
    return sorted((b for b in bench if b["study"] == study and b["file"] == bench[0]["file"]),
                  key=lambda b: (b["dtype"], b["mode"], b["batch_size"], b["method"] != "dense", b["method"],
                                 bench_order(b)))


def decide(study, bench, path):
    """({fullname: {DECIDED fields}}, [choice]) for the study's benchmarks of the reference file `path` that carry
    outcomes, each against `_reference` of its batch size, dtype and mode; one choice per method, start, batch size,
    dtype and mode: {"method", "init", "batch_size", "dtype", "mode", "margin_points", "rank", "stopped_at",
    "stop_verdict", "tested"}. ({}, []) when no benchmark has outcomes."""
    rows = _study_rows(study, bench)
    info = {name: b["extra_info"] for name, b in by_fullname(load_bench(path)).items()}
    decided = [b for b in rows if info[b["fullname"]].get("outcomes") is not None]
    margins = sorted({info[b["fullname"]]["margin_points"] for b in decided})
    if len(margins) > 1:
        raise UserError(f"{path}: the benchmarks of study {study} were run with margins {margins} points; run them "
                        f"with one --margin-points")
    outcomes = {b["fullname"]: bench_outcomes.read(path, b["fullname"], info[b["fullname"]]) for b in decided}
    fields, diffs, groups = {}, {}, {}
    for b in decided:
        ref = _reference(rows, b)
        if ref is None or ref is b or ref["fullname"] not in outcomes:
            continue
        try:
            diff = paired_difference(outcomes[b["fullname"]], outcomes[ref["fullname"]])
        except UserError as e:
            raise UserError(f"{path}: {b['fullname']} against its reference {ref['fullname']}: {e}") from None
        diffs[b["fullname"]] = diff
        fields[b["fullname"]] = {"diff": diff.mean, "diff_lower": diff.lower, "diff_upper": diff.upper,
                                 "verdict": verdict(diff, margins[0] / 100), "sequence": None,
                                 "margin_points": margins[0]}
        if b["rank"] is not None:
            group = (b["method"], info[b["fullname"]].get("init"), b["batch_size"], b["dtype"], b["mode"])
            groups.setdefault(group, []).append(b)
    choices = []
    for (method, init, batch_size, dtype, mode), members in groups.items():
        by_rank = {b["rank"]: b["fullname"] for b in members}
        if len(by_rank) < len(members):
            raise UserError(f"{path}: study {study} has several {method} benchmarks of one rank in batch {batch_size} "
                            f"{dtype} {mode}; give each its own method or init")
        c = choose_rank([(k, diffs[name]) for k, name in by_rank.items()], margins[0] / 100)
        tested = [k for k, _ in c.tested]
        for k, name in by_rank.items():
            fields[name]["sequence"] = ("chosen" if k == c.rank else "stop" if k == c.stopped_at else
                                        "passed" if k in tested else "not tested")
        choices.append({"method": method, "init": init, "batch_size": batch_size, "dtype": dtype, "mode": mode,
                        "margin_points": margins[0], "rank": c.rank, "stopped_at": c.stopped_at,
                        "stop_verdict": c.stop_verdict, "tested": tested})
    return fields, choices


def choice_line(study, c):
    """One of `decide`'s choices in a sentence: the rank chosen, or that none was within, and where testing stopped."""
    group = f"{study}: {c['method']}" + (f", {c['init']} init" if c["init"] else "") + \
        f" (batch {c['batch_size']}, {c['dtype']} {c['mode']})"
    stop = "" if c["stopped_at"] is None else f"; stopped at rank {c['stopped_at']}: {c['stop_verdict']}"
    if c["rank"] is None:
        return f"{group}: no rank within {c['margin_points']:g} points of the reference{stop}"
    return (f"{group}: chosen rank {c['rank']}, the smallest within {c['margin_points']:g} points of the reference, "
            f"testing from the largest rank down{stop}")


def table(study, bench, path, decided=None):
    """(raw, shown) of the study's benchmarks in the reference file `path` (rows as report.results gives them),
    with the decision fields of `decided` ({fullname: fields}, `decide`'s) where the study has any."""
    rows = _study_rows(study, bench)
    info = {name: b["extra_info"] for name, b in by_fullname(load_bench(path)).items()}
    decided = decided or {}
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
        if decided:
            d = decided.get(b["fullname"], dict.fromkeys(DECIDED))
            raw[-1] |= d
            shown[-1] |= {"diff (pt)": fmt.points(d["diff"]), "lower (pt)": fmt.points(d["diff_lower"]),
                          "upper (pt)": fmt.points(d["diff_upper"]), "verdict": d["verdict"] or "-",
                          "sequence": d["sequence"] or "-"}
    return pd.DataFrame(raw), pd.DataFrame(shown)


def _cell(v):
    """A field of the user's own as a table cell: 4 significant digits for a float, "-" for null, else as text."""
    return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def figures(study, bench, figures_dir, decided=None):
    """{name: {"png", "pdf"}}: latency against rank per batch size and accuracy against rank, a line per method
    and the unranked models (the reference) as horizontal lines; rows of one dtype and mode. With `decided`
    (`decide`'s fields) the forest plot of the decided benchmarks of the largest batch size too."""
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
    if (panel := forest_groups(rows, decided or {})):
        reference = next(b["label"] for b in rows if b["rank"] is None and b["flop_ratio"] == 1)
        margin = next(iter(decided.values()))["margin_points"]
        figs[f"{study}_forest"] = plots.forest({"": panel}, margin, _literal(reference),
                                               figures_dir / f"{study}_forest")
    return figs


def forest_groups(rows, decided):
    """plots.forest's groups for one panel: the decided `rows` of the largest batch size that has decisions, the
    unranked models first, then one group per method (and start), each from its largest rank down."""
    rows = [b for b in rows if b["fullname"] in decided]
    if not rows:
        return []
    largest = max(b["batch_size"] for b in rows)
    groups = {}
    for b in sorted((b for b in rows if b["batch_size"] == largest),
                    key=lambda b: (b["rank"] is not None, b["series"], -(b["rank"] or 0))):
        d = decided[b["fullname"]]
        groups.setdefault("unfactored" if b["rank"] is None else b["series"], []).append(
            (_literal(b["label"]), d["diff"], d["diff_lower"], d["diff_upper"], d["verdict"], d["sequence"]))
    return list(groups.items())
