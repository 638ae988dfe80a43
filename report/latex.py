"""Build the LaTeX report, report/build/report.pdf, from the collected results with latexmk.

This module writes data only: numbers.tex (every number the text quotes, as \\newcommand macros, and one
\\if per study that ran), the collector's tables and figures, and copies of the source files that the listings
quote, with the line ranges found by searching for the class or def line. Prose, derivations and captions live
in report/templates/*.tex, so nothing in the PDF is typed by hand and an absent study only switches a flag.
"""
import argparse
import re
import shutil
import subprocess
import time
from pathlib import Path

from report.collect import MIB, STUDIES, bench_name, collect, default_bench, results_dir_of
from training.io import UserError, atomic_write, read_json

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = Path(__file__).parent / "templates"
BUILD = ROOT / "report" / "build"
INSTALL_HINT = ("latexmk not found: install TeX with `apt-get install latexmk texlive-latex-recommended "
                "texlive-latex-extra texlive-science texlive-fonts-recommended`")
# Listings quoted in the report: macro stem -> (source file, class name pattern, method or None for the class).
EXCERPTS = {"LowRankBase": ("models/lowrank.py", "_LowRank", "from_linear"),
            "LowRankLinear": ("models/lowrank.py", "LowRankLinear", None),
            "SVDLinear": ("models/lowrank.py", "SVDLinear", None),
            "LoRAForward": ("models/lora.py", "LoRALinear", "forward"),
            "LoRADelta": ("models/lora.py", "LoRALinear", "delta_weight"),
            "Attention": ("models/transformer.py", r"\w*Attention", None)}
PREFIX = {"svd": "Svd", "lora": "Lora", "attention": "Attn"}
# pdflatex's listings cannot typeset multi-byte characters; the copies the listings read spell them in ASCII.
ASCII = {"×": "x", "≈": "~", "·": "*", "Σ": "S", "σ": "s", "α": "alpha", "√": "sqrt", "ᵀ": "^T", "—": "--",
         "–": "-", "→": "->", "←": "<-", "≤": "<=", "≥": ">=", "‖": "||", "⊙": "*", "²": "^2", "…": "...",
         "’": "'", "“": '"', "”": '"', "∑": "sum", "Δ": "Delta", "∈": "in"}


def tex_escape(text):
    special = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(special.get(c, c) for c in str(text)).encode("ascii", "replace").decode()


# ---------------------------------------------------------------- listings

def locate(lines, cls, method=None):
    """1-based (first, last) lines of `class <cls>` (or of its `def <method>`), or None if absent.

    The block ends before the next non-blank line indented no deeper than its first line; trailing blank
    lines are dropped.
    """
    start = next((i for i, l in enumerate(lines) if re.match(rf"class {cls}\b", l)), None)
    if start is not None and method:
        start = next((i for i in range(start + 1, len(lines))
                      if re.match(rf"\s+def {method}\(", lines[i])
                      or (lines[i].strip() and not lines[i][0].isspace())), None)
        if start is None or not lines[start][0].isspace():
            return None
    if start is None:
        return None
    indent = len(lines[start]) - len(lines[start].lstrip())
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    return start + 1, end


def write_excerpts(out_dir, root=ROOT):
    """ASCII copies of the quoted files under out_dir/code, and {stem: (file name, first, last)} found."""
    found = {}
    for stem, (rel, cls, method) in EXCERPTS.items():
        path = root / rel
        if not path.exists():
            continue  # the file is written by another study: the report says the excerpt is missing
        text = path.read_text()
        lines = text.split("\n")  # LaTeX counts "\n" only; str.splitlines also splits on \f, \x1c, ...
        span = locate(lines, cls, method)
        if span is None:
            continue
        copy = "".join(ASCII.get(c, c if ord(c) < 128 else "?") for c in text)
        atomic_write(out_dir / "code" / path.name, copy)
        found[stem] = (path.name, *span)
    return found


# ---------------------------------------------------------------- numbers

def _pct(x):
    return "--" if x is None else f"{100 * x:.2f}"


def _int(n):
    return "--" if n is None else f"{int(n):,}"


def _num(x, fmt=".2f"):
    return "--" if x is None else format(x, fmt)


def _ratio(a, b, fmt=".2f"):
    return "--" if not a or not b else format(a / b, fmt)


