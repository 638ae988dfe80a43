"""Checks of what a file holds, for the readers of each file kind (summaries, checkpoint sidecars, collected.json,
benchmark files): types, ranges, allowed strings and names, checked when the file is read, so that a value that is
not what the harness writes fails once, as one line naming the file and the field, and never reaches a table, a
sentence of the report or a path.

A spec is a callable that returns the value when it is acceptable and raises `Invalid` otherwise; `record` and
`list_of` check nested values and say where (`rows[3].rank`). `validate` turns the first failure into a UserError.
Fields a spec does not name are left as they are: the readers hand on only what they name.
"""
import math
import os

from lowrank_bench.core.io import MAX_INT, UserError


class Invalid(Exception):
    """A value that its spec refuses: `where` is the path of the field inside the file ("rows[3].rank")."""

    def __init__(self, where, message):
        super().__init__(message)
        self.where, self.message = where, message


def _show(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def refuse(value, expected):
    """Raise Invalid: `value` is not `expected` ("an integer >= 1"); for specs of their own."""
    raise Invalid("", f"{_show(value)} is not {expected}")


def validate(value, spec, path, hint, where=""):
    """`value` (the parsed content of file `path`, or the part of it that `where` names) checked against `spec`;
    a UserError naming the file and the field otherwise, with `hint` (what to do) after it."""
    try:
        return spec(value)
    except Invalid as e:
        field = ": ".join(w for w in (where, e.where) if w)
        raise UserError(f"{path}: {field + ': ' if field else ''}{e.message}; {hint}") from None


def nullable(spec):
    """`spec`, or null."""
    return lambda v: None if v is None else spec(v)


def number(*, low=None, high=None, above=None, integer=False):
    """A finite number (never a boolean) within [low, high] and > above; an integer with `integer`."""
    parts = ["an integer" if integer else "a finite number"]
    parts += [f">= {low}"] if low is not None else []
    parts += [f"> {above}"] if above is not None else []
    parts += [f"<= {high}"] if high is not None else []
    expected = " ".join(parts)

    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)) \
                or (isinstance(v, int) and abs(v) >= MAX_INT) or not math.isfinite(v) \
                or (low is not None and v < low) or (high is not None and v > high) \
                or (above is not None and v <= above):
            refuse(v, expected)
        return v
    return check


COUNT = number(low=0, integer=True)  # parameters, bytes, FLOPs, rounds of nothing
POSITIVE_INT = number(low=1, integer=True)  # a rank, a batch size, a number of seeds
NON_NEGATIVE = number(low=0)
FRACTION = number(low=0, high=1)  # accuracies are stored as fractions of 1


def boolean(v):
    if not isinstance(v, bool):
        refuse(v, "true or false")
    return v


def text(v):
    """Free text for people (a CPU's name, a layer's name): a string without control characters. It reaches the
    report only through report.tex.escape."""
    if not isinstance(v, str) or any(ord(c) < 32 or ord(c) == 127 for c in v):
        refuse(v, "a string without control characters")
    return v


NAME_CHARS = 100  # a name with the suffixes a table or figure adds still fits a file name (255 bytes)


def name(v):
    """A name that may become part of a path or an id: non-empty, no path separator, not `.` or `..`, no control
    characters, at most NAME_CHARS characters."""
    if isinstance(v, str) and len(v) > NAME_CHARS:
        refuse(v, f"a name of at most {NAME_CHARS} characters (it has {len(v)}): file names are made of it")
    if not isinstance(v, str) or not v or v in (".", "..") or "/" in v or "\\" in v \
            or any(ord(c) < 32 or ord(c) == 127 for c in v):
        refuse(v, "a name (non-empty, without '/', '\\\\' or control characters, not '.' or '..')")
    return v


def relative_path(v):
    """A path relative to the folder it names files in: names joined by '/', so it cannot leave that folder."""
    if not isinstance(v, str) or not v or v.startswith("/"):
        refuse(v, "a relative path")
    try:
        for part in v.split("/"):
            name(part)
    except Invalid:
        refuse(v, "a relative path of names joined by '/' (no '..', '\\\\' or empty parts)")
    return v


def one_of(*allowed):
    def check(v):
        if isinstance(v, bool) or v not in allowed:
            refuse(v, f"one of {', '.join(map(repr, allowed))}")
        return v
    return check


def _at(where, inner):
    """Prefix an Invalid raised by a nested spec with the field or index it came from."""
    return f"{where}.{inner}" if inner and not inner.startswith("[") else f"{where}{inner}"


def list_of(spec, min_len=0):
    def check(v):
        if not isinstance(v, list) or len(v) < min_len:
            refuse(v, "a list" + (f" of at least {min_len} item(s)" if min_len else ""))
        for i, item in enumerate(v):
            try:
                spec(item)
            except Invalid as e:
                raise Invalid(_at(f"[{i}]", e.where), e.message) from None
        return v
    return check


def dict_of(key_spec, value_spec):
    """An object whose keys and values are each checked."""
    def check(v):
        if not isinstance(v, dict):
            refuse(v, "an object")
        for k, item in v.items():
            where = k if k.isidentifier() else repr(k)  # a key from the file names the field only if it is plain
            try:
                key_spec(k)
            except Invalid as e:
                raise Invalid(where, f"the key {e.message}") from None
            try:
                value_spec(item)
            except Invalid as e:
                raise Invalid(_at(where, e.where), e.message) from None
        return v
    return check


def record(required=None, optional=None):
    """An object with the `required` fields ({name: spec}) and, where present, the `optional` ones; other fields
    are allowed and not checked."""
    required, optional = required or {}, optional or {}

    def check(v):
        if not isinstance(v, dict):
            refuse(v, "an object")
        missing = [f for f in required if f not in v]
        if missing:
            raise Invalid(missing[0], "missing")
        for field, spec in (required | optional).items():
            if field in v:
                try:
                    spec(v[field])
                except Invalid as e:
                    raise Invalid(_at(field, e.where), e.message) from None
        return v
    return check


def environment(variable, spec, default, hint):
    """The environment variable `variable` as a whole number checked against `spec`, `default` when unset or
    empty; a UserError naming the variable and its value otherwise, with `hint` (what it is for)."""
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    if not raw.removeprefix("-").isdigit() or len(raw) > 20:  # int() would take "1_000" and 4,000 digits
        raise UserError(f"${variable}={raw[:40]!r} is not a whole number; {hint}")
    return validate(int(raw), spec, f"${variable}={raw}", hint)
