"""--subset-seed: which --train-limit / --val-limit subset a run draws, 'first' for the old first-N subsets."""

import json

from visattn.cli import main
from visattn.train import TrainConfig


def test_subset_seed_from_the_command_line(tiny_fmnist, tmp_path, capsys):
    base = ["train", "--data-dir", str(tiny_fmnist), "--batch-size", "16", "--no-progress", "-q"]
    assert main([*base, "--train-limit", "40", "--subset-seed", "first", "--out", str(tmp_path / "a")]) == 0
    first = TrainConfig.from_dict(json.loads((tmp_path / "a" / "config.json").read_text()))
    assert first.subset_seed is None  # the first 40 images, as runs recorded before stratified subsets
    assert first.digest() == TrainConfig(train_limit=40, batch_size=16, subset_seed=None).digest()
    assert main([*base, "--train-limit", "40", "--subset-seed", "3", "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "config.json").read_text())["subset_seed"] == 3
    for bad, says in ((["--subset-seed", "-1", "--train-limit", "40"], "expected a seed >= 0"),
                      (["--subset-seed", "x", "--train-limit", "40"], "or 'first'"),
                      (["--subset-seed", "2"], "give a limit"),
                      (["--subset-seed", "2", "--train-limit", "8", "--task", "segmentation"],
                       "applies to in-memory classification")):
        assert _exit_code([*base, *bad, "--out", str(tmp_path / "bad")]) == 2
        assert says in capsys.readouterr().err


def _exit_code(argv):
    """``main``'s status: a returned one, or argparse's SystemExit code."""
    try:
        return main(argv)
    except SystemExit as exit:
        return exit.code
