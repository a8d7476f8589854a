"""visattn bench: the report's numbers, its schema, skipped modules, peers, the CLI's errors."""

import copy
import csv
import json
import math
import shlex
import time

import numpy as np
import pytest
import torch
from torch import nn

import visattn
from visattn.bench import BenchConfig, run_bench, subjects, validate
from visattn.bench.flops import count_ops
from visattn.bench.measure import MIN_SAMPLES, percentile, summarize, time_step
from visattn.bench.subjects import Spec, build_subject
from visattn.cli import build_parser, main

C, SIZE, BATCH = 16, 8, 2


def _second_key() -> str:
    """A second registered module, preferably a gate (two inputs) to cover that path."""
    keys = [k for k in visattn.list_modules() if k != "se"]
    gates = [k for k in keys if visattn.info(k).role == "gate"]
    return (gates or keys or ["se"])[0]


KEYS = list(dict.fromkeys(["se", _second_key()]))


def _exit_code(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def _n_params(key: str, channels: int, size: tuple[int, int]) -> int:
    kwargs = {"feature_size": size} if visattn.info(key).size_bound else {}
    return sum(p.numel() for p in visattn.create(key, channels, **kwargs).parameters())


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """One small run through the command line, with every output file and backward (memory: see below)."""
    out = tmp_path_factory.mktemp("bench")
    paths = {ext: str(out / f"run.{ext}") for ext in ("json", "csv", "md")}
    argv = ["bench", *KEYS, "--channels", str(C), "--size", str(SIZE), "--batch", str(BATCH), "--repeat", "2",
            "--warmup", "1", "--max-time", "30", "--backward", "--no-memory", "--json", paths["json"],
            "--csv", paths["csv"], "--md", paths["md"], "-q"]
    code = main(argv)
    with open(paths["json"]) as f:
        report = json.load(f)
    return code, report, paths


def test_cli_run_writes_a_valid_report(cli_run):
    code, report, paths = cli_run
    assert code == 0
    assert validate(report) == []
    assert [r["key"] for r in report["results"]] == KEYS
    assert report["summary"] == {"ok": len(KEYS), "skipped": 0, "error": 0}
    env = report["environment"]
    assert env["device"] == "cpu" and env["threads"] == torch.get_num_threads() and env["torch"] == torch.__version__
    assert env["cpu_model"]
    with open(paths["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert [(r["kind"], r["key"]) for r in rows] == [("baseline", "conv3x3")] + [("module", k) for k in KEYS]
    with open(paths["md"]) as f:
        text = f.read()
    assert all(f"| {k} |" in text for k in KEYS) and "conv3x3 (baseline)" in text


def test_reported_numbers(cli_run):
    _, report, _ = cli_run
    base = report["baseline"]["results"][0]
    hw = SIZE * SIZE
    assert base["params"] == C * C * 9
    assert base["flops"] == 2 * BATCH * C * C * 9 * hw
    for r in report["results"]:
        assert r["status"] == "ok", r["reason"]
        assert r["params"] == _n_params(r["key"], C, (SIZE, SIZE))
        assert r["relative"]["params"] == pytest.approx(r["params"] / base["params"])
        assert r["relative"]["flops"] == pytest.approx(r["flops"] / base["flops"])
        for name in ("forward_ms", "forward_backward_ms"):
            t = r[name]
            assert t["n"] == 2 and 0 < t["p10"] <= t["median"] <= t["p90"]
        assert r["relative"]["forward_time"] == pytest.approx(r["forward_ms"]["median"] / base["forward_ms"]["median"])
        assert r["memory_forward_bytes"] is None and r["relative"]["memory_forward"] is None  # --no-memory


def test_command_line_reproduces_the_settings(cli_run):
    _, report, _ = cli_run
    argv = shlex.split(report["command"])
    assert argv[:2] == ["visattn", "bench"]
    args = build_parser().parse_args(argv[1:])
    s = report["settings"]
    assert args.keys == KEYS and args.sizes == [tuple(x) for x in s["sizes"]]
    assert (args.channels, args.batch, args.repeat, args.warmup, args.backward, args.max_time) == (
        s["channels"], s["batch"], s["repeat"], s["warmup"], s["backward"], s["max_time"])


def test_validator_finds_mistakes(cli_run):
    _, report, _ = cli_run
    bad = copy.deepcopy(report)
    bad["results"][0]["params"] = "many"
    del bad["results"][0]["flops"]
    bad["results"][0]["surprise"] = 1
    bad["settings"]["sizes"] = [[0, 8]]
    errors = validate(bad)
    assert any("$.results[0].params: expected integer" in e for e in errors)
    assert any("missing 'flops'" in e for e in errors)
    assert any("unexpected 'surprise'" in e for e in errors)
    assert any("$.settings.sizes[0][0]" in e and "minimum" in e for e in errors)


# ---------------------------------------------------------------- counting and timing helpers


def test_flop_and_elementwise_counts():
    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(C, C, 1, bias=False)
            self.pool = nn.AvgPool2d(3, stride=1, padding=1)

        def forward(self, x):
            y = torch.sigmoid(self.conv(x)) * x  # conv: 2*B*C*C*HW FLOPs; sigmoid, mul: N each
            y = torch.cat([y, y.transpose(2, 3).contiguous()], 1)  # data movement: 0
            return self.pool(y).mean((2, 3))  # pool: 9 per output (2N outputs); mean reads 2N

    x = torch.randn(BATCH, C, SIZE, SIZE)
    n = x.numel()
    counts = count_ops(Toy(), (x,))
    assert counts["flops"] == 2 * BATCH * C * C * SIZE * SIZE
    assert counts["elementwise_ops"] == n + n + 9 * 2 * n + 2 * n
    assert counts["elementwise_by_op"] == {"avg_pool2d": 18 * n, "sigmoid": n, "mul": n, "mean": 2 * n}


def test_fused_attention_flops_are_counted_on_cpu():
    q, k, v = torch.randn(2, 3, 10, 4), torch.randn(2, 3, 12, 4), torch.randn(2, 3, 12, 5)

    class Attend(nn.Module):
        def forward(self, q):
            return nn.functional.scaled_dot_product_attention(q, k, v)

    # QK^T: 2*B*h*L*S*E, then AV: 2*B*h*L*S*Ev
    assert count_ops(Attend(), (q,))["flops"] == 2 * 2 * 3 * 10 * 12 * 4 + 2 * 2 * 3 * 10 * 12 * 5


def test_time_budget_stops_early_but_keeps_three_samples():
    calls = []

    def run():
        calls.append(1)
        time.sleep(0.005)

    assert len(time_step(run, repeat=50, warmup=2, max_time=0.001)) == MIN_SAMPLES == 3
    assert len(calls) == 1 + 3  # the first warm-up call already took longer than the budget
    samples = time_step(run, repeat=4, warmup=0)
    assert len(samples) == 4 and all(s >= 0.005 for s in samples)


def test_percentile_matches_numpy():
    values = list(np.random.default_rng(0).exponential(size=37))
    for q in (0, 10, 50, 90, 100):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_peak_memory_from_the_child_process():
    # at C=64, 64x64, batch 4 the output of conv1x1 and of SE (x * s) is 4 MiB; each step allocates it (plus
    # scratch), while the module and its input exist before the step and are not counted
    report = run_bench(BenchConfig(["se"], channels=64, sizes=[(64, 64)], batch=4, repeat=1, warmup=0,
                                   backward=True, baseline="conv1x1", threads=1))
    assert validate(report) == []
    out_bytes = 4 * 64 * 64 * 64 * 4
    slack = 512 * 1024  # the kernel's RSS counters are approximate (per-CPU caches of up to 64 pages)
    for row in (report["baseline"]["results"][0], report["results"][0]):
        assert row["status"] == "ok" and row["memory_note"] is None
        assert out_bytes - slack <= row["memory_forward_bytes"] < 8 * out_bytes
        # forward + backward: the output and the input's gradient at least
        assert row["memory_forward_backward_bytes"] >= 2 * out_bytes - slack
    rel = report["results"][0]["relative"]
    assert rel["memory_forward"] == pytest.approx(report["results"][0]["memory_forward_bytes"]
                                                  / report["baseline"]["results"][0]["memory_forward_bytes"])


def test_every_registered_key_gets_its_inputs():
    for key in visattn.list_modules():
        role = visattn.info(key).role
        try:
            module, inputs = build_subject(Spec("module", key, 64, (12, 12), 1))
        except ValueError:
            continue  # not buildable at this size: the bench reports it as skipped
        assert len(inputs) == (2 if role == "gate" else 1)
        if role == "gate":
            assert inputs[1].shape == (1, 64, 6, 6)
        with torch.inference_mode():
            module.eval()(*inputs)


# ---------------------------------------------------------------- skipped, failed, peers


def _raise_for(monkeypatch, bad_key: str, exc: Exception, at: str):
    real = subjects.build_module

    class Refuses(nn.Module):
        def forward(self, *inputs):
            raise exc

    def fake(key, channels, size):
        if key != bad_key:
            return real(key, channels, size)
        if at == "build":
            raise exc
        return Refuses()

    monkeypatch.setattr(subjects, "build_module", fake)


@pytest.mark.parametrize("at", ["build", "forward"])
def test_value_error_is_reported_as_skipped(monkeypatch, capsys, tmp_path, at):
    bad = KEYS[-1]
    _raise_for(monkeypatch, bad, ValueError(f"{bad}: input 8x8 is too small, needs 16x16"), at)
    path = tmp_path / "r.json"
    argv = ["bench", *KEYS, "--channels", str(C), "--size", str(SIZE), "--batch", str(BATCH), "--repeat", "1",
            "--warmup", "0", "--no-memory", "--json", str(path)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    assert f"skipped: {bad}: input 8x8 is too small" in captured.out
    report = json.loads(path.read_text())
    assert validate(report) == []
    rows = {r["key"]: r for r in report["results"]}
    assert rows[bad]["status"] == "skipped" and "too small, needs 16x16" in rows[bad]["reason"]
    assert rows[bad]["forward_ms"] is None and rows[bad]["relative"] is None
    if len(KEYS) > 1:
        assert rows["se"]["status"] == "ok"
    assert report["summary"]["skipped"] == 1


def test_other_exceptions_are_errors_with_exit_1(monkeypatch, capsys):
    _raise_for(monkeypatch, "se", RuntimeError("boom"), "forward")
    argv = ["bench", "se", "--channels", str(C), "--size", str(SIZE), "--repeat", "1", "--no-memory", "-q"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "se 8x8 failed: RuntimeError: boom" in err and "Traceback" not in err


def test_peers_have_equal_settings_and_a_ratio(monkeypatch):
    pytest.importorskip("timm")
    pytest.importorskip("torchvision")
    from visattn.bench import peers

    missing = peers.Peer("missing lib", "no_such_library_xyz:Module", "-", lambda cls, c, d: cls(c))
    monkeypatch.setitem(peers.PEERS, "se", (*peers.PEERS["se"], missing))
    report = run_bench(BenchConfig(["se"], channels=32, sizes=[(SIZE, SIZE)], batch=BATCH, repeat=2, warmup=1,
                                   memory=False, peers=True, baseline=None))
    assert validate(report) == []
    row = report["results"][0]
    by_name = {p["name"]: p for p in row["peers"]}
    assert set(by_name) == {"timm SEModule", "torchvision SqueezeExcitation", "missing lib"}
    for name in ("timm SEModule", "torchvision SqueezeExcitation"):
        p = by_name[name]
        assert p["status"] == "ok" and p["params"] == row["params"]  # same widths as visattn's SE
        assert p["ratio_forward"] == pytest.approx(row["forward_ms"]["median"] / p["forward_ms"]["median"])
    assert by_name["missing lib"]["status"] == "skipped" and "no_such_library_xyz" in by_name["missing lib"]["reason"]


# ---------------------------------------------------------------- the command line's errors


def test_unknown_key_exits_2_with_suggestion(capsys):
    assert main(["bench", "sse", "--size", "8"]) == 2
    err = capsys.readouterr().err
    assert "visattn bench: error:" in err and "Did you mean" in err and "'se'" in err and "Traceback" not in err


def test_pattern_without_match_exits_2(capsys):
    assert main(["bench", "zz*"]) == 2
    assert "no module matches 'zz*'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--size", "0"], "sizes must be positive"),
    (["--size", "-3"], "sizes must be positive"),
    (["--size", "eight"], "expected a size N or HxW"),
    (["--dtype", "float8"], "unknown dtype 'float8'"),
    (["--repeat", "0"], "expected an integer >= 1"),
    (["--max-time", "0"], "expected a positive number of seconds"),
    (["--channels", "0"], "expected an integer >= 1"),
    (["--baseline", "conv9x9"], "invalid choice"),
])
def test_bad_arguments_exit_2(argv, message, capsys):
    assert _exit_code(["bench", "se", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cuda_unavailable_exits_2(capsys):
    device = "cuda:99" if torch.cuda.is_available() else "cuda"
    assert main(["bench", "se", "--size", "8", "--device", device]) == 2
    err = capsys.readouterr().err
    expected = "CUDA device(s)" if torch.cuda.is_available() else "CUDA is not available"
    assert expected in err and "Traceback" not in err


def test_plot_needs_matplotlib_or_writes_pngs(tmp_path, capsys):
    argv = ["bench", "se", "--channels", str(C), "--size", "4", "--size", "6", "--batch", "1", "--repeat", "1",
            "--warmup", "0", "--no-memory", "-q", "--plot", str(tmp_path / "p.png")]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert main(argv) == 2
        assert "matplotlib" in capsys.readouterr().err
        assert not list(tmp_path.iterdir())
        return
    assert main(argv) == 0
    for name in ("p-scaling.png", "p-overhead.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_sizes_accept_rectangles():
    args = build_parser().parse_args(["bench", "se", "--size", "28x40", "--size", "7"])
    assert args.sizes == [(28, 40), (7, 7)]
    assert math.prod(args.sizes[0]) == 1120


#: eleven known samples (seconds), shuffled; a long tail makes the mean (15.5 ms) far from the median (6 ms)
KNOWN_SAMPLES_S = [x / 1e3 for x in (7, 3, 100, 1, 10, 5, 2, 9, 6, 4, 8)]


def test_summary_of_known_samples():
    s = summarize(KNOWN_SAMPLES_S)
    assert s["n"] == 11
    assert s["median"] == pytest.approx(6.0)  # the middle of 1..10, 100: not the mean
    assert s["p10"] == pytest.approx(2.0)  # position (11 - 1) * 0.1 = 1 of the sorted samples
    assert s["p90"] == pytest.approx(10.0)  # position 9
    even = summarize([0.004, 0.001, 0.003, 0.002])
    assert even["median"] == pytest.approx(2.5) and even["p10"] == pytest.approx(1.3)
    assert even["p90"] == pytest.approx(3.7)


def test_report_carries_the_summary_of_the_timed_samples(monkeypatch):
    from visattn.bench import runner

    monkeypatch.setattr(runner, "time_step", lambda run, **kw: list(KNOWN_SAMPLES_S))
    report = run_bench(BenchConfig(["se"], channels=8, sizes=[(4, 4)], batch=1, repeat=11, warmup=0, memory=False,
                                   backward=True))
    row = report["results"][0]
    for name in ("forward_ms", "forward_backward_ms"):
        assert row[name]["median"] == pytest.approx(6.0)
        assert row[name]["p10"] == pytest.approx(2.0) and row[name]["p90"] == pytest.approx(10.0)


def test_allocator_is_pinned_and_reported(monkeypatch):
    import ctypes
    import platform

    from visattn.bench import allocator

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    calls = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    for var in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "LD_PRELOAD"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(allocator, "_state", {})
    monkeypatch.setattr(ctypes, "CDLL", lambda name: FakeLibc())
    state = allocator.pin_allocator()
    assert sorted(calls) == [(-3, 32 << 20), (-1, 1 << 30)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
    assert "pinned by visattn" in state and "32 MiB" in state
    # a user's own choice is left alone and reported
    calls.clear()
    monkeypatch.setattr(allocator, "_state", {})
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert "MALLOC_MMAP_THRESHOLD_=65536 (environment)" in allocator.pin_allocator() and not calls
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libjemalloc.so.2")
    assert allocator.pin_allocator() == "jemalloc (LD_PRELOAD)" and not calls


def test_report_names_the_allocator(cli_run):
    _, report, paths = cli_run
    assert report["environment"]["allocator"]
    with open(paths["md"]) as f:
        assert f"allocator: {report['environment']['allocator']}" in f.read()
