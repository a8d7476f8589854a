"""The training recipe (issue 20, item 5): optimisers, schedules with warm-up, mixup, EMA, accumulation, top-5."""

import json
import sys

import pytest
import torch
from torch import nn

from tests.train._reference_loop import reference_losses
from visattn.train import TrainConfig, train
from visattn.train.logs import read_jsonl
from visattn.train.recipe import LRSchedule, MissingExtraError, Recipe, check_recipe, topk_correct


def config(data, **kw):
    base = dict(backbone="plaincnn", data_dir=str(data), epochs=1, batch_size=16, lr=0.05, train_limit=64,
                val_limit=32, seed=3, device="cpu")
    return TrainConfig(**(base | kw))


def quiet(*args, **kwargs):
    pass


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


def test_the_default_recipe_trains_bit_for_bit_as_before(tiny_fmnist, tmp_path):
    # the loss of every update equals the loop as it was before the recipe options existed
    cfg = config(tiny_fmnist)
    train(cfg, tmp_path / "run", progress=False, log=quiet)
    logged = [row["train_loss"] for row in read_jsonl(tmp_path / "run" / "steps.jsonl")]
    assert len(logged) == 4
    assert logged[:2] == reference_losses(cfg, 2)


def test_default_recipe_needs_no_timm(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    check_recipe(TrainConfig())
    recipe = Recipe(TrainConfig(), _Tiny(), steps_per_epoch=4)
    assert type(recipe.optimizer) is torch.optim.SGD and recipe.optimizer.defaults["nesterov"]
    for options in ({"opt": "adamw"}, {"mixup": 0.2}, {"model_ema": True},
                    {"warmup_epochs": 1.0, "schedule": "cosine"}):
        with pytest.raises(MissingExtraError, match=r"need timm.*visattn\[train\]") as caught:
            check_recipe(TrainConfig(**options))
        assert "\n" not in str(caught.value)


def test_adamw_comes_from_timm_with_visattns_groups():
    model = _Tiny()
    recipe = Recipe(TrainConfig(opt="adamw", lr=1e-3, weight_decay=0.05, schedule="cosine"), model, steps_per_epoch=4)
    assert type(recipe.optimizer) is torch.optim.AdamW
    decays = sorted(g["weight_decay"] for g in recipe.optimizer.param_groups)
    assert decays == [0.0, 0.05]  # biases without weight decay
    assert all(g["lr"] == 1e-3 for g in recipe.optimizer.param_groups)


@pytest.mark.parametrize("schedule", ["cosine", "poly"])
def test_warmup_rises_linearly_then_decays_per_update(schedule):
    model = nn.Linear(3, 2)
    cfg = TrainConfig(lr=0.2, schedule=schedule, warmup_epochs=2, epochs=10)
    recipe = Recipe(cfg, model, steps_per_epoch=5)  # 50 updates, the first 10 warm up
    rates = [recipe.schedule.get_last_lr()[0]]
    for _ in range(50):
        recipe.optimizer.step()
        recipe.schedule.step()
        rates.append(recipe.schedule.get_last_lr()[0])
    assert rates[0] == 0.0
    assert rates[5] == pytest.approx(0.1) and rates[10] == pytest.approx(0.2)  # linear, the peak at the end of warm-up
    assert all(a > b for a, b in zip(rates[10:49], rates[11:50], strict=True))  # then decays every update
    assert rates[50] == pytest.approx(0.0, abs=1e-9)
    if schedule == "cosine":  # half-way through the decay: half the peak
        assert rates[30] == pytest.approx(0.1)
    else:
        assert rates[30] == pytest.approx(0.2 * 0.5 ** 0.9)


def test_warmup_keeps_each_groups_own_rate():
    from visattn.backbones import create

    model = create("plaincnn", in_chans=1, input_size=60, transform="stn")
    cfg = TrainConfig(backbone="plaincnn", transform="stn", lr=0.2, warmup_epochs=1, epochs=4, schedule="cosine")
    recipe = Recipe(cfg, model, steps_per_epoch=10)
    for _ in range(10):
        recipe.optimizer.step()
        recipe.schedule.step()
    rates = {g["transform"]: g["lr"] for g in recipe.optimizer.param_groups}
    assert rates[False] == pytest.approx(0.2) and rates[True] == pytest.approx(0.02)


def test_onecycle_warmup_epochs_sets_its_rising_phase():
    model = nn.Linear(3, 2)
    recipe = Recipe(TrainConfig(lr=0.2, warmup_epochs=1, epochs=4), model, steps_per_epoch=10)
    rates = []
    for _ in range(40):
        rates.append(recipe.schedule.get_last_lr()[0])
        recipe.optimizer.step()
        recipe.schedule.step()
    assert max(range(40), key=rates.__getitem__) == 10 and rates[10] == pytest.approx(0.2)


def test_schedule_state_survives_a_resume():
    cfg = TrainConfig(lr=0.2, warmup_epochs=1, epochs=4, schedule="cosine")
    first = Recipe(cfg, nn.Linear(3, 2), steps_per_epoch=10)
    for _ in range(13):
        first.optimizer.step()
        first.schedule.step()
    second = Recipe(cfg, nn.Linear(3, 2), steps_per_epoch=10)
    second.load_state_dict(first.state_dict())
    assert second.schedule.updates == 13
    assert second.schedule.get_last_lr() == pytest.approx(first.schedule.get_last_lr())


def test_accumulated_gradients_equal_the_whole_batch():
    torch.manual_seed(0)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    whole, split = _Tiny(), _Tiny()
    split.load_state_dict(whole.state_dict())
    nn.functional.cross_entropy(whole(x), y).backward()
    recipe = Recipe(TrainConfig(accum_steps=2), split, steps_per_epoch=2)
    assert recipe.updates_per_epoch == 1
    done = [recipe.backward(nn.functional.cross_entropy(split(x[i:i + 8]), y[i:i + 8]), b)
            for b, i in enumerate((0, 8))]
    assert done == [False, True]
    for a, b in zip(whole.parameters(), split.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad)


def test_a_short_last_group_is_averaged_over_its_own_batches():
    model = _Tiny()
    recipe = Recipe(TrainConfig(accum_steps=4), model, steps_per_epoch=5)  # groups of 4 and 1
    assert recipe.updates_per_epoch == 2
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    flags = []
    for b in range(5):
        loss = nn.functional.cross_entropy(model(x), y)
        flags.append(recipe.backward(loss, b))
        if b == 4:
            alone = _Tiny()
            alone.load_state_dict(model.state_dict())
            nn.functional.cross_entropy(alone(x), y).backward()
            for p, q in zip(model.parameters(), alone.parameters(), strict=True):
                torch.testing.assert_close(p.grad, q.grad)  # the last group's one batch at full weight
    assert flags == [False, False, False, True, True]


def test_accumulation_trains_with_fewer_updates(tiny_fmnist, tmp_path):
    train(config(tiny_fmnist, accum_steps=2), tmp_path / "run", progress=False, log=quiet)
    steps = read_jsonl(tmp_path / "run" / "steps.jsonl")
    assert [s["step"] for s in steps] == [1, 2]  # 4 batches, 2 updates


def test_mixup_gives_soft_targets_and_the_soft_loss():
    from timm.loss import SoftTargetCrossEntropy

    cfg = TrainConfig(mixup=0.4, cutmix=1.0, label_smoothing=0.1)
    recipe = Recipe(cfg, _Tiny(), steps_per_epoch=4, num_classes=10)
    recipe.start_epoch(1)
    x, y = torch.randn(7, 1, 8, 8), torch.arange(7)
    mixed, soft = recipe.mix(x.clone(), y)
    assert mixed.shape == (6, 1, 8, 8) and soft.shape == (6, 10)  # an odd batch loses its last image
    torch.testing.assert_close(soft.sum(1), torch.ones(6))
    assert (soft > 0.5).sum() <= 6 and not torch.equal(mixed, x[:6])
    logits = torch.randn(6, 10)
    torch.testing.assert_close(recipe.loss(None, None, logits, soft), SoftTargetCrossEntropy()(logits, soft))


def test_mixup_is_refused_for_segmentation_in_one_line():
    for option in ({"mixup": 0.2}, {"cutmix": 1.0}):
        with pytest.raises(ValueError, match="classification only") as caught:
            TrainConfig(task="segmentation", **option)
        assert "\n" not in str(caught.value)


def test_ema_follows_the_decay_formula():
    model = nn.Linear(3, 2)
    recipe = Recipe(TrainConfig(model_ema=True, model_ema_decay=0.9), model, steps_per_epoch=4)
    model.weight.grad = torch.ones_like(model.weight)
    recipe.update(model)  # timm's first update copies the weights
    before = model.weight.detach().clone()
    torch.testing.assert_close(recipe.ema.module.weight, before)
    recipe.update(model)
    after = model.weight.detach()
    assert not torch.equal(before, after)
    torch.testing.assert_close(recipe.ema.module.weight, 0.9 * before + 0.1 * after)


def test_ema_run_reports_both_evaluations(tiny_fmnist, tmp_path):
    result = train(config(tiny_fmnist, model_ema=True, model_ema_decay=0.5), tmp_path / "run", progress=False,
                   log=quiet)
    row = read_jsonl(tmp_path / "run" / "metrics.jsonl")[0]
    assert {"val_accuracy", "ema_val_accuracy", "ema_val_loss"} <= set(row)
    assert result["ema"]["accuracy"] == row["ema_val_accuracy"] and result["accuracy"] == row["val_accuracy"]
    state = torch.load(tmp_path / "run" / "checkpoints" / "epoch-001.pt", weights_only=True)
    assert set(state["ema"]) == set(state["model"])


def test_top5_counts_targets_among_the_five_largest():
    logits = torch.tensor([[9.0, 8, 7, 6, 5, 4, 3], [0, 1, 2, 3, 4, 5, 6], [1, 0, 0, 0, 0, 0, 0]])
    target = torch.tensor([4, 0, 0])  # 5th largest: in; smallest: out; largest: in
    assert topk_correct(logits, target, 5) == 2.0
    assert topk_correct(logits, target, 1) == 1.0


def test_metrics_have_top5_when_there_are_more_than_five_classes(tiny_fmnist, tmp_path):
    result = train(config(tiny_fmnist), tmp_path / "run", progress=False, log=quiet)
    row = read_jsonl(tmp_path / "run" / "metrics.jsonl")[0]
    assert result["top5"] == row["val_top5"] and result["accuracy"] <= result["top5"] <= 100


def test_eval_every_evaluates_every_nth_epoch_and_the_last(tiny_fmnist, tmp_path, monkeypatch):
    from visattn.train.tasks import ClassificationTask

    calls = []
    real = ClassificationTask.evaluate
    monkeypatch.setattr(ClassificationTask, "evaluate", lambda self, *a: calls.append(1) or real(self, *a))
    train(config(tiny_fmnist, epochs=3, eval_every=2, train_limit=16), tmp_path / "run", progress=False, log=quiet)
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [("val_loss" in r) for r in rows] == [False, True, True] and len(calls) == 2


def test_recipe_fields_do_not_rename_old_runs():
    assert TrainConfig(eval_every=3).digest() == TrainConfig().digest()
    assert TrainConfig(opt="adamw").digest() != TrainConfig().digest()
    old = {k: v for k, v in TrainConfig().to_dict().items() if k not in ("opt", "mixup", "accum_steps")}
    assert TrainConfig.from_dict(json.loads(json.dumps(old))).same_run(TrainConfig())


@pytest.mark.parametrize("bad", [{"opt": "lamb"}, {"accum_steps": 0}, {"eval_every": 0}, {"mixup": -1.0},
                                 {"label_smoothing": 1.0}, {"model_ema_decay": 1.5}, {"warmup_epochs": -1}])
def test_bad_recipe_values_are_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        TrainConfig(**bad)


def test_lr_schedule_reads_a_checkpoint_from_before_the_recipe():
    # checkpoints written before LRSchedule held the torch scheduler's own state dict
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    old = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
    for _ in range(3):
        optimizer.step()
        old.step()
    schedule = LRSchedule(TrainConfig(schedule="cosine"), torch.optim.SGD(model.parameters(), lr=0.1), 10)
    schedule.load_state_dict(old.state_dict())
    assert schedule.updates == 3
