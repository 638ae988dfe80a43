"""Each study written down once, as data: what it reads, what it trains and times, what it is compared with, how
its rows are named and reported. Jobs, the benchmark parametrization, the extra_info contract, the data a study
needs and the report all read these entries; no other table in the code base is keyed by a study's name.

No torch here (the report reads it). The decomposition methods themselves (how a rank-k layer is built, its cost
formulas) are models/methods.py's registry; a study's profile names which of them it runs (`svd.methods`).
"""
from dataclasses import dataclass

# The inference benchmarks' axes: names as they appear in ids, extra_info, profiles and tables.
DTYPES = ("fp32", "bf16", "fp16")
MODES = ("eager", "compiled")


@dataclass(frozen=True)
class Study:
    name: str  # the `study` key field, the results folder, the CLI's word, the suite's STUDY
    title: str
    datasets: tuple[str, ...]  # the data sets it reads (training/data.py `needed`)
    arch: str  # the checkpoint architecture of every model it times (training/checkpoint.py ARCHITECTURES)
    reference: str  # the method of the unfactored variant every row is paired with, judged and timed against
    reference_label: str  # how the report names it
    plain: tuple[str, ...]  # its unfactored variants (rank None), the reference among them
    starts_from: str | None  # the study whose reference model (of the same seed) every one of its variants starts from
    timed: tuple[str, ...]  # the unfactored variants its suite times; every factored variant is timed
    # The decomposition methods it can run; None: any of models/methods.py's registry, as its profile's `methods`
    # says.
    methods: tuple[str, ...] | None
    rank_letter: str  # `k32`, `r4`
    rank_axis: str  # a figure's axis
    # Where several methods factor at the same rank, ids name the method (`svd-k32`, `whiten-k32`); LoRA's rank
    # has one method, and `r4` says it.
    method_in_id: bool
    extra_info: tuple[str, ...]  # the benchmark extra_info fields of its own (core/benchjson.py adds the common)
    # Its results table: (header, summary row field, how it prints: report/tables.py FORMATS). Few and short, so
    # the LaTeX table fits a page; accuracies are means over seeds (the decision is VERDICT_COLUMNS' table).
    columns: tuple[tuple[str, str | None, str], ...]
    template: str  # report/templates/<template>
    macro_prefix: str  # its numbers' LaTeX macros: \SvdChosenRank


# Every study's verdict table (report/tables.py FORMATS, as `columns`): each compared row's paired difference to its
# reference on the validation part that decides, with its one-sided 95 % bounds and verdict (core/decision.py), its
# place in the fixed sequence of ranks, and the same difference on test, a confirmation that decides nothing.
VERDICT_COLUMNS = (("model", "label", "text"), ("n", "n_seeds", "count"), ("val diff (pt)", "val_diff", "points"),
                   ("lower (pt)", "val_diff_lower", "points"), ("upper (pt)", "val_diff_upper", "points"),
                   ("verdict", "verdict", "text_or_dash"), ("sequence", "sequence", "text_or_dash"),
                   ("test diff (pt)", "test_diff", "points"), ("test lower", "test_diff_lower", "points"),
                   ("test upper", "test_diff_upper", "points"))

# In dependency order: LoRA starts from the svd study's dense model.
STUDIES = {s.name: s for s in (
    Study(name="svd", title="Truncated SVD of MLP weights", datasets=("hoda",), arch="MLP",
          reference="dense", reference_label="dense", plain=("dense",), starts_from=None, timed=("dense",),
          methods=None, rank_letter="k", rank_axis="rank k", method_in_id=True,
          extra_info=("accuracy_truncated", "val_accuracy", "val_accuracy_truncated"),
          columns=(("model", "label", "text"), ("n", "n_seeds", "count"), ("trunc. acc (%)", "acc_truncated", "pct"),
                   ("test acc (%)", "test_acc", "pct"), ("val acc (%)", "val_acc", "pct"),
                   ("params", "params_total", "count"), ("FLOPs", "flops", "si"), ("peak MiB", "peak_mem_bytes", "mib"),
                   ("s/epoch", "epoch_seconds", "num"), ("note", None, "note")),
          template="svd.tex", macro_prefix="Svd"),
    Study(name="lora", title="LoRA", datasets=("hoda", "fashion"), arch="MLP", reference="full",
          reference_label="full fine-tuning", plain=("pretrained", "head", "full", "scratch"), starts_from="svd",
          timed=("head", "full"), methods=("lora",), rank_letter="r", rank_axis="LoRA rank r (unmerged)",
          method_in_id=False,
          extra_info=("alpha", "merged", "adapter_bytes", "train_step_peak_mem_bytes"),
          columns=(("model", "label", "text"), ("n", "n_seeds", "count"), ("alpha", "alpha", "num_g"),
                   ("test acc (%)", "test_acc", "pct"), ("val acc (%)", "val_acc", "pct"),
                   ("trainable", "params_trainable", "count"), ("trainable (%)", "trainable_pct", "num"),
                   ("total", "params_total", "count"),
                   ("peak MiB", "peak_mem_bytes", "mib"), ("s/epoch", "epoch_seconds", "num"),
                   ("ckpt KiB", "checkpoint_bytes", "kib"), ("note", None, "note")),
          template="lora.tex", macro_prefix="Lora"),
    Study(name="attention", title="Low-rank attention", datasets=("imdb",), arch="Transformer",
          reference="dense", reference_label="dense", plain=("dense",), starts_from=None, timed=("dense",),
          methods=None, rank_letter="k", rank_axis="rank k of Q, K, V", method_in_id=True,
          extra_info=("seq_len", "d_model", "heads", "d_ff", "qkv_params", "accuracy_random", "accuracy_trained"),
          columns=(("model", "label", "text"), ("embedding", "embedding", "table"), ("n", "n_seeds", "count"),
                   ("test acc (%)", "test_acc", "pct"), ("val acc (%)", "val_acc", "pct"),
                   ("QKV params", "qkv_params", "count"), ("params", "params_total", "count"), ("FLOPs", "flops", "si"),
                   ("peak MiB", "peak_mem_bytes", "mib"), ("s/epoch", "epoch_seconds", "num"), ("note", None, "note")),
          template="attention.tex", macro_prefix="Attn"),
)}


def reference_key(study, embedding=None):
    """The key (study, method, rank, init, embedding) of the variant `study`'s rows are paired with; with a
    pre-defined token table, that table's own reference."""
    return study, STUDIES[study].reference, None, None, embedding

# Where attention factors start, and what a benchmark times (extra_info `kind`): a model's forward pass, one training
# step, the bare matrix products of the dense or factored chain, one attention block.
INITS = ("random", "trained")
KINDS = ("infer", "train_step", "gemm_dense", "gemm_factored", "attention_block")
