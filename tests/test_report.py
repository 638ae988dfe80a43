"""The LaTeX report: numbers as macros, listings located in the real sources, and a real latexmk build whose
PDF, read back with pdftotext, has every section and at least one figure per study."""
import json
import re
import shutil
import subprocess
import sys

import pytest

from report import latex, prose
from report.collect import collect
from test_collect import BENCH, write_results  # tests/ is on sys.path: pytest's default rootdir-less import
from core.io import UserError

SECTIONS = ["Setup", "SVD of MLP weights", "LoRA", "Low-rank attention", "Conclusion"]
needs_latexmk = pytest.mark.skipif(shutil.which("latexmk") is None,
                                   reason="latexmk not installed (apt-get install latexmk texlive-latex-extra ...)")


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
    if shutil.which("latexmk") is None:
        pytest.skip("latexmk not installed (apt-get install latexmk texlive-latex-extra ...)")
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
    assert "k = 128" in svd and "98.65 ± 2.54 % test accuracy (mean over 2 seeds" in svd.replace("\n", " ")
    assert "The rule: the smallest rank whose mean validation accuracy over the seeds is within 0.5 points" in \
        svd.replace("\n", " ")
    assert "r = 4" in sections(text, SECTIONS)["LoRA"]
    attention = sections(text, SECTIONS)["Low-rank attention"].replace("\n", " ")
    assert "trained-svd-k16" in attention and "a speed-up of" in attention  # chosen row found among the k benchmarks
    assert "With the pre-defined word-piece table of all-MiniLM-L6-v2 (frozen, projected" in attention
    assert "minilm-random-svd-k16" in attention  # the variant's rows are in the results table
    assert "\\newcommand{\\SvdChosenRank}{128}" in (out / "numbers.tex").read_text()
    # Listings quote the real source at the lines where the class starts.
    first = int(re.search(r"\\newcommand\{\\LowRankLinearFirst\}\{(\d+)\}", (out / "numbers.tex").read_text())[1])
    source = (latex.ROOT / "models" / "lowrank.py").read_text().splitlines()
    assert source[first - 1].startswith("class LowRankLinear")
    assert (out / "figures" / "svd_accuracy.pdf").exists() and (out / "tables" / "svd_comparison.tex").exists()


@needs_latexmk
def test_absent_studies_say_they_were_not_run(tmp_path):
    results = write_results(tmp_path / "smoke", studies=("svd",), bench=False)
    stale = tmp_path / "build" / "figures" / "lora_accuracy.pdf"  # left by an earlier build with LoRA
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"%PDF-")
    pdf = latex.build_report(results, tmp_path / "build")
    parts = sections(pdf_text(pdf), SECTIONS)
    for title in ("LoRA", "Low-rank attention"):
        assert "This study was not run for profile smoke" in parts[title].replace("\n", " ")
        assert not re.search(r"^Figure \d+:", parts[title], flags=re.M)
    assert re.search(r"^Figure \d+:", parts["SVD of MLP weights"], flags=re.M)
    assert "not run for this profile" in parts["Conclusion"]
    assert not stale.exists()


def test_missing_latexmk_is_a_user_error_naming_the_packages(tmp_path, monkeypatch):
    monkeypatch.setattr(latex.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="apt-get install --no-install-recommends latexmk lmodern"):
        latex.build_report(tmp_path, tmp_path / "build")


def test_every_package_the_report_uses_is_installed_by_ci_and_named_in_the_hint():
    """A clean machine gets every package the preamble loads: lmodern is only recommended by texlive-base."""
    from pathlib import Path
    used = {name.strip() for t in latex.TEMPLATES.glob("*.tex")
            for names in re.findall(r"\\usepackage(?:\[[^]]*\])?\{([^}]*)\}", t.read_text())
            for name in names.split(",")}
    assert "lmodern" in used and used <= latex.TEX_PACKAGES.keys(), used - latex.TEX_PACKAGES.keys()
    ci = (Path(latex.ROOT) / ".ci" / "run").read_text().replace("\\\n", " ")
    install = next(line for line in ci.splitlines() if "apt-get install" in line).split()
    for debian in latex.DEBIAN_PACKAGES:
        assert debian in install and debian in latex.INSTALL_HINT


def test_a_failed_build_is_retried_from_scratch(tmp_path, monkeypatch):
    """latexmk's database must not answer the next build with 'Nothing to do' and the old error."""
    results = write_results(tmp_path / "smoke", studies=("svd",), bench=False)
    fake = tmp_path / "bin" / "latexmk"
    fake.parent.mkdir()
    fake.write_text(f"#!{sys.executable}\nimport sys\nopen('report.fdb_latexmk', 'w').write('# Fdb version 4')\n"
                    "open('report.log', 'w').write(\"./report.tex:7: LaTeX Error: File `lmodern.sty' not found.\")\n"
                    "sys.exit(12)\n")
    fake.chmod(0o755)
    monkeypatch.setattr(latex.shutil, "which", lambda name: str(fake))
    build = tmp_path / "build"
    with pytest.raises(UserError, match="lmodern.sty' not found.*apt-get install --no-install-recommends"):
        latex.build_report(results, build)
    assert not (build / "report.fdb_latexmk").exists()


@needs_latexmk
def test_a_latex_error_is_one_user_error_pointing_at_the_log(tmp_path, monkeypatch):
    results = write_results(tmp_path / "smoke", studies=("svd",), bench=False)
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "report.tex").write_text("\\documentclass{article}\\begin{document}\\nosuchmacro\\end{document}\n")
    monkeypatch.setattr(latex, "TEMPLATES", templates)
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
    assert len(copy) == len((latex.ROOT / "models" / "lowrank.py").read_text().splitlines())
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
    assert latex.tex_escape("a_b & 50% #1 {x} ~^\\") == \
        r"a\_b \& 50\% \#1 \{x\} \textasciitilde{}\textasciicircum{}\textbackslash{}"


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
