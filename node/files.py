"""Files a run writes while others read them: atomic replacement and append-only JSON lines."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np


def write_atomic(path: Path, write: Callable[[BinaryIO], object], sync: bool = False) -> None:
    """Write through `write(file)` into a temporary file beside `path`, then rename it over
    `path`: a reader (or a racing writer) sees the old file or the new one, never half of one.
    `sync` also flushes it to disk first, for results that must survive a crash of the host."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: dict, indent: int | None = 2) -> None:
    text = json.dumps(data, indent=indent, sort_keys=indent is not None)
    write_atomic(path, lambda f: f.write(text.encode()), sync=True)


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda f: f.write(text.encode()), sync=True)


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    write_atomic(path, lambda f: np.save(f, array, allow_pickle=False))


class JsonlWriter:
    """Appends one JSON record per line, flushed at once, so a crash cuts at most one line."""

    def __init__(self, path: Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "a")

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def read_jsonl(path: Path) -> list[dict]:
    """Every complete line; a line cut by a crash does not parse and is skipped."""
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records
