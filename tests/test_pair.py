"""The derived speedups written into the benchmark JSON: model vs dense, and the raw-GEMM ceiling."""
import pytest

from lowrank_bench.timing.pair import add_speedups


def bench(kind, k, batch_size, fastest, method=None):
    return {"stats": {"min": fastest, "median": 2 * fastest},
            "extra_info": {"study": "svd", "kind": kind, "method": method or ("dense" if k is None else "svd"),
                           "rank": k, "batch_size": batch_size}}


def test_speedups_and_ceiling():
    rows = [bench("infer", None, 256, 10.0), bench("infer", 8, 256, 4.0), bench("infer", 8, 1, 1.0),
            bench("gemm_dense", None, 256, 6.0), bench("gemm_factored", 8, 256, 1.5)]
    add_speedups(rows)
    e = rows[1]["extra_info"]
    assert e["speedup_vs_dense"] == pytest.approx(2.5)
    assert e["ceiling_speedup"] == pytest.approx(6.0 / 1.5)  # the chains' min times, each one benchmark
    assert e["ceiling_efficiency"] == pytest.approx(2.5 / 4.0)
    assert "speedup_vs_dense" not in rows[0]["extra_info"]  # dense is the reference
    assert "speedup_vs_dense" not in rows[2]["extra_info"]  # no dense run at batch 1: nothing to compare


def test_methods_that_share_a_rank_are_each_their_own_model():
    rows = [bench("infer", None, 256, 10.0), bench("infer", 8, 256, 4.0), bench("infer", 8, 256, 5.0, "whiten"),
            bench("gemm_dense", None, 256, 6.0), bench("gemm_factored", 8, 256, 1.5),
            bench("gemm_factored", 8, 256, 2.0, "whiten")]
    add_speedups(rows)
    assert rows[1]["extra_info"]["speedup_vs_dense"] == pytest.approx(2.5)
    assert rows[2]["extra_info"]["speedup_vs_dense"] == pytest.approx(2.0)
    assert rows[2]["extra_info"]["ceiling_speedup"] == pytest.approx(3.0)


def test_other_studies_untouched():
    rows = [{"stats": {"min": 1.0, "median": 1.0}, "extra_info": {"study": "lora", "kind": "infer", "rank": 4, "batch_size": 1}}]
    add_speedups(rows)
    assert rows[0]["extra_info"] == {"study": "lora", "kind": "infer", "rank": 4, "batch_size": 1}


def test_speedups_compare_like_with_like():
    """A bf16 compiled model is measured against the bf16 compiled dense model, never the fp32 eager one."""
    def at(kind, k, fastest, dtype, mode):
        b = bench(kind, k, 256, fastest)
        b["extra_info"] |= {"dtype": dtype, "mode": mode}
        return b
    rows = [at("infer", None, 10.0, "fp32", "eager"), at("infer", None, 2.0, "bf16", "compiled"),
            at("infer", 8, 1.0, "bf16", "compiled"), at("infer", 8, 4.0, "fp32", "eager")]
    add_speedups(rows)
    assert rows[2]["extra_info"]["speedup_vs_dense"] == pytest.approx(2.0)
    assert rows[3]["extra_info"]["speedup_vs_dense"] == pytest.approx(2.5)
