"""Derived speedups, computed once all benchmarks of a session have run (no pytest import: testable alone)."""


def add_speedups(benchmarks):
    """Add speedup_vs_dense, ceiling_speedup and ceiling_efficiency to the svd inference benchmarks in place.

    Ratios of minimum times: a disturbance only ever adds time, so each benchmark's min is its steadiest estimate,
    and a ratio of two benchmarks run a minute apart must not inherit a disturbance that hit only one of them.
    """
    fastest = lambda b: b["stats"]["min"]
    infer, gemm = {}, {}
    for b in benchmarks:
        e = b.get("extra_info", {})
        if e.get("study") != "svd":
            continue
        if e.get("kind") == "infer":
            infer[e["rank"], e["batch_size"]] = b
        elif e.get("kind") in ("gemm_dense", "gemm_factored"):
            gemm[e["rank"], e["batch_size"]] = fastest(b)  # the whole chain of factored layers, timed as one call
    for (k, batch_size), b in infer.items():
        dense = infer.get((None, batch_size))
        if k is None or dense is None:
            continue
        e = b["extra_info"]
        e["speedup_vs_dense"] = fastest(dense) / fastest(b)
        if gemm.get((k, batch_size)) and gemm.get((None, batch_size)):
            e["ceiling_speedup"] = gemm[None, batch_size] / gemm[k, batch_size]
            e["ceiling_efficiency"] = e["speedup_vs_dense"] / e["ceiling_speedup"]
