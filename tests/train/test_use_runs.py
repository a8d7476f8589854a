"""Runs you can use (issue 20, item 6): predict with the run's preprocessing, export checked against eager."""

import json
import types

import pytest
import torch
from torch import nn

from visattn.export import ExportMismatchError, export_run, read_metadata
from visattn.predict import palette, predict_images, segment_images

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402


class _Classifier(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


class _Segmenter(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return {"out": self.conv(x), "aux": self.conv(x)}


def fake_run(model, *, task="classification", size=28, mean=(0.3,), std=(0.2,), classes=10, data_dir=None):
    from visattn.train.config import TrainConfig
    from visattn.train.tasks import get_task

    config = TrainConfig(backbone="plaincnn", data_dir=data_dir, device="cpu", task=task,
                         dataset="fashion-mnist" if task == "classification" else "fashion-scenes")
    return types.SimpleNamespace(config=config, task=get_task(config), model=model.eval(), spec={"backbone": "toy"},
                                 preprocess={"img_size": size, "mean": list(mean), "std": list(std),
                                             "in_chans": len(mean)},
                                 class_names=[f"class{i}" for i in range(classes)])


def grey_png(path, seed, size=(28, 28)):
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (size[1], size[0]), generator=g, dtype=torch.uint8)
    Image.frombytes("L", size, pixels.numpy().tobytes()).save(path)
    return pixels


def test_predict_uses_the_runs_preprocessing_and_class_names(tmp_path):
    torch.manual_seed(0)
    run = fake_run(_Classifier())
    paths, expected = [], []
    for i in range(3):
        pixels = grey_png(tmp_path / f"{i}.png", i)
        paths.append(tmp_path / f"{i}.png")
        x = ((pixels.float() / 255 - 0.3) / 0.2)[None, None]  # by hand: the run's mean and std
        expected.append(run.model(x).softmax(1)[0].detach())
    results = predict_images(run, paths, topk=5)
    assert [r["image"] for r in results] == [str(p) for p in paths]
    for result, probs in zip(results, expected, strict=True):
        top = result["top"]
        assert len(top) == 5 and [t["probability"] for t in top] == sorted((t["probability"] for t in top),
                                                                           reverse=True)
        want = probs.topk(5)
        assert [t["index"] for t in top] == want.indices.tolist()
        assert [t["class"] for t in top] == [f"class{i}" for i in want.indices.tolist()]
        assert [t["probability"] for t in top] == pytest.approx(want.values.tolist(), abs=1e-6)


def test_predict_resizes_other_sizes_and_caps_topk(tmp_path):
    run = fake_run(_Classifier(classes=3), classes=3)
    grey_png(tmp_path / "wide.png", 1, size=(60, 40))
    (result,) = predict_images(run, [tmp_path / "wide.png"], topk=5)
    assert len(result["top"]) == 3 and sum(t["probability"] for t in result["top"]) == pytest.approx(1.0)


def test_predict_refuses_an_unreadable_image_in_one_line(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="bad.png") as caught:
        predict_images(fake_run(_Classifier()), [tmp_path / "bad.png"])
    assert "\n" not in str(caught.value)


def test_segmentation_masks_are_palette_pngs_of_the_argmax(tmp_path):
    torch.manual_seed(0)
    run = fake_run(_Segmenter(), task="segmentation", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), classes=4)
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (24, 20, 3), generator=g, dtype=torch.uint8)
    Image.frombytes("RGB", (20, 24), pixels.numpy().tobytes()).save(tmp_path / "scene.png")
    (path,) = segment_images(run, [tmp_path / "scene.png"], tmp_path / "masks")
    with Image.open(path) as mask:
        assert mask.mode == "P" and mask.size == (20, 24)
        assert mask.getpalette()[:12] == palette(4)[:12]
        got = torch.frombuffer(bytearray(mask.tobytes()), dtype=torch.uint8).view(24, 20)
    x = ((pixels.permute(2, 0, 1).float() / 255 - 0.5) / 0.25)[None]
    assert torch.equal(got, run.model(x)["out"].argmax(1)[0].to(torch.uint8))
    with pytest.raises(ValueError, match="segmentation run"):
        predict_images(run, [tmp_path / "scene.png"])


def _inputs():
    return torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def test_onnx_export_states_its_preprocessing_and_matches_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    run = fake_run(_Classifier())
    result = export_run(run, "onnx", tmp_path / "model.onnx", inputs=_inputs())
    assert result["images"] == 3 and result["max_abs_diff"] < 1e-4
    import onnx

    inside = json.loads({p.key: p.value for p in onnx.load(str(tmp_path / "model.onnx")).metadata_props}["visattn"])
    assert inside["mean"] == [0.3] and inside["std"] == [0.2] and inside["size"] == 28 and inside["channels"] == 1
    assert inside["class_names"] == run.class_names and read_metadata(tmp_path / "model.onnx") == inside
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    x = _inputs()[:1]
    got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    torch.testing.assert_close(got, run.model(x).detach(), atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("fmt", ["export", "torchscript"])
def test_export_and_torchscript_files_load_and_match(tmp_path, fmt):
    torch.manual_seed(0)
    run = fake_run(_Classifier())
    path = tmp_path / f"model.{fmt}"
    result = export_run(run, fmt, path, inputs=_inputs())
    assert result["max_abs_diff"] < 1e-5 and read_metadata(path)["class_names"] == run.class_names
    x = _inputs()
    if fmt == "export":
        with open(path, "rb") as f:
            loaded = torch.export.load(f).module()
    else:
        loaded = torch.jit.load(str(path))
    torch.testing.assert_close(loaded(x), run.model(x).detach())


def test_a_mismatching_export_fails_loudly(tmp_path, monkeypatch):
    from visattn import export as export_mod

    real = export_mod._run_exported
    monkeypatch.setattr(export_mod, "_run_exported", lambda fmt, path, x: real(fmt, path, x) + 1e-2)
    with pytest.raises(ExportMismatchError, match="differs from eager"):
        export_run(fake_run(_Classifier()), "torchscript", tmp_path / "model.ts", inputs=_inputs())


def test_export_checks_on_the_runs_own_validation_images(tiny_fmnist, tmp_path):
    from visattn.export import check_inputs

    run = fake_run(_Classifier(), data_dir=str(tiny_fmnist))
    x = check_inputs(run, count=4)
    assert x.shape == (4, 1, 28, 28) and x.dtype == torch.float32
    from visattn.data.loader import load_dataset

    _, val = load_dataset("fashion-mnist", str(tiny_fmnist))
    assert x.abs().max() > 0 and float(x.std()) > 0.1  # normalised images, not zeros


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="onnx, export, torchscript"):
        export_run(fake_run(_Classifier()), "tflite", tmp_path / "m", inputs=_inputs())


def test_predict_reads_a_preprocess_object_as_well_as_a_dict(tmp_path):
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Preprocess:  # the shape of a Run whose preprocessing is an object, not run.json's dict
        input_size: tuple
        in_chans: int
        mean: tuple
        std: tuple

    torch.manual_seed(0)
    as_dict = fake_run(_Classifier())
    as_object = fake_run(as_dict.model)
    as_object.preprocess = Preprocess((28, 28), 1, (0.3,), (0.2,))
    grey_png(tmp_path / "a.png", 3)
    assert predict_images(as_object, [tmp_path / "a.png"]) == predict_images(as_dict, [tmp_path / "a.png"])
