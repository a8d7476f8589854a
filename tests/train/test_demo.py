from visattn.cli import main
from visattn.train.cli import DEMO_MODULES


def test_demo_runs_every_module_then_the_comparison(tiny_fmnist, tmp_path, capsys):
    argv = ["demo", "--data-dir", str(tiny_fmnist), "--train-limit", "32", "--val-limit", "16", "--out",
            str(tmp_path / "demo")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "modules ran on real data." in out and "failed" not in out
    for key in DEMO_MODULES:
        assert f"| {key} |" in out
    assert (tmp_path / "demo" / "leaderboard.md").exists()


def test_demo_without_data_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    from visattn.data import fashion_mnist as fm

    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "nowhere")
    monkeypatch.delenv("VISATTN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("VISATTN_FASHION_MNIST_URL", "http://127.0.0.1:9/")
    assert main(["demo", "--out", str(tmp_path / "d")]) == 2
    assert "dataset-fashion-mnist" in capsys.readouterr().err
