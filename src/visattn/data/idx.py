"""Reader for the idx format of (Fashion-)MNIST: big-endian header, then raw values."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import torch

__all__ = ["read_idx", "IdxFormatError"]

_DTYPES = {0x08: torch.uint8, 0x09: torch.int8, 0x0B: torch.int16, 0x0C: torch.int32, 0x0D: torch.float32,
           0x0E: torch.float64}


class IdxFormatError(ValueError):
    """The file is not a well-formed idx file (truncated, wrong magic, corrupt gzip)."""


def read_idx(path: str | Path) -> torch.Tensor:
    """Read an idx file (optionally gzip-compressed) into a tensor of its declared shape and type.

    Raises:
        IdxFormatError: bad magic number, unknown type code, or a payload that does not match the header.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise IdxFormatError(f"{path}: cannot read ({err})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise IdxFormatError(f"{path}: not an idx file (bad magic number)")
    type_code, ndim = raw[2], raw[3]
    if type_code not in _DTYPES:
        raise IdxFormatError(f"{path}: unknown idx type code {type_code:#x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IdxFormatError(f"{path}: truncated header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _DTYPES[type_code]
    count = 1
    for s in shape:
        count *= s
    itemsize = torch.empty((), dtype=dtype).element_size()
    if len(raw) - header != count * itemsize:
        raise IdxFormatError(f"{path}: header says {shape} ({count * itemsize} bytes), payload has "
                             f"{len(raw) - header} bytes")
    data = torch.frombuffer(bytearray(raw[header:]), dtype=dtype)
    if itemsize > 1:  # idx is big-endian
        data = data.view(torch.uint8).view(-1, itemsize).flip(1).contiguous().view(dtype).view(-1)
    return data.reshape(shape)
