"""CIFAR-10 through the real code paths, on tiny files written in torchvision's format."""

from __future__ import annotations

import hashlib
import tarfile

import numpy as np
import pytest
import torch

from bench.data_files import write_cifar10
from node.data import DataError, task
from node.data import cifar10 as cifar
from node.data.torchvision_compat import import_torchvision
from node.models import build_model
from node.spec import DataSpec

PER_BATCH = 100  # 500 training images, 50 test images


def as_uint8(x: torch.Tensor) -> np.ndarray:
    """Normalised inputs back to the stored uint8 rows."""
    return torch.round((x * 0.5 + 0.5) * 255).to(torch.uint8).reshape(len(x), -1).numpy()


def spec(root, partition="kshard", seed=1234, **extra) -> DataSpec:
    return DataSpec(
        name="cifar10", root=str(root), partition=partition, partition_seed=seed, **extra
    )


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar10(root, per_batch=PER_BATCH)
    task("cifar10").prepare(spec(root, download=False))
    return root


def test_the_layout_and_url_are_torchvisions():
    tv = import_torchvision().datasets.CIFAR10  # also exercises the import shim
    assert cifar.FOLDER == tv.base_folder and cifar.URL == tv.url
    assert list(cifar.TRAIN_FILES) == [name for name, _ in tv.train_list]
    assert [cifar.TEST_FILE] == [name for name, _ in tv.test_list]
    assert cifar.META_FILE == tv.meta["filename"]


def test_inputs_are_totensor_then_normalize_half(root):
    transforms = import_torchvision().transforms
    rows = np.load(root / cifar.CACHE / "test_x.npy")[:4]
    pipeline = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]
    )
    # torchvision's CIFAR10 turns each row into an HWC image before the transform.
    expected = torch.stack([pipeline(r.reshape(3, 32, 32).transpose(1, 2, 0)) for r in rows])
    assert torch.allclose(cifar.to_inputs(rows), expected, atol=1e-6)


@pytest.mark.parametrize("partition", ["kshard", "iid", "dirichlet"])
def test_shards_cover_the_training_set_once_and_are_deterministic(root, partition):
    cifar10 = task("cifar10")
    shards = [cifar10.train_shard(spec(root, partition), n, 5) for n in range(5)]
    x0, y0 = shards[0]
    assert x0.shape[1:] == (3, 32, 32) and x0.dtype == torch.float32 and y0.dtype == torch.int64
    assert sum(len(y) for _, y in shards) == 5 * PER_BATCH
    # No image on two nodes, and every training image on one: compared by their bytes.
    train_x = np.load(root / cifar.CACHE / "train_x.npy")
    per_node = [{bytes(row) for row in as_uint8(x)} for x, _ in shards]
    assert sum(len(p) for p in per_node) == len(set().union(*per_node)) == 5 * PER_BATCH
    assert set().union(*per_node) == {bytes(row) for row in train_x}
    labels = np.concatenate([y.numpy() for _, y in shards])
    assert np.array_equal(
        np.bincount(labels, minlength=10),
        np.bincount(np.load(root / cifar.CACHE / "train_y.npy"), minlength=10),
    )
    again = cifar10.train_shard(spec(root, partition), 3, 5)
    assert torch.equal(again[0], shards[3][0]) and torch.equal(again[1], shards[3][1])
    other = cifar10.train_shard(spec(root, partition, seed=7), 3, 5)
    assert not torch.equal(other[1], shards[3][1]) or len(other[1]) != len(shards[3][1])


def test_kshard_gives_each_node_fewer_classes_than_iid(root):
    def classes(partition):
        shards = [task("cifar10").train_shard(spec(root, partition), n, 10) for n in range(10)]
        return np.mean([len(torch.unique(y)) for _, y in shards])

    # 5 class-sorted shards of 10 images each: mostly 1-2 classes per shard.
    assert classes("kshard") < 0.75 * classes("iid")


def test_a_shard_holds_only_its_own_images(root):
    x, y = task("cifar10").train_shard(spec(root), 0, 10)
    assert len(y) == 50
    assert x.untyped_storage().nbytes() == x.numel() * 4  # not a view into the whole set


def test_the_tester_reports_accuracy_and_loss(root):
    test = task("cifar10").tester(spec(root), 4)
    result = test(build_model("gn_lenet", 0), 2)
    assert 0 <= result["accuracy"] <= 1 and result["loss"] > 0


def test_a_few_training_steps_reduce_the_loss(root):
    cifar10 = task("cifar10")
    x, y = cifar10.train_shard(spec(root, "iid"), 0, 2)
    model = build_model("gn_lenet", 0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with torch.no_grad():
        before = cifar10.loss(model(x), y).item()
    for _ in range(10):
        opt.zero_grad()
        cifar10.loss(model(x[:64]), y[:64]).backward()
        opt.step()
    with torch.no_grad():
        assert cifar10.loss(model(x), y).item() < before


def test_missing_files_offline_name_the_path_and_the_fix(tmp_path):
    with pytest.raises(DataError) as err:
        task("cifar10").prepare(spec(tmp_path, download=False))
    text = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in text and "data_batch_1" in text
    assert cifar.URL in text and "dataset.root" in text and "download=false" in text


def test_an_unreachable_server_is_the_same_clear_error(tmp_path):
    with pytest.raises(DataError, match="downloading http://127.0.0.1:9/.* failed"):
        task("cifar10").prepare(spec(tmp_path), url="http://127.0.0.1:9/cifar-10-python.tar.gz")
    assert not any(tmp_path.iterdir())  # nothing half-downloaded left behind


def _archive(tmp_path, folder):
    source = tmp_path / "source"
    write_cifar10(source, per_batch=20, test=10)
    archive = folder / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return archive, hashlib.md5(archive.read_bytes()).hexdigest()


def test_download_fetches_checks_and_unpacks(tmp_path, http_folder):
    folder, base = http_folder
    archive, md5 = _archive(tmp_path, folder)
    root = tmp_path / "data"
    task("cifar10").prepare(spec(root), url=f"{base}/{archive.name}", md5=md5)
    assert not cifar.missing_files(root)
    x, y = task("cifar10").train_shard(spec(root, "iid"), 0, 2)
    assert len(y) == 50


def test_a_wrong_checksum_is_refused(tmp_path, http_folder):
    folder, base = http_folder
    archive, _ = _archive(tmp_path, folder)
    root = tmp_path / "data"
    with pytest.raises(DataError, match="MD5"):
        task("cifar10").prepare(spec(root), url=f"{base}/{archive.name}", md5="0" * 32)
    assert cifar.missing_files(root)


def test_a_file_that_is_not_a_batch_is_a_clear_error(tmp_path):
    write_cifar10(tmp_path, per_batch=10, test=5)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_3 is not a CIFAR-10 python batch"):
        task("cifar10").prepare(spec(tmp_path, download=False))
    (tmp_path / "cifar-10-batches-py" / "batches.meta").write_bytes(b"")
    with pytest.raises(DataError, match="batches.meta is not a CIFAR-10 python batch"):
        task("cifar10").prepare(spec(tmp_path, download=False))
