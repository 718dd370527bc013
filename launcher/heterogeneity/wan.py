"""A WAN matrix (region x region Mbit/s and ms, CSV: src,dst,mbps,ms) read into the geo
profile's region names, pair rates, rate within a region and latency; errors name the line."""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass
from pathlib import Path

from node.checks import require

COLUMNS = ("src", "dst", "mbps", "ms")


@dataclass(frozen=True)
class WanMatrix:
    region_names: list[str]  # in order of first appearance
    matrix_mbps: dict[str, dict[str, float]]  # each unordered pair once
    intra_region_mbps: float | None  # from rows with src == dst, if any (their minimum)
    latency_ms: float  # the median over pairs: a node has one latency (see README)


def read_wan_matrix(path: Path, key: str = "network.matrix_file") -> WanMatrix:
    require(path.is_file(), key, f"{path} is not a file", "a CSV with src,dst,mbps,ms")
    names: list[str] = []
    matrix: dict[str, dict[str, float]] = {}
    seen: dict[frozenset, int] = {}
    intra, latencies = [], []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        require(
            not missing,
            f"{key} ({path} line 1)",
            f"the header lacks {missing}",
            f"the header must be {','.join(COLUMNS)}",
        )
        for line, row in enumerate(reader, start=2):
            where = f"{key} ({path} line {line})"
            a, b = (row["src"] or "").strip(), (row["dst"] or "").strip()
            require(bool(a) and bool(b), where, "names no region", "src and dst: region names")
            try:
                mbps, ms = float(row["mbps"]), float(row["ms"])
            except (TypeError, ValueError):
                require(False, where, f"{row['mbps']!r}, {row['ms']!r}", "numbers: Mbit/s, ms")
            require(mbps > 0, where, f"rate {mbps} is not positive", "Mbit/s above 0")
            require(ms >= 0, where, f"latency {ms} is negative", "ms >= 0")
            for name in (a, b):
                if name not in names:
                    names.append(name)
            if a == b:
                intra.append(mbps)
                continue
            pair = frozenset((a, b))
            require(
                pair not in seen,
                where,
                f"the pair {a}-{b} is given again (line {seen.get(pair)})",
                "give each pair of regions once: rates are symmetric here",
            )
            seen[pair] = line
            matrix.setdefault(a, {})[b] = mbps
            latencies.append(ms)
    require(bool(seen), f"{key} ({path})", "holds no pair of regions", "one row a pair")
    return WanMatrix(names, matrix, min(intra) if intra else None, statistics.median(latencies))
