"""Issue 21: the STN paper's options reach a training run, and each evaluation records how the ST localises.

- ``transform_kwargs`` (``--transform stn:output_size=30``): the transformer samples a smaller grid and the
  classifier after it is built for that grid; the run folder rebuilds the same model.
- ``global_pool=False`` (``--no-global-pool``): plaincnn's classifier reads the whole last map; a backbone
  without that option refuses it in one line.
- every evaluation of an ST-CNN on cluttered data records ``loc_*`` measures in metrics.jsonl.
- ``keep_checkpoints=0`` keeps every epoch's checkpoint (pictures of windows at several epochs).
"""

import json

import pytest
import torch

from visattn.cli import main
from visattn.train import TrainConfig, train
from visattn.train.compare import parse_transform, parse_variants
from visattn.train.localisation import LOCALISATION_KEYS
from visattn.train.run import load_run


def _cluttered(data_dir, **fields):
    base = {"backbone": "plaincnn", "transform": "stn", "dataset": "cluttered-fashion-mnist",
            "dataset_kwargs": {"canvas": 40, "clutter": 2}, "data_dir": str(data_dir), "epochs": 2,
            "batch_size": 16, "device": "cpu"}
    return TrainConfig(**{**base, **fields})


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_every_evaluation_of_an_st_cnn_on_cluttered_data_records_the_localisation(tiny_fmnist, tmp_path):
    config = _cluttered(tiny_fmnist, transform_kwargs={"output_size": 20}, keep_checkpoints=0)
    result = train(config, tmp_path / "run", progress=False, log=lambda *a: None)
    rows = _metrics(tmp_path / "run")
    assert len(rows) == 2
    for row in rows:
        assert {f"loc_{k}" for k in LOCALISATION_KEYS} <= set(row)
        assert 0 < row["loc_mean_abs_det"] < 2 and row["loc_baseline_distance_px"] > 0
    assert set(result["localisation"]) == set(LOCALISATION_KEYS)
    # keep_checkpoints=0: every epoch's checkpoint stays (the default keeps the newest two)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("epoch-*.pt")) == [
        "epoch-001.pt", "epoch-002.pt"]
    # load_run opens any kept epoch: the first epoch's transformer is not the last one's
    first, last = load_run(tmp_path / "run", epoch=1), load_run(tmp_path / "run")
    assert first.epoch == 1 and last.epoch == 2
    assert not torch.equal(first.model.transform.fc_loc.weight, last.model.transform.fc_loc.weight)
    with pytest.raises(ValueError, match=r"no checkpoint of epoch 3 \(kept: 1, 2;"):
        load_run(tmp_path / "run", epoch=3)


def test_show_draws_the_window_of_an_earlier_epoch(tiny_fmnist, tmp_path, capsys):
    run = tmp_path / "run"
    train(_cluttered(tiny_fmnist, keep_checkpoints=0), run, progress=False, log=lambda *a: None)
    first = _metrics(run)[0]["val_accuracy"]
    assert main(["show", str(run), "--epoch", "1", "--images", "1", "-q"]) == 0
    page = (run / "show-epoch001" / "index.html").read_text()
    assert "checkpoint of epoch 1" in page and f"{first:.2f}% top-1 on its validation images at that epoch" in page
    assert "sampling window" in page
    assert main(["show", str(run), "--epoch", "5", "-q"]) == 2
    assert "no checkpoint of epoch 5 (kept: 1, 2" in capsys.readouterr().err


def test_the_measures_are_the_transformers_own_on_the_validation_images(tiny_fmnist, tmp_path):
    from visattn.data.loader import load_dataset
    from visattn.train.localisation import measure_localisation

    config = _cluttered(tiny_fmnist, epochs=1, val_limit=40)
    result = train(config, tmp_path / "run", progress=False, log=lambda *a: None)
    opened = load_run(tmp_path / "run")
    _, val = load_dataset(config.dataset, config.data_dir, val_limit=40, dataset_kwargs=config.dataset_kwargs,
                          subset_seed=config.subset_seed)
    again = measure_localisation(opened.model.eval(), val)
    for key in LOCALISATION_KEYS:
        assert again[key] == pytest.approx(result["localisation"][key], rel=1e-5, abs=1e-9)


