"""One registration idiom: a toy module, decode head, backbone and data set, each one new file with one decorator.

The toys live in a temporary package (one file each, as a contributor would add them); importing it
registers them, every catalogue lists them, the ordinary entry points build them, and they are removed
afterwards so that no other test sees them.
"""

import importlib
import sys
import textwrap

import pytest
import torch

import visattn
from visattn.backbones import BACKBONES, backbone_info, list_backbones
from visattn.catalogue import Catalogue
from visattn.data import CATALOGUE as DATASETS
from visattn.data import dataset_info, list_datasets
from visattn.data.loader import data_shape, load_dataset
from visattn.registry import _REGISTRY as MODULES
from visattn.segmentation import HEADS, create_segmenter, head_info, list_heads

FILES = {
    "toy_module.py": '''
        import torch
        from torch import nn

        from visattn.registry import register


        @register("toy_gate", title="Toy gate", paper="A toy", authors="Nobody et al.", venue="arXiv", year=2026,
                  arxiv=None, code=None, family="toy", domain="channel", weights="pool+mlp", applied="scale",
                  role="plugin", complexity="O(HW)")
        class ToyGate(nn.Module):
            def __init__(self, channels, *, scale=1.0):
                super().__init__()
                self.weight = nn.Parameter(torch.zeros(channels))

            def forward(self, x):
                return x * torch.sigmoid(self.weight)[None, :, None, None]
    ''',
    "toy_head.py": '''
        from torch import nn

        from visattn.segmentation.heads import DecodeHead, register_head


        @register_head("toy_head", modules=("toy_gate",))
        class ToyHead(DecodeHead):
            """A 1x1 conv and the toy gate."""

            def __init__(self, in_channels, channels, num_classes, *, dropout=0.1):
                super().__init__(in_channels, channels, num_classes, dropout=dropout, concat_input=True)
                self.conv = nn.Conv2d(in_channels, channels, 1)
                self.build_classifier()

            def features(self, x):
                return self.conv(x)
    ''',
    "toy_backbone.py": '''
        from torch import nn

        from visattn.backbones import register_backbone


        @register_backbone("toy_net", family="toy")
        def toy_net(*, num_classes=10, in_chans=3, attention=None, attention_kwargs=None, position="standard",
                    stages=None):
            """A conv and a classifier."""
            return nn.Sequential(nn.Conv2d(in_chans, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(8, num_classes))
    ''',
    "toy_dataset.py": '''
        import torch

        from visattn.data.base import ImageData
        from visattn.data.datasets import ClassificationSource, register_dataset


        @register_dataset("toy-squares", task="classification", channels=1, classes=("dark", "bright"), size=6)
        class ToySquares(ClassificationSource):
            """Dark and bright 6x6 squares."""

            def load(self, data_dir, *, image_size, memory_budget_mb, options):
                labels = torch.arange(8) % 2
                images = (labels * 200 + 20).to(torch.uint8).view(8, 1, 1, 1).expand(8, 1, 6, 6).contiguous()
                data = ImageData(images, labels, list(self.info.classes), (0.5,), (0.25,))
                return data, data
    ''',
}
KEYS = [(MODULES, "toy_gate"), (HEADS, "toy_head"), (BACKBONES, "toy_net"), (DATASETS, "toy-squares")]


@pytest.fixture
def toys(tmp_path, monkeypatch):
    package = tmp_path / "visattn_toys"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, text in FILES.items():
        (package / name).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    for catalogue, key in KEYS:
        assert key not in catalogue
    try:
        for name in FILES:
            importlib.import_module(f"visattn_toys.{name[:-3]}")
        yield
    finally:
        for catalogue, key in KEYS:
            if key in catalogue:
                catalogue.remove(key)
        for name in [m for m in sys.modules if m.startswith("visattn_toys")]:
            del sys.modules[name]


def test_each_toy_is_listed_and_built_by_the_ordinary_entry_points(toys):
    assert "toy_gate" in visattn.list_modules() and visattn.info("toy_gate").family == "toy"
    assert visattn.create("toy_gate", 4)(torch.ones(1, 4, 3, 3)).shape == (1, 4, 3, 3)

    assert "toy_head" in list_heads() and head_info("toy_head").modules == ("toy_gate",)
    model = create_segmenter("toy_head", 3, backbone="tiny", in_chans=1, aux=False).eval()
    assert model(torch.randn(1, 1, 17, 23))["out"].shape == (1, 3, 17, 23)

    assert "toy_net" in list_backbones() and backbone_info("toy_net").summary == "A conv and a classifier."
    assert visattn.backbones.create("toy_net", num_classes=2, in_chans=1)(torch.randn(2, 1, 9, 9)).shape == (2, 2)

    assert "toy-squares" in list_datasets("classification") and "toy-squares" not in list_datasets("segmentation")
    assert dataset_info("toy-squares").num_classes == 2 and data_shape("toy-squares") == (1, 6, 6)
    train, val = load_dataset("toy-squares", train_limit=4)
    assert len(train) == 4 and train.classes == ["dark", "bright"]


def test_the_toys_are_gone_afterwards():
    for catalogue, key in KEYS:
        assert key not in catalogue


def test_a_taken_name_is_refused_and_an_unknown_one_gets_the_closest():
    with pytest.raises(ValueError, match="already registered"):
        BACKBONES.add("resnet18", BACKBONES.get("resnet18"))
    with pytest.raises(KeyError, match="Did you mean 'resnet18'"):
        BACKBONES.get("resnet81")
    with pytest.raises(ValueError, match="unknown segmentation head 'ccc'. Did you mean 'cc'"):
        visattn.segmentation.create_head("ccc", 8, 8, 2)
    with pytest.raises(ValueError, match="unknown dataset 'cifar1'.*did you mean 'cifar10'"):
        load_dataset("cifar1")


def test_a_head_must_subclass_decode_head():
    heads = Catalogue("thing", HEADS.make)
    with pytest.raises(ValueError, match="must be a DecodeHead subclass"):
        heads.decorator("bad")(torch.nn.Conv2d)
