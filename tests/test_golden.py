"""What a run computes must not change when code moves: the models of two deterministic 4-node
runs (local and dpsgd, pacing off) hashed at every evaluation instant, recorded before the
refactor of the transport and the algorithms, through the real CLI."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from tests import cli

pytestmark = pytest.mark.process

# Un-paced steps with a large fixed factor: the step count is fixed by the emulated duration,
# and no wall-clock timeout can fire, so the models depend on the seed alone.
GOLDEN_ARGS = [
    "clock=wall",  # recorded before virtual time: un-paced dilated wall time
    "num_nodes=4",
    "duration=2",
    "eval.interval=1",
    "eval.keep_snapshots=true",
    "eval.workers=1",
    "compute.pace=false",
    "tdf=100",
    "network=uniform",
    "network.rate_mbps=1000",
    "dataset.num_samples=3000",
]
ALGORITHM_ARGS = {
    "local": ["algorithm=local"],
    "dpsgd": ["algorithm=dpsgd", "algorithm.topology=ring"],
}
# sha256 over (node, emulated ms, float32 bytes) of every kept snapshot, in that order;
# recorded before the clean-core refactor (commit 5aa0480: c129d86 with D-PSGD summing in id
# order), once per kind of CPU the suite has run on: the same code computes other bits on
# another one (torch's and numpy's kernels follow the CPU's vector instructions). A machine
# whose CPU matches none: run these two runs at 5aa0480 on it and add what they hash to.
GOLDEN = {
    "local": {
        "97cc6ad4743733ea61ddcb97127b028ad2c743e45c78d36c2485358f266b64cd",
        # 2026-12-01, Xeon with AVX-512 and AMX (torch CPU capability AVX512)
        "b08de44724e8f2e64c7161b25b7375cbce41a43fed144f8468ad2d3f0121548a",
    },
    "dpsgd": {
        "f7254f40113be4e13992a6a4dde3f45ce4a7084e2ec2d18c2d73f72623769636",
        "d1ba926f20d54a4aa5b6599f103999f12f9ce7a5e6a583ba65a73d14e6e57b2e",
    },
}


def models_digest(snapshots: Path) -> str:
    """One hash of every kept model, in (node, time) order."""
    digest = hashlib.sha256()
    for path in sorted(snapshots.glob("n*_t*.npy")):
        node, t = path.stem[1:].split("_t")
        digest.update(f"{int(node)}:{int(t)}:".encode())
        digest.update(np.load(path, allow_pickle=False).astype(np.float32).tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("algorithm", sorted(ALGORITHM_ARGS))
def test_final_models_match_the_recorded_ones(algorithm, tmp_path_factory):
    data = tmp_path_factory.getbasetemp() / "golden-data"
    run = tmp_path_factory.mktemp(f"golden-{algorithm}")
    args = [*GOLDEN_ARGS, *ALGORITHM_ARGS[algorithm], f"data_root={data}", f"hydra.run.dir={run}"]
    code, out = cli.run("launcher", *args, timeout=300)
    assert code == 0, out
    kept = run / "snapshots" / "kept"
    assert len(list(kept.glob("*.npy"))) == 4 * 3  # t = 0, 1, 2 for each of 4 nodes
    assert models_digest(kept) in GOLDEN[algorithm]
