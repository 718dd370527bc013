"""A command of this project in a subprocess, for tests: its own process group, a timeout, and
never left running when the test ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _ctrl_c_as_in_a_terminal() -> None:
    """A job started in the background by a script (`make test &`) inherits SIGINT ignored,
    and Python then installs no KeyboardInterrupt handler: give the child a terminal's."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(module: str, *args: str, cwd: Path = ROOT, merge_stderr: bool = True):
    """`python -m module args...` with the project importable, in a new process group (so
    that a signal reaches the launcher and its nodes as a terminal's Ctrl-C would)."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_ctrl_c_as_in_a_terminal,
    )


def finish(proc: subprocess.Popen, timeout: float) -> str:
    """Its output once it has ended; after `timeout` seconds its whole group is killed and
    the test fails with what it printed."""
    out, err = communicate(proc, timeout)
    return out + (err or "")


def communicate(proc: subprocess.Popen, timeout: float) -> tuple[str, str | None]:
    """(stdout, stderr) as `finish`; stderr is None when it was merged into stdout."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(proc)
        out, err = proc.communicate(timeout=10)
        pytest.fail(f"{proc.args} did not finish in {timeout} s:\n{out}\n{err or ''}")


def kill(proc: subprocess.Popen) -> None:
    """For `finally:` blocks: the whole group, if the command still runs."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)


def run(module: str, *args: str, timeout: float, cwd: Path = ROOT) -> tuple[int, str]:
    """(exit code, output) of a command that must end within `timeout` seconds."""
    proc = start(module, *args, cwd=cwd)
    out = finish(proc, timeout)
    return proc.returncode, out
