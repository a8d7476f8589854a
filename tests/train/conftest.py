import pytest

from tests.data.test_fashion_mnist import write_tiny_set


@pytest.fixture
def tiny_fmnist(tmp_path, monkeypatch):
    """A 64 + 32 image Fashion-MNIST look-alike in idx format; nothing else is searched."""
    from visattn.data import fashion_mnist as fm

    folder = tmp_path / "fmnist"
    write_tiny_set(folder, n_train=64, n_test=32)
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "nowhere")
    monkeypatch.delenv("VISATTN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return folder
