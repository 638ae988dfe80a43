"""Build the LaTeX report, report/build/report.pdf, from the collected results with latexmk.

This module writes data only: numbers.tex (every number the text quotes, as \\newcommand macros, and one
\\if per study that ran), the collector's tables and figures, and copies of the source files that the listings
quote, with the line ranges of each class or def taken from the standard `ast` module (the code is parsed, never
imported). Prose, derivations and captions live
in report/templates/*.tex, so nothing in the PDF is typed by hand and an absent study only switches a flag.
"""
import ast
import importlib.util
import os
import re
import shutil
import time
from pathlib import Path, PurePosixPath

from lowrank_bench.core import proc
from lowrank_bench.core.io import UserError, atomic_write, confined, read_json, remove_leftovers, write_json
from lowrank_bench.core.schema import list_of, record, relative_path, validate
from lowrank_bench.core.spec import STUDIES
from lowrank_bench.report import fmt, prose
from lowrank_bench.report.collect import collect, read_collected
from lowrank_bench.report.results import default_bench, primary, same_model, speedup_cells
from lowrank_bench.report.tex import Tex, tex

TEMPLATES = Path(__file__).parent / "templates"
BUILD = Path("report", "build")  # from the current folder: the checkout's report/build where run from its root
# The build folder's list of what the report wrote there: the only files a build replaces or removes.
MANIFEST = "report-files.json"
_MANIFEST = record({"files": list_of(relative_path)})
# How pdflatex and latexmk say that a write failed for want of space (the log says no more).
DISK_FULL = ("fwrite() failed", "No space left on device", "Disk quota exceeded")
# What latexmk and pdflatex write beside report.tex.
LATEX_OUTPUTS = [f"report.{ext}" for ext in ("aux", "fdb_latexmk", "fls", "log", "out", "pdf", "toc")]
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
# Listings quoted in the report: macro stem -> `module:name` or `module:Class.method`, the module under
# lowrank_bench. Its file is found by import machinery without running it (the report imports no torch); a symbol
# that is not there is an error.
EXCERPTS = {"LowRankBase": "models.lowrank:_LowRank.from_linear", "LowRankLinear": "models.lowrank:LowRankLinear",
            "SVDLinear": "models.lowrank:SVDLinear", "LoRAForward": "models.lora:LoRALinear.forward",
            "LoRADelta": "models.lora:LoRALinear.delta_weight", "Attention": "models.transformer:SelfAttention",
            "Whiten": "models.whiten:whitened_svd"}
# pdflatex's listings cannot typeset multi-byte characters; the copies the listings read spell them in ASCII.
ASCII = {"×": "x", "≈": "~", "·": "*", "Σ": "S", "σ": "s", "α": "alpha", "√": "sqrt", "ᵀ": "^T", "—": "--",
         "–": "-", "→": "->", "←": "<-", "≤": "<=", "≥": ">=", "‖": "||", "⊙": "*", "²": "^2", "…": "...",
         "’": "'", "“": '"', "”": '"', "∑": "sum", "Δ": "Delta", "∈": "in"}


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
    spec = importlib.util.find_spec(f"lowrank_bench.{module}")
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
        atomic_write(confined(out_dir, f"code/{path.name}"), copy)
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
    base = d["baseline"]
    chosen = d["chosen"]
    c = chosen or {}
    ranks = sorted({r["rank"] for r in d["rows"] if r["rank"] is not None})
    meta = d["meta"]
    n = {"Device": meta.get("device", "--"), "DeviceName": meta.get("device_name") or "--",
         "Margin": _num(meta["margin_points"], "g"), "Rows": str(len(d["rows"])),
         "Ranks": ", ".join(map(str, ranks)) or "--", "Base": base["label"],
         "Chosen": c.get("label", "none"), "ChosenRank": str(c.get("rank") or "--"),
         "BaseTestAcc": _pct(base["test_acc"]), "BaseValAcc": _pct(base["val_acc"]),
         "ChosenTestAcc": _pct(c.get("test_acc")), "ChosenValAcc": _pct(c.get("val_acc")),
         "Seeds": str(base.get("n_seeds") or 1), "Rule": prose.decision_rule(d),
         "ChosenTestDiff": prose.chosen_test_diff(d),
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
            "Layers": ", ".join(dict.fromkeys(lay["layer"] for lay in layers)) or "--",
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
            "FullMem": _mib(full.get("peak_mem_bytes")),
            "MemRatio": _ratio(full.get("peak_mem_bytes"), c.get("peak_mem_bytes")),
            "ChosenCkptKiB": fmt.kib(c.get("checkpoint_bytes"), "--"),
            "FullCkptKiB": fmt.kib(full.get("checkpoint_bytes"), "--")}


