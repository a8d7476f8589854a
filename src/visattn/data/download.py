"""Download a file with checksum verification, written atomically (no partial file on failure)."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

__all__ = ["download", "ChecksumError"]


class ChecksumError(OSError):
    """A downloaded file's checksum did not match; nothing was written."""


def download(url: str, dest: str | Path, md5: str | None = None, timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest``; verify ``md5`` before the file appears under its final name.

    The body goes to a temporary file beside ``dest`` that is renamed only after the checksum
    matches, so an interrupted or corrupt download never leaves a partial ``dest`` behind.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if md5 is not None and digest.hexdigest() != md5:
            raise ChecksumError(f"{url}: md5 {digest.hexdigest()} does not match the expected {md5}")
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp made it 0600; data files follow the umask like any other
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest
