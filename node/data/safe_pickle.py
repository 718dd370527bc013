"""The project's only unpickling: CIFAR-10's python batches, read through an allow-list.

The CIFAR-10 "python version" is a set of pickled dicts holding numpy arrays and lists. A plain
unpickler runs whatever callable a file names, so this one resolves only the handful of globals
those files (written by Python 2's cPickle, or by Python 3 in the tests) refer to.
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path

import numpy as np

try:  # numpy >= 2 moved the modules; files written by numpy 1 name the old paths
    from numpy._core.multiarray import _reconstruct
    from numpy._core.numeric import _frombuffer
except ImportError:  # pragma: no cover - numpy 1
    from numpy.core.multiarray import _reconstruct
    from numpy.core.numeric import _frombuffer


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 protocol-2 pickles store bytes as _codecs.encode(text, "latin1").
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1")


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,  # protocol 5 arrays
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}") from None


def load_restricted(path: Path) -> dict:
    """A pickled dict of plain values and non-object numpy arrays; keys as str (latin-1, as
    torchvision reads these files). Raises pickle.UnpicklingError on anything else."""
    with open(path, "rb") as f:
        data = _ArraysOnly(io.BufferedReader(f), encoding="latin1").load()
    if not isinstance(data, dict):
        raise pickle.UnpicklingError(f"{path}: expected a dict, got {type(data).__name__}")
    for value in data.values():
        if isinstance(value, np.ndarray) and value.dtype.hasobject:
            raise pickle.UnpicklingError(f"{path}: refused an array of Python objects")
    return data
