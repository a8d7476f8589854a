import pytest

from tests.data.test_fashion_mnist import write_tiny_set


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A one-epoch resnet20 + CBAM run on a 64 + 32 image Fashion-MNIST look-alike (idx files)."""
    from visattn.data import fashion_mnist as fm
    from visattn.train import TrainConfig, train

    root = tmp_path_factory.mktemp("viz")
    data = root / "fmnist"
    write_tiny_set(data, n_train=64, n_test=32)
    with pytest.MonkeyPatch.context() as mp:  # only the tiny set is found: no Debian copy, no cache, no download
        mp.setattr(fm, "DEBIAN_DIR", root / "nowhere")
        mp.delenv("VISATTN_DATA", raising=False)
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
        out = root / "run"
        train(TrainConfig(backbone="resnet20", attention="cbam", epochs=1, batch_size=16, train_limit=64, val_limit=32,
                          data_dir=str(data), device="cpu"), out, progress=False, log=lambda *a, **k: None)
        yield out


@pytest.fixture(scope="module")
def stn_run(tmp_path_factory):
    """A one-epoch ST-CNN run on the tiny Fashion-MNIST set: plaincnn after a spatial transformer that samples a
    14x14 output from the 28x28 input (the STN paper's downsampling)."""
    from visattn.data import fashion_mnist as fm
    from visattn.train import TrainConfig, train

    root = tmp_path_factory.mktemp("viz-stn")
    data = root / "fmnist"
    write_tiny_set(data, n_train=64, n_test=32)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fm, "DEBIAN_DIR", root / "nowhere")
        mp.delenv("VISATTN_DATA", raising=False)
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
        out = root / "run"
        train(TrainConfig(backbone="plaincnn", transform="stn", transform_kwargs={"output_size": 14}, epochs=1,
                          batch_size=16, train_limit=64, val_limit=32, data_dir=str(data), device="cpu"), out,
              progress=False, log=lambda *a, **k: None)
        yield out
