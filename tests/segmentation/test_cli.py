"""`visattn train/compare --task segmentation`: runs, leaderboards by mIoU, one-line errors with exit 2."""

import json

from visattn.cli import main

from .conftest import save_png

TINY = ["--task", "segmentation", "--backbone", "tiny", "--scene-size", "32", "--train-limit", "16",
        "--val-limit", "8", "--batch-size", "8", "--epochs", "1", "--device", "cpu", "--no-progress"]


def test_train_and_compare_heads(split_fmnist, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--head", "cc:recurrence=1", "--data-dir", str(split_fmnist), "--out", str(out), *TINY]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["config"]["head"] == "cc" and result["config"]["schedule"] == "poly"
    assert result["config"]["attention_kwargs"] == {"recurrence": 1}  # the head's own argument reached it
    assert "miou" in result and len(result["per_class_iou"]) == 11
    capsys.readouterr()
    cmp = tmp_path / "cmp"
    assert main(["compare", "--head", "fcn,danet", "--seeds", "0,1", "--data-dir", str(split_fmnist),
                 "--out", str(cmp), *TINY]) == 0
    board = json.loads((cmp / "leaderboard.json").read_text())
    assert {r["head"] for r in board["rows"]} == {"fcn", "danet"}
    assert all(r["seeds"] == 2 and "miou_mean" in r and r["flops"] > 0 for r in board["rows"])
    md = (cmp / "leaderboard.md").read_text()
    assert "mIoU % (mean ± std)" in md and "Δ vs fcn" in md and "tiny-D8 decode heads" in md
    assert sorted(p.name for p in cmp.iterdir() if p.is_dir()) == ["danet-s0", "danet-s1", "fcn-s0", "fcn-s1"]


def test_unknown_head_exit_2(capsys):
    assert main(["train", "--task", "segmentation", "--head", "ccc"]) == 2
    err = capsys.readouterr().err
    assert "unknown segmentation head 'ccc'" in err and "Traceback" not in err
    assert main(["compare", "--task", "segmentation", "--head", "fcn,nope"]) == 2
    for bad, says in (("danet:nope=1", "unexpected keyword argument 'nope'"),
                      ("danet:branch_loss_weight=-1", "branch_loss_weight must be a number >= 0")):
        for command in ("train", "compare"):
            capsys.readouterr()
            assert main([command, "--task", "segmentation", "--head", bad]) == 2
            err = capsys.readouterr().err
            assert says in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["train", "--task", "segmentation", "--dataset", "cifar10"]) == 2
    assert "not a segmentation data set" in capsys.readouterr().err


def test_bad_mask_is_one_line_exit_2(generic_root, tmp_path, capsys):
    bad = tmp_path / "bad"
    save_png(generic_root / "masks" / "train" / "im3.png", __import__("torch").full((33, 41), 12), "L")
    argv = ["train", "--task", "segmentation", "--dataset", "seg-folder", "--data-dir", str(generic_root),
            "--crop-size", "16", "--batch-size", "2", "--epochs", "1", "--workers", "1", "--device", "cpu",
            "--no-progress", "--out", str(bad)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "im3.png: label 12 is outside [0, 4)" in err and len(err.splitlines()) == 1
    assert (bad / "config.json").exists() and not (bad / "result.json").exists()
    (generic_root / "masks" / "val" / "im0.png").unlink()
    assert main(argv) == 2
    assert "im0.png: no mask for image im0.png" in capsys.readouterr().err


def test_voc_and_folder_runs(voc_root, generic_root, tmp_path):
    for name, root in (("voc", voc_root), ("seg-folder", generic_root)):
        out = tmp_path / name
        assert main(["train", "--task", "segmentation", "--dataset", name, "--data-dir", str(root), "--head", "oc",
                     "--crop-size", "24", "--batch-size", "2", "--epochs", "1", "--workers", "0", "--device", "cpu",
                     "--no-progress", "--out", str(out)]) == 0
        result = json.loads((out / "result.json").read_text())
        assert len(result["per_class_iou"]) == (21 if name == "voc" else 4)
        # whole validation images of different sizes, every labelled pixel counted once, the ignore pixel not
        labelled = 37 * 45 + 40 * 43 - 2 if name == "voc" else 30 * 41 + 31 * 41 - 2
        assert sum(map(sum, result["confusion"])) == labelled
