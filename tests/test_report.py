"""The LaTeX report: numbers as macros, listings located in the real sources, and a real latexmk build whose
PDF, read back with pdftotext, has every section and at least one figure per study."""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lowrank_bench.report import latex, prose
from lowrank_bench.report.collect import collect
from lowrank_bench.report.results import Speedup
from lowrank_bench.report.tex import Tex, escape, tex
from test_collect import BENCH, write_results  # tests/ is on sys.path: pytest's default rootdir-less import
from lowrank_bench.core.io import UserError

SECTIONS = ["Setup", "SVD of MLP weights", "LoRA", "Low-rank attention", "Conclusion"]
REPO = Path(__file__).resolve().parents[1]
needs_latexmk = pytest.mark.needs("latexmk", "pdftotext")  # the root conftest.py: skips, or fails under CI


def pdf_text(pdf):
    return subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout


def sections(text, titles):
    """{title: the text from its heading line to the next title's}, in order; a missing title fails."""
    lines, starts = text.splitlines(), []
    for title in titles:
        after = starts[-1] + 1 if starts else 0
        hits = [i for i in range(after, len(lines)) if lines[i].strip() == title]
        assert hits, f"section title {title!r} not found in the PDF text"
        starts.append(hits[0])
    bounds = starts + [len(lines)]
    return {t: "\n".join(lines[bounds[i]:bounds[i + 1]]) for i, t in enumerate(titles)}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    results = write_results(tmp_path_factory.mktemp("results") / "smoke")
    head = json.loads(BENCH.read_text())
    for b in head["benchmarks"]:
        b["stats"]["median"] *= 1.1
    (results / "head.json").write_text(json.dumps(head))
    out = tmp_path_factory.mktemp("build")
    pdf = latex.build_report(results, out, bench_files=[results / "bench.json", results / "head.json"])
    return pdf, out, pdf_text(pdf)


@needs_latexmk
def test_pdf_has_every_section_and_a_figure_per_study(built):
    pdf, out, text = built
    assert pdf == out / "report.pdf" and pdf.read_bytes()[:5] == b"%PDF-"
    parts = sections(text, SECTIONS + ["Benchmark comparison"])
    for title in ("SVD of MLP weights", "LoRA", "Low-rank attention"):
        captions = re.findall(r"^Figure \d+:", parts[title], flags=re.M)
        assert len(captions) >= 6, f"{title}: only {len(captions)} figure captions"
        assert re.search(r"^Table \d+:", parts[title], flags=re.M), title
        assert re.search(r"^Listing \d+:", parts[title], flags=re.M), title
    assert "lowrank-bench" in text.split("Abstract")[0]  # the author line


@needs_latexmk
def test_numbers_in_the_pdf_come_from_the_results(built):
    _, out, text = built
    svd = sections(text, SECTIONS)["SVD of MLP weights"]
    assert "k = 128" in svd and "98.65 % test accuracy (mean over 2 seeds" in svd.replace("\n", " ")
    assert "Here δ = 0.5 points, and every model is paired with dense. k = 128 is chosen: k = 128 is within δ of " \
           "dense, and the sequence ran out undecided at k = 32" in svd.replace("\n", " ")
    assert "r = 4" in sections(text, SECTIONS)["LoRA"]
    attention = sections(text, SECTIONS)["Low-rank attention"].replace("\n", " ")
    assert "trained-svd-k16" in attention and "a speed-up of" in attention  # chosen row found among the k benchmarks
    assert "With the pre-defined word-piece table of all-MiniLM-L6-v2 (frozen, projected" in attention
    assert "minilm-random-svd-k16" in attention  # the variant's rows are in the results table
    assert "\\newcommand{\\SvdChosenRank}{128}" in (out / "numbers.tex").read_text()
    # Listings quote the real source at the lines where the class starts.
    first = int(re.search(r"\\newcommand\{\\LowRankLinearFirst\}\{(\d+)\}", (out / "numbers.tex").read_text())[1])
    source = (REPO / "models" / "lowrank.py").read_text().splitlines()
    assert source[first - 1].startswith("class LowRankLinear")
    assert (out / "figures" / "svd_accuracy.pdf").exists() and (out / "tables" / "svd_comparison.tex").exists()


