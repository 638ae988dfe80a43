"""How a trained or benchmarked model is identified: typed fields for every join, one readable id for people.

A variant is (study, method, rank, init, embedding): `rank` is an int, or None for a model that is not low rank
(dense, head only, full fine-tuning, …); `init` says where attention factors started ("random" or "trained"), None
elsewhere; `embedding` is attention's token table when it is a pre-defined one ("minilm"), None for the model's own
trainable table and everywhere else, so the ids, files and keys of those variants read as before the field existed.
Summary rows, checkpoint sidecars and benchmark extra_info all carry these fields, and tables, the gate and the
collector join on them. `variant_id` is the only place that turns them into a name such as `k32` or `r4`: names
are for people (pytest ids, file names, table labels) and are never parsed back.
"""
KEY_FIELDS = ("study", "method", "rank", "init", "embedding")


def variant_id(method, rank=None, init=None, embedding=None):
    """`dense`, `full` … for rank None; `k32` for a factorisation, `r4` for a LoRA adapter; `random-k32` with init;
    `minilm-dense`, `minilm-random-k32` with a pre-defined embedding."""
    name = method if rank is None else f"{'r' if method == 'lora' else 'k'}{rank}"
    name = name if init is None else f"{init}-{name}"
    return name if embedding is None else f"{embedding}-{name}"


def full_key(key):
    """A key tuple (study, method, rank, …) with the KEY_FIELDS it leaves out at the end as None: studies without
    an embedding name their keys in four fields."""
    return tuple(key) + (None,) * (len(KEY_FIELDS) - len(key))


def key(row):
    """The fields that identify `row` (a summary row, a sidecar or a benchmark's extra_info), as a tuple."""
    return tuple(row.get(f) for f in KEY_FIELDS)
