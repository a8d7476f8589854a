import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from torch import nn

import visattn
from tests.viz._png import png_size, read_png
from visattn.backbones import create
from visattn.cli import main
from visattn.data.loader import ImageData
from visattn.viz import attention_modules
from visattn.viz.show import ShowError, parse_classes, select_images, show_model


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs, self.text = [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.text.append(data)


def parse(page: Path) -> Page:
    p = Page()
    p.feed(page.read_text(encoding="utf-8"))
    return p


def check_page(out: Path) -> Page:
    """Every <img src> is a relative path to a PNG that exists in ``out``, and every PNG is shown."""
    page = parse(out / "index.html")
    assert page.srcs
    for src in page.srcs:
        assert not Path(src).is_absolute() and ".." not in Path(src).parts and "://" not in src
        assert (out / src).is_file(), f"{src} is missing"
        w, h = png_size(out / src)
        assert w > 0 and h > 0
    assert sorted(page.srcs) == sorted(p.name for p in out.glob("*.png"))
    return page


def test_show_on_a_trained_run(trained_run, capsys):
    rc = main(["show", str(trained_run), "--images", "3", "--classes", "Trouser,Bag", "--query", "3,20"])
    assert rc == 0, capsys.readouterr().err
    out = trained_run / "show"  # the default output folder
    page = check_page(out)
    text = " ".join(page.text)
    # the tiny set's labels are 0..9 repeating: the first Trouser / Bag test images are #1, #8, #11
    assert "test image #1, class Trouser" in text and "test image #8, class Bag" in text
    assert "test image #11, class Trouser" in text and "class Sandal" not in text
    assert "Grad-CAM at layer3" in text and "Channel weights by class" in text
    assert "averaged over 32 test images" in text  # the run's val_limit
    assert f"Run {trained_run.name}:" in text and str(trained_run.parent) not in text  # no local paths
    blocks = [k for k, v in attention_modules(create("resnet20", attention="cbam", in_chans=1)).items() if v == "cbam"]
    assert len(blocks) == 9
    for b in range(3):
        assert (out / f"img{b:02d}-input.png").is_file() and (out / f"img{b:02d}-gradcam.png").is_file()
        assert len(list(out.glob(f"img{b:02d}-[0-9]*.png"))) == len(blocks)  # one CBAM spatial map per block
    assert len(list(out.glob("channels-*.png"))) == len(blocks)  # one class x channel heat-map per block
    assert "Not drawn" not in text
    assert read_png(out / "img00-input.png").shape[:2] == (28 * 6, 28 * 6)


def test_show_user_errors(trained_run, tmp_path, capsys):
    for argv, message in (
        (["show", str(tmp_path / "missing")], "no such folder"),
        (["show", str(tmp_path)], "not a training run"),
        (["show", str(trained_run), "--classes", "Parka"], "unknown class 'Parka'"),
        (["show", str(trained_run), "--classes", "12"], "out of range"),
        (["show", str(trained_run), "--query", "28,0", "--out", str(tmp_path / "q")], "outside the 28x28"),
        (["show", str(trained_run), "--gradcam-layer", "layer9", "--out", str(tmp_path / "g")], "'layer9' is not"),
    ):
        assert main(argv) == 2
        assert message in capsys.readouterr().err
    empty = tmp_path / "empty_run"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps({"backbone": "resnet20", "attention": "se"}))
    assert main(["show", str(empty)]) == 2
    assert "no readable checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["show", str(trained_run), "--query", "a,b"])


def test_class_and_image_selection():
    classes = ["a", "Bag", "c"]
    assert parse_classes(["bag,0", "2", "Bag"], classes) == [1, 0, 2]
    assert parse_classes(None, classes) is None
    with pytest.raises(ShowError, match="unknown class"):
        parse_classes(["d"], classes)
    labels = torch.tensor([2, 0, 1, 2, 1, 1])
    assert select_images(labels, 2, [1]) == [2, 4]
    assert select_images(labels, 10, None) == list(range(6))
    with pytest.raises(ShowError, match="no test image"):
        select_images(torch.tensor([0, 0]), 1, [2])


