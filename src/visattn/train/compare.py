"""`visattn compare` and `visattn ablate`: many runs of one recipe, then a leaderboard.

Each run lives in its own folder under the output folder, named by what differs
(``se-s1``, ``se-r8-s1``); finished runs are skipped and unfinished ones resume, so a comparison
can be interrupted and started again with the same command.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from ..registry import info, list_modules
from ..spec import literal_or_word, parse_modules, split_top_level
from ..stats import ALPHA, MIN_SEEDS, PairedTest, paired_differences, paired_t_test
from .checkpoint import atomic_write_text
from .config import TrainConfig
from .trainer import train

__all__ = ["Variant", "compare", "ablation_variants", "parse_variants", "parse_head_variants", "parse_transform",
           "leaderboard_rows", "model_latency", "latency_stats", "paired_delta", "paired_test", "describe_recipe",
           "ABLATIONS"]


@dataclass(frozen=True)
class Variant:
    """One entry of a comparison: a label and the recipe changes it makes."""

    label: str
    attention: str | None = None
    position: str = "standard"
    attention_kwargs: tuple[tuple[str, Any], ...] = ()
    group: str = ""
    transform: str | None = None  # a transform-role module at the input ("stn": the ST-CNN)
    transform_kwargs: tuple[tuple[str, Any], ...] = ()  # its arguments (stn: output_size, loc_net)
    head: str | None = None  # segmentation: the decode head (its module arguments in attention_kwargs)

    @property
    def slug(self) -> str:
        """Folder name: the module, then what differs from its defaults (equal recipes share a folder)."""
        if self.head is not None:
            parts = [self.head, *(f"{k}{v}" for k, v in self.attention_kwargs)]
            return "-".join(str(p).replace("_", "") for p in parts)
        transform = [self.transform, *(f"{k}{_slug_value(v)}" for k, v in self.transform_kwargs)]
        parts = (transform if self.transform else []) + [self.attention or "none"]
        if self.transform and not self.attention:
            parts = transform
        if self.position != "standard":
            parts.append(self.position)
        defaults = info(self.attention).defaults if self.attention else {}
        parts += [f"{k}{v}" for k, v in self.attention_kwargs if defaults.get(k, object()) != v]
        return "-".join(str(p).replace("_", "") for p in parts)

    @property
    def plain(self) -> bool:
        """The network without any attention module or transform (for segmentation: the FCN head)."""
        if self.head is not None:
            return self.head == "fcn"
        return self.attention is None and self.transform is None

    def apply(self, base: TrainConfig, seed: int) -> TrainConfig:
        head = {"head": self.head} if self.head is not None else {}
        transform = ({"transform": self.transform, "transform_kwargs": dict(self.transform_kwargs)}
                     if self.transform else {})  # else the base's own (--transform)
        return replace(base, attention=self.attention, position=self.position,
                       attention_kwargs=dict(self.attention_kwargs), seed=seed, **transform, **head)


def _slug_value(value: Any) -> str:
    return "x".join(str(v) for v in value) if isinstance(value, (tuple, list)) else str(value)


#: How a leaderboard's verdict column is decided, in words (the README and docs quote it).
VERDICT_RULE = (f"a two-sided paired t-test of the per-seed Δ against zero at the {ALPHA:.0%} level: ahead or behind "
                f"when p < {ALPHA:g}, level otherwise, and no verdict below {MIN_SEEDS} seeds (the cell gives p).")


def parse_variants(text: str) -> list[Variant]:
    """``--attention`` in the module grammar (``none,se,sge:groups=8,stn``) -> comparison entries.

    A transform-role key (``stn``, ``stn:output_size=30``) becomes the network with that transform at its
    input (the ST-CNN; its localisation net sized for the input unless the arguments say otherwise);
    ``none`` is the plain network.

    Raises:
        ValueError: an unknown key or argument (:class:`~visattn.spec.SpecError`) or an empty list.
    """
    variants = []
    for spec in parse_modules(text, allow_none=True):
        if spec.key != "none" and info(spec.key).role == "transform":
            variants.append(Variant(spec.text, None, transform=spec.key, transform_kwargs=spec.kwargs))
        else:
            variants.append(Variant(spec.text, None if spec.key == "none" else spec.key, attention_kwargs=spec.kwargs))
    return variants


def parse_transform(text: str | None) -> tuple[str | None, dict[str, Any]]:
    """``--transform``: ``(key, arguments)`` of one transform module (``stn:output_size=30``); none: ``(None, {})``.

    Raises:
        ValueError: not one transform module, or an argument it does not take.
    """
    if text is None or text.strip().lower() == "none":
        return None, {}
    specs = parse_modules(text)
    if len(specs) != 1 or info(specs[0].key).role != "transform":
        raise ValueError(f"{text}: expected one transform module, e.g. stn or stn:output_size=30 "
                         f"(transforms: {', '.join(list_modules(role='transform'))})")
    return specs[0].key, dict(specs[0].kwargs)


def parse_head_variants(text: str) -> list[Variant]:
    """``--head`` in the module grammar over decode heads (``fcn,cc:recurrence=1``) -> comparison entries.

    Raises:
        ValueError: an empty list, an unknown head, or arguments its constructor refuses.
    """
    tokens = [t.strip() for t in split_top_level(text, ",") if t.strip()]
    if not tokens:
        raise ValueError("give at least one head, e.g. fcn,cc")
    return [_head_variant(token) for token in tokens]


def _head_variant(token: str) -> Variant:
    from ..segmentation import create_segmenter, list_heads

    name, *settings = split_top_level(token, ":")
    name = name.strip()
    if name not in list_heads():
        raise ValueError(f"unknown segmentation head {name!r}; choose from {', '.join(list_heads())}")
    kwargs = []
    for item in settings:
        arg, eq, raw = item.partition("=")
        if not eq or not arg.strip():
            raise ValueError(f"{token}: expected ARG=VALUE after ':', got {item!r}")
        kwargs.append((arg.strip(), literal_or_word(raw.strip())))
    if kwargs:  # refused here, in one line, rather than in a run's subprocess
        try:
            create_segmenter(name, 2, backbone="tiny", input_size=32, **dict(kwargs))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{token}: {err}") from None
    return Variant(token, None, attention_kwargs=tuple(kwargs), head=name)


#: The SE paper's ablations (Hu et al., Tables 11-14): group -> (column title, argument, values).
ABLATIONS: dict[str, tuple[str, str, tuple[Any, ...]]] = {
    "squeeze (Table 11)": ("Squeeze", "squeeze", ("avg", "max")),
    "excitation (Table 12)": ("Excitation", "gate_layer", ("sigmoid", "tanh", "relu")),
    "reduction ratio (Table 10)": ("Ratio r", "reduction", (2, 4, 8, 16, 32)),
    "integration strategy (Table 14)": ("Design", "position", ("standard", "pre", "post", "identity")),
}


def ablation_variants(key: str = "se") -> list[Variant]:
    """The SE ablation grid. The default setting is in every table; its runs are shared (same folder)."""
    if key != "se":
        raise ValueError(f"ablations are defined for 'se' (the SE paper's Tables 10-14), not {key!r}")
    out = []
    for group, (_, name, values) in ABLATIONS.items():
        for value in values:
            if name == "position":
                out.append(Variant(str(value), "se", position=value, group=group))
            else:
                out.append(Variant(str(value), "se", attention_kwargs=((name, value),), group=group))
    return out


def model_latency(model: torch.nn.Module, input_shape: tuple[int, ...], device: str = "cpu",
                  repeat: int = 30) -> float:
    """Median forward latency in milliseconds (inference mode, after warm-up)."""
    return latency_stats(model, input_shape, device, repeat)["median"]


def latency_stats(model: torch.nn.Module, input_shape: tuple[int, ...], device: str = "cpu",
                  repeat: int = 30) -> dict[str, float]:
    """Forward latency in milliseconds: ``median``, ``p10`` and ``p90`` of ``repeat`` timed calls after warm-up."""
    model = model.to(device).eval()
    x = torch.randn(input_shape, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = []
    with torch.inference_mode():
        for _ in range(5):
            model(x)
        for _ in range(repeat):
            sync()
            t0 = time.perf_counter()
            model(x)
            sync()
            times.append(time.perf_counter() - t0)
    deciles = statistics.quantiles(times, n=10)
    return {"median": 1e3 * statistics.median(times), "p10": 1e3 * deciles[0], "p90": 1e3 * deciles[-1]}


def compare(base: TrainConfig, variants: Sequence[Variant], seeds: Sequence[int], out: str | Path, *,
            progress: bool = True, log: Callable[..., None] = print, latency: bool = True,
            jobs: int = 1) -> list[dict]:
    """Train every variant with every seed into ``out/<slug>-s<seed>``; write the leaderboard; return its rows.

    ``jobs > 1`` trains that many runs at once in separate CPU processes, each with an equal share of
    the threads (on a small CPU, two one-thread runs beat one two-thread run: ResNet-20's layers
    are too small to keep two threads busy). Log lines then carry the run's name; there are no
    progress bars.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if jobs > 1 and (base.device not in ("cpu", "auto") or base.device == "auto" and torch.cuda.is_available()):
        raise ValueError("parallel runs (jobs > 1) are for CPU training; on a GPU run them one at a time")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    unique = list({v.slug: v for v in variants}.values())
    _check_buildable(base, unique)
    tasks = [(variant.slug, variant.apply(base, seed), out / f"{variant.slug}-s{seed}")
             for variant in unique for seed in seeds]
    results: dict[str, list[dict]] = {}
    if jobs == 1:
        for done, (slug, config, run_dir) in enumerate(tasks, 1):
            log(f"[{done}/{len(tasks)}] {slug}, seed {config.seed} -> {run_dir}")
            results.setdefault(slug, []).append(train(config, run_dir, progress=progress, log=log))
    else:
        for (slug, _, _), result in zip(tasks, _train_in_parallel(tasks, jobs, log), strict=True):
            results.setdefault(slug, []).append(result)
    rows = leaderboard_rows(base, variants, results, latency=latency)
    write_leaderboard(out, base, rows)
    return rows


