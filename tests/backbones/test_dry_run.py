"""The dry run that reads channels and sizes changes nothing; channels-last outputs and frozen BN are handled."""

import pytest
import torch
from torch import nn

import visattn
from visattn.backbones import attach

tvm = pytest.importorskip("torchvision.models")
timm = pytest.importorskip("timm")
from torchvision.ops.misc import FrozenBatchNorm2d  # noqa: E402

SE = visattn.info("se").cls


def bn_state(model):
    return {n: t.clone() for n, t in model.state_dict().items() if "running" in n or "num_batches" in n}


def flags(model):
    return {n: m.training for n, m in model.named_modules()}


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, bias=True), nn.BatchNorm2d(16), nn.ReLU())
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.body(self.stem(x)).mean((2, 3)))


@pytest.mark.parametrize("how", ["where", "stage ends", "size-bound"])
def test_dry_run_leaves_bn_statistics_and_train_flags_as_they_were(how):
    if how == "where":
        model, call = Net(), lambda m: attach(m, "se", where="body.2")
    elif how == "stage ends":  # BAM's stage ends are found by a dry run
        model, call = tvm.mobilenet_v2(weights=None), lambda m: attach(m, "bam")
    else:
        model, call = tvm.resnet18(weights=None), lambda m: attach(m, "psa", input_size=64)
    model.train()
    frozen = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    frozen.eval()  # a mixed model: training, with one BN frozen
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    stats, modes = bn_state(model), flags(model)
    call(model)
    after = bn_state(model)
    for name, value in stats.items():
        torch.testing.assert_close(after[name], value, rtol=0, atol=0, msg=name)
    kept = flags(model)
    assert {n: kept[n] for n in modes if n in kept} == {n: modes[n] for n in modes if n in kept}
    assert frozen.training is False and model.training is True


def test_swin_channels_last_blocks_are_refused_in_one_line():
    model = tvm.swin_t(weights=None).eval()
    keys = list(model.state_dict())
    with pytest.raises(ValueError, match=r"attach\(SwinTransformer, 'se'\): the output of features.1.0.mlp is "
                                         r"\(1, 16, 16, 96\), channels last \(N, H, W, C\)") as err:
        attach(model, "se", where="features.1.*.mlp")
    assert "\n" not in str(err.value) and list(model.state_dict()) == keys
    # a channels-first output of a block that ends in a Linear (ConvNeXt's permute back) is accepted
    c = attach(tvm.convnext_tiny(weights=None).eval(), "se", where="features.1.0.block")
    assert c.features[1][0].block.attn.channels == 96


def test_frozen_batchnorm_resnet():
    m = tvm.resnet18(weights=None, norm_layer=FrozenBatchNorm2d).eval()
    attach(m, "se")
    assert [b.attn.channels for b in (m.layer1[0], m.layer2[0], m.layer3[1], m.layer4[1])] == [64, 128, 256, 512]
    assert m(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    b = attach(tvm.resnet50(weights=None, norm_layer=FrozenBatchNorm2d), "cbam", "pre")
    assert b.layer2[0].attn.channels == 256 and b.layer2[1].attn.channels == 512


def test_torchvision_fpn_backbone_body_and_whole():
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    fpn = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=3).eval()
    attach(fpn.body, "se")
    assert type(fpn.body.layer4[1].attn) is SE
    out = fpn(torch.randn(1, 3, 64, 64))
    assert list(out) == ["0", "1", "2", "3", "pool"] and out["0"].shape == (1, 256, 16, 16)
    whole = resnet_fpn_backbone(backbone_name="resnet18", weights=None).eval()
    attach(whole, "bam")
    assert {n for n, m in whole.named_modules() if type(m).__name__ == "BAM"} == {
        "body.layer1.1.attn", "body.layer2.1.attn", "body.layer3.1.attn"}
    assert whole(torch.randn(1, 3, 64, 64))["pool"].shape[1] == 256
