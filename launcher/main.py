"""Thin hydra entry point: compose, validate, plan, run, report."""

from __future__ import annotations

import dataclasses
import logging
import platform
import signal
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from launcher.config.plan import make_plan
from launcher.config.plugins import add_plugin_paths, register_config_defaults
from launcher.config.schema import validate
from launcher.report.summary import render
from launcher.running.run_report import write_report
from launcher.running.spawn import run_plan
from node.checks import ConfigError
from node.data import DataError
from node.files import write_json_atomic

log = logging.getLogger(__name__)
# A degraded run (nodes died, the others went on to the end) is neither ok nor aborted.
EXIT_CODES = {"failed": 1, "degraded": 3, "interrupted": 130}
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
register_config_defaults()  # before hydra composes: the algorithm YAMLs name them
# Ctrl-C's that came before main() (`__main__` holds them while Python imports)
HELD_INTERRUPTS: list[float] = []


def provenance(run, tdf: float | None) -> dict:
    versions = {}
    for pkg in ("torch", "pyzmq", "msgpack", "numpy", "hydra-core", "mnist1d"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).parent,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "seed": run.seed,
        "tdf": tdf,
        # with every default filled in, as the nodes ran it
        "algorithm": {"_target_": run.algorithm_class, **dataclasses.asdict(run.algorithm)},
        "argv": sys.argv,
        "python": platform.python_version(),
        "host": platform.node(),
        "platform": platform.platform(),
        "git_commit": commit,
        "versions": versions,
    }


def execute(cfg: dict, run_dir: Path) -> dict:
    """Validate (before any process starts), plan, run and report; returns the summary."""
    run = validate(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    plan = make_plan(run, run_dir)
    # What .hydra/config.yaml does not say: every default filled and checked, targets and
    # worker counts resolved, the per-node links and step times the network and compute expand to.
    write_json_atomic(run_dir / "config.json", dataclasses.asdict(run))
    outcome = run_plan(plan)
    write_json_atomic(run_dir / "run.json", provenance(run, outcome.tdf))
    summary = write_report(plan, outcome)
    print(render(summary), flush=True)
    return summary


def interrupted_before_start(run_dir: Path) -> None:
    """Ctrl-C before any node process: a summary that says so, and the interrupted exit."""
    run_dir.mkdir(parents=True, exist_ok=True)
    summary = {
        "run_dir": str(run_dir),
        "status": "failed",
        "interrupted": True,
        "started": False,  # no node process was started: nothing ran, nothing to report
        "final_mean_accuracy": None,
    }
    write_json_atomic(run_dir / "summary.json", summary)
    print(f"interrupted before any node started; summary: {run_dir / 'summary.json'}")
    sys.exit(EXIT_CODES["interrupted"])


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # from here on, Ctrl-C raises
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if HELD_INTERRUPTS:
        interrupted_before_start(run_dir)
    raw = OmegaConf.to_container(cfg, resolve=True)
    add_plugin_paths(HydraConfig.get().runtime.config_sources, CONF_DIR)
    try:
        summary = execute(raw, run_dir)
    except KeyboardInterrupt:  # in validation or planning (the run itself reports its own)
        interrupted_before_start(run_dir)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        sys.exit(2)
    except DataError as err:
        print(f"data error: {err}", file=sys.stderr)
        sys.exit(2)
    if summary["status"] != "ok":
        if summary["interrupted"] or HydraConfig.get().mode != RunMode.MULTIRUN:
            sys.exit(EXIT_CODES["interrupted" if summary["interrupted"] else summary["status"]])
        # In a sweep the other jobs still run; the comparison marks this one by its status.
        log.error("job %s: %s", summary["status"], summary["run_dir"])
    return summary["final_mean_accuracy"]