def _train_in_parallel(tasks: list[tuple[str, TrainConfig, Path]], jobs: int,
                       log: Callable[..., None]) -> list[dict]:
    """Run ``train`` for each task in ``jobs`` spawned processes; results in task order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, torch.get_num_threads() // jobs)
    context = multiprocessing.get_context("spawn")  # fork after torch has started threads can hang
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=torch.set_num_threads,
                             initargs=(threads,)) as pool:
        futures = []
        for done, (slug, config, run_dir) in enumerate(tasks, 1):
            log(f"[{done}/{len(tasks)}] {slug}, seed {config.seed} -> {run_dir} (queued, {jobs} at a time, "
                f"{threads} thread(s) each)")
            futures.append(pool.submit(train, config, run_dir, progress=False,
                                       log=partial(print, f"[{run_dir.name}]", flush=True)))
        try:
            return [future.result() for future in futures]
        except BaseException:
            pool.shutdown(cancel_futures=True)  # a failed or interrupted run stops the queue
            raise


def _check_buildable(base: TrainConfig, variants: Sequence[Variant]) -> None:
    """Build every variant's model once before any training, so a bad setting fails in seconds, not hours."""
    for variant in variants:
        try:
            _model_and_input(variant.apply(base, 0))
        except (ValueError, TypeError) as err:
            raise ValueError(f"{variant.label}: {err}") from None


