"""Build the LaTeX report, report/build/report.pdf, from the collected results with latexmk.

This module writes data only: numbers.tex (every number the text quotes, as \\newcommand macros, and one
\\if per study that ran), the collector's tables and figures, and copies of the source files that the listings
quote, with the line ranges of each class or def taken from the standard `ast` module (the code is parsed, never
imported). Prose, derivations and captions live
in report/templates/*.tex, so nothing in the PDF is typed by hand and an absent study only switches a flag.
"""
import ast
import importlib.util
import re
import shutil
import time
from pathlib import Path

from core import proc
from core.io import UserError, atomic_write, read_json
from report import fmt, prose
from report.collect import collect
from core.spec import STUDIES
from report.results import default_bench, primary, same_model, speedup_cells

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = Path(__file__).parent / "templates"
BUILD = ROOT / "report" / "build"
# Every \\usepackage of templates/report.tex -> the Debian package that provides it (tests/test_report.py checks
# the map against the template and .ci/run). lmodern is only a recommendation of texlive-base, so
# `apt-get install --no-install-recommends` leaves it out unless it is named.
TEX_PACKAGES = {"fontenc": "texlive-latex-base", "lmodern": "lmodern", "geometry": "texlive-latex-base",
                "amsmath": "texlive-latex-base", "amssymb": "texlive-base", "graphicx": "texlive-latex-base",
                "booktabs": "texlive-latex-recommended", "longtable": "texlive-latex-base",
                "adjustbox": "texlive-latex-extra", "caption": "texlive-latex-recommended",
                "listings": "texlive-latex-recommended", "xcolor": "texlive-latex-recommended",
                "placeins": "texlive-latex-extra", "hyperref": "texlive-latex-base"}
DEBIAN_PACKAGES = ["latexmk", *sorted(set(TEX_PACKAGES.values())), "texlive-fonts-recommended"]
INSTALL_HINT = f"install TeX with `apt-get install --no-install-recommends {' '.join(DEBIAN_PACKAGES)}`"
# Listings quoted in the report: macro stem -> `module:name` or `module:Class.method`. The module's file is found
# by import machinery without running it (the report imports no torch); a symbol that is not there is an error.
EXCERPTS = {"LowRankBase": "models.lowrank:_LowRank.from_linear", "LowRankLinear": "models.lowrank:LowRankLinear",
            "SVDLinear": "models.lowrank:SVDLinear", "LoRAForward": "models.lora:LoRALinear.forward",
            "LoRADelta": "models.lora:LoRALinear.delta_weight", "Attention": "models.transformer:SelfAttention",
            "Whiten": "models.whiten:whitened_svd"}
# pdflatex's listings cannot typeset multi-byte characters; the copies the listings read spell them in ASCII.
ASCII = {"×": "x", "≈": "~", "·": "*", "Σ": "S", "σ": "s", "α": "alpha", "√": "sqrt", "ᵀ": "^T", "—": "--",
         "–": "-", "→": "->", "←": "<-", "≤": "<=", "≥": ">=", "‖": "||", "⊙": "*", "²": "^2", "…": "...",
         "’": "'", "“": '"', "”": '"', "∑": "sum", "Δ": "Delta", "∈": "in"}


def tex_escape(text):
    special = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(special.get(c, c) for c in str(text)).encode("ascii", "replace").decode()


# ---------------------------------------------------------------- listings

def locate(source, cls, method=None):
    """1-based (first, last) lines of the top-level `class <cls>` or `def <cls>` (or of the class's `def <method>`)
    in `source`, or None if absent."""
    for node in ast.parse(source).body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name == cls:
            if method is None:
                return node.lineno, node.end_lineno
            return next(((f.lineno, f.end_lineno) for f in node.body
                         if isinstance(f, ast.FunctionDef) and f.name == method), None)
    return None


def source_of(symbol):
    """(source file, first line, last line) of `module:Class` or `module:Class.method`; LookupError if absent."""
    module, _, name = symbol.partition(":")
    cls, _, method = name.partition(".")
    spec = importlib.util.find_spec(module)
    path = Path(spec.origin) if spec and spec.origin else None
    span = locate(path.read_text(), cls, method or None) if path and path.exists() else None
    if span is None:
        raise LookupError(f"report/latex.py EXCERPTS quotes {symbol}, which does not exist; update EXCERPTS")
    return path, *span


