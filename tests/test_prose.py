"""The report's sentences follow the numbers: two opposite result sets give opposite sentences."""
import json

import pytest
from test_collect import write_results

from report import latex, prose
from report.collect import collect


def svd(rows, chosen=None, tolerance=0.5):
    """A study dict as the collector gives it: rows of (rank, val, val truncated, diff to dense, its half-width)."""
    made = [{"method": "svd", "rank": k, "val_acc": v, "val_acc_truncated": t, "val_acc_diff": d,
             "val_acc_diff_ci95": ci, "n_seeds": 3} for k, v, t, d, ci in rows]
    return {"study": "svd", "rows": made, "meta": {"margin_points": tolerance},
            "chosen": next((r for r in made if r["rank"] == chosen), None)}


def test_retraining_sentence_says_what_retraining_did():
    good = prose.svd_retraining(svd([(4, 0.97, 0.90, -0.003, 0.001), (64, 0.99, 0.99, -0.001, 0.001)]))
    bad = prose.svd_retraining(svd([(4, 0.80, 0.90, -0.19, 0.01), (64, 0.985, 0.99, -0.015, 0.002)]))
    assert "never ended below its start" in good and "every rank comes within 0.5 points of dense" in good
    assert "ended below its start at k = 4, k = 64" in bad and "No rank comes within 0.5 points" in bad
    mixed = prose.svd_retraining(svd([(4, 0.95, 0.90, -0.04, 0.01), (64, 0.99, 0.98, -0.001, 0.001)]))
    assert "k = 64 come within 0.5 points of dense" in mixed and "k = 4 do not" in mixed
    one_seed = svd([(4, 0.95, 0.90, None, None), (64, 0.989, 0.98, None, None)])  # no paired difference yet
    one_seed["baseline"] = {"val_acc": 0.99}
    assert "k = 64 come within 0.5 points of dense" in prose.svd_retraining(one_seed)


@pytest.mark.parametrize("diff, ci95, said", [
    (-0.001, 0.002, "lies inside the 0.5-point tolerance with 95\\,\\% confidence"),
    (-0.004, 0.003, "within the tolerance on average, not with 95\\,\\% confidence"),
    (-0.004, None, "from one seed: no interval"),
])
def test_chosen_rank_verdict_follows_its_interval(diff, ci95, said):
    text = prose.chosen_rule(svd([(32, 0.99, 0.98, diff, ci95)], chosen=32))
    assert text.startswith("The rule: the smallest rank whose mean validation accuracy") and said in text
    assert "No rank of the grid meets it" in prose.chosen_rule(svd([(32, 0.9, 0.8, -0.09, 0.01)]))


def bench_row(method, rank, variant, ms, study="lora", batch_size=256):
    return {"file": "bench", "study": study, "kind": "infer", "method": method, "rank": rank, "variant": variant,
            "batch_size": batch_size, "median_ms": ms}


def test_merged_lora_costs_what_it_measures():
    d = {"study": "lora", "chosen": {"rank": 4}, "rows": []}
    same = prose.lora_merged(d, [bench_row("full", None, "", 2.0), bench_row("lora", 4, "merged", 2.06),
                                 bench_row("lora", 4, "unmerged", 2.9)])
    slower = prose.lora_merged(d, [bench_row("full", None, "", 2.0), bench_row("lora", 4, "merged", 3.0)])
    assert "the same cost within 5" in same and "unmerged, 2.9" in same
    assert "1.50 times its time" in slower and "same cost" not in slower
    assert prose.lora_merged(d, []) == ""  # nothing measured, nothing claimed


def test_the_winning_initialisation_is_the_one_with_the_higher_mean():
    rows = lambda trained, random: [{"rank": k, "init": "trained", "val_acc": t} for k, t in trained] + \
        [{"rank": k, "init": "random", "val_acc": r} for k, r in random]
    trained = prose.attention_inits({"rows": rows([(4, 0.88), (16, 0.89)], [(4, 0.86), (16, 0.87)])})
    random = prose.attention_inits({"rows": rows([(4, 0.85), (16, 0.86)], [(4, 0.86), (16, 0.87)])})
    assert "the trained start at k = 4, 16 wins" in trained and "wins 2 times" in trained
    assert "the random start at k = 4, 16 wins" in random and "wins 0 times" in random


