"""``visattn show`` on a network with a spatial transformer: its sampling window and its output, captioned."""

import torch

from tests.viz._png import read_png
from tests.viz.test_show import check_page
from visattn.backbones import create
from visattn.cli import main
from visattn.data.loader import ImageData
from visattn.viz.show import load_run, show_model

RED = torch.tensor([255, 0, 0], dtype=torch.uint8)


def test_show_on_a_trained_st_cnn_run(stn_run, capsys):
    assert main(["show", str(stn_run), "--images", "2", "-q"]) == 0, capsys.readouterr().err
    out = stn_run / "show"
    page = check_page(out)
    text = " ".join(page.text)
    assert page.text.count("stn at transform: sampling window") == 2
    assert page.text.count("stn at transform: output") == 2
    assert "the sampling window of the transformer's 14x14 output on the 28x28 input (red outline)" in text
    assert "centre (x, y) = (" in text and "of the input's (|det theta[:, :2]|); theta = [" in text
    assert "the transformer's 14x14 output (what the network after it reads)" in text
    model, _, test, *_ = load_run(stn_run)
    s = 168 // 28
    for b in range(2):
        window = read_png(out / f"img{b:02d}-00-transform-sampling_window.png")
        red = (window == RED).all(-1)
        assert red.any() and torch.equal(window[~red], read_png(out / f"img{b:02d}-input.png")[~red])
        shown = read_png(out / f"img{b:02d}-00-transform-output.png")
        assert shown.shape == (14 * s, 14 * s, 3)  # each output pixel the size of an input pixel
        # the trained transformer's own forward on test image #b, de-normalised, is what is drawn
        mean, std = torch.tensor(test.mean).view(-1, 1, 1), torch.tensor(test.std).view(-1, 1, 1)
        with torch.no_grad():
            seen = model.transform((test.images[b:b + 1].float() / 255 - mean) / std)[0] * std + mean  # [1, 14, 14]
        assert (shown[::s, ::s, 0].int() - (seen[0].clamp(0, 1) * 255).round().int()).abs().max() <= 1


def test_show_draws_a_downsampling_transformers_output_at_its_own_size(tmp_path):
    torch.manual_seed(0)
    model = create("plaincnn", transform="stn", transform_kwargs={"output_size": 14}, in_chans=1, num_classes=3,
                   input_size=28).eval()
    with torch.no_grad():
        model.transform.fc_loc.bias.copy_(torch.tensor([0.6, 0.0, 0.2, 0.0, 0.6, -0.1]))  # a smaller window
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    data = ImageData(images, torch.tensor([0, 1, 2, 0]), ["a", "b", "c"], (0.3,), (0.4,))
    show_model(model, data, tmp_path, indices=[2], log=lambda *a: None)
    text = " ".join(check_page(tmp_path).text)
    assert "the sampling window of the transformer's 14x14 output on the 28x28 input" in text
    assert "centre (x, y) = (16.8, 12.6) px, area 0.36 of the input's" in text  # (0.2 + 1) / 2 * 28, (0.9) / 2 * 28
    assert "the transformer's 14x14 output (what the network after it reads)" in text and "OUTSIDE" not in text
    s = 168 // 28
    shown = read_png(tmp_path / "img00-00-transform-output.png")
    assert shown.shape == (14 * s, 14 * s, 3)  # each output pixel the size of an input pixel
    with torch.no_grad():
        seen = model.transform((images[2:3].float() / 255 - 0.3) / 0.4)[0, 0] * 0.4 + 0.3  # the module's forward
    assert seen.shape == (14, 14)
    assert (shown[::s, ::s, 0].int() - (seen.clamp(0, 1) * 255).round().int()).abs().max() <= 1
    window = read_png(tmp_path / "img00-00-transform-sampling_window.png")
    red = (window == RED).all(-1)
    # the window's box: x from (-0.6 + 0.2 + 1) / 2 * 28 = 8.4 to 22.4 px, y from 4.2 to 21 px
    assert red[int(12 * s), int(8.4 * s)] and red[int(4.2 * s), int(15 * s)] and red[21 * s, int(15 * s)]
    assert not red[int(12 * s), int(15 * s)] and not red[int(12 * s), int(4 * s)]
