"""The Ray backend against the local one on this machine: a three-Ray-node cluster
(`ray.cluster_utils.Cluster`, a head and two workers) running the same run as local processes;
start-up time, memory per node, the factor chosen, and how far the curves are apart."""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.common import Sizes, launcher, save
from bench.emulation import _gap, _run_facts


def _facts(summary: dict) -> dict:
    memory = summary["memory"]
    return {
        **_run_facts(summary),
        "ready_seconds": summary["ready_seconds"],
        "ready_pss_mib_mean": memory["ready_pss_mib_mean"],
        "training_pss_mib_mean": memory["training_pss_mib_mean"],
        "calibration_trials": len((summary.get("calibration") or {}).get("trials", [])),
    }


def bench_cluster(sizes: Sizes, results: Path) -> None:
    """Local at tdf=auto (factor a) and again at a (the run-to-run spread of one backend); the
    Ray backend on three Ray nodes at tdf=auto and at a (the spread across backends). A tiny
    run goes once each way on the head alone: it proves the path, not the spread."""
    from ray.cluster_utils import Cluster

    nodes, seconds = sizes.cluster_nodes, sizes.cluster_seconds
    common = (
        "clock=wall",  # the factor's calibration on each backend is what is compared
        f"num_nodes={nodes}",
        f"duration={seconds}",
        f"eval.interval={seconds / 6}",
        f"eval.targets={sizes.fidelity_targets}",
    )
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False}
    )
    try:
        for _ in range(sizes.cluster_ray_nodes - 1):
            cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        ray = (
            "launch.backend=ray",
            f"ray.address={cluster.address}",
            # every node's bundle must fit: 12 nodes share the cluster's 6 CPUs, 4 take one each
            f"ray.cpus_per_node={min(1.0, 2 * sizes.cluster_ray_nodes / nodes)}",
            "transport.bind=tcp://127.0.0.1",
        )
        with tempfile.TemporaryDirectory() as tmp:

            def run(tag: str, *extra: str) -> dict:
                return _facts(launcher(Path(tmp) / tag, sizes, *common, *extra))

            runs = {"local": run("local", f"tdf={sizes.tdf}")}
            a = runs["local"]["tdf"]
            if sizes.cluster_again_at_a:
                runs["local_at_a"] = run("local_at_a", f"tdf={a}")
            runs["ray"] = run("ray", f"tdf={sizes.tdf}", *ray)
            if sizes.cluster_again_at_a:
                runs["ray_at_a"] = run("ray_at_a", f"tdf={a}", *ray)
    finally:
        cluster.shutdown()
    save(
        results,
        "cluster",
        {
            "nodes": nodes,
            "ray_nodes": sizes.cluster_ray_nodes,
            "duration_emulated_s": seconds,
            "runs": runs,
            # the same backend twice at one factor, and the two backends at that factor
            "local_vs_local_at_a": _gap(runs["local"], runs.get("local_at_a", runs["local"])),
            "ray_vs_local_at_a": _gap(
                runs.get("local_at_a", runs["local"]), runs.get("ray_at_a", runs["ray"])
            ),
            "meets_target": all(r["status"] == "ok" and not r["lagged"] for r in runs.values()),
        },
    )
