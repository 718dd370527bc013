"""`python -m launcher.reproduce`: plan a suite's runs, say what they cost here, make the ones
not made yet (resumable), then write REPORT.md with the paper's claims checked."""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shlex
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from launcher.reproduce import analysis, render, runner
from launcher.reproduce.suite import SuiteError, load_suite, plan_runs

log = logging.getLogger("reproduce")
DEFAULT_OUT = Path("outputs") / "reproduction"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m launcher.reproduce",
        description="The DivShare paper's evaluation on this machine: every run of a suite "
        "(launcher/reproduce/suites/*.yaml), resumable, then REPORT.md with the claims checked.",
    )
    parser.add_argument("--suite", default="paper", help="a shipped suite's name or a YAML file")
    parser.add_argument("--out", type=Path, help="default: outputs/reproduction/<suite>")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and its cost")
    parser.add_argument("--report-only", action="store_true", help="make no run, write the report")
    parser.add_argument(
        "--no-probe",
        action="store_true",
        help="do not price a kind of run nothing has run yet with a 2-emulated-second probe",
    )
    return parser.parse_args(argv)


def print_plan(jobs: list[runner.Job], skipped: dict[str, str], costs) -> None:
    by_part: dict[str, list[runner.Job]] = defaultdict(list)
    for job in jobs:
        by_part[job.run.part].append(job)
    total, unpriced, counted = 0.0, 0, set()
    for part, mine in by_part.items():
        if part in skipped:
            print(f"part {part}: skipped, {skipped[part]}")
            continue
        todo = [j for j in runner.to_make(mine) if j.dir not in counted]
        counted |= {j.dir for j in todo}
        seconds, unknown = runner.expected_seconds(todo, costs)
        total, unpriced = total + seconds, unpriced + unknown
        scenarios = sorted({j.run.scenario for j in mine})
        algorithms = sorted({j.run.algorithm for j in mine})
        seeds = sorted({j.run.seed for j in mine})
        cost = f"expected {runner.minutes(seconds)}" + (
            f", {unknown} not priced" if unknown else ""
        )
        print(
            f"part {part}: {len(scenarios)} scenarios x {len(algorithms)} algorithms x "
            f"{len(seeds)} seeds = {len(mine)} runs, {len(mine) - len(todo)} made already or by "
            f"another part, {len(todo)} to make ({sum(j.duration for j in todo):g} emulated s, "
            f"{cost})"
        )
        print(f"  scenarios: {', '.join(scenarios)}; algorithms: {', '.join(algorithms)}")
    unknown = f", and {unpriced} runs nothing has priced yet" if unpriced else ""
    print(f"expected wall time here: {runner.minutes(total)}{unknown}", flush=True)


def probe_costs(jobs: list[runner.Job], out: Path, known) -> list[runner.Cost]:
    """A probe run for each shape that nothing finished has priced yet."""
    costs = []
    priced = {c.shape for c in known}
    for job in jobs:
        if job.done or job.shape in priced:
            continue
        priced.add(job.shape)
        probe = runner.probe_job(job, out)
        if not probe.done:
            print(
                f"pricing {job.shape[0]} x {job.shape[1]} nodes: a {runner.PROBE_SECONDS:g}-s probe"
            )
            summary = runner.execute(probe)
            probe.done = summary.get("status") in runner.FINISHED
        cost = runner.cost_of(probe) if probe.done else None
        if cost is not None:
            costs.append(cost)
    return costs


def meta(runs: int, made: int, results, argv: list[str]) -> dict:
    """Where and how the report was made; each run's wall time counts in the first part that
    lists it (parts share the runs of a scenario they both list)."""
    wall: dict[str, list] = {}
    seen = set()
    for r in results:
        if not r.summary or (r.run.scenario, r.run.algorithm, r.run.seed) in seen:
            continue
        seen.add((r.run.scenario, r.run.algorithm, r.run.seed))
        count, seconds = wall.get(r.run.part, [0, 0.0])
        wall[r.run.part] = [count + 1, seconds + (r.summary.get("wall_seconds") or 0.0)]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,  # the code's commit, wherever the reproduction runs
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "host": platform.node(),
        "cores": os.cpu_count(),
        "commit": commit or "unknown",
        "command": shlex.join(["python", "-m", "launcher.reproduce", *argv]),
        "runs": runs,
        "made": made,
        "reused": runs - made,
        "wall_by_part": {k: tuple(v) for k, v in wall.items()},
    }


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = parse(argv)
    try:
        suite = load_suite(args.suite)
        out = args.out or DEFAULT_OUT / suite.name
        jobs = runner.plan_jobs(plan_runs(suite), out)
    except SuiteError as err:
        print(f"reproduce: error: {err}", file=sys.stderr)
        return 2
    skipped = runner.check_data(jobs)
    runnable = [j for j in jobs if j.run.part not in skipped]
    measured = runner.measured_costs(runnable)
    probed = [] if args.no_probe or args.report_only else probe_costs(runnable, out, measured)
    print_plan(jobs, skipped, [*measured, *probed])
    if args.dry_run:
        return 0
    made: list = []
    status = 0
    if not args.report_only:
        try:
            runner.run_all(runnable, probe_costs=tuple(probed), made=made)
        except KeyboardInterrupt:
            print("interrupted: the same command picks up where this one stopped", file=sys.stderr)
            status = 130
    results = [analysis.load_result(j.run, j.dir) for j in runnable]
    result = analysis.analyse(suite, results, skipped)
    distinct = len({j.dir for j in runnable})
    argv = sys.argv[1:] if argv is None else argv
    path = render.write_report(result, meta(distinct, len(made), results, argv), out)
    print("\n".join(render.summary_lines(result)))
    counts = Counter(r.flag or "ok" for r in results)
    print(f"runs: {dict(counts)}; report: {path}", flush=True)
    return status
