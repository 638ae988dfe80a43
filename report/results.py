"""Read the studies' summaries and pytest-benchmark JSON files into plain rows (no pytest, no torch).

Reads results/<profile>/{svd,lora,attention}/summary.json (with the checkpoint sidecars of the baseline and the
chosen run for training curves and confusion matrices) and any number of benchmark files. Rows keep the variant's
key fields (`core.variants`): every join below is on those, and `label` is only what people read.
"""
from pathlib import Path
from types import SimpleNamespace

from lowrank_bench.core import decision
from lowrank_bench.core.benchjson import axes, load_bench, require_extra_info
from lowrank_bench.core.io import UserError
from lowrank_bench.core.spec import STUDIES
from lowrank_bench.core.summary import read_sidecar, read_summary
from lowrank_bench.core.variants import key, row_id, variant_id

# The decision (core/decision.py) a compared row carries: its paired difference to its reference (variant -
# reference, a fraction) with one-sided 95 % bounds and verdict on the validation part that decides, and the same
# difference on test, which decides nothing; null on a reference row.
DECISION_FIELDS = ("val_diff", "val_diff_lower", "val_diff_upper", "verdict", "test_diff", "test_diff_lower",
                   "test_diff_upper")
# What the latency tables and figures read from each benchmark's extra_info.
BENCH_FIELDS = ("study", "kind", "method", "rank", "batch_size", "accuracy", "flop_ratio", "peak_mem_bytes")


def same_model(a, b):
    """Whether a summary row and a benchmark row measured the same architecture (timing ignores the init)."""
    return (a["method"], a["rank"]) == (b["method"], b["rank"])


def load_study(results_dir, study):
    """The study's summary with its rows marked (chosen, series) and the baseline/chosen runs' sidecars.

    None when the study was not run (no summary.json).
    """
    path = results_dir / study / "summary.json"
    if not path.exists():
        return None
    summary = read_summary(path, study)
    rows = summary["rows"]
    chosen_key = summary.get("chosen") or {}
    margin = summary["margin_points"] / 100
    for i, row in enumerate(rows):
        missing = [f for f in DECISION_FIELDS if f not in row]
        if missing:
            raise UserError(f"{path}: rows[{i}] lacks {', '.join(missing)}; re-run `lowrank-bench train {study}`")
        _check_decision(path, i, row, margin)
        row["label"] = row_id(row)
        row["series"] = _series(study, row)
        row["chosen"] = bool(chosen_key) and all(row.get(f) == v for f, v in chosen_key.items())
    _mark_sequence(path, rows, summary["choices"])
    reference = STUDIES[study].reference
    baseline = next((r for r in rows if r["method"] == reference and r["rank"] is None and not r.get("embedding")),
                    None)
    if baseline is None:  # every row is compared with it: without it no sentence may name another row so
        raise UserError(f"{path}: rows: no {reference} row (method {reference!r}, rank null), the reference every "
                        f"row is compared with; re-run `lowrank-bench train {study}`")
    chosen = next((r for r in rows if r["chosen"]), None)
    seed_rows = summary.get("seed_rows") or rows  # a summary of one seed per variant has only "rows"
    runs = {}
    for role, row in (("baseline", baseline), ("chosen", chosen)):
        if not row or row["label"] in {r["label"] for r in runs.values()}:
            continue
        sidecars = [results_dir / f"{r['checkpoint']}.json" for r in seed_rows
                    if key(r) == key(row) and r.get("checkpoint")]
        metas = [read_sidecar(path, study) for path in sidecars if path.exists()]
        if metas:  # every seed's curves (drawn as a band), the first seed's confusion matrix
            runs[role] = {"label": row["label"], "histories": [m.get("history") or [] for m in metas],
                          **{k: metas[0].get(k) for k in ("confusion", "classes")}}
    return {"study": study, "rows": rows, "layers": summary.get("layers") or [], "baseline": baseline,
            "chosen": chosen, "runs": runs,
            "meta": {k: v for k, v in summary.items() if k not in ("rows", "layers")}}


def _check_decision(path, i, row, margin):
    """A row's verdict must be what its own numbers give (core/summary.py checked their types): bounds around the
    difference and the verdict the rule (core.decision.verdict) gives them, so no sentence built on the verdict can
    say more than the bounds do."""
    if row.get("verdict") is None:
        return
    val = [row.get(f) for f in ("val_diff_lower", "val_diff", "val_diff_upper")]
    if None in val or val != sorted(val):
        raise UserError(f"{path}: rows[{i}] has verdict {row['verdict']!r} without a difference inside its bounds "
                        f"(val_diff_lower <= val_diff <= val_diff_upper); re-run the study")
    rule = decision.verdict(SimpleNamespace(lower=val[0], upper=val[2]), margin)  # the rule reads the bounds alone
    if row["verdict"] != rule:
        raise UserError(f"{path}: rows[{i}] says {row['verdict']!r} but its bounds {val[0]:+.4f} .. {val[2]:+.4f} "
                        f"against the margin -{margin:.4f} make it {rule!r}; re-run the study")