def fake_latexmk(tmp_path, monkeypatch, body="open('report.pdf', 'w').write('%PDF-')\n"):
    """latexmk replaced by a Python script with `body` (run in the build folder; default: write report.pdf): for
    tests of what the report writes, not of TeX. Returns the file its command line is appended to."""
    fake, calls = tmp_path / "bin" / "latexmk", tmp_path / "bin" / "calls"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text(f"#!{sys.executable}\nimport sys\nopen({str(calls)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
                    + body)
    fake.chmod(0o755)
    monkeypatch.setattr(latex.shutil, "which", lambda name: str(fake))
    return calls


@needs_latexmk
def test_absent_studies_say_they_were_not_run(tmp_path, monkeypatch):
    results = write_results(tmp_path / "smoke", studies=("svd", "lora"), bench=False)
    with monkeypatch.context() as m:  # an earlier build, with LoRA
        fake_latexmk(tmp_path, m)
        latex.build_report(results, tmp_path / "build")
    stale = tmp_path / "build" / "figures" / "lora_accuracy.pdf"
    assert stale.exists()
    (results / "lora" / "summary.json").unlink()
    pdf = latex.build_report(results, tmp_path / "build")
    parts = sections(pdf_text(pdf), SECTIONS)
    for title in ("LoRA", "Low-rank attention"):
        assert "This study was not run for profile smoke" in parts[title].replace("\n", " ")
        assert not re.search(r"^Figure \d+:", parts[title], flags=re.M)
    assert re.search(r"^Figure \d+:", parts["SVD of MLP weights"], flags=re.M)
    assert "not run for this profile" in parts["Conclusion"]
    assert not stale.exists()


def on_the_page(aux, text):
    """Every section, subsection and paragraph title and every table caption that LaTeX typeset (its .aux lists
    them), each checked against the PDF's text up to its first formula or command; the ones not found. pdftotext
    sees only what lies on a page, so a title or caption printed below the page edge is missing."""
    flat = lambda t: re.sub(r"\W", "", t)  # noqa: E731  letters and digits: no line breaks, hyphens or quotes
    found, missing = [], []
    for kind, entry in re.findall(r"\\@writefile\{(toc|lot)\}\{\\contentsline \{\w+\}\{(.*)\}\{\d+\}\{", aux):
        number = re.match(r"\\numberline \{([\d.]+)\}", entry)
        title = re.sub(r"\\nobreakspace \{\}|\\ignorespaces |^\{", " ", entry[number.end():] if number else entry)
        words = re.split(r"[$\\{]", title.strip())[0]
        said = (f"Table {number[1]}:" if kind == "lot" else "") + words
        (found if flat(said) in flat(text) else missing).append(said)
    return found, missing


@needs_latexmk
def test_every_title_and_table_caption_is_on_the_page(built):
    """A smoke-sized report: nothing that LaTeX typeset is below a page edge (the build also fails on any
    Overfull \\vbox)."""
    _, out, text = built
    found, missing = on_the_page((out / "report.aux").read_text(), text)
    assert not missing
    assert {"Where low rank pays", "Conclusion", "The decision rule."} <= set(found)
    assert len([t for t in found if t.startswith("Table ")]) >= 15  # results, verdicts, latency, maps, comparisons


@needs_latexmk
def test_content_off_the_page_fails_the_build(tmp_path, monkeypatch):
    results = write_results(tmp_path / "smoke", studies=("svd",), bench=False)
    one_line_template(tmp_path, monkeypatch, "Text.\\clearpage\\noindent\\rule{1pt}{1.5\\textheight}")
    with pytest.raises(UserError, match=r"content off the page: Overfull \\vbox \(275\.0pt too high\) on page 3; "
                                        r"see .*report\.log") as err:  # the last page, the rule's: half a page high
        latex.build_report(results, tmp_path / "build")
    assert "\n" not in str(err.value)
    assert "Pages:           3\n" in subprocess.run(["pdfinfo", str(tmp_path / "build" / "report.pdf")],
                                                   capture_output=True, text=True, check=True).stdout


