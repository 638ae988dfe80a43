"""lowrank-bench's public API: low-rank methods for your own PyTorch model, and what they cost.

    factorize(model, ranks, targets, method="svd", layer="two_linear", calibration=None) -> a factored copy
        of `model`: its nn.Linear layers named by `targets` (dotted name parts, "encoder.layer", "fc1") at rank k,
        in each layer's dtype and device, by a registered method: "svd" (truncated SVD) or "whiten" (data-aware
        SVD, which needs `calibration`)
    calibrate(model, targets, batches, mask=None) -> the calibration `factorize` takes for data-aware methods,
        from the inputs each target layer sees on `batches` (each what the model takes: a tensor, a tuple of
        positional or a dict of keyword arguments), at the positions `mask(batch)` says count (by default a Hugging
        Face batch's attention_mask)
    METHODS -> {name: method}: each method's label, whether it needs calibration, its parameter and FLOP formulas
        and its largest rank
    add_lora(model, LoRAConfig(rank=r, targets=...)) -> a copy with LoRA adapters, everything else frozen;
    merge_lora(model) folds them into the weights
    measure(model, example_input) -> Measurement: parameters (total, trainable), forward FLOPs, weight bytes and
        peak memory on the input
    paired_difference(variant_correct, reference_correct) -> the accuracy difference to the reference with its
        one-sided 95 % bounds (boolean arrays [seeds, examples]); verdict(difference, margin) -> "within", "worse"
        or "undecided": the decision rule the built-in studies decide by

The pytest fixture `lowrank` (the plugin lowrank_bench/plugin.py, installed with the package) times a model and
writes the same benchmark JSON as the built-in suites. The built-in studies use these same functions.

Names are imported on first use, so `import lowrank_bench` (and the `lowrank-bench` command) stays fast and
loads torch only when a function is used.
"""
import importlib
from pathlib import Path
from typing import TYPE_CHECKING

# Installed, the subpackages (core, models, training, timing, bench, report, fixtures) lie inside this folder. In a
# checkout run without installing (PYTHONPATH=checkout) they are the repository's top-level folders beside it.
_CHECKOUT = Path(__file__).resolve().parent.parent
if not (Path(__file__).parent / "models").is_dir() and (_CHECKOUT / "models" / "__init__.py").is_file():
    __path__.append(str(_CHECKOUT))

_HOME = {"factorize": ".models.methods", "calibrate": ".models.methods", "METHODS": ".models.methods",
         "add_lora": ".models.lora", "merge_lora": ".models.lora", "LoRAConfig": ".models.lora",
         "measure": ".training.measure", "Measurement": ".training.measure",
         "paired_difference": ".core.decision", "verdict": ".core.decision"}
__all__ = list(_HOME)

if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ imports on first use
    from lowrank_bench.core.decision import paired_difference, verdict
    from lowrank_bench.models.lora import LoRAConfig, add_lora, merge_lora
    from lowrank_bench.models.methods import METHODS, calibrate, factorize
    from lowrank_bench.training.measure import Measurement, measure


def __getattr__(name):
    if name not in _HOME:
        raise AttributeError(f"module 'lowrank_bench' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name], __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted([*globals(), *__all__])
