"""Makes a reproduction's runs through the real CLI (`python -m launcher`, one subprocess each),
skipping every run already finished with the same validated config; one progress bar."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf
from tqdm import tqdm

from launcher.config.plugins import register_config_defaults
from launcher.config.schema import RunConfig, validate
from launcher.main import CONF_DIR
from launcher.report.runs import read_json
from launcher.reproduce.suite import PlannedRun, SuiteError
from node.checks import ConfigError
from node.data import DataError, task

log = logging.getLogger(__name__)
FINISHED = ("ok", "degraded")  # a run that reached its end; failed and interrupted ones rerun
STOP_WAIT = 60.0  # wall seconds a run gets to write its summary after Ctrl-C


@dataclass
class Job:
    """A planned run with its validated config and whether it is still to be made."""

    run: PlannedRun
    dir: Path
    config: dict  # the validated config as the launcher writes it to config.json
    dataset: object  # its DataSpec, as the launcher prepares it
    done: bool = False

    @property
    def duration(self) -> float:
        return float(self.config["duration"])

    @property
    def shape(self) -> tuple:
        """What a run's cost per emulated second depends on, besides the algorithm."""
        return (self.config["dataset"]["name"], self.config["num_nodes"], self.config["model"])


def _json(value) -> dict:
    """As config.json holds it: tuples are lists, every key a string."""
    return json.loads(json.dumps(value))


def validated_configs(runs: Iterable[PlannedRun]) -> list[RunConfig]:
    """Every run's config composed by hydra and validated as the launcher does, before any
    process starts; a bad one raises SuiteError naming the run."""
    register_config_defaults()
    configs = []
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        for run in runs:
            try:
                raw = OmegaConf.to_container(compose("config", list(run.overrides)), resolve=True)
                configs.append(validate(raw))
            except ConfigError as err:
                raise SuiteError(f"run {run.key}: config error: {err}") from err
            except HydraException as err:  # an unknown group, option or key
                raise SuiteError(f"run {run.key}: {err}") from err
    return configs


def is_finished(run_dir: Path, config: dict) -> bool:
    """A finished run (ok or degraded, not interrupted) made with exactly this config."""
    summary = read_json(run_dir / "summary.json")
    return (
        summary.get("status") in FINISHED
        and not summary.get("interrupted")
        and read_json(run_dir / "config.json") == config
    )


def plan_jobs(runs: list[PlannedRun], out: Path) -> list[Job]:
    jobs = [
        Job(run, run.run_dir(out), _json(dataclasses.asdict(config)), config.dataset)
        for run, config in zip(runs, validated_configs(runs), strict=True)
    ]
    for job in jobs:
        job.done = is_finished(job.dir, job.config)
    return jobs


def check_data(jobs: list[Job]) -> dict[str, str]:
    """Each part whose data set is neither here nor downloadable, with the reason; the data
    sets that are get prepared (and cached) once, here, as the launcher would."""
    missing: dict[str, str] = {}
    seen: set[str] = set()
    for job in jobs:
        if job.run.part in seen:
            continue
        seen.add(job.run.part)
        try:
            task(job.dataset.name).prepare(job.dataset)
        except DataError as err:
            missing[job.run.part] = str(err)
    return missing


def command(job: Job) -> list[str]:
    return [sys.executable, "-m", "launcher", *job.run.overrides, f"hydra.run.dir={job.dir}"]


def execute(job: Job) -> dict:
    """One run through the CLI, its console in console.log beside its summary; returns the
    summary (status failed, with the exit code, if the run wrote none). A Ctrl-C is passed on
    and the run may finish its summary before it propagates."""
    if job.dir.exists():  # a failed or interrupted attempt, or one with another config
        shutil.rmtree(job.dir)
    job.dir.mkdir(parents=True)
    with open(job.dir / "console.log", "wb") as console:
        proc = subprocess.Popen(command(job), stdout=console, stderr=subprocess.STDOUT)
        try:
            proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=STOP_WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
    return read_json(job.dir / "summary.json") or {"status": "failed", "exit_code": proc.returncode}


PROBE_SECONDS = 2.0  # emulated seconds of the short run that prices a shape nothing has run


