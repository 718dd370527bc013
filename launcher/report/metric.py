"""The metric a task is judged on: test accuracy (higher is better) for classification, test
RMSE (lower is better) for MovieLens, as the paper reports it; where it sits in a curve point."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """How a task's metric reads from a curve point (mean over nodes, lowest and highest node)."""

    name: str
    label: str  # an axis label
    mean: str  # the keys of a curve point: mean over nodes, lowest and highest node
    low: str
    high: str
    higher_is_better: bool
    bounded: bool  # in [0, 1]: the axis is fixed
    default_targets: tuple[float, ...]  # eval.targets=auto
    node_key: str  # the key of one node's evaluation record (what a curve point averages)

    @property
    def worst(self) -> str:
        return self.low if self.higher_is_better else self.high

    @property
    def key(self) -> str:
        """How summaries and comparisons name its figures: time_to_<key>, final_mean_<key>."""
        return self.name.lower()

    def reached(self, value: float, target: float) -> bool:
        return value >= target if self.higher_is_better else value <= target

    def in_order_reached(self, targets) -> tuple[float, ...]:
        """Targets in the order a run reaches them."""
        return tuple(sorted(targets, reverse=not self.higher_is_better))


ACCURACY = Metric(
    "accuracy", "test accuracy", "mean", "min", "max", True, True, (0.3, 0.4, 0.5), "accuracy"
)
# Matrix factorisation from small random factors starts near the RMSE of predicting 0 (about
# 3.7 on MovieLens's 0.5-5 stars); 1.0 is near what MF reaches on ml-latest-small.
RMSE = Metric(
    "RMSE",
    "test RMSE (lower is better)",
    "loss",
    "loss_min",
    "loss_max",
    False,
    False,
    (1.5, 1.2, 1.0),
    "loss",
)
METRICS = {m.name: m for m in (ACCURACY, RMSE)}


def metric_of_comparison(result: dict) -> Metric:
    """The metric a comparison (compare.compare's result) was made on."""
    return METRICS.get(result.get("metric"), ACCURACY)


def metric_of_summary(summary: dict) -> Metric:
    """The metric a run directory's summary.json was judged on; older runs name only their
    loss (`loss_metric`), and MovieLens runs judged on accuracy are read as RMSE."""
    if summary.get("metric") in METRICS:
        return METRICS[summary["metric"]]
    return RMSE if summary.get("loss_metric") == "RMSE" else ACCURACY


def time_to_targets(
    curve: list[dict], targets: tuple[float, ...], metric: Metric = ACCURACY
) -> dict[str, float | None]:
    """When the mean over nodes first reached each target, interpolated linearly between the
    two evaluation instants around the crossing (finer than the eval interval)."""
    reached: dict[str, float | None] = {}
    for target in targets:
        reached[f"{target:g}"] = None
        for before, after in zip([None, *curve], curve, strict=False):
            if not metric.reached(after[metric.mean], target):
                continue
            if before is None:
                reached[f"{target:g}"] = after["t"]
            else:
                a, b = before[metric.mean], after[metric.mean]
                share = (target - a) / (b - a)
                reached[f"{target:g}"] = before["t"] + share * (after["t"] - before["t"])
            break
    return reached