@needs_latexmk
def test_a_longtable_between_floats_stays_on_the_page(tmp_path, monkeypatch):
    """latex3/latex2e#158: a float placed at the top of a page, a longtable, then another float printed the rest of
    the page below its edge (120 pt here; the smoke report lost Table 11's last row, a paragraph and Table 12 that
    way); with the report's preamble it stays on the page."""
    words = "Words that fill a page, one line after another, as a report's paragraphs do. " * 5 + "\n\n"
    body = ("\\begin{figure}\\centering\\rule{2cm}{5cm}\\caption{A figure first.}\\end{figure}\n"
            "\\begin{longtable}{ll}\\caption{A longtable that fits.}\\\\ a & b \\\\ \\end{longtable}\n"
            "\\begin{figure}\\centering\\rule{2cm}{5cm}\\caption{A figure after it.}\\end{figure}\n"
            + words * 8 + "\\section{After the table}\n" + words * 3)
    results = write_results(tmp_path / "smoke", studies=("svd",), bench=False)
    real = (latex.TEMPLATES / "report.tex").read_text()
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "report.tex").write_text(real[:real.index("\\begin{document}")]
                                                       + f"\\begin{{document}}\n{body}\\end{{document}}\n")
    monkeypatch.setattr(latex, "TEMPLATES", tmp_path / "templates")  # the report's own preamble
    pdf = latex.build_report(results, tmp_path / "build")
    found, missing = on_the_page((pdf.parent / "report.aux").read_text(), pdf_text(pdf))
    assert not missing and {"After the table", "Table 1:A longtable that fits."} <= set(found)


def test_off_the_page_reads_the_first_overfull_vbox_and_its_page(tmp_path):
    log = tmp_path / "report.log"
    log.write_text("Overfull \\hbox (3.1pt too wide) in paragraph\n(./conclusion.tex\n"
                   "Overfull \\vbox (257.6971pt too high) has occurred while \\output is active []\n\n\n"
                   "[21 <./figures/a.pdf>] [22]\nOverfull \\vbox (1.0pt too high) detected at line 9\n[23]\n")
    assert latex.off_the_page(log) == "Overfull \\vbox (257.7pt too high) on page 21"
    log.write_text("Overfull \\hbox (3.1pt too wide) in paragraph\n[1]\n")
    assert latex.off_the_page(log) is None


def test_missing_latexmk_is_a_user_error_naming_the_packages(tmp_path, monkeypatch):
    monkeypatch.setattr(latex.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="apt-get install --no-install-recommends latexmk lmodern"):
        latex.build_report(tmp_path, tmp_path / "build")


def test_every_package_the_report_uses_is_installed_by_ci_and_named_in_the_hint():
    """A clean machine gets every package the preamble loads: lmodern is only recommended by texlive-base."""
    used = {name.strip() for t in latex.TEMPLATES.glob("*.tex")
            for names in re.findall(r"\\usepackage(?:\[[^]]*\])?\{([^}]*)\}", t.read_text())
            for name in names.split(",")}
    assert "lmodern" in used and used <= latex.TEX_PACKAGES.keys(), used - latex.TEX_PACKAGES.keys()
    ci = (REPO / ".ci" / "run").read_text().replace("\\\n", " ")
    install = next(line for line in ci.splitlines() if "apt-get install" in line).split()
    for debian in latex.DEBIAN_PACKAGES:
        assert debian in install and debian in latex.INSTALL_HINT


def test_a_failed_build_is_retried_from_scratch(tmp_path, monkeypatch):
    """latexmk's database must not answer the next build with 'Nothing to do' and the old error."""
    results = write_results(tmp_path / "smoke", studies=("svd",), bench=False)
    fake_latexmk(tmp_path, monkeypatch, "open('report.fdb_latexmk', 'w').write('# Fdb version 4')\n"
                 "open('report.log', 'w').write(\"./report.tex:7: LaTeX Error: File `lmodern.sty' not found.\")\n"
                 "sys.exit(12)\n")
    build = tmp_path / "build"
    with pytest.raises(UserError, match="lmodern.sty' not found.*apt-get install --no-install-recommends"):
        latex.build_report(results, build)
    assert not (build / "report.fdb_latexmk").exists()


def one_line_template(tmp_path, monkeypatch, body):
    """The report's templates replaced by one report.tex whose document is `body`."""
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "report.tex").write_text(f"\\documentclass{{article}}\\begin{{document}}{body}\\end{{document}}\n")
    monkeypatch.setattr(latex, "TEMPLATES", templates)


