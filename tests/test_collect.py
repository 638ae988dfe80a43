"""The collector on synthetic saved results (the schema the studies write) and a saved pytest-benchmark file.

`write_results` is also used by tests/test_report.py. Its numbers match fixtures/bench_sample.json: the same
row names, parameter counts and accuracies as a smoke run of the three studies would give.
"""
import copy
import json
from pathlib import Path

import pytest

from core.io import UserError
from core.variants import variant_id
from report import collect as collect_mod
from report.collect import collect
from report.figures import _latency_panels, pareto_front
from report.tables import ceiling_table, to_markdown
from core.spec import reference_key
from training.stats import over_seeds

BENCH = Path(__file__).resolve().parent.parent / "fixtures" / "bench_sample.json"
STUDIES = ("svd", "lora", "attention")
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DATASETS = {"svd": ("hoda", [str(i) for i in range(10)]), "lora": ("fashion_mnist", FASHION),
            "attention": ("imdb", ["negative", "positive"])}


def _history(epochs, final_acc):
    out = []
    for e in range(1, epochs + 1):
        acc = final_acc - 0.3 / e ** 2
        out.append({"epoch": e, "train_loss": 1.5 / e, "train_acc": acc + 0.01, "stop_loss": 1.6 / e,
                    "stop_acc": acc, "test_loss": 1.62 / e, "test_acc": acc - 0.002, "seconds": 1.5})
    return out


def _confusion(classes, acc, n=100):
    k = len(classes)
    right = round(n * acc)
    return [[right if i == j else (n - right) // (k - 1) + (j == (i + 1) % k) * ((n - right) % (k - 1))
             for j in range(k)] for i in range(k)]


def _row(study, method, rank, test_acc, params, trainable, flops, init=None, embedding=None, **extra):
    return {"study": study, "method": method, "rank": rank, "init": init, "embedding": embedding,
            "val_acc": test_acc + 0.001,
            "test_acc": test_acc, "params_total": params, "params_trainable": trainable, "flops": flops,
            "epoch_seconds": 0.8 + (params / 2e6), "train_seconds": 2.4 + params / 1e6,
            "peak_mem_bytes": 40 * 2 ** 20 + 12 * trainable,
            "checkpoint": f"{study}/{variant_id(study, method, rank, init, embedding)}", **extra}


def svd_summary():
    rows = [_row("svd", "dense", None, 0.9870, 1_579_530, 1_579_530, 3_155_968, acc_truncated=None,
                 costs_more_than_dense=False)]
    for k, p, f, acc, acc_t in ((4, 21_002, 38_912, 0.9420, 0.3110), (32, 121_354, 239_616, 0.9820, 0.8950),
                                (128, 465_418, 927_744, 0.9865, 0.9810)):
        rows.append(_row("svd", "svd", k, acc, p, p, f, acc_truncated=acc_t, costs_more_than_dense=False))
    layers = []
    for layer, m, n in (("hidden.0", 1024, 1024), ("hidden.3", 512, 1024)):
        for k in (4, 32, 128):
            be = m * n / (m + n)
            layers.append({"layer": layer, "rank": k, "m": m, "n": n, "rel_error": 0.9 / k ** 0.5,
                           "energy": 1 - 0.81 / k, "params": k * (m + n) + m, "flops": 2 * k * (m + n),
                           "bytes": 4 * (k * (m + n) + m), "dense_params": m * n + m, "break_even": be,
                           "costs_more_than_dense": k >= be})
    return {"chosen": {"method": "svd", "rank": 128, "init": None}, "rows": rows, "layers": layers}


def lora_summary():
    total = 1_579_530
    rows = [_row("lora", "pretrained", None, 0.1040, total, 0, 3_155_968, alpha=None,
                 trainable_pct=0.0, checkpoint_bytes=None),
            _row("lora", "head", None, 0.7840, total, 5_130, 3_155_968, alpha=None,
                 trainable_pct=100 * 5_130 / total, checkpoint_bytes=20_900),
            _row("lora", "full", None, 0.8890, total, total, 3_155_968, alpha=None,
                 trainable_pct=100.0, checkpoint_bytes=6_320_000),
            _row("lora", "scratch", None, 0.8800, total, total, 3_155_968, alpha=None,
                 trainable_pct=100.0, checkpoint_bytes=6_320_000)]
    rows[0]["epoch_seconds"] = rows[0]["train_seconds"] = None
    for r, acc, trainable in ((1, 0.8610, 8_714), (4, 0.8790, 19_466), (16, 0.8850, 62_474)):
        t = total + r * 3584
        rows.append(_row("lora", "lora", r, acc, t, trainable, 3_155_968 + 2 * r * 3584,
                         alpha=2.0 * r, trainable_pct=100 * trainable / t, checkpoint_bytes=4 * trainable + 900))
    return {"chosen": {"method": "lora", "rank": 4, "init": None}, "rows": rows}