@dataclass(frozen=True)
class Cost:
    """What a run of some shape took here: fixed wall seconds (start-up, the evaluations' tail)
    and wall seconds per emulated second of training."""

    shape: tuple
    algorithm: str
    fixed_s: float
    per_s: float


def cost_of(job: Job) -> Cost | None:
    summary = read_json(job.dir / "summary.json")
    wall, training = summary.get("wall_seconds"), summary.get("training_wall_seconds")
    if not (wall and training):
        return None
    return Cost(job.shape, job.run.algorithm, wall - training, training / job.duration)


def measured_costs(jobs: Iterable[Job]) -> list[Cost]:
    return [c for c in (cost_of(j) for j in jobs if j.done) if c is not None]


def probe_job(job: Job, out: Path) -> Job:
    """A run like `job`, PROBE_SECONDS long with one evaluation, that prices its shape."""
    overrides = (*job.run.overrides, f"duration={PROBE_SECONDS}", f"eval.interval={PROBE_SECONDS}")
    run = dataclasses.replace(job.run, part="probe", overrides=overrides)
    (config,) = validated_configs([run])
    name = "-".join(str(x) for x in job.shape)
    probe = Job(run, out / "probes" / name, _json(dataclasses.asdict(config)), config.dataset)
    probe.done = is_finished(probe.dir, probe.config)
    return probe


def estimate(job: Job, costs: list[Cost]) -> float | None:
    """Wall seconds `job` should take here, from finished runs (or a probe) of its shape, the
    same algorithm's if any; None if nothing of its shape ran."""
    same = [c for c in costs if c.shape == job.shape]
    pool = [c for c in same if c.algorithm == job.run.algorithm] or same
    if not pool:
        return None
    fixed = sum(c.fixed_s for c in pool) / len(pool)
    return fixed + job.duration * sum(c.per_s for c in pool) / len(pool)


def expected_seconds(todo: list[Job], costs: list[Cost]) -> tuple[float, int]:
    """The wall seconds the runs to make should take, and how many of them have no estimate."""
    guesses = [estimate(j, costs) for j in todo]
    return sum(g for g in guesses if g is not None), sum(g is None for g in guesses)


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def to_make(jobs: Iterable[Job]) -> list[Job]:
    """The jobs not done, each run once (parts that share a scenario share its runs)."""
    todo: dict[Path, Job] = {}
    for job in jobs:
        if not job.done:
            todo.setdefault(job.dir, job)
    return list(todo.values())


def run_all(
    jobs: list[Job],
    run_one: Callable[[Job], dict] = execute,
    stream=None,
    probe_costs: tuple[Cost, ...] = (),
    made: list | None = None,
) -> list[tuple[Job, dict]]:
    """Make every job not done, in order, under one progress bar (a log line per run when the
    output is not a terminal); returns what each made run reported, appended to `made` as it
    goes (so that a caller holding the list still has it after a Ctrl-C)."""
    todo = to_make(jobs)
    stream = stream if stream is not None else sys.stderr
    bar = tqdm(total=len(todo), unit="run", file=stream, disable=not stream.isatty())
    made = [] if made is None else made
    costs = [*probe_costs, *measured_costs(jobs)]  # grows by each run made: read once
    try:
        for i, job in enumerate(todo, 1):
            bar.set_description(job.run.key)
            started = time.monotonic()
            summary = run_one(job)
            for same in (j for j in jobs if j.dir == job.dir):
                same.done = summary.get("status") in FINISHED
            made.append((job, summary))
            cost = cost_of(job) if job.done else None
            costs += [cost] if cost is not None else []
            left, unknown = expected_seconds(todo[i:], costs)
            eta = f"about {minutes(left)} left" + (f" (+{unknown} not priced)" if unknown else "")
            line = (
                f"run {i}/{len(todo)} {job.run.key}: {summary.get('status')} in "
                f"{time.monotonic() - started:.0f} s; {eta}"
            )
            bar.set_postfix_str(eta)
            bar.update()
            if bar.disable:
                log.info(line)
            if not job.done:
                log.warning("%s did not finish; see %s", job.run.key, job.dir / "console.log")
    finally:
        bar.close()
    return made
