"""Collect the studies' results and pytest-benchmark JSON files into plain rows, tables and figures.

Reads results/<profile>/{svd,lora,attention}/summary.json (with the checkpoint sidecars for training curves and
confusion matrices) and any number of pytest-benchmark JSON files; writes results/<profile>/tables/*.{csv,md,tex}
and results/<profile>/figures/*.{png,pdf}, plus results/<profile>/collected.json (everything below as one dict,
which the LaTeX report reads). A study that was not run is skipped, so the output grows with the studies.

The first benchmark file is the reference for latency tables and figures; with several files, a comparison
table per study joins them on `fullname` and gives each file's median latency as a ratio to the first's.
No pytest import: benchmark files are read as data (the habit of pytest-benchmark's stats.py).
"""
import argparse
import json
from pathlib import Path

import pandas as pd

from report import plots
from report.benchjson import load_bench, require_extra_info
from training.io import UserError, atomic_write, read_json, write_json

STUDIES = ("svd", "lora", "attention")
# Keys every summary row must carry (values may be null, e.g. no epochs for the untrained "pretrained" row).
# The rank is "k", or "r" for LoRA rows.
ROW_FIELDS = ("name", "method", "val_acc", "test_acc", "params_total", "params_trainable", "flops",
              "epoch_seconds", "peak_mem_bytes", "checkpoint")
# What the latency tables and figures read from each benchmark's extra_info.
BENCH_FIELDS = ("study", "kind", "method", "k", "batch_size", "accuracy", "flop_ratio", "peak_mem_bytes")
# The row each study compares against, first present wins: dense for SVD, full fine-tuning for LoRA.
BASELINES = {"svd": ("dense",), "lora": ("full", "scratch", "head"), "attention": ("dense",)}
RANK_LABEL = {"svd": "rank k (log$_2$ scale)", "lora": "LoRA rank r (log$_2$ scale)",
              "attention": "rank k of Q, K, V (log$_2$ scale)"}
MIB = 2 ** 20


# ---------------------------------------------------------------- reading

def load_study(results_dir, study):
    """The study's summary with its rows marked (chosen, rank, series) and the baseline/chosen runs' sidecars.

    None when the study was not run (no summary.json).
    """
    path = results_dir / study / "summary.json"
    if not path.exists():
        return None
    summary = read_json(path)
    rows = summary.get("rows") if isinstance(summary, dict) else None
    if not isinstance(rows, list) or not rows:
        raise UserError(f"{path}: no 'rows' list; re-run `lowrank-bench train {study}`")
    for i, row in enumerate(rows):
        missing = [f for f in ROW_FIELDS if f not in row]
        if missing:
            raise UserError(f"{path}: rows[{i}] lacks {', '.join(missing)}; re-run `lowrank-bench train {study}`")
        row["rank"] = row["k"] if row.get("k") is not None else row.get("r")
        row["series"] = _series(study, row)
        row["chosen"] = row["name"] == summary.get("chosen")
    names = [r["name"] for r in rows]
    baseline = next((n for n in BASELINES[study] if n in names), None)
    chosen = summary.get("chosen") if summary.get("chosen") in names else None
    runs = {}
    for name in dict.fromkeys(n for n in (baseline, chosen) if n):
        ckpt = next(r for r in rows if r["name"] == name)["checkpoint"]
        sidecar = results_dir / f"{ckpt}.json" if ckpt else None
        if sidecar and sidecar.exists():
            meta = read_json(sidecar)
            runs[name] = {k: meta.get(k) for k in ("history", "confusion", "classes")}
    return {"study": study, "rows": rows, "layers": summary.get("layers") or [], "baseline": baseline,
            "chosen": chosen, "runs": runs,
            "meta": {k: v for k, v in summary.items() if k not in ("rows", "layers")}}


