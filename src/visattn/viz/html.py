"""The ``index.html`` page of ``visattn show``: sections of captioned pictures, relative links only.

The page is one self-contained file (inline CSS, no scripts) that opens from disk in any browser.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

__all__ = ["Figure", "Section", "write_page"]


@dataclass
class Figure:
    """One picture: ``src`` relative to the page, a short ``title`` and a longer ``caption``."""

    src: str
    title: str
    caption: str = ""


@dataclass
class Section:
    """A heading (``level`` 2 or 3), an optional paragraph, a row of figures and a bullet list.

    ``wide``: the figures may take the page's full width (large heat-maps).
    """

    title: str
    text: str = ""
    figures: list[Figure] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    level: int = 2
    wide: bool = False


_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1em; margin: 1.2em 0 0.4em; }
.row { display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-start; }
figure { margin: 0; max-width: 240px; }
figure.wide { max-width: 100%; }
figure img { display: block; max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 12px; color: #444; word-wrap: break-word; }
figcaption b { color: #000; }
.meta { color: #555; }
"""


def _check_src(src: str) -> str:
    p = PurePosixPath(src)
    if p.is_absolute() or ".." in p.parts or "://" in src:
        raise ValueError(f"write_page: image source {src!r} must be a relative path inside the output folder")
    return src


def _figure(f: Figure, wide: bool) -> str:
    cls = ' class="wide"' if wide else ""
    caption = f"<b>{html.escape(f.title)}</b>" + (f"<br>{html.escape(f.caption)}" if f.caption else "")
    return (f'<figure{cls}><img src="{html.escape(_check_src(f.src), quote=True)}" '
            f'alt="{html.escape(f.title, quote=True)}"><figcaption>{caption}</figcaption></figure>')


def write_page(path: str | Path, title: str, intro: list[str], sections: list[Section]) -> Path:
    """Write the page: ``title``, ``intro`` paragraphs, then the sections.

    All text is escaped; image sources must be relative paths (``ValueError`` otherwise).
    """
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{html.escape(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
           f"<h1>{html.escape(title)}</h1>"]
    out += [f'<p class="meta">{html.escape(p)}</p>' for p in intro]
    for s in sections:
        tag = f"h{min(6, max(2, int(s.level)))}"
        out.append(f"<{tag}>{html.escape(s.title)}</{tag}>")
        if s.text:
            out.append(f"<p>{html.escape(s.text)}</p>")
        if s.figures:
            out.append('<div class="row">' + "".join(_figure(f, s.wide) for f in s.figures) + "</div>")
        if s.items:
            out.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in s.items) + "</ul>")
    out += ["</body>", "</html>", ""]
    path = Path(path)
    path.write_text("\n".join(out), encoding="utf-8")
    return path