@needs_latexmk
def test_a_latex_error_is_one_user_error_pointing_at_the_log(tmp_path, monkeypatch):
    results = write_results(tmp_path / "smoke", studies=("svd",), bench=False)
    one_line_template(tmp_path, monkeypatch, "\\nosuchmacro")
    with pytest.raises(UserError, match=r"latexmk failed \(.*Undefined control sequence.*report\.log") as err:
        latex.build_report(results, tmp_path / "build")
    assert "\n" not in str(err.value)


def test_locate_finds_a_class_or_one_method():
    lines = ["import x", "", "class A(B):", '    """Doc."""', "", "    def forward(self, x):", "        return x",
             "", "    @property", "    def other(self):", "        return 1", "", "", "def after():", "    pass"]
    source = "\n".join(lines)
    assert latex.locate(source, "A") == (3, 11)
    assert latex.locate(source, "A", "forward") == (6, 7)
    assert latex.locate(source, "A", "after") is None  # a top-level def is not the class's method
    assert latex.locate(source, "Attention") is None
    assert latex.locate(source, "after") == (14, 15)  # a top-level function


def test_excerpts_come_from_the_real_sources_and_a_missing_symbol_fails_loudly(tmp_path, monkeypatch):
    found = latex.write_excerpts(tmp_path / "a")
    assert found.keys() == latex.EXCERPTS.keys()
    name, first, last = found["LowRankLinear"]
    copy = (tmp_path / "a" / "code" / name).read_text().splitlines()
    assert copy[first - 1].startswith("class LowRankLinear") and first < last
    assert all(ord(c) < 128 for line in copy for c in line)  # pdflatex's listings need ASCII
    assert len(copy) == len((REPO / "models" / "lowrank.py").read_text().splitlines())
    monkeypatch.setitem(latex.EXCERPTS, "Gone", "models.lowrank:RenamedLinear")
    with pytest.raises(LookupError, match="models.lowrank:RenamedLinear"):
        latex.write_excerpts(tmp_path / "b")


def test_numbers_tex_has_a_macro_per_number_and_a_flag_per_study(tmp_path):
    results = write_results(tmp_path / "smoke", studies=("svd", "lora"))
    tex = latex.numbers_tex(collect(results, [results / "bench.json"]), {"LowRankLinear": ("lowrank.py", 37, 65)})
    assert "\\newcommand{\\SvdChosenRank}{128}" in tex and "\\newcommand{\\LoraChosenRank}{4}" in tex
    assert "\\newcommand{\\SvdChosenTestAcc}{98.65}" in tex and "\\newcommand{\\SvdChosenTruncAcc}{98.10}" in tex
    assert "\\newcommand{\\SvdBaseParams}{1,579,530}" in tex
    assert "\\newif\\ifSvdRan \\SvdRantrue" in tex and "\\newif\\ifLoraRan \\LoraRantrue" in tex
    assert re.search(r"\\newif\\ifAttnRan$", tex, flags=re.M)  # declared, left false
    assert "\\newcommand{\\LowRankLinearFirst}{37}" in tex and "\\newcommand{\\HaveLowRankLinear}{}" in tex
    bench = json.loads(BENCH.read_text())["benchmarks"]
    med = lambda suffix: next(b for b in bench if b["fullname"].endswith(suffix))["stats"]["median"]
    speedup = med("test_hoda_svd.py::test_infer[dense-b256]") / med("test_hoda_svd.py::test_infer[k128-b256]")
    assert f"\\newcommand{{\\SvdSpeedup}}{{{speedup:.2f}}}" in tex


def test_tex_escape():
    assert escape("a_b & 50% #1 {x} ~^\\") == \
        r"a\_b \& 50\% \#1 \{x\} \textasciitilde{}\textasciicircum{}\textbackslash{}"
    assert escape("98.65 ± 2.54\n\x00é") == r"98.65 \ensuremath{\pm} 2.54  ?"
    assert tex(Tex("$\\pm$")) == "$\\pm$" and tex("$\\pm$") == r"\$\textbackslash{}pm\$"


