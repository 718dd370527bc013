"""Fetches a data set archive over HTTP(S) with a timeout and a checksum, then unpacks it safely."""

from __future__ import annotations

import hashlib
import tarfile
import urllib.request
import zipfile
from pathlib import Path

from node.files import write_atomic

TIMEOUT = 60.0  # seconds without a byte before the download is given up
USER_AGENT = "dlemu (data set download)"


def fetch_and_unpack(url: str, root: Path, md5: str | None, timeout: float = TIMEOUT) -> None:
    """Download `url` into `root`, check its MD5 when given, and unpack it there (.tar.gz or
    .zip). Raises OSError (urllib's URLError included) when the machine cannot get it, or
    ValueError on a wrong checksum; a failed download leaves nothing behind."""
    archive = root / url.rstrip("/").rsplit("/", 1)[-1]

    def download(out) -> None:
        digest = hashlib.md5(usedforsecurity=False)
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if md5 is not None and digest.hexdigest() != md5:
            raise ValueError(f"{url}: MD5 {digest.hexdigest()} is not the expected {md5}")

    write_atomic(archive, download)  # a failed or wrong download leaves nothing behind
    unpack(archive, root)


def unpack(archive: Path, root: Path) -> None:
    """Unpack into `root`; members that would land outside it (absolute paths, `..`, links
    out of the tree) are refused, as tarfile's `data` filter does."""
    if archive.name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(archive) as tar:
            tar.extractall(root, filter="data")
        return
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            base = root.resolve()
            for member in zf.infolist():
                target = (root / member.filename).resolve()
                if not target.is_relative_to(base):
                    raise ValueError(f"{archive}: member {member.filename!r} leaves {root}")
            zf.extractall(root)
        return
    raise ValueError(f"{archive}: not a .tar.gz or .zip archive")
