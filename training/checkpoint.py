"""Checkpoints: weights in safetensors, and a JSON sidecar that says how to rebuild the model.

`<stem>.safetensors` holds the tensors; `<stem>.json` holds the architecture and its config, the structural
changes applied to it (low-rank factors, LoRA adapters), and the run's metadata and metrics. Loading rebuilds
the model from the sidecar alone and never unpickles anything. Both files are written atomically.

An adapter checkpoint (`save(..., base=<stem of the pretrained checkpoint>)`) stores only the LoRA weights and
the new head, a few KB, and names its base with the SHA-256 of the base's weights: loading puts the adapter onto
that base and refuses a base whose weights changed.
"""
import dataclasses
import hashlib
import os
import subprocess
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from lowrank_bench.core.io import UserError, atomic_path, read_json, write_json
from lowrank_bench.models.lora import LoRAConfig, add_lora, load_lora_state_dict, lora_state_dict
from lowrank_bench.models.methods import factorize
from lowrank_bench.models.mlp import MLP, MLPConfig
from lowrank_bench.models.transformer import Transformer, TransformerConfig

FORMAT = "lowrank-bench-checkpoint/1"
ARCHITECTURES = {"MLP": (MLP, MLPConfig), "Transformer": (Transformer, TransformerConfig)}


def _apply_structure(model, structure):
    """Re-apply the structural changes recorded by `save` (their weights are then loaded over them)."""
    if "lowrank" in structure:
        s = structure["lowrank"]
        model = factorize(model, s["ranks"], targets=list(s["ranks"]), layer=s["layer"])
    if "lora" in structure:
        model = add_lora(model, LoRAConfig(**structure["lora"]))
    return model


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def paths(stem):
    stem = Path(stem)
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def file_sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save(stem, model, *, structure=None, base=None, **meta):
    """Write `model` to `<stem>.safetensors` + `<stem>.json`; `meta` (study, metrics, history…) goes in the JSON.

    With `base` (the stem of the pretrained checkpoint), only the adapter's weights are written.
    """
    weights, sidecar = paths(stem)
    state = lora_state_dict(model) if base else model.state_dict()
    with atomic_path(weights) as tmp:
        try:
            save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp))
        except SafetensorError as e:  # a full disk arrives as this, not as OSError
            raise UserError(f"{weights}: cannot write the weights ({e}); free disk space or choose another --out, "
                            "the previous files are intact") from None
    if base:
        base_weights = paths(base)[0]
        base = {"checkpoint": os.path.relpath(Path(base), Path(stem).parent), "weights_sha256": file_sha256(base_weights)}
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]  # e.g. the body in head-only tuning
    write_json(sidecar, {"format": FORMAT, "arch": _base_arch(model), "config": dataclasses.asdict(model.config),
                         "structure": structure or {}, "base": base, "frozen": frozen, "torch": torch.__version__,
                         "commit": git_commit(), "weights_sha256": file_sha256(weights), **meta})
    return weights, sidecar


def _base_arch(model):
    for name, (cls, _) in ARCHITECTURES.items():
        if isinstance(model, cls):
            return name
    raise TypeError(f"cannot checkpoint a {type(model).__name__}: known architectures are {list(ARCHITECTURES)}")


def load(stem, *, expect_arch=None, device="cpu"):
    """(model, sidecar) rebuilt from `<stem>.json` with the weights of `<stem>.safetensors`."""
    weights, sidecar_path = paths(stem)
    if not sidecar_path.exists() or not weights.exists():
        raise UserError(f"checkpoint {stem}: {sidecar_path.name} or {weights.name} is missing; "
                        "train it first (lowrank-bench train <study>)")
    sidecar = read_json(sidecar_path)
    if sidecar.get("format") != FORMAT or sidecar.get("arch") not in ARCHITECTURES:
        raise UserError(f"{sidecar_path}: not a lowrank-bench checkpoint (format {sidecar.get('format')!r}, "
                        f"arch {sidecar.get('arch')!r}); re-create it with lowrank-bench train")
    if expect_arch and sidecar["arch"] != expect_arch:
        raise UserError(f"{sidecar_path}: holds a {sidecar['arch']} but a {expect_arch} was expected; "
                        "point to the right checkpoint")
    verify_weights(weights, sidecar_path, sidecar)
    if sidecar.get("base"):
        return _load_adapter(Path(stem), sidecar, device)
    cls, config_cls = ARCHITECTURES[sidecar["arch"]]
    try:
        model = _apply_structure(cls(config_cls(**sidecar["config"])), sidecar.get("structure", {}))
        state = load_file(str(weights))
    except (TypeError, ValueError, KeyError, SafetensorError, OSError) as e:
        raise UserError(f"{stem}: cannot rebuild the model from its sidecar ({e}); re-create the checkpoint") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if "\n" in str(e) else str(e)
        raise UserError(f"{weights}: weights do not match the sidecar's model ({first}); "
                        "re-create the checkpoint") from None
    frozen = set(sidecar.get("frozen", []))
    for name, p in model.named_parameters():
        p.requires_grad_(name not in frozen)
    return model.to(device).eval(), sidecar


def verify_weights(weights, sidecar_path, sidecar):
    """Refuse weights whose SHA-256 is not the one `save` recorded: a copied-over or damaged file would otherwise
    load without a word (shapes and architecture are checked when the state dict is loaded)."""
    recorded = sidecar.get("weights_sha256")
    if recorded is not None and file_sha256(weights) == recorded:
        return
    study = sidecar.get("study") or "<study>"
    raise UserError(f"{weights} does not match {sidecar_path} (SHA-256 {'differs' if recorded else 'not recorded'}: "
                    f"the weights were replaced or damaged after training); restore both files from a backup or "
                    f"retrain them (lowrank-bench train {study})")


def _load_adapter(stem, sidecar, device):
    """The base checkpoint named in the sidecar, with the adapter of `<stem>.safetensors` put onto it."""
    base_stem = stem.parent / sidecar["base"]["checkpoint"]
    base_weights = paths(base_stem)[0]
    if not base_weights.exists():
        raise UserError(f"{stem}.json: its base checkpoint {base_stem} is missing; train the base first")
    base, _ = load(base_stem)  # a damaged base is refused here, naming the base's own files
    if file_sha256(base_weights) != sidecar["base"]["weights_sha256"]:
        # The base is intact but not the one the adapter was trained on: it was retrained since.
        raise UserError(f"{stem}.json: its base {base_weights} was retrained after this adapter (SHA-256 differs "
                        "from the one recorded); retrain the adapters on it (lowrank-bench train lora) or restore "
                        "the base they were trained on")
    try:
        model = add_lora(base, LoRAConfig(**sidecar["structure"]["lora"]))
        load_lora_state_dict(model, load_file(str(paths(stem)[0])))
    except (TypeError, ValueError, KeyError, SafetensorError, OSError) as e:
        raise UserError(f"{stem}: adapter does not fit its base ({e}); retrain the adapter") from None
    return model.to(device).eval(), sidecar
