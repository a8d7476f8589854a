"""visattn train / compare with any backbone, --where, --pretrained and --img-size; bad input is one line + exit 2."""

import pytest
import torch

from visattn.backbones.external import create_classifier
from visattn.cli import main

Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    for split, n in (("train", 4), ("val", 2)):
        for c, colour in enumerate(((200, 30, 30), (30, 200, 30), (30, 30, 200))):
            sub = root / split / f"class{c}"
            sub.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (36 + 3 * i, 28), colour).save(sub / f"{i}.png")
    return root


def base(folder, *more):
    return ["train", "--dataset", "image-folder", "--data-dir", str(folder), "--img-size", "24", "--epochs", "1",
            "--batch-size", "4", "--workers", "0", "--device", "cpu", "--quiet", *more]


def one_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("visattn train: error: ")
    return err[0]


def test_where_and_pretrained_run_end_to_end(folder, tmp_path, capsys):
    first = tmp_path / "first"
    assert main(base(folder, "--attention", "cbam", "--where", "layer1.0.bn2", "--train-limit", "6",
                     "--out", str(first))) == 0
    assert (first / "run.json").is_file()
    capsys.readouterr()
    assert main(base(folder, "--attention", "se", "--pretrained", str(first), "--out", str(tmp_path / "tuned"))) == 0
    out = capsys.readouterr().out
    assert "tensors loaded" in out and "attention module (SqueezeExcite)" in out


def test_unknown_timm_name_suggests_the_closest(tmp_path, capsys):
    pytest.importorskip("timm")
    assert main(["train", "--backbone", "timm:resnet50x", "--out", str(tmp_path / "x")]) == 2
    assert "Did you mean timm:resnet50" in one_line(capsys)


def test_checkpoint_that_does_not_fit_names_the_first_bad_key(folder, tmp_path, capsys):
    other, _ = create_classifier("resnet20", num_classes=3, backbone_kwargs={"widths": (8, 16, 32)})
    torch.save(other.state_dict(), tmp_path / "narrow.pth")
    assert main(base(folder, "--pretrained", str(tmp_path / "narrow.pth"), "--out", str(tmp_path / "r"))) == 2
    assert "conv1.weight does not fit: (8, 3, 3, 3) in the file, (16, 3, 3, 3) in the model" in one_line(capsys)


def test_missing_pretrained_path(folder, tmp_path, capsys):
    assert main(base(folder, "--pretrained", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "r"))) == 2
    assert "no such file or run folder" in one_line(capsys)


def test_corrupt_image_is_one_line(folder, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "train" / "class2" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    assert main(base(broken, "--out", str(tmp_path / "r"))) == 2
    assert "1.png: not a readable image" in one_line(capsys)


def test_image_size_the_network_cannot_take(folder, tmp_path, capsys):
    pytest.importorskip("timm")
    assert main(base(folder, "--backbone", "timm:vit_tiny_patch16_224", "--out", str(tmp_path / "r"))) == 2
    assert "input size 24x24 does not fit timm:vit_tiny_patch16_224" in one_line(capsys)


def test_where_needs_an_attention_module(folder, tmp_path, capsys):
    assert main(base(folder, "--where", "layer1.*", "--out", str(tmp_path / "r"))) == 2
    assert "--where / --replace place the --attention module" in one_line(capsys)


def test_corrupt_image_on_the_streamed_path_is_one_line(folder, tmp_path, capsys):
    # the low-resolution ImageFolder path streams from disk when over --memory-budget-mb: the damaged file is
    # decoded inside a DataLoader worker process, whose wrapper error carries the worker's whole traceback
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "train" / "class1" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    args = ["train", "--dataset", "image-folder", "--data-dir", str(broken), "--memory-budget-mb", "0",
            "--workers", "1", "--epochs", "1", "--batch-size", "4", "--device", "cpu", "--quiet",
            "--out", str(tmp_path / "r")]
    assert main(args) == 2
    assert "2.png: not a readable image" in one_line(capsys)
