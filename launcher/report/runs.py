"""Finding, reading, labelling and checking the run directories a comparison is made of."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from launcher.report.metric import Metric, metric_of_summary


class CompareError(Exception):
    """The runs cannot be compared; the message says why and names the directories."""


@dataclass
class Run:
    """One finished run directory, as read back from what the launcher wrote."""

    dir: Path
    summary: dict
    config: dict
    overrides: list[str]
    label: str = ""

    @property
    def algorithm(self) -> str:
        return self.config.get("algorithm", {}).get("name") or self.summary.get("algorithm", "?")

    @property
    def seed(self):
        return self.config.get("seed")

    @property
    def metric(self) -> Metric:
        return metric_of_summary(self.summary)

    @property
    def targets(self) -> tuple[float, ...]:
        # config.json is the validated config (older runs: the composed one, eval.targets)
        targets = self.config.get("targets", self.config.get("eval", {}).get("targets"))
        if not isinstance(targets, list):  # auto: the task's own, as the summary names them
            targets = [float(k) for k in self.summary.get(f"time_to_{self.metric.key}", {})]
        return tuple(float(t) for t in targets)


@dataclass
class Group:
    """The runs that share a label and differ only by seed."""

    label: str
    runs: list[Run] = field(default_factory=list)


# ---------------------------------------------------------------- finding and reading runs


def _job_key(path: Path):
    return (0, int(path.name), "") if path.name.isdigit() else (1, 0, path.name)


def find_run_dirs(dirs: list[Path]) -> tuple[list[Path], list[str]]:
    """Run dirs (with summary.json) given directly or as the job subdirs of a sweep dir."""
    found, warnings = [], []
    for d in dirs:
        if not d.is_dir():
            raise CompareError(f"not a directory: {d}")
        if (d / "summary.json").is_file():
            found.append(d)
            continue
        jobs = sorted(
            (sub for sub in d.iterdir() if (sub / "summary.json").is_file()), key=_job_key
        )
        if not jobs:
            warnings.append(f"{d}: no run directory with a summary.json, skipped")
        found.extend(jobs)
    if not found:
        raise CompareError("no run directory (one with summary.json) found in: " + _names(dirs))
    return found, warnings


def read_json(path: Path) -> dict:
    """A run directory's JSON file, or {} if it is missing or cut short."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def read_overrides(run_dir: Path) -> list[str]:
    """The command-line overrides hydra saved as a YAML list of strings (`- key=value`)."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    return [str(o) for o in OmegaConf.to_container(OmegaConf.load(path)) or []]


def load_run(run_dir: Path) -> Run:
    return Run(
        dir=run_dir,
        summary=read_json(run_dir / "summary.json"),
        config=read_json(run_dir / "config.json"),
        overrides=read_overrides(run_dir),
    )


# ---------------------------------------------------------------- grouping and checks


def _is_seed(override: str) -> bool:
    return override.lstrip("+~").split("=", 1)[0] == "seed"


def assign_labels(runs: list[Run]) -> list[Group]:
    """Label = overrides minus seed and minus those common to every run, else the algorithm.
    Groups keep the order of their first run, so the first one given is the reference."""
    own = [[o for o in run.overrides if not _is_seed(o)] for run in runs]
    common = set.intersection(*(set(o) for o in own)) if own else set()
    groups: dict[str, Group] = {}
    for run, overrides in zip(runs, own, strict=True):
        run.label = " ".join(o for o in overrides if o not in common) or run.algorithm
        groups.setdefault(run.label, Group(run.label)).runs.append(run)
    return list(groups.values())


def _names(paths) -> str:
    return ", ".join(str(p) for p in paths)


def _in(targets: tuple, runs: list[Run]) -> str:
    return f"{list(targets)} in {_names(r.dir for r in runs if r.targets == targets)}"


def check_comparable(runs: list[Run]) -> list[str]:
    """Raise if the runs differ in size or length; warnings for what only weakens the picture."""
    for key, what in (("num_nodes", "num_nodes"), ("duration_emulated_s", "duration")):
        values: dict = {}
        for run in runs:
            values.setdefault(run.summary.get(key), []).append(run.dir)
        if len(values) > 1:
            parts = "; ".join(f"{v} in {_names(ds)}" for v, ds in values.items())
            raise CompareError(f"runs disagree on {what}: {parts}")
    metrics: dict = {}
    for run in runs:
        metrics.setdefault(run.metric.name, []).append(run.dir)
    if len(metrics) > 1:
        parts = "; ".join(f"{m} in {_names(ds)}" for m, ds in metrics.items())
        raise CompareError(f"runs are judged on different metrics (different tasks): {parts}")
    warnings = []
    targets = dict.fromkeys(run.targets for run in runs)  # in order of appearance
    if len(targets) > 1:
        warnings.append(
            f"runs have different {runs[0].metric.key} targets "
            + "; ".join(_in(t, runs) for t in targets)
            + " — every target is recomputed from each run's curve"
        )
    for run in runs:
        if run.summary.get("status") != "ok":
            warnings.append(f"{run.dir}: status {run.summary.get('status')}, compared anyway")
    for run in runs:
        twins = [r for r in runs if r.label == run.label and r.seed == run.seed]
        if len(twins) > 1 and twins[0] is run:
            warnings.append(f"{run.label!r}: {len(twins)} runs with seed {run.seed}")
    return warnings