def _series(study, row):
    """The line a summary row belongs to in the accuracy and cost figures."""
    if study == "attention":
        return f"{row['init']} init" if row.get("init") else row["method"]
    return {"svd": "retrained", "lora": "LoRA"}[study] if row["method"] in ("svd", "lora") else row["method"]


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
    for path, label in zip(paths, bench_labels(paths)):
        bench = load_bench(path)
        require_extra_info(bench, BENCH_FIELDS, path)
        info = bench["machine_info"]
        machines.append({"label": label, "file": str(path), "node": info.get("node"),
                         "cpu": (info.get("cpu") or {}).get("brand_raw"), "gpu": info.get("gpu_name"),
                         "threads": info.get("threads"), "torch": info.get("torch"),
                         "datetime": bench.get("datetime")})
        for b in bench["benchmarks"]:
            e, s = b["extra_info"], b["stats"]
            merged = e.get("merged") if e["method"] == "lora" else None
            # Timing depends on the architecture only, not on retraining or initialisation.
            series = {"attention": "factored Q, K, V"}.get(e["study"], "factored") if merged is None else \
                ("merged" if merged else "unmerged")
            rows.append({"file": label, "fullname": b["fullname"], "name": _bench_name(b), "series": series,
                         "variant": "" if merged is None else ("merged" if merged else "unmerged"),
                         "study": e["study"], "kind": e["kind"], "method": e["method"], "k": e["k"],
                         "batch_size": e["batch_size"], "median_ms": 1e3 * s["median"], "min_ms": 1e3 * s["min"],
                         "iqr_ms": 1e3 * (s.get("iqr") or 0.0), "accuracy": e["accuracy"],
                         "flop_ratio": e["flop_ratio"], "peak_mem_bytes": e["peak_mem_bytes"],
                         "accuracy_by_init": e.get("accuracy_by_init"), "layer": e.get("layer"),
                         **{f: e.get(f) for f in ("speedup_vs_dense", "ceiling_speedup", "ceiling_efficiency")}})
    return rows, machines


def _bench_name(b):
    """The model a benchmark measured: its `k` param ("dense", "k4", "r4"), else built from extra_info."""
    e, k = b["extra_info"], (b.get("params") or {}).get("k")
    if isinstance(k, str):
        return k
    return e["method"] if e["k"] is None else f"{'r' if e['study'] == 'lora' else 'k'}{e['k']}"


def bench_name(study, row):
    """The benchmark id of a summary row. Attention is timed once per k: its two inits share one architecture."""
    if study == "attention":
        return "dense" if row["rank"] is None else f"k{row['rank']}"
    return row["name"]


def _bench_order(b):
    """Unfactored models first, then by rank; merged before unmerged."""
    return (b["k"] is not None, b["k"] or 0, b["name"], b["variant"] != "merged", b["batch_size"])


def pareto_front(points):
    """The (label, cost, gain) points no other point beats on both, cheapest first."""
    front, best = [], float("-inf")
    for p in sorted(points, key=lambda p: (p[1], -p[2])):
        if p[2] > best:
            front.append(p)
            best = p[2]
    return front


# ---------------------------------------------------------------- tables

def _pct(x):
    return "-" if x is None else f"{100 * x:.2f}"


def _count(n):
    return "-" if n is None else f"{int(n):,}"


def _si(x):
    """1234567 -> 1.23M: FLOPs of very different sizes in one short column."""
    if x is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def _mib(b):
    return "-" if b is None else f"{b / MIB:.1f}"


def _kib(b):
    return "-" if b is None else f"{b / 1024:.1f}"


def _secs(s):
    return "-" if s is None else f"{s:.2f}"


def _note(row):
    notes = ["chosen"] if row["chosen"] else []
    if row.get("costs_more_than_dense"):
        notes.append("costs > dense")
    return ", ".join(notes)


# Display columns per study: (header, row -> text). Few and short so that the LaTeX table fits a page.
COLUMNS = {
    "svd": [("model", lambda r: r["name"]), ("trunc. acc (%)", lambda r: _pct(r.get("acc_truncated"))),
            ("test acc (%)", lambda r: _pct(r["test_acc"])), ("val acc (%)", lambda r: _pct(r["val_acc"])),
            ("params", lambda r: _count(r["params_total"])), ("FLOPs", lambda r: _si(r["flops"])),
            ("peak MiB", lambda r: _mib(r["peak_mem_bytes"])), ("s/epoch", lambda r: _secs(r["epoch_seconds"])),
            ("note", _note)],
    "lora": [("model", lambda r: r["name"]), ("alpha", lambda r: "-" if r.get("alpha") is None else f"{r['alpha']:g}"),
             ("test acc (%)", lambda r: _pct(r["test_acc"])), ("val acc (%)", lambda r: _pct(r["val_acc"])),
             ("trainable", lambda r: _count(r["params_trainable"])),
             ("trainable (%)", lambda r: "-" if r.get("trainable_pct") is None else f"{r['trainable_pct']:.2f}"),
             ("total", lambda r: _count(r["params_total"])), ("peak MiB", lambda r: _mib(r["peak_mem_bytes"])),
             ("s/epoch", lambda r: _secs(r["epoch_seconds"])),
             ("ckpt KiB", lambda r: _kib(r.get("checkpoint_bytes"))),
             ("note", _note)],
    "attention": [("model", lambda r: r["name"]), ("test acc (%)", lambda r: _pct(r["test_acc"])),
                  ("val acc (%)", lambda r: _pct(r["val_acc"])), ("QKV params", lambda r: _count(r.get("qkv_params"))),
                  ("params", lambda r: _count(r["params_total"])), ("FLOPs", lambda r: _si(r["flops"])),
                  ("peak MiB", lambda r: _mib(r["peak_mem_bytes"])), ("s/epoch", lambda r: _secs(r["epoch_seconds"])),
                  ("note", _note)],
}


