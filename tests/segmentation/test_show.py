"""`visattn show` on a segmentation run: input, truth, prediction and the head's query-pixel attention."""

from visattn.cli import main
from visattn.train import TrainConfig, train
from visattn.viz.show_seg import colorize_labels


def test_show_segmentation_run(split_fmnist, tmp_path, capsys):
    run = tmp_path / "run"
    config = TrainConfig(task="segmentation", head="danet", backbone="tiny", dataset="fashion-scenes",
                         data_dir=str(split_fmnist), scene_size=32, epochs=1, batch_size=8, train_limit=8,
                         val_limit=4, device="cpu")
    train(config, run, progress=False, log=lambda *a: None)
    assert main(["show", str(run), "--images", "2", "--query", "5,20"]) == 0
    page = (run / "show" / "index.html").read_text()
    names = sorted(p.name for p in (run / "show").glob("*.png"))
    assert {"img00-input.png", "img00-truth.png", "img00-prediction.png", "img01-prediction.png"} <= set(names)
    assert any("decode_head_pam" in n for n in names)  # PAM's attention of the query pixel
    assert any("decode_head_cam" in n for n in names)  # CAM's channel matrix
    assert "query pixel (y, x) = (5, 20)" in page and "pam at decode_head.pam" in page
    cam_caption = page.split("cam at decode_head.cam")[-1].split("</figcaption>")[0]
    assert "channel-by-channel matrix" in cam_caption and "query cell" not in cam_caption  # a matrix, not a map
    # the introduction and every caption state the same colour rule (default: one range per layer)
    assert "share one colour range over the drawn images" in page and "scaled to their own range" not in page
    assert "shared by this layer&#x27;s maps" in page or "shared by this layer's maps" in page
    assert main(["show", str(run), "--query", "40,1"]) == 2
    assert "outside the 32x32 input" in capsys.readouterr().err
    # options of classification pictures are refused on a segmentation run, not silently ignored
    assert main(["show", str(run), "--classes", "1", "--gradcam-layer", "layer3"]) == 2
    assert "--classes, --gradcam-layer: not for a segmentation run" in capsys.readouterr().err
    assert main(["show", str(run), "--limit", "3"]) == 2 and "--limit: not for" in capsys.readouterr().err


def test_label_colours_are_voc():
    import torch

    rgb = colorize_labels(torch.tensor([[0, 1], [15, 255]]))
    s = rgb.shape[0] // 2
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[0, s].tolist() == [128, 0, 0]
    assert rgb[s, 0].tolist() == [192, 128, 128] and rgb[s, s].tolist() == [224, 224, 192]
