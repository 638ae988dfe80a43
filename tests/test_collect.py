"""The collector on synthetic saved results (the schema the studies write) and a saved pytest-benchmark file.

`write_results` is also used by tests/test_report.py and tests/test_prose.py. Its test accuracies match
fixtures/bench_sample.json: the same row names, parameter counts and accuracies as a smoke run of the three studies
would give. Each seed's answers on 2,000 validation and 2,000 test examples are made with exactly the row's
accuracies, and the decision fields (paired differences, bounds, verdicts, the rank choices) are computed from
them by core.decision, as the studies do; validation accuracies are set per row to give every kind of choice: a
stop at an undecided rank (svd; minilm trained start, at its largest rank), at a worse one (LoRA, the learned
table's starts), a chosen rank whose test difference the rule calls worse (LoRA r4).
"""
import copy
import json
import math
import statistics
import zlib
from pathlib import Path

import numpy as np
import pytest

from lowrank_bench.core import decision
from lowrank_bench.core.io import UserError
from lowrank_bench.core.spec import reference_key
from lowrank_bench.core.variants import key, variant_id
from lowrank_bench.report import collect as collect_mod
from lowrank_bench.report.collect import collect
from lowrank_bench.report.figures import _latency_panels, pareto_front
from lowrank_bench.report.tables import ceiling_table, to_markdown

BENCH = Path(__file__).resolve().parent.parent / "fixtures" / "bench_sample.json"
STUDIES = ("svd", "lora", "attention")
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DATASETS = {"svd": ("hoda", [str(i) for i in range(10)]), "lora": ("fashion_mnist", FASHION),
            "attention": ("imdb", ["negative", "positive"])}
MARGIN_POINTS = 0.5
N_EXAMPLES = 2000  # per split: accuracies in steps of 0.0005, so every one below is exact


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


def _row(study, method, rank, test_acc, params, trainable, flops, init=None, embedding=None, val=None, swaps=3,
         spread=0.0, **extra):
    """A variant's row; `val`: its validation accuracy (default test + 0.001). Fixture settings, dropped from the
    rows: `swaps`, how many answers it turns each way beyond what its accuracy needs (more: a wider interval);
    `spread`, how far its seeds' validation accuracies move apart beyond the reference's (a seed effect)."""
    return {"study": study, "method": method, "rank": rank, "init": init, "embedding": embedding,
            "val_acc": test_acc + 0.001 if val is None else val,
            "test_acc": test_acc, "params_total": params, "params_trainable": trainable, "flops": flops,
            "epoch_seconds": 0.8 + (params / 2e6), "train_seconds": 2.4 + params / 1e6,
            "peak_mem_bytes": 40 * 2 ** 20 + 12 * trainable,
            "checkpoint": f"{study}/{variant_id(study, method, rank, init, embedding)}", "swaps": swaps,
            "spread": spread, **extra}


def svd_summary():
    rows = [_row("svd", "dense", None, 0.9870, 1_579_530, 1_579_530, 3_155_968, val=0.9880, acc_truncated=None,
                 costs_more_than_dense=False)]
    for k, p, f, acc, val, acc_t in ((4, 21_002, 38_912, 0.9420, 0.9430, 0.3110),
                                     (32, 121_354, 239_616, 0.9820, 0.9845, 0.8950),
                                     (128, 465_418, 927_744, 0.9865, 0.9875, 0.9810)):
        rows.append(_row("svd", "svd", k, acc, p, p, f, val=val, swaps=12 if k == 32 else 3, acc_truncated=acc_t,
                         costs_more_than_dense=False))
    layers = []
    for layer, m, n in (("hidden.0", 1024, 1024), ("hidden.3", 512, 1024)):
        for k in (4, 32, 128):
            be = m * n / (m + n)
            layers.append({"layer": layer, "rank": k, "m": m, "n": n, "rel_error": 0.9 / k ** 0.5,
                           "energy": 1 - 0.81 / k, "params": k * (m + n) + m, "flops": 2 * k * (m + n),
                           "bytes": 4 * (k * (m + n) + m), "dense_params": m * n + m, "break_even": be,
                           "costs_more_than_dense": k >= be})
    return {"rows": rows, "layers": layers}