def results_table(d):
    """(every field of every row, the formatted columns)."""
    raw = pd.DataFrame([{k: v for k, v in r.items() if k != "series" and not isinstance(v, (dict, list))}
                        for r in d["rows"]])  # per-parameter counts and the like stay in summary.json
    shown = pd.DataFrame([{h: f(r) for h, f in COLUMNS[d["study"]]} for r in d["rows"]])
    return raw, shown


def layers_table(layers):
    raw = pd.DataFrame(layers)
    shown = pd.DataFrame([{"layer": l["layer"], "k": l["k"], "m x n": f"{l['m']} x {l['n']}",
                           "rel. error": f"{l['rel_error']:.4f}", "energy (%)": f"{100 * l['energy']:.2f}",
                           "params": _count(l["params"]), "dense params": _count(l["dense_params"]),
                           "break-even k": f"{l['break_even']:.1f}",
                           "note": "costs > dense" if l["costs_more_than_dense"] else ""} for l in layers])
    return raw, shown


def latency_table(d, bench):
    """Median [IQR] latency per batch in ms for each model, one column per batch size (reference file)."""
    rows = [b for b in bench if b["study"] == d["study"] and b["kind"] == "infer"]
    if not rows:
        return None
    raw = pd.DataFrame(rows)
    sizes = sorted({b["batch_size"] for b in rows})
    keys = list(dict.fromkeys((b["name"], b["variant"]) for b in sorted(rows, key=_bench_order)))
    shown = []
    for name, variant in keys:
        mine = {b["batch_size"]: b for b in rows if (b["name"], b["variant"]) == (name, variant)}
        line = {"model": name}
        if d["study"] == "lora":
            line["variant"] = variant or "-"
        line["FLOP ratio"] = f"{next(iter(mine.values()))['flop_ratio']:.3g}"
        for bs in sizes:
            b = mine.get(bs)
            line[f"bs {bs} (ms)"] = "-" if b is None else f"{b['median_ms']:.3g} [{b['iqr_ms']:.2g}]"
        shown.append(line)
    return raw, pd.DataFrame(shown)


def ceiling_table(bench):
    """Study 1 against the raw-GEMM ceiling, per k and batch size: each factored layer's bare dense product and
    bare factored pair (min µs, as the speedups use), the ceiling's speedup over dense, the model's, and their
    ratio."""
    infer = [b for b in bench if b["study"] == "svd" and b["kind"] == "infer" and b["ceiling_speedup"]]
    if not infer:
        return None
    gemm = {(b["k"], b["batch_size"], b["layer"]): 1e3 * b["min_ms"] for b in bench
            if b["study"] == "svd" and b["kind"] in ("gemm_dense", "gemm_factored")}
    layers = sorted({layer for _, _, layer in gemm})
    raw, shown = [], []
    for b in sorted(infer, key=lambda b: (b["batch_size"], b["k"])):
        k, bs = b["k"], b["batch_size"]
        raw.append({"k": k, "batch_size": bs, **{f"{layer}_dense_us": gemm.get((None, bs, layer)) for layer in layers},
                    **{f"{layer}_factored_us": gemm.get((k, bs, layer)) for layer in layers},
                    **{f: b[f] for f in ("speedup_vs_dense", "ceiling_speedup", "ceiling_efficiency")}})
        line = {"k": k, "batch": bs}
        for layer in layers:
            pair = gemm.get((None, bs, layer)), gemm.get((k, bs, layer))
            line[f"{layer} dense / pair (us)"] = " / ".join("-" if t is None else f"{t:,.0f}" for t in pair)
        line |= {"ceiling speedup": f"{b['ceiling_speedup']:.2f}", "model speedup": f"{b['speedup_vs_dense']:.2f}",
                 "efficiency": f"{b['ceiling_efficiency']:.2f}"}
        shown.append(line)
    return pd.DataFrame(raw), pd.DataFrame(shown)


