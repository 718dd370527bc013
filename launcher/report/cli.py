"""`python -m launcher.report DIR [DIR ...] [--out OUT]` and the hydra callback that compares
the jobs of a multirun when it ends."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hydra.experimental.callback import Callback

from launcher.report.compare import run_and_print
from launcher.report.runs import CompareError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m launcher.report",
        description="Compare runs: run dirs (with summary.json) or sweep dirs (their job dirs).",
    )
    parser.add_argument("dirs", nargs="+", type=Path, metavar="DIR")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output dir; default: the first DIR if it is a sweep dir, else ./comparison",
    )
    args = parser.parse_args(argv)
    try:
        run_and_print(args.dirs, args.out)
    except CompareError as err:
        print(f"compare: error: {err}", file=sys.stderr)
        return 2
    return 0


class CompareCallback(Callback):
    """Writes the comparison into the sweep dir when a multirun ends; never raises, so a failed
    comparison cannot hide the results of the runs."""

    def on_multirun_end(self, config, **kwargs) -> None:
        try:
            sweep_dir = Path(str(config.hydra.sweep.dir))
            run_and_print([sweep_dir], sweep_dir)
        except Exception as err:  # noqa: BLE001 - reported, never raised
            print(f"compare: comparison not written: {err}", file=sys.stderr, flush=True)
