"""The models (MNIST-1D, GN-LeNet, matrix factorisation), a seeded factory (every node starts
from identical weights), the flat parameter vector algorithms work on, and the batch stream."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CNN1D(nn.Module):
    """Three stride-2 Conv1d layers and a linear head, after the mnist1d repo's ConvBase.

    No BatchNorm: parameters are averaged across nodes, and running statistics would not be.
    """

    def __init__(self, num_classes: int = 10, channels: int = 32, input_len: int = 40) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, channels, 5, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        length = input_len
        for kernel in (5, 3, 3):
            length = (length + 2 - kernel) // 2 + 1
        self.head = nn.Linear(channels * length, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], 1, -1)
        return self.head(self.features(x).flatten(1))


class MLP(nn.Module):
    """The mnist1d baseline MLP: 40 -> 100 -> 100 -> 10 with ReLU."""

    def __init__(self, num_classes: int = 10, input_len: int = 40, hidden: int = 100) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(input_len, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class GNLeNet(nn.Module):
    """The artifact's `LeNet` for CIFAR-10 (decentralizepy's GN-LeNet): three 5x5 'same'
    convolutions (3->32->32->64), each followed by GroupNorm(2), ReLU and 2x2 max-pooling,
    then one linear layer 1024->10. 89,834 parameters. GroupNorm, not BatchNorm: no running
    statistics that averaging would leave behind."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 5, padding="same")
        self.gn1 = nn.GroupNorm(2, 32)
        self.conv2 = nn.Conv2d(32, 32, 5, padding="same")
        self.gn2 = nn.GroupNorm(2, 32)
        self.conv3 = nn.Conv2d(32, 64, 5, padding="same")
        self.gn3 = nn.GroupNorm(2, 64)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(64 * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.gn1(self.conv1(x))))
        x = self.pool(F.relu(self.gn2(self.conv2(x))))
        x = self.pool(F.relu(self.gn3(self.conv3(x))))
        return self.fc1(torch.flatten(x, 1))


class MatrixFactorization(nn.Module):
    """The artifact's MovieLens model: user and item embeddings of 20 factors drawn from
    U(-0.05, 0.05), the prediction their dot product, no biases. Input: int64 [n, 2] pairs
    of (user index, item index). 206,680 parameters for ml-latest-small's 610 x 9,724."""

    def __init__(self, num_users: int = 610, num_items: int = 9724, factors: int = 20) -> None:
        super().__init__()
        self.user_factors = nn.Embedding(num_users, factors)
        self.item_factors = nn.Embedding(num_items, factors)
        nn.init.uniform_(self.user_factors.weight, -0.05, 0.05)
        nn.init.uniform_(self.item_factors.weight, -0.05, 0.05)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        return (self.user_factors(pairs[:, 0]) * self.item_factors(pairs[:, 1])).sum(dim=1)


MODELS: dict[str, type[nn.Module]] = {
    "cnn1d": CNN1D,
    "mlp": MLP,
    "gn_lenet": GNLeNet,
    "mf": MatrixFactorization,
}


def build_model(name: str, seed: int, **dims: int) -> nn.Module:
    """Build model `name` with weights fixed by `seed`, leaving the global torch RNG untouched;
    `dims` are the sizes it takes from the data set (MovieLens users and items)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(sorted(MODELS))}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODELS[name](**dims)


def num_parameters(model: nn.Module) -> int:
    """Count all parameters of the model (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def flatten_parameters(model: nn.Module) -> torch.Tensor:
    """Make every parameter a view into one flat vector, so algorithms work on a single tensor."""
    params = list(model.parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in params]).contiguous()
    offset = 0
    for p in params:
        p.data = flat[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    return flat


class Batches:
    """Endless shuffled mini-batches of one node's shard, reshuffled every epoch."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int):
        self.x, self.y, self.batch_size = x, y, min(batch_size, len(y))
        self.generator = torch.Generator().manual_seed(seed)
        self.order, self.pos = torch.randperm(len(y), generator=self.generator), 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pos + self.batch_size > len(self.order):
            self.order, self.pos = torch.randperm(len(self.y), generator=self.generator), 0
        idx = self.order[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return self.x[idx], self.y[idx]
