"""The Ray backend through the real CLI, on a Ray cluster of three Ray nodes on this machine
(`ray.cluster_utils.Cluster`: a head and two workers): nodes spread over the machines, in
virtual time the very models the in-memory twin computes (CURVE on, the keeper's link too),
dilated wall time with its clock offsets, Ctrl-C, a machine lost mid-run."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
from ray.cluster_utils import Cluster

from node.files import read_jsonl
from tests.cli import finish, kill, start
from tests.node.test_runtime_equivalence import ALGORITHMS, GOLDEN, PACED
from tests.test_cli import assert_reaped
from tests.test_golden import models_digest

# The cluster fixture starts three Ray nodes inside the first test's time limit.
pytestmark = [pytest.mark.process, pytest.mark.ray, pytest.mark.timeout(600)]

SIX = ["num_nodes=6", "algorithm.degree=2", "launch.progress_interval=1"]
# Every Ray worker imports torch itself (~2.5 s of CPU each): the tests that need no more than
# a node on every machine take four.
FOUR = ["num_nodes=4", "algorithm.degree=2", "launch.progress_interval=1"]


@pytest.fixture(scope="module")
def cluster():
    """A head and two worker Ray nodes, 2 CPUs each: 6 one-CPU bundles spread 2 per machine."""
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False}
    )
    workers = [cluster.add_node(num_cpus=2) for _ in range(2)]
    cluster.wait_for_nodes()
    cluster.workers = workers
    yield cluster
    cluster.shutdown()


@pytest.fixture(scope="module")
def shared_data(shared_data_root):
    return shared_data_root


def run_cli(run: Path, data: Path, *overrides: str, timeout: float = 300, nodes=SIX):
    proc = start("launcher", *nodes, f"data_root={data}", f"hydra.run.dir={run}", *overrides)
    return proc, finish(proc, timeout)


def ray_args(cluster) -> list[str]:
    return [
        "launch.backend=ray",
        f"ray.address={cluster.address}",
        "transport.bind=tcp://127.0.0.1",
    ]


def test_divshare_on_three_ray_nodes_on_the_wall_clock_trains_and_reaches_the_launcher(
    tmp_path, cluster, shared_data
):
    args = ["clock=wall", "duration=2", "eval.interval=1", "tdf=3", "transport.curve=on"]
    proc, out = run_cli(tmp_path / "run", shared_data, *ray_args(cluster), *args, nodes=FOUR)
    assert proc.returncode == 0, out
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    placement = json.loads((run / "placement.json").read_text())
    machines = {where["ray_node"] for where in placement.values()}
    assert len(placement) == 4 and len(machines) == 3, placement  # spread over every Ray node
    assert summary["status"] == "ok" and summary["evaluation_complete"], out
    assert summary["final_mean_accuracy"] > summary["initial_mean_accuracy"], summary
    # every machine's evaluator tested its own nodes' snapshots and its results came back
    assert summary["curve"][-1]["nodes"] == 4 and summary["curve"][-1]["t"] == pytest.approx(2)
    assert all((run / "eval" / f"worker{w}.jsonl").stat().st_size > 0 for w in range(3))
    totals = summary["totals"]
    assert totals["bytes_delivered"] > 0 and totals["messages_malformed"] == 0
    assert totals.get("handshakes_refused", 0) == 0  # every node holds the run's keys
    assert len(list((run / "nodes").glob("*.jsonl"))) == 4
    assert summary["clock"]["probes"] == 8 and not summary["clock"]["flagged"]
    assert_reaped({"nodes": {n: w["pid"] for n, w in placement.items()}})
    assert "secret" not in (run / "config.json").read_text()


def test_in_virtual_time_ray_nodes_compute_the_twins_models(tmp_path, cluster, shared_data):
    """The equivalence test's paced DivShare run, 4 nodes over 3 machines, CURVE on the data
    sockets and on the keeper's: the models of the in-memory twin, bit for bit."""
    run = tmp_path / "ray"
    args = [*PACED, *ALGORITHMS["divshare"], *ray_args(cluster), "transport.curve=on"]
    args += ["eval.keep_snapshots=true", f"data_root={shared_data}", f"hydra.run.dir={run}"]
    proc = start("launcher", *args)
    out = finish(proc, 300)
    assert proc.returncode == 0, out
    placement = json.loads((run / "placement.json").read_text())
    assert len({where["ray_node"] for where in placement.values()}) == 3
    recorded = json.loads(GOLDEN.read_text())["divshare"]
    assert models_digest(run / "snapshots" / "kept") in recorded
    summary = json.loads((run / "summary.json").read_text())
    assert summary["clock_mode"] == "virtual" and summary["totals"]["handshakes_refused"] == 0


def wait_for_log(proc, run: Path, logged) -> None:
    """Until `logged(the launcher's main.log so far)` holds; fails if the run ends first."""
    log, deadline = run / "main.log", time.monotonic() + 240
    while not (log.exists() and logged(log.read_text())):
        assert time.monotonic() < deadline and proc.poll() is None, finish(proc, 10)
        time.sleep(0.05)


