"""Unsupervised and scribble-guided segmentation with the multiphase level-set loss.

The algorithm (``method``, ``nn``, ``post``, ``io``) needs only torch and numpy;
the napari glue lives in ``napari``.  Heavy modules are imported lazily so that
``import napari_levelset`` (and napari's plugin menu) stays fast.
"""

from __future__ import annotations

import importlib
import os

# OpenMP threads that wait by spinning hold a core while another process needs it: on a
# 2-core machine with one other busy process, a run took 3x longer spinning than sleeping
# (GOWT1 1024², instances: 27.9 s against 8.8 s).  Sleeping waits, unless the user chose
# otherwise; it takes effect where torch is imported after this package.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "levelset_loss": "napari_levelset.method.loss",
    "scribble_loss": "napari_levelset.method.loss",
    "segment": "napari_levelset.method.segmentation",
    "Segmenter": "napari_levelset.method.segmenter",
    "Snapshot": "napari_levelset.method.segmenter",
    "prepare_image": "napari_levelset.io.prepare",
    "read_image": "napari_levelset.io.read",
    "write_labels": "napari_levelset.io.write",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from napari_levelset.io.prepare import prepare_image  # noqa: F401
    from napari_levelset.io.read import read_image  # noqa: F401
    from napari_levelset.io.write import write_labels  # noqa: F401
    from napari_levelset.method.loss import levelset_loss, scribble_loss  # noqa: F401
    from napari_levelset.method.segmentation import segment  # noqa: F401
    from napari_levelset.method.segmenter import Segmenter, Snapshot  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'napari_levelset' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
