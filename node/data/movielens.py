"""MovieLens ml-latest-small: users split contiguously across nodes, each user's ratings 70/30
train/test, for matrix factorisation (the artifact's `datasets/MovieLens.py`)."""

from __future__ import annotations

import csv
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from node.checks import hinted, require
from node.data.download import fetch_and_unpack
from node.data.partition import user_blocks
from node.data.task import DataError, Downloaded, Tester
from node.files import save_npy_atomic, write_json_atomic
from node.spec import DataSpec

URL = "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip"
FOLDER = "ml-latest-small"
RATINGS = "ratings.csv"
HEADER = ["userId", "movieId", "rating", "timestamp"]
CACHE = "ml-latest-small-cache"  # beside FOLDER: ratings grouped by user, as .npy arrays
PARTITIONS = ("by_user",)
TRAIN_FRACTION_FIX = "e.g. 0.7 (70/30 per user)"
MIN_RATING, MAX_RATING = 0.5, 5.0


def read_ratings(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user ids, movie ids, ratings) as in the file; a clear error on anything malformed."""
    users, movies, ratings = [], [], []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != HEADER:
            raise DataError(f"{path}: header {header} is not {','.join(HEADER)}")
        for line, row in enumerate(reader, start=2):
            try:
                user, movie, rating = int(row[0]), int(row[1]), float(row[2])
            except (ValueError, IndexError):
                raise DataError(f"{path}:{line}: cannot read {row!r}") from None
            if not MIN_RATING <= rating <= MAX_RATING:
                raise DataError(f"{path}:{line}: rating {rating} is outside 0.5..5")
            users.append(user)
            movies.append(movie)
            ratings.append(rating)
    if not ratings:
        raise DataError(f"{path}: no ratings")
    return np.array(users), np.array(movies), np.array(ratings, dtype=np.float32)


def build_cache(path: Path, cache: Path) -> None:
    """Re-index users and movies densely (sorted ids, as the artifact's re-indexing keeps
    9,724 rated items) and store the ratings grouped by user, once per version of the file."""
    stat = path.stat()
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    dims_file = cache / "dims.json"
    if dims_file.exists() and json.loads(dims_file.read_text()).get("stamp") == stamp:
        return
    users, movies, ratings = read_ratings(path)
    user_ids, user_index = np.unique(users, return_inverse=True)
    movie_ids, movie_index = np.unique(movies, return_inverse=True)
    order = np.argsort(user_index, kind="stable")
    starts = np.searchsorted(user_index[order], np.arange(len(user_ids) + 1))
    save_npy_atomic(cache / "users.npy", user_index[order].astype(np.int64))
    save_npy_atomic(cache / "items.npy", movie_index[order].astype(np.int64))
    save_npy_atomic(cache / "ratings.npy", ratings[order])
    save_npy_atomic(cache / "user_starts.npy", starts.astype(np.int64))
    dims = {"num_users": len(user_ids), "num_items": len(movie_ids), "num_ratings": len(ratings)}
    write_json_atomic(dims_file, {**dims, "stamp": stamp})  # last: a cache without it is rebuilt


def split_user(rows: np.ndarray, user: int, seed: int, train_fraction: float):
    """One user's rating rows, shuffled by (seed, user) and cut into round(70%) train, rest
    test: any node computes any user's split alone, and the same on every node."""
    perm = np.random.default_rng([seed, user]).permutation(rows)
    cut = int(round(train_fraction * len(rows)))
    return perm[:cut], perm[cut:]


