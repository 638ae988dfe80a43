"""How a trained or benchmarked model is identified: typed fields for every join, one readable id for people.

A variant is (study, method, rank, init, embedding): `method` is how the model was made ("dense", "full", or the
decomposition: "svd", "whiten", "lora"); `rank` is an int, or None for a model that is not low rank; `init` says
where attention factors started ("random" or "trained"), None elsewhere; `embedding` is attention's token table when
it is a pre-defined one ("minilm"), None for the model's own trainable table and everywhere else.
Summary rows, checkpoint sidecars and benchmark extra_info all carry these fields, and tables, the gate and the
collector join on them. `variant_id` is the only place that turns them into a name such as `svd-k32` or `r4`:
names are for people (pytest ids, file names, table labels) and are never parsed back.
"""
from lowrank_bench.core.spec import STUDIES

KEY_FIELDS = ("study", "method", "rank", "init", "embedding")


def variant_id(study, method, rank=None, init=None, embedding=None):
    """`dense`, `full` … for rank None; `svd-k32`, `whiten-k32` where a study's methods share ranks, `r4` where the
    letter says the method; `trained-svd-k32` with init; `minilm-dense`, `minilm-random-svd-k32` with a
    pre-defined embedding."""
    spec = STUDIES.get(study)  # None: a study of the user's own (the `lowrank` fixture's), its methods in its ids
    letter, method_in_id = (spec.rank_letter, spec.method_in_id) if spec else ("k", True)
    name = method
    if rank is not None:
        name = f"{method}-{letter}{rank}" if method_in_id else f"{letter}{rank}"
    name = name if init is None else f"{init}-{name}"
    return name if embedding is None else f"{embedding}-{name}"


def key(row):
    """The fields that identify `row` (a summary row, a sidecar or a benchmark's extra_info), as a tuple."""
    return tuple(row.get(f) for f in KEY_FIELDS)


def row_id(row):
    """`variant_id` of a row's key fields."""
    return variant_id(*key(row))
