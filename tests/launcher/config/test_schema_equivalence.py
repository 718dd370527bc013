"""Validation did not change when its network planning and data-set rules moved out of
schema.py: every shipped experiment, profile, data set and algorithm validates to the typed
config recorded before the move (tests/launcher/config/golden/validated.json)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from launcher.config.schema import validate
from tests.launcher.config.test_schema import composed

GOLDEN = Path(__file__).parent / "golden" / "validated.json"
# Fixed so the record does not depend on the machine (cores) or the working directory; on
# dilated wall time, the only clock when it was recorded.
MACHINE = ("eval.workers=2", "compute.gate_slots=2", "data_root=/data", "clock=wall")
SMALL = ("num_nodes=4", "algorithm.degree=2")
CASES = {
    "default": (),
    **{
        f"experiment={name}": (f"+experiment={name}",)
        for name in (
            "artifact_7of60",
            "stragglers_30of60",
            "geo_10regions",
            "compute_stragglers",
            "paper_cifar10",
            "paper_movielens",
        )
    },
    "uniform": ("network=uniform",),
    "geo small": (
        "network=geo",
        "num_nodes=20",
        "network.num_regions=5",
        "network.nodes_per_region=4",
    ),
    "stragglers by id, overrides": (
        "network.straggler_fraction=null",
        "network.straggler_ids=[5,9]",
        "+network.overrides.3={up_mbps: 1.5}",
        "+compute.overrides.2=0.01",
    ),
    "small": SMALL,
    "cifar10 dirichlet": (
        "dataset=cifar10",
        "model=gn_lenet",
        "dataset.partition=dirichlet",
        "dataset.alpha=0.3",
    ),
    "mnist1d iid mlp": ("dataset.partition=iid", "model=mlp"),
    "movielens": ("dataset=movielens", "model=mf", "dataset.train_fraction=0.8"),
    **{
        f"algorithm={name}": (f"algorithm={name}",)
        for name in (
            "adpsgd",
            "adpsgd_atomic",
            "divshare",
            "dpsgd",
            "el",
            "lasgd",
            "local",
            "relaysgd",
            "swift",
        )
    },
}


# Keys added after the record (scenarios): compared only when a setting gives them a value,
# which no recorded setting does; the rest must be as recorded. An algorithm's key added
# since is left out only at its default.
# curve: every recorded setting binds loopback; backend, host and ray: the local default
ADDED_EMPTY = {
    "scenario": [],
    "curve": False,
    "backend": "local",
    "host": "127.0.0.1",
    "ray": None,
    "gate_slots_auto": False,  # every recorded setting fixes compute.gate_slots=2
    "clock": "wall",  # virtual time came later (MACHINE asks for wall)
    "stall_timeout": 120.0,
    "sharing": {"name": "full"},  # codecs came later; every recorded setting sends whole models
    "timeline": None,  # off unless asked; came later
    "traces": None,  # none unless given; came later
}
# Changed on purpose since the record: the paper's experiments fixed a factor for dilated wall
# time; virtual time, the default now, needs none (clock=wall calibrates one).
CHANGED = {
    "experiment=paper_cifar10": {"tdf": (145.0, None)},
    "experiment=paper_movielens": {"tdf": (510.0, None)},
}
ADDED_ALGORITHM_DEFAULTS = {"on_absent": "reform"}  # LASGD's
ADDED_EMPTY_LINK = {
    "up_changes": [],
    "down_changes": [],
    "latency_changes": [],
    "path_changes": {},
}


def _without_added_empty(record: dict) -> dict:
    out = {k: v for k, v in record.items() if ADDED_EMPTY.get(k, object()) != v}
    out["algorithm"] = {
        k: v
        for k, v in record["algorithm"].items()
        if ADDED_ALGORITHM_DEFAULTS.get(k, object()) != v
    }
    out["network"] = dict(record["network"])
    out["network"]["links"] = [
        {k: v for k, v in link.items() if ADDED_EMPTY_LINK.get(k, object()) != v}
        for link in record["network"]["links"]
    ]
    return out


def validated(overrides: tuple[str, ...]) -> dict:
    run = validate(composed(*MACHINE, *overrides))
    # tuples as lists, as recorded
    return _without_added_empty(json.loads(json.dumps(dataclasses.asdict(run))))


@pytest.mark.parametrize("case", list(CASES))
def test_every_shipped_setting_validates_as_before_the_move(case):
    recorded = json.loads(GOLDEN.read_text())[case]
    for key, (before, now) in CHANGED.get(case, {}).items():
        assert recorded[key] == before
        recorded[key] = now
    assert validated(CASES[case]) == recorded


if __name__ == "__main__":  # records the golden file: run once, before moving code
    GOLDEN.write_text(json.dumps({case: validated(o) for case, o in CASES.items()}) + "\n")
