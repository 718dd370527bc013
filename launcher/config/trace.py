"""Link changes replayed from a measured bandwidth trace (CSV), as a scenario's actions."""

from __future__ import annotations

import csv
from pathlib import Path

from node.checks import at_least, require
from transport.dynamics import Action


def read_trace(path: Path, num_nodes: int, duration: float, order: int) -> list[Action]:
    """Link changes replayed from a CSV of measured bandwidth: emulated time, node, up, down,
    latency (Mbit/s and ms; an empty cell keeps the value)."""
    key = f"scenario.trace ({path})"
    require(path.is_file(), key, "is not a file", "a CSV with t,node,up_mbps,down_mbps,latency_ms")
    columns = ["t", "node", "up_mbps", "down_mbps", "latency_ms"]
    out = []
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows, [])
        require(
            [c.strip() for c in header] == columns,
            key,
            f"header {header}",
            f"the header must be {','.join(columns)}",
        )
        for line, row in enumerate(rows, start=2):
            where = f"{key} line {line}"
            require(len(row) == 5, where, f"has {len(row)} cells", "five: " + ",".join(columns))
            try:
                t, node = float(row[0]), int(row[1])
                values = {c: float(v) for c, v in zip(columns[2:], row[2:], strict=True) if v}
            except ValueError as err:
                require(False, where, str(err), "numbers: t and rates as decimals, node an int")
            require(0.0 <= t < duration, where, f"t={t} is outside the run", "fix t")
            require(
                0 <= node < num_nodes, where, f"{node} is not a node id", f"use 0..{num_nodes - 1}"
            )
            require(bool(values), where, "changes nothing", "give up, down or latency")
            for c, v in values.items():
                at_least(v, 0.0 if c == "latency_ms" else 1e-6, f"{where} {c}")
            out.append(Action(t, order + line, "link", node, values, where))
    return out
