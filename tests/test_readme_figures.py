"""The studies' figures are the committed result files' figures (no number without its file).

The study pages (``docs/studies/*.md``) and the README quote measurements. Every ratio (``0.76x``), every
``A vs B MiB`` pair and every ``mean ± std`` must appear in a result file linked from the same paragraph (or,
for a table, a list or a picture, from the paragraph just above it). Pages link result files as
``../results/<path>``: the docs site carries ``benchmarks/results/`` there.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RESULTS = ROOT / "benchmarks" / "results"
LINK = re.compile(r"\]\(([^)#\s]+)[^)]*\)")
RATIO = re.compile(r"(?<![\d.])(\d+\.\d+)x\b")
MIB_PAIR = re.compile(r"(\d[\d,]*) vs (\d[\d,]*) MiB")
PLUS_MINUS = re.compile(r"([+-]?\d+\.\d+) ± (\d+\.\d+)")
P_VALUE = re.compile(r"\bp = (\d\.\d+)")
PAGES = sorted((DOCS / "studies").glob("*.md"))


def result_path(page: Path, link: str) -> Path | None:
    """The file under benchmarks/results that ``link`` on ``page`` names, or None for any other link."""
    if "://" in link:
        return None
    target = (page.parent / link).resolve()
    for site_root in (DOCS / "results", RESULTS):
        try:
            return RESULTS / target.relative_to(site_root)
        except ValueError:
            continue
    return None


def blocks(page: Path) -> list[tuple[str, list[Path]]]:
    """The page's paragraphs, each with the result files it links (or its predecessor's, if it links none)."""
    out, links = [], []
    for block in re.split(r"\n\s*\n", page.read_text()):
        if block.lstrip().startswith("#"):
            links = []  # a heading starts a new context
            continue
        found = [p for p in (result_path(page, link) for link in LINK.findall(block)) if p is not None]
        links = found or links
        out.append((block, links))
    return out


def _file_text(path: Path) -> str:
    if path.is_dir():
        return "\n".join(p.read_text(errors="ignore") for p in sorted(path.rglob("*")) if p.suffix in (".md", ".json"))
    if path.suffix in (".md", ".json", ".csv", ".html", ".txt"):
        texts = [path.read_text(errors="ignore")]
        for twin in (path.with_suffix(".json"), path.parent / "leaderboard.md", path.parent / "leaderboard.json"):
            if twin.exists() and twin != path:
                texts.append(twin.read_text(errors="ignore"))
        return "\n".join(texts)
    return ""


NUMBER = re.compile(r"(?<![\d.])[+-]?\d+(?:\.\d+)?(?![\d.]\d)")


def _appears(number: str, text: str) -> bool:
    """``number`` is a number of ``text`` as written or rounded to its decimals (1.08 from 1.079 or 1.080;
    0.5 is not 0.55, 0.16 is not 0.33)."""
    decimals = len(number.partition(".")[2])
    value = float(number)
    for found in NUMBER.findall(text.replace(",", "")):
        if len(found.partition(".")[2]) >= decimals and abs(round(float(found), decimals) - value) < 1e-9:
            return True
    return False


def figures(block: str) -> list[str]:
    """The checked figures of a paragraph: ratios, both sides of ``A vs B MiB``, and ``mean ± std`` pairs."""
    found = RATIO.findall(block) + [n.replace(",", "") for pair in MIB_PAIR.findall(block) for n in pair]
    return found + [f"{mean} ± {std}" for mean, std in PLUS_MINUS.findall(block)] + [
        f"p = {p}" for p in P_VALUE.findall(block)]


def missing_figures(page: Path) -> list[tuple[str, list[str]]]:
    missing = []
    for block, links in blocks(page):
        wanted = figures(block)
        if not wanted:
            continue
        assert links, f"{page.name}: figures without a results link: {block[:160]!r}"
        for path in links:
            assert path.exists(), f"{page.name} links {path.relative_to(ROOT)}, which does not exist"
        text = "\n".join(_file_text(p) for p in links)
        for figure in wanted:
            if figure.startswith("p = "):
                if figure not in text:  # leaderboards write "(p = 0.062)"
                    missing.append((figure, [p.name for p in links]))
                continue
            parts = figure.split(" ± ")
            if not all(_appears(part.lstrip("+"), text) for part in parts):
                missing.append((figure, [p.name for p in links]))
    return missing


def test_there_are_study_pages_to_check():
    assert {p.stem for p in PAGES} >= {"cost", "fashion-mnist", "cluttered", "slow-start", "segmentation", "demo"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_study_figures_are_in_the_linked_result_files(page):
    assert not (missing := missing_figures(page)), f"{page.name}: figures not in the linked result files: {missing}"


def test_readme_quotes_no_figure_without_its_file():
    readme = ROOT / "README.md"
    for block, links in blocks(readme):
        if RATIO.findall(block) or MIB_PAIR.findall(block):
            assert links, f"README figures without a results link: {block[:160]!r}"


def test_the_check_catches_a_figure_that_is_not_in_the_file(tmp_path):
    assert _appears("0.76", "| 0.76 |") and _appears("1.08", "1.079") and _appears("1322", "1,322 MiB")
    assert not _appears("0.5", "0.55") and not _appears("0.76", "0.7") and not _appears("675", "6750")
    assert not _appears("0.16", "| 0.33 | 0.28 |")
    assert _appears("-0.62", "| -0.62 ± 0.73 |") and not _appears("-0.62", "| -0.63 |")
    studies = tmp_path / "docs" / "studies"
    studies.mkdir(parents=True)
    page = studies / "fake.md"
    page.write_text("Non-local is 0.0123x the memory ([results](../results/seg-heads-cpu.md)).\n")
    assert [f for f, _ in _missing_in(page, tmp_path)] == ["0.0123"]


def _missing_in(page: Path, root: Path) -> list[tuple[str, list[str]]]:
    """missing_figures for a page under another docs root (its ../results links still name benchmarks/results)."""
    global DOCS
    saved, DOCS = DOCS, root / "docs"
    try:
        return missing_figures(page)
    finally:
        DOCS = saved
