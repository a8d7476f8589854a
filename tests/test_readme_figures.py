"""The README's benchmark figures are the committed result files' figures (no number without its file).

In the "Measured" section, every ratio (``0.76x``) and every ``A vs B MiB`` pair must appear in a results
file linked from the same paragraph (or, for a table or a list, from the paragraph just above it).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\((benchmarks/results/[^)#]+)\)")
RATIO = re.compile(r"(?<![\d.])(\d+\.\d+)x\b")
MIB_PAIR = re.compile(r"(\d[\d,]*) vs (\d[\d,]*) MiB")


def measured_blocks() -> list[tuple[str, list[Path]]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Measured", 1)[1].split("\n## ", 1)[0]
    blocks, links = [], []
    for block in re.split(r"\n\s*\n", section):
        found = [ROOT / p for p in LINK.findall(block)]
        links = found or links  # a table or list without links belongs to the paragraph above it
        blocks.append((block, links))
    return blocks


def _file_text(path: Path) -> str:
    if path.is_dir():
        return "\n".join(p.read_text(errors="ignore") for p in sorted(path.rglob("*")) if p.suffix in (".md", ".json"))
    if path.suffix in (".md", ".json", ".csv", ".html"):
        texts = [path.read_text(errors="ignore")]
        twin = path.with_suffix(".json")
        if twin.exists() and twin != path:
            texts.append(twin.read_text(errors="ignore"))
        return "\n".join(texts)
    return ""


NUMBER = re.compile(r"(?<![\d.])\d+(?:\.\d+)?(?![\d.]\d)")


def _appears(number: str, text: str) -> bool:
    """``number`` is a number of ``text`` as written or rounded to its decimals (1.08 from 1.079 or 1.080;
    0.5 is not 0.55, 0.16 is not 0.33)."""
    decimals = len(number.partition(".")[2])
    value = float(number)
    for found in NUMBER.findall(text.replace(",", "")):
        if len(found.partition(".")[2]) >= decimals and abs(round(float(found), decimals) - value) < 1e-9:
            return True
    return False


def test_readme_benchmark_figures_are_in_the_linked_result_files():
    missing = []
    for block, links in measured_blocks():
        figures = RATIO.findall(block) + [n.replace(",", "") for pair in MIB_PAIR.findall(block) for n in pair]
        if not figures:
            continue
        assert links, f"figures without a results link: {block[:120]!r}"
        text = "\n".join(_file_text(p) for p in links)
        missing += [(f, [p.name for p in links]) for f in figures if not _appears(f, text)]
    assert not missing, f"README figures not in the linked result files: {missing}"


def test_the_check_catches_a_figure_that_is_not_in_the_file():
    assert _appears("0.76", "| 0.76 |") and _appears("1.08", "1.079") and _appears("1322", "1,322 MiB")
    assert not _appears("0.5", "0.55") and not _appears("0.76", "0.7") and not _appears("675", "6750")
    assert not _appears("0.16", "| 0.33 | 0.28 |")