def lora_summary():
    total = 1_579_530
    rows = [_row("lora", "pretrained", None, 0.1040, total, 0, 3_155_968, alpha=None,
                 trainable_pct=0.0, checkpoint_bytes=None),
            _row("lora", "head", None, 0.7840, total, 5_130, 3_155_968, alpha=None,
                 trainable_pct=100 * 5_130 / total, checkpoint_bytes=20_900),
            _row("lora", "full", None, 0.8890, total, total, 3_155_968, val=0.8900, alpha=None,
                 trainable_pct=100.0, checkpoint_bytes=6_320_000),
            _row("lora", "scratch", None, 0.8800, total, total, 3_155_968, alpha=None,
                 trainable_pct=100.0, checkpoint_bytes=6_320_000)]
    rows[0]["epoch_seconds"] = rows[0]["train_seconds"] = None
    for r, acc, val, trainable in ((1, 0.8610, 0.8620, 8_714), (4, 0.8790, 0.8895, 19_466),
                                   (16, 0.8850, 0.8905, 62_474)):
        t = total + r * 3584
        rows.append(_row("lora", "lora", r, acc, t, trainable, 3_155_968 + 2 * r * 3584, val=val,
                         alpha=2.0 * r, trainable_pct=100 * trainable / t, checkpoint_bytes=4 * trainable + 900))
    return {"rows": rows}


def attention_summary():
    rest, dense_qkv = 3_990_018, 49_536
    rows = [_row("attention", "dense", None, 0.7650, rest + dense_qkv, rest + dense_qkv, 18_874_368, val=0.7660,
                 qkv_params=dense_qkv)]
    vals = {"random": (0.6990, 0.7570, 0.7645), "trained": (0.7320, 0.7655, 0.7660)}
    for i, (k, accs) in enumerate(((4, (0.6980, 0.7310)), (16, (0.7320, 0.7590)), (64, (0.7570, 0.7640)))):
        for init, acc in zip(("random", "trained"), accs):
            qkv = 3 * (257 * k + 128)
            rows.append(_row("attention", "svd", k, acc, rest + qkv, rest + qkv,
                             18_874_368 - 128 * (dense_qkv - qkv), init=init, val=vals[init][i], qkv_params=qkv))
    # The pre-defined MiniLM table (30,522 x 384, frozen, projected to 128): ahead of the learned one but at k = 4.
    table, proj = 30_522 * 384, 384 * 128 + 256
    minilm = [_row("attention", "dense", None, 0.8010, table + proj + 123_650 + dense_qkv, proj + 123_650 + dense_qkv,
                   18_900_000, val=0.8020, embedding="minilm", qkv_params=dense_qkv)]
    vals = {"random": (0.6910, 0.7910, 0.8015), "trained": (0.7310, 0.7970, 0.7990)}
    for i, (k, accs) in enumerate(((4, (0.6900, 0.7300)), (16, (0.7900, 0.7960)), (64, (0.7990, 0.8000)))):
        for init, acc in zip(("random", "trained"), accs):
            qkv = 3 * (257 * k + 128)
            minilm.append(_row("attention", "svd", k, acc, table + proj + 123_650 + qkv, proj + 123_650 + qkv,
                               18_900_000 - 128 * (dense_qkv - qkv), init=init, embedding="minilm",
                               val=vals[init][i], swaps=15 if (init, k) == ("trained", 64) else 3,
                               qkv_params=qkv))
    return {"rows": rows + minilm, "embedding_frozen": True}


SUMMARIES = {"svd": svd_summary, "lora": lora_summary, "attention": attention_summary}


SEED_OFFSETS = {0: +0.002, 1: -0.002}  # two seeds around each row's accuracy, so the means are the numbers above


def _answers(accuracy, rng, reference=None, swaps=0):
    """Which of N_EXAMPLES one model gets right, with `accuracy` exactly: at random for a reference; else the
    reference's answers with as many right answers turned wrong (or wrong right) as the difference needs and `swaps`
    more each way."""
    if reference is None:
        out = np.zeros(N_EXAMPLES, bool)
        out[rng.permutation(N_EXAMPLES)[:round(accuracy * N_EXAMPLES)]] = True
        return out
    gap = round(accuracy * N_EXAMPLES) - int(reference.sum())
    out = reference.copy()
    out[rng.permutation(np.flatnonzero(reference))[:swaps + max(-gap, 0)]] = False
    out[rng.permutation(np.flatnonzero(~reference))[:swaps + max(gap, 0)]] = True
    return out


