"""Writing a benchmark report: JSON, CSV, a Markdown summary, and the table printed at the end."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from typing import TextIO

__all__ = ["fmt_ms", "write_json", "write_csv", "write_markdown", "csv_rows", "table_rows", "print_table", "markdown"]

CSV_COLUMNS = (
    "kind", "key", "peer", "role", "complexity", "height", "width", "hw", "status", "reason", "params", "flops",
    "elementwise_ops", "forward_median_ms", "forward_p10_ms", "forward_p90_ms", "forward_backward_median_ms",
    "forward_backward_p10_ms", "forward_backward_p90_ms", "memory_forward_bytes", "memory_forward_backward_bytes",
    "rel_params", "rel_flops", "rel_forward_time", "rel_forward_backward_time", "rel_memory_forward",
    "rel_memory_forward_backward", "ratio_forward_vs_peer", "ratio_forward_backward_vs_peer",
)


def _ensure_dir(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)


def write_json(report: dict, path: str) -> None:
    _ensure_dir(path)
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")


def _times(row: dict, name: str) -> dict:
    t = row.get(name) or {}
    return {f"{name[:-3]}_median_ms": t.get("median"), f"{name[:-3]}_p10_ms": t.get("p10"),
            f"{name[:-3]}_p90_ms": t.get("p90")}


def csv_rows(report: dict) -> list[dict]:
    """One row per measurement: the baseline at each size, each module at each size, each peer."""
    rows = []
    base = report.get("baseline")
    for b in base["results"] if base else []:
        rows.append({"kind": "baseline", "key": base["name"], "height": b["size"][0], "width": b["size"][1],
                     "hw": b["hw"], **{k: b[k] for k in ("status", "reason", "params", "flops", "elementwise_ops",
                                                          "memory_forward_bytes", "memory_forward_backward_bytes")},
                     **_times(b, "forward_ms"), **_times(b, "forward_backward_ms")})
    for r in report["results"]:
        rel = r.get("relative") or {}
        rows.append({
            "kind": "module", "key": r["key"], "role": r["role"], "complexity": r["complexity"],
            "height": r["size"][0], "width": r["size"][1], "hw": r["hw"],
            **{k: r[k] for k in ("status", "reason", "params", "flops", "elementwise_ops", "memory_forward_bytes",
                                 "memory_forward_backward_bytes")},
            **_times(r, "forward_ms"), **_times(r, "forward_backward_ms"),
            **{f"rel_{k}": v for k, v in rel.items()},
        })
        for p in r["peers"]:
            rows.append({
                "kind": "peer", "key": r["key"], "peer": p["name"], "height": r["size"][0], "width": r["size"][1],
                "hw": r["hw"], "status": p["status"], "reason": p["reason"], "params": p["params"],
                **_times(p, "forward_ms"), **_times(p, "forward_backward_ms"),
                "ratio_forward_vs_peer": p["ratio_forward"],
                "ratio_forward_backward_vs_peer": p["ratio_forward_backward"],
            })
    return [{c: row.get(c) for c in CSV_COLUMNS} for row in rows]


def write_csv(report: dict, path: str) -> None:
    _ensure_dir(path)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in csv_rows(report):
            writer.writerow({k: "" if v is None else v for k, v in row.items()})


# ---------------------------------------------------------------- formatting


def _num(x: float | None, unit: str = "") -> str:
    """3 significant digits with k / M / G prefixes: 1234567 -> '1.23M'."""
    if x is None:
        return "-"
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{prefix}{unit}"
    return f"{x:.3g}{unit}"


def fmt_ms(v: float) -> str:
    """Milliseconds for people: 3 significant digits, whole numbers from 100 on (``1,450`` not ``1.45e+03``)."""
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def _ms(t: dict | None, spread: bool = True) -> str:
    if not t:
        return "-"
    text = fmt_ms(t["median"])
    return f"{text} ({fmt_ms(t['p10'])}-{fmt_ms(t['p90'])})" if spread else text


def _mib(b: int | None) -> str:
    return "-" if b is None else f"{b / 2**20:.3g}"


def _threads(env: dict) -> str:
    return f"{env['threads']} thread" + ("s" if env["threads"] != 1 else "")


def _count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}x"


def table_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the end-of-run table: one row per module and size (baseline rows first)."""
    backward = report["settings"]["backward"]
    base = report.get("baseline")
    header = ["module", "size", "params", "FLOPs", "elem. ops (est.)", "forward ms (p10-p90)"]
    header += ["fwd+bwd ms (p10-p90)"] if backward else []
    header += ["peak MiB fwd"] + (["peak MiB fwd+bwd"] if backward else [])
    header += [f"time x {base['name']}" if base else "time x base", "status"]

    def line(name, size, r, rel):
        cells = [name, f"{size[0]}x{size[1]}", f"{r['params']:,}" if r["params"] is not None else "-",
                 _num(r["flops"]), _num(r["elementwise_ops"]), _ms(r["forward_ms"])]
        if backward:
            cells.append(_ms(r["forward_backward_ms"]))
        cells.append(_mib(r["memory_forward_bytes"]))
        if backward:
            cells.append(_mib(r["memory_forward_backward_bytes"]))
        cells += [_x((rel or {}).get("forward_time")),
                  r["status"] if r["status"] == "ok" else f"{r['status']}: {r['reason']}"]
        return cells

    rows = [line(f"{base['name']} (baseline)", b["size"], b, {"forward_time": 1.0 if b["status"] == "ok" else None})
            for b in (base["results"] if base else [])]
    rows += [line(r["key"], r["size"], r, r["relative"]) for r in report["results"]]
    return header, rows


