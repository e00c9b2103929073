"""Default settings, shared by ``segment``, the CLI and the napari widget.

Kept free of torch so that the widget can read them without importing it.
"""

from __future__ import annotations

from typing import Any

DEFAULTS: dict[str, Any] = dict(
    n_classes=4,
    lam=0.05,
    iterations=100,
    lr=0.01,
    width=16,
    depth=2,
    alpha=1.0,
    color="auto",
    position=0.5,
    merge=1.0,
    every=10,
)