class ContextNet(nn.Module):
    """Untrained: a spatial transformer on the input, criss-cross, PSA (size-bound), SK and GC with a gate."""

    def __init__(self):
        super().__init__()
        self.stn = visattn.create("stn", 1)
        self.stem = nn.Conv2d(1, 32, 3, padding=1)
        self.cc = visattn.create("cc", 32)
        self.psa = visattn.create("psa", 32, feature_size=(12, 12))
        self.sk = visattn.create("sk", 32, groups=4)
        self.gc = visattn.create("gc", 32, fusion="mul")
        self.head = nn.Linear(32, 3)

    def forward(self, x):
        x = self.gc(self.sk(self.psa(self.cc(self.stem(self.stn(x))))))
        return self.head(x.mean((2, 3)))


def test_show_model_context_transform_and_channel_pictures(tmp_path):
    torch.manual_seed(0)
    model = ContextNet()
    with torch.no_grad():
        model.cc.gamma.fill_(0.5)
        model.stn.fc_loc.bias.copy_(torch.tensor([0.8, 0.1, 0.1, -0.1, 0.8, 0.0]))  # a visible warp
    images = torch.randint(0, 256, (9, 1, 12, 12), dtype=torch.uint8)
    data = ImageData(images, torch.arange(9) % 3, ["x", "y", "z"], (0.5,), (0.25,))
    result = show_model(model, data, tmp_path, indices=[0, 4], query=(2, 9), limit=6, log=lambda *a: None)
    assert result.notes == []
    page = check_page(tmp_path)
    text = " ".join(page.text)
    titles = [t for t in page.text if " at " in t]
    for key in ("cc", "psa"):
        assert sum(t == f"{key} at {key}" for t in titles) == (4 if key == "psa" else 2), key  # per image
    for what in ("sampling window", "output"):  # the spatial transformer: two pictures per image
        assert sum(t == f"stn at stn: {what}" for t in titles) == 2, what
    assert sum(t == "sk at sk" for t in titles) == 2 and sum(t == "gc at gc" for t in titles) == 3
    assert "gate, 32 channels" in text  # GC's fusion gate, recorded: its attention_map gives the pooling weights
    assert "(y, x) = (2, 9)" in text and "averaged over 6 test images" in text
    # the query pixel is outlined in red on the context maps and nowhere else
    s = 168 // 12
    for b in range(2):
        shown = sorted(tmp_path.glob(f"img{b:02d}-[0-9]*.png"))
        red = [read_png(p)[2 * s - 1, 9 * s].tolist() == [255, 0, 0] for p in shown]
        assert sum(red) == 3  # cc and both PSA branches
    # the STN's output picture is its forward output on this image, de-normalised: what the network after it reads
    shown = read_png(tmp_path / "img00-00-stn-output.png")
    assert shown.shape == (12 * s, 12 * s, 3) and not torch.equal(shown, read_png(tmp_path / "img00-input.png"))
    with torch.no_grad():
        seen = model.stn((images[:1].float() / 255 - 0.5) / 0.25)[0, 0] * 0.25 + 0.5
    expected = (seen * 255).round().to(torch.uint8).repeat_interleave(s, 0).repeat_interleave(s, 1)
    assert (shown[..., 0].int() - expected.int()).abs().max() <= 1
    # the window picture is the input with a red outline and nothing else
    window = read_png(tmp_path / "img00-00-stn-sampling_window.png")
    red = (window == torch.tensor([255, 0, 0], dtype=torch.uint8)).all(-1)
    assert red.any() and torch.equal(window[~red], read_png(tmp_path / "img00-input.png")[~red])
    assert "centre (x, y) = " in text and "OUTSIDE" not in text


