import json

from visattn.cli import main
from visattn.demo import DEMO_SEEDS, DEMO_VARIANTS, demo_variant, verdict


def test_demo_runs_every_module_then_the_cluttered_comparison(tiny_fmnist, tmp_path, capsys):
    argv = ["demo", "--data-dir", str(tiny_fmnist), "--epochs", "1", "--train-limit", "32", "--val-limit", "16",
            "--out", str(tmp_path / "demo")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "modules ran on real data." in out and "failed" not in out
    for key in DEMO_VARIANTS:
        assert f"| {key} |" in out
    assert "Δ vs none (± std of per-seed Δ)" in out and "Against the plain network" in out
    board = json.loads((tmp_path / "demo" / "leaderboard.json").read_text())
    assert board["config"]["dataset"] == "cluttered-fashion-mnist" and board["config"]["backbone"] == "plaincnn"
    stn = next(r for r in board["rows"] if r["label"] == "stn")
    assert stn["transform"] == "stn" and stn["seeds"] == len(DEMO_SEEDS) >= 2
    runs = {p.name for p in (tmp_path / "demo").iterdir() if p.is_dir()}
    assert runs == {f"{demo_variant(k).slug}-s{s}" for k in DEMO_VARIANTS for s in DEMO_SEEDS}
    assert demo_variant("sge:groups=4").slug == "sge-groups4"
    assert demo_variant("cbam:gate_init=0.9").attention_kwargs == (("gate_init", 0.9),)


def _row(label, accs, plain=False):
    return {"label": label, "plain": plain, "accuracy_mean": sum(accs) / len(accs),
            "accuracy_per_seed": {str(i): a for i, a in enumerate(accs)}}


def test_verdict_is_a_paired_t_test_from_three_seeds():
    lines = verdict([_row("none", [50, 52, 51], plain=True), _row("stn", [60, 61, 60.5]), _row("cbam", [49, 54, 51])])
    assert lines[1] == ("  stn: +9.50 ± 0.50 points over 3 seeds, t = 32.91, p < 0.001 (paired t-test, two-sided): "
                        "ahead at the 5% level")
    assert lines[2] == ("  cbam: +0.33 ± 1.53 points over 3 seeds, t = 0.38, p = 0.742 (paired t-test, two-sided): "
                        "level at the 5% level")


def test_no_verdict_from_two_seeds():
    # issue 19.10: "stn: +0.55 ± 0.14 points, ahead beyond the seed spread" from two seeds overstated them
    lines = verdict([_row("none", [50.0, 52.0], plain=True), _row("stn", [50.45, 52.65])])
    assert lines[1] == "  stn: +0.55 ± 0.14 points over 2 seeds: too few seeds for a verdict (3 needed)"


def test_demo_without_data_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    from visattn.data import fashion_mnist as fm

    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "nowhere")
    monkeypatch.delenv("VISATTN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("VISATTN_FASHION_MNIST_URL", "http://127.0.0.1:9/")
    assert main(["demo", "--out", str(tmp_path / "d")]) == 2
    assert "dataset-fashion-mnist" in capsys.readouterr().err
