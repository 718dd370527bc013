"""A reproduction's traffic, from its runs' curves (`mb_sent`: the MB all nodes had sent by each
evaluation instant) and summaries: the MB sent in all and to each target, and each
algorithm's metric at a byte budget. Runs made before traffic was on the curves give none."""

from __future__ import annotations

import numpy as np

from launcher.report.metric import Metric
from launcher.reproduce.stats import mean_interval


def has_traffic(valid: list) -> bool:
    """Every run's curve counts the MB sent."""
    return all("mb_sent" in r.curve[-1] for r in valid)


def traffic_stats(valid: list, keys, metric: Metric) -> dict:
    """MB sent in all (mean over seeds) and when each target (by key) was reached."""
    traffic = has_traffic(valid)
    return {
        "mb_total": mean_interval(
            [r.curve[-1]["mb_sent"] for r in valid] if traffic else []
        ).as_dict(),
        "mb_to": {key: _mb_to(valid, key, metric) for key in keys} if traffic else {},
    }


def _mb_to(valid: list, key: str, metric: Metric) -> dict:
    """MB all nodes had sent when the target was reached, with its interval, when every
    valid run reached it."""
    sent = [r.summary.get(f"mb_to_{metric.key}", {}).get(key) for r in valid]
    return mean_interval(sent if sent and None not in sent else []).as_dict()


def at_budget(cells: list, rows: list[dict], metric: Metric) -> float | None:
    """Compares at a byte budget: the least MB any algorithm of the scenario sent in all (its
    mean over seeds); adds to each row its metric when its nodes had sent that much (linear
    between evaluation instants). None when no run has a traffic curve."""

    def total(row: dict) -> float | None:
        return row.get("mb_total", {}).get("value")

    totals = [total(row) for row in rows if total(row) is not None]
    if not totals:
        return None
    budget = min(totals)
    for cell, row in zip(cells, rows, strict=True):
        if total(row) is None:
            continue
        values = [
            float(
                np.interp(
                    budget, [p["mb_sent"] for p in r.curve], [p[metric.mean] for p in r.curve]
                )
            )
            for r in cell.valid
        ]
        row["at_budget"] = mean_interval(values).as_dict()
    return budget
