"""Curves read from a run directory: the metrics over nodes at each evaluation instant, the
consensus distance of kept snapshots, and the bytes sent so far."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from node.files import read_jsonl


def load_evals(run_dir: Path) -> list[dict]:
    records = []
    for path in sorted((run_dir / "eval").glob("worker*.jsonl")):
        records.extend(read_jsonl(path))
    return records


def load_node_records(run_dir: Path) -> list[list[dict]]:
    return [read_jsonl(p) for p in sorted((run_dir / "nodes").glob("*.jsonl"))]


def consensus_curve(run_dir: Path, num_nodes: int) -> list[dict]:
    """Consensus distance (1/n) sum_i ||x_i - mean x||^2 at each instant every node's kept
    snapshot exists (`eval.keep_snapshots=true`); empty when snapshots were not kept."""
    by_t: dict[int, dict[int, Path]] = defaultdict(dict)
    for path in (run_dir / "snapshots" / "kept").glob("n*_t*.npy"):
        node, t = path.stem[1:].split("_t")
        by_t[int(t)][int(node)] = path
    curve = []
    for t in sorted(by_t):
        if len(by_t[t]) < num_nodes:
            continue
        models = np.stack([np.load(p, allow_pickle=False) for p in by_t[t].values()])
        spread = models - models.mean(axis=0)
        curve.append({"t": t / 1000, "distance": float((spread**2).sum(axis=1).mean())})
    return curve


def accuracy_curve(
    evals: list[dict],
    num_nodes: int,
    departed: dict[int, float] | None = None,
    absent: dict[int, list] | None = None,
) -> list[dict]:
    """Accuracy and test loss over nodes (mean, min, max) at each evaluation instant every
    node present then reached, with the number of those nodes; MovieLens's RMSE is its test
    loss. A node that died at d counts up to instants before d; one a scenario took away
    (`absent`: [from, to) spans, to None for good) does not count inside its spans."""
    departed, absent = departed or {}, absent or {}

    def present(n: int, t: float) -> bool:
        if departed.get(n, float("inf")) <= t:
            return False
        return not any(a <= t and (b is None or t < b) for a, b in absent.get(n, ()))

    by_t: dict[float, dict[int, dict]] = defaultdict(dict)
    for e in evals:
        by_t[round(e["t"], 6)][e["node"]] = e
    curve = []
    for t in sorted(by_t):
        alive = {n for n in range(num_nodes) if present(n, t)}
        nodes = {n: e for n, e in by_t[t].items() if n in alive}
        if not alive or len(nodes) < len(alive):
            continue
        acc = [e["accuracy"] for e in nodes.values()]
        loss = [e["loss"] for e in nodes.values()]
        point = {
            "t": t,
            "mean": sum(acc) / len(acc),
            "min": min(acc),
            "max": max(acc),
            "loss": sum(loss) / len(loss),
            "loss_min": min(loss),
            "loss_max": max(loss),
            "nodes": len(nodes),
        }
        if all("global_loss" in e for e in nodes.values()):  # MovieLens: on everyone's test set
            point["global_loss"] = sum(e["global_loss"] for e in nodes.values()) / len(nodes)
        curve.append(point)
    return curve


def bytes_sent_at(node_records: list[list[dict]], times) -> np.ndarray:
    """Bytes sent by all nodes up to each instant: each node's cumulative count, linear between
    its rounds (0 at t=0, flat after its last round), summed over nodes."""
    times = np.asarray(times, dtype=float)
    total = np.zeros_like(times)
    for records in node_records:
        points = sorted((r["t"], r["bytes_sent"]) for r in records if "bytes_sent" in r)
        if not points:
            continue
        t, b = zip(*([(0.0, 0.0)] + points), strict=True)
        total += np.interp(times, t, b)
    return total