def comparison_table(d, bench, labels):
    """Each file's median latency (ms) side by side, joined on fullname, as a ratio to the first file's."""
    mine = [b for b in bench if b["study"] == d["study"]]
    first = [b for b in mine if b["file"] == labels[0]]
    if len(labels) < 2 or not first:
        return None
    by_file = {lab: {b["fullname"]: b for b in mine if b["file"] == lab} for lab in labels}
    first.sort(key=lambda b: (b["kind"], _bench_order(b)))
    raw, shown = [], []
    for b in first:
        line = {"benchmark": b["fullname"].rpartition("::")[2]}  # the test id names model, batch size and layer
        rec = {"fullname": b["fullname"], "kind": b["kind"], "batch_size": b["batch_size"]}
        for lab in labels:
            other = by_file[lab].get(b["fullname"])
            ms = None if other is None else other["median_ms"]
            rec[f"{lab}_median_ms"] = ms
            line[f"{lab} (ms)"] = "-" if ms is None else f"{ms:.3g}"
            if lab != labels[0]:
                ratio = None if ms is None else ms / b["median_ms"]
                rec[f"{lab}/{labels[0]}"] = ratio
                line[f"{lab}/{labels[0]}"] = "-" if ratio is None else f"{ratio:.2f}"
        raw.append(rec)
        shown.append(line)
    return pd.DataFrame(raw), pd.DataFrame(shown)


def machines_table(machines):
    raw = pd.DataFrame(machines)
    shown = pd.DataFrame([{"file": m["label"], "node": m["node"] or "-", "CPU": m["cpu"] or "-",
                           "GPU": m["gpu"] or "-", "threads": m["threads"] if m["threads"] is not None else "-",
                           "torch": m["torch"] or "-"} for m in machines])
    return raw, shown


