"""The hot loop computes what it computed before scenarios entered it: paced 4-node runs of
every algorithm on the in-memory twin, hashed over every snapshot, equal to the digests
recorded before the change (commit 8f02c4e), one per kind of CPU the suite has run on (the
same code computes other bits on another: torch's and numpy's kernels follow its vector
instructions). Record only at that commit, never to make this pass: there,
`python -m tests.node.test_runtime_equivalence DIR` adds this machine's digests."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.node import twin
from tests.test_golden import models_digest

GOLDEN = Path(__file__).parent / "golden" / "paced_models.json"
PACED = [
    "num_nodes=4",
    "dataset.num_samples=3000",
    "compute.step_time=0.01",
    "algorithm.local_steps=5",
    "eval.interval=0.1",
    "duration=0.4",
    "network=uniform",
    "network.rate_mbps=4",
    "network.latency_ms=2",
]
ALGORITHMS = {
    "adpsgd": ["algorithm=adpsgd", "algorithm.degree=2"],
    "divshare": ["algorithm=divshare", "algorithm.degree=2"],
    "dpsgd": ["algorithm=dpsgd", "algorithm.topology=ring"],
    "el": ["algorithm=el", "algorithm.degree=2"],
    "lasgd": ["algorithm=lasgd"],
    "relaysgd": ["algorithm=relaysgd"],
    "swift": ["algorithm=swift", "algorithm.degree=2"],
}


def digest(run_dir: Path, data_root: Path, algorithm: str) -> str:
    result = twin.run(twin.plan(run_dir, data_root, *PACED, *ALGORITHMS[algorithm]))
    assert not result.errors, result.errors
    return models_digest(run_dir / "snapshots")


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_paced_runs_compute_the_recorded_models(algorithm, tmp_path, tmp_path_factory):
    data_root = tmp_path_factory.getbasetemp() / "equivalence-data"
    recorded = json.loads(GOLDEN.read_text())[algorithm]
    assert digest(tmp_path / "run", data_root, algorithm) in recorded


if __name__ == "__main__":
    where = Path(sys.argv[1])
    record = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}
    for a in sorted(ALGORITHMS):
        known = record.setdefault(a, [])
        if (found := digest(where / a, where / "data", a)) not in known:
            known.append(found)
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(record)
