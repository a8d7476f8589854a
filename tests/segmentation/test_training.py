"""Segmentation through the one trainer: mIoU against a hand-computed confusion matrix, a tiny resumable run."""

import json
import math

import pytest
import torch

from tests._interrupt import interrupt_after_first_checkpoint
from visattn.train import TrainConfig, train
from visattn.train.metrics import confusion_matrix, segmentation_scores


def quiet(*a, **k):
    pass


def test_miou_matches_a_hand_computed_confusion_matrix():
    # 3 classes, 255 ignored; 10 labelled pixels
    target = torch.tensor([[0, 0, 1, 1, 255], [2, 2, 2, 0, 1], [255, 1, 0, 2, 2]])
    pred = torch.tensor([[0, 1, 1, 1, 2], [2, 0, 2, 0, 1], [1, 2, 0, 2, 0]])
    # truth \ prediction (row, col): worked out pixel by pixel
    #   0: (0,0) (0,1) (1,3)->0 (2,2)->0          -> [3, 1, 0]
    #   1: (0,2) (0,3) (1,4)->1 (2,1)->2          -> [0, 3, 1]
    #   2: (1,0) (1,1)->0 (1,2) (2,3) (2,4)->0    -> [2, 0, 3]
    expected = torch.tensor([[3, 1, 0], [0, 3, 1], [2, 0, 3]])
    got = confusion_matrix(pred, target, 3)
    assert torch.equal(got, expected)
    # IoU_c = TP / (row + col - TP): 3/(4+5-3), 3/(4+4-3), 3/(5+4-3)
    iou = [3 / 6, 3 / 5, 3 / 6]
    scores = segmentation_scores(got)
    assert scores["per_class_iou"] == pytest.approx([100 * v for v in iou])
    assert scores["miou"] == pytest.approx(100 * sum(iou) / 3)
    assert scores["pixel_accuracy"] == pytest.approx(100 * 9 / 13)


def test_absent_class_is_left_out_of_the_mean():
    c = torch.tensor([[5, 0, 0], [0, 0, 0], [1, 0, 2]])  # class 1 in neither truth nor prediction
    s = segmentation_scores(c)
    assert math.isnan(s["per_class_iou"][1])
    assert s["miou"] == pytest.approx(100 * (5 / 6 + 2 / 3) / 2)


def config(**kw):
    base = dict(task="segmentation", head="cc", backbone="tiny", dataset="fashion-scenes", scene_size=32,
                epochs=2, batch_size=8, lr=0.01, schedule="poly", train_limit=16, val_limit=8, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def test_tiny_segmentation_run_resumes_to_the_same_weights(split_fmnist, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    result = train(config(data_dir=str(split_fmnist)), straight, progress=False, log=quiet)
    saved = json.loads((straight / "result.json").read_text())
    assert 0 <= saved["miou"] <= 100 and saved["miou"] == result["miou"]
    assert set(saved["per_class_iou"]) == {"background", "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"}
    lines = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2] and "val_miou" in lines[0]
    assert lines[1]["lr"] == pytest.approx(0.0)  # poly schedule: lr * (1 - t/T)^0.9 ends at 0

    out = tmp_path / "interrupted"
    interrupt_after_first_checkpoint(
        monkeypatch, lambda: train(config(data_dir=str(split_fmnist)), out, progress=False, log=quiet))
    assert not (out / "result.json").exists()
    messages = []
    resumed = train(config(data_dir=str(split_fmnist)), out, progress=False, log=messages.append)
    assert any("resuming" in m and "epoch-001.pt" in m for m in messages)
    a = torch.load(out / "checkpoints" / "epoch-002.pt", weights_only=True)["model"]
    b = torch.load(straight / "checkpoints" / "epoch-002.pt", weights_only=True)["model"]
    for k in b:
        torch.testing.assert_close(a[k], b[k], msg=k)
    assert resumed["miou"] == pytest.approx(result["miou"])


def test_segmentation_config_errors():
    with pytest.raises(ValueError, match="decode head"):
        TrainConfig(task="segmentation", attention="se")
    with pytest.raises(ValueError, match="task must be"):
        TrainConfig(task="detection")
    # a classification run's folder name does not change with the segmentation fields
    assert TrainConfig(attention="se").digest() == TrainConfig(attention="se", crop_size=256).digest()


def test_head_lr_scaleiplier_groups():
    from visattn.segmentation import create_segmenter
    from visattn.train.trainer import parameter_groups

    model = create_segmenter("cc", 3, backbone="tiny")
    head = {id(p) for p in model.decode_head.parameters()}
    groups = parameter_groups(model, config(head_lr_scale=10.0, lr=0.02))
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    for g in groups:
        in_head = {id(p) in head for p in g["params"]}
        assert len(in_head) == 1
        assert g["lr"] == pytest.approx(0.2 if in_head.pop() else 0.02)
        assert g["weight_decay"] == (5e-4 if g["params"][0].ndim > 1 else 0.0)
    assert any(p is model.decode_head.context.gamma for g in groups if g["lr"] == pytest.approx(0.2)
               for p in g["params"])
    assert len(parameter_groups(model, config())) == 2  # the default: the papers' single learning rate


def test_loss_is_the_weighted_sum_of_every_output():
    import torch.nn.functional as F

    from visattn.segmentation import create_segmenter
    from visattn.train.tasks import SegmentationTask

    model = create_segmenter("danet", 4, backbone="tiny", in_chans=1).train()
    x, y = torch.randn(2, 1, 24, 24), torch.randint(0, 4, (2, 24, 24))
    y[0, :3] = 255  # ignored pixels
    out = model(x)
    ce = {k: F.cross_entropy(v, y, ignore_index=255) for k, v in out.items()}
    expected = ce["out"] + 0.4 * ce["aux"] + ce["pam"] + ce["cam"]
    got = SegmentationTask().loss(model, config(), out, y)
    torch.testing.assert_close(got, expected)