def write_excerpts(out_dir):
    """ASCII copies of the quoted files under out_dir/code, and {stem: (file name, first, last)}."""
    found = {}
    for stem, symbol in EXCERPTS.items():
        path, first, last = source_of(symbol)
        copy = "".join(ASCII.get(c, c if ord(c) < 128 else "?") for c in path.read_text())
        atomic_write(out_dir / "code" / path.name, copy)
        found[stem] = (path.name, first, last)
    return found


# ---------------------------------------------------------------- numbers

def _pct(x):
    return fmt.pct(x, "--")


def _int(n):
    return fmt.count(n, "--")


def _num(x, spec=".2f"):
    return fmt.num(x, spec, "--")


def _ratio(a, b, spec=".2f"):
    return fmt.ratio(a, b, spec, "--")


def _mib(n_bytes):
    return fmt.mib(n_bytes, "--")


def study_numbers(d, bench):
    """The macros a study's section quotes, without the study prefix."""
    base = d["baseline"] or d["rows"][0]
    chosen = d["chosen"]
    c = chosen or {}
    ranks = sorted({r["rank"] for r in d["rows"] if r["rank"] is not None})
    meta = d["meta"]
    n = {"Device": tex_escape(meta.get("device", "--")), "DeviceName": tex_escape(meta.get("device_name") or "--"),
         "Tolerance": _num(meta.get("tolerance_points"), "g"), "Rows": str(len(d["rows"])),
         "Ranks": ", ".join(map(str, ranks)) or "--", "Base": tex_escape(base["label"]),
         "Chosen": tex_escape(c.get("label", "none")), "ChosenRank": str(c.get("rank") or "--"),
         "BaseTestAcc": _pct(base["test_acc"]), "BaseValAcc": _pct(base["val_acc"]),
         "ChosenTestAcc": _pct(c.get("test_acc")), "ChosenValAcc": _pct(c.get("val_acc")),
         "ChosenTestAccCI": "" if c.get("test_acc_ci95") is None else f"${{}}\\pm{{}}${_pct(c['test_acc_ci95'])}",
         "BaseTestAccCI": "" if base.get("test_acc_ci95") is None else f"${{}}\\pm{{}}${_pct(base['test_acc_ci95'])}",
         "Seeds": str(base.get("n_seeds") or 1), "Rule": prose.chosen_rule(d),
         "AccDelta": "--" if not chosen else f"${100 * (c['test_acc'] - base['test_acc']):+.2f}$",
         "BaseParams": _int(base["params_total"]), "ChosenParams": _int(c.get("params_total")),
         "ParamRatio": _ratio(base["params_total"], c.get("params_total"), ".1f"),
         "BaseTrainable": _int(base["params_trainable"]), "ChosenTrainable": _int(c.get("params_trainable")),
         "FlopRatio": _ratio(c.get("flops"), base["flops"], ".3f"),
         "BaseEpochSec": _num(base["epoch_seconds"]), "ChosenEpochSec": _num(c.get("epoch_seconds")),
         "BaseMem": _mib(base["peak_mem_bytes"]), "ChosenMem": _mib(c.get("peak_mem_bytes"))}
    # Latency of baseline and chosen at the largest batch size of the reference file (LoRA: merged if measured).
    infer = [b for b in bench if b["study"] == d["study"] and b["kind"] == "infer" and b["file"] == bench[0]["file"]]
    n |= {"LatBatch": "--", "BaseLat": "--", "ChosenLat": "--", "Speedup": "--"}
    if infer:
        bs = max(b["batch_size"] for b in infer)
        at = sorted((b for b in infer if b["batch_size"] == bs), key=lambda b: b["variant"] != "merged")
        b_base = next((b for b in at if same_model(base, b)), None)
        b_chosen = next((b for b in at if chosen and same_model(chosen, b)), None)
        n |= {"LatBatch": str(bs), "BaseLat": _num(b_base and b_base["median_ms"], ".3g"),
              "ChosenLat": _num(b_chosen and b_chosen["median_ms"], ".3g"),
              "Speedup": _ratio(b_base and b_base["median_ms"], b_chosen and b_chosen["median_ms"])}
    return n, bool(infer) and n["Speedup"] != "--"


# A study's own macros beyond study_numbers', registered next to the function that makes them (a study without
# any needs none); each key becomes the macro \<its spec's macro_prefix><key>.
OWN_NUMBERS = {}


def own_numbers(study):
    def register(function):
        OWN_NUMBERS[study] = function
        return function
    return register


