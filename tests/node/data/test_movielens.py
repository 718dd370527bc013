"""MovieLens through the real code paths, on a tiny ratings.csv in ml-latest-small's format."""

from __future__ import annotations

import csv
import io
import math
import zipfile

import numpy as np
import pytest
import torch

from bench.data_files import write_ratings
from node.data import DataError, task
from node.data import movielens as ml
from node.models import build_model
from node.spec import DataSpec

USERS = 24


def spec(root, seed=1234, **extra) -> DataSpec:
    return DataSpec(
        name="movielens", root=str(root), partition="by_user", partition_seed=seed, **extra
    )


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("movielens")
    write_ratings(root, num_users=USERS)
    task("movielens").prepare(spec(root, download=False))
    return root


def model_for(root, seed=0):
    return build_model("mf", seed, **task("movielens").model_dims(spec(root)))


def test_dims_are_the_distinct_users_and_rated_items(root):
    rows = read_csv(root / "ml-latest-small" / "ratings.csv")
    dims = task("movielens").model_dims(spec(root))
    assert dims == {
        "num_users": len({r["userId"] for r in rows}),
        "num_items": len({r["movieId"] for r in rows}),
    }
    assert dims["num_users"] == USERS


def test_users_are_split_contiguously_and_ratings_70_30_within_each_user(root):
    rows = read_csv(root / "ml-latest-small" / "ratings.csv")
    per_user = {}
    for r in rows:
        per_user.setdefault(int(r["userId"]), []).append(r)
    user_ids = sorted(per_user)  # dense index = rank of the id
    movielens, nodes = task("movielens"), 5
    seen_users, train_total = [], 0
    for node in range(nodes):
        x, y = movielens.train_shard(spec(root), node, nodes)
        users = sorted(set(x[:, 0].tolist()))
        seen_users += users
        for u in users:
            n = len(per_user[user_ids[u]])
            assert int((x[:, 0] == u).sum()) == round(0.7 * n)  # each user's 70%
        train_total += len(y)
        assert y.dtype == torch.float32 and x.dtype == torch.int64
    # Contiguous blocks, the first nodes one user more: 24 users on 5 nodes = 5,5,5,5,4.
    assert seen_users == list(range(USERS))
    assert train_total == sum(round(0.7 * len(v)) for v in per_user.values())


def test_train_and_test_ratings_of_a_user_do_not_overlap_and_add_up(root):
    ratings = ml.Ratings(root)
    for user in range(USERS):
        rows = ratings.rows(user)
        train, test = ml.split_user(rows, user, seed=3, train_fraction=0.7)
        assert not set(train) & set(test) and sorted([*train, *test]) == list(rows)
        again, _ = ml.split_user(rows, user, seed=3, train_fraction=0.7)
        assert np.array_equal(train, again)


def test_the_split_depends_on_the_seed(root):
    a, _ = task("movielens").train_shard(spec(root, seed=1), 0, 3)
    b, _ = task("movielens").train_shard(spec(root, seed=2), 0, 3)
    assert not torch.equal(a, b)


def test_rmse_and_rounded_accuracy_by_hand():
    class Fixed(torch.nn.Module):
        def forward(self, pairs):
            return torch.tensor([3.2, 4.76, 0.1, 5.6])

    y = torch.tensor([3.0, 5.0, 0.5, 4.5])
    rmse, accuracy = ml.rmse_and_accuracy(Fixed(), torch.zeros(4, 2, dtype=torch.int64), y)
    # rounded to halves and clipped: 3.0, 5.0, 0.5, 5.0 -> three of four right
    assert accuracy == pytest.approx(0.75)
    assert rmse == pytest.approx(math.sqrt((0.2**2 + 0.24**2 + 0.4**2 + 1.1**2) / 4), rel=1e-5)


def test_the_tester_reports_local_and_global_rmse(root):
    test = task("movielens").tester(spec(root), 4)
    result = test(model_for(root), 1)
    assert set(result) == {"accuracy", "loss", "global_loss", "global_accuracy"}
    # A near-zero initial model predicts ~0: its RMSE is about the ratings' root mean square.
    assert 1.5 < result["loss"] < 5 and 1.5 < result["global_loss"] < 5


def test_a_few_training_steps_reduce_the_loss(root):
    movielens = task("movielens")
    x, y = movielens.train_shard(spec(root), 0, 2)
    model = model_for(root)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with torch.no_grad():
        before = movielens.loss(model(x), y).item()
    for _ in range(20):
        opt.zero_grad()
        movielens.loss(model(x), y).backward()
        opt.step()
    with torch.no_grad():
        assert movielens.loss(model(x), y).item() < before


def test_missing_file_offline_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(DataError) as err:
        task("movielens").prepare(spec(tmp_path, download=False))
    text = str(err.value)
    assert str(tmp_path / "ml-latest-small" / "ratings.csv") in text
    assert ml.URL in text and "dataset.root" in text


def test_an_unreachable_server_is_the_same_clear_error(tmp_path):
    with pytest.raises(DataError, match="downloading http://127.0.0.1:9/.* failed"):
        task("movielens").prepare(spec(tmp_path), url="http://127.0.0.1:9/ml-latest-small.zip")


def test_download_fetches_and_unzips(tmp_path, http_folder):
    folder, base = http_folder
    source = write_ratings(tmp_path / "source", num_users=6)
    with zipfile.ZipFile(folder / "ml-latest-small.zip", "w") as zf:
        zf.write(source, "ml-latest-small/ratings.csv")
    root = tmp_path / "data"
    task("movielens").prepare(spec(root), url=f"{base}/ml-latest-small.zip")
    assert task("movielens").model_dims(spec(root))["num_users"] == 6


def test_a_zip_member_escaping_the_root_is_refused(tmp_path, http_folder):
    folder, base = http_folder
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("../escaped.csv", "userId,movieId,rating,timestamp\n")
    (folder / "ml-latest-small.zip").write_bytes(buffer.getvalue())
    with pytest.raises(DataError, match="leaves"):
        task("movielens").prepare(spec(tmp_path / "data"), url=f"{base}/ml-latest-small.zip")
    assert not (tmp_path / "escaped.csv").exists()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("user,movie,rating,timestamp\n1,2,3.0,0\n", "header"),
        ("userId,movieId,rating,timestamp\n1,2,x,0\n", "ratings.csv:2"),
        ("userId,movieId,rating,timestamp\n1,2,7.0,0\n", "outside"),
    ],
)
def test_a_malformed_ratings_file_is_a_clear_error(tmp_path, content, match):
    (tmp_path / "ml-latest-small").mkdir()
    (tmp_path / "ml-latest-small" / "ratings.csv").write_text(content)
    with pytest.raises(DataError, match=match):
        task("movielens").prepare(spec(tmp_path, download=False))
