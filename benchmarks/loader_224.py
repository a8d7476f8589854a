"""Does the 224 px image-folder loader keep ahead of ResNet-50 training? (run by hand; needs Pillow)

The real-resolution path of an image folder (:class:`visattn.data.image_files.ImageFiles`): JPEG files
decoded by Pillow in DataLoader worker processes, RandomResizedCrop to 224 x 224 + flip (timm's
``create_transform``), normalised. Measured against training steps of a torchvision-layout ResNet-50 at
224 x 224 (SGD, cross-entropy), in the same process with the same thread count.

The images are made here: ``--images`` JPEGs of 500 x 375 (the median ImageNet photo's size, quality 90)
with smooth colour gradients and noise, so that decoding costs what a photo costs.

    python benchmarks/loader_224.py --workers 2 --threads 2

Writes ``results/loader-224-cpu.json`` and ``.md``, with the load average of the machine before and after
(another job on the machine slows both sides, the training most).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from visattn.backbones import create
from visattn.data.image_files import load_image_files

RESULTS = Path(__file__).parent / "results"


def make_folder(root: Path, images: int, classes: int = 4, size: tuple[int, int] = (500, 375)) -> None:
    """``root/train/<class>/*.jpg`` and one image per class in ``root/val``: photo-like JPEGs."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    w, h = size
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    for i in range(images):
        c = i % classes
        a, b, d = torch.rand(3, generator=g).tolist()
        base = torch.stack([a * xx + (1 - a) * yy, b * yy + (1 - b) * (1 - xx), d * xx * yy + 0.2 * c])
        pixels = (base + 0.15 * torch.randn(3, h, w, generator=g)).clamp(0, 1).mul(255).byte()
        img = Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy())
        for split in ("train",) + (("val",) if i < classes else ()):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            img.save(folder / f"{i:05d}.jpg", quality=90)


def loader_rate(root: Path, batch: int, workers: int, epochs: int) -> float:
    """Median images/s of full passes with the training transform (workers started inside each pass)."""
    train, _ = load_image_files(root, 224)
    loader = train.loader(batch, shuffle=True, augment=True, drop_last=True, workers=workers)
    rates = []
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        t0, n = time.perf_counter(), 0
        for x, y in loader:
            assert x.shape[1:] == (3, 224, 224)
            n += len(y)
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def train_rate(batch: int, steps: int) -> float:
    """Median images/s of ResNet-50 training steps at 224 x 224 (after one warm-up step)."""
    torch.manual_seed(0)
    model = create("resnet50", num_classes=4).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch, 3, 224, 224), torch.randint(0, 4, (batch,))
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 1:
            times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="training JPEGs to make and read")
    parser.add_argument("--batch", type=int, default=32, help="loader batch")
    parser.add_argument("--train-batch", type=int, default=16, help="ResNet-50 training batch")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3, help="loader passes over the images")
    parser.add_argument("--steps", type=int, default=3, help="ResNet-50 training steps timed")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        make_folder(Path(tmp), args.images)
        loader = loader_rate(Path(tmp), args.batch, args.workers, args.epochs)
    train = train_rate(args.train_batch, args.steps)
    load_after = os.getloadavg()
    cores = os.cpu_count()
    shared = max(load_before[0], load_after[0]) > cores
    env = {"device": "cpu", "cpu": platform.processor() or platform.machine(), "cores": cores,
           "torch": torch.__version__, "threads": args.threads, "workers": args.workers,
           "load_average_before": [round(v, 2) for v in load_before],
           "load_average_after": [round(v, 2) for v in load_after], "shared_with_other_jobs": shared,
           "command": f"python benchmarks/loader_224.py --workers {args.workers} --threads {args.threads} "
                      f"--images {args.images} --epochs {args.epochs} --steps {args.steps}"}
    row = {"images": args.images, "image_size": [500, 375], "loader_batch": args.batch,
           "loader_images_per_s": loader, "train_batch": args.train_batch, "resnet50_train_images_per_s": train,
           "resnet50_train_steps_per_s": train / args.train_batch, "loader_over_train": loader / train,
           "loading_share": train / (loader + train)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "loader-224-cpu.json").write_text(json.dumps({"environment": env, "rows": [row]}, indent=2) + "\n")
    note = (f"The machine was shared with other jobs (1-minute load average {load_before[0]:.1f} before, "
            f"{load_after[0]:.1f} after, on {cores} cores): both rates are lower than on an idle machine."
            if shared else f"The machine was idle (load average {load_before[0]:.1f} / {load_after[0]:.1f} on "
            f"{cores} cores).")
    lines = [f"The 224 px image-folder loader (JPEG 500x375 decoded by Pillow in {args.workers} DataLoader workers, "
             f"RandomResizedCrop + flip, normalised) against ResNet-50 training steps at 224x224 on CPU "
             f"({args.threads} threads, torch {env['torch']}); medians of {args.epochs} loader passes over "
             f"{args.images} images and {args.steps} training steps of batch {args.train_batch}. `{env['command']}`",
             "", note, "",
             "| loader images/s | ResNet-50 training images/s | training steps/s | loader / training | "
             "loading share of an epoch |",
             "|---|---|---|---|---|",
             f"| {loader:,.1f} | {train:,.2f} | {train / args.train_batch:.3f} | {loader / train:,.1f}x | "
             f"{100 * train / (loader + train):.1f}% |", "",
             "Measured one after the other; in a run the workers and the training share the cores, so the loading "
             "share is what the workers take from the training (decoding runs ahead in the workers' prefetch)."]
    (RESULTS / "loader-224-cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