def test_the_pre_defined_embedding_sentence_follows_the_numbers():
    def study(pre_dense, pre_k4, chosen=None, frozen=True):
        rows = [{"method": "dense", "rank": None, "init": None, "embedding": None, "val_acc": 0.80, "test_acc": 0.79},
                {"method": "svd", "rank": 4, "init": "random", "embedding": None, "val_acc": 0.75, "test_acc": 0.74},
                {"method": "dense", "rank": None, "init": None, "embedding": "minilm", "val_acc": pre_dense,
                 "test_acc": pre_dense - 0.01},
                {"method": "svd", "rank": 4, "init": "random", "embedding": "minilm", "val_acc": pre_k4,
                 "test_acc": pre_k4}]
        meta = {"margin_points": 0.5, "embedding_frozen": frozen,
                "chosen_by_embedding": {"minilm": {"random": chosen}}}
        return prose.attention_embedding({"rows": rows, "meta": meta})
    better = study(0.85, 0.84, chosen={"rank": 4})
    worse = study(0.70, 0.60, frozen=False)
    assert "frozen, projected" in better and "5.00 points higher than the learned table's dense model on " \
        "validation (80.00\\,\\%) and 5.00 points higher than it on test (79.00\\,\\%)" in better
    assert "ahead on validation in 1 of 1" in better and "within 0.5 validation points is k = 4 (random" in better
    assert "fine-tuned with the rest" in worse and "10.00 points lower than the learned" in worse
    assert "ahead on validation in 0 of 1" in worse and "is none of the grid" in worse
    assert "the same as the learned" in study(0.80, 0.75)
    assert prose.attention_embedding({"rows": [], "meta": {}}) == ""  # the variant did not run: nothing said
    learned_only = prose.attention_inits({"rows": [{"rank": 4, "init": "trained", "val_acc": 0.8},
                                                   {"rank": 4, "init": "random", "val_acc": 0.7},
                                                   {"rank": 4, "init": "random", "val_acc": 0.9,
                                                    "embedding": "minilm"}]})
    assert "the trained start at k = 4 wins" in learned_only  # the MiniLM rows are compared on their own


def test_the_conclusion_says_where_low_rank_pays_or_that_nothing_was_measured():
    text = prose.where_low_rank_pays({("fp32", "eager"): {(4, 1): 0.5, (4, 256): 3.0, (128, 256): 0.9}})
    assert text.startswith("For the factored MLP: In fp32 eager,") and "rank $\\le$ 4 pays at batch 256" in text
    assert "cannot say where low rank pays" in prose.where_low_rank_pays({})


def test_the_report_text_changes_with_the_results(tmp_path):
    """The same collector and LaTeX writer on two opposite result sets: the sentences turn around."""
    texts = []
    for retrain_gain in (+0.01, -0.01):
        results = write_results(tmp_path / str(retrain_gain) / "smoke", studies=("svd",))
        summary = json.loads((results / "svd" / "summary.json").read_text())
        for row in summary["rows"][1:]:
            row["val_acc_truncated"] = row["val_acc"] - retrain_gain
        (results / "svd" / "summary.json").write_text(json.dumps(summary))
        texts.append(latex.numbers_tex(collect(results, [results / "bench.json"]), {}))
    retrain = [next(line for line in t.splitlines() if "SvdRetrainVerdict" in line) for t in texts]
    assert "it never ended below its start" in retrain[0]
    assert "it ended below its start at k = 4, k = 32, k = 128" in retrain[1]


def test_the_retraining_schedule_is_what_the_study_ran():
    said = lambda warmup, augment: prose.retraining_schedule(  # noqa: E731
        {"meta": {"retrain": {"epochs": 5, "lr": 1e-4, "warmup_frac": warmup}, "augmentation": {"chosen": augment}}})
    assert "from learning rate 0.0001, cosine-decayed without warm-up, with the baseline's augmentation (affine)" \
        in said(0.0, "affine")
    assert "after a 5\\,\\% warm-up, without augmentation" in said(0.05, "none")
    assert "distil" not in said(0.0, "none")
    distilled = prose.retraining_schedule({"meta": {"retrain": {"epochs": 6, "lr": 3e-4, "warmup_frac": 0.0,
                                                                "distill": 0.5, "distill_temperature": 2.0}}})
    assert "distilled from the dense model (loss weight 0.5 on its outputs at temperature 2" in distilled
    assert prose.retraining_schedule({"meta": {}}) == ""  # an older summary: nothing claimed