def attention_summary():
    rest, dense_qkv = 3_990_018, 49_536
    rows = [_row("attention", "dense", None, 0.7650, rest + dense_qkv, rest + dense_qkv, 18_874_368,
                 qkv_params=dense_qkv)]
    for k, accs in ((4, (0.6980, 0.7310)), (16, (0.7320, 0.7590)), (64, (0.7570, 0.7640))):
        for init, acc in zip(("random", "trained"), accs):
            qkv = 3 * (257 * k + 128)
            rows.append(_row("attention", "svd", k, acc, rest + qkv, rest + qkv,
                             18_874_368 - 128 * (dense_qkv - qkv), init=init, qkv_params=qkv))
    # The pre-defined MiniLM table (30,522 x 384, frozen, projected to 128): ahead of the learned one but at k = 4.
    table, proj = 30_522 * 384, 384 * 128 + 256
    minilm = [_row("attention", "dense", None, 0.8010, table + proj + 123_650 + dense_qkv, proj + 123_650 + dense_qkv,
                   18_900_000, embedding="minilm", qkv_params=dense_qkv)]
    for k, accs in ((4, (0.6900, 0.7300)), (16, (0.7900, 0.7960)), (64, (0.7990, 0.8000))):
        for init, acc in zip(("random", "trained"), accs):
            qkv = 3 * (257 * k + 128)
            minilm.append(_row("attention", "svd", k, acc, table + proj + 123_650 + qkv, proj + 123_650 + qkv,
                               18_900_000 - 128 * (dense_qkv - qkv), init=init, embedding="minilm", qkv_params=qkv))
    return {"chosen": {"method": "svd", "rank": 16, "init": "trained", "embedding": None}, "rows": rows + minilm,
            "chosen_by_embedding": {"minilm": {"random": {"method": "svd", "rank": 64, "init": "random",
                                                          "embedding": "minilm"}, "trained": None}},
            "embedding_frozen": True}


SUMMARIES = {"svd": svd_summary, "lora": lora_summary, "attention": attention_summary}


SEED_OFFSETS = {0: +0.002, 1: -0.002}  # two seeds around each row's accuracy, so the means are the numbers above


def write_results(results_dir, studies=STUDIES, bench=True):
    """Write results/<profile>/<study>/summary.json (two seeds per variant, and their summary) and the checkpoint
    sidecars, as the studies do."""
    results_dir = Path(results_dir)
    for study in studies:
        summary = SUMMARIES[study]()
        seed_rows = []
        for row in summary["rows"]:
            for seed, offset in SEED_OFFSETS.items():
                seed_rows.append({**row, "seed": seed, "val_acc": row["val_acc"] + offset,
                                  "test_acc": row["test_acc"] + offset,
                                  "checkpoint": row["checkpoint"].replace("/", f"/seed{seed}/", 1)})
        # each token table's rows against its own dense model, as the attention study pairs them
        rows = [over_seeds([r for r in seed_rows if r.get("embedding") == e], reference_key(study, e))
                for e in dict.fromkeys(r.get("embedding") for r in seed_rows)]
        summary |= {"study": study, "profile": results_dir.name, "device": "cpu", "device_name": "AMD EPYC 9R14",
                    "tolerance_points": 0.5, "seed_rows": seed_rows, "rows": [r for part in rows for r in part]}
        dataset, classes = DATASETS[study]
        (results_dir / study).mkdir(parents=True, exist_ok=True)
        (results_dir / study / "summary.json").write_text(json.dumps(summary, indent=1))
        for row in seed_rows:
            sidecar = {"format": "lowrank-bench-checkpoint/1", "arch": "MLP", "config": {}, "structure": {},
                       "study": study, "dataset": dataset, "profile": results_dir.name, "seed": row["seed"],
                       "commit": "abc1234", "torch": "2.14.1", "metrics": {"test_acc": row["test_acc"]},
                       "history": _history(3, row["test_acc"]), "confusion": _confusion(classes, row["test_acc"]),
                       "classes": classes}
            (results_dir / f"{row['checkpoint']}.json").parent.mkdir(parents=True, exist_ok=True)
            (results_dir / f"{row['checkpoint']}.json").write_text(json.dumps(sidecar))
    if bench:
        (results_dir / "bench.json").write_text(BENCH.read_text())
    return results_dir


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    results = write_results(tmp_path_factory.mktemp("results") / "smoke")
    return collect(results, [results / "bench.json"])


