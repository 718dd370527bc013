"""What a sharing codec costs a node per round against what the round's training costs: CPU of
encoding its model once and decoding the messages it merges, beside 128 local steps of CNN1D
(batch 8, one thread), measured side by side in one process."""

from __future__ import annotations

import random
import time
from pathlib import Path

from bench.common import Sizes, save

DEGREE = 6  # messages a node merges per round: D-PSGD's and CHOCO's 6-regular graph
LOCAL_STEPS = 128
TARGET_SHARE = 0.05  # the issue's: at most 5% of a round's CPU


def _cpu_per_call(call, repeats: int) -> float:
    call()  # warm caches and lazy set-ups
    start = time.thread_time()
    for _ in range(repeats):
        call()
    return (time.thread_time() - start) / repeats


def round_cpu(steps: int) -> float:
    """CPU seconds of one round: LOCAL_STEPS steps of CNN1D at batch 8 on one thread."""
    import torch
    import torch.nn.functional as F

    from node.models import build_model

    model = build_model("cnn1d", 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(8, 1, 40), torch.randint(0, 10, (8,))

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return _cpu_per_call(step, steps) * LOCAL_STEPS


def codec_costs(repeats: int) -> dict:
    """Per codec: CPU seconds of one encode (a model-exchanging algorithm's `share`), one
    decode, and a round's worth for a node (one encode, DEGREE decodes, and for CHOCO the
    decode of its own message)."""
    import torch

    from node.models import build_model, flatten_parameters
    from node.sharing import make_codec
    from node.sharing.base import SharingConfig
    from node.sharing.quantize import QuantizeConfig
    from node.sharing.subsample import RandomConfig
    from node.sharing.topk import TopKConfig

    params = flatten_parameters(build_model("cnn1d", 1))
    size = params.numel()
    configs = {
        "full": SharingConfig(name="full"),
        "topk_0.1": TopKConfig(name="topk", fraction=0.1),
        "random_0.1": RandomConfig(name="random", fraction=0.1),
        "quantize_4bit": QuantizeConfig(name="quantize", bits=4),
    }
    rows = {}
    for label, config in configs.items():
        codec = make_codec(config, size, random.Random(0))
        codec.start(params)
        drift = torch.randn(size) * 1e-3

        def encode(codec=codec, drift=drift):
            params.add_(drift)  # a round of training moved the model
            return codec.share(params)

        message = encode()
        arrays = (message.values, message.extra, message.aux)
        encode_s = _cpu_per_call(encode, repeats)
        decode_s = _cpu_per_call(lambda c=codec, a=arrays: c.decompress(*a), repeats)
        rows[label] = {
            "model_values": size,
            "message_bytes": sum(codec.message_bytes()),
            "encode_us": encode_s * 1e6,
            "decode_us": decode_s * 1e6,
            "round_us": (encode_s + (DEGREE + 1) * decode_s) * 1e6,
        }
    return rows


def bench_codecs(sizes: Sizes, results: Path) -> None:
    from node.torch_setup import configure_torch

    configure_torch(1, "cnn1d")
    round_s = round_cpu(sizes.codec_steps)
    rows = codec_costs(sizes.codec_repeats)
    for row in rows.values():
        row["share_of_round_cpu"] = row["round_us"] / 1e6 / round_s
    save(
        results,
        "codecs",
        {
            "round_cpu_ms": round_s * 1e3,
            "round": f"{LOCAL_STEPS} local steps of CNN1D, batch 8, one thread",
            "per_round": f"one encode and {DEGREE + 1} decodes (6 neighbours' messages, and "
            "CHOCO's own); the same in every node of a 60-node run",
            "codecs": rows,
            "target_share": TARGET_SHARE,
            "meets_target": all(r["share_of_round_cpu"] <= TARGET_SHARE for r in rows.values()),
        },
    )