@pytest.mark.parametrize("cells, says, never", [
    ({(4, 1): 1.2, (64, 1): 0.9, (256, 1): 0.5, (4, 256): 2.0, (64, 256): 1.4, (256, 256): 0.8,
      (4, 8192): 3.0, (64, 8192): 1.9, (256, 8192): 0.9},
     "In bf16 compiled, rank <= 4 pays at batch 1; rank <= 64 pays from batch 256 up (best 3.00x at rank 4, "
     "batch 8192; worst 0.50x at rank 256, batch 1).", "no rank pays"),
    ({(4, 1): 0.8, (64, 1): 0.6, (256, 1): 0.4, (4, 256): 0.9, (64, 256): 0.7, (256, 256): 0.5,
      (4, 8192): 0.95, (64, 8192): 0.9, (256, 8192): 0.6},
     "In bf16 compiled, no rank pays at any batch size measured (best 0.95x at rank 4, batch 8192; worst 0.40x "
     "at rank 256, batch 1).", "rank <="),
])
def test_the_speedup_sentence_follows_the_numbers(cells, says, never):
    """Opposite maps give opposite sentences: the words come from the numbers, not from a template."""
    text = prose.speedup_sentence("bf16", "compiled", cells)
    assert text == says and never not in text


def test_speedup_sentence_names_a_non_prefix_set_and_every_rank():
    assert "ranks 64, 256 pay at batch 1" in prose.speedup_sentence("fp32", "eager", {(4, 1): 0.9, (64, 1): 1.1,
                                                                                       (256, 1): 1.3})
    assert "every rank measured pays (4 to 64) at every batch size measured" in prose.speedup_sentence(
        "fp32", "eager", {(4, 1): 2, (64, 1): 1.1, (4, 8): 3, (64, 8): 1.5})


def test_a_speedup_whose_interval_holds_one_is_not_said_to_pay():
    """Paired speedups carry bounds: only a lower bound above 1 pays, and a cell whose bounds hold 1 is named."""
    cells = {(4, 1): Speedup(1.30, 1.20, 1.40), (64, 1): Speedup(1.05, 0.97, 1.12), (256, 1): Speedup(0.6, 0.5, 0.7)}
    text = prose.speedup_sentence("fp32", "eager", cells)
    assert "rank <= 4 pays at batch 1" in text
    assert "Not told apart from break-even (their interval holds 1): rank 64 at batch 1." in text
    # The sentence goes into LaTeX as composed text: a bare % would comment out the rest of its macro.
    assert "%" not in prose.speedup_text({("fp32", "eager"): cells})
    cells[64, 1] = Speedup(1.05, 1.01, 1.12)
    assert "rank <= 64 pays" in prose.speedup_sentence("fp32", "eager", cells)


# ---------------------------------------------------------------- results as untrusted input

INJECTED = "\\input{/etc/hostname}"


def edit_json(path, change):
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def _svd_extras(summary, **retrain):
    """What the SVD study writes beside its rows (training/studies/svd.py): the augmentation kept and how
    retraining ran."""
    summary["augmentation"] = {"chosen": "none"}
    summary["retrain"] = {"epochs": 2, "lr": 3e-4, "warmup_frac": 0.0, "distill": 0.0,
                          "distill_temperature": 2.0} | retrain