def read(path):
    return Path(path).read_text()


def test_every_study_gets_its_tables_and_figures(collected):
    expected_tables = {"machines", "svd_results", "svd_layers", "svd_latency", "lora_results", "lora_latency",
                       "attention_results", "attention_latency"} | {f"{s}_speedup_map" for s in STUDIES}
    assert set(collected["tables"]) == expected_tables
    for paths in collected["tables"].values():
        assert {Path(p).suffix for p in paths.values()} == {".csv", ".md", ".tex"}
        assert all(Path(p).stat().st_size > 0 for p in paths.values())
    expected_figures = {f"{s}_{what}" for s in STUDIES
                        for what in ("accuracy", "cost", "latency", "pareto", "curves", "confusion", "speedup_map")} \
        | {"svd_layers"}
    assert set(collected["figures"]) == expected_figures
    for paths in collected["figures"].values():
        assert Path(paths["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert Path(paths["pdf"]).read_bytes()[:5] == b"%PDF-"
    results = Path(collected["results_dir"])
    assert json.loads(read(results / "collected.json"))["studies"].keys() == set(STUDIES)
    assert not list(results.rglob("*.tmp")), "atomic writes leave no temporary files"


def test_results_tables_mark_the_chosen_rank_and_keep_raw_values(collected):
    md = read(collected["tables"]["svd_results"]["md"])
    line = next(l for l in md.splitlines() if l.startswith("| svd-k128 "))
    assert "chosen" in line and "98.65" in line and "465,418" in line and "31.10" not in line
    assert "| 98.10 |" in md  # k128's truncated accuracy
    assert "chosen" not in next(l for l in md.splitlines() if l.startswith("| svd-k32 "))
    csv = read(collected["tables"]["svd_results"]["csv"])
    assert "0.9865" in csv and "465418" in csv  # raw fractions and counts, not the formatted text
    tex = read(collected["tables"]["lora_results"]["tex"])
    assert "\\begin{tabular}" in tex and "\\toprule" in tex and "trainable (\\%)" in tex
    lora_md = read(collected["tables"]["lora_results"]["md"])
    assert "chosen" in next(l for l in lora_md.splitlines() if l.startswith("| r4 "))
    attn_md = read(collected["tables"]["attention_results"]["md"])
    assert "chosen" in next(l for l in attn_md.splitlines() if l.startswith("| trained-svd-k16 | learned |"))
    minilm = [l for l in attn_md.splitlines() if l.startswith("| minilm-")]  # MiniLM's table: its own rows
    assert [l.split(" | ")[:2] for l in minilm] == [["| minilm-dense", "minilm"]] + [
        [f"| minilm-{i}-svd-k{k}", "minilm"] for k in (4, 16, 64) for i in ("random", "trained")]
    assert not any("chosen" in l for l in minilm) and "| +0.00 " not in minilm[0]
    k16 = next(l for l in minilm if l.startswith("| minilm-random-svd-k16 "))
    assert "-1.10" in k16  # paired with MiniLM's own dense model (79.00 - 80.10), not the learned one


def test_latency_table_gives_median_and_iqr_per_batch_size_in_ms(collected):
    bench = json.loads(BENCH.read_text())
    dense_256 = next(b for b in bench["benchmarks"]
                     if b["fullname"].endswith("test_hoda_svd.py::test_infer[dense-b256]"))
    md = read(collected["tables"]["svd_latency"]["md"])
    assert "bs 1 (ms)" in md and "bs 256 (ms)" in md
    line = next(l for l in md.splitlines() if l.startswith("| dense "))
    med, iqr = 1e3 * dense_256["stats"]["median"], 1e3 * dense_256["stats"]["iqr"]
    assert f"{med:.3g} [{iqr:.2g}]" in line
    attention = [l.split("|")[1].strip() for l in read(collected["tables"]["attention_latency"]["md"]).splitlines()[2:]]
    assert attention == ["dense", "svd-k4", "svd-k16", "svd-k64"]  # timed once per k: both inits share the architecture
    lora = read(collected["tables"]["lora_latency"]["md"])
    assert any(l.startswith("| r4 | merged ") for l in lora.splitlines())
    assert any(l.startswith("| r4 | unmerged ") for l in lora.splitlines())


def test_layers_costing_more_than_dense_are_flagged(tmp_path):
    results = write_results(tmp_path / "smoke", studies=("svd",), bench=False)
    summary = json.loads(read(results / "svd" / "summary.json"))
    summary["rows"][-1]["costs_more_than_dense"] = True
    summary["layers"][-1]["costs_more_than_dense"] = True
    (results / "svd" / "summary.json").write_text(json.dumps(summary))
    c = collect(results, [])
    rows = read(c["tables"]["svd_results"]["md"]).splitlines()
    assert "costs > dense" in next(l for l in rows if l.startswith("| svd-k128 "))
    assert "costs > dense" not in next(l for l in rows if l.startswith("| svd-k32 "))
    assert read(c["tables"]["svd_layers"]["md"]).count("costs > dense") == 1


def test_absent_studies_and_benchmarks_are_skipped(tmp_path):
    results = write_results(tmp_path / "smoke", studies=("svd",), bench=False)
    c = collect(results, [])
    assert set(c["studies"]) == {"svd"}
    assert set(c["tables"]) == {"svd_results", "svd_layers"}
    assert set(c["figures"]) == {"svd_accuracy", "svd_cost", "svd_layers", "svd_curves", "svd_confusion"}
    assert not list((results / "figures").glob("lora_*"))
    write_results(results, studies=("lora",), bench=False)  # LoRA appears, then goes again
    assert "lora_accuracy" in collect(results, [])["figures"]
    (results / "lora" / "summary.json").unlink()
    collect(results, [])
    assert sorted(p.name for p in (results / "figures").glob("*.png")) == \
        sorted(f"{name}.png" for name in c["figures"])  # nothing stale left behind


def test_no_results_at_all_is_one_user_error(tmp_path):
    with pytest.raises(UserError, match="no study results"):
        collect(tmp_path / "smoke", [])


def test_summary_row_missing_a_field_is_a_user_error(tmp_path):
    results = write_results(tmp_path / "smoke", studies=("svd",), bench=False)
    summary = json.loads(read(results / "svd" / "summary.json"))
    del summary["rows"][1]["test_acc"]
    (results / "svd" / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(UserError, match=r"summary.json: rows\[1\] lacks test_acc"):
        collect(results, [])


@pytest.mark.parametrize("content, message", [
    ('{"rows": []}', "not pytest-benchmark JSON"),
    ("{not json", "not valid JSON"),
    (None, "lack extra_info fields: .*flop_ratio"),
])
def test_bad_benchmark_json_is_one_user_error(tmp_path, content, message):
    results = write_results(tmp_path / "smoke", studies=("svd",), bench=False)
    bad = tmp_path / "bad.json"
    if content is None:  # real pytest-benchmark output whose benchmarks lack a field the report needs
        bench = json.loads(BENCH.read_text())
        del bench["benchmarks"][0]["extra_info"]["flop_ratio"]
        content = json.dumps(bench)
    bad.write_text(content)
    with pytest.raises(UserError, match=message) as err:
        collect(results, [bad])
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_two_files_give_side_by_side_comparison_with_ratios(tmp_path):
    results = write_results(tmp_path / "smoke", studies=("svd", "lora"))
    head = json.loads(BENCH.read_text())
    for b in head["benchmarks"]:
        b["stats"]["median"] *= 1.25
    head["machine_info"]["gpu_name"] = "NVIDIA H100"
    (results / "head.json").write_text(json.dumps(head))
    c = collect(results, [results / "bench.json", results / "head.json"])
    assert {"svd_comparison", "lora_comparison"} <= set(c["tables"]) and "attention_comparison" not in c["tables"]
    md = read(c["tables"]["svd_comparison"]["md"])
    assert "bench (ms)" in md and "head (ms)" in md and "head/bench" in md
    ratios = [l.split("|")[-2].strip() for l in md.splitlines()[2:]]
    assert ratios and set(ratios) == {"1.25"}
    assert "| test_gemm_factored[hidden.0-k32-b256] |" in md
    assert "\\begin{longtable}" in read(c["tables"]["svd_comparison"]["tex"])
    assert "NVIDIA H100" in read(c["tables"]["machines"]["md"])
    # The first file stays the reference for latency tables.
    first = json.loads(BENCH.read_text())["benchmarks"][0]
    assert f"{1e3 * first['stats']['median']:.3g} [" in read(c["tables"]["svd_latency"]["md"])


def test_latency_prediction_is_reference_times_flop_ratio():
    bench = [{"study": "svd", "kind": "infer", "batch_size": 8, "label": "dense", "method": "dense", "rank": None,
              "series": "dense", "median_ms": 2.0, "iqr_ms": 0.1, "flop_ratio": 1.0},
             {"study": "svd", "kind": "infer", "batch_size": 8, "label": "k4", "method": "svd", "rank": 4,
              "series": "retrained", "median_ms": 0.9, "iqr_ms": 0.1, "flop_ratio": 0.25}]
    panel = _latency_panels("svd", bench)[8]
    assert panel["reference"] == ("dense (measured)", 2.0)
    assert list(panel["predicted"]) == ["predicted: dense × FLOP ratio"]
    assert list(panel["predicted"].values()) == [[(4, 0.5)]]
    assert panel["series"] == {"retrained": [(4, 0.9, 0.1)]}


def test_pareto_front_keeps_only_undominated_points():
    pts = [("a", 1.0, 0.90), ("b", 2.0, 0.95), ("c", 3.0, 0.93), ("d", 0.5, 0.80), ("e", 2.0, 0.94)]
    assert [p[0] for p in pareto_front(pts)] == ["d", "a", "b"]


def test_markdown_writer():
    import pandas as pd
    md = to_markdown(pd.DataFrame({"model": ["k4", "a|b"], "acc": ["1.00", "2.00"]}))
    assert md == "| model | acc |\n|---|---|\n| k4 | 1.00 |\n| a\\|b | 2.00 |\n"


def test_main_reads_the_profile_folder_and_its_bench_json(tmp_path, capsys):
    write_results(tmp_path / "smoke", studies=("attention",))
    assert collect_mod.main(tmp_path / "smoke", [tmp_path / "smoke" / "bench.json"]) == 0
    out = capsys.readouterr().out
    assert "collected attention (svd, lora not run) with 1 benchmark file(s)" in out
    assert (tmp_path / "smoke" / "tables" / "attention_latency.tex").exists()
    assert (tmp_path / "smoke" / "figures" / "attention_pareto.pdf").exists()


def test_the_collected_dict_is_plain_json(collected):
    assert json.loads(json.dumps(collected)) == copy.deepcopy(collected)


def test_a_study_without_chosen_rank_still_collects(tmp_path):
    results = write_results(tmp_path / "smoke", studies=("attention",), bench=False)
    summary = json.loads(read(results / "attention" / "summary.json"))
    summary["chosen"] = None  # no k came within tolerance of dense
    (results / "attention" / "summary.json").write_text(json.dumps(summary))
    c = collect(results, [])
    assert c["studies"]["attention"]["chosen"] is None
    assert "chosen" not in read(c["tables"]["attention_results"]["md"])
    assert {"attention_accuracy", "attention_curves", "attention_confusion"} <= set(c["figures"])
    assert list(c["studies"]["attention"]["runs"]) == ["baseline"]  # curves and confusion of the baseline only


def test_ceiling_table_puts_the_chains_beside_the_model_speedup():
    row = lambda kind, k, ms, **speedups: {
        "study": "svd", "kind": kind, "rank": k, "batch_size": 2048, "min_ms": ms, "dtype": "fp32", "mode": "eager",
        **{f: speedups.get(f) for f in ("speedup_vs_dense", "ceiling_speedup", "ceiling_efficiency")}}
    bench = [row("infer", None, 40.0), row("infer", 16, 5.0, speedup_vs_dense=8.0, ceiling_speedup=10.0,
                                           ceiling_efficiency=0.8),
             row("gemm_dense", None, 38.0), row("gemm_factored", 16, 3.8)]
    raw, shown = ceiling_table(bench)
    assert list(shown.iloc[0]) == ["fp32", "eager", 16, 2048, "38,000 / 3,800", "10.00", "8.00", "0.80"]
    assert raw.iloc[0]["factored_chain_us"] == pytest.approx(3800.0) and raw.iloc[0]["ceiling_efficiency"] == 0.8
    assert ceiling_table([b for b in bench if b["kind"] != "infer" or b["rank"] is None]) is None
    # bf16 compiled: its own chains beside its own model, never the fp32 eager ones
    bf16 = [{**b, "dtype": "bf16", "mode": "compiled", "min_ms": b["min_ms"] / 4} for b in bench]
    raw, shown = ceiling_table(bench + bf16)
    assert list(shown["dtype"]) == ["fp32", "bf16"] and list(shown["mode"]) == ["eager", "compiled"]
    assert shown.iloc[1]["dense / factored chain (us)"] == "9,500 / 950"


def test_files_and_folders_the_user_put_there_are_kept(tmp_path):
    """Only what an earlier collection wrote (listed in its collected.json) is removed, never a user's file."""
    results = write_results(tmp_path / "smoke", studies=("svd",), bench=False)
    collect(results, [])
    (results / "tables" / "my_notes.md").write_text("mine")
    (results / "figures" / "drafts").mkdir()
    (results / "figures" / "drafts" / "sketch.png").write_bytes(b"png")
    write_results(results, studies=("lora",), bench=False)
    collect(results, [])
    (results / "lora" / "summary.json").unlink()
    collect(results, [])  # lora's tables and figures go, the user's things stay
    assert (results / "tables" / "my_notes.md").read_text() == "mine"
    assert (results / "figures" / "drafts" / "sketch.png").read_bytes() == b"png"
    assert not list((results / "figures").glob("lora_*")) and not list((results / "tables").glob("lora_*"))


def test_speedup_map_compares_like_with_like_and_latency_tables_show_one_dtype(tmp_path):
    """A file with fp32 eager and bf16 compiled rows: the map has one block per (dtype, mode), each factored model
    divided into the dense model of its own dtype and mode; the latency table keeps fp32 eager only."""
    results = write_results(tmp_path / "smoke", studies=("svd",))
    bench = json.loads(BENCH.read_text())
    fast = []
    for b in bench["benchmarks"]:
        if b["extra_info"]["kind"] == "infer":
            c = json.loads(json.dumps(b))
            c["fullname"] = c["fullname"].replace("]", "-bf16-compiled]")
            c["extra_info"] |= {"dtype": "bf16", "mode": "compiled",
                                "accuracy_timed": c["extra_info"]["accuracy"] - 0.001}
            c["stats"] = {k: v / (10 if c["extra_info"]["rank"] is None else 2) if isinstance(v, float) else v
                          for k, v in c["stats"].items()}  # dense 10x faster, factored 2x: low rank pays 5x less
            fast.append(c)
    bench["benchmarks"] += fast
    (results / "bench.json").write_text(json.dumps(bench))
    c = collect(results, [results / "bench.json"])
    raw = read(c["tables"]["svd_speedup_map"]["csv"]).splitlines()
    assert raw[0] == "dtype,mode,rank,batch_size,speedup_vs_dense,accuracy"
    svd = [b for b in json.loads(BENCH.read_text())["benchmarks"]
           if b["extra_info"]["study"] == "svd" and b["extra_info"]["kind"] == "infer"]
    dense = {b["extra_info"]["batch_size"]: b["stats"]["min"] for b in svd if b["extra_info"]["rank"] is None}
    for b in (b for b in svd if b["extra_info"]["rank"] is not None):
        e = b["extra_info"]
        eager = dense[e["batch_size"]] / b["stats"]["min"]
        for dtype, mode, want in (("fp32", "eager", eager), ("bf16", "compiled", eager / 5)):
            line = next(l for l in raw if l.startswith(f"{dtype},{mode},{e['rank']},{e['batch_size']},"))
            assert float(line.split(",")[-2]) == pytest.approx(want)
    latency = read(c["tables"]["svd_latency"]["md"])
    assert len(latency.splitlines()) == 2 + len({b["extra_info"]["rank"] for b in svd})  # one row per model
    shown = read(c["tables"]["svd_speedup_map"]["md"])
    acc = {b["extra_info"]["rank"]: b["extra_info"]["accuracy"] for b in svd if b["extra_info"]["batch_size"] == 256}
    assert f"| fp32 | eager | dense | {100 * acc[None]:.2f} | 1 | 1 |" in shown  # each block opens with its reference
    assert f"| bf16 | compiled | dense | {100 * acc[None] - 0.1:.2f} | 1 | 1 |" in shown  # in its own dtype and mode
    assert f"| bf16 | compiled | 32 | {100 * acc[32] - 0.1:.2f} |" in shown
