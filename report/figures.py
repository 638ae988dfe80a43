"""Which figures each study's rows allow, and the data each one is drawn from; `plots` does the drawing."""
from lowrank_bench.report import plots
from lowrank_bench.core.spec import STUDIES
from lowrank_bench.report.results import compared_rows, speedup_cells


def _literal(text):
    """A name from a results file (a layer, a class) as matplotlib prints it: a dollar sign is no math."""
    return text.replace("$", r"\$")


def pareto_front(points):
    """The (label, cost, gain) points no other point beats on both, cheapest first."""
    front, best = [], float("-inf")
    for p in sorted(points, key=lambda p: (p[1], -p[2])):
        if p[2] > best:
            front.append(p)
            best = p[2]
    return front


def _points(rows, value):
    """{series: [(rank, value)]}, by rank."""
    out = {}
    for r in rows:
        out.setdefault(r["series"], []).append((r["rank"], value(r)))
    return {s: sorted(p, key=lambda p: p[0]) for s, p in out.items()}


def study_figures(d, bench, figures_dir, all_bench=None):
    """Every figure the study's data allows: {name: {"png": path, "pdf": path}}. `bench`: rows of one dtype and
    mode (report.results.primary); `all_bench`: every row, for the speedup maps (default `bench`)."""
    all_bench = bench if all_bench is None else all_bench
    study, rows, figs = d["study"], d["rows"], {}
    stem = lambda what: figures_dir / f"{study}_{what}"
    ranked = sorted((r for r in rows if r["rank"] is not None), key=lambda r: r["rank"])
    # references drawn as lines; the near-chance "pretrained" row would squash the axes
    refs = [{**r, "name": r["label"]} for r in rows if r["rank"] is None and r["method"] != "pretrained"]
    chosen = d["chosen"]
    star = (chosen["rank"], chosen["test_acc"], f"chosen: {chosen['label']}") if chosen else None
    xlabel = f"{STUDIES[study].rank_axis} (log$_2$ scale)"

    if ranked and study == "lora":
        figs["lora_accuracy"] = plots.lora_accuracy(
            [{"rank": r["rank"], "test_acc": r["test_acc"], "trainable_pct": r.get("trainable_pct")} for r in ranked],
            refs, star, stem("accuracy"))
    elif ranked:
        # where rows were measured straight after truncation too: each series again, dashed
        truncated = {f"{s}, truncated": pts for s, pts in _points(
            [r for r in ranked if r.get("acc_truncated") is not None], lambda r: r["acc_truncated"]).items()}
        accuracy = _points(ranked, lambda r: r["test_acc"])
        figs[f"{study}_accuracy"] = plots.accuracy_vs_rank(accuracy, refs, star, stem("accuracy"), xlabel, truncated)
    if ranked:
        # attention: both inits share their sizes; the learned table's models (MiniLM's table is wider)
        one = list({r["rank"]: r for r in ranked if not r.get("embedding")}.values())
        params = {"total": [(r["rank"], r["params_total"]) for r in one]}
        if study == "lora":
            params["trainable"] = [(r["rank"], r["params_trainable"]) for r in one]
        if study == "attention" and all(r.get("qkv_params") is not None for r in one):
            params["Q, K, V projections"] = [(r["rank"], r["qkv_params"]) for r in one]
        memory = _points(ranked, lambda r: r["peak_mem_bytes"])
        figs[f"{study}_cost"] = plots.cost_vs_rank(params, memory, refs, stem("cost"), xlabel)
    if study == "svd" and d["layers"]:
        figs["svd_layers"] = plots.layer_error([{**lay, "layer": _literal(lay["layer"])} for lay in d["layers"]],
                                               stem("layers"))
    if (panels := forest_panels(d)):
        figs[f"{study}_forest"] = plots.forest(panels, d["meta"]["margin_points"], STUDIES[study].reference_label,
                                               stem("forest"))

    infer = [b for b in bench if b["study"] == study and b["kind"] == "infer" and b["file"] == bench[0]["file"]]
    if infer:
        figs[f"{study}_latency"] = plots.latency_vs_rank(_latency_panels(study, infer), stem("latency"), xlabel)
        panels = {}
        for bs in sorted({b["batch_size"] for b in infer}):
            pts = []
            for b in (b for b in infer if b["batch_size"] == bs):
                if b["accuracy_by_init"] and b["rank"] is not None:  # one timing, one accuracy per init
                    pts += [(f"{init}-{b['label']}", b["median_ms"], a) for init, a in b["accuracy_by_init"].items()]
                elif b["accuracy"] is not None:
                    pts.append((b["label"] + (f" ({b['variant']})" if b["variant"] else ""), b["median_ms"],
                                b["accuracy"]))
            if pts:
                panels[bs] = {"points": pts, "front": pareto_front(pts)}
        if panels:
            figs[f"{study}_pareto"] = plots.pareto(panels, stem("pareto"))

    if (maps := speedup_cells(study, all_bench)):  # every dtype and mode, each against its own dense model
        figs[f"{study}_speedup_map"] = plots.speedup_map(maps, stem("speedup_map"), STUDIES[study].rank_axis)

    runs = {f"{role}: {run['label']}": run for role, run in d["runs"].items()}
    histories = {t: r["histories"] for t, r in runs.items() if any(r["histories"])}
    if histories:
        figs[f"{study}_curves"] = plots.curves(histories, stem("curves"))
    matrices = {t: (r["confusion"], r.get("classes") and [_literal(c) for c in r["classes"]])
                for t, r in runs.items() if r.get("confusion")}
    if matrices:
        figs[f"{study}_confusion"] = plots.confusion(matrices, stem("confusion"))
    return figs


