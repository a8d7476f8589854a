"""The front door and the docs site: README shape, the strict offline build, and the gallery in a real browser."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BUILD_CPU_SECONDS = 60  # the docs build's own CPU time (user + system): load on a shared machine does not count


def _script(name: str):
    return load_script("scripts", name)


gen_module_table = _script("gen_module_table")
gen_docs_pages = _script("gen_docs_pages")


# ------------------------------------------------------------------------------------------- README


def test_readme_table_is_fresh():
    text = README.read_text()
    block = text.split(gen_module_table.START, 1)[1].split(gen_module_table.END, 1)[0]
    assert block == "\n" + gen_module_table.module_table(), "stale: run `python scripts/gen_module_table.py`"


def test_readme_quick_start_is_the_two_commands():
    section = README.read_text().split("\n## Quick start", 1)[1].split("\n## ", 1)[0]
    code = section.split("```bash\n", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in code.strip().splitlines()] == ["make demo", "make test"]


def test_readme_is_a_front_door():
    text = README.read_text()
    assert len(text.splitlines()) < 200
    for heading in ("## Install", "## Quick start", "## In Python", "## On the command line", "## Modules",
                    "## Documentation"):
        assert heading in text
    assert "pip install ." in text and "pip install '.[viz,train]'" in text


def test_readme_renders_on_a_package_page():
    """No picture in the README (a package page cannot show repository files); every relative link exists."""
    text = README.read_text()
    assert "<img" not in text and "![" not in text, "README pictures belong on the docs pages"
    for link in re.findall(r"\]\(([^)#\s]+)", text):
        if "://" not in link:
            assert (ROOT / link).exists(), f"README links {link}, which does not exist"


def test_readme_quotes_the_demo_time_as_a_range():
    assert "7 to 13 minutes" in README.read_text()


# --------------------------------------------------------------------------------------- generated pages


def test_one_generated_page_per_registry_key():
    import visattn

    pages = gen_docs_pages.pages()
    keys = visattn.list_modules()
    assert {p for p in pages if p.startswith("modules/")} == {"modules/index.md", *(f"modules/{k}.md" for k in keys)}
    for key in keys:
        page = pages[f"modules/{key}.md"]
        meta = visattn.info(key)
        assert meta.paper in page and meta.citation in page
        assert f"{gen_docs_pages.parameter_count(key):,}" in page
        assert "## Cost" in page and "## Export" in page and "## Defaults" in page


def test_module_page_facts_come_from_the_registry_and_results():
    import visattn

    pages = gen_docs_pages.pages()
    se = pages["modules/se.md"]
    assert "| parameters at C = 256 | 8,464 |" in se  # SE(256, r=16), as the paper's arithmetic gives
    assert "```latex" in se and "F_{sq}" in se  # the docstring's equation
    assert "| `reduction` | `16` |" in se
    bench = json.loads(gen_docs_pages.BENCH.read_text())
    row = next(r for r in bench["results"] if r["key"] == "se" and r["size"] == [28, 28])
    assert f"{row['forward_ms']['median']:.2f}" in se
    export_row = gen_docs_pages._export_rows()["se"]
    assert export_row in se
    assert visattn.info("cbam").note.split()[0] in pages["modules/cbam.md"]


def test_every_gallery_picture_exists_and_is_a_spatial_map():
    for key, (folder, picture, source, _) in gen_docs_pages.PICTURES.items():
        assert (gen_docs_pages.RESULTS / folder / picture).is_file(), key
        assert (gen_docs_pages.RESULTS / folder / source).is_file(), key
        assert "cam" not in picture.replace("gradcam", ""), "a C x C channel matrix is not an attention picture"


def test_cli_reference_covers_every_sub_command():
    from visattn.cli import build_parser

    page = gen_docs_pages.cli_page()
    names = list(gen_docs_pages._subcommands(build_parser()))
    assert {"list", "info", "bench", "train", "compare", "show"} <= set(names)
    for name in names:
        assert f"## visattn {name}\n" in page


def test_markdown_docstring_turns_rest_math_into_latex_blocks():
    doc = ("Title.\n\n.. math::\n    y = x\n\nwhere :math:`x` is ``x``.\n\nArgs:\n    a: the :math:`a`.\n"
           "\nExample:\n    >>> 1 + 1\n    2\n")
    md = gen_docs_pages.markdown_docstring(doc)
    assert "```latex\ny = x\n```" in md and "where `x` is `x`." in md
    assert "- `a`: the `a`." in md and "```pycon\n>>> 1 + 1\n2\n```" in md


# ------------------------------------------------------------------------------------------- the site


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs", reason="the docs tools are in the dev and docs extras: pip install -e '.[dev]'")
    pytest.importorskip("material", reason="mkdocs-material is in the dev and docs extras")
    pytest.importorskip("mkdocstrings_handlers.python", reason="mkdocstrings[python] is in the dev and docs extras")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": f"{ROOT / 'src'}:{os.environ.get('PYTHONPATH', '')}"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                           "-d", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    warnings = [line for line in proc.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert proc.returncode == 0 and not warnings, "mkdocs build --strict failed:\n" + "\n".join(
        warnings or proc.stderr.splitlines()[-30:])
    assert cpu < BUILD_CPU_SECONDS, f"the docs build took {cpu:.0f} s of CPU ({wall:.0f} s wall)"
    return out


def test_docs_build_strict_has_every_page(site):
    import visattn

    for page in ("index.html", "getting-started.html", "gallery.html", "cli.html", "api/index.html", "api/train.html",
                 "attach.html", "segmentation.html", "contributing.html", "changelog.html", "studies/cluttered.html"):
        assert (site / page).is_file(), page
    for key in visattn.list_modules():
        assert (site / "modules" / f"{key}.html").is_file(), key


def test_docs_site_is_offline(site):
    """No page loads anything from the network (fonts, scripts, styles): the site is read from disk."""
    for page in site.rglob("*.html"):
        if "results" in page.relative_to(site).parts:
            continue
        html = page.read_text()
        remote = re.findall(r"<(?:script|link|img)[^>]+(?:src|href)=\"(https?://[^\"]+)\"", html)
        assert not remote, f"{page.relative_to(site)} loads {remote[:3]}"


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images).map(i => ({src: i.getAttribute("src"), complete: i.complete,
                                                          width: i.naturalWidth, height: i.naturalHeight}));
  const out = document.createElement("pre");
  out.id = "image-probe";
  out.textContent = JSON.stringify(images);
  document.body.appendChild(out);
});
</script>
"""