def study_numbers(d, bench):
    """The macros a study's section quotes, without the study prefix."""
    rows = {r["name"]: r for r in d["rows"]}
    base = rows.get(d["baseline"]) or d["rows"][0]
    chosen = rows.get(d["chosen"])
    c = chosen or {}
    ranks = sorted({r["rank"] for r in d["rows"] if r["rank"] is not None})
    meta = d["meta"]
    n = {"Device": tex_escape(meta.get("device", "--")), "DeviceName": tex_escape(meta.get("device_name") or "--"),
         "Tolerance": _num(meta.get("tolerance_points"), "g"), "Rows": str(len(d["rows"])),
         "Ranks": ", ".join(map(str, ranks)) or "--", "Base": tex_escape(base["name"]),
         "Chosen": tex_escape(c.get("name", "none")), "ChosenRank": str(c.get("rank", "--")),
         "BaseTestAcc": _pct(base["test_acc"]), "BaseValAcc": _pct(base["val_acc"]),
         "ChosenTestAcc": _pct(c.get("test_acc")), "ChosenValAcc": _pct(c.get("val_acc")),
         "AccDelta": "--" if not chosen else f"${100 * (c['test_acc'] - base['test_acc']):+.2f}$",
         "BaseParams": _int(base["params_total"]), "ChosenParams": _int(c.get("params_total")),
         "ParamRatio": _ratio(base["params_total"], c.get("params_total"), ".1f"),
         "BaseTrainable": _int(base["params_trainable"]), "ChosenTrainable": _int(c.get("params_trainable")),
         "FlopRatio": _ratio(c.get("flops"), base["flops"], ".3f"),
         "BaseEpochSec": _num(base["epoch_seconds"]), "ChosenEpochSec": _num(c.get("epoch_seconds")),
         "BaseMem": _num(base["peak_mem_bytes"] and base["peak_mem_bytes"] / MIB, ".1f"),
         "ChosenMem": _num(c.get("peak_mem_bytes") and c["peak_mem_bytes"] / MIB, ".1f")}
    # Latency of baseline and chosen at the largest batch size of the reference file (LoRA: merged if measured).
    infer = [b for b in bench if b["study"] == d["study"] and b["kind"] == "infer" and b["file"] == bench[0]["file"]]
    n |= {"LatBatch": "--", "BaseLat": "--", "ChosenLat": "--", "Speedup": "--"}
    if infer:
        bs = max(b["batch_size"] for b in infer)
        at = sorted((b for b in infer if b["batch_size"] == bs), key=lambda b: b["variant"] != "merged")
        b_base = next((b for b in at if b["name"] == bench_name(d["study"], base)), None)
        b_chosen = next((b for b in at if chosen and b["name"] == bench_name(d["study"], chosen)), None)
        n |= {"LatBatch": str(bs), "BaseLat": _num(b_base and b_base["median_ms"], ".3g"),
              "ChosenLat": _num(b_chosen and b_chosen["median_ms"], ".3g"),
              "Speedup": _ratio(b_base and b_base["median_ms"], b_chosen and b_chosen["median_ms"])}
    return n, bool(infer) and n["Speedup"] != "--"


def svd_numbers(d):
    rows = {r["name"]: r for r in d["rows"]}
    c = rows.get(d["chosen"]) or {}
    layers = d["layers"]
    return {"ChosenK": str(c.get("k", "--")), "SvdChosenTruncAcc": _pct(c.get("acc_truncated")),
            "SvdLayers": tex_escape(", ".join(dict.fromkeys(lay["layer"] for lay in layers))) or "--",
            "SvdBreakEven": ", ".join(dict.fromkeys(f"{lay['break_even']:.1f}" for lay in layers)) or "--",
            "SvdCostlyRows": str(sum(bool(r.get("costs_more_than_dense")) for r in d["rows"]))}


