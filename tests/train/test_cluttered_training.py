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


def test_the_transform_learns_at_its_own_rate_and_decay_skips_flat_parameters():
    import torch

    from visattn.backbones import create
    from visattn.train.recipe import LRSchedule, parameter_groups

    model = create("plaincnn", "se", in_chans=1, input_size=60, transform="stn")
    config = TrainConfig(backbone="plaincnn", transform="stn", transform_lr_scale=0.1, lr=0.2, weight_decay=1e-4)
    groups = parameter_groups(model, config)
    own = {id(p) for p in model.transform.parameters()}
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    for g in groups:
        assert all((id(p) in own) == g["transform"] for p in g["params"])
        assert abs(g["lr"] - (0.02 if g["transform"] else 0.2)) < 1e-12
        assert g["weight_decay"] == (0.0 if g["params"][0].ndim <= 1 else 1e-4)
        assert all((p.ndim <= 1) == (g["weight_decay"] == 0.0) for p in g["params"])
    optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True)
    schedule = LRSchedule(config, optimizer, 100)
    for _ in range(30):  # past the warm-up peak: every group at its own maximum, in the same proportion
        optimizer.step()
        schedule.step()
    rates = {g["transform"]: g["lr"] for g in optimizer.param_groups}
    assert abs(rates[True] / rates[False] - 0.1) < 1e-9
    plain = parameter_groups(create("resnet20", in_chans=1), TrainConfig())
    assert [g["transform"] for g in plain] == [False, False] and plain[0]["weight_decay"] > 0  # as before


def test_run_names_of_older_recipes_do_not_change():
    import hashlib

    config = TrainConfig(attention="se", epochs=3)
    old = config.to_dict()
    later = ("dataset_kwargs", "transform", "transform_lr_scale", "zero_init_residual", "workers", "memory_budget_mb",
             "task", "head", "output_stride", "aux", "scene_size", "crop_size", "head_lr_scale",
             "opt", "warmup_epochs", "mixup", "cutmix", "model_ema", "model_ema_decay", "accum_steps", "eval_every",
             "where", "replace", "pretrained", "img_size", "subset_seed", "ignore_index", "class_weights", "eval_mode",
             "transform_kwargs", "global_pool", "keep_checkpoints")
    for key in ("data_dir", "device", *later):
        old.pop(key)
    assert config.digest() == hashlib.sha1(json.dumps(old, sort_keys=True).encode()).hexdigest()[:8]
    assert TrainConfig(attention="se", epochs=3, transform="stn").digest() != config.digest()