def _peer_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    header = ["module", "size", "peer", "params (visattn / peer)", "forward ms (visattn / peer)", "ratio", "status"]
    rows = []
    for r in report["results"]:
        for p in r["peers"]:
            rows.append([
                r["key"], f"{r['size'][0]}x{r['size'][1]}", p["name"],
                f"{_count(r['params'])} / {_count(p['params'])}",
                f"{_ms(r['forward_ms'], False)} / {_ms(p['forward_ms'], False)}", _x(p["ratio_forward"]),
                p["status"] if p["status"] == "ok" else f"{p['status']}: {p['reason']}",
            ])
    return header, rows


def _plain(header: list[str], rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)), file=out)


def print_table(report: dict, out: TextIO | None = None) -> None:
    """Print the results table (rich when installed, else plain columns) and the peers table if any."""
    out = out or sys.stdout
    env = report["environment"]
    s = report["settings"]
    title = (f"visattn bench: C={s['channels']}, batch {s['batch']}, {s['dtype']}, {env['device']} "
             f"({env['device_name']}, {_threads(env)}), torch {env['torch']}")
    tables = [(title, *table_rows(report))]
    peer_header, peer_rows = _peer_rows(report)
    if peer_rows:
        tables.append(("visattn against timm / torchvision (ratio = visattn / peer)", peer_header, peer_rows))
    try:
        if not out.isatty():
            raise ImportError  # plain columns in files and pipes: rich would wrap them at 80 columns
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        for name, header, rows in tables:
            print(f"\n{name}", file=out)
            _plain(header, rows, out)
        return
    console = Console(file=out)
    for name, header, rows in tables:
        table = Table(title=name, title_justify="left")
        for i, h in enumerate(header):
            table.add_column(h, justify="left" if i < 2 or h in ("peer", "status") else "right")
        for r in rows:
            table.add_row(*r)
        console.print(table)