def test_show_model_without_attention(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 2))
    data = ImageData(torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8), torch.tensor([0, 1, 0, 1]), ["a", "b"],
                     (0.5,), (0.25,))
    result = show_model(model, data, tmp_path, indices=[1], log=lambda *a: None)
    assert result.notes == ["the model holds no visattn module: only Grad-CAM is drawn"]
    page = check_page(tmp_path)
    assert sorted(page.srcs) == ["img00-gradcam.png", "img00-input.png"]


def test_show_modules_filter_quiet_and_a_corrupt_checkpoint(trained_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    shutil.copy(run / "checkpoints" / "epoch-001.pt", run / "checkpoints" / "epoch-000.pt")
    (run / "checkpoints" / "epoch-001.pt").write_bytes(b"\x00torn")
    out = tmp_path / "pictures"
    assert main(["show", str(run), "--images", "1", "--modules", "cb*", "-q", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "epoch-001.pt is unreadable" in lines[0], captured.err
    assert "trying the previous one, epoch-000.pt" in lines[0] and captured.out == ""  # -q: no progress lines
    assert (out / "index.html").is_file()
    assert main(["show", str(run), "--modules", "se", "--out", str(tmp_path / "x")]) == 2
    assert "holds no such module (it holds ['cbam'])" in capsys.readouterr().err
    assert main(["show", str(run), "--modules", "cbam:reduction=4"]) == 2
    assert "without arguments" in capsys.readouterr().err


def test_overlay_uses_the_maps_min_max_range_exactly():
    from visattn.viz.draw import draw_picture as _draw
    from visattn.viz.maps import Picture
    from visattn.viz.pictures import ModulePicture
    from visattn.viz.render import overlay, with_colorbar

    image = torch.randint(0, 256, (1, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    data = torch.tensor([[[2.0, 3.0, 4.0], [5.0, 6.0, 2.5], [3.5, 4.5, 5.5]],  # image 0: min 2, max 6: not 0 .. max
                         [[1.0, 1.0, 1.0], [1.0, 9.0, 1.0], [1.0, 1.0, 1.0]]])  # image 1 widens the layer's range
    item = ModulePicture("layer1.0.attn", "cbam", "gate", Picture("spatial", data), nn.Identity())
    drawn, text = _draw(item, 0, image, (0, 0), scale="image")
    expected = with_colorbar(overlay(image, (data[0] - 2.0) / (6.0 - 2.0)), 2.0, 6.0)  # the range, by hand
    assert torch.equal(drawn, expected)
    assert "range 2 to 6" in text
    assert not torch.equal(drawn, with_colorbar(overlay(image, data[0] / 6.0), 2.0, 6.0))  # max-only scaling differs
    drawn, text = _draw(item, 0, image, (0, 0), scale="layer")  # one range for the layer, over both images
    assert torch.equal(drawn, with_colorbar(overlay(image, (data[0] - 1.0) / (9.0 - 1.0)), 1.0, 9.0))
    assert "colours span 1 to 9" in text


def test_show_on_a_compare_folder_lists_its_runs_and_a_damaged_run_is_one_line(trained_run, tmp_path, capsys):
    import shutil

    compare = tmp_path / "compare"
    for name in ("se-s0", "none-s0"):
        shutil.copytree(trained_run, compare / name, ignore=shutil.ignore_patterns("show"))
    assert main(["show", str(compare)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a folder of 2 runs" in err[0]
    assert str(compare / "none-s0") in err[0] and str(compare / "se-s0") in err[0]
    damaged = compare / "se-s0"
    for path in (damaged / "checkpoints").iterdir():
        path.write_bytes(b"\x00torn")
    assert main(["show", str(damaged), "-q"]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("warning:")]
    assert len(err) == 1 and "no readable checkpoint" in err[0] and "not a visattn checkpoint" in err[0]
    assert "Weights only load failed" not in err[0]
