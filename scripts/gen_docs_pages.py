"""The docs site's generated pages, written at build time from the registry, the CLI parsers and committed results.

Used as an MkDocs hook (``hooks:`` in ``mkdocs.yml``), so ``mkdocs build`` makes them fresh on every build and
no generated page is committed:

- ``modules/index.md`` and ``modules/<key>.md``: one page per registry key (``visattn.list_modules()`` /
  ``visattn.info(key)``): paper, the docstring's equations and arguments, defaults, parameter count, cost
  from ``benchmarks/results/bench-cpu.json``, export status from ``docs/export.md`` and, where ``visattn show``
  recorded one, a picture of its attention map;
- ``gallery.md``: those pictures side by side;
- ``cli.md``: the help of every sub-command, walked from ``visattn.cli.build_parser()``;
- ``api/index.md`` and ``api/<part>.md``: one mkdocstrings block per public module, a page per part;
- ``changelog.md``: ``CHANGELOG.md``;
- ``results/...``: the committed result files under ``benchmarks/results/`` (tables, plots, pictures), which
  the study pages link to as ``../results/<file>``.

Run as a script it writes the pages into a folder to read them without building the site:

    python scripts/gen_docs_pages.py --out /tmp/visattn-pages
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import json
import os
import pkgutil
import re
import textwrap
from contextlib import redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BENCH = RESULTS / "bench-cpu.json"
EXPORT = ROOT / "docs" / "export.md"
#: result files the site leaves out: checkpoints and per-step logs (large, not linked from any page).
SKIPPED_SUFFIXES = (".pt", ".jsonl")

#: registry key -> (result folder, attention-map picture, input picture, what the picture shows).
#: Only maps that ``visattn show`` draws as images of the input's grid belong here (a C x C channel matrix,
#: such as DANet's CAM, is not a spatial map).
PICTURES = {
    "cbam": ("show-cbam-cluttered", "img00-00-layer1_0_attn.png", "img00-input.png",
             "CBAM's spatial gate in the first stage of the plain CNN + CBAM (`gate_init=0.9`) on a cluttered "
             "Fashion-MNIST test image"),
    "cc": ("show-cc-scenes", "img01-00-decode_head_context.png", "img01-input.png",
           "criss-cross attention of the query pixel (red) in CCNet's decode head on a Fashion-MNIST scene"),
    "pam": ("show-danet-scenes", "img01-00-decode_head_pam.png", "img01-input.png",
            "DANet's position attention of the query pixel (red) in its decode head on a Fashion-MNIST scene"),
}

#: ModuleInfo fields shown in the facts table (others, such as ``placement``, are shown when present).
_SKIPPED_FIELDS = {"key", "cls", "title", "paper", "authors", "venue", "year", "arxiv", "code", "note", "defaults"}


# --------------------------------------------------------------------------------------- docstrings


def markdown_docstring(doc: str) -> str:
    """A Google-style docstring with reST math as Markdown: math as LaTeX source, sections as headings.

    ``.. math::`` blocks become ``latex`` code blocks (the site is offline: no MathJax), ``:math:`x``` and
    ``:class:`X``` roles become code spans, ``Args:`` items a list, ``Example:`` a ``pycon`` block.
    """
    lines = textwrap.dedent(doc).strip("\n").splitlines()
    out: list[str] = []
    section = None
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith(".. math::"):
            block, i = [], i + 1
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith((" ", "\t"))):
                block.append(lines[i])
                i += 1
            out += ["", "```latex", textwrap.dedent("\n".join(block)).strip("\n"), "```", ""]
            continue
        header = re.fullmatch(r"(Args|Arguments|Shape|Examples?|Returns|Raises|Notes?|Attributes):", stripped)
        if header and not line.startswith(" "):
            section = header.group(1)
            out += ["", f"**{section}**", ""]
            if section.startswith("Example"):
                block, i = [], i + 1
                while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
                    block.append(lines[i])
                    i += 1
                out += ["```pycon", textwrap.dedent("\n".join(block)).strip("\n"), "```", ""]
                section = None
                continue
            i += 1
            continue
        if section in ("Args", "Arguments", "Attributes", "Raises") and line.startswith("    ") \
                and not line.startswith("        "):
            name, _, text = stripped.partition(":")
            out.append(f"- `{name.strip()}`:{_roles(text)}")
        elif section and line.startswith("        "):
            out.append("  " + _roles(stripped))
        elif section and line.startswith("    "):
            out.append(_roles(stripped))
        else:
            if not line.startswith(" "):
                section = None
            out.append(_roles(line))
        i += 1
    return "\n".join(out).strip() + "\n"


def _roles(text: str) -> str:
    text = re.sub(r":(?:math|class|meth|func|data|attr|mod):`~?([^`]+)`", r"`\1`", text)
    return re.sub(r"``([^`]+)``", r"`\1`", text)


# ------------------------------------------------------------------------------------------ modules


def _bench_records() -> dict[str, list[dict]]:
    if not BENCH.exists():
        return {}
    report = json.loads(BENCH.read_text())
    records: dict[str, list[dict]] = {}
    for r in report.get("results", []):
        records.setdefault(r["key"], []).append(r)
    return records


def _bench_summary() -> str:
    if not BENCH.exists():
        return ""
    report = json.loads(BENCH.read_text())
    s, env = report.get("settings", {}), report.get("environment", {})
    return (f"`visattn bench` on the CPU ({env.get('cpu_model', 'cpu')}, {s.get('threads', '?')} thread(s), "
            f"torch {env.get('torch', '?')}), C = {s.get('channels')}, batch {s.get('batch')}, "
            f"{s.get('dtype', 'float32')}; x conv3x3 = the time of one `Conv2d(C, C, 3)` on the same input "
            "([full report](../results/bench-cpu.md))")


def _export_rows() -> dict[str, str]:
    from visattn._export_table import table_rows

    return table_rows(EXPORT.read_text()) if EXPORT.exists() else {}


def parameter_count(key: str, channels: int = 256) -> int:
    """Parameters of ``key`` at its defaults with ``channels`` channels (built on the meta device)."""
    import visattn

    meta = visattn.info(key)
    kwargs = {"feature_size": (14, 14)} if meta.size_bound else {}
    module = visattn.create(key, channels, device="meta", **kwargs)
    return sum(p.numel() for p in module.parameters())


def _cell(value) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return f"`{text}`".replace("|", "\\|")


def module_page(key: str, bench: dict[str, list[dict]], export_rows: dict[str, str]) -> str:
    """The Markdown page of one registry key."""
    import visattn

    m = visattn.info(key)
    paper = f"[{m.paper}]({m.paper_url})" if m.paper_url else m.paper
    parts = [f"# `{key}`: {m.title}", "",
             f"{paper}, {m.citation}." + (f" Official code: <{m.code}>." if m.code else ""), ""]
    if key in PICTURES:
        folder, picture, source, caption = PICTURES[key]
        parts += [f"![input]({_result_link(folder, source, 1)}){{ width=\"180\" }} "
                  f"![attention map of `{key}`]({_result_link(folder, picture, 1)}){{ width=\"180\" }}", "",
                  f"_{caption} ([all pictures]({_result_link(folder, 'index.html', 1)}))._", ""]
    facts = [f"| class | `{m.cls.__module__}.{m.cls.__qualname__}` |"]
    for f in dataclasses.fields(m):
        if f.name not in _SKIPPED_FIELDS:
            value = getattr(m, f.name)
            shown = ("yes" if value else "no") if isinstance(value, bool) else value
            facts.append(f"| {f.name.replace('_', ' ')} | {shown} |")
    facts.append(f"| parameters at C = 256 | {parameter_count(key):,}"
                 + (" (built for 14 x 14 features)" if m.size_bound else "") + " |")
    parts += ["## Facts", "", "| fact | value |", "|---|---|", *facts, ""]
    if m.note:
        parts += ["## Paper and official code", "", _roles(m.note), ""]
    parts += ["## Defaults", ""]
    if m.defaults:
        parts += ["| argument | default |", "|---|---|",
                  *(f"| `{name}` | {_cell(value)} |" for name, value in m.defaults.items()), ""]
    else:
        parts += ["No keyword arguments besides the channels.", ""]
    doc = inspect.getdoc(m.cls) or ""
    parts += ["## What it computes", "", markdown_docstring(doc), ""]
    parts += ["## Cost", ""]
    if bench.get(key):
        parts += [_bench_summary() + ":", "",
                  "| H x W | params | GFLOPs | forward ms (p10-p90) | x conv3x3 | peak memory MiB |",
                  "|---|---|---|---|---|---|"]
        for r in bench[key]:
            if r.get("status") != "ok":
                parts.append(f"| {r['size'][0]} x {r['size'][1]} | skipped: {r.get('reason')} | | | | |")
                continue
            t = r["forward_ms"]
            rel = (r.get("relative") or {}).get("forward_time")
            mem = r.get("memory_forward_bytes")
            parts.append(f"| {r['size'][0]} x {r['size'][1]} | {r['params']:,} | {r['flops'] / 1e9:.3f} | "
                         f"{t['median']:.2f} ({t['p10']:.2f}-{t['p90']:.2f}) | "
                         f"{f'{rel:.2f}' if rel is not None else '-'} | "
                         f"{f'{mem / 2**20:.1f}' if mem is not None else '-'} |")
        parts.append("")
    else:
        parts += ["Not in the committed benchmark results yet (`visattn bench all` adds it).", ""]
    parts += ["## Export", ""]
    row = export_rows.get(key)
    if row:
        parts += ["| key | `torch.compile(fullgraph=True)` | `torch.export` | ONNX (onnxruntime) | TorchScript |",
                  "|---|---|---|---|---|", row, "", "How each path is checked: [export](../export.md).", ""]
    else:
        parts += ["Not in the export table yet ([export](../export.md) says how to regenerate it).", ""]
    parts += ["## API", "", f"::: {m.cls.__module__}.{m.cls.__qualname__}",
              "    options:", "      show_root_heading: false", "      heading_level: 3", ""]
    return "\n".join(parts)


def _result_link(folder: str, name: str, depth: int) -> str:
    return "../" * depth + f"results/{folder}/{name}"


def modules_index() -> str:
    """The catalogue: every key with its paper, role and complexity, linking its page."""
    import visattn

    lines = ["# Modules", "", "Every registered module, generated from the registry (`visattn.list_modules()`, "
             "`visattn.info(key)`). Each page gives the paper, the equations, the defaults, the parameter count, "
             "the measured cost, the export status and, where one was recorded, a picture of the attention map "
             "([gallery](../gallery.md)).", "",
             "| key | module | paper | role | domain | complexity | parameter-free |", "|---|---|---|---|---|---|---|"]
    for key in visattn.list_modules():
        m = visattn.info(key)
        paper = f"[{m.citation}]({m.paper_url})" if m.paper_url else m.citation
        lines.append(f"| [`{key}`]({key}.md) | {m.title} | {paper} | {m.role} | {m.domain} | {m.complexity} | "
                     f"{'yes' if m.parameter_free else ''} |")
    return "\n".join(lines) + "\n"


def gallery_page() -> str:
    """Every recorded attention map beside its input, linking each module's page."""
    lines = ["# Gallery", "", "Attention maps recorded by `visattn show` on trained networks (committed under "
             "`benchmarks/results/show-*`), each beside its input. A module without a picture here has no "
             "recorded run yet.", ""]
    for key, (folder, picture, source, caption) in sorted(PICTURES.items()):
        lines += [f"## [`{key}`](modules/{key}.md)", "",
                  f"![input of {key}]({_result_link(folder, source, 0)}){{ width=\"180\" }} "
                  f"![attention map of {key}]({_result_link(folder, picture, 0)}){{ width=\"180\" }}", "",
                  f"_{caption}._", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- CLI


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps sub-commands in the choices of one action
        if isinstance(getattr(action, "choices", None), dict):
            return dict(action.choices)
    return {}


def _help(parser: argparse.ArgumentParser) -> str:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "110"  # the same wrapping on every machine
    try:
        buf = io.StringIO()
        with redirect_stdout(buf):
            parser.print_help()
        return buf.getvalue().rstrip()
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def cli_page() -> str:
    """The help of ``visattn`` and of every sub-command (recursively), from ``visattn.cli.build_parser()``."""
    from visattn.cli import build_parser

    root = build_parser()
    lines = ["# Command-line reference", "",
             "Generated from the argparse parsers (`visattn.cli.build_parser()`); the same text as "
             "`visattn COMMAND --help`.", "", "```text", _help(root), "```", ""]

    def walk(parser: argparse.ArgumentParser, path: list[str], level: int) -> None:
        for name, sub in _subcommands(parser).items():
            lines.extend([f"{'#' * level} visattn {' '.join([*path, name])}", "", "```text", _help(sub), "```", ""])
            walk(sub, [*path, name], min(level + 1, 4))

    walk(root, [], 2)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- API


def public_modules() -> list[str]:
    """Dotted names of the package's public modules (no part starting with ``_``), sorted."""
    import visattn

    names = ["visattn"]
    for info in pkgutil.walk_packages(visattn.__path__, prefix="visattn."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def api_groups() -> dict[str, list[str]]:
    """Public modules grouped by the package's top-level part (``visattn`` itself, ``backbones``, ``train``, ...)."""
    groups: dict[str, list[str]] = {}
    for name in public_modules():
        parts = name.split(".")
        groups.setdefault(parts[1] if len(parts) > 1 else "visattn", []).append(name)
    return groups


def api_pages() -> dict[str, str]:
    """``api/index.md`` and one page per top-level part, one mkdocstrings block per public module."""
    groups = api_groups()
    index = ["# API reference", "", "Generated from the docstrings (Google style) of every public module, one page "
             "per part of the package. `visattn` itself re-exports the names most code needs.", ""]
    out = {}
    for group, names in groups.items():
        index.append(f"- [`{names[0] if group == 'visattn' else 'visattn.' + group}`]({group}.md): "
                     + ", ".join(f"`{n}`" for n in names))
        lines = [f"# `{'visattn' if group == 'visattn' else 'visattn.' + group}`", ""]
        for name in names:
            lines += [f"## `{name}`", "", f"::: {name}", "    options:", "      show_root_heading: false",
                      "      show_root_toc_entry: false", "      heading_level: 3", "      show_submodules: false", ""]
        out[f"api/{group}.md"] = "\n".join(lines)
    out["api/index.md"] = "\n".join(index) + "\n"
    return out


# ---------------------------------------------------------------------------------------- the hook


def pages() -> dict[str, str]:
    """Site path -> Markdown of every generated page."""
    import visattn

    bench, export_rows = _bench_records(), _export_rows()
    out = {"modules/index.md": modules_index(), "gallery.md": gallery_page(), "cli.md": cli_page(),
           "changelog.md": (ROOT / "CHANGELOG.md").read_text(), **api_pages()}
    for key in visattn.list_modules():
        out[f"modules/{key}.md"] = module_page(key, bench, export_rows)
    return out


def result_files() -> list[Path]:
    """The committed result files the site carries (everything under benchmarks/results but checkpoints/logs)."""
    return sorted(p for p in RESULTS.rglob("*") if p.is_file() and p.suffix not in SKIPPED_SUFFIXES
                  and "checkpoints" not in p.relative_to(RESULTS).parts)


def on_config(config):
    """Put every module's page into the navigation under "Modules", and every API page under "API reference"."""
    import visattn

    for entry in config["nav"] or []:
        if isinstance(entry, dict) and "Modules" in entry:
            entry["Modules"] = [*entry["Modules"], *({k: f"modules/{k}.md"} for k in visattn.list_modules())]
        if isinstance(entry, dict) and "API reference" in entry:
            entry["API reference"] = ["api/index.md", *({g: f"api/{g}.md"} for g in api_groups() if g != "visattn")]
            entry["API reference"].insert(1, {"visattn": "api/visattn.md"})
    return config


PLACEMENT_MARKER = "<!-- placement-table (generated from ModuleInfo.placement) -->"


def placement_table() -> str:
    """Key, role and placement of every module, from the registry (where attach puts each one)."""
    import visattn

    lines = ["| key | role | where `attach` puts it (`ModuleInfo.placement`) |", "|---|---|---|"]
    for key in visattn.list_modules():
        m = visattn.info(key)
        placement = getattr(m, "placement", None)
        lines.append(f"| [`{key}`](modules/{key}.md) | {m.role} | {f'`{placement}`' if placement else '-'} |")
    return "\n".join(lines) + "\n"


def on_page_markdown(markdown, page, config, files):
    """Fill the attach guide's placement table from the registry."""
    if PLACEMENT_MARKER in markdown:
        return markdown.replace(PLACEMENT_MARKER, placement_table())
    return markdown


def on_files(files, config):
    """Add the generated pages and the result files to the site's files."""
    from mkdocs.structure.files import File

    for path, text in pages().items():
        files.append(File.generated(config, path, content=text))
    for path in result_files():
        files.append(File.generated(config, f"results/{path.relative_to(RESULTS).as_posix()}", abs_src_path=str(path)))
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the generated pages into")
    args = parser.parse_args(argv)
    for path, text in pages().items():
        target = args.out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    print(f"wrote {len(pages())} pages under {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