def _mark_sequence(path, rows, choices):
    """Each factored row's place in its group's fixed sequence (`sequence`: "passed", "chosen", "stop" or "not
    tested"; None outside every group), after checking that each choice names rows that exist and agrees with
    their verdicts."""
    for row in rows:
        row["sequence"] = None
    for i, c in enumerate(choices):
        group = {r["rank"]: r for r in rows if r["rank"] is not None
                 and (r["method"], r.get("init"), r.get("embedding")) == (c["method"], c["init"], c["embedding"])}
        named = [k for k in c["tested"] + [c["rank"], c["stopped_at"]] if k is not None]
        if any(k not in group for k in named) or c["tested"] != sorted(c["tested"], reverse=True) \
                or (c["rank"] is not None and group[c["rank"]].get("verdict") != decision.WITHIN) \
                or (c["stopped_at"] is not None and group[c["stopped_at"]].get("verdict") != c["stop_verdict"]):
            raise UserError(f"{path}: choices[{i}] does not match its rows (tested ranks largest first, each a row; "
                            f"the chosen rank within, the stop's verdict its row's); re-run the study")
        for k, r in group.items():
            r["sequence"] = ("chosen" if k == c["rank"] else "stop" if k == c["stopped_at"] else
                             "passed" if k in c["tested"] else "not tested")


def compared_rows(d):
    """The rows with a verdict, ordered as they were decided: by token table, then group (series), each group's
    ranks from the largest down; unfactored rows first within their table."""
    rows = [r for r in d["rows"] if r.get("verdict") is not None]
    tables = list(dict.fromkeys(r.get("embedding") for r in rows))
    series = list(dict.fromkeys(r["series"] for r in rows))
    return sorted(rows, key=lambda r: (tables.index(r.get("embedding")), r["rank"] is not None,
                                       series.index(r["series"]), -(r["rank"] or 0)))


def group_name(study, method, init=None, embedding=None):
    """The name of a group of factored rows (a line in the figures, a rank choice in the text): its token table,
    start and method (where the study's methods share ranks)."""
    parts = [f"{embedding} table" if embedding else None, f"{init} init" if init else None,
             method if STUDIES[study].method_in_id else None]
    return ", ".join(p for p in parts if p) or method


def _series(study, row):
    """The line a summary row belongs to in the accuracy and cost figures: its token table, start and method
    (where the study's methods share ranks); an unfactored row is its method, after its table."""
    if row["rank"] is None:
        return ", ".join(p for p in (f"{row['embedding']} table" if row.get("embedding") else None, row["method"]) if p)
    return group_name(study, row["method"], row.get("init"), row.get("embedding"))


def bench_labels(paths):
    """Short, distinct labels for the benchmark files: the stem, or parent/stem where stems collide."""
    labels = [p.stem for p in paths]
    if len(set(labels)) < len(labels):
        labels = [f"{p.parent.name}/{p.stem}" for p in paths]
    if len(set(labels)) < len(labels):
        labels = [f"{i + 1}:{p.stem}" for i, p in enumerate(paths)]
    return labels


def load_benches(paths):
    """(plain rows, one per benchmark of every file; one machine description per file)."""
    rows, machines = [], []
    for path, file_label in zip(paths, bench_labels(paths)):
        bench = load_bench(path)
        require_extra_info(bench, BENCH_FIELDS, path)
        info = bench["machine_info"]
        profiles = sorted({b["extra_info"].get("profile") for b in bench["benchmarks"]} - {None})
        machines.append({"label": file_label, "file": str(path), "profile": ", ".join(profiles) or None,
                         "node": info.get("node"),
                         "cpu": (info.get("cpu") or {}).get("brand_raw"), "gpu": info.get("gpu_name"),
                         "threads": info.get("threads"), "torch": info.get("torch"),
                         "datetime": bench.get("datetime")})
        for b in bench["benchmarks"]:
            e, s = b["extra_info"], b["stats"]
            merged = e.get("merged") if e["method"] == "lora" else None
            # Timing depends on the architecture only, not on retraining or initialisation.
            series = (e["method"] if merged is None else ("merged" if merged else "unmerged"))
            dtype, mode = axes(e)
            rows.append({"file": file_label, "fullname": b["fullname"],
                         "label": variant_id(e["study"], e["method"], e["rank"]),
                         "dtype": dtype, "mode": mode,
                         "series": series, "variant": "" if merged is None else ("merged" if merged else "unmerged"),
                         "study": e["study"], "kind": e["kind"], "method": e["method"], "rank": e["rank"],
                         "batch_size": e["batch_size"], "median_ms": 1e3 * s["median"], "min_ms": 1e3 * s["min"],
                         "iqr_ms": 1e3 * (s.get("iqr") or 0.0), "accuracy": e["accuracy"],
                         "flop_ratio": e["flop_ratio"], "peak_mem_bytes": e["peak_mem_bytes"],
                         "accuracy_timed": e.get("accuracy_timed", e["accuracy"]),  # older files: one seed
                         "seed_timed": e.get("seed_timed"),
                         "accuracy_by_init": {init: e[f"accuracy_{init}"] for init in ("random", "trained")
                                              if e.get(f"accuracy_{init}") is not None},
                         **{f: e.get(f) for f in ("speedup_vs_dense", "speedup_paired", "speedup_paired_lower",
                                                  "speedup_paired_upper", "ceiling_speedup", "ceiling_efficiency")}})
    return rows, machines


