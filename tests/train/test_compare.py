import json

import pytest

from visattn.cli import main
from visattn.train import TrainConfig, Variant, ablation_variants, compare
from visattn.train.compare import ABLATIONS, leaderboard_markdown


def base(data, **kw):
    return TrainConfig(**(dict(backbone="resnet20", data_dir=str(data), epochs=1, batch_size=16, train_limit=32,
                               val_limit=16, device="cpu") | kw))


def test_compare_two_seeds_leaderboard(tiny_fmnist, tmp_path):
    out = tmp_path / "cmp"
    rows = compare(base(tiny_fmnist), [Variant("none"), Variant("se", "se")], [1, 2], out, progress=False,
                   log=lambda *a: None)
    assert {r["attention"] for r in rows} == {"none", "se"}
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["none-s1", "none-s2", "se-s1", "se-s2"]
    se = next(r for r in rows if r["attention"] == "se")
    runs = [json.loads((out / f"se-s{s}" / "result.json").read_text())["accuracy"] for s in (1, 2)]
    assert se["accuracy_mean"] == pytest.approx(sum(runs) / 2) and se["seeds"] == 2
    assert se["params"] > next(r for r in rows if r["attention"] == "none")["params"]
    assert se["latency_cpu_ms"] > 0
    md = (out / "leaderboard.md").read_text()
    assert "| se |" in md and "| none |" in md and "± " in md
    assert (out / "accuracy_vs_params.png").stat().st_size > 1000
    assert (out / "accuracy_vs_latency.png").exists()
    # run again: every run is finished, nothing is trained
    again = compare(base(tiny_fmnist), [Variant("none"), Variant("se", "se")], [1, 2], out, progress=False,
                    log=lambda *a: None, latency=False)
    assert [r["accuracy_mean"] for r in again] == [r["accuracy_mean"] for r in rows]


def test_ablation_grid_shares_the_default_run():
    variants = ablation_variants("se")
    assert len(variants) == sum(len(v[2]) for v in ABLATIONS.values()) == 14
    slugs = {v.slug for v in variants}
    assert len(slugs) == 11  # r=16, avg squeeze, sigmoid gate and standard position are one recipe
    assert "se" in slugs and "se-reduction2" in slugs and "se-identity" in slugs and "se-gatelayertanh" in slugs
    with pytest.raises(ValueError, match="se"):
        ablation_variants("cbam")


def test_ablation_markdown_has_one_table_per_group():
    rows = [dict(label=str(v.label), group=v.group, attention="se", slug=v.slug, accuracy_mean=90.0 + i,
                 accuracy_std=0.1, seeds=2, params=100, flops=1e6, train_time_s=1.0, images_per_s=10.0)
            for i, v in enumerate(ablation_variants())]
    md = leaderboard_markdown(TrainConfig(), rows, "SE ablations")
    for group, (column, _, _) in ABLATIONS.items():
        assert f"## {group}" in md and f"| {column} |" in md
    # each table's deltas are against SE's default setting (r = 16 in the ratio table), as in the paper
    ratio_table = md.split("## reduction ratio")[1].split("##")[0]
    assert "| Δ vs 16 (± std of per-seed Δ) |" in md and "| 16 | " in md and "| +0.00 |" in ratio_table
    assert "all training images, all test images" in md


def test_cli_compare_and_errors(tiny_fmnist, tmp_path, capsys):
    out = tmp_path / "c"
    argv = ["compare", "--attention", "none,eca", "--data-dir", str(tiny_fmnist), "--train-limit", "32",
            "--val-limit", "16", "--batch-size", "16", "--out", str(out), "--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    assert "| eca |" in capsys.readouterr().out
    assert main(["compare", "--attention", "none,sex", "--out", str(out)]) == 2
    assert "Did you mean 'se'" in capsys.readouterr().err
    assert main(["train", "--dataset", "cifar10", "--out", str(tmp_path / "x")]) == 2
    assert "--data-dir" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", "--seeds", "1,x"])


def test_cli_train_missing_data_is_a_message(tmp_path, capsys, monkeypatch):
    from visattn.data import fashion_mnist as fm

    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "nowhere")
    monkeypatch.delenv("VISATTN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("VISATTN_FASHION_MNIST_URL", "http://127.0.0.1:9/")
    assert main(["train", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "apt-get install dataset-fashion-mnist" in err and "Traceback" not in err


def test_module_arguments_in_compare_and_early_failure(tiny_fmnist, tmp_path, capsys):
    common = ["--data-dir", str(tiny_fmnist), "--train-limit", "32", "--val-limit", "16", "--batch-size", "16",
              "--no-progress", "--device", "cpu"]
    out = tmp_path / "bad"
    assert main(["compare", "--attention", "none,sge", "--out", str(out), *common]) == 2
    assert "sge: SpatialGroupEnhance" in capsys.readouterr().err
    assert not (out / "none-s0").exists()  # nothing was trained before the error
    out = tmp_path / "good"
    assert main(["compare", "--attention", "sge:groups=8", "--out", str(out), *common]) == 0
    assert "| sge:groups=8 |" in capsys.readouterr().out
    assert json.loads((out / "sge-groups8-s0" / "config.json").read_text())["attention_kwargs"] == {"groups": 8}


def test_parallel_jobs_train_the_same_runs(tiny_fmnist, tmp_path):
    import torch

    variants = [Variant("none"), Variant("se", "se")]
    quiet = dict(progress=False, log=lambda *a: None, latency=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers get one thread each; same threads, same arithmetic
    try:
        serial = compare(base(tiny_fmnist), variants, [1], tmp_path / "serial", **quiet)
    finally:
        torch.set_num_threads(threads)
    lines: list[str] = []
    parallel = compare(base(tiny_fmnist), variants, [1], tmp_path / "parallel", jobs=2,
                       **(quiet | dict(log=lines.append)))
    assert sum("2 at a time" in line for line in lines) == 2
    assert [r["attention"] for r in parallel] == [r["attention"] for r in serial]
    for s, p in zip(serial, parallel, strict=True):
        assert p["accuracy_mean"] == s["accuracy_mean"]
    for slug in ("none-s1", "se-s1"):
        ran = json.loads((tmp_path / "parallel" / slug / "result.json").read_text())
        alone = json.loads((tmp_path / "serial" / slug / "result.json").read_text())
        assert ran["loss"] == pytest.approx(alone["loss"], rel=1e-5)
        assert ran["threads"] == max(1, threads // 2)


def test_parallel_jobs_bad_settings(tiny_fmnist, tmp_path, capsys):
    with pytest.raises(ValueError, match="at least 1"):
        compare(base(tiny_fmnist), [Variant("none")], [1], tmp_path, jobs=0, progress=False, log=lambda *a: None)
    with pytest.raises(ValueError, match="CPU"):
        compare(base(tiny_fmnist, device="cuda"), [Variant("none")], [1], tmp_path, jobs=2, progress=False,
                log=lambda *a: None)
    with pytest.raises(SystemExit):
        main(["compare", "--jobs", "0"])
    assert "--jobs" in capsys.readouterr().err