def _decided(study, seed_rows):
    """Summary rows (means over seeds, as training/stats.py makes them) with their decision fields, and the rank
    choices, from per-seed answers made with each seed row's accuracies (core.decision, as the studies do)."""
    groups = {}
    for r in seed_rows:
        groups.setdefault(key(r), []).append(r)
    answers = {}  # (key, split) -> (n_seeds, N_EXAMPLES)
    for k, rows in groups.items():
        if k == reference_key(study, k[4]):
            for split in ("val", "test"):
                answers[k, split] = np.stack([_answers(r[f"{split}_acc"], np.random.default_rng(
                    [r["seed"], zlib.crc32(f"{k}{split}".encode())])) for r in rows])
    diffs, out = {}, []
    for k, rows in groups.items():
        row = {f: v for f, v in rows[0].items() if f not in ("seed", "swaps", "spread")}
        for f, v in row.items():
            values = [r[f] for r in rows]
            if isinstance(v, (int, float)) and not isinstance(v, bool) and len(set(values)) > 1:
                row[f] = statistics.fmean(values)
        row |= {"n_seeds": len(rows), "seeds": [r["seed"] for r in rows]}
        ref = reference_key(study, k[4])
        for split in ("val", "test"):
            row |= {f"{split}_diff": None, f"{split}_diff_lower": None, f"{split}_diff_upper": None}
        row["verdict"] = None
        if k != ref:
            for split in ("val", "test"):
                mine = np.stack([_answers(r[f"{split}_acc"], np.random.default_rng(
                    [r["seed"], zlib.crc32(f"{k}{split}".encode())]), answers[ref, split][i], r["swaps"])
                    for i, r in enumerate(rows)])
                d = decision.paired_difference(mine, answers[ref, split])
                row |= {f"{split}_diff": d.mean, f"{split}_diff_lower": d.lower, f"{split}_diff_upper": d.upper}
                diffs[k, split] = d
            row["verdict"] = decision.verdict(diffs[k, "val"], MARGIN_POINTS / 100)
        out.append(row)
    choices = []
    for g in dict.fromkeys((k[1], k[3], k[4]) for k in groups if k[2] is not None):
        ranked = [(k[2], diffs[k, "val"]) for k in groups if k[2] is not None and (k[1], k[3], k[4]) == g]
        c = decision.choose_rank(ranked, MARGIN_POINTS / 100)
        stop = dict(ranked).get(c.stopped_at)
        choices.append({"method": g[0], "init": g[1], "embedding": g[2], "rank": c.rank, "stopped_at": c.stopped_at,
                        "stop_verdict": c.stop_verdict, "tested": [k for k, _ in c.tested],
                        "more_data": decision.data_to_decide(stop, MARGIN_POINTS / 100)
                        if c.stop_verdict == decision.UNDECIDED else None})
    return out, choices


def write_results(results_dir, studies=STUDIES, bench=True):
    """Write results/<profile>/<study>/summary.json (two seeds per variant, their summary rows with the decision
    fields, the rank choices and the chosen row: the smallest chosen rank of the learned table's groups) and the
    checkpoint sidecars, as the studies do."""
    results_dir = Path(results_dir)
    for study in studies:
        summary = SUMMARIES[study]()
        seed_rows = []
        for row in summary["rows"]:
            for seed, offset in SEED_OFFSETS.items():
                seed_rows.append({**row, "seed": seed, "val_acc": row["val_acc"] + offset + math.copysign(
                    row["spread"], offset),
                                  "test_acc": row["test_acc"] + offset,
                                  "checkpoint": row["checkpoint"].replace("/", f"/seed{seed}/", 1)})
        rows, choices = _decided(study, seed_rows)
        chosen = min((c for c in choices if c["rank"] is not None and c["embedding"] is None),
                     key=lambda c: c["rank"], default=None)
        seed_rows = [{f: v for f, v in r.items() if f not in ("swaps", "spread")} for r in seed_rows]
        picked = lambda c: c and {f: c[f] for f in ("method", "rank", "init", "embedding")}  # noqa: E731
        summary |= {"study": study, "profile": results_dir.name, "device": "cpu", "device_name": "AMD EPYC 9R14",
                    "margin_points": MARGIN_POINTS, "seed_rows": seed_rows, "rows": rows, "choices": choices,
                    "chosen": picked(chosen)}
        if study == "attention":  # what the attention study writes beside: the pre-defined table's choices per start
            summary["chosen_by_embedding"] = {"minilm": {c["init"]: picked(c if c["rank"] else None) for c in choices
                                                         if c["embedding"] == "minilm"}}
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
def results(tmp_path_factory):
    return write_results(tmp_path_factory.mktemp("results") / "smoke")


