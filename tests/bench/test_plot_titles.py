"""bench's charts keep their whole title inside the figure, even with a long CPU name."""

import json
from pathlib import Path

import pytest

from visattn.bench import plots

REPORT = Path(__file__).parents[2] / "benchmarks" / "results" / "bench-cpu.json"
LONG_CPU = "Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz with a very long marketing name, 56 cores"


@pytest.mark.parametrize("plot", ["plot_overhead", "plot_scaling"])
def test_title_with_a_long_cpu_name_is_not_clipped(plot, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    report = json.loads(REPORT.read_text())
    report["environment"]["device_name"] = LONG_CPU
    report["results"] = [r for r in report["results"] if r["key"] in ("se", "cbam", "nonlocal")]
    figures = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    getattr(plots, plot)(report, str(tmp_path / "chart.png"))
    fig = next(f for f in figures if f is not None)
    fig.canvas.draw()
    box, page = fig._suptitle.get_window_extent(), fig.bbox
    assert box.x0 >= page.x0 and box.x1 <= page.x1 and box.y1 <= page.y1, "the title runs off the figure"
    assert LONG_CPU.split()[-1] in fig._suptitle.get_text().replace("\n", " ")
    for ax in fig.axes:  # and no panel or legend runs into it
        assert ax.get_window_extent().y1 <= box.y0 + 1
    for legend in fig.legends:
        assert legend.get_window_extent().y1 <= box.y0 + 1
    plt.close(fig)
