"""The reports did not change when they moved into launcher/report/: the comparison of a
hand-made sweep and a rendered summary, against the files the code wrote before the move."""

from __future__ import annotations

import json
from pathlib import Path

from launcher.report.compare import write_comparison
from launcher.report.summary import render
from tests.launcher.report.run_dirs import make_sweep, summary_to_render

GOLDEN = Path(__file__).parent / "golden"


def _as_before(now, before):
    """`now` restricted to the keys `before` had: what was added since (the metric's name,
    the worst-node curve) is not a change of result."""
    if isinstance(before, dict):
        return {k: _as_before(now.get(k), v) for k, v in before.items()}
    if isinstance(before, list) and isinstance(now, list) and len(now) == len(before):
        return [_as_before(n, b) for n, b in zip(now, before, strict=True)]
    return now


def test_the_comparison_of_a_sweep_is_what_it_was_before_the_move(tmp_path):
    sweep = make_sweep(tmp_path)
    write_comparison([sweep])
    for name in ("comparison.md", "comparison.csv"):
        now = (sweep / name).read_text().replace(str(sweep), "<SWEEP>")
        assert now == (GOLDEN / name).read_text(), name
    before = json.loads((GOLDEN / "comparison.json").read_text())
    now = json.loads((sweep / "comparison.json").read_text().replace(str(sweep), "<SWEEP>"))
    assert _as_before(now, before) == before


def test_the_printed_summary_is_what_it_was_before_the_move():
    assert render(summary_to_render()) + "\n" == (GOLDEN / "render.txt").read_text()
