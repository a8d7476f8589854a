"""visattn.viz's files import each other in one direction, and never a ``_private`` name of another file.

show.py and show_seg.py used to import each other (show_seg took ``_draw`` and ``_query`` back from show);
what both pages use now lives in pictures.py and draw.py. Function-level imports count too.
"""

import ast
from pathlib import Path

import visattn.viz

VIZ = Path(visattn.viz.__file__).parent


def _imports() -> dict[str, list[tuple[str, list[str]]]]:
    """File stem -> [(imported viz file stem, imported names)] for every ``from .x import ...`` in the package."""
    found: dict[str, list[tuple[str, list[str]]]] = {}
    for path in sorted(VIZ.glob("*.py")):
        edges = found.setdefault(path.stem, [])
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                names = [a.name for a in node.names]
                if node.module:
                    edges.append((node.module.split(".")[0], names))
                else:  # from . import show
                    edges += [(n, []) for n in names]
    return found


def test_no_private_name_crosses_files():
    crossing = [(src, dst, n) for src, edges in _imports().items() for dst, names in edges for n in names
                if n.startswith("_")]
    assert not crossing, f"private names imported from another file: {crossing}"


def test_no_import_circle_among_the_viz_files():
    graph = {src: {dst for dst, _ in edges if dst in {p.stem for p in VIZ.glob('*.py')} and dst != src}
             for src, edges in _imports().items()}
    graph.pop("__init__", None)
    for edges in graph.values():
        edges.discard("__init__")
    done, stack = set(), []

    def visit(node: str) -> None:
        if node in stack:
            raise AssertionError(f"import circle: {' -> '.join(stack[stack.index(node):] + [node])}")
        if node in done:
            return
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            visit(nxt)
        stack.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)
    assert "show" not in graph["show_seg"] and {"pictures", "draw"} <= graph["show_seg"]
