"""CIFAR-10 in torchvision's on-disk layout: fetched when allowed, read once through the
restricted loader into array caches, and sharded so that each node holds only its own images."""

from __future__ import annotations

import json
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from node.data.download import fetch_and_unpack
from node.data.partition import PARTITIONS, partition_labels
from node.data.safe_pickle import load_restricted
from node.data.task import DataError, Downloaded, Sharded, Tester, classification_tester
from node.files import save_npy_atomic, write_json_atomic
from node.spec import DataSpec

# torchvision.datasets.CIFAR10's layout (a test checks these against torchvision's own).
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
CACHE = "cifar-10-cache"  # beside FOLDER: uint8 arrays that nodes map instead of unpickling
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"  # torchvision's CIFAR10.url
IMAGE = (3, 32, 32)
NUM_CLASSES = 10


def _torchvision_cifar10():
    from node.data.torchvision_compat import import_torchvision

    return import_torchvision().datasets.CIFAR10


def _load(path: Path) -> dict:
    try:
        return load_restricted(path)
    except (pickle.UnpicklingError, EOFError, ValueError) as err:
        raise DataError(f"{path} is not a CIFAR-10 python batch: {err}") from err


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _load(path)
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DataError(f"{path}: 'data' must be a uint8 array of N x 3072 images")
    labels = np.asarray(labels, dtype=np.int64)
    if data.shape[1] != np.prod(IMAGE) or labels.shape != (len(data),):
        raise DataError(f"{path}: {data.shape} images with {labels.shape} labels")
    if len(labels) and not (0 <= labels.min() and labels.max() < NUM_CLASSES):
        raise DataError(f"{path}: labels outside 0..{NUM_CLASSES - 1}")
    return data, labels


def _stamp(folder: Path) -> dict[str, list[int]]:
    files = (*TRAIN_FILES, TEST_FILE, META_FILE)
    return {name: [(s := (folder / name).stat()).st_size, s.st_mtime_ns] for name in files}


def build_cache(folder: Path, cache: Path) -> None:
    """Convert the pickled batches into train/test .npy arrays, once per version of the files."""
    stamp = _stamp(folder)
    stamp_file = cache / "stamp.json"
    if stamp_file.exists() and json.loads(stamp_file.read_text()) == stamp:
        return
    meta = _load(folder / META_FILE)
    if len(meta.get("label_names", ())) != NUM_CLASSES:
        raise DataError(f"{folder / META_FILE}: expected {NUM_CLASSES} label_names")
    train = [_read_batch(folder / name) for name in TRAIN_FILES]
    test_x, test_y = _read_batch(folder / TEST_FILE)
    save_npy_atomic(cache / "train_x.npy", np.concatenate([x for x, _ in train]))
    save_npy_atomic(cache / "train_y.npy", np.concatenate([y for _, y in train]))
    save_npy_atomic(cache / "test_x.npy", test_x)
    save_npy_atomic(cache / "test_y.npy", test_y)
    write_json_atomic(stamp_file, stamp)  # last: a cache without its stamp is rebuilt


def to_inputs(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 rows of 3072 (channel-major) -> float [n, 3, 32, 32], as the artifact's
    ToTensor() + Normalize((0.5,) * 3, (0.5,) * 3): x / 255, then (x - 0.5) / 0.5."""
    x = torch.as_tensor(np.asarray(images)).reshape(-1, *IMAGE).float().div_(255.0)
    return x.sub_(0.5).div_(0.5)


def missing_files(root: Path) -> list[str]:
    folder = root / FOLDER
    return [n for n in (*TRAIN_FILES, TEST_FILE, META_FILE) if not (folder / n).is_file()]


@dataclass
class CIFAR10Config(Sharded, Downloaded):
    """The `dataset` section of cifar10."""

    partitions: ClassVar[tuple[str, ...]] = PARTITIONS


class CIFAR10:
    """The `cifar10` task: 10-class image classification (GN-LeNet in the paper)."""

    name = "cifar10"
    partitions = PARTITIONS
    models = ("gn_lenet",)
    config_class = CIFAR10Config
    metric = "accuracy"

    def prepare(self, spec: DataSpec, url: str | None = None, md5: str | None = None) -> None:
        root = Path(spec.root)
        missing = missing_files(root)
        if missing and spec.download:
            tv = _torchvision_cifar10()
            url, md5 = (url, md5) if url else (tv.url, tv.tgz_md5)
            try:
                fetch_and_unpack(url, root, md5)
            except (OSError, ValueError, tarfile.TarError) as err:
                reason = f"downloading {url} failed ({err})"
                raise DataError(self._how_to_provide(root, missing, reason)) from err
            missing = missing_files(root)
        if missing:
            reason = "dataset.download=false" if not spec.download else "the download lacked them"
            raise DataError(self._how_to_provide(root, missing, reason))
        build_cache(root / FOLDER, root / CACHE)

    @staticmethod
    def _how_to_provide(root: Path, missing: list[str], reason: str) -> str:
        return (
            f"CIFAR-10 is not in {root / FOLDER} (missing {', '.join(missing)}) and {reason}. "
            f"Provide it: on a machine with internet, download {URL} and unpack it into {root} "
            f"(it creates {FOLDER}/), or point dataset.root at a folder that holds {FOLDER}/"
        )

    def model_dims(self, spec: DataSpec) -> dict[str, int]:
        return {}

    def train_shard(
        self, spec: DataSpec, node_id: int, num_nodes: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= node_id < num_nodes:
            raise ValueError(f"node_id {node_id} out of range for {num_nodes} nodes")
        cache = Path(spec.root) / CACHE
        labels = np.load(cache / "train_y.npy", allow_pickle=False)
        parts = partition_labels(
            labels, num_nodes, spec.partition, spec.partition_seed, spec.shards_per_node, spec.alpha
        )
        idx = parts[node_id]
        # Mapped, not read: only this node's rows are copied out (60 nodes must not each hold
        # the 150 MB training set); the page cache is shared by all of them.
        images = np.load(cache / "train_x.npy", mmap_mode="r", allow_pickle=False)
        x = to_inputs(images[idx])
        del images
        return x, torch.from_numpy(labels[idx])

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target)

    def tester(self, spec: DataSpec, num_nodes: int) -> Tester:
        cache = Path(spec.root) / CACHE
        x = torch.from_numpy(np.load(cache / "test_x.npy", allow_pickle=False))  # uint8: 30 MB
        y = torch.from_numpy(np.load(cache / "test_y.npy", allow_pickle=False))
        return classification_tester(x, y, transform=to_inputs)
