"""Per-example outcomes: which examples of the decide part of validation (`val`) and of the test split (`test`) a
job's kept model gets right, so any statistic over examples and seeds is recomputed without retraining.

Every job writes `<study>/seed<s>/<variant>.outcomes.safetensors` beside its checkpoint (a `pretrained` row, which
has no checkpoint of its own, too): two bool tensors, `val` and `test`, in the order of the split's examples, and
metadata naming the split each was taken on (`Splits.split_id`: data set, part, size, hash of the examples'
rows). The split is drawn with `data.split_seed`, the same for every seed and variant, so files of one profile
pair up example by example; files of different splits are refused rather than paired.
"""
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from lowrank_bench.core.io import UserError, atomic_path

FORMAT = "lowrank-bench-outcomes/1"
SUFFIX = ".outcomes.safetensors"
PARTS = ("val", "test")


@dataclass(frozen=True)
class Outcomes:
    val: np.ndarray  # bool (N_decide,): the decide part's examples the model gets right
    test: np.ndarray  # bool (N_test,)
    val_split: str  # Splits.split_id of each
    test_split: str


def path(out, name):
    """The outcomes file of job `name` (`<study>/seed<s>/<variant>`, its checkpoint name) under `out`."""
    return Path(out) / f"{name}{SUFFIX}"


def save(out, name, outcomes):
    """Write `outcomes` ({"val", "test": bool arrays, "val_split", "test_split": ids}) for job `name`."""
    target = path(out, name)
    # One metadata entry: safetensors writes several in a per-process random order, and a job's files must be the
    # same bytes whichever process ran it.
    meta = json.dumps({"format": FORMAT, **{f"{p}_split": outcomes[f"{p}_split"] for p in PARTS}}, sort_keys=True)
    with atomic_path(target) as tmp:
        save_file({p: np.ascontiguousarray(outcomes[p], dtype=bool) for p in PARTS}, str(tmp),
                  metadata={"outcomes": meta})
    return target


def load_outcomes(out, name):
    """The `Outcomes` of job `name` under `out`, checked: the format, one bool vector per part, and each vector as
    long as the size its split id names."""
    file = path(out, name)
    if not file.is_file():
        raise UserError(f"{file} is missing; re-run `lowrank-bench train` with the same --profile and --out")
    try:
        with safe_open(str(file), "np") as f:
            meta = json.loads((f.metadata() or {}).get("outcomes", "{}"))
            arrays = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, json.JSONDecodeError) as e:
        raise UserError(f"{file}: not a readable outcomes file ({e}); re-run the job that wrote it") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or sorted(arrays) != sorted(PARTS):
        raise UserError(f"{file}: not a lowrank-bench outcomes file (format {meta.get('format')!r}, tensors "
                        f"{sorted(arrays)}); re-run the job that wrote it")
    for p in PARTS:
        split, a = meta.get(f"{p}_split", ""), arrays[p]
        size = split.split("/")[2] if split.count("/") == 3 else None
        if a.dtype != bool or a.ndim != 1 or str(len(a)) != size:
            raise UserError(f"{file}: `{p}` is {a.dtype} of shape {a.shape}, expected a bool vector as long as its "
                            f"split {split!r} says; re-run the job that wrote it")
    return Outcomes(arrays["val"], arrays["test"], meta["val_split"], meta["test_split"])


def stack(outcomes, part="val"):
    """(len(outcomes), N) bool: one row per `Outcomes`, examples in the split's order, for pairing by example.
    Refuses outcomes taken on different splits (another split seed, subset or decide size)."""
    splits = {getattr(o, f"{part}_split") for o in outcomes}
    if len(splits) != 1:
        raise UserError(f"outcomes on {len(splits)} different {part} splits ({', '.join(sorted(splits))}) cannot be "
                        "paired by example; compare results of one profile and split")
    return np.stack([getattr(o, part) for o in outcomes])