@own_numbers("svd")
def svd_numbers(d, bench):
    layers = d["layers"]
    return {"ChosenTruncAcc": _pct((d["chosen"] or {}).get("acc_truncated")),
            "RetrainVerdict": prose.svd_retraining(d), "RetrainSchedule": prose.retraining_schedule(d),
            "Layers": tex_escape(", ".join(dict.fromkeys(lay["layer"] for lay in layers))) or "--",
            "BreakEven": ", ".join(dict.fromkeys(f"{lay['break_even']:.1f}" for lay in layers)) or "--",
            "CostlyRows": str(sum(bool(r.get("costs_more_than_dense")) for r in d["rows"]))}


@own_numbers("lora")
def lora_numbers(d, bench):
    rows = {r["method"]: r for r in d["rows"] if r["rank"] is None}  # pretrained, head, full, scratch
    c = d["chosen"] or {}
    acc = lambda method: _pct(rows[method]["test_acc"]) if method in rows else "--"
    full = rows.get("full", {})
    return {"ChosenAlpha": _num(c.get("alpha"), "g"), "MergedVerdict": prose.lora_merged(d, bench),
            "ChosenTrainablePct": _num(c.get("trainable_pct")),
            "PretrainedTestAcc": acc("pretrained"), "HeadTestAcc": acc("head"),
            "FullTestAcc": acc("full"), "ScratchTestAcc": acc("scratch"),
            "DeltaToFull": "--" if not (c and full) else f"${100 * (c['test_acc'] - full['test_acc']):+.2f}$",
            "FullMem": _mib(full.get("peak_mem_bytes")),
            "MemRatio": _ratio(full.get("peak_mem_bytes"), c.get("peak_mem_bytes")),
            "ChosenCkptKiB": fmt.kib(c.get("checkpoint_bytes"), "--"),
            "FullCkptKiB": fmt.kib(full.get("checkpoint_bytes"), "--")}


@own_numbers("attention")
def attention_numbers(d, bench):
    c, base = d["chosen"] or {}, d["baseline"] or {}
    best = {init: max((r for r in d["rows"] if r.get("init") == init and not r.get("embedding")),
                      key=lambda r: r["val_acc"], default=None) for init in ("random", "trained")}
    out = {"ChosenInit": tex_escape(c.get("init") or "--"), "InitVerdict": prose.attention_inits(d),
           "EmbeddingVerdict": prose.attention_embedding(d),
           "BaseQKV": _int(base.get("qkv_params")), "ChosenQKV": _int(c.get("qkv_params")),
           "QKVRatio": _ratio(base.get("qkv_params"), c.get("qkv_params"), ".1f")}
    for init, r in best.items():
        key = init.capitalize()
        out[f"Best{key}"] = tex_escape(r["label"]) if r else "--"
        out[f"Best{key}TestAcc"] = _pct(r and r["test_acc"])
    return out


