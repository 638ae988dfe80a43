"""How the report, the tables and the gate print numbers: one function per kind of value.

Each takes None for "not measured" and prints `missing` instead ("-" in tables, "--" in LaTeX text).
"""
MIB = 2 ** 20


def num(x, fmt=".2f", missing="-"):
    return missing if x is None else format(x, fmt)


def interval(value, lower, upper, fmt=".2f", missing="-"):
    """1.52 [1.48, 1.57]: a value with its bounds; the value alone where it has none."""
    if value is None or lower is None or upper is None:
        return num(value, fmt, missing)
    return f"{value:{fmt}} [{lower:{fmt}}, {upper:{fmt}}]"


def pct(fraction, missing="-"):
    """0.9936 -> 99.36 (accuracies are stored as fractions, shown in percent)."""
    return num(None if fraction is None else 100 * fraction, ".2f", missing)


def points(fraction, missing="-"):
    """A difference of accuracies (a fraction) in percentage points with its sign: -0.0042 -> "-0.42"."""
    return missing if fraction is None else f"{100 * fraction:+.2f}"


def count(n, missing="-"):
    return missing if n is None else f"{int(n):,}"


def ratio(a, b, fmt=".2f", missing="-"):
    return missing if not a or not b else format(a / b, fmt)


def mib(n_bytes, missing="-"):
    return num(None if n_bytes is None else n_bytes / MIB, ".1f", missing)


def kib(n_bytes, missing="-"):
    return num(None if n_bytes is None else n_bytes / 1024, ".1f", missing)


def si(x, missing="-"):
    """1234567 -> 1.23M: FLOPs of very different sizes in one short column."""
    if x is None:
        return missing
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def seconds(s):
    """A duration with the unit that keeps it short: 12.3 us, 4.567 ms, 1.234 s."""
    return f"{s * 1e6:.1f} us" if s < 1e-3 else f"{s * 1e3:.3f} ms" if s < 1 else f"{s:.3f} s"
