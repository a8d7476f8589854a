import gzip
import hashlib
import http.server
import struct
import threading
from pathlib import Path

import pytest
import torch

from visattn.data import fashion_mnist as fm
from visattn.data.download import ChecksumError
from visattn.data.idx import IdxFormatError, read_idx


def idx_bytes(tensor: torch.Tensor) -> bytes:
    code = {torch.uint8: 0x08, torch.int32: 0x0C}[tensor.dtype]
    header = bytes([0, 0, code, tensor.dim()]) + struct.pack(f">{tensor.dim()}I", *tensor.shape)
    data = tensor.numpy().astype(">i4").tobytes() if tensor.dtype == torch.int32 else tensor.numpy().tobytes()
    return header + data


def write_tiny_set(folder: Path, n_train=6, n_test=4) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    md5 = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
        labels = torch.arange(n, dtype=torch.uint8) % 10
        for kind, t in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{prefix}-{kind}-ubyte.gz"
            blob = gzip.compress(idx_bytes(t))
            (folder / name).write_bytes(blob)
            md5[name] = hashlib.md5(blob).hexdigest()
    return md5


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No Debian copy, no env var, an empty cache: only what the test provides."""
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "nowhere")
    monkeypatch.delenv("VISATTN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_read_idx_roundtrip_int32(tmp_path):
    t = torch.tensor([[1, -2, 300000], [4, 5, 6]], dtype=torch.int32)
    (tmp_path / "a.idx").write_bytes(idx_bytes(t))
    assert torch.equal(read_idx(tmp_path / "a.idx"), t)


def test_corrupt_files_raise_clear_errors(tmp_path):
    (tmp_path / "bad.gz").write_bytes(b"not gzip")
    with pytest.raises(IdxFormatError, match="cannot read"):
        read_idx(tmp_path / "bad.gz")
    (tmp_path / "short.idx").write_bytes(idx_bytes(torch.zeros(3, 4, dtype=torch.uint8))[:-2])
    with pytest.raises(IdxFormatError, match="payload"):
        read_idx(tmp_path / "short.idx")


def test_load_from_data_dir(isolated):
    write_tiny_set(isolated / "d")
    images, labels = fm.load_fashion_mnist("train", isolated / "d", download_missing=False)
    assert images.shape == (6, 28, 28) and images.dtype == torch.uint8 and labels.tolist() == [0, 1, 2, 3, 4, 5]
    assert fm.load_fashion_mnist("test", isolated / "d")[0].shape == (4, 28, 28)


def test_env_var_and_subfolder(isolated, monkeypatch):
    write_tiny_set(isolated / "root" / "fashion-mnist")
    monkeypatch.setenv("VISATTN_DATA", str(isolated / "root"))
    assert fm.find_fashion_mnist(download_missing=False) == isolated / "root" / "fashion-mnist"


def test_missing_gives_instructions(isolated):
    with pytest.raises(fm.DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        fm.find_fashion_mnist(download_missing=False)


class _Server:
    def __init__(self, folder: Path):
        handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(folder), **k)  # noqa: E731
        http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_download_from_local_server_with_checksums(isolated, monkeypatch):
    md5 = write_tiny_set(isolated / "served")
    monkeypatch.setattr(fm, "FILES", md5)
    with _Server(isolated / "served") as server:
        folder = fm.find_fashion_mnist(base_url=server.url)
    assert folder == isolated / "cache" / "visattn" / "fashion-mnist"
    images, _ = fm.load_fashion_mnist("train", download_missing=False)
    assert images.shape == (6, 28, 28)


def test_bad_checksum_leaves_no_file(isolated, monkeypatch):
    md5 = write_tiny_set(isolated / "served")
    md5["train-images-idx3-ubyte.gz"] = "0" * 32
    monkeypatch.setattr(fm, "FILES", md5)
    with _Server(isolated / "served") as server, pytest.raises(ChecksumError, match="does not match"):
        fm.find_fashion_mnist(base_url=server.url)
    cache = isolated / "cache" / "visattn" / "fashion-mnist"
    assert not (cache / "train-images-idx3-ubyte.gz").exists()
    assert not [p for p in cache.iterdir() if p.name.endswith(".part")]


def test_unreachable_server_gives_instructions(isolated):
    with pytest.raises(fm.DatasetNotFoundError, match="download failed"):
        fm.find_fashion_mnist(base_url="http://127.0.0.1:9/")
