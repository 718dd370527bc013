"""What every benchmark shares: the sizes it runs at, the machine, where results go, the real
CLI in a subprocess, and a bare training step timed alone."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from node.files import write_json_atomic

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


@dataclass(frozen=True)
class Sizes:
    """How big each benchmark runs: the real figures, or just enough to prove it works."""

    nodes: int = 60
    # The factor of runs on the wall clock: auto calibrates (what the figures are about); a
    # tiny run fixes one, since proving the code still runs needs no calibration trials.
    tdf: str = "auto"
    shaper_rates_mbps: tuple[float, ...] = (1.0, 10.0, 100.0)
    shaper_seconds: float = 4.0
    burners: int = 4
    run_seconds: float = 2.6  # emulated, memory benchmark: four rounds, two with exchange
    cifar_per_batch: int = 10_000
    bare_step_seconds: float = 2.0  # each of three timings of a bare step
    efficiency_seconds: float = 6.0  # emulated, default experiment
    default_run_seconds: float | None = None  # the whole default run (None: its 34 s)
    virtual_step_seconds: float = 2.0  # emulated, per-step algorithms (LASGD, AD-PSGD atomic)
    virtual_round_seconds: float = 2.0  # emulated, each algorithm's phases per round
    virtual_cases: tuple[str, ...] = (
        "default_60",
        "lasgd_60",
        "adpsgd_atomic_60",
        "gn_lenet_60",
        "default_500",
    )
    virtual_round_algorithms: tuple[str, ...] | None = None  # None: every built-in one
    cifar_nodes: int = 60
    cifar_seconds: float = 1.3  # emulated: two rounds of GN-LeNet
    fidelity_nodes: int = 16
    fidelity_seconds: float = 7.0
    # lower than the run's [0.3, 0.4, 0.5]: in 10 s at 16 nodes adpsgd_atomic reached only 0.3
    fidelity_targets: str = "[0.2,0.25,0.3]"
    fidelity_algorithms: tuple[str, ...] = ("divshare", "swift", "adpsgd_atomic")
    scale_nodes: int = 500
    scale_seconds: float = 2.0
    nolag_seconds: float = 4.0
    nolag_experiments: tuple[str, ...] = (
        "default",
        "artifact_7of60",
        "stragglers_30of60",
        "geo_10regions",
        "compute_stragglers",
        "paper_movielens",
    )
    nolag_algorithms: tuple[str, ...] = ("divshare", "swift", "adpsgd")
    reliability_runs: int = 20  # runs that lose 10% of their nodes, killed hard
    reliability_nodes: int = 20
    reliability_seconds: float = 4.0  # emulated
    reliability_tdf: float = 6.0  # fixed: no calibration; 20 nodes need about 2.5 here
    fuzz_frames: int = 100_000
    fuzz_seconds: float = 12.0  # emulated, 4 nodes: long enough for the fuzz to end within
    ctrl_c_trials: int = 20
    ctrl_c_nodes: int = 8
    ctrl_c_seconds: float = 6.0  # emulated, at `tdf` (auto: start-up, calibration, training)
    ctrl_c_window: float = 30.0  # wall seconds after the start within which Ctrl-C comes
    cluster_nodes: int = 12  # the Ray backend on three Ray nodes against local processes
    cluster_ray_nodes: int = 3
    cluster_again_at_a: bool = True  # each backend once more at the local factor (the spread)
    cluster_seconds: float = 6.0  # emulated
    codec_steps: int = 2000  # local steps timed for a round's CPU
    codec_repeats: int = 2000  # encodes and decodes timed per codec
    extra: tuple[str, ...] = ()  # overrides every launched run gets
    # DivShare's and Swift's 6 peers per message need 7 nodes; tiny runs send to fewer
    small_degree: int | None = None


FULL = Sizes()
TINY = Sizes(
    nodes=4,
    tdf="1.5",
    shaper_rates_mbps=(10.0,),
    shaper_seconds=0.5,
    burners=1,
    run_seconds=1.0,
    cifar_per_batch=100,
    bare_step_seconds=0.3,
    efficiency_seconds=1.3,  # two whole rounds: a partial last round is not computed
    default_run_seconds=1.3,
    virtual_step_seconds=0.7,
    virtual_round_seconds=0.7,
    virtual_cases=("default_60",),
    virtual_round_algorithms=("adpsgd_atomic",),  # a per-step one: also run as processes here
    cifar_nodes=8,  # paper_cifar10 has 7 stragglers
    cifar_seconds=1.3,
    fidelity_nodes=4,
    fidelity_seconds=0.65,  # one round: the curves' code path, not their agreement
    fidelity_algorithms=("divshare",),
    scale_nodes=6,
    scale_seconds=1.3,
    nolag_seconds=1.3,
    nolag_experiments=("default",),
    nolag_algorithms=("divshare",),
    reliability_runs=1,
    reliability_nodes=4,
    reliability_seconds=1.5,
    reliability_tdf=1.5,
    fuzz_frames=2000,
    fuzz_seconds=4.0,
    ctrl_c_trials=1,
    ctrl_c_nodes=4,
    ctrl_c_seconds=2.0,
    ctrl_c_window=8.0,
    cluster_nodes=4,
    cluster_ray_nodes=1,  # the head alone: the Ray backend's path, not its spread
    cluster_again_at_a=False,
    cluster_seconds=1.3,
    codec_steps=50,
    codec_repeats=20,
    extra=(
        "dataset.num_samples=3000",
        "compute.calibration_margin=4",
        "compute.calibration_rounds=1",
        "eval.interval=0.5",
    ),
    small_degree=2,
)


def machine() -> dict:
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def save(results: Path, name: str, figures: dict) -> None:
    record = {
        "benchmark": name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, "-m", "bench.run", *sys.argv[1:]]),
        "machine": machine(),
        **figures,
    }
    write_json_atomic(results / f"{name}.json", record)
    print(json.dumps(figures, indent=2), flush=True)


def for_other_data(sizes: Sizes) -> Sizes:
    """The sizes for a run on another data set than MNIST-1D: no MNIST-1D keys in `extra`."""
    return replace(sizes, extra=tuple(e for e in sizes.extra if not e.startswith("dataset.")))


def launcher(run_dir: Path, sizes: Sizes, *overrides: str, timeout: float = 3600) -> dict:
    """The real CLI in a subprocess; its summary.json."""
    args = [sys.executable, "-m", "launcher", f"hydra.run.dir={run_dir}", *sizes.extra, *overrides]
    algorithm = next(
        (o[len("algorithm=") :] for o in overrides if o.startswith("algorithm=")), None
    )
    if sizes.small_degree and algorithm in (None, "divshare", "swift"):
        args.append(f"algorithm.degree={sizes.small_degree}")
    code = subprocess.run(args, cwd=ROOT, timeout=timeout, check=False).returncode
    if not (run_dir / "summary.json").is_file():
        raise SystemExit(f"the run wrote no summary (exit code {code}): {' '.join(args)}")
    return json.loads((run_dir / "summary.json").read_text())


_BARE_STEP = """
import json, sys, time
import torch
from node.spec import DataSpec
from node.data import task
from node.models import Batches, build_model, flatten_parameters
from node.torch_setup import configure_torch
model_name, seconds, spec = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
nodes, batch = int(sys.argv[4]), int(sys.argv[5])
configure_torch(1, model_name)
spec = DataSpec(**spec)
data = task(spec.name)
data.prepare(spec)  # as the launcher does before any node starts: caches, or says what is missing
x, y = data.train_shard(spec, 0, nodes)
model = build_model(model_name, 1, **data.model_dims(spec))
flatten_parameters(model)
opt = torch.optim.SGD(model.parameters(), lr=0.05)
batches = Batches(x, y, batch, 0)
def step():
    xb, yb = batches.next()
    opt.zero_grad(set_to_none=True)
    loss = data.loss(model(xb), yb)
    loss.backward()
    opt.step()
    loss.item()
for _ in range(20):
    step()
times = []
for _ in range(3):
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        count += 1
    times.append((time.perf_counter() - start) / count)
print(json.dumps(times))
"""


STEP_TIME = 0.00485  # the default experiment's emulated local step


def default_data(sizes: Sizes) -> dict:
    """The default experiment's data set (MNIST-1D, kshard) as a bare step loads it."""
    data = {"name": "mnist1d", "root": str(ROOT / "data"), "partition": "kshard"}
    return data | {"partition_seed": 1234, "num_samples": 3000 if sizes.extra else 20000}


def bare_step_s(model: str, spec: dict, nodes: int, seconds: float, batch: int = 8) -> float:
    """A node's local step timed alone in a fresh process, one thread, as a node is set up
    (the median of three timings): the cost the compute limit of the factor is made of."""
    args = [sys.executable, "-c", _BARE_STEP, model, str(seconds), json.dumps(spec), str(nodes)]
    out = subprocess.run(
        [*args, str(batch)], cwd=ROOT, capture_output=True, text=True, timeout=600, check=True
    )
    return statistics.median(json.loads(out.stdout))


def timed(fn, *args, **kwargs) -> tuple[object, float]:
    start = time.monotonic()
    return fn(*args, **kwargs), time.monotonic() - start