@pytest.fixture(scope="module")
def collected(results):
    """The collection of `results`; it names files relative to that folder."""
    return collect(results, [results / "bench.json"])


def read(path):
    return Path(path).read_text()


def test_every_study_gets_its_tables_and_figures(collected, results):
    expected_tables = {"machines", "svd_results", "svd_layers", "svd_latency", "lora_results", "lora_latency",
                       "attention_results", "attention_latency"} | {f"{s}_{what}" for s in STUDIES
                                                                    for what in ("speedup_map", "verdicts")}
    assert set(collected["tables"]) == expected_tables
    for paths in collected["tables"].values():
        assert {Path(p).suffix for p in paths.values()} == {".csv", ".md", ".tex"}
        assert all((results / p).stat().st_size > 0 for p in paths.values())
    expected_figures = {f"{s}_{what}" for s in STUDIES
                        for what in ("accuracy", "cost", "latency", "pareto", "curves", "confusion", "speedup_map",
                                     "forest")} \
        | {"svd_layers"}
    assert set(collected["figures"]) == expected_figures
    for paths in collected["figures"].values():
        assert (results / paths["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (results / paths["pdf"]).read_bytes()[:5] == b"%PDF-"
    assert json.loads(read(results / "collected.json"))["studies"].keys() == set(STUDIES)
    assert not list(results.rglob("*.tmp")), "atomic writes leave no temporary files"


def test_results_tables_mark_the_chosen_rank_and_keep_raw_values(collected, results):
    md = read(results / collected["tables"]["svd_results"]["md"])
    line = next(l for l in md.splitlines() if l.startswith("| svd-k128 "))
    assert "chosen" in line and "98.65" in line and "465,418" in line and "31.10" not in line
    assert "| 98.10 |" in md  # k128's truncated accuracy
    assert "chosen" not in next(l for l in md.splitlines() if l.startswith("| svd-k32 "))
    csv = read(results / collected["tables"]["svd_results"]["csv"])
    assert "0.9865" in csv and "465418" in csv  # raw fractions and counts, not the formatted text
    tex = read(results / collected["tables"]["lora_results"]["tex"])
    assert "\\begin{tabular}" in tex and "\\toprule" in tex and "trainable (\\%)" in tex
    lora_md = read(results / collected["tables"]["lora_results"]["md"])
    assert "chosen" in next(l for l in lora_md.splitlines() if l.startswith("| r4 "))
    attn_md = read(results / collected["tables"]["attention_results"]["md"])
    assert "chosen" in next(l for l in attn_md.splitlines() if l.startswith("| trained-svd-k16 | learned |"))
    minilm = [l for l in attn_md.splitlines() if l.startswith("| minilm-")]  # MiniLM's table: its own rows
    assert [l.split(" | ")[:2] for l in minilm] == [["| minilm-dense", "minilm"]] + [
        [f"| minilm-{i}-svd-k{k}", "minilm"] for k in (4, 16, 64) for i in ("random", "trained")]
    assert not any("chosen" in l for l in minilm)


def test_latency_table_gives_median_and_iqr_per_batch_size_in_ms(collected, results):
    bench = json.loads(BENCH.read_text())
    dense_256 = next(b for b in bench["benchmarks"]
                     if b["fullname"].endswith("test_hoda_svd.py::test_infer[dense-b256]"))
    md = read(results / collected["tables"]["svd_latency"]["md"])
    assert "bs 1 (ms)" in md and "bs 256 (ms)" in md
    line = next(l for l in md.splitlines() if l.startswith("| dense "))
    med, iqr = 1e3 * dense_256["stats"]["median"], 1e3 * dense_256["stats"]["iqr"]
    assert f"{med:.3g} [{iqr:.2g}]" in line
    attention = [l.split("|")[1].strip()
                 for l in read(results / collected["tables"]["attention_latency"]["md"]).splitlines()[2:]]
    assert attention == ["dense", "svd-k4", "svd-k16", "svd-k64"]  # timed once per k: both inits share the architecture
    lora = read(results / collected["tables"]["lora_latency"]["md"])
    assert any(l.startswith("| r4 | merged ") for l in lora.splitlines())
    assert any(l.startswith("| r4 | unmerged ") for l in lora.splitlines())


def test_layers_costing_more_than_dense_are_flagged(tmp_path):
    results = write_results(tmp_path / "smoke", studies=("svd",), bench=False)
    summary = json.loads(read(results / "svd" / "summary.json"))
    summary["rows"][-1]["costs_more_than_dense"] = True
    summary["layers"][-1]["costs_more_than_dense"] = True
    (results / "svd" / "summary.json").write_text(json.dumps(summary))
    c = collect(results, [])
    rows = read(results / c["tables"]["svd_results"]["md"]).splitlines()
    assert "costs > dense" in next(l for l in rows if l.startswith("| svd-k128 "))
    assert "costs > dense" not in next(l for l in rows if l.startswith("| svd-k32 "))
    assert read(results / c["tables"]["svd_layers"]["md"]).count("costs > dense") == 1


def test_absent_studies_and_benchmarks_are_skipped(tmp_path):
    results = write_results(tmp_path / "smoke", studies=("svd",), bench=False)
    c = collect(results, [])
    assert set(c["studies"]) == {"svd"}
    assert set(c["tables"]) == {"svd_results", "svd_verdicts", "svd_layers"}
    assert set(c["figures"]) == {"svd_accuracy", "svd_cost", "svd_layers", "svd_curves", "svd_confusion", "svd_forest"}
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
    with pytest.raises(UserError, match=r"summary.json: rows\[1\].test_acc: missing; re-run `lowrank-bench train svd`"):
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
    md = read(results / c["tables"]["svd_comparison"]["md"])
    assert "bench (ms)" in md and "head (ms)" in md and "head/bench" in md
    ratios = [l.split("|")[-2].strip() for l in md.splitlines()[2:]]
    assert ratios and set(ratios) == {"1.25"}
    assert "| test_gemm_factored[hidden.0-k32-b256] |" in md
    assert "\\begin{longtable}" in read(results / c["tables"]["svd_comparison"]["tex"])
    assert "NVIDIA H100" in read(results / c["tables"]["machines"]["md"])
    # The first file stays the reference for latency tables.
    first = json.loads(BENCH.read_text())["benchmarks"][0]
    assert f"{1e3 * first['stats']['median']:.3g} [" in read(results / c["tables"]["svd_latency"]["md"])


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
    assert "chosen" not in read(results / c["tables"]["attention_results"]["md"])
    assert {"attention_accuracy", "attention_curves", "attention_confusion"} <= set(c["figures"])
    assert list(c["studies"]["attention"]["runs"]) == ["baseline"]  # curves and confusion of the baseline only


def test_ceiling_table_puts_the_chains_beside_the_model_speedup():
    row = lambda kind, k, ms, **speedups: {
        "study": "svd", "kind": kind, "rank": k, "batch_size": 2048, "min_ms": ms, "dtype": "fp32", "mode": "eager",
        **{f: speedups.get(f) for f in ("speedup_vs_dense", "speedup_paired", "speedup_paired_lower",
                                        "speedup_paired_upper", "ceiling_speedup", "ceiling_efficiency")}}
    bench = [row("infer", None, 40.0), row("infer", 16, 5.0, speedup_vs_dense=8.0, ceiling_speedup=10.0,
                                           ceiling_efficiency=0.8, speedup_paired=7.5, speedup_paired_lower=7.0,
                                           speedup_paired_upper=7.75),
             row("gemm_dense", None, 38.0), row("gemm_factored", 16, 3.8)]
    raw, shown = ceiling_table(bench)
    assert list(shown.iloc[0]) == ["fp32", "eager", 16, 2048, "38,000 / 3,800", "10.00", "7.50 [7.00, 7.75]", "8.00",
                                   "0.80"]
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
    raw = read(results / c["tables"]["svd_speedup_map"]["csv"]).splitlines()
    assert raw[0] == "dtype,mode,rank,batch_size,speedup,speedup_lower,speedup_upper,accuracy"
    svd = [b for b in json.loads(BENCH.read_text())["benchmarks"]
           if b["extra_info"]["study"] == "svd" and b["extra_info"]["kind"] == "infer"]
    dense = {b["extra_info"]["batch_size"]: b["stats"]["min"] for b in svd if b["extra_info"]["rank"] is None}
    for b in (b for b in svd if b["extra_info"]["rank"] is not None):
        e = b["extra_info"]
        eager = dense[e["batch_size"]] / b["stats"]["min"]
        for dtype, mode, want in (("fp32", "eager", eager), ("bf16", "compiled", eager / 5)):
            line = next(l for l in raw if l.startswith(f"{dtype},{mode},{e['rank']},{e['batch_size']},"))
            assert float(line.split(",")[4]) == pytest.approx(want)
    latency = read(results / c["tables"]["svd_latency"]["md"])
    assert len(latency.splitlines()) == 2 + len({b["extra_info"]["rank"] for b in svd})  # one row per model
    shown = read(results / c["tables"]["svd_speedup_map"]["md"])
    acc = {b["extra_info"]["rank"]: b["extra_info"]["accuracy"] for b in svd if b["extra_info"]["batch_size"] == 256}
    assert f"| fp32 | eager | dense | {100 * acc[None]:.2f} | 1 | 1 |" in shown  # each block opens with its reference
    assert f"| bf16 | compiled | dense | {100 * acc[None] - 0.1:.2f} | 1 | 1 |" in shown  # in its own dtype and mode
    assert f"| bf16 | compiled | 32 | {100 * acc[32] - 0.1:.2f} |" in shown


def test_verdict_tables_give_each_decision_in_the_order_it_was_taken(collected, results):
    """Differences against the fixture's accuracies (an oracle: variant minus reference, paired on the same
    examples), bounds and verdicts as the summary has them, each row's place in its group's sequence."""
    md = read(results / collected["tables"]["attention_verdicts"]["md"]).splitlines()
    assert md[0] == ("| model | n | val diff (pt) | lower (pt) | upper (pt) | verdict | sequence | test diff (pt) | "
                     "test lower | test upper |")
    cells = {line.split(" | ")[0][2:]: line.strip("| ").split(" | ") for line in md[2:]}
    assert list(cells) == [f"{t}{i}-svd-k{k}" for t in ("", "minilm-") for i in ("random", "trained")
                           for k in (64, 16, 4)]  # by token table and group, largest rank first; no dense rows
    assert cells["minilm-random-svd-k16"][2] == "-1.10"  # 79.10 - 80.20: against MiniLM's own dense model
    assert cells["trained-svd-k16"][2:7] == ["-0.05", "-0.31", "+0.21", "within", "chosen"]
    assert cells["trained-svd-k16"][7] == "-0.60"  # 75.90 - 76.50 on test
    assert [cells[f"minilm-trained-svd-k{k}"][5:7] for k in (64, 16, 4)] == [
        ["undecided", "stop"], ["undecided", "not tested"], ["worse", "not tested"]]
    summary = json.loads(read(results / "attention" / "summary.json"))
    row = next(r for r in summary["rows"] if (r["rank"], r["init"], r["embedding"]) == (64, "trained", "minilm"))
    raw = read(results / collected["tables"]["attention_verdicts"]["csv"])
    assert f"{row['val_diff_lower']},{row['val_diff_upper']},undecided," in raw  # raw values, as summary.json has them
    lora = [line.split(" | ")[0][2:]
            for line in read(results / collected["tables"]["lora_verdicts"]["md"]).splitlines()[2:]]
    assert lora == ["pretrained", "head", "scratch", "r16", "r4", "r1"]  # full fine-tuning is the reference


def test_the_speedup_tables_say_whose_accuracy_they_show(collected, results):
    """The maps' accuracy is the timed checkpoint's (seed 0), where every other table shows means over seeds."""
    assert "| dtype | mode | model | test acc (%), seed 0 | batch 1 | batch 256 |" in \
        read(results / collected["tables"]["svd_speedup_map"]["md"])


def test_the_forest_plot_draws_every_decision_by_table_and_group(collected):
    from lowrank_bench.report.figures import forest_panels
    panels = forest_panels(collected["studies"]["attention"])
    assert list(panels) == ["learned table", "minilm table"]
    assert [name for name, _ in panels["minilm table"]] == ["minilm table, random init, svd",
                                                            "minilm table, trained init, svd"]
    trained = dict(panels["learned table"])["trained init, svd"]
    assert [(label, verdict, sequence) for label, _, _, _, verdict, sequence in trained] == [
        ("trained-svd-k64", "within", "passed"), ("trained-svd-k16", "within", "chosen"),
        ("trained-svd-k4", "worse", "stop")]
    assert list(forest_panels(collected["studies"]["lora"])) == [""]  # one token table: one panel, no title
    assert [name for name, _ in forest_panels(collected["studies"]["lora"])[""]] == ["unfactored", "lora"]


def _summary_with(tmp_path, change):
    results = write_results(tmp_path / "smoke", studies=("lora",), bench=False)
    path = results / "lora" / "summary.json"
    summary = json.loads(read(path))
    change(summary, {r["rank"]: r for r in summary["rows"] if r["rank"] is not None})
    path.write_text(json.dumps(summary))
    return results


@pytest.mark.parametrize("change, message", [
    (lambda s, r: r[16].update(verdict="within", val_diff=-0.035, val_diff_lower=-0.508, val_diff_upper=0.438),
     r"rows\[6\] says 'within' but its bounds -0.5080 \.\. \+0\.4380 against the margin -0.0050 make it "
     r"'undecided'"),
    (lambda s, r: r[4].update(val_diff_lower=0.001), r"rows\[5\] has verdict 'within' without a difference inside"),
    (lambda s, r: r[4].update(val_diff_lower=None), r"rows\[5\] has verdict 'within' without a difference inside"),
    (lambda s, r: r[1].pop("test_diff_upper"), r"rows\[4\] lacks test_diff_upper"),
    (lambda s, r: s["choices"][0].update(rank=1), r"choices\[0\] does not match its rows"),
    (lambda s, r: s["choices"][0].update(rank=32), r"choices\[0\] does not match its rows"),
    (lambda s, r: s["choices"][0].update(tested=[1, 4, 16]), r"choices\[0\] does not match its rows"),
    (lambda s, r: s["choices"][0].update(stop_verdict="undecided"), r"choices\[0\] does not match its rows"),
])
def test_a_decision_its_own_numbers_contradict_is_one_user_error(tmp_path, change, message):
    """No sentence can call a model within the margin unless its bounds put it there: the collector refuses a
    summary whose verdicts or choices disagree with the rule applied to its own numbers (core/summary.py has
    checked their types)."""
    results = _summary_with(tmp_path, change)
    with pytest.raises(UserError, match=message) as err:
        collect(results, [])
    assert str(results / "lora" / "summary.json") in str(err.value) and "\n" not in str(err.value)


def test_a_benchmark_file_of_another_profile_is_refused_unless_across_profiles(tmp_path, capsys):
    from lowrank_bench import cli
    results = write_results(tmp_path / "smoke", studies=("svd",))
    bench = json.loads(BENCH.read_text())
    for b in bench["benchmarks"]:
        b["extra_info"]["profile"] = "quick"
    quick = tmp_path / "quick.json"
    quick.write_text(json.dumps(bench))
    with pytest.raises(UserError, match=f"{quick}: benchmarks of profile quick, but the results in {results} are of "
                                        f"profile smoke; .*--across-profiles") as e:
        collect(results, [results / "bench.json", quick])
    assert "\n" not in str(e.value) and not (results / "collected.json").exists()
    c = collect(results, [results / "bench.json", quick], across_profiles=True)
    assert c["across_profiles"] and "svd_comparison" in c["tables"]
    assert c["bench_files"] == ["bench.json", str(quick)]  # outside the results folder: by its absolute path
    both = [str(results / "bench.json"), str(quick)]
    rc = cli.main(["collect", "--profile", "smoke", "--out", str(tmp_path), *both])
    assert rc == 2 and "--across-profiles" in capsys.readouterr().err
    rc = cli.main(["collect", "--profile", "smoke", "--out", str(tmp_path), "--across-profiles", *both])
    assert rc == 0 and "collected svd" in capsys.readouterr().out


@pytest.mark.parametrize("where, change, field", [
    ("svd/summary.json", lambda s: s["rows"][1].update(rank="4"), "rows[1].rank"),
    ("svd/summary.json", lambda s: s["rows"][0].update(val_acc="0.9"), "rows[0].val_acc"),
    ("svd/summary.json", lambda s: s.update(rows=None), "rows"),
    ("bench.json", lambda b: b["benchmarks"][3]["extra_info"].update(accuracy="0.99"), "extra_info.accuracy"),
    ("bench.json", lambda b: b["benchmarks"][3]["stats"].update(min="…"), "stats.min"),
    ("bench.json", lambda b: b["machine_info"].update(cpu="AMD"), "machine_info.cpu"),
], ids=["rank", "val_acc", "rows", "accuracy", "stats.min", "cpu"])
def test_a_wrong_json_type_is_one_line_naming_file_and_field(tmp_path, capsys, where, change, field):
    """Through the command line: exit 2 (never 1, which `.ci/gate.sh` reads as a regression) and one line."""
    from lowrank_bench import cli
    results = write_results(tmp_path / "smoke", studies=("svd",))
    doc = json.loads(read(results / where))
    change(doc)
    (results / where).write_text(json.dumps(doc))
    rc = cli.main(["collect", "--profile", "smoke", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith(f"error: {results / where}: ") and field in err


def test_a_folder_given_as_a_json_file_is_one_line(tmp_path):
    results = write_results(tmp_path / "smoke", studies=("svd",), bench=False)
    with pytest.raises(UserError, match=f"^{tmp_path} is a folder, not a JSON file"):
        collect(results, [tmp_path])
    (results / "svd" / "summary.json").unlink()
    (results / "svd" / "summary.json").mkdir()
    with pytest.raises(UserError, match="summary.json is a folder, not a JSON file"):
        collect(results, [])


def test_a_dollar_sign_in_a_name_from_the_results_is_no_math_in_the_figures(tmp_path):
    """matplotlib would read "$...$" in a layer's or a class's name as math and fail on an unknown symbol."""
    results = write_results(tmp_path / "smoke", studies=("svd",), bench=False)
    summary = json.loads(read(results / "svd" / "summary.json"))
    for layer in summary["layers"]:
        layer["layer"] = "$\\input{x}$"
    (results / "svd" / "summary.json").write_text(json.dumps(summary))
    for sidecar in (results / "svd").glob("seed*/*.json"):
        meta = json.loads(read(sidecar))
        meta["classes"][0] = "$\\frac{x}$"
        sidecar.write_text(json.dumps(meta))
    c = collect(results, [])
    assert {"svd_layers", "svd_confusion"} <= set(c["figures"])


def users_file(path):
    """A benchmark file of a user's own study `mine`: the sample's SVD inference benchmarks under another name."""
    bench = json.loads(BENCH.read_text())
    bench["benchmarks"] = [b for b in bench["benchmarks"] if b["extra_info"]["study"] == "svd"
                           and b["extra_info"]["kind"] == "infer"]
    for b in bench["benchmarks"]:
        b["extra_info"] = {k: v for k, v in b["extra_info"].items() if k not in ("profile", "accuracy_truncated",
                                                                                  "val_accuracy_truncated")}
        b["extra_info"]["study"] = "mine"
    path.write_text(json.dumps(bench))
    return path


def outputs(results):
    return {p.relative_to(results).as_posix(): p.read_bytes() for p in sorted(results.rglob("*"))
            if p.is_file() and p.parts[-2] in ("tables", "figures") or p.name == "collected.json"}


def test_a_users_file_never_replaces_a_profiles_collection(tmp_path, capsys, monkeypatch):
    """`collect out.json` writes results/out/; a user's file collected into a profile's folder is refused there,
    leaving every table, figure and collected.json of the profile's collection as it was."""
    from lowrank_bench import cli
    results = write_results(tmp_path / "results" / "smoke", studies=("svd", "lora"))
    collect(results, [results / "bench.json"])
    before = outputs(results)
    assert {"tables/svd_latency.md", "tables/lora_speedup_map.md", "figures/svd_pareto.png"} <= set(before)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["collect", str(users_file(tmp_path / "out.json"))]) == 0
    assert capsys.readouterr().out.startswith(f"collected mine with 1 benchmark file(s): 2 tables in "
                                              f"{tmp_path / 'results' / 'out' / 'tables'}")
    assert (tmp_path / "results" / "out" / "tables" / "mine_bench.md").is_file() and outputs(results) == before
    smoke = users_file(tmp_path / "smoke.json")  # named like the profile: its folder is the profile's
    assert cli.main(["collect", "smoke.json"]) == 2
    err = capsys.readouterr().err
    assert f"{results} holds the tables and figures collected from bench.json; collecting {smoke} there" in err
    assert err.count("\n") == 1 and outputs(results) == before
    collect(results, [results / "bench.json", smoke])  # the same reference file: a comparison beside it is fine
    assert set(before) < set(outputs(results))
    (results / "bench.json").unlink()  # the reference is gone: its latency tables go with it
    collect(results, [smoke])
    assert not list((results / "tables").glob("*_latency.*"))
