"""A command of this project in a subprocess, for tests: its own process group, a timeout, and
never left running when the test ends."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _ctrl_c_as_in_a_terminal() -> None:
    """A job started in the background by a script (`make test &`) inherits SIGINT ignored,
    and Python then installs no KeyboardInterrupt handler: give the child a terminal's."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(
    module: str, *args: str, cwd: Path = ROOT, merge_stderr: bool = True, env: dict | None = None
):
    """`python -m module args...` with the project importable, in a new process group (so
    that a signal reaches the launcher and its nodes as a terminal's Ctrl-C would); `env`
    adds to the environment."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
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


class LineReader:
    """Reads a started command's (merged) output line by line as it comes, so that a test can
    act at an observable moment: `wait_for` a line, then `finish` for the whole output."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.lines = proc, []
        self._fresh: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            self._fresh.put(line)
        self._fresh.put(None)  # end of output

    def wait_for(self, predicate, timeout: float) -> str:
        """The first line from now on for which `predicate` is true; the test fails if the
        output ends or `timeout` seconds pass first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._fresh.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                kill(self.proc)
                pytest.fail(f"no awaited line in {timeout} s:\n{''.join(self.lines)[-3000:]}")
            if line is None:
                pytest.fail(f"the output ended first:\n{''.join(self.lines)[-3000:]}")
            if predicate(line):
                return line

    def finish(self, timeout: float) -> str:
        """The whole output once the command has ended (killed and failed after `timeout`)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill(self.proc)
            self._thread.join(10)
            pytest.fail(f"{self.proc.args} did not finish in {timeout} s:\n{''.join(self.lines)}")
        self._thread.join(10)
        return "".join(self.lines)


def kill(proc: subprocess.Popen) -> None:
    """For `finally:` blocks: the whole group, if the command still runs."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)


def run(module: str, *args: str, timeout: float, cwd: Path = ROOT) -> tuple[int, str]:
    """(exit code, output) of a command that must end within `timeout` seconds."""
    proc = start(module, *args, cwd=cwd)
    out = finish(proc, timeout)
    return proc.returncode, out
