"""Random-pair averaging: a whole algorithm as a plug-in, outside the project's code.

Every round each node sends its model to `peers` peers drawn at random; at its next round
boundary it averages its own model with the latest one received from each sender. Run it with
    python -m launcher 'hydra.searchpath=[file://examples]' algorithm=random_pair
"""

from dataclasses import dataclass

from node.algorithms.base import (
    Algorithm,
    AlgorithmConfig,
    Outgoing,
    check_degree,
    model_values,
    uniform_mean,
)


@dataclass(frozen=True, kw_only=True)
class RandomPairConfig(AlgorithmConfig):
    peers: int = 1  # how many random peers get the model each round

    def check(self, num_nodes):  # before any process starts: a clear error, not a crash
        check_degree(self.peers, num_nodes)


class RandomPair(Algorithm):
    config_class = RandomPairConfig
    kinds = frozenset({"pair"})  # the message kinds it sends: the transport accepts only these
    merges_at = "round"  # what arrives only counts at a round boundary: compute rounds at once

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.latest = {}  # sender -> its latest model

    def round_messages(self, round, params):
        values = params.clone().numpy()  # a private copy: training goes on while it is sent
        peers = self.ctx.rng.sample(self.ctx.peers, self.config.peers)
        return [Outgoing(dst, "pair", values) for dst in peers]

    def on_message(self, msg, params):
        self.latest[msg.src] = model_values(msg, self.ctx.model_size)  # Rejected if malformed
        return []

    def aggregate(self, round, params):
        params.copy_(uniform_mean(params, list(self.latest.values())))
        merged, self.latest = len(self.latest), {}
        return {"models_merged": merged}