def _model_and_input(config: TrainConfig) -> tuple[torch.nn.Module, tuple[int, ...]]:
    """The run's model, built without reading its data, and the shape of one input image (batch 1)."""
    from .tasks import get_task

    return get_task(config).model_and_input(config)


def _metric(base: TrainConfig) -> tuple[str, str]:
    """The headline score's result key and column title."""
    return ("miou", "mIoU %") if base.task == "segmentation" else ("accuracy", "top-1 acc. %")


def leaderboard_rows(base: TrainConfig, variants: Sequence[Variant], results: dict[str, list[dict]], *,
                     latency: bool = True) -> list[dict]:
    """One row per variant (and per ablation group it is in): the headline score over seeds, cost, latency.

    The score is the task's (``accuracy``, or ``miou`` for segmentation): row keys ``<score>_mean``,
    ``<score>_std`` and ``<score>_per_seed``.

    Latency is measured once per distinct model (slug) and reused wherever that model appears again,
    as the median of 30 timed calls with its p10 / p90 spread.
    """
    metric, _ = _metric(base)
    rows, seen = [], set()
    timed: dict[str, dict[str, float]] = {}
    for variant in variants:
        if variant.slug in seen and not variant.group:
            continue
        seen.add(variant.slug)
        runs = results[variant.slug]
        accs = [r[metric] for r in runs]
        first = runs[0]
        row = {
            "label": variant.label, "group": variant.group, "attention": variant.attention or "none",
            "transform": variant.transform, "plain": variant.plain,
            "slug": variant.slug, f"{metric}_mean": statistics.fmean(accs),
            f"{metric}_std": statistics.stdev(accs) if len(accs) > 1 else 0.0, "seeds": len(accs),
            f"{metric}_per_seed": {str(r["config"]["seed"]): r[metric] for r in runs if "config" in r},
            "params": first["params"], "flops": first["flops"],
            "train_time_s": statistics.fmean(r["train_time_s"] for r in runs),
            "images_per_s": statistics.fmean(r["images_per_s"] for r in runs),
        }
        if variant.head is not None:
            row["head"] = variant.head
        if latency:
            if variant.slug not in timed:
                model, shape = _model_and_input(variant.apply(base, 0))
                timed[variant.slug] = {f"cpu_{k}": v for k, v in latency_stats(model, shape, "cpu").items()}
                if torch.cuda.is_available():
                    timed[variant.slug].update({f"gpu_{k}": v for k, v in latency_stats(model, shape, "cuda").items()})
            t = timed[variant.slug]
            row["latency_cpu_ms"], row["latency_cpu_p10_ms"], row["latency_cpu_p90_ms"] = (
                t["cpu_median"], t["cpu_p10"], t["cpu_p90"])
            if "gpu_median" in t:
                row["latency_gpu_ms"], row["latency_gpu_p10_ms"], row["latency_gpu_p90_ms"] = (
                    t["gpu_median"], t["gpu_p10"], t["gpu_p90"])
        rows.append(row)
    return rows


