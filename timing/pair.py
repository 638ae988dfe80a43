"""Ratios of two benchmarks' times: the speedups derived once all benchmarks of a session (or of a `--repeat` pool)
have run. No pytest or torch import: testable alone."""
from lowrank_bench.core.spec import STUDIES

STUDY = "svd"  # the suite that times the raw-GEMM ceiling beside its models


def add_speedups(benchmarks):
    """Add speedup_vs_dense, ceiling_speedup and ceiling_efficiency to the svd inference benchmarks in place.

    Ratios of minimum times: a disturbance only ever adds time, so each benchmark's min is its steadiest estimate,
    and a ratio of two benchmarks run a minute apart must not inherit a disturbance that hit only one of them.
    """
    fastest = lambda b: b["stats"]["min"]
    # Only like with like: a bf16 or compiled model against the dense model and the ceiling of its own dtype and mode;
    # methods that share a rank are each their own model.
    key = lambda e: (e["method"], e["rank"], e["batch_size"], e.get("dtype"), e.get("mode"))
    reference = STUDIES[STUDY].reference
    infer, gemm = {}, {}
    for b in benchmarks:
        e = b.get("extra_info", {})
        if e.get("study") != STUDY:
            continue
        if e.get("kind") == "infer":
            infer[key(e)] = b
        elif e.get("kind") in ("gemm_dense", "gemm_factored"):
            gemm[key(e)] = fastest(b)  # the whole chain of factored layers, timed as one call
    for (method, k, *rest), b in infer.items():
        dense = infer.get((reference, None, *rest))
        if k is None or dense is None:
            continue
        e = b["extra_info"]
        e["speedup_vs_dense"] = fastest(dense) / fastest(b)
        if gemm.get((method, k, *rest)) and gemm.get((reference, None, *rest)):
            e["ceiling_speedup"] = gemm[reference, None, *rest] / gemm[method, k, *rest]
            e["ceiling_efficiency"] = e["speedup_vs_dense"] / e["ceiling_speedup"]
