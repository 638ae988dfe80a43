"""A job's result file, `OUT/<profile>/jobs/<id>.json`, checked against its schema whenever it is read or written,
and the rule for every file name a job hands over: a path relative to its folder that stays inside it.

A results folder may come from someone else (a colleague's copy, a CI artifact), so a job file is input from a
stranger: the names it lists are joined onto the results folder and onto a job's temporary folder, and its row
becomes a summary row. So: every name is relative, has no `.`/`..` part and no backslash, and resolves inside its
folder with no symbolic link on the way; a job's own files are its checkpoint, `<job name>.<suffix>`;
key fields equal the job's, accuracies are numbers in [0, 1], and every other value is a plain number, flag or
short identifier. What `check` refuses raises `UserError` naming the file and the field.
"""
import dataclasses
import math
import re
from pathlib import Path

from lowrank_bench.core.io import UserError, confined

SHA256 = re.compile(r"[0-9a-f]{64}")
# a checkpoint's `.safetensors` and `.json`, its per-example outcomes' `.outcomes.safetensors`
SUFFIX = re.compile(r"(\.[a-z]{1,16}){1,2}")
WORD = re.compile(r"[A-Za-z0-9_.+-]{0,64}")  # the strings a job writes: layer names, augmentations, dtypes
TRAIN_DTYPES = (None, "bf16", "fp32")


def relative_name(name, what):
    """Raise UserError (naming `what`, the file and field) unless `name` is a relative POSIX path without `.`,
    `..`, empty parts or backslashes."""
    parts = name.split("/") if isinstance(name, str) else []
    if not parts or "\\" in name or "\0" in name or any(p in ("", ".", "..") for p in parts):
        raise UserError(f"{what}: {name!r} is not a plain relative file name (no '..', no leading '/')")


def inside(folder, name, what) -> Path:
    """`folder / name`, after `relative_name` and core.io's `confined`: no symbolic link on the way."""
    relative_name(name, what)
    try:
        return confined(folder, name)
    except UserError as e:
        raise UserError(f"{what}: {e}") from None


def own_file(job, name, what):
    """Raise UserError unless `name` is one of `job`'s own files: `<job.name>.<suffix>` (its checkpoint, its
    outcomes)."""
    if not (isinstance(name, str) and name.startswith(job.name) and SUFFIX.fullmatch(name[len(job.name):])):
        raise UserError(f"{what}: {name!r} is not one of this job's files ({job.name}.*)")


def _number(value, what, low=0.0, high=math.inf):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise UserError(f"{what} must be a number in [{low:g}, {high:g}], got {value!r}")


def _plain(value, what, depth=0):
    """None, a flag, a finite number, a short identifier, or lists and tables of them (not nested deeply)."""
    if value is None or isinstance(value, bool) or (isinstance(value, str) and WORD.fullmatch(value)):
        return
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise UserError(f"{what} must be finite, got {value!r}")
        return
    if depth < 4 and isinstance(value, list):
        for i, v in enumerate(value):
            _plain(v, f"{what}[{i}]", depth + 1)
        return
    if depth < 4 and isinstance(value, dict):
        for k, v in value.items():
            if not WORD.fullmatch(k):
                raise UserError(f"{what}: key {k!r} is not a plain name")
            _plain(v, f"{what}.{k}", depth + 1)
        return
    raise UserError(f"{what} must be a number, true/false, null or a plain name, got {str(value)[:80]!r}")


def check_row(row, job, what):
    """A summary row as a job returns it: the job's key fields, accuracies in [0, 1], its checkpoint's name and its
    outcomes' (the job's name)."""
    if not isinstance(row, dict):
        raise UserError(f"{what} must be a table, got {type(row).__name__}")
    for field in ("study", "method", "rank", "init", "embedding", "seed"):
        if field not in row or row[field] != getattr(job, field) or isinstance(row[field], bool):
            raise UserError(f"{what}.{field} must be {getattr(job, field)!r} (this job's), got {row.get(field)!r}")
    for field in ("val_acc", "test_acc"):
        _number(row.get(field), f"{what}.{field}", high=1.0)
    if row.get("train_dtype") not in TRAIN_DTYPES:
        raise UserError(f"{what}.train_dtype must be one of {TRAIN_DTYPES}, got {row.get('train_dtype')!r}")
    relative_name(row.get("checkpoint"), f"{what}.checkpoint")
    if row.get("outcomes") != job.name:  # its per-example outcomes: the job's own file (`own_file`), nothing else
        raise UserError(f"{what}.outcomes must be {job.name!r} (this job's), got {str(row.get('outcomes'))[:80]!r}")
    for field, value in row.items():
        if field not in ("study", "method", "init", "embedding", "checkpoint", "outcomes", "train_dtype"):
            _plain(value, f"{what}.{field}")
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise UserError(f"{what}.{field} must not be negative, got {value!r}")


def describe(job):
    return {**dataclasses.asdict(job), "parents": list(job.parents)}


def record(job, result, digests):
    """The job file's content for a finished job: what `check` accepts."""
    return {"id": job.id, "job": describe(job), "row": result["row"], "extra": result["extra"], "files": digests,
            "seconds": result["seconds"]}


def check(kept, job, where):
    """Raise UserError (naming `where`, the file, and the field) unless `kept` is `job`'s result record."""
    if not isinstance(kept, dict):
        raise UserError(f"{where}: must be a JSON table, got {type(kept).__name__}")
    unknown = set(kept) - {"id", "job", "row", "extra", "files", "seconds"}
    if unknown:
        raise UserError(f"{where}: unknown field(s) {sorted(unknown)}")
    if kept.get("id") != job.id:
        raise UserError(f"{where}: id must be {job.id!r} (this file's job), got {kept.get('id')!r}")
    if kept.get("job") != describe(job):
        raise UserError(f"{where}: job must describe job {job.id} ({job.name})")
    check_row(kept.get("row"), job, f"{where}: row")
    if not isinstance(kept.get("extra"), dict):
        raise UserError(f"{where}: extra must be a table, got {kept.get('extra')!r}")
    _plain(kept["extra"], f"{where}: extra")
    _number(kept.get("seconds"), f"{where}: seconds")
    files = kept.get("files")
    if not isinstance(files, dict):
        raise UserError(f"{where}: files must be a table of file name: SHA-256, got {files!r}")
    for name, digest in files.items():
        own_file(job, name, f"{where}: files")
        relative_name(name, f"{where}: files")
        if not (isinstance(digest, str) and SHA256.fullmatch(digest)):
            raise UserError(f"{where}: files[{name!r}] must be a SHA-256 (64 hex digits), got {digest!r}")
