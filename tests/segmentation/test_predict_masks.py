"""`visattn predict` on a segmentation run writes palette PNG masks of the image's size (issue 20, item 6)."""

import torch

import visattn
from visattn.cli import main
from visattn.train import TrainConfig, train


def test_predict_writes_a_palette_mask_per_image(split_fmnist, tmp_path, capsys):
    from PIL import Image

    config = TrainConfig(task="segmentation", head="fcn", backbone="tiny", dataset="fashion-scenes", scene_size=32,
                         epochs=1, batch_size=8, lr=0.01, schedule="poly", train_limit=16, val_limit=8, device="cpu",
                         data_dir=str(split_fmnist))
    train(config, tmp_path / "run", progress=False, log=lambda *a, **k: None)
    run = visattn.load_run(tmp_path / "run")
    assert run.class_names[0] == "background" and run.preprocessing["channels"] == 1
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (40, 48), generator=g, dtype=torch.uint8)
    Image.frombytes("L", (48, 40), pixels.numpy().tobytes()).save(tmp_path / "scene.png")
    assert main(["predict", str(tmp_path / "run"), str(tmp_path / "scene.png"), "--out", str(tmp_path / "m")]) == 0
    assert "scene.png" in capsys.readouterr().out
    with Image.open(tmp_path / "m" / "scene.png") as mask:
        assert mask.mode == "P" and mask.size == (48, 40)
        values = torch.frombuffer(bytearray(mask.tobytes()), dtype=torch.uint8)
    assert int(values.max()) < len(run.class_names)
