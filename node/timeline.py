"""What one node did when, in emulated time, for the run's timeline: compute bursts, waits,
merges and every message it took from the transport; bounded, appended as JSON lines at round
boundaries (a crash loses at most the round it was in; a new process after it appends)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transport import Message


class Timeline:
    """Events of one node, up to `limit` per process (the rest counted, not kept); a limit of 0
    records and writes nothing (the run asked for no timeline). Only the training thread
    records."""

    def __init__(self, path: Path, limit: int):
        self.path, self.limit = path, limit
        self.pending: list[dict] = []
        self.kept = self.dropped = 0

    @classmethod
    def for_node(cls, run_dir: Path, node: int, limit: int) -> Timeline:
        """Node `node`'s events, in the run folder's timeline/NNN.jsonl."""
        return cls(Path(run_dir) / "timeline" / f"{node:03d}.jsonl", limit)

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def _add(self, event: dict) -> None:
        if not self.enabled:
            return
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

    def received(self, msg: Message) -> None:
        """A message taken from the transport: the span it took to leave its sender
        (`t_start`, `t_end`) and its delivery here (emulated seconds)."""
        self._add(
            {"k": "msg", "src": msg.src, "kind": msg.kind, "t0": msg.t_start, "t1": msg.t_end,
             "t": msg.delivered_at}
        )  # fmt: skip

    def flush(self) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.writelines(json.dumps(event) + "\n" for event in self.pending)
        self.pending = []

    def close(self) -> None:
        if self.dropped:
            self.pending.append({"k": "dropped", "n": self.dropped})
        self.flush()