def bench_order(b):
    """Unfactored models first, then by rank; merged before unmerged."""
    return (b["rank"] is not None, b["rank"] or 0, b["label"], b["variant"] != "merged", b["batch_size"])


def default_bench(results_dir):
    path = Path(results_dir) / "bench.json"
    return [path] if path.exists() else []


def primary(bench):
    """The rows of one (dtype, mode), fp32 eager where it was measured, else the first measured: latency tables,
    Pareto figures and quoted latencies show one precision and mode, never a mix (the speedup maps show them all)."""
    measured = list(dict.fromkeys((b["dtype"], b["mode"]) for b in bench))
    pick = ("fp32", "eager") if ("fp32", "eager") in measured else (measured[0] if measured else None)
    return [b for b in bench if (b["dtype"], b["mode"]) == pick]


def _mapped(study, bench):
    """The inference rows of the reference (first) file that a speedup map shows: the study's reference and one
    method's factored models, the first measured (methods that share a rank share the architecture, so its time);
    LoRA's unmerged ones (merged costs what dense costs)."""
    rows = [b for b in bench if b["study"] == study and b["kind"] == "infer" and b["file"] == bench[0]["file"]
            and b["variant"] != "merged"] if bench else []
    method = next((b["method"] for b in rows if b["rank"] is not None), None)
    return [b for b in rows if b["method"] in (STUDIES[study].reference, method)]


class Speedup(float):
    """A speedup over the reference, with `lower`/`upper`: its one-sided 95 % bounds where paired rounds gave them
    (timing/pair.py), else None. A float, so plots and sorting take it as one."""

    def __new__(cls, value, lower=None, upper=None):
        speedup = super().__new__(cls, value)
        speedup.lower, speedup.upper = lower, upper
        return speedup


def speedup_cells(study, bench):
    """{(dtype, mode): {(rank, batch_size): Speedup over the study's reference}} of `_mapped`'s rows, like with
    like: each factored model against the reference model in its own dtype, mode and batch size. The paired
    speedup with its interval where the benchmark has one (timed in alternation with the reference), else the
    ratio of min times of the two benchmarks (older files). The reference is dense for SVD and attention and full
    fine-tuning for LoRA (a dense MLP)."""
    rows = _mapped(study, bench)
    reference = STUDIES[study].reference
    dense = {(b["dtype"], b["mode"], b["batch_size"]): b["min_ms"] for b in rows if b["method"] == reference}
    maps = {}
    for b in rows:
        ref = dense.get((b["dtype"], b["mode"], b["batch_size"]))
        if b["rank"] is None:
            continue
        if b.get("speedup_paired") is not None:
            cell = Speedup(b["speedup_paired"], b["speedup_paired_lower"], b["speedup_paired_upper"])
        elif ref:
            cell = Speedup(ref / b["min_ms"])
        else:
            continue
        maps.setdefault((b["dtype"], b["mode"]), {})[b["rank"], b["batch_size"]] = cell
    return maps


def accuracy_by_axes(study, bench):
    """{(dtype, mode, rank): test accuracy} of the study's timed inference models (rank None: the reference), each
    evaluated in its benchmark's own dtype and mode; at the largest batch size measured (compiled models are
    evaluated at their batch size, so batch sizes may differ in the last digit); the rows the map shows."""
    rows = sorted((b for b in _mapped(study, bench) if b["accuracy_timed"] is not None), key=lambda b: b["batch_size"])
    return {(b["dtype"], b["mode"], b["rank"]): b["accuracy_timed"] for b in rows}  # the largest batch size wins


def timed_seeds(study, bench):
    """The seeds whose checkpoints `accuracy_by_axes` evaluated (one, unless files were mixed)."""
    return sorted({b["seed_timed"] for b in _mapped(study, bench) if b["seed_timed"] is not None})
