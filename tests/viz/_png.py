"""A small PNG reader for the tests (8-bit RGB, as visattn.viz writes, or any filter-0 image)."""

import struct
import zlib
from pathlib import Path

import torch


def read_png(path: Path) -> torch.Tensor:
    """Decode an 8-bit RGB / RGBA PNG with unfiltered rows into ``(H, W, channels)`` uint8, checking every CRC."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG"
    pos, chunks = 8, {}
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert crc == zlib.crc32(tag + body) & 0xFFFFFFFF, f"{path}: bad CRC in {tag!r}"
        chunks[tag] = chunks.get(tag, b"") + body
        pos += 12 + n
    w, h, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert depth == 8 and color in (2, 6), f"{path}: depth {depth}, colour type {color}"
    ch = 3 if color == 2 else 4
    raw = zlib.decompress(chunks[b"IDAT"])
    assert len(raw) == h * (1 + w * ch)
    rows = torch.tensor(list(raw), dtype=torch.uint8).view(h, 1 + w * ch)
    assert (rows[:, 0] == 0).all(), "only filter type 0 is decoded here"
    return rows[:, 1:].reshape(h, w, ch)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk (any PNG)."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path}: not a PNG"
    return struct.unpack(">II", data[16:24])
