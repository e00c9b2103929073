"""The labeller's convention for objects cut by the image's edge, read from the labelled images.

Whether an object cut by the image's edge is annotated is a convention of the annotation: some
leave such objects out (CellProfiler's, StarDist's and Cellpose's "exclude objects touching the
border" is a common choice; the Cell Tracking Challenge's HeLa masks hold 1 of 109 nuclei that
touch the edge), others keep them (NIH3T3's foreground masks).  The labels a model is trained
on show which convention its user follows, so a model trained with labels learns it and its
instances follow it.

The rule (``edge_evidence``, ``decide_edge_objects``), after training:

1. Only full annotations are evidence: instance masks and foreground masks
   (:mod:`napari_levelset.training.labels`, kinds ``instances`` and ``binary``: every pixel
   labelled, 0 background).  Class labels, where 0 means unlabelled, say nothing about what
   was left out.
2. On each such image the trained network's foreground (the labels' foreground class, 2, as
   the arg-max of the smallest head given the labels) is found in a band along the image's
   edge as wide as a training crop; each connected piece of it that touches the edge and has
   at least ``MIN_EDGE_PIXELS`` pixels is an *object found at the edge*.  It is *labelled* when
   the labels hold it where it meets the edge: at least half of its labelled pixels on the
   image's outermost rows and columns are foreground in the labels (an object the labels hold
   that only the network's outline brings to the edge is not).
3. The labelled images form kinds of image by the size of their objects (the diameter of the
   labels' foreground, ``napari_levelset.post.diameter.foreground_diameter``): sorted by it, a new
   kind where one image's is more than ``SAME_KIND`` times the next smaller one's; images whose
   labels hold no object form no kind of their own.  A kind with at least ``MIN_EDGE_OBJECTS``
   objects found at its edges decides by its own evidence, one with fewer by all images' pooled:
   with fewer than ``LEFT_OUT_SHARE`` (a quarter) of them labelled, the labels leave out objects
   cut by the edge and the instances drop them (``"dropped"``); otherwise they are kept
   (``"kept"``, also where all the images together hold fewer than ``MIN_EDGE_OBJECTS``).  Labels
   of one kind of image give every image one decision.  Kinds that decide differently (in the
   Cell Tracking Challenge's HeLa masks the cut nuclei are left out, in NIH3T3's foreground masks
   they are held) give each image the decision of the kind holding the labelled image nearest it
   in object size, on a log scale (``edge_objects="by size"``, ``decide_for_diameter``).

The decision and its counts are recorded in the model file (``edge_objects``,
``edge_objects_evidence``); ``segment(image, model=FILE, regions="instances")`` -- and so the
command line, the napari widget and the batch path -- then drops the instances touching the
image's edge (``skimage.segmentation.clear_border``; ``napari_levelset.method.plan``), for a
model ``"by size"`` where the diameter of the image's own instances decides so.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import ndimage as ndi

from napari_levelset.post.diameter import foreground_diameter
from napari_levelset.training.labels import FOREGROUND

__all__ = [
    "EDGE_DECISIONS",
    "LEFT_OUT_SHARE",
    "MIN_EDGE_OBJECTS",
    "MIN_EDGE_PIXELS",
    "SAME_KIND",
    "EdgeEvidence",
    "decide_edge_objects",
    "decide_for_diameter",
    "edge_evidence",
    "edge_message",
    "edge_metadata",
]

#: what a model's instances do with objects touching the image's edge ("by size": per image, as the
#: labelled images nearest in object size do)
EDGE_DECISIONS = ("kept", "dropped", "by size")
#: objects found at the edge needed to decide: per kind of image, else over all fully labelled images
MIN_EDGE_OBJECTS = 5
#: below this share of the objects found at the edge labelled, the labels leave such objects out
LEFT_OUT_SHARE = 0.25
#: pieces of foreground at the edge smaller than this (pixels) are not counted
MIN_EDGE_PIXELS = 16
#: labelled images are one kind of image while each one's objects' diameter is at most this many times the
#: next smaller one's (the diameters sorted): nuclei of one kind vary less than that between images
SAME_KIND = 1.5
#: the label kinds that annotate every pixel (0 background): the only evidence
FULL_KINDS = ("instances", "binary")


@dataclass(frozen=True)
class EdgeEvidence:
    """Objects a trained network finds at the edge of one fully labelled image, and how many the labels hold.

    Parameters
    ----------
    name : str
        The image's name.
    found : int
        Objects found at the edge (connected pieces of the predicted foreground touching it).
    labelled : int
        Of those, the ones the labels hold where they meet the edge (at least half of their labelled
        pixels on the image's outermost rows and columns foreground).
    diameter : float
        The diameter of the labels' objects, pixels (``foreground_diameter`` of their foreground);
        NaN where the labels hold no object (``decide_edge_objects`` records None).
    """

    name: str
    found: int
    labelled: int
    diameter: float = float("nan")


def _edge_band(shape: tuple[int, int], width: int) -> list[tuple[slice, slice]]:
    """The four strips of ``width`` pixels along the edges of an image of ``shape`` (the whole image when small)."""
    h, w = shape
    if h <= 2 * width or w <= 2 * width:
        return [(slice(0, h), slice(0, w))]
    return [
        (slice(0, width), slice(0, w)),
        (slice(h - width, h), slice(0, w)),
        (slice(0, h), slice(0, width)),
        (slice(0, h), slice(w - width, w)),
    ]


@torch.no_grad()
def _predicted_foreground(net, image: np.ndarray, head: int, width: int, device) -> np.ndarray:
    """``(H, W)`` bool: the network's arg-max is the labels' foreground class, in the band along the edge."""
    h, w = image.shape[1:]
    out = np.zeros((h, w), bool)
    for sl in _edge_band((h, w), width):
        x = torch.from_numpy(np.ascontiguousarray(image[(slice(None), *sl)], dtype=np.float32))[None].to(device)
        out[sl] = (net(x)[head].argmax(1)[0] == FOREGROUND - 1).cpu().numpy()
    return out


def _objects_at_edge(pred: np.ndarray, targets: np.ndarray, name: str) -> EdgeEvidence:
    """Counts of image ``name``: the pieces of ``pred`` touching the edge, and how many ``targets`` label."""
    pieces, _ = ndi.label(pred)
    rim = np.zeros(pred.shape, bool)
    rim[[0, -1], :] = rim[:, [0, -1]] = True
    at_edge = np.unique(pieces[rim & (pieces > 0)])
    fg = targets == FOREGROUND
    # labels without objects (a negative example) say nothing of the objects' size
    diameter = foreground_diameter(fg.astype(np.float32)) if fg.sum() >= MIN_EDGE_PIXELS else float("nan")
    if at_edge.size == 0:
        return EdgeEvidence(name, 0, 0, diameter)
    size = np.bincount(pieces.ravel(), minlength=pieces.max() + 1)
    on_rim = rim & (targets > 0)  # where the object meets the edge, as the labels have it
    fg = np.bincount(pieces[on_rim], weights=(targets[on_rim] == FOREGROUND), minlength=size.size)
    n_known = np.bincount(pieces[on_rim], minlength=size.size)
    at_edge = at_edge[size[at_edge] >= MIN_EDGE_PIXELS]
    labelled = int(np.sum(fg[at_edge] >= 0.5 * np.maximum(n_known[at_edge], 1)))
    return EdgeEvidence(name, int(at_edge.size), labelled, diameter)


def edge_evidence(net, data: list, targets: list, kinds: list, names: list, head: int, width: int, device="cpu"):
    """The objects a trained network finds at the edge of each fully labelled image, and how many are labelled.

    Parameters
    ----------
    net : napari_levelset.nn.unet.LevelSetUNet
        The trained network (put in eval mode, and back).
    data : list of numpy.ndarray
        The training images ``(C, H, W)``, as prepared for training (not padded).
    targets : list of numpy.ndarray or None
        Their ``(H, W)`` class targets (0 unlabelled, ``k`` class ``k``) or None.
    kinds : list of str or None
        Each image's label kind (``instances``, ``binary``, ``classes``) or None.
    names : list of str
        The images' names.
    head : int
        The class count of the head read (one given the labels' cross-entropy).
    width : int
        Width of the band along the edge the network is run on, pixels (a training crop).
    device : str or torch.device
        Where the network is.

    Returns
    -------
    list of EdgeEvidence
        One per image labelled with an instance or foreground mask, in order.
    """
    was = net.training
    net.eval()
    out = []
    try:
        for d, t, kind, name in zip(data, targets, kinds, names):
            if t is None or kind not in FULL_KINDS:
                continue
            out.append(_objects_at_edge(_predicted_foreground(net, d, head, width, device), t, str(name)))
    finally:
        net.train(was)
    return out


def _size(e: dict) -> float:
    """An image's objects' diameter from its evidence (NaN where its labels hold no object, or not recorded)."""
    d = e.get("diameter")
    return float(d) if d is not None and np.isfinite(float(d)) and float(d) > 0 else float("nan")


def _pooled(images: list[dict]) -> tuple[bool, int, int]:
    """Whether the images' evidence, pooled, says the labels leave cut objects out; objects found, labelled."""
    found = sum(int(e["found"]) for e in images)
    held = sum(int(e["labelled"]) for e in images)
    return found >= MIN_EDGE_OBJECTS and held < LEFT_OUT_SHARE * found, found, held


def _kinds(images: list[dict]) -> list[list[dict]]:
    """The labelled images in kinds of image by their objects' size: sorted by diameter, a new kind where one
    image's is more than ``SAME_KIND`` times the one before (images without a diameter, whose labels hold no
    object, in none: they count in all images' pooled evidence only)."""
    sized = sorted((e for e in images if np.isfinite(_size(e))), key=_size)
    kinds: list[list[dict]] = []
    for e in sized:
        if kinds and _size(e) <= SAME_KIND * _size(kinds[-1][-1]):
            kinds[-1].append(e)
        else:
            kinds.append([e])
    return kinds


def _kind_decision(kind: list[dict], images: list[dict]) -> bool:
    """A kind's own evidence where it holds ``MIN_EDGE_OBJECTS`` objects found at the edge, else all images'."""
    dropped, found, _ = _pooled(kind)
    return dropped if found >= MIN_EDGE_OBJECTS else _pooled(images)[0]


def _nearest_kind(kinds: list[list[dict]], diameter: float) -> list[dict]:
    """The kind holding the labelled image whose objects' diameter is nearest ``diameter`` (log scale; every
    image of a kind has a diameter, ``_kinds``)."""

    return min(kinds, key=lambda kind: min(abs(np.log(_size(e) / diameter)) for e in kind))


def decide_for_diameter(images: list[dict], diameter: float) -> str:
    """What the instances of an image whose objects have ``diameter`` do with objects touching its edge.

    The labelled images form kinds by their objects' size (``SAME_KIND``); the image follows the
    kind holding the labelled image nearest it in size, by that kind's evidence where it holds
    ``MIN_EDGE_OBJECTS`` objects found at the edge, else by all images' pooled.

    Parameters
    ----------
    images : list of dict
        Per labelled image ``{"name", "found", "labelled", "diameter"}`` (``decide_edge_objects``'s
        ``images``; the diameter in pixels).
    diameter : float
        The diameter of the image's objects, pixels (``foreground_diameter`` of its instances); NaN
        where it has none (all images' pooled evidence then decides).

    Returns
    -------
    str
        ``"dropped"`` or ``"kept"``.

    Examples
    --------
    >>> hela = dict(name="t13", found=7, labelled=1, diameter=22.0)
    >>> nih = dict(name="dna-0", found=10, labelled=10, diameter=83.0)
    >>> decide_for_diameter([hela, nih], 24.0), decide_for_diameter([hela, nih], 70.0)
    ('dropped', 'kept')
    """
    kinds = _kinds(images)
    d = float(diameter)
    if not kinds or not (np.isfinite(d) and d > 0):  # no size to compare: all images' pooled evidence
        return "dropped" if _pooled(images)[0] else "kept"
    return "dropped" if _kind_decision(_nearest_kind(kinds, d), images) else "kept"


def _size_range(kind: list[dict]) -> str:
    """The diameters of a kind's objects, in words: ``"22 px"`` or ``"61-85 px"``."""
    lo, hi = min(map(_size, kind)), max(map(_size, kind))
    return f"{lo:.0f} px" if round(lo) == round(hi) else f"{lo:.0f}-{hi:.0f} px"


def decide_edge_objects(evidence: list[EdgeEvidence]) -> dict:
    """What a model's instances do with objects touching the image's edge, by the rule of this module.

    Parameters
    ----------
    evidence : list of EdgeEvidence
        ``edge_evidence`` of the fully labelled images of a run trained with labels.

    Returns
    -------
    dict
        ``edge_objects``: ``"dropped"``, ``"kept"``, or ``"by size"`` where kinds of image by their
        objects' size decide differently (each image then follows ``decide_for_diameter``);
        ``found`` and ``labelled``: the objects found at the edge over all fully labelled images and
        how many the labels hold; ``images``: per image ``{"name", "found", "labelled",
        "diameter"}`` (pixels; None where its labels hold no object); ``kinds``: per kind of image
        its images' names, counts and decision; ``reason``: the rule's reading, in words.

    Examples
    --------
    >>> decide_edge_objects([EdgeEvidence("a", 7, 1, 20.0)])["edge_objects"]
    'dropped'
    >>> decide_edge_objects([EdgeEvidence("a", 7, 5, 20.0)])["edge_objects"]
    'kept'
    >>> decide_edge_objects([EdgeEvidence("a", 2, 0, 20.0)])["edge_objects"]
    'kept'
    >>> decide_edge_objects([EdgeEvidence("a", 7, 1, 22.0), EdgeEvidence("b", 10, 10, 83.0)])["edge_objects"]
    'by size'
    """
    images = [dict(asdict(e), diameter=None if np.isnan(e.diameter) else float(e.diameter)) for e in evidence]
    dropped, found, held = _pooled(images)
    kinds = []
    for kind in _kinds(images):
        _, kind_found, kind_held = _pooled(kind)
        decision = "dropped" if _kind_decision(kind, images) else "kept"
        names = [e["name"] for e in kind]
        kinds.append(
            dict(images=names, found=kind_found, labelled=kind_held, edge_objects=decision, sizes=_size_range(kind))
        )
    by_size = len({k["edge_objects"] for k in kinds}) > 1
    if not evidence:
        reason = "no instance or foreground masks among the labels (class labels do not say what was left out)"
    elif by_size:
        said = [
            f"{', '.join(k['images'])} ({k['sizes']} objects) "
            f"{'leave them out' if k['edge_objects'] == 'dropped' else 'hold them'} ({k['labelled']} of {k['found']})"
            for k in kinds
        ]
        reason = (
            "labels of images of different object sizes differ on objects cut by the image's edge: "
            + "; ".join(said)
            + "; each image follows the labelled images nearest it in object size"
        )
    elif found < MIN_EDGE_OBJECTS:
        reason = f"too few objects at the image's edge to tell ({found}; {MIN_EDGE_OBJECTS} needed)"
    elif dropped:
        reason = f"labels leave out objects cut by the image's edge ({held} of {found} labelled)"
    else:
        reason = f"labels hold objects cut by the image's edge ({held} of {found} labelled)"
    return dict(
        edge_objects="by size" if by_size else ("dropped" if dropped else "kept"),
        found=found,
        labelled=held,
        images=images,
        kinds=kinds,
        reason=reason,
    )


def edge_message(meta: dict) -> str:
    """One line on what a model's instances do with objects cut by the image's edge, from its metadata.

    Parameters
    ----------
    meta : dict
        The model file's metadata.

    Returns
    -------
    str
        ``""`` for a model that records no decision (trained without labels, or by an earlier version).
    """
    ev = meta.get("edge_objects_evidence")
    if not isinstance(ev, dict) or meta.get("edge_objects") not in EDGE_DECISIONS:
        return ""
    if meta["edge_objects"] == "by size":
        return f"{ev.get('reason')}: the model's instances drop or keep objects touching the edge as those do"
    what = "drop" if meta["edge_objects"] == "dropped" else "keep"
    return f"{ev.get('reason')}: the model's instances {what} objects touching the edge"


def edge_metadata(net, ts, head: int, width: int, device="cpu", progress: bool = False) -> dict:
    """The model file's ``edge_objects`` and ``edge_objects_evidence`` for a network trained on ``ts``.

    Parameters
    ----------
    net : napari_levelset.nn.unet.LevelSetUNet
        The trained network.
    ts : napari_levelset.training.data.TrainingSet
        Its training images (not padded), targets, label kinds and names.
    head, width, device
        As for ``edge_evidence``.
    progress : bool
        Print the decision (``edge_message``) to stderr.

    Returns
    -------
    dict
        ``edge_objects`` (``"dropped"`` or ``"kept"``) and ``edge_objects_evidence`` (the rest of
        ``decide_edge_objects``'s answer).
    """
    rule = decide_edge_objects(edge_evidence(net, ts.data, ts.labels, ts.kinds, ts.names, head, width, device))
    meta = dict(edge_objects=rule.pop("edge_objects"), edge_objects_evidence=rule)
    if progress:
        print(edge_message(meta), file=sys.stderr)
    return meta
