"""Scoring segmentations, and synthetic images whose answer is known.

- :mod:`~napari_levelset.evaluation.bsds`: the BSDS500 region benchmark (Segmentation
  Covering, PRI, VI; ODS / OIS over scales) and its ``.mat`` files;
- :mod:`~napari_levelset.evaluation.matching`: instance segmentations scored by objects
  matched by IoU (F1, average precision) and foreground Dice;
- :mod:`~napari_levelset.evaluation.contingency`: label maps as region indices, and their
  contingency table (what both count);
- :mod:`~napari_levelset.evaluation.synthetic`: noisy piecewise-constant phantoms and
  synthetic nuclei with their truth.

The scores are re-exported here (numpy only; scipy is imported when a ``.mat`` file is read
or objects are matched below IoU 0.5).
"""

from napari_levelset.evaluation.bsds import (
    covering_matches,
    evaluate_image,
    evaluate_segmentations,
    load_ground_truth,
    load_segmentations,
    rand_index,
    summarize,
    variation_of_information,
)
from napari_levelset.evaluation.contingency import contingency, relabel
from napari_levelset.evaluation.matching import AP_THRESHOLDS, foreground_dice, instance_scores, match_instances

__all__ = [
    "AP_THRESHOLDS",
    "contingency",
    "covering_matches",
    "evaluate_image",
    "evaluate_segmentations",
    "foreground_dice",
    "instance_scores",
    "load_ground_truth",
    "load_segmentations",
    "match_instances",
    "rand_index",
    "relabel",
    "summarize",
    "variation_of_information",
]
