"""Plots of a benchmark report (matplotlib, optional: ``pip install 'visattn[viz]'``).

* :func:`plot_scaling`: log-log time and peak memory against ``H * W``, one line per module, the line
  style by the module's complexity family, with guide slopes for ``HW``, ``(HW)^1.5`` (``HW(H+W)`` on
  square maps) and ``(HW)^2``, so the families separate by slope.
* :func:`plot_overhead`: per module, forward time relative to the baseline convolution at each size.
"""

from __future__ import annotations

import math

__all__ = ["MISSING_MATPLOTLIB", "have_matplotlib", "plot_scaling", "plot_overhead"]

MISSING_MATPLOTLIB = "plots need matplotlib, which is not installed: pip install 'visattn[viz]' (or matplotlib)"

_FAMILY_STYLE = {"O(HW)": "-", "O(HW(H+W))": "--", "O((HW)^2)": ":"}
_GUIDES = ((1.0, "HW"), (1.5, "(HW)^1.5"), (2.0, "(HW)^2"))


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError(MISSING_MATPLOTLIB) from None
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def _value(row: dict, metric: str) -> float | None:
    if row.get("status") != "ok":
        return None
    v = row.get(metric)
    if isinstance(v, dict):
        v = v.get("median")
    elif v is not None and metric.startswith("memory"):
        v = v / 2**20
    return v if v is not None and v > 0 else None


def _panels(report: dict) -> list[tuple[str, str]]:
    s = report["settings"]
    panels = [("forward_ms", "forward time (ms)")]
    if s["backward"]:
        panels.append(("forward_backward_ms", "forward + backward time (ms)"))
    if s["memory"]:
        panels.append(("memory_forward_bytes", "peak memory, forward (MiB)"))
        if s["backward"]:
            panels.append(("memory_forward_backward_bytes", "peak memory, forward + backward (MiB)"))
    return panels


def _series(rows: list[dict], metric: str) -> tuple[list[int], list[float]]:
    pts = sorted((r["hw"], _value(r, metric)) for r in rows if _value(r, metric) is not None)
    return [p[0] for p in pts], [p[1] for p in pts]


def _title(report: dict) -> str:
    s, env = report["settings"], report["environment"]
    threads = f"{env['threads']} thread" + ("s" if env["threads"] != 1 else "")
    return (f"visattn bench: C={s['channels']}, batch {s['batch']}, {s['dtype']}, {env['device']} "
            f"({env['device_name']}, {threads}), torch {env['torch']}")


def _wrapped_title(report: dict, width_in: float, fontsize: float = 10) -> tuple[str, int]:
    """The title wrapped to a figure ``width_in`` inches wide (a long CPU name must not be cut off); its lines."""
    import textwrap

    chars = max(20, int(width_in * 72 / (0.62 * fontsize)))  # a generous average glyph width
    lines = textwrap.wrap(_title(report), chars)
    return "\n".join(lines), len(lines)


def _plain_log_labels(axis, lo: float, hi: float) -> None:
    """Label a log axis with plain numbers (0.5, 2, 10), minor ticks too when it spans under 1.5 decades."""
    from matplotlib import ticker

    plain = ticker.FuncFormatter(lambda v, _: f"{v:g}")
    axis.set_major_formatter(plain)
    narrow = lo > 0 and hi / lo < 30
    axis.set_minor_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else "")
                             if narrow else ticker.NullFormatter())


def _palette(plt) -> list:
    """Distinct colours without greys (greys are the guide slopes)."""
    tab20, tab20b = plt.get_cmap("tab20"), plt.get_cmap("tab20b")
    return [tab20(i) for i in range(20) if i not in (14, 15)] + [tab20b(i) for i in range(20)]


