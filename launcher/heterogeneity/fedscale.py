"""FedScale's traces read and checked: device capacity (per client, compute speed in ms per
sample and bandwidth in kbit/s) and availability (per client, active intervals in seconds),
from FedScale's pickles (through the restricted loader) or the CSVs `python -m
launcher.heterogeneity convert` writes from them. Errors name the file and the line (CSV) or
the client (pickle)."""

from __future__ import annotations

import csv
import math
import pickle
from dataclasses import dataclass
from pathlib import Path

from node.checks import ConfigError, require
from node.data.safe_pickle import load_restricted

DEVICE_COLUMNS = ("client_id", "computation", "communication")
AVAILABILITY_COLUMNS = ("client_id", "active", "inactive")
MISSING_FIX = (
    "python -m launcher.heterogeneity fetch --out data/traces (FedScale's, needs internet) or "
    "synthesize --out data/traces (made up, offline), or give the path of a trace file"
)


@dataclass(frozen=True)
class Device:
    compute_ms: float  # per sample (FedScale's "computation"): larger is slower
    up_kbps: float
    down_kbps: float


def _number(value, where: str, what: str, low: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        require(False, where, f"{what} {value!r} is not a number", "fix the value")
    require(math.isfinite(number), where, f"{what} {value!r} is not finite", "fix the value")
    require(number >= low, where, f"{what} {number} is below {low}", "fix the value")
    return number


def _client(value, where: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        require(False, where, f"client id {value!r} is not an integer", "fix the id")


def _rows(path: Path, columns: tuple[str, ...], key: str):
    """(line number, row as a dict) of a CSV whose header must hold `columns`."""
    require(path.is_file(), key, f"{path} is not a file", MISSING_FIX)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in columns if c not in header]
        require(
            not missing,
            f"{key} ({path} line 1)",
            f"the header lacks {missing}",
            f"the header must name {','.join(columns)}",
        )
        yield from enumerate(reader, start=2)


def _pickle(path: Path, key: str) -> dict:
    require(path.is_file(), key, f"{path} is not a file", MISSING_FIX)
    try:
        return load_restricted(path)
    except (pickle.UnpicklingError, EOFError, ValueError) as err:
        require(False, f"{key} ({path})", f"not a FedScale trace pickle: {err}", "check the file")


def read_devices(path: Path, key: str = "traces.device") -> dict[int, Device]:
    """Client -> its device. CSV: client_id,computation,communication (kbit/s both ways), or
    with ul_kbps and dl_kbps columns for each way; pickle: FedScale's dict of dicts."""
    devices = {}
    if path.suffix == ".csv":
        for line, row in _rows(path, DEVICE_COLUMNS, key):
            where = f"{key} ({path} line {line})"
            client = _client(row["client_id"], where)
            require(client not in devices, where, f"client {client} again", "one row a client")
            devices[client] = _device(row, where)
    else:
        for client, entry in _pickle(path, key).items():
            where = f"{key} ({path} client {client!r})"
            require(isinstance(entry, dict), where, "is not a mapping", "FedScale's format")
            devices[_client(client, where)] = _device(entry, where)
    require(bool(devices), f"{key} ({path})", "holds no client", "check the file")
    return devices


def _device(entry: dict, where: str) -> Device:
    for column in DEVICE_COLUMNS[1:]:
        require(column in entry, where, f"no {column!r}", f"give {', '.join(DEVICE_COLUMNS)}")
    compute = _number(entry["computation"], where, "computation", 1e-9)
    rate = _number(entry["communication"], where, "communication", 1e-9)
    up = _number(entry.get("ul_kbps") or rate, where, "ul_kbps", 1e-9)
    down = _number(entry.get("dl_kbps") or rate, where, "dl_kbps", 1e-9)
    return Device(compute, up, down)


def read_availability(path: Path, key: str = "traces.availability") -> dict[int, list]:
    """Client -> its active intervals [(start, end)] in trace seconds, sorted, none
    overlapping. CSV: a row an interval (client_id,active,inactive); pickle: FedScale's
    {client: {"active": [...], "inactive": [...], ...}}, the i-th interval from active[i] to
    inactive[i]."""
    spans: dict[int, list] = {}
    where_of: dict[tuple, str] = {}
    if path.suffix == ".csv":
        for line, row in _rows(path, AVAILABILITY_COLUMNS, key):
            where = f"{key} ({path} line {line})"
            client = _client(row["client_id"], where)
            span = (_number(row["active"], where, "active", 0.0),
                    _number(row["inactive"], where, "inactive", 0.0))  # fmt: skip
            spans.setdefault(client, []).append(span)
            where_of[(client, span)] = where
    else:
        for client, entry in _pickle(path, key).items():
            where = f"{key} ({path} client {client!r})"
            ok = isinstance(entry, dict) and {"active", "inactive"} <= set(entry)
            require(ok, where, "has no active and inactive lists", "FedScale's format")
            active, inactive = list(entry["active"]), list(entry["inactive"])
            require(
                len(active) == len(inactive),
                where,
                f"{len(active)} starts for {len(inactive)} ends",
                "one inactive instant per active one",
            )
            cid = _client(client, where)
            for a, b in zip(active, inactive, strict=True):
                span = (_number(a, where, "active", 0.0), _number(b, where, "inactive", 0.0))
                spans.setdefault(cid, []).append(span)
                where_of[(cid, span)] = where
    require(bool(spans), f"{key} ({path})", "holds no client", "check the file")
    for client, intervals in spans.items():
        intervals.sort()
        for i, (a, b) in enumerate(intervals):
            where = where_of[(client, (a, b))]
            require(b > a, where, f"the interval [{a:g}, {b:g}) is empty", "inactive > active")
            if i:
                prev = intervals[i - 1]
                require(
                    a >= prev[1],
                    where,
                    f"client {client}: [{a:g}, {b:g}) overlaps [{prev[0]:g}, {prev[1]:g})",
                    "intervals of a client must not overlap",
                )
    return spans


def check_enough(clients: int, num_nodes: int, key: str, path: Path) -> None:
    if clients < num_nodes:
        raise ConfigError(
            f"{key} ({path})",
            f"{clients} clients for {num_nodes} nodes",
            "use a trace with at least one client per node, or fewer nodes",
        )
