"""visattn's training loop as it was before the recipe options (issue 20), for the default-recipe test."""

import torch
import torch.nn.functional as F


def reference_losses(config, steps: int) -> list[float]:
    """Per-batch training losses of the first ``steps`` batches, computed the way the trainer always has."""
    from visattn.data.loader import load_dataset, make_loader
    from visattn.train.classifier import build_model

    train, _ = load_dataset(config.dataset, config.data_dir, train_limit=config.train_limit,
                            val_limit=config.val_limit, image_size=config.image_size)
    torch.manual_seed(config.seed)
    model = build_model(config, train.in_chans, len(train.classes), train.image_shape[-2:])
    loader = make_loader(train, config.batch_size, shuffle=True, augment=True, pad=config.pad, flip=config.flip,
                         seed=config.seed, drop_last=len(train) >= config.batch_size)
    transform_ids = set()
    groups = {}
    for p in model.parameters():
        groups.setdefault((id(p) in transform_ids, False, p.ndim <= 1), []).append(p)
    param_groups = [{"params": ps, "weight_decay": 0.0 if flat else config.weight_decay, "lr": config.lr}
                    for (_, _, flat), ps in sorted(groups.items())]
    optimizer = torch.optim.SGD(param_groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    total = config.epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[config.lr] * len(param_groups),
                                                    total_steps=total, pct_start=min(0.5, max(0.25, 2.0 / total)),
                                                    div_factor=10, final_div_factor=100)
    losses = []
    model.train()
    for epoch in range(1, config.epochs + 1):
        loader.set_epoch(epoch)
        for x, y in loader:
            loss = F.cross_entropy(model(x), y, label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            if len(losses) == steps:
                return losses
    return losses
