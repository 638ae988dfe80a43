"""Read a study's summary.json and the checkpoint sidecars the report draws from, checked against what the studies
write (training/studies/common.py `write_summary`, `save_run`).

Every field that something reads is checked for its type, range or allowed values; a field the schema does not
name is kept as it is and never reaches the report's LaTeX or a path (report/tables.py keeps every raw field in
the CSV tables).
"""
from lowrank_bench.core.io import read_json
from lowrank_bench.core.schema import (COUNT, FRACTION, NON_NEGATIVE, POSITIVE_INT, Invalid, boolean, dict_of, list_of,
                                       name, nullable, number, one_of, record, refuse, relative_path, text, validate)
from lowrank_bench.core.spec import INITS

_AMOUNT = nullable(NON_NEGATIVE)  # bytes or seconds: a mean over seeds need not be an integer
_OPTIONAL_FRACTION = nullable(FRACTION)
_DIFF = nullable(number(low=-1, high=1))
VERDICTS = ("within", "worse", "undecided")


def _key(study):
    """The fields that identify a variant of `study` (core/variants.py)."""
    return {"study": one_of(study), "method": name, "rank": nullable(POSITIVE_INT),
            "init": nullable(one_of(*INITS)), "embedding": nullable(name)}


def _row(study):
    """One summary row: a variant's means over seeds (`rows`) or one seed's results (`seed_rows`)."""
    key = _key(study)
    required = {**{f: key[f] for f in ("study", "method", "rank", "init")},
                "val_acc": FRACTION, "test_acc": FRACTION, "params_total": COUNT, "params_trainable": COUNT,
                "flops": NON_NEGATIVE, "epoch_seconds": _AMOUNT, "peak_mem_bytes": _AMOUNT,
                "checkpoint": nullable(relative_path)}
    optional = {"embedding": key["embedding"], "seed": COUNT, "n_seeds": POSITIVE_INT, "seeds": list_of(COUNT),
                "train_seconds": _AMOUNT, "train_state_bytes": _AMOUNT,
                "train_dtype": nullable(name), "latency_ms": _AMOUNT, "latency_merged_ms": _AMOUNT,
                "acc_truncated": _OPTIONAL_FRACTION, "val_acc_truncated": _OPTIONAL_FRACTION,
                "costs_more_than_dense": boolean, "alpha": _AMOUNT,
                "trainable_pct": nullable(number(low=0, high=100)), "checkpoint_bytes": _AMOUNT,
                "qkv_params": nullable(COUNT), "stop_acc": _OPTIONAL_FRACTION, "outcomes": relative_path,
                "calibration_seconds": _AMOUNT, "factorize_seconds": _AMOUNT, "verdict": nullable(one_of(*VERDICTS))}
    for metric in ("val_acc", "test_acc", "acc_truncated"):
        optional |= {f"{metric}_std": _AMOUNT}
    for part in ("val", "test"):
        # bounds widened for few seeds (core/decision.py) may reach past ±1: finite numbers
        optional |= {f"{part}_diff": _DIFF, f"{part}_diff_lower": nullable(number()),
                     f"{part}_diff_upper": nullable(number())}
    return record(required, optional)


_LAYER = record({"layer": text, "rank": POSITIVE_INT, "m": POSITIVE_INT, "n": POSITIVE_INT,
                 "rel_error": NON_NEGATIVE, "energy": FRACTION, "params": COUNT, "dense_params": COUNT,
                 "break_even": NON_NEGATIVE, "costs_more_than_dense": boolean},
                {"flops": COUNT, "bytes": COUNT})
_RETRAIN_FIELDS = record({"epochs": COUNT, "lr": NON_NEGATIVE, "warmup_frac": FRACTION},
                         {"distill": nullable(NON_NEGATIVE), "distill_temperature": number(above=0),
                          "batch_size": POSITIVE_INT, "augment": name})


def _retrain(v):
    """The retraining settings; a distillation weight comes with the temperature it was applied at."""
    _RETRAIN_FIELDS(v)
    if v.get("distill") and "distill_temperature" not in v:
        raise Invalid("distill_temperature", "missing, and distill is set")
    return v


def _summary(study):
    key = _key(study)
    chosen = nullable(record({f: key[f] for f in ("method", "rank")}, {f: key[f] for f in ("init", "embedding")}))
    choice = record({"method": key["method"], "init": key["init"], "embedding": key["embedding"],
                     "rank": key["rank"], "stopped_at": key["rank"], "stop_verdict": nullable(one_of(*VERDICTS)),
                     "tested": list_of(POSITIVE_INT), "more_data": _AMOUNT})
    return record({"study": one_of(study), "profile": name, "margin_points": NON_NEGATIVE,
                   "rows": list_of(_row(study), min_len=1), "chosen": chosen, "choices": list_of(choice)},
                  {"device": name, "device_name": nullable(text), "seeds": list_of(COUNT),
                   "seed_rows": list_of(_row(study)), "layers": list_of(_LAYER),
                   "augmentation": record(optional={"chosen": nullable(name)}), "retrain": _retrain,
                   "latency_batch_size": POSITIVE_INT, "embedding_frozen": boolean, "targets": list_of(name),
                   "chosen_by_init": dict_of(one_of(*INITS), chosen),
                   "chosen_by_embedding": dict_of(name, dict_of(one_of(*INITS), chosen)),
                   "alpha_rule": text, "methods": dict_of(name, text)})


def read_summary(path, study):
    """The summary of `study` at `path`, checked; a UserError naming the file and the field otherwise."""
    return validate(read_json(path), _summary(study), path, f"re-run `lowrank-bench train {study}`")


_EPOCH = record({"epoch": COUNT}, {f"{split}_{what}": nullable(NON_NEGATIVE if what == "loss" else FRACTION)
                                   for split in ("train", "val", "test") for what in ("loss", "acc")})


def _confusion(v):
    """A square matrix of counts (rows: the true class)."""
    list_of(list_of(COUNT, min_len=1), min_len=1)(v)
    if any(len(row) != len(v) for row in v):
        refuse(v, "a square matrix of counts")
    return v


def _sidecar(v):
    record(optional={"history": nullable(list_of(_EPOCH)), "confusion": nullable(_confusion),
                     "classes": nullable(list_of(text))})(v)
    if v.get("confusion") and v.get("classes") is not None and len(v["classes"]) != len(v["confusion"]):
        raise Invalid("classes", f"{len(v['classes'])} names for a {len(v['confusion'])}-class confusion matrix")
    return v


def read_sidecar(path, study):
    """What the report draws from a checkpoint's JSON sidecar (training curves, confusion matrix), checked."""
    return validate(read_json(path), _sidecar, path, f"re-run `lowrank-bench train {study} --force`")
