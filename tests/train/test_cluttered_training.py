"""Training on cluttered Fashion-MNIST with the plain CNN, an STN in front, and a recipe that reads back the same."""

import json

from visattn.cli import main
from visattn.train.config import TrainConfig
from visattn.train.trainer import train


def test_st_cnn_trains_on_cluttered_data_and_the_recipe_reads_back(tiny_fmnist, tmp_path):
    config = TrainConfig(backbone="plaincnn", transform="stn", attention="cbam", dataset="cluttered-fashion-mnist",
                         dataset_kwargs={"canvas": 40, "clutter": 2, "rotation": (-20, 20)}, data_dir=str(tiny_fmnist),
                         epochs=1, batch_size=16, device="cpu")
    result = train(config, tmp_path / "run", progress=False, log=lambda *a: None)
    assert result["epochs"] == 1 and 0 <= result["accuracy"] <= 100
    saved = TrainConfig.from_dict(json.loads((tmp_path / "run" / "config.json").read_text()))
    assert saved.same_run(config) and saved.dataset_kwargs["rotation"] == [-20, 20]
    again = train(config, tmp_path / "run", progress=False, log=lambda *a: None)  # finished: not trained again
    assert again["accuracy"] == result["accuracy"]


def test_cli_train_with_clutter_options(tiny_fmnist, tmp_path, capsys):
    out = tmp_path / "r"
    argv = ["train", "--dataset", "cluttered-fashion-mnist", "--data-dir", str(tiny_fmnist), "--backbone", "plaincnn",
            "--transform", "stn", "--canvas", "44", "--clutter", "3", "--clutter-size", "6", "--rts", "--scale",
            "0.8,1.0", "--batch-size", "16", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["dataset_kwargs"] == {"canvas": 44, "clutter": 3, "clutter_size": 6, "scale": [0.8, 1.0], "rts": True}
    assert cfg["transform"] == "stn" and cfg["pad"] == 0
