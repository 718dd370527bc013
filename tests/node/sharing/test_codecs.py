"""The codecs against what they promise: top-k's selection and error feedback, the quantiser's
unbiasedness and error bound, the random codec's seed, the declared sizes, and refusals."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from node.algorithms.base import uniform_mean
from node.sharing import CODECS, CodecError, Part, make_codec, mean_of_parts, weighted_mix
from node.sharing.base import SharingConfig
from node.sharing.quantize import Quantize, QuantizeConfig, pack, unpack
from node.sharing.subsample import SEED, RandomConfig, RandomSubset, drawn_indices
from node.sharing.topk import ErrorFeedback, TopK, TopKConfig

SIZE = 1000


def vector(seed: int, size: int = SIZE) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=size).astype(np.float32))


def configs() -> dict[str, SharingConfig]:
    return {
        "full": SharingConfig(name="full"),
        "topk": TopKConfig(name="topk", fraction=0.1),
        "random": RandomConfig(name="random", fraction=0.1),
        "quantize": QuantizeConfig(name="quantize", bits=4, block=256),
    }


# ---- top-k ----------------------------------------------------------------------------------
def test_topk_keeps_exactly_the_k_largest_magnitudes():
    codec = TopK(TopKConfig(name="topk", fraction=0.1), SIZE)
    v = vector(1)
    message = codec.compress(v)
    (indices,) = message.extra
    expected = np.sort(np.argsort(np.abs(v.numpy()))[-100:])
    assert indices.dtype == np.int32 and np.array_equal(indices, expected)
    assert np.array_equal(message.values, v.numpy()[expected])
    smallest_kept = np.abs(message.values).min()
    rest = np.delete(np.abs(v.numpy()), expected)
    assert smallest_kept >= rest.max()


def test_error_feedback_keeps_what_was_not_sent_and_loses_nothing_over_rounds():
    feedback = ErrorFeedback(SIZE, k=50)
    first = vector(2)
    indices, sent = feedback.step(first)
    # the residual is exactly the input with the sent coordinates taken out
    unsent = first.clone()
    unsent[indices] = 0
    assert torch.equal(feedback.residual, unsent)
    assert torch.equal(sent, first[indices])
    total_in, total_sent = first.double(), torch.zeros(SIZE, dtype=torch.float64)
    total_sent[indices] += sent.double()
    for r in range(3, 40):
        change = vector(r) * 0.1
        indices, sent = feedback.step(change)
        total_in += change.double()
        total_sent[indices] += sent.double()
    assert torch.allclose(total_sent + feedback.residual.double(), total_in, atol=1e-4)
    # a coordinate that keeps changing a little is sent eventually
    slow = ErrorFeedback(4, k=1)
    sent_at = [slow.step(torch.tensor([1.0, 0.3, 0.0, 0.0]))[0].item() for _ in range(5)]
    assert 1 in sent_at


def test_topk_share_selects_by_the_change_since_the_start_and_sends_the_current_values():
    codec = TopK(TopKConfig(name="topk", fraction=0.25), 4)
    start = torch.tensor([10.0, -10.0, 1.0, 1.0])
    codec.start(start)
    params = start + torch.tensor([0.0, 0.0, 0.5, 0.0])  # only coordinate 2 moved
    message = codec.share(params)
    assert message.extra[0].tolist() == [2] and message.values.tolist() == [1.5]
    # coordinate 3 now accumulates two small moves against one fresh move of coordinate 0
    params = params + torch.tensor([0.3, 0.0, 0.0, 0.2])
    assert codec.share(params).extra[0].tolist() == [0]
    params = params + torch.tensor([0.0, 0.0, 0.0, 0.2])
    assert codec.share(params).extra[0].tolist() == [3]  # 0.4 accumulated, unsent so far


# ---- quantize -------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_codes_pack_and_unpack_to_themselves(bits):
    codes = np.random.default_rng(bits).integers(0, 1 << bits, size=64, dtype=np.uint8)
    packed = pack(codes, bits)
    assert packed.nbytes == 64 * bits // 8 and np.array_equal(unpack(packed, bits), codes)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_the_quantiser_is_unbiased_and_within_one_step(bits):
    size, trials = 300, 3000
    codec = Quantize(QuantizeConfig(name="quantize", bits=bits, block=64), size, seed=7)
    v = vector(3, size)
    decoded = np.stack(
        [codec.decompress(*_arrays(codec.compress(v))).values.numpy() for _ in range(trials)]
    )
    blocks = np.abs(np.pad(v.numpy(), (0, 20))).reshape(-1, 64).max(axis=1)
    step = np.repeat(2 * blocks / ((1 << bits) - 1), 64)[:size]  # one level apart
    assert np.all(np.abs(decoded - v.numpy()) <= step * (1 + 1e-5))
    # mean of n encodings: each is within a step, so its deviation shrinks as step/sqrt(n)
    assert np.all(np.abs(decoded.mean(axis=0) - v.numpy()) <= 5 * step / np.sqrt(trials))
    assert not np.allclose(decoded[0], decoded[1])  # stochastic, not a fixed rounding


def test_a_block_of_zeros_decodes_to_zeros():
    codec = Quantize(QuantizeConfig(name="quantize", bits=4, block=8), 16)
    v = torch.cat([torch.zeros(8), torch.ones(8)])
    assert torch.equal(codec.decompress(*_arrays(codec.compress(v))).values, v)


# ---- random ---------------------------------------------------------------------------------
def test_the_receiver_rebuilds_the_senders_indices_from_the_seed():
    sender = RandomSubset(RandomConfig(name="random", fraction=0.1), SIZE, seed=3)
    receiver = RandomSubset(RandomConfig(name="random", fraction=0.1), SIZE, seed=99)
    v = vector(4)
    first, second = sender.compress(v), sender.compress(v)
    assert first.extra == () and first.aux[SEED] != second.aux[SEED]  # a fresh draw each time
    part = receiver.decompress(*_arrays(first))
    indices = drawn_indices(first.aux[SEED], SIZE, 100)
    assert torch.equal(part.indices, indices) and len(set(indices.tolist())) == 100
    assert torch.equal(part.values, v[indices])


def test_randomized_codecs_repeat_from_the_nodes_rng():
    config = RandomConfig(name="random", fraction=0.1)
    a = make_codec(config, SIZE, random.Random(5)).compress(vector(5))
    b = make_codec(config, SIZE, random.Random(5)).compress(vector(5))
    assert a.aux == b.aux


# ---- every codec ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CODECS))
def test_declared_sizes_are_the_sizes_of_the_arrays_sent(name):
    codec = make_codec(configs()[name], SIZE, random.Random(0))
    codec.start(vector(0))
    for message in (codec.compress(vector(6)), codec.share(vector(7))):
        values, metadata = codec.message_bytes()
        assert message.values.nbytes == values
        assert sum(a.nbytes for a in message.extra) == metadata


@pytest.mark.parametrize("name", sorted(CODECS))
def test_a_malformed_message_is_refused_not_misread(name):
    codec = make_codec(configs()[name], SIZE, random.Random(0))
    good = _arrays(codec.compress(vector(8)))
    codec.decompress(*good)
    values, extra, aux = good
    bad = [
        (values[:-1], extra, aux),  # one value short
        (values.astype(np.float64), extra, aux),  # another dtype
        (values, (*extra, np.zeros(3, np.int32)), aux),  # an array more
        (values, extra, {**aux, "codec_other": 1}),  # a header field it does not send
    ]
    if name == "topk":
        bad.append((values, (extra[0][::-1].copy(),), aux))  # indices out of order
        bad.append((values, (extra[0] + SIZE,), aux))  # out of range
    if name == "random":
        bad.append((values, extra, {}))  # no seed
    if name == "quantize":
        bad.append((values, (-extra[0],), aux))  # negative scales
    for arrays in bad:
        with pytest.raises(CodecError):
            codec.decompress(*arrays)


# ---- merging --------------------------------------------------------------------------------
def test_mean_of_parts_averages_each_coordinate_over_those_who_sent_it():
    own = torch.tensor([0.0, 0.0, 0.0, 0.0])
    parts = [
        Part(None, torch.tensor([4.0, 4.0, 4.0, 4.0])),
        Part(torch.tensor([0, 2]), torch.tensor([8.0, 8.0])),
    ]
    assert mean_of_parts(own, parts).tolist() == [4.0, 2.0, 4.0, 2.0]


def test_mean_of_whole_parts_is_the_uniform_mean_bit_for_bit():
    own, others = vector(9), [vector(10), vector(11), vector(12)]
    dense = [Part(None, v) for v in others]
    assert torch.equal(mean_of_parts(own, dense), uniform_mean(own, others))


def test_weighted_mix_counts_an_unsent_coordinate_as_the_nodes_own():
    own = torch.tensor([1.0, 1.0, 1.0])
    parts = [(0.25, Part(torch.tensor([1]), torch.tensor([5.0]))), (0.25, Part(None, own * 3))]
    # coordinate 1: 0.5 * 1 + 0.25 * 5 + 0.25 * 3; others: 0.5 * 1 + 0.25 * 1 + 0.25 * 3
    assert weighted_mix(own, 0.5, parts).tolist() == [1.5, 2.5, 1.5]


def _arrays(message):
    return message.values, message.extra, message.aux
