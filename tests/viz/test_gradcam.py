import pytest
import torch
from torch import nn

from visattn.viz import find_last_stage, grad_cam


class GapNet(nn.Module):
    """features -> global average pooling -> linear: Grad-CAM is then CAM (Zhou et al.) divided by h*w."""

    def __init__(self, classes=4):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.Tanh(), nn.Conv2d(6, 5, 3, stride=2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(5, classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def test_grad_cam_equals_cam_for_a_gap_linear_head():
    model = GapNet().double().eval()
    x = torch.randn(3, 2, 11, 9, dtype=torch.float64)
    cam, logits = grad_cam(model, x, "features")
    a = model.features(x)  # [B, K, h, w]
    target = logits.argmax(1)
    w = model.fc.weight[target]  # [B, K]
    h_w = a.shape[2] * a.shape[3]
    expected = torch.relu(torch.einsum("bk,bkij->bij", w, a)) / h_w
    assert cam.shape == (3, 5, 4)
    assert torch.allclose(cam.double(), expected.detach(), atol=1e-6)
    assert torch.equal(logits, model(x).detach())


def test_grad_cam_for_a_chosen_class_and_with_frozen_weights():
    model = GapNet().double().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    target = torch.tensor([1, 3])
    cam, _ = grad_cam(model, x, "features", target)
    a = model.features(x)
    expected = torch.relu(torch.einsum("bk,bkij->bij", model.fc.weight[target], a)) / (a.shape[2] * a.shape[3])
    assert torch.allclose(cam.double(), expected, atol=1e-6)
    assert not any(p.requires_grad for p in model.parameters())


def test_grad_cam_errors():
    model = GapNet().eval()
    with pytest.raises(ValueError, match="expected \\(B, C, h, w\\)"):
        grad_cam(model, torch.randn(1, 2, 8, 8), "fc")
    with pytest.raises(AttributeError):
        grad_cam(model, torch.randn(1, 2, 8, 8), "nope")


def test_find_last_stage():
    assert find_last_stage(GapNet().eval(), torch.randn(1, 2, 8, 8)) == "features"
    with pytest.raises(ValueError, match="no child"):
        find_last_stage(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), torch.randn(1, 4))


def test_find_last_stage_of_the_backbones():
    from visattn.backbones import create

    x = torch.randn(1, 1, 28, 28)
    assert find_last_stage(create("resnet20", attention="se", in_chans=1, num_classes=10).eval(), x) == "layer3"
    assert find_last_stage(create("resnet18", in_chans=1, num_classes=10).eval(), torch.randn(1, 1, 64, 64)) == "layer4"
