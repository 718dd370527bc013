"""The one place torchvision is imported: works around wheels whose compiled ops cannot load.

Some torchvision wheels (a CUDA build beside a CPU-only torch, as on the project's CI machine)
cannot load their `_C` extension, so `torchvision::nms` and `qnms` are never defined and
`import torchvision` fails registering their fake kernels ("operator torchvision::nms does not
exist"). Defining just those two op schemas lets the import finish; data sets, transforms and
models then work (nms itself would not, and nothing here uses it). On machines where the import
works, nothing is defined: the extension's own definitions stay authoritative.
"""

from __future__ import annotations

import sys
from types import ModuleType

import torch

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_library: torch.library.Library | None = None  # kept alive: dropping it unregisters the schemas


def import_torchvision() -> ModuleType:
    global _library
    try:
        import torchvision
    except RuntimeError as err:
        if "torchvision::nms" not in str(err):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]  # the failed import left half-initialised modules
        _library = torch.library.Library("torchvision", "DEF")
        for schema in _SCHEMAS:
            _library.define(schema)
        import torchvision
    return torchvision