def lora_numbers(d):
    rows = {r["name"]: r for r in d["rows"]}
    c = rows.get(d["chosen"]) or {}
    acc = lambda name: _pct(rows[name]["test_acc"]) if name in rows else "--"
    full = rows.get("full", {})
    return {"ChosenR": str(c.get("r", c.get("rank", "--"))), "LoraChosenAlpha": _num(c.get("alpha"), "g"),
            "LoraChosenTrainablePct": _num(c.get("trainable_pct")),
            "LoraPretrainedTestAcc": acc("pretrained"), "LoraHeadTestAcc": acc("head"),
            "LoraFullTestAcc": acc("full"), "LoraScratchTestAcc": acc("scratch"),
            "LoraDeltaToFull": "--" if not (c and full) else f"${100 * (c['test_acc'] - full['test_acc']):+.2f}$",
            "LoraFullMem": _num(full.get("peak_mem_bytes") and full["peak_mem_bytes"] / MIB, ".1f"),
            "LoraMemRatio": _ratio(full.get("peak_mem_bytes"), c.get("peak_mem_bytes")),
            "LoraChosenCkptKiB": _num(c.get("checkpoint_bytes") and c["checkpoint_bytes"] / 1024, ".1f"),
            "LoraFullCkptKiB": _num(full.get("checkpoint_bytes") and full["checkpoint_bytes"] / 1024, ".1f")}


def attention_numbers(d):
    rows = {r["name"]: r for r in d["rows"]}
    c, base = rows.get(d["chosen"]) or {}, rows.get(d["baseline"]) or {}
    best = {init: max((r for r in d["rows"] if r.get("init") == init), key=lambda r: r["val_acc"], default=None)
            for init in ("random", "trained")}
    out = {"ChosenAttnK": str(c.get("k", "--")), "AttnChosenInit": tex_escape(c.get("init") or "--"),
           "AttnBaseQKV": _int(base.get("qkv_params")), "AttnChosenQKV": _int(c.get("qkv_params")),
           "AttnQKVRatio": _ratio(base.get("qkv_params"), c.get("qkv_params"), ".1f")}
    for init, r in best.items():
        key = init.capitalize()
        out[f"AttnBest{key}"] = tex_escape(r["name"]) if r else "--"
        out[f"AttnBest{key}TestAcc"] = _pct(r and r["test_acc"])
    return out


def numbers_tex(collected, excerpts):
    """numbers.tex: \\newcommand per number, \\newif per study that ran, and the listings' line ranges."""
    macros = {"Profile": tex_escape(collected["profile"]), "BenchFiles": str(len(collected["bench_files"])),
              "BenchFileNames": tex_escape(", ".join(m["label"] for m in collected["machines"])) or "none"}
    flags = {"Comparison": len(collected["bench_files"]) > 1}
    extra = {"svd": svd_numbers, "lora": lora_numbers, "attention": attention_numbers}
    for study in STUDIES:
        p, d = PREFIX[study], collected["studies"].get(study)
        flags[f"{p}Ran"] = d is not None
        flags[f"{p}Chosen"] = bool(d and d["chosen"])
        flags[f"{p}Bench"] = False
        if d is None:
            continue
        n, flags[f"{p}Bench"] = study_numbers(d, collected["bench"])
        macros |= {p + k: v for k, v in n.items()} | extra[study](d)
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
        raise UserError(INSTALL_HINT + alternative)
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
    proc = subprocess.run(cmd, cwd=out_dir, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        log = out_dir / "report.log"
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        # -file-line-error writes "./file.tex:LINE: message", then "l.LINE <the input up to the error>".
        at = next((i for i, l in enumerate(lines) if re.match(r"(\S+\.tex:\d+: |! )", l)), None)
        first = " ".join(l.strip() for l in lines[at:at + 2]) if at is not None else proc.stdout.strip()[-200:]
        raise UserError(f"latexmk failed ({first}); see {log}")
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


def parser():
    p = argparse.ArgumentParser(prog="python -m report.latex", description=__doc__.splitlines()[0])
    p.add_argument("--out", metavar="DIR", type=Path, default=Path("results"),
                   help="results folder (default %(default)s)")
    p.add_argument("--profile", metavar="NAME", default="smoke", help="profile to report on (default %(default)s)")
    add_arguments(p)
    return p


def main(argv=None) -> int:
    """`lowrank-bench report`: takes the CLI's parsed arguments, or an argv list when run on its own."""
    args = argv if isinstance(argv, argparse.Namespace) else parser().parse_args(argv)
    t0 = time.perf_counter()
    pdf = build_report(results_dir_of(args), args.build_dir)
    pages = page_count(args.build_dir)
    print(f"report: {pdf} ({pages} pages) built in {time.perf_counter() - t0:.1f}s")
    return 0

