"""The data sets a run can train on, one module each behind the `Task` protocol, by name."""

from __future__ import annotations

from node.data.cifar10 import CIFAR10
from node.data.mnist1d import MNIST1D
from node.data.movielens import MovieLens
from node.data.task import DataError, Task, Tester

TASKS: dict[str, Task] = {"mnist1d": MNIST1D(), "cifar10": CIFAR10(), "movielens": MovieLens()}
# Which data set each model is built for.
MODEL_DATASET = {model: name for name, t in TASKS.items() for model in t.models}


def task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown data set {name!r}; valid: {', '.join(TASKS)}")
    return TASKS[name]


__all__ = ["MODEL_DATASET", "TASKS", "DataError", "Task", "Tester", "task"]
