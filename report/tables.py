"""Tables from the collector's rows: raw values to CSV, formatted to Markdown and LaTeX (booktabs)."""
import pandas as pd

from lowrank_bench.core.io import atomic_write
from lowrank_bench.core.spec import STUDIES, VERDICT_COLUMNS
from lowrank_bench.report import fmt
from lowrank_bench.report.results import DECISION_FIELDS, bench_order, compared_rows
from lowrank_bench.report.tex import tex


def _note(row):
    notes = ["chosen"] if row["chosen"] else []
    if row.get("costs_more_than_dense"):
        notes.append("costs > dense")
    return ", ".join(notes)


# How a table column prints its row field (core/spec.py `columns` and VERDICT_COLUMNS): (row, field) -> text.
# Accuracies are means over the seeds; "points" is a difference of accuracies (a fraction) in signed points.
FORMATS = {
    "text": lambda r, f: str(r[f]),
    "text_or_dash": lambda r, f: "-" if r.get(f) is None else str(r[f]),
    "table": lambda r, f: r.get(f) or "learned",  # a token table: a pre-defined one's name, else the model's own
    "count": lambda r, f: fmt.count(r.get(f)),
    "pct": lambda r, f: fmt.pct(r.get(f)),
    "points": lambda r, f: fmt.points(r.get(f)),
    "num": lambda r, f: fmt.num(r.get(f)),
    "num_g": lambda r, f: fmt.num(r.get(f), "g"),
    "si": lambda r, f: fmt.si(r.get(f)),
    "mib": lambda r, f: fmt.mib(r.get(f)),
    "kib": lambda r, f: fmt.kib(r.get(f)),
    "note": lambda r, f: _note(r),
}


def _formatted(rows, columns):
    return pd.DataFrame([{header: FORMATS[kind](r, field) for header, field, kind in columns} for r in rows])


def results_table(d):
    """(every field of every row, the formatted columns of the study's spec)."""
    raw = pd.DataFrame([{k: v for k, v in r.items() if k != "series" and not isinstance(v, (dict, list))}
                        for r in d["rows"]])  # per-parameter counts and the like stay in summary.json
    return raw, _formatted(d["rows"], STUDIES[d["study"]].columns)


def verdict_table(d):
    """(the decision fields of every row compared with a reference, VERDICT_COLUMNS formatted), in the order they
    were decided; None when no row carries a verdict."""
    rows = compared_rows(d)
    if not rows:
        return None
    fields = ["label", "study", "method", "rank", "init", "embedding", "n_seeds", *DECISION_FIELDS, "sequence"]
    return pd.DataFrame([{f: r.get(f) for f in fields} for r in rows]), _formatted(rows, VERDICT_COLUMNS)


