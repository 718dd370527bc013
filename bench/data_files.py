"""Writes data sets of any size in the real on-disk formats (CIFAR-10 pickles, MovieLens
ratings.csv), so the real loading code is what tests and benchmarks run."""

from __future__ import annotations

import csv
import pickle
from pathlib import Path

import numpy as np

CIFAR_FOLDER = "cifar-10-batches-py"
LABEL_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def write_cifar10(root: Path, per_batch: int = 100, test: int = 50, seed: int = 0) -> Path:
    """torchvision's CIFAR-10 layout: five training batches and a test batch, each a pickled
    dict with `data` (uint8 N x 3072, channel-major rows) and `labels`, plus `batches.meta`.
    Images are class-coloured noise, so a model can learn them."""
    rng = np.random.default_rng(seed)
    folder = root / CIFAR_FOLDER
    folder.mkdir(parents=True, exist_ok=True)

    def batch(n: int, label: str) -> dict:
        labels = rng.integers(0, 10, n)
        base = (labels[:, None] * 25).astype(np.int64)  # class signal in every pixel
        data = np.clip(base + rng.integers(0, 40, (n, 3072)), 0, 255).astype(np.uint8)
        names = [f"img_{label}_{i}.png" for i in range(n)]
        return {"batch_label": label, "labels": labels.tolist(), "data": data, "filenames": names}

    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch(per_batch, f"training batch {i} of 5"), f, protocol=2)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch(test, "testing batch 1 of 1"), f, protocol=2)
    meta = {"num_cases_per_batch": per_batch, "label_names": LABEL_NAMES, "num_vis": 3072}
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return folder


def write_ratings(
    root: Path,
    num_users: int = 24,
    per_user: tuple[int, int] = (10, 30),
    num_movies: int = 60,
    seed: int = 0,
) -> Path:
    """ml-latest-small's ratings.csv: the real header, sparse user and movie ids, half stars."""
    rng = np.random.default_rng(seed)
    folder = root / "ml-latest-small"
    folder.mkdir(parents=True, exist_ok=True)
    movie_ids = np.sort(rng.choice(np.arange(1, 200_000), num_movies, replace=False))
    path = folder / "ratings.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["userId", "movieId", "rating", "timestamp"])
        for user in range(1, num_users + 1):
            count = int(rng.integers(*per_user))
            for movie in np.sort(rng.choice(movie_ids, count, replace=False)):
                rating = float(rng.integers(1, 11)) / 2
                writer.writerow([user * 3, int(movie), f"{rating:.1f}", 964982703 + user])
    return path
