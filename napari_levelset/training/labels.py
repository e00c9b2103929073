"""The one rule for label images in training: what a label image may be, and the class targets it becomes.

Training (``napari_levelset.training.train.train``, ``napari-levelset train --labels`` and the
napari training panel) takes label images of three kinds and turns each into per-pixel
*class targets*: ``0`` unlabelled (no cross-entropy there), ``k`` = the network's class ``k``
(of a head with at least ``k`` classes).  For objects on a background -- nuclei, cells -- the
class count is **2** (background and foreground), not the number of objects.

``instances``
    An instance mask: background 0, each object its own id (what the widget's Instances
    output, Cellpose, StarDist, QuPath or the Cell Tracking Challenge ``man_seg`` files hold).
    Becomes background (class 1) vs foreground (class 2); every pixel is labelled.  With
    ``boundary="unlabelled"`` (or ``"background"``) the one-pixel line where two objects touch
    is left unlabelled (or made background), so that the network may learn to keep touching
    objects apart; the default ``"keep"`` leaves it foreground.
``binary``
    A foreground mask: ``bool``, 0/1, 0/255 or any two values one of which is 0.  Becomes
    background (class 1) where it is 0 and foreground (class 2) elsewhere: **0 is labelled
    background here, not unlabelled**.
``classes``
    Class labels: 0 unlabelled, ``k`` = class ``k`` (painted strokes of the segmentation widget
    are of this kind).  Never chosen by the automatic rule when a 0 is present: ask for it
    (``label_kind="classes"``, ``--label-kind classes``).

The automatic rule (``label_kind="auto"``), decided per file (per array) and reported:

1. ``bool``, or exactly two distinct values one of which is 0 -> ``binary``;
2. more than two distinct values, one of them 0 -> ``instances``;
3. no 0 anywhere -> ``classes`` (every pixel labelled with its class);
4. 0 only -> refused (nothing labelled).

Refused, each with a one-line ``InputError`` saying what was expected: labels of another
shape than their image, floating-point labels that are not whole numbers, negative values,
an image with no labelled pixel (all 0 as class labels, a single value as a mask), and class
labels beyond the largest head's class count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_levelset.errors import InputError

__all__ = ["BOUNDARY_MODES", "LABEL_KINDS", "LabelDecision", "decide_label_kind", "label_targets"]

#: what a label image may be (``auto``: decided by the rule above)
LABEL_KINDS = ("auto", "instances", "binary", "classes")
#: what becomes of the line where two instances touch
BOUNDARY_MODES = ("keep", "unlabelled", "background")

#: the class targets of background and foreground (``binary`` and ``instances``)
BACKGROUND, FOREGROUND = 1, 2


@dataclass(frozen=True)
class LabelDecision:
    """What the label rule decided for one label image.

    Parameters
    ----------
    name : str
        The label image's name (file name or ``"image i"``).
    kind : str
        ``instances``, ``binary`` or ``classes``.
    reason : str
        Why (``"given"``, or the automatic rule's reading of the values).
    classes : int
        The class count the targets need (2 for ``instances`` and ``binary``; the largest class
        for ``classes``).
    objects : int or None
        Objects of an instance mask, else None.
    labelled : float
        Fraction of the pixels labelled (a target > 0).
    """

    name: str
    kind: str
    reason: str
    classes: int
    objects: int | None = None
    labelled: float = 1.0

    @property
    def summary(self) -> str:
        """The decision in a few words (no name, no reason), e.g. for a line under a layer picker."""
        return {
            "instances": f"instance mask: {self.objects} objects → background (1) / foreground (2)",
            "binary": "foreground mask: 0 → background (1), the rest → foreground (2)",
            "classes": f"class labels 1..{self.classes}, 0 unlabelled ({self.labelled:.0%} labelled)",
        }[self.kind]

    def __str__(self) -> str:
        what = {
            "instances": f"instance mask ({self.objects} objects) -> background (class 1) / foreground (class 2)",
            "binary": "foreground mask -> 0 is background (class 1), the rest foreground (class 2)",
            "classes": f"class labels (0 unlabelled, k = class k; up to class {self.classes})",
        }[self.kind]
        return f"{self.name}: {what}; {self.labelled:.0%} of pixels labelled ({self.reason})"


def _whole(lab, name: str) -> np.ndarray:
    """``lab`` as a non-negative integer array (InputError otherwise)."""
    lab = np.asarray(lab)
    if lab.dtype == bool:
        return lab
    if np.issubdtype(lab.dtype, np.floating):
        if not np.all(np.isfinite(lab)) or not np.array_equal(lab, np.round(lab)):
            raise InputError(
                f"labels of {name} are floating-point with non-whole values: a label image holds whole "
                "numbers (ids or classes), not probabilities or an intensity image"
            )
        lab = lab.astype(np.int64)
    elif not np.issubdtype(lab.dtype, np.integer):
        raise InputError(f"labels of {name} must be whole numbers or bool, got {lab.dtype}")
    if lab.size and lab.min() < 0:
        raise InputError(f"labels of {name} hold negative values (down to {lab.min()}): ids and classes are >= 0")
    return lab


def decide_label_kind(lab, name: str = "labels") -> tuple[str, str]:
    """The kind the automatic rule gives a label image, and why.

    Parameters
    ----------
    lab : array_like of int or bool
        The label image (any shape).
    name : str
        Its name, for messages.

    Returns
    -------
    kind : str
        ``instances``, ``binary`` or ``classes`` (see the module's rule).
    reason : str
        The values that decided it, in words.

    Raises
    ------
    InputError
        For non-whole floating-point values, negative values, or an image of zeros only.

    Examples
    --------
    >>> import numpy as np
    >>> decide_label_kind(np.array([[0, 255], [255, 0]]))[0]
    'binary'
    >>> decide_label_kind(np.array([[0, 1], [2, 3]]))[0]
    'instances'
    """
    lab = _whole(lab, name)
    if lab.dtype == bool:
        return "binary", "a bool mask"
    values = np.unique(lab)
    if values.size == 0 or (values.size == 1 and values[0] == 0):
        raise InputError(
            f"labels of {name} are all 0: nothing is labelled (a mask needs foreground besides its background 0; "
            "class labels are 0 where unlabelled)"
        )
    if values[0] == 0 and values.size == 2:
        return "binary", f"two values 0 and {int(values[1])}"
    if values[0] == 0:
        return "instances", f"{values.size - 1} ids besides 0"
    return "classes", f"no 0: every pixel labelled, classes {int(values[0])}..{int(values[-1])}"


def _touching(ids: np.ndarray) -> np.ndarray:
    """Pixels of an object with a 4-neighbour (in the last two axes) of another object."""
    out = np.zeros(ids.shape, bool)
    for axis in (-1, -2):
        a = np.moveaxis(ids, axis, 0)
        o = np.moveaxis(out, axis, 0)
        diff = (a[1:] != a[:-1]) & (a[1:] > 0) & (a[:-1] > 0)
        o[1:] |= diff
        o[:-1] |= diff
    return out


def label_targets(
    lab,
    n_classes: int | None = None,
    label_kind: str = "auto",
    *,
    boundary: str = "keep",
    shape: tuple | None = None,
    name: str = "labels",
) -> tuple[np.ndarray, LabelDecision]:
    """Class targets of a label image under the label rule (see the module's docstring).

    Parameters
    ----------
    lab : array_like of int or bool
        The label image: an instance mask, a foreground mask or class labels, any shape.
    n_classes : int or None
        The largest class count of the heads trained: class labels beyond it are refused
        (None: not checked).
    label_kind : {"auto", "instances", "binary", "classes"}
        What ``lab`` is; ``auto`` applies the rule.
    boundary : {"keep", "unlabelled", "background"}
        For instance masks, what becomes of the pixels where two objects touch.
    shape : tuple or None
        The image's shape without channels, which ``lab`` must have (None: not checked).
    name : str
        The label image's name, for messages and the decision.

    Returns
    -------
    targets : numpy.ndarray
        int16, ``lab``'s shape: 0 unlabelled, ``k`` class ``k``.
    decision : LabelDecision
        What was decided and why.

    Raises
    ------
    InputError
        For a shape that is not ``shape``, non-whole floating-point values, negative values,
        no labelled pixel, an unknown ``label_kind`` or ``boundary``, or classes beyond
        ``n_classes``.

    Examples
    --------
    >>> import numpy as np
    >>> t, d = label_targets(np.array([[0, 0], [7, 9]]))
    >>> t.tolist(), d.kind, d.classes
    ([[1, 1], [2, 2]], 'instances', 2)
    >>> label_targets(np.array([[0, 0], [0, 1]], bool))[0].tolist()
    [[1, 1], [1, 2]]
    """
    if label_kind not in LABEL_KINDS:
        raise InputError(f"label_kind must be one of {', '.join(LABEL_KINDS)}, got {label_kind!r}")
    if boundary not in BOUNDARY_MODES:
        raise InputError(f"boundary must be one of {', '.join(BOUNDARY_MODES)}, got {boundary!r}")
    lab = _whole(lab, name)
    if shape is not None and tuple(lab.shape) != tuple(shape):
        raise InputError(
            f"labels of {name} have shape {lab.shape}, the image {tuple(shape)}: a label image is the image's shape"
        )
    if label_kind == "auto":
        kind, reason = decide_label_kind(lab, name)
    else:
        kind, reason = label_kind, "given"
    objects = None
    if kind == "classes":
        top = int(lab.max()) if lab.size else 0
        if top == 0:
            raise InputError(f"labels of {name} are all 0: as class labels nothing is labelled")
        if n_classes is not None and top > n_classes:
            raise InputError(
                f"labels of {name} go up to class {top}, more than the {n_classes} classes of the largest head: "
                "class labels are 0 unlabelled, k = class k (an instance mask or a 0/255 mask: label_kind "
                "'instances' or 'binary', trained with 2 classes)"
            )
        targets = lab.astype(np.int16)
        classes = top
    else:
        fg = lab.astype(bool)
        if not fg.any():
            raise InputError(f"labels of {name} are all 0: a mask needs foreground")
        targets = np.where(fg, FOREGROUND, BACKGROUND).astype(np.int16)
        if kind == "instances":
            ids = lab.astype(np.int64)
            objects = int(np.unique(ids[fg]).size)
            if boundary != "keep":
                targets[_touching(ids)] = 0 if boundary == "unlabelled" else BACKGROUND
        classes = 2
    labelled = float((targets > 0).mean()) if targets.size else 0.0
    return targets, LabelDecision(name, kind, reason, classes, objects, labelled)
