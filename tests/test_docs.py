from pathlib import Path

from visattn._docs import END, START, module_table, modules_page

ROOT = Path(__file__).resolve().parents[1]
STALE = "stale: run `python scripts/gen_module_table.py` (or `make docs`)"


def test_modules_page_is_fresh():
    assert (ROOT / "docs" / "modules.md").read_text() == modules_page(), STALE


def test_readme_table_is_fresh():
    text = (ROOT / "README.md").read_text()
    block = text.split(START, 1)[1].split(END, 1)[0]
    assert block == "\n" + module_table(), STALE


def test_readme_quick_start_is_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