@pytest.mark.parametrize("file, change, field", [
    ("svd/summary.json", lambda s: s["augmentation"].update(chosen=f"x) {INJECTED} ("), "augmentation.chosen"),
    ("svd/summary.json", lambda s: s["retrain"].update(epochs=INJECTED), "retrain.epochs"),
    ("svd/summary.json", lambda s: [r.update(n_seeds=INJECTED) for r in s["rows"]], "rows[0].n_seeds"),
    ("svd/summary.json", lambda s: s["rows"][1].update(rank=INJECTED), "rows[1].rank"),
    ("attention/summary.json", lambda s: s["chosen_by_embedding"]["minilm"].update(
        {INJECTED: {"method": "svd", "rank": 16, "init": "random", "embedding": "minilm"}}),
     "chosen_by_embedding.minilm"),
    ("bench.json", lambda b: [x["extra_info"].update(mode=f"eager{INJECTED}") for x in b["benchmarks"]],
     "extra_info.mode"),
    ("bench.json", lambda b: [x["extra_info"].update(dtype=INJECTED) for x in b["benchmarks"]], "extra_info.dtype"),
], ids=["augmentation", "epochs", "n_seeds", "rank", "init-key", "mode", "dtype"])
def test_latex_from_a_results_field_is_refused_naming_it(tmp_path, file, change, field):
    """What a results folder or a benchmark file holds where the report expects a number, a name or one of a few
    words is refused when read, one line naming the file and the field: it never reaches the LaTeX."""
    results = write_results(tmp_path / "smoke", studies=("svd", "attention"))
    edit_json(results / "svd" / "summary.json", _svd_extras)
    edit_json(results / file, change)
    try:
        collected = collect(results, [results / "bench.json"])
    except UserError as e:
        assert str(e).startswith(f"{results / file}: ") and field in str(e) and "\n" not in str(e)
    else:
        sources = latex.numbers_tex(collected, {}) + "".join(
            (results / paths["tex"]).read_text() for paths in collected["tables"].values())
        assert "\\input" not in sources
        pytest.fail(f"{file}: {field} holding LaTeX was accepted")


def test_free_text_from_results_reaches_the_latex_escaped(tmp_path):
    """Names for people (a CPU, a layer, a benchmark file) are printed as they are: escaped, in every macro and table
    cell."""
    results = write_results(tmp_path / "smoke", studies=("svd",))
    edit_json(results / "svd" / "summary.json",
              lambda s: s.update(device_name=INJECTED, layers=[{**lay, "layer": INJECTED} for lay in s["layers"]]))
    edit_json(results / "bench.json", lambda b: b["machine_info"].update(node=INJECTED, cpu={"brand_raw": INJECTED}))
    other = tmp_path / "x_{y}#%.json"
    other.write_text((results / "bench.json").read_text())
    collected = collect(results, [results / "bench.json", other])
    sources = latex.numbers_tex(collected, {}) + "".join(
        (results / paths["tex"]).read_text() for paths in collected["tables"].values())
    assert INJECTED not in sources and "{y}#%" not in sources  # the report's own \\input of its sections aside
    assert "\\newcommand{\\SvdDeviceName}{\\textbackslash{}input\\{/etc/hostname\\}}" in sources
    assert sources.count("\\textbackslash{}input\\{/etc/hostname\\}") >= 4  # device, layers, node, CPU
    assert "x\\_\\{y\\}\\#\\%" in sources  # the second file's label in the comparison table and the file list


def string_fields(doc, at=()):
    """The key path of every string value in a parsed JSON document."""
    if isinstance(doc, str):
        yield at
    elif isinstance(doc, (dict, list)):
        for k, v in doc.items() if isinstance(doc, dict) else enumerate(doc):
            yield from string_fields(v, (*at, k))


def _set(doc, at, value):
    for k in at[:-1]:
        doc = doc[k]
    doc[at[-1]] = value


def json_files(results):
    """Every JSON file of a results folder, each with its kind's reader."""
    from lowrank_bench.core.benchjson import load_bench
    from lowrank_bench.core.summary import read_sidecar, read_summary
    from lowrank_bench.report.collect import read_collected
    for study in ("svd", "lora", "attention"):
        if (results / study / "summary.json").exists():
            yield results / study / "summary.json", lambda p, s=study: read_summary(p, s)
            for sidecar in sorted((results / study).glob("seed*/*.json")):
                yield sidecar, lambda p, s=study: read_sidecar(p, s)
    yield results / "bench.json", load_bench
    yield results / "collected.json", lambda p: read_collected(p.parent)


def inject_every_string(results, payload):
    """Put `payload` in every string field of every JSON file of `results` where that file's reader accepts it
    (the fields of one key path at once, whatever the list index); return the (file, key path) refused."""
    refused = []
    for path, read in json_files(results):
        doc = json.loads(path.read_text())
        groups = {}
        for at in string_fields(doc):
            groups.setdefault(tuple("*" if isinstance(k, int) else k for k in at), []).append(at)
        for group, fields in groups.items():
            trial = json.loads(json.dumps(doc))
            for at in fields:
                _set(trial, at, payload)
            path.write_text(json.dumps(trial))
            try:
                read(path)
                doc = trial
            except UserError as e:
                assert str(e).startswith(f"{path}: ") and "\n" not in str(e)
                refused.append((path.relative_to(results), group))
        path.write_text(json.dumps(doc))
    return refused