def rendered_images(chromium: str, page: Path) -> list[dict]:
    """Open ``page`` in headless Chromium and return every ``<img>``'s natural size after the page loaded."""
    probe = page.with_name(f"probe-{page.name}")
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    try:
        proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                               "--allow-file-access-from-files", "--virtual-time-budget=10000", "--dump-dom",
                               probe.as_uri()], capture_output=True, text=True, timeout=180)
    finally:
        probe.unlink()
    found = re.search(r'<pre id="image-probe">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"Chromium rendered no probe (exit {proc.returncode}): {proc.stderr[-800:]}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def test_gallery_renders_its_pictures_in_chromium(site):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no chromium binary on PATH (Debian: apt-get install chromium; `make test` installs it as root)")
    images = [i for i in rendered_images(chromium, site / "gallery.html") if "results/" in i["src"]]
    assert len(images) == 2 * len(gen_docs_pages.PICTURES)
    broken = [i["src"] for i in images if not (i["complete"] and i["width"] > 0 and i["height"] > 0)]
    assert not broken, f"pictures that did not render: {broken}"


def test_the_gallery_check_sees_a_missing_picture(site, tmp_path):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no chromium binary on PATH (Debian: apt-get install chromium; `make test` installs it as root)")
    copy = tmp_path / "site"
    shutil.copytree(site, copy, ignore=shutil.ignore_patterns("search", "assets"))
    folder, picture, _, _ = gen_docs_pages.PICTURES["cbam"]
    (copy / "results" / folder / picture).unlink()
    images = rendered_images(chromium, copy / "gallery.html")
    assert [i for i in images if i["src"].endswith(picture) and i["width"] == 0]


# ---------------------------------------------------------------------------------------- contributing


def _section_code(page: Path, heading: str) -> str:
    section = page.read_text().split(f"\n## {heading}", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def _run_example(heading: str, package: str) -> None:
    """Run the contributing page's example under ``heading`` as a file of ``package`` would run."""
    code = _section_code(ROOT / "docs" / "contributing.md", heading)
    namespace = {"__name__": f"{package}.docs_example", "__package__": package}
    exec(compile(code, f"contributing.md: {heading}", "exec"), namespace)  # noqa: S102 - the page's own code


@pytest.fixture
def catalogues():
    """The four catalogues, and the toy names the page adds, taken out again afterwards."""
    import visattn
    from visattn import registry
    from visattn.backbones import BACKBONES
    from visattn.data import CATALOGUE as DATASETS
    from visattn.segmentation import HEADS

    visattn.list_modules()  # load every real entry first
    added = {"toy": registry._REGISTRY, "toy_net": BACKBONES, "toy_head": HEADS, "toy-squares": DATASETS}
    for key, catalogue in added.items():
        assert key not in catalogue
    yield added
    for key, catalogue in added.items():
        if key in catalogue:
            catalogue.remove(key)


def test_contributing_module_example_registers_and_keeps_the_contract(catalogues):
    """The page's toy module, run as a file of visattn.modules, is listed, built and computes its equation."""
    import torch

    import visattn

    _run_example("Adding a module", "visattn.modules")
    assert "toy" in visattn.list_modules()
    toy = visattn.create("toy", 8, dtype=torch.float64)
    x = torch.randn(2, 8, 5, 7, dtype=torch.float64)
    assert torch.allclose(toy(x), x * torch.sigmoid(x.mean(1, keepdim=True)))
    with pytest.raises(ValueError, match="ToyAttention"):
        toy(torch.randn(2, 4, 5, 7, dtype=torch.float64))
    assert visattn.info("toy").parameter_free


def test_contributing_backbone_head_and_dataset_examples_are_found(catalogues):
    """The page's toy backbone, decode head and data set are listed and built by the ordinary entry points."""
    import torch

    from visattn import backbones, data, segmentation
    from visattn.data.loader import load_dataset

    for heading in ("Adding a backbone", "Adding a decode head", "Adding a data set"):
        _run_example(heading, "visattn_contrib_examples")
    assert "toy_net" in backbones.list_backbones()
    net = backbones.create("toy_net", num_classes=3, in_chans=1)
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 3)
    assert "toy_head" in segmentation.list_heads()
    head = segmentation.HEADS.get("toy_head").cls(16, 8, 5)
    assert head(torch.randn(2, 16, 6, 6)).shape == (2, 5, 6, 6)
    assert "toy-squares" in data.list_datasets()
    train, val = load_dataset("toy-squares")
    assert len(train) == 8 and train.classes == ["dark", "bright"]


def test_the_contributing_examples_are_gone_afterwards():
    import visattn
    from visattn import backbones, data, segmentation

    assert "toy" not in visattn.list_modules() and "toy_net" not in backbones.list_backbones()
    assert "toy_head" not in segmentation.list_heads() and "toy-squares" not in data.list_datasets()


def test_attach_guide_placement_table_comes_from_the_registry():
    import visattn

    guide = (ROOT / "docs" / "attach.md").read_text()
    assert gen_docs_pages.PLACEMENT_MARKER in guide
    filled = gen_docs_pages.on_page_markdown(guide, None, None, None)
    for key in visattn.list_modules():
        assert f"| [`{key}`](modules/{key}.md) | {visattn.info(key).role} | `{visattn.info(key).placement}` |" in filled