@own_numbers("attention")
def attention_numbers(d, bench):
    c, base = d["chosen"] or {}, d["baseline"]
    return {"ChosenInit": c.get("init") or "--", "InitVerdict": prose.attention_inits(d),
            "EmbeddingVerdict": prose.attention_embedding(d), "BestVerdict": prose.attention_best(d),
            "BaseQKV": _int(base.get("qkv_params")), "ChosenQKV": _int(c.get("qkv_params")),
            "QKVRatio": _ratio(base.get("qkv_params"), c.get("qkv_params"), ".1f")}


def numbers_tex(collected, excerpts):
    """numbers.tex: \\newcommand per number, \\newif per study that ran, and the listings' line ranges. Every
    macro's value goes through `tex`: escaped, unless the code composed it as LaTeX (report/tex.py)."""
    macros = {"Profile": collected["profile"], "BenchFiles": str(len(collected["bench_files"])),
              "WhereLowRankPays": prose.where_low_rank_pays(speedup_cells("svd", primary(collected["bench"]))),
              "BenchFileNames": ", ".join(m["label"] for m in collected["machines"]) or "none",
              # every study's section, in the spec's order: templates named by the spec, not by the user's data
              "StudySections": Tex("".join(f"\\input{{{PurePosixPath(s.template).stem}}}" for s in STUDIES.values()))}
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
    for stem, (name, first, last) in excerpts.items():
        macros |= {f"Have{stem}": "", f"{stem}File": name, f"{stem}First": first, f"{stem}Last": last}
    lines = ["% Written by report/latex.py from the collected results; do not edit."]
    lines += [f"\\newcommand{{\\{k}}}{{{tex(v)}}}" for k, v in macros.items()]
    lines += [f"\\newif\\if{k}" + (f" \\{k}true" if on else "") for k, on in flags.items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- build

def _collected(results_dir, bench_files):
    """The collector's output, collected afresh: the report's tables come from the results as they are now, each
    read and checked, never from files already in the results folder. Benchmark files: those named, else those of
    the last collection (collected.json), else OUT/<profile>/bench.json."""
    prior = read_collected(results_dir)
    across_profiles = False
    if bench_files is None and prior:
        bench_files, across_profiles = [results_dir / p for p in prior["bench_files"]], prior.get("across_profiles")
    return collect(results_dir, default_bench(results_dir) if bench_files is None else bench_files,
                   bool(across_profiles))


def own_build_dir(out_dir, results_dir) -> list[str]:
    """The files an earlier build listed in `out_dir`'s manifest (none for a new or empty folder). A UserError when
    `out_dir` lies in the results folder or holds anything the report did not write: the build replaces and
    removes files there, and runs latexmk in it."""
    out, results = Path(out_dir).resolve(), Path(results_dir).resolve()
    if out == results or results in out.parents:
        raise UserError(f"--build-dir {out_dir} is inside the results folder {results_dir}; give a folder of its "
                        f"own (default {BUILD})")
    if not out.exists():
        return []
    if not out.is_dir():
        raise UserError(f"--build-dir {out_dir} is not a folder; give a new or empty folder, or an earlier build's")
    manifest = out / MANIFEST
    listed = validate(read_json(manifest), _MANIFEST, manifest, f"delete {out_dir} and build again")["files"] \
        if manifest.exists() and not manifest.is_symlink() else []
    files, folders = {*listed, MANIFEST}, {str(PurePosixPath(f).parent) for f in listed}
    for folder, subfolders, names in os.walk(out):
        for entry in sorted(subfolders) + sorted(names):
            path = Path(folder) / entry
            rel = path.relative_to(out).as_posix()
            ours = path.is_dir() and rel in folders if entry in subfolders else path.is_file() and rel in files
            if path.is_symlink() or not ours:
                raise UserError(f"--build-dir {out_dir} holds {rel}, which the report did not write; give a new or "
                                f"empty folder (or delete that one, if it is an earlier report build)")
    return listed


def _write_manifest(out_dir, files):
    write_json(confined(out_dir, MANIFEST), {"files": sorted(set(files))})


def require_latexmk(alternative="") -> str:
    """The path of latexmk, or a UserError with the line that installs TeX (and `alternative`, if given)."""
    latexmk = shutil.which("latexmk")
    if latexmk is None:
        raise UserError(f"latexmk not found: {INSTALL_HINT}{alternative}")
    return latexmk


def build_report(results_dir, out_dir=BUILD, bench_files=None, collected=None) -> Path:
    """Write the report's sources into `out_dir` and build `out_dir`/report.pdf with latexmk; return its path.
    `collected`: a collection this process just made of `results_dir` (else collected here).

    `out_dir` must be the report's own (`own_build_dir`); its manifest lists what the build wrote there."""
    latexmk = require_latexmk()
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    earlier = own_build_dir(out_dir, results_dir)
    collected = collected or _collected(results_dir, bench_files)
    for folder in ("", "tables", "figures", "code"):  # what a killed build left
        remove_leftovers(confined(out_dir, folder))
    for rel in earlier:  # an earlier build's files must not stand in for absent ones
        if rel.split("/")[0] in ("tables", "figures", "code"):
            confined(out_dir, rel).unlink(missing_ok=True)
    written = []
    for template in TEMPLATES.glob("*.tex"):
        atomic_write(confined(out_dir, template.name), template.read_text())
        written.append(template.name)
    for kind, ext in (("tables", "tex"), ("figures", "pdf")):
        for paths in collected[kind].values():
            src = results_dir / paths[ext]
            atomic_write(confined(out_dir, f"{kind}/{src.name}"), src.read_bytes())
            written.append(f"{kind}/{src.name}")
    excerpts = write_excerpts(out_dir)
    written += [f"code/{name}" for name, _, _ in excerpts.values()]
    atomic_write(confined(out_dir, "numbers.tex"), numbers_tex(collected, excerpts))
    written.append("numbers.tex")
    # Listed before latexmk runs, so that a build stopped halfway leaves a folder the next build still owns.
    _write_manifest(out_dir, [*written, *(f for f in earlier if (out_dir / f).is_file()), *LATEX_OUTPUTS])
    # -norc: no latexmkrc, wherever found, decides what runs. openin_any=p: TeX reads no file by an absolute path
    # or above the build folder, whatever a .tex file asks for.
    cmd = [latexmk, "-norc", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error", "report.tex"]
    try:
        rc, stdout = proc.run(cmd, cwd=out_dir, capture=True, env=os.environ | {"openin_any": "p"})
    finally:  # what latexmk and pdflatex wrote is the report's too
        _write_manifest(out_dir, [p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*")
                                  if p.is_file() and not p.is_symlink() and p.name != MANIFEST])
    if rc != 0:
        # latexmk's database would answer the next call with "Nothing to do" and repeat this error even after
        # the missing package is installed: forget it, so the next build starts from scratch.
        confined(out_dir, "report.fdb_latexmk").unlink(missing_ok=True)
        log = out_dir / "report.log"
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        full = next((l.strip() for l in [*lines, *stdout.splitlines()] if any(m in l for m in DISK_FULL)), None)
        if full:
            raise UserError(f"latexmk failed: the disk holding {out_dir} is full ({full}); free disk space or give "
                            f"another --build-dir, then build again")
        # -file-line-error writes "./file.tex:LINE: message", then "l.LINE <the input up to the error>".
        at = next((i for i, l in enumerate(lines) if re.match(r"(\S+\.tex:\d+: |! )", l)), None)
        first = " ".join(l.strip() for l in lines[at:at + 2]) if at is not None else stdout.strip()[-200:]
        hint = f"; {INSTALL_HINT}" if "not found" in first else ""
        raise UserError(f"latexmk failed ({first}); see {log}{hint}")
    overfull = off_the_page(out_dir / "report.log")
    if overfull:
        raise UserError(f"the report has content off the page: {overfull}; see {out_dir / 'report.log'}")
    return out_dir / "report.pdf"


def off_the_page(log):
    """The first "Overfull \\vbox" of a pdflatex log with the page it lands on ("Overfull \\vbox (257.7pt too
    high) on page 21"), or None. A page whose material is taller than the page prints below its edge, where no
    reader (and no text extraction) sees it, and LaTeX only warns; the page is the next one the log ships."""
    text = log.read_text(errors="replace") if log.exists() else ""
    m = re.search(r"Overfull \\vbox \(([\d.]+)pt too high\)", text)
    if m is None:
        return None
    page = re.search(r"\[(\d+)", text[m.end():])
    return f"Overfull \\vbox ({float(m[1]):.1f}pt too high)" + (f" on page {page[1]}" if page else "")


def page_count(out_dir):
    log = Path(out_dir) / "report.log"
    m = re.search(r"Output written on report\.pdf \((\d+) pages?", log.read_text(errors="replace")) \
        if log.exists() else None
    return int(m.group(1)) if m else None


def add_arguments(parser):
    """The report's own option; --out and --profile come from the CLI's common options."""
    parser.add_argument("--build-dir", metavar="DIR", type=Path, default=BUILD,
                        help="where the .tex sources, figures and report.pdf go (default report/build): a new or "
                             "empty folder, or an earlier report build; never inside the results folder")


def main(results_dir, build_dir=BUILD, collected=None) -> int:
    """`lowrank-bench report`: build the PDF for the results in `results_dir` and say where it is."""
    t0 = time.perf_counter()
    pdf = build_report(results_dir, build_dir, collected=collected)
    print(f"report: {pdf} ({page_count(build_dir)} pages) built in {time.perf_counter() - t0:.1f}s")
    return 0