def plot_scaling(report: dict, path: str) -> None:
    """Log-log time and memory against ``H * W`` for every module; needs at least two sizes.

    Raises:
        ImportError: matplotlib is not installed.
        ValueError: fewer than two distinct ``H * W`` in the report.
    """
    hws = sorted({h * w for h, w in report["settings"]["sizes"]})
    if len(hws) < 2:
        raise ValueError("the scaling plot needs at least two sizes (--size 14 --size 28 ...)")
    plt = _pyplot()
    from matplotlib import ticker

    panels = _panels(report)
    by_key: dict[str, list[dict]] = {}
    for r in report["results"]:
        by_key.setdefault(r["key"], []).append(r)
    base = report.get("baseline")
    colors = _palette(plt)
    ncols = 2 if len(panels) > 1 else 1
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(7.5 * ncols + 3, 5.2 * nrows), squeeze=False)
    for ax, (metric, label) in zip(axes.flat, panels, strict=False):
        for i, (key, rows) in enumerate(sorted(by_key.items())):
            x, y = _series(rows, metric)
            if x:
                style = _FAMILY_STYLE.get(rows[0]["complexity"], "-")
                ax.plot(x, y, style, marker="o", ms=3.5, lw=1.4, color=colors[i % len(colors)],
                        label=f"{key} {rows[0]['complexity']}")
        anchor = None
        if base:
            x, y = _series(base["results"], metric)
            if x:
                ax.plot(x, y, "-", color="black", lw=2.4, marker="s", ms=4, label=f"{base['name']} (baseline)")
                anchor = (x[0], y[0])
        if anchor is None:
            firsts = [_series(rows, metric) for rows in by_key.values()]
            firsts = sorted((x[0], y[0]) for x, y in firsts if x)
            anchor = firsts[len(firsts) // 2] if firsts else None
        if anchor is not None:
            x0, y0 = anchor
            for slope, name in _GUIDES:
                ax.plot([x0, hws[-1]], [y0, y0 * (hws[-1] / x0) ** slope], color="0.55", lw=1.0, ls=(0, (1, 2)),
                        zorder=0)
                ax.annotate(f"∝ {name}", (hws[-1], y0 * (hws[-1] / x0) ** slope), fontsize=7, color="0.45",
                            xytext=(3, 0), textcoords="offset points", va="center")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(hws, [f"{h}x{w}\n({h * w})" for h, w in report["settings"]["sizes"]], fontsize=7)
        ax.minorticks_off()
        ax.yaxis.set_minor_locator(ticker.LogLocator(subs=(2, 5)))
        _plain_log_labels(ax.yaxis, *ax.get_ylim())
        ax.set_xlabel("H x W (log scale)")
        ax.set_ylabel(label)
        ax.set_title(label, fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=7, frameon=False,
               title="solid: O(HW)\ndashed: O(HW(H+W))\ndotted: O((HW)^2)\ngrey dots: guide slopes",
               title_fontsize=7, alignment="left")
    title, lines = _wrapped_title(report, fig.get_figwidth())
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1 - 2.3 / fig.get_figwidth(), 1 - (0.1 + 0.2 * lines) / fig.get_figheight()))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_overhead(report: dict, path: str) -> None:
    """Horizontal bars: each module's time relative to the baseline convolution, one bar per size.

    Raises:
        ImportError: matplotlib is not installed.
        ValueError: the report has no baseline.
    """
    base = report.get("baseline")
    if not base:
        raise ValueError("the overhead plot needs a baseline (--baseline conv3x3)")
    plt = _pyplot()
    sizes = [tuple(s) for s in report["settings"]["sizes"]]
    metrics = [("forward_time", "forward time")]
    if report["settings"]["backward"]:
        metrics.append(("forward_backward_time", "forward + backward time"))
    keys = list(dict.fromkeys(r["key"] for r in report["results"]))
    ratio = {(r["key"], tuple(r["size"]), m): (r["relative"] or {}).get(m) for r in report["results"]
             for m, _ in metrics}
    reasons = {r["key"]: r["reason"] or r["status"] for r in report["results"] if r["status"] != "ok"}
    largest = sizes[-1] if sizes else None
    keys.sort(key=lambda k: ratio.get((k, largest, "forward_time")) or 0.0)
    title, lines = _wrapped_title(report, 6.5 * len(metrics))
    top = 0.8 + 0.2 * (lines - 1)  # inches above the panels: title lines, then the legend
    height = max(3.0, 0.22 * len(keys) * max(1, len(sizes)) + 1.5) + 0.2 * (lines - 1)
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.5 * len(metrics), height), squeeze=False)
    cmap = plt.get_cmap("viridis")
    bar = 0.8 / max(1, len(sizes))
    for ax, (metric, label) in zip(axes.flat, metrics, strict=False):
        for j, size in enumerate(sizes):
            ys, vals = [], []
            for i, key in enumerate(keys):
                v = ratio.get((key, size, metric))
                if v:
                    ys.append(i + 0.4 - bar * (j + 0.5))  # smallest size on top
                    vals.append(v)
            ax.barh(ys, vals, height=bar, color=cmap(j / max(1, len(sizes) - 1) * 0.85),
                    label=f"{size[0]}x{size[1]}")
        ax.axvline(1.0, color="black", lw=1)
        for i, key in enumerate(keys):
            if not any(ratio.get((key, size, metric)) for size in sizes):
                ax.annotate(f"not measured: {reasons.get(key, '')}", (0.01, i), xycoords=("axes fraction", "data"),
                            va="center", fontsize=6.5, color="0.4", annotation_clip=False)
        ax.set_xscale("log")
        _plain_log_labels(ax.xaxis, *ax.get_xlim())
        ax.set_yticks(range(len(keys)), keys, fontsize=8)
        ax.set_ylim(-0.6, len(keys) - 0.4)
        ax.set_xlabel(f"{label} / {base['name']} ({base['definition']})", fontsize=8)
        ax.set_title(f"{label} relative to {base['name']} (1 = one {base['name']})", fontsize=10)
        ax.grid(True, axis="x", which="both", alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    # in inches from the top: title 0.1-0.3 (0.2 more per extra line), legend 0.4 below it, then the panels
    fig.suptitle(title, fontsize=10, y=1 - 0.1 / height, va="top")
    fig.legend(handles, labels, title="H x W", fontsize=7, title_fontsize=7, loc="upper center", ncol=len(sizes),
               bbox_to_anchor=(0.5, 1 - (top - 0.45) / height), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - top / height))
    fig.savefig(path, dpi=120)
    plt.close(fig)
