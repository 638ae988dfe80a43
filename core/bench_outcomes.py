"""Per-example outcomes of a benchmark, stored beside its pytest-benchmark JSON: what decides "within δ of the
reference" for a study of the user's own, as training/outcomes.py's files do for the built-in studies.

The `lowrank` fixture writes one file per benchmark whose accuracy came as outcomes, into the folder beside the
JSON named after it (`out.json` -> `out.outcomes/`): safetensors holding one bool tensor `outcomes` of shape
(n_seeds, n_examples) (row s: seed s, in a fixed seed order; column i: example i, in a fixed example order, the
same for every model of the study) and one metadata entry, `outcomes`, {"format", "fullname"}. The benchmark's
extra_info names it, relative to the JSON's folder (`outcomes`), with the SHA-256 of its bytes (`outcomes_sha256`).

A benchmark file and its sidecars are input from anyone (a CI artifact): the reader checks the name (inside the
sidecar folder), the size, the hash, the format, the shape against extra_info's n_seeds and the mean against its
accuracy, and says what is wrong in one line.
"""
import hashlib
import json
import re
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load, save

from lowrank_bench.core.decision import MAX_SEEDS
from lowrank_bench.core.io import UserError, atomic_write

FORMAT = "lowrank-bench-bench-outcomes/1"
SUFFIX = ".outcomes"  # the sidecar folder: the JSON's path with this suffix instead of .json
MAX_BYTES = 256 * 2 ** 20  # 39 seeds of 6.8M examples; a larger file is refused before it is read
_RERUN = "rerun the benchmarks with --benchmark-json to write it again"


def folder(json_path) -> Path:
    """The sidecar folder of the benchmark file `json_path`."""
    return Path(json_path).with_suffix(SUFFIX)


def as_matrix(values, what) -> np.ndarray:
    """`values` (a bool array or tensor: one entry per example, or one row per seed) as a (n_seeds, n_examples) bool
    array; a ValueError naming `what` otherwise."""
    array = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values)
    if array.dtype != bool or array.ndim not in (1, 2) or 0 in array.shape:
        raise ValueError(f"{what} must be a boolean array, one entry per example (one row per seed with "
                         f"over_seeds), got {array.dtype} of shape {array.shape}")
    matrix = array.reshape(1, -1) if array.ndim == 1 else array
    if len(matrix) > MAX_SEEDS:
        raise ValueError(f"{what}: at most {MAX_SEEDS} seeds, got {len(matrix)}")
    return np.ascontiguousarray(matrix)


def write(json_path, fullname, outcomes) -> dict:
    """Write the (n_seeds, n_examples) bool `outcomes` of benchmark `fullname` (atomically) into the sidecar folder
    of `json_path`; the extra_info that names it: {"outcomes": relative name, "outcomes_sha256": hash}."""
    json_path = Path(json_path)
    data = save({"outcomes": outcomes}, metadata={"outcomes": json.dumps({"format": FORMAT, "fullname": fullname})})
    digest = hashlib.sha256(data).hexdigest()
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", fullname.rpartition("::")[2])[:80].strip("._") or "benchmark"
    name = f"{folder(json_path).name}/{stem}-{hashlib.sha256(fullname.encode()).hexdigest()[:12]}.safetensors"
    (json_path.parent / name).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(json_path.parent / name, data)
    return {"outcomes": name, "outcomes_sha256": digest}


def read(json_path, fullname, extra_info) -> np.ndarray:
    """The (n_seeds, n_examples) bool outcomes that benchmark `fullname` of `json_path` names in `extra_info`,
    checked; a UserError naming the file and what is wrong otherwise."""
    json_path, name = Path(json_path), extra_info["outcomes"]
    where = f"{json_path}: benchmark {fullname}: outcomes"
    if not isinstance(name, str) or Path(name).parent.as_posix() != folder(json_path).name \
            or not name.endswith(".safetensors") or "\\" in name:
        raise UserError(f"{where} {name!r} is not a file of the sidecar folder {folder(json_path).name}/; {_RERUN}")
    file = json_path.parent / name
    if not file.is_file():
        raise UserError(f"{where} {file} is missing; copy the folder {folder(json_path).name}/ with the JSON, or "
                        f"{_RERUN}")
    if file.stat().st_size > MAX_BYTES:
        raise UserError(f"{where} {file} holds {file.stat().st_size} bytes, more than {MAX_BYTES}; {_RERUN}")
    data = file.read_bytes()
    if hashlib.sha256(data).hexdigest() != extra_info.get("outcomes_sha256"):
        raise UserError(f"{where} {file} does not have the SHA-256 that outcomes_sha256 names (changed since it "
                        f"was written); {_RERUN}")
    try:
        arrays = load(data)
        meta = json.loads(_metadata(data).get("outcomes", "{}"))
    except (SafetensorError, ValueError, json.JSONDecodeError) as e:
        raise UserError(f"{where} {file} is not a readable outcomes file ({e}); {_RERUN}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("fullname") != fullname \
            or sorted(arrays) != ["outcomes"]:
        raise UserError(f"{where} {file} is not this benchmark's outcomes file (format {FORMAT}, one tensor "
                        f"'outcomes'); {_RERUN}")
    matrix = arrays["outcomes"]
    n_seeds, accuracy = extra_info.get("n_seeds"), extra_info.get("accuracy")
    if matrix.dtype != bool or matrix.ndim != 2 or 0 in matrix.shape or len(matrix) != n_seeds:
        raise UserError(f"{where} {file} holds {matrix.dtype} of shape {matrix.shape}, expected bool of shape "
                        f"(n_seeds = {n_seeds}, n_examples); {_RERUN}")
    if accuracy is None or abs(float(matrix.mean()) - accuracy) > 1e-9:
        raise UserError(f"{where} {file} gives accuracy {float(matrix.mean())!r} but extra_info.accuracy is "
                        f"{accuracy!r}; {_RERUN}")
    return matrix


def _metadata(data: bytes) -> dict:
    """The safetensors header's __metadata__ (safetensors.numpy.load returns the tensors only)."""
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    return header.get("__metadata__") or {} if isinstance(header, dict) else {}
