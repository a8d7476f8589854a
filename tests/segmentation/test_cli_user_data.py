"""The segmentation options on the command line: ignore index, class weights, slide evaluation, crops that fit."""

import json

from visattn.cli import main
from visattn.data.seg_folders import read_generic

ARGS = ["--task", "segmentation", "--dataset", "seg-folder", "--batch-size", "2", "--epochs", "1", "--workers", "0",
        "--device", "cpu", "--no-progress"]


def test_a_crop_larger_than_the_images_is_one_line_exit_2(generic_root, tmp_path, capsys):
    argv = ["train", *ARGS, "--data-dir", str(generic_root), "--out", str(tmp_path / "run")]
    assert main(argv) == 2  # the default crop, 512, on 30x41 images
    err = capsys.readouterr().err.strip()
    assert "crop 512x512 is larger than the training images" in err and "--crop-size 30" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_bad_class_weights_are_one_line_exit_2(generic_root, tmp_path, capsys):
    for weights, says in (("1,-1,1,1", ">= 0"), ("1,2", "2 given for 4")):
        assert main(["train", *ARGS, "--data-dir", str(generic_root), "--crop-size", "24", "--class-weights",
                     weights, "--out", str(tmp_path / "w")]) == 2
        err = capsys.readouterr().err.strip()
        assert says in err and len(err.splitlines()) == 1, err


def test_a_run_with_slide_evaluation_an_ignored_label_and_class_weights(generic_root, tmp_path):
    out = tmp_path / "run"
    assert main(["train", *ARGS, "--data-dir", str(generic_root), "--crop-size", "24", "--eval-mode", "slide",
                 "--ignore-index", "0", "--class-weights", "1,2,2,2", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["eval_mode"], config["ignore_index"], config["class_weights"]) == ("slide", 0, [1.0, 2.0, 2.0, 2.0])
    result = json.loads((out / "result.json").read_text())
    # label 0 (background) and the 255 pixel are left out of the confusion matrix
    val = read_generic(generic_root, "val")
    masks = [val.read(i)[1] for i in range(len(val))]
    counted = sum(int(((m != 0) & (m != 255)).sum()) for m in masks)
    assert 0 < counted < sum(m.numel() for m in masks)
    assert sum(map(sum, result["confusion"])) == counted
