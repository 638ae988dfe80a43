"""The one way text reaches the report's LaTeX: `escape` for every string, except `Tex`, the LaTeX the code wrote.

Strings from files (names, labels, a CPU's name, dtype and mode, file names) are data: `escape` turns each LaTeX
special character into the command that prints it, so no string from a results folder or a benchmark file can be
read by TeX as a command. `Tex` marks text the report's code composed itself (a sentence with `\\,\\%`, a number in
math mode); the code that composes it escapes every string from data it puts in. `latex.numbers_tex` writes each
macro's value through `tex`, and `tables.write_table` each table cell, so nothing reaches the .tex files another way.
"""

# Characters a table or a name may hold that pdflatex prints as math ("±", "×", "µ"); any other non-ASCII
# character becomes "?".
_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"\ensuremath{\pm}",
            "×": r"\ensuremath{\times}", "µ": r"\ensuremath{\mu}"}


class Tex(str):
    """LaTeX composed by the report's code: `tex` passes it on unchanged."""


def escape(text) -> str:
    """`text` (any value, as str()) printed literally by LaTeX: special characters escaped, control characters as
    spaces, other non-ASCII characters as "?"."""
    return "".join(_SPECIAL.get(c, " " if ord(c) < 32 or ord(c) == 127 else c if ord(c) < 128 else "?")
                   for c in str(text))


def tex(value) -> Tex:
    """What a macro or a table cell holds: `value` itself if it is Tex, else `value` escaped."""
    return value if isinstance(value, Tex) else Tex(escape(value))
