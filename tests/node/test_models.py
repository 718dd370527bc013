"""Tests for the models (MNIST-1D, GN-LeNet, matrix factorisation) and the seeded factory."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from node.data import MODEL_DATASET
from node.models import (
    CNN1D,
    MLP,
    MODELS,
    GNLeNet,
    MatrixFactorization,
    build_model,
    num_parameters,
)

# GN-LeNet: conv 3*32*25+32, GN 64, conv 32*32*25+32, GN 64, conv 32*64*25+64, GN 128,
# fc 1024*10+10 = 2432+64+25632+64+51264+128+10250. MF: (610 + 9724) * 20.
EXPECTED_PARAMS = {"cnn1d": 8010, "mlp": 15210, "gn_lenet": 89_834, "mf": 206_680}


def batch(name: str, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets each model trains on, with its loss's target type."""
    if name == "gn_lenet":
        return torch.randn(n, 3, 32, 32, generator=gen), torch.randint(0, 10, (n,), generator=gen)
    if name == "mf":
        pairs = torch.stack(
            [
                torch.randint(0, 610, (n,), generator=gen),
                torch.randint(0, 9724, (n,), generator=gen),
            ],
            dim=1,
        )
        return pairs, torch.randint(1, 11, (n,), generator=gen).float() / 2
    return torch.randn(n, 1, 40, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def test_registry_and_the_data_set_each_model_is_for():  # each data set names its models
    assert MODELS == {"cnn1d": CNN1D, "mlp": MLP, "gn_lenet": GNLeNet, "mf": MatrixFactorization}
    assert MODEL_DATASET == {
        "cnn1d": "mnist1d",
        "mlp": "mnist1d",
        "gn_lenet": "cifar10",
        "mf": "movielens",
    }


@pytest.mark.parametrize("name", sorted(MODELS))
def test_parameter_count(name):
    assert num_parameters(build_model(name, seed=0)) == EXPECTED_PARAMS[name]


def test_gn_lenet_layers_are_the_artifacts():
    model = build_model("gn_lenet", 0)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (3, 32, (5, 5), "same"),
        (32, 32, (5, 5), "same"),
        (32, 64, (5, 5), "same"),
    ]
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert [(g.num_groups, g.num_channels) for g in norms] == [(2, 32), (2, 32), (2, 64)]
    assert (model.fc1.in_features, model.fc1.out_features) == (1024, 10)


def test_mf_takes_its_sizes_from_the_data_and_inits_uniformly():
    model = build_model("mf", 3, num_users=7, num_items=11)
    assert model.user_factors.weight.shape == (7, 20) and model.item_factors.weight.shape == (
        11,
        20,
    )
    big = build_model("mf", 3)
    for w in (big.user_factors.weight, big.item_factors.weight):
        assert w.abs().max() <= 0.05 and w.abs().max() > 0.049  # U(-0.05, 0.05), 200k draws
    pairs = torch.tensor([[0, 1], [6, 10]])
    expected = (
        model.user_factors.weight[pairs[:, 0]] * model.item_factors.weight[pairs[:, 1]]
    ).sum(1)
    assert torch.allclose(model(pairs), expected)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_build_model_is_deterministic(name):
    a, b, c = build_model(name, 1), build_model(name, 1), build_model(name, 2)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb)
    assert any(
        not torch.equal(pa, pc)
        for pa, pc in zip(a.state_dict().values(), c.state_dict().values(), strict=True)
    )


def test_build_model_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    build_model("cnn1d", 5)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_build_model_unknown_name():
    with pytest.raises(ValueError, match="cnn1d, gn_lenet, mf, mlp"):
        build_model("resnet", 0)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_output_shape_and_no_batchnorm(name):
    model = build_model(name, 0)
    gen = torch.Generator().manual_seed(0)
    expected = () if name == "mf" else (10,)
    assert model(batch(name, 4, gen)[0]).shape == (4, *expected)
    assert model(batch(name, 1, gen)[0]).shape == (1, *expected)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_sgd_step_reduces_batch_loss(name):
    model = build_model(name, 0)
    x, y = batch(name, 8, torch.Generator().manual_seed(0))
    loss_fn = nn.MSELoss() if name == "mf" else nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)  # one small step: the loss must fall
    before = loss_fn(model(x), y)
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = loss_fn(model(x), y)
    assert after.item() < before.item()
