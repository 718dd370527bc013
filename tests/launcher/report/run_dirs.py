"""Run directories as the launcher writes them, with hand-chosen curves, for the report tests."""

from __future__ import annotations

import json
from pathlib import Path


def make_run(
    path: Path,
    *,
    overrides: list[str],
    means: list[float],
    algorithm: str = "divshare",
    seed: int = 1,
    num_nodes: int = 2,
    duration: float = 4.0,
    targets: list[float] | None = None,
    lagged: bool = False,
    sent: int = 2_000_000,
    dropped: int = 500_000,
    tdf: float = 10.0,
    nodes: dict[int, list[tuple[float, int]]] | None = None,
) -> Path:
    """A run dir as the launcher writes it; the curve is evaluated at t = 0, 2, 4, ..."""
    targets = [0.3, 0.5] if targets is None else targets
    curve = [
        {"t": 2.0 * i, "mean": m, "min": m - 0.05, "max": m + 0.05, "loss": 1 - m}
        for i, m in enumerate(means)
    ]
    summary = {
        "algorithm": algorithm,
        "num_nodes": num_nodes,
        "stragglers": [0],
        "duration_emulated_s": duration,
        "tdf": tdf,
        "status": "ok",
        "time_to_accuracy": {f"{t:g}": None for t in targets},  # recomputed from the curve
        "final_mean_accuracy": means[-1],
        "final_worst_accuracy": means[-1] - 0.05,
        "totals": {"bytes_sent": sent, "bytes_dropped": dropped, "bytes_delivered": sent},
        "lag": {"lagged": lagged, "max_behind_s": 0.0, "tolerance_s": 0.06, "lagging_nodes": []},
        "curve": curve,
    }
    config = {
        "algorithm": {"name": algorithm},
        "seed": seed,
        "eval": {"targets": targets},
        "network": {"name": "uniform"},
        "num_nodes": num_nodes,
    }
    (path / ".hydra").mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps(summary))
    (path / "config.json").write_text(json.dumps(config))
    (path / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (path / "nodes").mkdir()
    nodes = nodes if nodes is not None else {0: [(2.0, sent // 4), (4.0, sent // 2)]}
    for node, records in nodes.items():
        lines = [
            json.dumps({"t": t, "round": i, "bytes_sent": b}) for i, (t, b) in enumerate(records)
        ]
        (path / "nodes" / f"{node:03d}.jsonl").write_text("\n".join(lines) + "\n")
    return path


def make_sweep(tmp_path: Path) -> Path:
    """divshare (reference), swift with two seeds, adpsgd: hand-chosen curves.

    time to 0.3 / 0.5: divshare 2.0 / 4.0; swift seed 1: 1.0 / 2.0, seed 2: 2.0 / 3.0;
    adpsgd 3.0 / never.
    """
    common = ["num_nodes=2", "duration=4"]
    make_run(
        tmp_path / "0", overrides=[*common, "algorithm=divshare", "seed=1"], means=[0.1, 0.3, 0.5]
    )
    make_run(
        tmp_path / "1",
        overrides=[*common, "algorithm=swift", "seed=1"],
        algorithm="swift",
        means=[0.1, 0.5, 0.6],
        sent=1_000_000,
    )
    make_run(
        tmp_path / "2",
        overrides=[*common, "algorithm=swift", "seed=2"],
        algorithm="swift",
        seed=2,
        means=[0.1, 0.3, 0.7],
        sent=3_000_000,
    )
    make_run(
        tmp_path / "10",
        overrides=[*common, "algorithm=adpsgd", "seed=1"],
        algorithm="adpsgd",
        means=[0.1, 0.2, 0.4],
        lagged=True,
    )
    return tmp_path


def make_rmse_run(path: Path, *, overrides: list[str], rmse: list[float], **kwargs) -> Path:
    """A MovieLens run: its curve's test loss is the RMSE, rounded-rating accuracy stays ~2%."""
    targets = kwargs.pop("targets", [1.2, 1.0])
    make_run(path, overrides=overrides, means=[0.02] * len(rmse), targets=targets, **kwargs)
    summary = json.loads((path / "summary.json").read_text())
    for point, value in zip(summary["curve"], rmse, strict=True):
        point.update(loss=value, loss_min=value - 0.1, loss_max=value + 0.2)
    del summary["time_to_accuracy"]
    summary |= {"metric": "RMSE", "loss_metric": "RMSE", "dataset": "movielens"}
    summary["time_to_rmse"] = {f"{t:g}": None for t in targets}
    summary["final_mean_loss"] = rmse[-1]
    (path / "summary.json").write_text(json.dumps(summary))
    return path


def summary_to_render() -> dict:
    """Everything `render` reads of a summary, with values that exercise every line."""
    return {
        "status": "failed",
        "interrupted": True,
        "final_mean_accuracy": 0.7213,
        "final_worst_accuracy": 0.6149,
        "final_t": 34.0,
        "initial_mean_accuracy": 0.1034,
        "final_mean_loss": 0.8123,
        "final_worst_loss": 1.0456,
        "final_global_loss": None,
        "loss_metric": "cross-entropy",
        "time_to_accuracy": {"0.3": 4.25, "0.5": 12.5, "0.8": None},
        "totals": {
            "bytes_sent": 123_456_789,
            "bytes_delivered": 120_000_000,
            "bytes_dropped": 3_456_789,
            "bytes_flushed_downlink": 1_000_000,
            "messages_malformed": 2,
        },
        "tdf": 12.23,
        "calibration": {"mode": "auto"},
        "wall_seconds": 532.4,
        "duration_emulated_s": 34.0,
        "lag": {
            "max_behind_s": 0.0712,
            "tolerance_s": 0.06,
            "lagging_nodes": [3, 7],
            "lagged": True,
        },
        "startup_error": None,
        "failed_nodes": {"5": "RuntimeError: boom"},
        "run_dir": "outputs/2026-11-30/12-00-00",
    }