def layers_table(layers):
    raw = pd.DataFrame(layers)
    shown = pd.DataFrame([{"layer": l["layer"], "k": l["rank"], "m x n": f"{l['m']} x {l['n']}",
                           "rel. error": f"{l['rel_error']:.4f}", "energy (%)": fmt.pct(l["energy"]),
                           "params": fmt.count(l["params"]), "dense params": fmt.count(l["dense_params"]),
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
    keys = list(dict.fromkeys((b["method"], b["rank"], b["variant"]) for b in sorted(rows, key=bench_order)))
    shown = []
    for key in keys:
        mine = {b["batch_size"]: b for b in rows if (b["method"], b["rank"], b["variant"]) == key}
        first = next(iter(mine.values()))
        line = {"model": first["label"]}
        if d["study"] == "lora":
            line["variant"] = first["variant"] or "-"
        line["FLOP ratio"] = f"{first['flop_ratio']:.3g}"
        for bs in sizes:
            b = mine.get(bs)
            line[f"bs {bs} (ms)"] = "-" if b is None else f"{b['median_ms']:.3g} [{b['iqr_ms']:.2g}]"
        shown.append(line)
    return raw, pd.DataFrame(shown)


def ceiling_table(bench):
    """Study 1 against the raw-GEMM ceiling, per dtype, mode, k and batch size: the bare dense chain and the bare
    factored chain (every factored layer's products in one call; min µs of their own benchmarks), the ceiling's
    speedup over dense, the model's (paired, with its interval, and the ratio of min times for comparison), and
    the efficiency: the median over paired rounds of the model's speedup over the ceiling's (timing/pair.py); each
    in the model's own dtype and mode."""
    infer = [b for b in bench if b["study"] == "svd" and b["kind"] == "infer" and b["ceiling_speedup"]]
    if not infer:
        return None
    axes = lambda b: (b.get("dtype", "fp32"), b.get("mode", "eager"))
    gemm = {(b["rank"], b["batch_size"], *axes(b)): 1e3 * b["min_ms"] for b in bench
            if b["study"] == "svd" and b["kind"] in ("gemm_dense", "gemm_factored")}
    order = list(dict.fromkeys(axes(b) for b in infer))  # as measured: fp32 eager first by default
    fields = ("speedup_paired", "speedup_paired_lower", "speedup_paired_upper", "speedup_vs_dense", "ceiling_speedup",
              "ceiling_efficiency")
    raw, shown = [], []
    for b in sorted(infer, key=lambda b: (order.index(axes(b)), b["batch_size"], b["rank"])):
        k, bs = b["rank"], b["batch_size"]
        chains = gemm.get((None, bs, *axes(b))), gemm.get((k, bs, *axes(b)))
        raw.append({"dtype": axes(b)[0], "mode": axes(b)[1], "rank": k, "batch_size": bs,
                    "dense_chain_us": chains[0], "factored_chain_us": chains[1], **{f: b.get(f) for f in fields}})
        shown.append({"dtype": axes(b)[0], "mode": axes(b)[1], "k": k, "batch": bs,
                      "dense / factored chain (us)": " / ".join("-" if t is None else f"{t:,.0f}" for t in chains),
                      "ceiling speedup": f"{b['ceiling_speedup']:.2f}",
                      "model speedup [95 % bounds]": fmt.interval(*(b.get(f) for f in fields[:3])),
                      "model speedup, min times": fmt.num(b.get("speedup_vs_dense")),
                      "efficiency": f"{b['ceiling_efficiency']:.2f}"})
    return pd.DataFrame(raw), pd.DataFrame(shown)


def _speedup(cell):
    """A speedup map's cell: the paired speedup with its bounds, or a ratio of min times alone (older files)."""
    return fmt.num(cell) if cell is None or cell.lower is None else fmt.interval(cell, cell.lower, cell.upper)


def speedup_map_table(maps, accuracy, reference, seeds):
    """Measured speedup over the dense reference per (dtype, mode, rank) row and batch-size column (> 1 pays), with
    the test accuracy in that dtype and mode of the checkpoint timed, whose seed (`seeds`) the header names: the
    results tables give means over seeds instead. Each block starts with the `reference` model itself. `maps`,
    `accuracy` and `seeds` as report.results.speedup_cells, accuracy_by_axes and timed_seeds give them."""
    acc_header = "test acc (%), " + (f"seed {seeds[0]}" if len(seeds) == 1 else "timed seed")
    raw = pd.DataFrame([{"dtype": dtype, "mode": mode, "rank": k, "batch_size": bs, "speedup": float(v),
                         "speedup_lower": v.lower, "speedup_upper": v.upper, "accuracy": accuracy.get((dtype, mode, k))}
                        for (dtype, mode), cells in maps.items() for (k, bs), v in sorted(cells.items())])
    shown = []
    for (dtype, mode), cells in maps.items():
        sizes = sorted({bs for _, bs in cells})
        for k in [None, *sorted({k for k, _ in cells})]:
            shown.append({"dtype": dtype, "mode": mode, "model": reference if k is None else str(k),
                          acc_header: fmt.pct(accuracy.get((dtype, mode, k))),
                          **{f"batch {bs}": "1" if k is None else _speedup(cells.get((k, bs))) for bs in sizes}})
    return raw, pd.DataFrame(shown).fillna("-")


def comparison_table(d, bench, labels):
    """Each file's median latency (ms) side by side, joined on fullname, as a ratio to the first file's."""
    mine = [b for b in bench if b["study"] == d["study"]]
    first = [b for b in mine if b["file"] == labels[0]]
    if len(labels) < 2 or not first:
        return None
    by_file = {lab: {b["fullname"]: b for b in mine if b["file"] == lab} for lab in labels}
    first.sort(key=lambda b: (b["kind"], bench_order(b)))
    raw, shown = [], []
    for b in first:
        line = {"benchmark": b["fullname"].rpartition("::")[2]}  # the test id names model, batch size and layer
        rec = {"fullname": b["fullname"], "kind": b["kind"], "batch_size": b["batch_size"]}
        for lab in labels:
            other = by_file[lab].get(b["fullname"])
            ms = None if other is None else other["median_ms"]
            rec[f"{lab}_median_ms"] = ms
            line[f"{lab} (ms)"] = fmt.num(ms, ".3g")
            if lab != labels[0]:
                ratio = None if ms is None else ms / b["median_ms"]
                rec[f"{lab}/{labels[0]}"] = ratio
                line[f"{lab}/{labels[0]}"] = fmt.num(ratio)
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
    """`name`.csv (raw values), .md and .tex (formatted; a booktabs tabular, or a longtable with a caption). Every
    cell and header of the .tex goes through `tex` (report/tex.py); the caption is the caller's LaTeX."""
    atomic_write(tables_dir / f"{name}.csv", raw.to_csv(index=False))
    atomic_write(tables_dir / f"{name}.md", to_markdown(shown))
    column_format = "l" + "r" * (len(shown.columns) - 1)
    source = shown.map(tex).rename(columns=tex).to_latex(
        index=False, escape=False, column_format=column_format, longtable=longtable_caption is not None,
        caption=longtable_caption, label=f"tab:{name.replace('_', '-')}" if longtable_caption else None)
    atomic_write(tables_dir / f"{name}.tex", source)
    return {ext: str(tables_dir / f"{name}.{ext}") for ext in ("csv", "md", "tex")}