def numbers_tex(collected, excerpts):
    """numbers.tex: \\newcommand per number, \\newif per study that ran, and the listings' line ranges."""
    macros = {"Profile": tex_escape(collected["profile"]), "BenchFiles": str(len(collected["bench_files"])),
              "WhereLowRankPays": prose.where_low_rank_pays(speedup_cells("svd", primary(collected["bench"]))),
              "BenchFileNames": tex_escape(", ".join(m["label"] for m in collected["machines"])) or "none"}
    flags = {"Comparison": len(collected["bench_files"]) > 1}
    for study in STUDIES:
        p, d = STUDIES[study].macro_prefix, collected["studies"].get(study)
        flags[f"{p}Ran"] = d is not None
        flags[f"{p}Chosen"] = bool(d and d["chosen"])
        flags[f"{p}Bench"] = flags[f"{p}SpeedupMap"] = False
        if d is None:
            continue
        n, flags[f"{p}Bench"] = study_numbers(d, primary(collected["bench"]))
        macros |= {p + k: v for k, v in n.items()}
        if study in OWN_NUMBERS:
            macros |= {p + k: v for k, v in OWN_NUMBERS[study](d, primary(collected["bench"])).items()}
        maps = speedup_cells(study, collected["bench"])
        flags[f"{p}SpeedupMap"] = bool(maps)
        macros[f"{p}SpeedupMap"] = prose.speedup_text(maps) if maps else "--"
    lines = ["% Written by report/latex.py from the collected results; do not edit."]
    lines += [f"\\newcommand{{\\{k}}}{{{v}}}" for k, v in macros.items()]
    for k, on in flags.items():
        lines.append(f"\\newif\\if{k}" + (f" \\{k}true" if on else ""))
    for stem, (name, first, last) in excerpts.items():
        lines += [f"\\newcommand{{\\Have{stem}}}{{}}", f"\\newcommand{{\\{stem}File}}{{{name}}}",
                  f"\\newcommand{{\\{stem}First}}{{{first}}}", f"\\newcommand{{\\{stem}Last}}{{{last}}}"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- build

def _collected(results_dir, bench_files):
    """The collector's output: reused when collected.json is newer than every input, else collected again
    (with the benchmark files named, or those of the last collection, or OUT/<profile>/bench.json)."""
    path = results_dir / "collected.json"
    if bench_files is None and path.exists():
        prior = read_json(path)
        inputs = [results_dir / s / "summary.json" for s in STUDIES] + [Path(p) for p in prior["bench_files"]]
        outputs = [Path(p) for kind in ("tables", "figures") for paths in prior[kind].values() for p in paths.values()]
        mtime = path.stat().st_mtime
        if all(p.exists() for p in outputs) and all(not p.exists() or p.stat().st_mtime <= mtime for p in inputs):
            return prior
        bench_files = [Path(p) for p in prior["bench_files"]]
    return collect(results_dir, default_bench(results_dir) if bench_files is None else bench_files)


def require_latexmk(alternative="") -> str:
    """The path of latexmk, or a UserError with the line that installs TeX (and `alternative`, if given)."""
    latexmk = shutil.which("latexmk")
    if latexmk is None:
        raise UserError(f"latexmk not found: {INSTALL_HINT}{alternative}")
    return latexmk


def build_report(results_dir, out_dir=BUILD, bench_files=None) -> Path:
    """Write the report's sources into `out_dir` and build `out_dir`/report.pdf with latexmk; return its path."""
    latexmk = require_latexmk()
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    collected = _collected(results_dir, bench_files)
    for sub in ("tables", "figures", "code"):  # an earlier build's files must not stand in for absent ones
        shutil.rmtree(out_dir / sub, ignore_errors=True)
    for template in TEMPLATES.glob("*.tex"):
        atomic_write(out_dir / template.name, template.read_text())
    for kind, fmt in (("tables", "tex"), ("figures", "pdf")):
        for paths in collected[kind].values():
            src = Path(paths[fmt])
            atomic_write(out_dir / kind / src.name, src.read_bytes())
    atomic_write(out_dir / "numbers.tex", numbers_tex(collected, write_excerpts(out_dir)))
    cmd = [latexmk, "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error", "report.tex"]
    rc, stdout = proc.run(cmd, cwd=out_dir, capture=True)  # a signal to us ends latexmk and pdflatex too
    if rc != 0:
        # latexmk's database would answer the next call with "Nothing to do" and repeat this error even after
        # the missing package is installed: forget it, so the next build starts from scratch.
        (out_dir / "report.fdb_latexmk").unlink(missing_ok=True)
        log = out_dir / "report.log"
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        # -file-line-error writes "./file.tex:LINE: message", then "l.LINE <the input up to the error>".
        at = next((i for i, l in enumerate(lines) if re.match(r"(\S+\.tex:\d+: |! )", l)), None)
        first = " ".join(l.strip() for l in lines[at:at + 2]) if at is not None else stdout.strip()[-200:]
        hint = f"; {INSTALL_HINT}" if "not found" in first else ""
        raise UserError(f"latexmk failed ({first}); see {log}{hint}")
    return out_dir / "report.pdf"


def page_count(out_dir):
    log = Path(out_dir) / "report.log"
    m = re.search(r"Output written on report\.pdf \((\d+) pages?", log.read_text(errors="replace")) \
        if log.exists() else None
    return int(m.group(1)) if m else None


def add_arguments(parser):
    """The report's own option; --out and --profile come from the CLI's common options."""
    parser.add_argument("--build-dir", metavar="DIR", type=Path, default=BUILD,
                        help="where the .tex sources, figures and report.pdf go (default report/build)")


def main(results_dir, build_dir=BUILD) -> int:
    """`lowrank-bench report`: build the PDF for the results in `results_dir` and say where it is."""
    t0 = time.perf_counter()
    pdf = build_report(results_dir, build_dir)
    print(f"report: {pdf} ({page_count(build_dir)} pages) built in {time.perf_counter() - t0:.1f}s")
    return 0