class Ratings:
    """The cached ratings, memory-mapped; rows of user u are starts[u]:starts[u+1]."""

    def __init__(self, root: Path):
        cache = root / CACHE
        self.users, self.items, self.ratings, self.starts = (
            np.load(cache / name, mmap_mode="r", allow_pickle=False)
            for name in ("users.npy", "items.npy", "ratings.npy", "user_starts.npy")
        )
        self.dims = json.loads((cache / "dims.json").read_text())

    def rows(self, user: int) -> np.ndarray:
        return np.arange(self.starts[user], self.starts[user + 1])

    def tensors(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(user, item) pairs as int64 [n, 2] and ratings as float32 [n]."""
        pairs = np.stack([self.users[rows], self.items[rows]], axis=1)
        return torch.from_numpy(pairs), torch.from_numpy(np.array(self.ratings[rows]))

    def split(self, users: np.ndarray, seed: int, train_fraction: float, part: int):
        chosen = [split_user(self.rows(u), int(u), seed, train_fraction)[part] for u in users]
        return self.tensors(np.concatenate(chosen) if chosen else np.zeros(0, np.int64))


def rmse_and_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    """RMSE, and the share of predictions that, rounded to the nearest 0.5 and clipped to
    0.5..5, equal the rating (the artifact's MovieLens test)."""
    if not len(y):
        return float("nan"), float("nan")
    with torch.no_grad():
        pred = model(x)
    rounded = torch.clamp(torch.round(pred * 2) / 2, MIN_RATING, MAX_RATING)
    rmse = torch.sqrt(F.mse_loss(pred, y)).item()
    return rmse, (rounded == y).float().mean().item()


@dataclass
class MovieLensConfig(Downloaded):
    """The `dataset` section of movielens: users split across nodes, ratings per user."""

    train_fraction: float = hinted(TRAIN_FRACTION_FIX)
    partitions: ClassVar[tuple[str, ...]] = PARTITIONS

    def __post_init__(self):
        super().__post_init__()
        ok = 0.05 <= self.train_fraction <= 0.95
        require(
            ok,
            "dataset.train_fraction",
            f"{self.train_fraction} is not in [0.05, 0.95]",
            TRAIN_FRACTION_FIX,
        )

    def check(self, num_nodes: int) -> None:
        require(
            num_nodes <= 610,
            "num_nodes",
            f"{num_nodes} nodes but ml-latest-small has 610 users to split by user",
            "use num_nodes<=610",
        )


class MovieLens:
    """The `movielens` task: rating prediction by matrix factorisation (MSE loss)."""

    name = "movielens"
    partitions = PARTITIONS
    models = ("mf",)
    config_class = MovieLensConfig
    metric = "RMSE"  # the paper's: test RMSE, lower is better

    def prepare(self, spec: DataSpec, url: str = URL) -> None:
        root = Path(spec.root)
        path = root / FOLDER / RATINGS
        if not path.is_file() and spec.download:
            try:
                # No published checksum: the file is checked by its header and rows instead.
                fetch_and_unpack(url, root, md5=None)
            except (OSError, ValueError, zipfile.BadZipFile) as err:
                reason = f"downloading {url} failed ({err})"
                raise DataError(self._how_to_provide(path, reason)) from err
        if not path.is_file():
            reason = "dataset.download=false" if not spec.download else "the download lacked it"
            raise DataError(self._how_to_provide(path, reason))
        build_cache(path, root / CACHE)

    @staticmethod
    def _how_to_provide(path: Path, reason: str) -> str:
        root = path.parent.parent
        return (
            f"MovieLens is not at {path} and {reason}. Provide it: on a machine with internet, "
            f"download {URL} and unzip it into {root} (it creates {FOLDER}/{RATINGS}), or "
            f"point dataset.root at a folder that holds {FOLDER}/"
        )

    def model_dims(self, spec: DataSpec) -> dict[str, int]:
        dims = json.loads((Path(spec.root) / CACHE / "dims.json").read_text())
        return {"num_users": dims["num_users"], "num_items": dims["num_items"]}

    def train_shard(
        self, spec: DataSpec, node_id: int, num_nodes: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ratings = Ratings(Path(spec.root))
        users = user_blocks(ratings.dims["num_users"], num_nodes)[node_id]
        return ratings.split(users, spec.partition_seed, spec.train_fraction, part=0)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output, target)

    def tester(self, spec: DataSpec, num_nodes: int) -> Tester:
        """A node's model on its own users' test ratings (RMSE as `loss`, rounded accuracy),
        and on every user's (`global_loss`, the RMSE over the whole 30%)."""
        ratings = Ratings(Path(spec.root))
        blocks = user_blocks(ratings.dims["num_users"], num_nodes)
        local = [ratings.split(b, spec.partition_seed, spec.train_fraction, 1) for b in blocks]
        every = (torch.cat([x for x, _ in local]), torch.cat([y for _, y in local]))

        def test(model: torch.nn.Module, node_id: int) -> dict[str, float]:
            model.eval()
            rmse, accuracy = rmse_and_accuracy(model, *local[node_id])
            global_rmse, global_accuracy = rmse_and_accuracy(model, *every)
            model.train()
            return {
                "accuracy": accuracy,
                "loss": rmse,
                "global_loss": global_rmse,
                "global_accuracy": global_accuracy,
            }

        return test