def forest_panels(d):
    """The forest plot's data (plots.forest): every row with a verdict, one panel per token table (where there are
    several), one group per series and one for the unfactored rows, in the order they were decided
    (report.results.compared_rows); {} when no row has a verdict."""
    compared = compared_rows(d)
    tables = list(dict.fromkeys(r.get("embedding") for r in compared))
    panels = {}
    for table in tables:
        groups = {}
        for r in (r for r in compared if r.get("embedding") == table):
            groups.setdefault("unfactored" if r["rank"] is None else r["series"], []).append(
                (_literal(r["label"]), r["val_diff"], r["val_diff_lower"], r["val_diff_upper"], r["verdict"],
                 r["sequence"]))
        panels["" if len(tables) == 1 else _literal(f"{table or 'learned'} table")] = list(groups.items())
    return panels


def _latency_panels(study, infer):
    panels = {}
    for bs in sorted({b["batch_size"] for b in infer}):
        here = [b for b in infer if b["batch_size"] == bs]
        refs = [b for b in here if b["rank"] is None]
        reference = STUDIES[study].reference if study in STUDIES else None  # a user's study: its first unranked
        ref = next((b for b in refs if b["method"] == reference), refs[0] if refs else None)
        series, predicted = {}, {}
        for b in sorted((b for b in here if b["rank"] is not None), key=lambda b: b["rank"]):
            series.setdefault(b["series"], []).append((b["rank"], b["median_ms"], b["iqr_ms"]))
            if ref:
                predicted.setdefault(f"{b['series']}: {ref['label']} × FLOP ratio", []).append(
                    (b["rank"], ref["median_ms"] * b["flop_ratio"]))
        unique = {}
        for name, pts in predicted.items():  # both attention inits predict the same line: draw it once
            if pts not in unique.values():
                unique[name] = pts
        if len(unique) == 1:
            unique = {f"predicted: {ref['label']} × FLOP ratio": next(iter(unique.values()))}
        panels[bs] = {"series": series, "predicted": unique,
                      "reference": (f"{ref['label']} (measured)", ref["median_ms"]) if ref else None}
    return panels