def summary_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """The compact table at the top of the Markdown summary, one row per module.

    Forward time at each size with its ratio to the baseline; FLOPs and peak memory at the largest size.
    """
    sizes = [tuple(s) for s in report["settings"]["sizes"]]
    base = report.get("baseline")
    last = f"{sizes[-1][0]}x{sizes[-1][1]}"
    header = ["module", "role", "complexity", "params"]
    header += [f"forward ms {h}x{w}" + (f" (x {base['name']})" if base else "") for h, w in sizes]
    header += [f"FLOPs {last}", f"elem. ops {last} (est.)", f"peak MiB fwd {last}"]
    by_key: dict[str, dict] = {}
    for r in report["results"]:
        by_key.setdefault(r["key"], {})[tuple(r["size"])] = r
    rows = []
    if base:
        b = {tuple(x["size"]): x for x in base["results"]}
        rows.append([f"{base['name']} (baseline)", "-", "-", _count(b[sizes[-1]]["params"])]
                    + [_ms(b[sz]["forward_ms"], False) for sz in sizes]
                    + [_num(b[sizes[-1]]["flops"]), _num(b[sizes[-1]]["elementwise_ops"]),
                       _mib(b[sizes[-1]]["memory_forward_bytes"])])
    for key, per_size in by_key.items():
        any_row = next(iter(per_size.values()))
        ok = [per_size[sz] for sz in sizes if per_size[sz]["status"] == "ok"]
        cells = [key, any_row["role"], any_row["complexity"], _count(ok[-1]["params"]) if ok else "-"]
        for sz in sizes:
            r = per_size[sz]
            if r["status"] != "ok":
                cells.append(r["status"])
                continue
            rel = (r["relative"] or {}).get("forward_time")
            cells.append(_ms(r["forward_ms"], False) + (f" ({_x(rel)})" if base else ""))
        r = per_size[sizes[-1]]
        cells += [_num(r["flops"]), _num(r["elementwise_ops"]), _mib(r["memory_forward_bytes"])]
        rows.append(cells)
    return header, rows


def _md_table(header: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i < left or h == "status" else "---:" for i, h in enumerate(header)) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return lines


def markdown(report: dict, images: dict[str, str] | None = None) -> str:
    """A Markdown summary: settings, environment, the results table, definitions, and the plots."""
    env = report["environment"]
    s = report["settings"]
    buf = io.StringIO()
    w = lambda text="": print(text, file=buf)  # noqa: E731
    w("# visattn bench results")
    w()
    w(f"Generated by `{report['command']}` on {report['created']}.")
    w()
    w(f"- device: {env['device']} ({env['device_name']}), {_threads(env)}, torch {env['torch']}, "
      f"Python {env['python']}, visattn {env['visattn']}")
    w(f"- allocator: {env['allocator']}")
    w(f"- C = {s['channels']}, batch {s['batch']}, {s['dtype']}" + (", channels_last" if s["channels_last"] else "")
      + (", torch.compile" if s["compile"] else "") + f"; {s['repeat']} timed calls after {s['warmup']} warm-up")
    summary = report["summary"]
    w(f"- {summary['ok']} measured, {summary['skipped']} skipped, {summary['error']} failed")
    w()
    for line in _md_table(*summary_rows(report), left=3):
        w(line)
    skipped = [r for r in report["results"] if r["status"] != "ok"]
    if skipped:
        w()
        w("Not measured:")
        w()
        for r in skipped:
            w(f"- {r['key']} {r['size'][0]}x{r['size'][1]}: {r['status']}, {r['reason']}")
    notes = [r for r in report["results"] if r["status"] == "ok" and r["memory_note"]]
    if notes:
        w()
        w("Peak memory not measured:")
        w()
        for r in notes:
            w(f"- {r['key']} {r['size'][0]}x{r['size'][1]}: {r['memory_note']}")
    peer_header, peer_rows = _peer_rows(report)
    if peer_rows:
        w()
        w("## Against timm / torchvision")
        w()
        for line in _md_table(peer_header, peer_rows, left=3):
            w(line)
    for title, path in (images or {}).items():
        w()
        w(f"## {title}")
        w()
        w(f"![{title}]({path})")
    w()
    w("## All measurements")
    w()
    for line in _md_table(*table_rows(report), left=2):
        w(line)
    w()
    w("## Definitions")
    w()
    for name, text in report["definitions"].items():
        w(f"- **{name}**: {text}")
    if report.get("baseline"):
        w(f"- **baseline** {report['baseline']['name']}: `{report['baseline']['definition']}`")
    return buf.getvalue()


def write_markdown(report: dict, path: str, images: dict[str, str] | None = None) -> None:
    """Write :func:`markdown` to ``path``; image paths are made relative to its folder."""
    _ensure_dir(path)
    folder = os.path.dirname(os.path.abspath(path))
    rel = {t: os.path.relpath(os.path.abspath(p), folder) for t, p in (images or {}).items()}
    with open(path, "w") as f:
        f.write(markdown(report, rel))