def wait_until_training(proc, run: Path, nodes: int = 6) -> None:
    wait_for_log(proc, run, lambda text: f"emulated | {nodes}/{nodes} alive" in text)


def wait_until_emulated(proc, run: Path, t: float) -> None:
    """Until the progress log says emulated time has reached `t`."""
    pattern = re.compile(r"t=\s*([0-9.]+)/")
    wait_for_log(proc, run, lambda text: any(float(m) >= t for m in pattern.findall(text)))


def test_ctrl_c_stops_every_actor(tmp_path, cluster, shared_data):
    run = tmp_path / "run"
    args = ["duration=600", *ray_args(cluster)]
    proc = start("launcher", *FOUR, f"data_root={shared_data}", f"hydra.run.dir={run}", *args)
    try:
        wait_until_training(proc, run, nodes=4)
        os.killpg(proc.pid, signal.SIGINT)  # the launcher's group: the actors are Ray's
        out = finish(proc, timeout=60)  # a hang fails; how soon is the reliability benchmark's
    finally:
        kill(proc)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["interrupted"] and summary["status"] == "failed", out
    placement = json.loads((run / "placement.json").read_text())
    assert_reaped({"nodes": {n: w["pid"] for n, w in placement.items()}})


def evaluated(run: Path) -> list[dict]:
    """The evaluation results in the run folder so far (the launcher writes them on Ray)."""
    return [r for path in (run / "eval").glob("worker*.jsonl") for r in read_jsonl(path)]


def test_a_ray_node_lost_mid_run_names_its_nodes_failed_and_the_rest_finish(
    tmp_path, cluster, shared_data
):
    run = tmp_path / "run"
    args = ["duration=20", "eval.interval=2", *ray_args(cluster)]
    proc = start("launcher", *SIX, f"data_root={shared_data}", f"hydra.run.dir={run}", *args)
    wait_until_training(proc, run)
    placement = json.loads((run / "placement.json").read_text())
    lost = cluster.workers[-1]
    on_lost = sorted(int(n) for n, w in placement.items() if w["ray_node"] == lost.node_id)
    assert len(on_lost) == 2, placement
    # Past t=2, one node elsewhere is stopped: in virtual time the run's clock then waits for
    # it, so the run cannot end before the machine is lost, however fast training goes and
    # however long the lost machine's idle-priority evaluator takes to test its t=2 snapshots.
    wait_until_emulated(proc, run, 2.5)
    frozen = next(w["pid"] for w in placement.values() if w["ray_node"] != lost.node_id)
    os.kill(frozen, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 120  # once the lost machine's results for t=2 are in
        while not {r["node"] for r in evaluated(run) if r["t"] == 2.0} >= set(on_lost):
            assert time.monotonic() < deadline and proc.poll() is None, finish(proc, 10)
            time.sleep(0.2)
        cluster.remove_node(lost)  # the machine and every process on it gone at once
    finally:
        os.kill(frozen, signal.SIGCONT)
    out = finish(proc, 300)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "degraded", out
    failed = {int(n): error for n, error in summary["failed_nodes"].items()}
    assert sorted(failed) == on_lost, failed
    assert all("machine was lost" in error for error in failed.values()), failed
    assert sorted(int(n) for n in summary["departed"]) == on_lost  # the others were told
    assert summary["curve"][-1]["t"] == pytest.approx(20.0)
    assert summary["curve"][-1]["nodes"] == 4  # the survivors, evaluated to the end
    at_2 = next(p for p in summary["curve"] if p["t"] == pytest.approx(2.0))
    assert at_2["nodes"] == 6  # the lost machine's results from before its loss are kept


def test_a_cluster_nobody_answers_at_fails_before_any_node_starts(tmp_path, shared_data):
    run = tmp_path / "run"
    args = ["launch.backend=ray", "ray.address=127.0.0.1:1"]
    proc, out = run_cli(run, shared_data, *args, timeout=120)
    assert proc.returncode != 0, out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["wall_seconds"] < 60, summary
    assert "no Ray cluster answers at ray.address=127.0.0.1:1" in summary["startup_error"]
    assert "ray start --head" in out
    assert not (run / "pids.json").exists() and not (run / "placement.json").exists()


def test_nodes_the_cluster_cannot_hold_fail_the_start_at_once(tmp_path, cluster, shared_data):
    run = tmp_path / "run"
    proc, out = run_cli(run, shared_data, *ray_args(cluster), "ray.cpus_per_node=3", timeout=120)
    assert proc.returncode != 0, out
    summary = json.loads((run / "summary.json").read_text())
    error = summary["startup_error"]
    # 2 CPUs per machine (one worker machine is gone by now if the removal test ran first)
    expected = r"cannot place 6 nodes of 3\.0 CPU each \(its machines have 2(, 2)+ CPUs\)"
    assert re.search(expected, error), error
    assert summary["wall_seconds"] < 60 and not (run / "placement.json").exists()