def paired_delta(row: dict, baseline: dict, metric: str = "accuracy") -> tuple[float, float, int]:
    """Score difference to ``baseline``: mean and std of the per-seed differences (paired by seed), seeds."""
    a, b = row.get(f"{metric}_per_seed") or {}, baseline.get(f"{metric}_per_seed") or {}
    common = sorted(set(a) & set(b))
    if not common:  # no per-seed record: the difference of the means, spread unknown
        return row[f"{metric}_mean"] - baseline[f"{metric}_mean"], float("nan"), 0
    diffs = [a[s] - b[s] for s in common]
    return statistics.fmean(diffs), statistics.stdev(diffs) if len(diffs) > 1 else float("nan"), len(diffs)


def paired_test(row: dict, baseline: dict, metric: str = "accuracy") -> PairedTest | None:
    """The paired t-test of ``row``'s per-seed score differences to ``baseline`` (:mod:`visattn.stats`).

    None when the rows share no seed. Its ``verdict`` is ``"too few seeds"`` below three shared seeds.
    """
    a, b = row.get(f"{metric}_per_seed") or {}, baseline.get(f"{metric}_per_seed") or {}
    diffs = paired_differences(a, b)
    return paired_t_test(diffs) if diffs else None


def _fmt_verdict(r: dict, baseline: dict | None, metric: str) -> str:
    if not baseline or r is baseline:
        return ""
    test = paired_test(r, baseline, metric)
    return test.cell() if test else "-"


def _fmt_delta(r: dict, baseline: dict | None, metric: str) -> str:
    if not baseline:
        return ""
    mean, std, n = paired_delta(r, baseline, metric)
    return f"{mean:+.2f} ± {std:.2f}" if n > 1 and r is not baseline else f"{mean:+.2f}"


def _fmt_latency(r: dict, kind: str) -> str:
    if f"latency_{kind}_ms" not in r:
        return "-"
    spread = (f" ({r[f'latency_{kind}_p10_ms']:.2f}-{r[f'latency_{kind}_p90_ms']:.2f})"
              if f"latency_{kind}_p10_ms" in r else "")
    return f"{r[f'latency_{kind}_ms']:.2f}{spread}"


def _fmt_row(r: dict, baseline: dict | None, metric: str = "accuracy") -> str:
    mean, std = r[f"{metric}_mean"], r[f"{metric}_std"]
    acc = f"{mean:.2f} ± {std:.2f}" if r["seeds"] > 1 else f"{mean:.2f}"
    gpu = f" {_fmt_latency(r, 'gpu')} |" if "latency_gpu_ms" in r else ""
    return (f"| {r['label']} | {acc} | {_fmt_delta(r, baseline, metric)} | {_fmt_verdict(r, baseline, metric)} | "
            f"{r['params']:,} | "
            f"{r['flops'] / 1e6:.2f} | {_fmt_latency(r, 'cpu')} |{gpu} {r['train_time_s']:.0f} | "
            f"{r['images_per_s']:,.0f} |")


def describe_recipe(base: TrainConfig, seeds: int) -> str:
    """One line: network, data set (with its options), budget and seeds."""
    if base.task == "segmentation":
        net = f"{base.backbone}-D{base.output_stride} decode heads" + (
            f" (head at {base.head_lr_scale:g}x the lr)" if base.head_lr_scale != 1 else "")
    else:
        net = base.backbone + (f" + {base.transform} at the input" if base.transform else "")
        net += "" if base.global_pool else " (classifier on the whole last map, no global pooling)"
    data = base.dataset + (" (" + ", ".join(f"{k}={v}" for k, v in base.dataset_kwargs.items()) + ")"
                           if base.dataset_kwargs else "")
    if base.dataset == "fashion-scenes":
        data += f" ({base.scene_size}x{base.scene_size})"
    images = f"{base.train_limit:,}" if base.train_limit else "all"
    return (f"{net} on {data}, {images} training images x {base.epochs} epoch(s), batch {base.batch_size}, "
            f"lr {base.lr} ({base.schedule}), {seeds} seed(s)")