def to_markdown(df):
    """A GitHub Markdown table (pandas' to_markdown needs `tabulate`, which is not a dependency)."""
    cells = lambda values: "| " + " | ".join(str(v).replace("|", "\\|") for v in values) + " |"
    lines = [cells(df.columns), "|" + "|".join("---" for _ in df.columns) + "|"]
    lines += [cells(row) for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_table(tables_dir, name, raw, shown, longtable_caption=None):
    """`name`.csv (raw values), .md and .tex (formatted; a booktabs tabular, or a longtable with a caption)."""
    atomic_write(tables_dir / f"{name}.csv", raw.to_csv(index=False))
    atomic_write(tables_dir / f"{name}.md", to_markdown(shown))
    fmt = "l" + "r" * (len(shown.columns) - 1)
    tex = shown.to_latex(index=False, escape=True, column_format=fmt, longtable=longtable_caption is not None,
                         caption=longtable_caption,
                         label=f"tab:{name.replace('_', '-')}" if longtable_caption else None)
    atomic_write(tables_dir / f"{name}.tex", tex)
    return {fmt: str(tables_dir / f"{name}.{fmt}") for fmt in ("csv", "md", "tex")}


# ---------------------------------------------------------------- figures

def _points(rows, value):
    out = {}
    for r in rows:
        out.setdefault(r["series"], []).append((r["rank"], value(r)))
    return {s: sorted(p) for s, p in out.items()}


def study_figures(d, bench, figures_dir):
    """Every figure the study's data allows: {name: {"png": path, "pdf": path}}."""
    study, rows, figs = d["study"], d["rows"], {}
    stem = lambda what: figures_dir / f"{study}_{what}"
    ranked = sorted((r for r in rows if r["rank"] is not None), key=lambda r: r["rank"])
    refs = [r for r in rows if r["rank"] is None and r["method"] != "none"]  # near-chance "pretrained" squashes axes
    chosen = next((r for r in rows if r["chosen"]), None)
    star = (chosen["rank"], chosen["test_acc"], f"chosen: {chosen['name']}") \
        if chosen and chosen["rank"] is not None else None
    xlabel = RANK_LABEL[study]

    if ranked and study == "lora":
        figs["lora_accuracy"] = plots.lora_accuracy(
            [{"rank": r["rank"], "test_acc": r["test_acc"], "trainable_pct": r.get("trainable_pct")} for r in ranked],
            refs, star, stem("accuracy"))
    elif ranked:
        truncated = ({"truncated, not retrained": sorted((r["rank"], r.get("acc_truncated")) for r in ranked)}
                     if study == "svd" else None)
        figs[f"{study}_accuracy"] = plots.accuracy_vs_rank(_points(ranked, lambda r: r["test_acc"]), refs, star,
                                                           stem("accuracy"), xlabel, truncated)
    if ranked:
        one = list({r["rank"]: r for r in ranked}.values())  # attention: both inits share their sizes
        params = {"total": [(r["rank"], r["params_total"]) for r in one]}
        if study == "lora":
            params["trainable"] = [(r["rank"], r["params_trainable"]) for r in one]
        if study == "attention" and all(r.get("qkv_params") is not None for r in one):
            params["Q, K, V projections"] = [(r["rank"], r["qkv_params"]) for r in one]
        figs[f"{study}_cost"] = plots.cost_vs_rank(params, _points(ranked, lambda r: r["peak_mem_bytes"]), refs,
                                                   stem("cost"), xlabel)
    if study == "svd" and d["layers"]:
        figs["svd_layers"] = plots.layer_error(d["layers"], stem("layers"))

    infer = [b for b in bench if b["study"] == study and b["kind"] == "infer" and b["file"] == bench[0]["file"]]
    if infer:
        figs[f"{study}_latency"] = plots.latency_vs_rank(_latency_panels(study, infer), stem("latency"), xlabel)
        acc = {r["name"]: r["test_acc"] for r in rows}
        panels = {}
        for bs in sorted({b["batch_size"] for b in infer}):
            pts = []
            for b in (b for b in infer if b["batch_size"] == bs):
                if b["accuracy_by_init"] and b["k"] is not None:  # one timing, one accuracy per init
                    pts += [(f"{init}-k{b['k']}", b["median_ms"], a) for init, a in b["accuracy_by_init"].items()]
                else:
                    pts.append((b["name"] + (f" ({b['variant']})" if b["variant"] else ""), b["median_ms"],
                                b["accuracy"] if b["accuracy"] is not None else acc.get(b["name"])))
            pts = [p for p in pts if p[2] is not None]
            if pts:
                panels[bs] = {"points": pts, "front": pareto_front(pts)}
        if panels:
            figs[f"{study}_pareto"] = plots.pareto(panels, stem("pareto"))

    runs = {f"{'baseline' if n == d['baseline'] else 'chosen'}: {n}": run for n, run in d["runs"].items()}
    histories = {t: r["history"] for t, r in runs.items() if r.get("history")}
    if histories:
        figs[f"{study}_curves"] = plots.curves(histories, stem("curves"))
    matrices = {t: (r["confusion"], r.get("classes")) for t, r in runs.items() if r.get("confusion")}
    if matrices:
        figs[f"{study}_confusion"] = plots.confusion(matrices, stem("confusion"))
    return figs


def _latency_panels(study, infer):
    panels = {}
    for bs in sorted({b["batch_size"] for b in infer}):
        here = [b for b in infer if b["batch_size"] == bs]
        refs = [b for b in here if b["k"] is None]
        ref = next((b for n in BASELINES[study] for b in refs if b["name"] == n), refs[0] if refs else None)
        series, predicted = {}, {}
        for b in sorted((b for b in here if b["k"] is not None), key=lambda b: b["k"]):
            series.setdefault(b["series"], []).append((b["k"], b["median_ms"], b["iqr_ms"]))
            if ref:
                predicted.setdefault(f"{b['series']}: {ref['name']} × FLOP ratio", []).append(
                    (b["k"], ref["median_ms"] * b["flop_ratio"]))
        unique = {}
        for label, pts in predicted.items():  # both attention inits predict the same line: draw it once
            if pts not in unique.values():
                unique[label] = pts
        if len(unique) == 1:
            unique = {f"predicted: {ref['name']} × FLOP ratio": next(iter(unique.values()))}
        panels[bs] = {"series": series, "predicted": unique,
                      "reference": (f"{ref['name']} (measured)", ref["median_ms"]) if ref else None}
    return panels


# ---------------------------------------------------------------- entry points

def _written_before(results_dir):
    """The tables and figures the previous collection wrote, as listed in its collected.json (the manifest): only
    these may be removed, never a file the user put there. None when there is no readable manifest."""
    try:
        prior = json.loads((results_dir / "collected.json").read_text())
        return [results_dir / kind / Path(p).name for kind in ("tables", "figures")
                for paths in prior[kind].values() for p in paths.values()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


def collect(results_dir: Path, bench_files: list[Path]) -> dict:
    """Read every study present under `results_dir` and the benchmark files; write tables and figures."""
    results_dir, bench_files = Path(results_dir), [Path(p) for p in bench_files]
    studies = {s: d for s in STUDIES if (d := load_study(results_dir, s))}
    if not studies:
        raise UserError(f"{results_dir}: no study results (svd/, lora/ or attention/summary.json); "
                        f"run `lowrank-bench train <study>` for this profile first")
    bench, machines = load_benches(bench_files)
    labels = [m["label"] for m in machines]
    tables_dir, figures_dir = results_dir / "tables", results_dir / "figures"
    written_before = _written_before(results_dir)
    tables, figures = {}, {}
    if machines:
        tables["machines"] = write_table(tables_dir, "machines", *machines_table(machines))
    for study, d in studies.items():
        tables[f"{study}_results"] = write_table(tables_dir, f"{study}_results", *results_table(d))
        if study == "svd" and d["layers"]:
            tables["svd_layers"] = write_table(tables_dir, "svd_layers", *layers_table(d["layers"]))
        if (t := latency_table(d, [b for b in bench if b["file"] == labels[0]] if labels else [])):
            tables[f"{study}_latency"] = write_table(tables_dir, f"{study}_latency", *t)
        if study == "svd" and (t := ceiling_table([b for b in bench if b["file"] == labels[0]] if labels else [])):
            tables["svd_ceiling"] = write_table(tables_dir, "svd_ceiling", *t)
        if (t := comparison_table(d, bench, labels)):
            tables[f"{study}_comparison"] = write_table(tables_dir, f"{study}_comparison", *t,
                                                        longtable_caption=f"\\ComparisonCaption{{{study}}}")
        figures |= study_figures(d, bench, figures_dir)
    made = {Path(p).name for kind in (tables, figures) for paths in kind.values() for p in paths.values()}
    for old in written_before:
        if old.name not in made and old.is_file():  # from an earlier run with a study or benchmark file gone now
            old.unlink()
    collected = {"results_dir": str(results_dir), "profile": results_dir.name,
                 "bench_files": [str(p) for p in bench_files], "machines": machines, "studies": studies,
                 "bench": bench, "tables": tables, "figures": figures}
    write_json(results_dir / "collected.json", collected)
    return collected


def add_arguments(parser):
    """The collector's own arguments; --out and --profile come from the CLI's common options."""
    parser.add_argument("bench", nargs="*", type=Path, metavar="BENCH.json",
                        help="pytest-benchmark JSON files (default: OUT/<profile>/bench.json when it exists); "
                             "the first is the reference, the others are compared with it")


def results_dir_of(args):
    from training.config import resolve_profile_name
    return Path(args.out) / resolve_profile_name(args.profile, getattr(args, "device", "auto"))


def default_bench(results_dir):
    path = Path(results_dir) / "bench.json"
    return [path] if path.exists() else []


def parser():
    p = argparse.ArgumentParser(prog="python -m report.collect", description=__doc__.splitlines()[0])
    p.add_argument("--out", metavar="DIR", type=Path, default=Path("results"),
                   help="results folder (default %(default)s)")
    p.add_argument("--profile", metavar="NAME", default="smoke",
                   help="profile whose results to read (default %(default)s)")
    add_arguments(p)
    return p


def main(argv=None) -> int:
    """`lowrank-bench collect`: takes the CLI's parsed arguments, or an argv list when run on its own."""
    args = argv if isinstance(argv, argparse.Namespace) else parser().parse_args(argv)
    results_dir = results_dir_of(args)
    c = collect(results_dir, getattr(args, "bench", None) or default_bench(results_dir))
    absent = [s for s in STUDIES if s not in c["studies"]]
    print(f"collected {', '.join(c['studies'])}" + (f" ({', '.join(absent)} not run)" if absent else "")
          + f" with {len(c['bench_files'])} benchmark file(s): {len(c['tables'])} tables in {results_dir / 'tables'}, "
            f"{len(c['figures'])} figures in {results_dir / 'figures'}")
    return 0