@pytest.fixture(scope="module")
def injected(tmp_path_factory):
    """A report built from fixture results whose every string field that the readers accept holds an \\input of a
    private file."""
    tmp = tmp_path_factory.mktemp("injected")
    (tmp / "secret.tex").write_text("SECRETMARKER\n")
    results = write_results(tmp / "smoke")
    collect(results, [results / "bench.json"])
    payload = f"\\input{{{tmp / 'secret'}}}"
    refused = inject_every_string(results, payload)
    return tmp, payload, refused, latex.build_report(results, tmp / "build")


def test_every_string_field_of_the_results_is_refused_or_printed_literally(injected):
    tmp, payload, refused, pdf = injected
    assert (Path("svd/summary.json"), ("rows", "*", "method")) in refused  # one of a few words: refused
    text = pdf_text(pdf)
    assert "SECRETMARKER" not in text
    assert text.count(payload) >= 3  # e.g. the CPU, the node and the device name, printed as they are
    for source in (tmp / "build").rglob("*.tex"):
        assert f"\\input{{{tmp / 'secret'}}}" not in source.read_text(), source


def test_latexmk_reads_no_rc_file(tmp_path, monkeypatch):
    """No latexmkrc (the user's, the system's, one in the build folder) decides what the build runs."""
    results = write_results(tmp_path / "smoke", studies=("svd",), bench=False)
    one_line_template(tmp_path, monkeypatch, "x")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".latexmkrc").write_text(f"open(my $f, '>', '{tmp_path / 'rc-was-read'}'); close $f;\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    assert latex.build_report(results, tmp_path / "build").exists()
    assert not (tmp_path / "rc-was-read").exists()


def test_tables_in_the_results_folder_never_stand_in_for_the_report(tmp_path, monkeypatch):
    """A tampered table with a fresh collected.json beside it: the report writes its tables from the results."""
    results = write_results(tmp_path / "smoke", studies=("svd",))
    collect(results, [results / "bench.json"])
    (results / "tables" / "svd_results.tex").write_text(INJECTED + "\n")
    later = time.time() + 3600
    os.utime(results / "collected.json", (later, later))
    fake_latexmk(tmp_path, monkeypatch)
    latex.build_report(results, tmp_path / "build")
    table = (tmp_path / "build" / "tables" / "svd_results.tex").read_text()
    assert "\\input" not in table and "k128" in table


def test_a_copied_results_folder_reports_its_own_numbers(tmp_path, monkeypatch):
    original = write_results(tmp_path / "a" / "smoke", studies=("svd",))
    collect(original, [original / "bench.json"])
    copy = tmp_path / "b" / "smoke"
    shutil.copytree(original, copy)
    edit_json(original / "svd" / "summary.json", lambda s: s["rows"][0].update(test_acc=0.1234))
    collect(original, [original / "bench.json"])  # the original changes after the copy
    fake_latexmk(tmp_path, monkeypatch)
    latex.build_report(copy, tmp_path / "build")
    table = (tmp_path / "build" / "tables" / "svd_results.tex").read_text()
    assert "12.34" not in table and "98.70" in table
    assert "\\newcommand{\\SvdBaseTestAcc}{98.70}" in (tmp_path / "build" / "numbers.tex").read_text()
    stored = json.loads((copy / "collected.json").read_text())
    assert stored["bench_files"] == ["bench.json"] and stored["machines"][0]["file"] == "bench.json"
    assert {p for kind in ("tables", "figures") for paths in stored[kind].values() for p in paths.values()} == \
        {f"{kind}/{Path(p).name}" for kind in ("tables", "figures") for paths in stored[kind].values()
         for p in paths.values()}


@pytest.mark.parametrize("foreign", ["notes.txt", "code/mine.py", "figures/keep.pdf", "latexmkrc"])
def test_a_build_dir_holding_anything_else_is_refused_and_left_alone(tmp_path, monkeypatch, capsys, foreign):
    results = write_results(tmp_path / "smoke", studies=("svd",), bench=False)
    build = tmp_path / "mine"
    (build / foreign).parent.mkdir(parents=True, exist_ok=True)
    (build / foreign).write_text("mine")
    calls = fake_latexmk(tmp_path, monkeypatch)
    before = sorted(p.relative_to(build) for p in build.rglob("*"))
    first = foreign.split("/")[0]  # a folder the report did not make is named as a whole
    with pytest.raises(UserError, match=f"--build-dir {build} holds {first}, which the report did not write"):
        latex.build_report(results, build)
    assert sorted(p.relative_to(build) for p in build.rglob("*")) == before and (build / foreign).read_text() == "mine"
    assert not calls.exists()
    from lowrank_bench import cli
    rc = cli.main(["report", "--profile", "smoke", "--out", str(tmp_path), "--build-dir", str(build)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and f"holds {first}," in err


def test_an_earlier_build_is_the_reports_own_until_something_else_lands_there(tmp_path, monkeypatch):
    results = write_results(tmp_path / "smoke", studies=("svd",), bench=False)
    calls = fake_latexmk(tmp_path, monkeypatch, "open('report.pdf', 'w').write('%PDF-')\n"
                         "open('report.aux', 'w').write('')\n")
    build = tmp_path / "build"
    latex.build_report(results, build)
    latex.build_report(results, build)  # what the first build and latexmk wrote is listed: built again
    assert calls.read_text().splitlines()[0].split()[:2] == ["-norc", "-pdf"]
    (build / "figures" / "extra.png").write_bytes(b"png")
    with pytest.raises(UserError, match="holds figures/extra.png, which the report did not write"):
        latex.build_report(results, build)


@pytest.mark.parametrize("inside", ["", "build", "tables"])
def test_a_build_dir_in_the_results_folder_is_refused(tmp_path, monkeypatch, inside):
    results = write_results(tmp_path / "smoke", studies=("svd",))
    collect(results, [results / "bench.json"])
    tables = sorted((results / "tables").iterdir())
    fake_latexmk(tmp_path, monkeypatch)
    with pytest.raises(UserError, match="is inside the results folder"):
        latex.build_report(results, results / inside)
    assert sorted((results / "tables").iterdir()) == tables and (results / "figures").is_dir()


@pytest.mark.parametrize("change, field", [
    (lambda s: s["rows"][0].update(checkpoint="../../elsewhere/dense"), "rows[0].checkpoint"),
    (lambda s: s.update(profile="../smoke"), "profile"),
    (lambda s: s["layers"][0].update(rank=True), "layers[0].rank"),
    (lambda s: s["rows"][2].update(test_acc=1.5), "rows[2].test_acc"),
    (lambda s: s.update(chosen_by_embedding={"a\nb": {}}), "chosen_by_embedding.'a\\nb'"),
])
def test_a_summary_field_out_of_its_schema_is_one_line(tmp_path, change, field):
    results = write_results(tmp_path / "smoke", studies=("svd",), bench=False)
    edit_json(results / "svd" / "summary.json", change)
    with pytest.raises(UserError, match=re.escape(f"{results / 'svd' / 'summary.json'}: {field}: ")) as e:
        collect(results, [])
    assert "\n" not in str(e.value)


def test_a_sidecar_and_collected_json_are_read_against_their_schema(tmp_path):
    results = write_results(tmp_path / "smoke", studies=("svd",), bench=False)
    sidecar = results / "svd" / "seed0" / "dense.json"
    edit_json(sidecar, lambda m: m.update(confusion=[[1, 2], [3]]))
    with pytest.raises(UserError, match=re.escape(f"{sidecar}: confusion: ")):
        collect(results, [])
    edit_json(sidecar, lambda m: m.update(confusion=None, history=[{"epoch": "1"}]))
    with pytest.raises(UserError, match=re.escape(f"{sidecar}: history[0].epoch: ")):
        collect(results, [])
    edit_json(sidecar, lambda m: m.update(history=[]))
    collect(results, [])
    edit_json(results / "collected.json", lambda c: c.update(bench_files=["../../elsewhere.json"]))
    with pytest.raises(UserError, match=re.escape(f"{results / 'collected.json'}: bench_files[0]: ")):
        latex.build_report(results, tmp_path / "build")
