"""Default settings, shared by ``segment``, the CLI and the napari widget.

Kept free of torch so that the widget can read them without importing it.
"""

from __future__ import annotations

from typing import Any

#: The merge weight ``regions="merged"`` uses when none is given, per kind of model: where
#: SC is best on BSDS500 val (N 32: the per-image CNN's about 1, ~11 regions; the U-Net's 2,
#: ~25 regions, while at 1 it leaves ~42). ``DEFAULTS["merge"]`` is the per-image CNN's.
MERGE_WEIGHT: dict[str, float] = {"cnn": 1.0, "unet": 2.0}

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
    merge=MERGE_WEIGHT["cnn"],
    min_region=0.001,
    every=10,
)

#: How ``regions="merged"`` weighs boundaries for each kind of model (``merge_regions``'s
#: ``edge`` and ``texture``), chosen on BSDS500 val: the U-Net's pieces also end away from
#: colour edges, and a sharper edge weight (boundaries off an edge cost more) with more
#: weight on texture merges them better (all 100 val images, N 32, 48: SC 0.548 -> 0.560,
#: PRI 0.773 -> 0.783, VI 1.816 -> 1.761); the per-image CNN's pieces follow edges already.
MERGE_OPTIONS: dict[str, dict[str, float]] = {
    "cnn": dict(edge=2.0, texture=1.0),
    "unet": dict(edge=6.0, texture=3.0),
}

#: The smallest piece kept before merging (``regions="merged"``; a fraction of the image),
#: per kind of model: the U-Net's small pieces are worth offering to the merging (all 100
#: val images, N 32, 48, with its ``MERGE_OPTIONS``: 0.001 -> 0.0002 gives SC 0.560 -> 0.576,
#: PRI 0.783 -> 0.791, VI 1.761 -> 1.739), the per-image CNN's are not.
MERGED_MIN_REGION: dict[str, float] = {"cnn": 0.001, "unet": 0.0002}


def model_kind(model: Any) -> str:
    """The key of the per-model tables above for a ``model`` setting: ``"cnn"`` for the
    per-image CNN, ``"unet"`` for the pretrained U-Net or a model file."""
    return "cnn" if isinstance(model, str) and model == "cnn" else "unet"
