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
    """What the files said then, they say now; what came since (the traffic to each target)
    follows it: a section after the Markdown, columns after each CSV row."""
    sweep = make_sweep(tmp_path)
    write_comparison([sweep])
    now = (sweep / "comparison.md").read_text().replace(str(sweep), "<SWEEP>")
    assert now.startswith((GOLDEN / "comparison.md").read_text())
    now_rows = (sweep / "comparison.csv").read_text().replace(str(sweep), "<SWEEP>").splitlines()
    before_rows = (GOLDEN / "comparison.csv").read_text().splitlines()
    assert len(now_rows) == len(before_rows)
    for now_row, before_row in zip(now_rows, before_rows, strict=True):
        assert now_row.startswith(before_row + ","), (now_row, before_row)
    before = json.loads((GOLDEN / "comparison.json").read_text())
    now = json.loads((sweep / "comparison.json").read_text().replace(str(sweep), "<SWEEP>"))
    assert _as_before(now, before) == before


def test_the_printed_summary_is_what_it_was_before_the_move():
    assert render(summary_to_render()) + "\n" == (GOLDEN / "render.txt").read_text()
