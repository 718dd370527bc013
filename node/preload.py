"""Imported once by the forkserver so that forked nodes share torch's pages instead of reloading."""

import gc

import numpy  # noqa: F401
import torch  # noqa: F401
import torch._dynamo  # noqa: F401  (the first optimizer step imports it: ~1 s, ~70 MiB each)
import torch.nn.functional  # noqa: F401
import torch.optim  # noqa: F401

import node.evaluator  # noqa: F401
import node.runtime  # noqa: F401
import transport  # noqa: F401  (and zmq with it)
from node.algorithms import builtin_algorithms
from node.torch_setup import configure_torch

builtin_algorithms()  # imports every built-in algorithm module once, here
configure_torch(1)

# Everything imported so far lives as long as the process: keep the collector from walking it
# (a full collection over torch's objects is a pause of its own) and from dirtying shared pages.
gc.freeze()
