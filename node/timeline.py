"""What one node did when, in emulated time, for the run's timeline: compute bursts, waits,
merges and every message it took from the transport; bounded, appended as JSON lines at round
boundaries (a crash loses at most the round it was in; a new process after it appends)."""

from __future__ import annotations

import json
from pathlib import Path


class Timeline:
    """Events of one node, up to `limit` per process (the rest counted, not kept). Only the
    training thread records."""

    def __init__(self, path: Path, limit: int):
        self.path, self.limit = path, limit
        self.pending: list[dict] = []
        self.kept = self.dropped = 0

    def _add(self, event: dict) -> None:
        if self.kept < self.limit:
            self.pending.append(event)
            self.kept += 1
        else:
            self.dropped += 1

    def compute(self, start: float, end: float) -> None:
        if end > start:
            self._add({"k": "compute", "t": start, "d": end - start})

    def wait(self, start: float, end: float) -> None:
        if end > start:
            self._add({"k": "wait", "t": start, "d": end - start})

    def merge(self, t: float, round_: int, received: int) -> None:
        self._add({"k": "merge", "t": t, "round": round_, "received": received})
        self.flush()  # one append a round: what a crash takes is the round it was in

    def received(self, src: int, kind: str, sent: float, left: float, delivered: float) -> None:
        """A message from `src`: it started leaving at `sent`, had left at `left` and was
        delivered here at `delivered` (emulated seconds)."""
        self._add({"k": "msg", "src": src, "kind": kind, "t0": sent, "t1": left, "t": delivered})

    def flush(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.writelines(json.dumps(event) + "\n" for event in self.pending)
        self.pending = []

    def close(self) -> None:
        if self.dropped:
            self.pending.append({"k": "dropped", "n": self.dropped})
        self.flush()