def _which(base: TrainConfig) -> str:
    """How a limit picked its images: the first (runs recorded before; generated scenes), or a seeded random subset."""
    if base.subset_seed is None or base.dataset == "fashion-scenes":
        return "the first"
    kind = "random" if base.task == "segmentation" else "class-stratified random"
    return f"a {kind} subset (seed {base.subset_seed}) of"


def leaderboard_markdown(base: TrainConfig, rows: list[dict], title: str = "Leaderboard") -> str:
    """Markdown tables: one for a comparison, one per ablation group (the SE paper's layout)."""
    gpu = any("latency_gpu_ms" in r for r in rows)
    seeds = max(r["seeds"] for r in rows)
    metric, title_metric = _metric(base)
    head = ("| {first} | " + title_metric + (" (mean ± std)" if seeds > 1 else "")
            + " | Δ vs {ref}" + (" (± std of per-seed Δ)" if seeds > 1 else "")
            + f" | verdict (paired t-test, {ALPHA:.0%})"
            + " | params | MFLOPs | CPU latency ms (p10-p90) |"
            + (" GPU latency ms (p10-p90) |" if gpu else "") + " train time s | train img/s |")
    rule = "|---" * (10 if gpu else 9) + "|"
    if base.task == "segmentation":
        what = f"{base.backbone}-D{base.output_stride} decode heads"
        where = base.dataset + (f" ({base.scene_size}x{base.scene_size})" if base.dataset == "fashion-scenes" else "")
    else:
        what, where = base.backbone, base.dataset
    lines = [f"# {title}", "",
             f"{what} on {where}, {base.epochs} epoch(s), batch {base.batch_size}, lr {base.lr} ({base.schedule})"
             + (f", decode head at {base.head_lr_scale:g}x the lr" if base.task == "segmentation"
                and base.head_lr_scale != 1 else "") + f", {seeds} seed(s) each"
             + (f", {_which(base)} {base.train_limit:,} training images" if base.train_limit
                else ", all training images")
             + (f", {_which(base)} {base.val_limit:,} test images" if base.val_limit else ", all test images")
             + (f"; data set options {base.dataset_kwargs}" if base.dataset_kwargs else "")
             + (f"; {base.transform} at the input of every network" if base.transform else "")
             + ("; no global pooling: the classifier reads the whole last map" if not base.global_pool else "")
             + f". Δ: {title_metric.split()[0]} minus the reference's, per seed (the same seed gives both runs the "
             "same data order), "
             f"then mean ± std over seeds. Verdict: {VERDICT_RULE} "
             "Latency: median forward of one image, batch 1, with its p10-p90 over 30 "
             "calls, measured once per distinct model. Train time and images/s are wall-clock on the machine as it "
             "was during each run.", ""]
    groups = list(dict.fromkeys(r["group"] for r in rows))
    for group in groups:
        members = [r for r in rows if r["group"] == group]
        if not group:
            members.sort(key=lambda r: -r[f"{metric}_mean"])
            baseline = next((r for r in members if r.get("plain", r["attention"] == "none")),
                            next((r for r in members if r.get("head") == "unet"), None))  # U-Net vs Attention U-Net
        else:  # the module's default setting (its bare key), as the paper's tables compare against
            baseline = next((r for r in members if r["slug"] == r["attention"]), members[0])
            lines += [f"## {group}", ""]
        first = ABLATIONS[group][0] if group in ABLATIONS else "module"
        ref = baseline["label"] if baseline else "-"
        lines += [head.format(first=first, ref=ref), rule]
        lines += [_fmt_row(r, baseline, metric) for r in members]
        lines.append("")
    return "\n".join(lines)


def write_leaderboard(out: Path, base: TrainConfig, rows: list[dict], title: str = "Leaderboard") -> None:
    atomic_write_text(out / "leaderboard.json", json.dumps({"config": base.to_dict(), "rows": rows}, indent=2))
    atomic_write_text(out / "leaderboard.md", leaderboard_markdown(base, rows, title))
    try:
        from .plots import plot_leaderboard
    except ImportError:
        print("matplotlib is not installed: no plots (pip install 'visattn[viz]')", file=sys.stderr)
        return
    plot_leaderboard(out, rows, describe_recipe(base, max(r["seeds"] for r in rows)), *_metric(base))