def test_runs_without_a_transform_or_without_item_positions_record_no_localisation(tiny_fmnist, tmp_path):
    train(_cluttered(tiny_fmnist, transform=None, epochs=1), tmp_path / "plain", progress=False, log=lambda *a: None)
    assert not any(k.startswith("loc_") for k in _metrics(tmp_path / "plain")[0])
    config = TrainConfig(backbone="plaincnn", transform="stn", dataset="fashion-mnist", data_dir=str(tiny_fmnist),
                         epochs=1, batch_size=16, device="cpu")
    train(config, tmp_path / "fmnist", progress=False, log=lambda *a: None)
    assert not any(k.startswith("loc_") for k in _metrics(tmp_path / "fmnist")[0])


def test_a_smaller_output_builds_the_classifier_for_it_and_the_run_folder_rebuilds_it(tiny_fmnist, tmp_path):
    config = _cluttered(tiny_fmnist, epochs=1, transform_kwargs={"output_size": 20, "loc_net": "paper"},
                        global_pool=False)
    train(config, tmp_path / "run", progress=False, log=lambda *a: None)
    model = load_run(tmp_path / "run").model.eval()
    assert model.transform.output_size == (20, 20) and model.transform.loc_net == "paper"
    from visattn.backbones import create

    # the classifier is the one plaincnn builds for a 20x20 input, not for the 40x40 canvas
    assert model.global_pool is False and model.final_size == create("plaincnn", input_size=20,
                                                                     global_pool=False).final_size != (5, 5)
    x = torch.randn(3, 1, 40, 40)
    assert model.transform(x).shape == (3, 1, 20, 20) and model(x).shape == (3, 10)


def test_the_transform_grammar_and_the_options_that_do_not_apply(tiny_fmnist, tmp_path, capsys):
    assert parse_transform("stn:output_size=30:loc_net=paper") == ("stn", {"output_size": 30, "loc_net": "paper"})
    assert parse_transform("none") == (None, {})
    with pytest.raises(ValueError, match="expected one transform module"):
        parse_transform("se")
    (variant,) = parse_variants("stn:output_size=30")
    assert variant.slug == "stn-outputsize30" and variant.transform_kwargs == (("output_size", 30),)
    applied = variant.apply(TrainConfig(backbone="plaincnn"), seed=1)
    assert applied.transform == "stn" and applied.transform_kwargs == {"output_size": 30}
    with pytest.raises(ValueError, match="global_pool=False .* plaincnn .* not of resnet20"):
        TrainConfig(backbone="resnet20", global_pool=False)
    with pytest.raises(ValueError, match="need a transform"):
        TrainConfig(backbone="plaincnn", transform_kwargs={"output_size": 30})
    base = ["train", "--dataset", "cluttered-fashion-mnist", "--data-dir", str(tiny_fmnist), "--canvas", "40",
            "--batch-size", "16", "--no-progress"]
    assert main([*base, "--transform", "stn:bogus=1", "--out", str(tmp_path / "a")]) == 2
    assert "bogus" in capsys.readouterr().err
    assert main([*base, "--no-global-pool", "--out", str(tmp_path / "b")]) == 2  # resnet20 by default
    assert "not of resnet20" in capsys.readouterr().err
    out = tmp_path / "c"
    assert main([*base, "--backbone", "plaincnn", "--transform", "stn:output_size=20", "--no-global-pool",
                 "--keep-checkpoints", "0", "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["transform_kwargs"] == {"output_size": 20} and saved["global_pool"] is False
    assert "window |det|" in capsys.readouterr().out  # the epoch line says where the window is
