"""Train a ``LevelSetUNet`` across many images with the level-set loss (unsupervised).

``train`` draws random crops (with random flips and, for square crops,
transposes) from a set of images, batches them across images and minimises the
mean over the model's heads (class counts) of the multiphase level-set loss
``napari_levelset.method.loss.levelset_loss`` with Adam (linear warm-up, cosine decay).
From a random start that loss has a trap: one class everywhere (the softmax
saturates and the class means stop moving), so the first ``kmeans_steps`` add
a decaying cross-entropy to per-crop k-means labels (the per-image mode's own
starting point), matched to the prediction by the Hungarian algorithm so that
no class order is imposed.  The recorded losses are the level-set loss alone.
Where label images are given, ``alpha`` times the cross-entropy on labelled
pixels (0 = unlabelled, ``k`` = class ``k - 1``) is added for every head with at
least as many classes as the largest label, and ``labelled_share`` of every
batch's crops come from the labelled images (the semi-supervised loop of [1]_:
cross-entropy where labelled, the level-set loss everywhere).  By default a run
starts from the shipped U-Net where it fits (``napari_levelset.training.start``),
without the k-means warm start, which only a random start needs.

Images are normalised exactly as for segmentation
(``napari_levelset.io.prepare.prepare_image``: per channel, whole image), before
cropping.  A checkpoint (model + optimiser + step, the model-file format plus
``optimizer`` and ``step``) is written to ``<out>.ckpt`` every
``checkpoint_every`` steps and on Ctrl-C; a later call with ``resume=True``
continues from it.  Batches depend only on ``(seed, step)``, so an interrupted
and resumed run draws the same crops as an uninterrupted one; a checkpoint made
with other settings, colour handling or data is refused, and so is one whose
step, losses or optimiser state are not what a run writes.  The checkpoint
is removed once the model file is written.

The command line (``napari-levelset train``) is ``napari_levelset.cli.train``.

References
----------
.. [1] B. Kim and J. C. Ye, "Mumford-Shah loss functional for image segmentation with
   deep learning", IEEE Transactions on Image Processing 29, 1856-1866 (2020): the loss.
.. [2] D. P. Kingma and J. Ba, "Adam: a method for stochastic optimization", ICLR 2015
   (``torch.optim.Adam``); the cosine decay as in I. Loshchilov and F. Hutter, "SGDR:
   stochastic gradient descent with warm restarts", ICLR 2017 (without restarts).
.. [3] H. W. Kuhn, "The Hungarian method for the assignment problem", Naval Research
   Logistics Quarterly 2, 83-97 (1955): the matching of k-means labels to the prediction
   (``scipy.optimize.linear_sum_assignment``).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from tqdm import tqdm

from napari_levelset import __version__, validate
from napari_levelset.errors import InputError
from napari_levelset.method.cluster import kmeans, smooth, sq_dist
from napari_levelset.method.loss import class_probs, levelset_loss, scribble_loss
from napari_levelset.nn.devices import resolve_device
from napari_levelset.nn.model_files import HEAD_CLASSES, training_preparation
from napari_levelset.nn.unet import MAX_CLASSES, LevelSetUNet
from napari_levelset.resources import run_threads
from napari_levelset.training.checkpoints import checkpoint_path, resume_from
from napari_levelset.training.data import TRAIN_CONTRASTS, _batch, load_training_images, pad_to_crop, read_training_set
from napari_levelset.training.edges import edge_metadata
from napari_levelset.training.outputs import check_output, save_model_file
from napari_levelset.training.start import read_init, start_network, trainable_parameters

__all__ = [
    "DEFAULT_TRAIN",
    "TrainResult",
    "checkpoint_path",
    "load_training_images",
    "match_classes",
    "parse_classes",
    "train",
]


#: Defaults of ``train`` (and of ``napari-levelset train``).
DEFAULT_TRAIN: dict[str, Any] = dict(
    lam=0.05,  # the TV weight the shipped model was trained with
    steps=400,  # with the shipped start: 3-5 minutes on 2 CPU cores shared by five (benchmarks/RESULTS.md)
    crop=96,
    batch_size=8,
    lr=2e-3,
    alpha=1.0,
    checkpoint_every=100,
    warmup=50,
    kmeans_weight=1.0,
    kmeans_steps=None,  # 0.3 from random weights, 0 from a model that segments already
    kmeans_heads=4,
    base=16,
    levels=3,
    embed=32,
    init="auto",  # the shipped U-Net where the run fits it (training.start)
    finetune="all",
    labelled_share=0.75,  # 6 of 8 crops: above 0.5 on GOWT1 with one labelled image per set (RESULTS.md)
)


@dataclass
class TrainResult:
    """What ``train`` did: the model file, the steps done, the loss of every step.

    Parameters
    ----------
    path : pathlib.Path
        The model file written (the checkpoint when ``stop_after`` ended the call).
    steps : int
        Steps done in all (resumed ones included).
    losses : list of float
        The level-set loss of every step done, in order.
    seconds : float
        Wall time of this call's loop, seconds.
    metadata : dict
        The metadata stored in the file (settings, data, ``final_loss``, ...).
    """

    path: Path
    steps: int
    losses: list[float]
    seconds: float
    metadata: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- helpers
def _heads(n_classes) -> list[int]:
    """The sorted class counts to train heads for: None (2..16), one whole number, or several, each 2..255."""
    if n_classes is None:
        return list(range(2, MAX_CLASSES + 1))
    lo, hi = HEAD_CLASSES
    many = isinstance(n_classes, (list, tuple, set, range, np.ndarray)) and np.ndim(n_classes) <= 1
    ns = sorted({validate.integer("n_classes", n, lo, hi) for n in (n_classes if many else [n_classes])})
    if not ns:
        raise InputError(f"n_classes must name at least one class count in {lo}..{hi}")
    return ns


def parse_classes(text: str) -> list[int]:
    """``"4"``, ``"2-16"`` or ``"2,3,5"`` -> list of class counts.

    Parameters
    ----------
    text : str
        Counts and ranges, separated by commas.

    Returns
    -------
    list of int
        Sorted, distinct class counts, each in ``HEAD_CLASSES`` (2..255).

    Raises
    ------
    InputError
        When the text is not written so, or a count is outside 2..255.

    Examples
    --------
    >>> parse_classes("2-4,8")
    [2, 3, 4, 8]
    """
    lo, hi = HEAD_CLASSES
    try:
        return _heads(validate.class_counts(text, lo, hi))
    except InputError:
        raise InputError(
            f"--classes must be class counts in {lo}..{hi} written like 4, 2-16 or 2,3,5; got {text!r}"
        ) from None


def _lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    if warmup and step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


@torch.no_grad()
def _kmeans_targets(x: torch.Tensor, logits: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """k-means labels of each crop, renumbered to agree best with the current prediction.

    k-means (on the lightly smoothed crop, as the per-image mode starts from)
    gives ``n`` clusters in an arbitrary order; the Hungarian matching with the
    network's arg-max makes the cross-entropy permutation-invariant.  It runs on
    the CPU whatever the training device: many k-means of a few thousand points
    are bound by host round trips on a GPU (a step with them took 1.3 s on an
    H200, one without 0.1 s), while on a 2-core CPU the targets of two heads
    for 16 crops of 192² take 0.24 s.
    """
    xs = smooth(x.float().cpu())
    pred = logits.argmax(1).cpu()
    out = torch.empty(pred.shape, dtype=torch.long)
    for b in range(x.shape[0]):
        pts = xs[b].reshape(x.shape[1], -1).t()
        centres, _ = kmeans(pts, n, seed=seed + b, iterations=10, max_points=4096, restarts=1)
        lab = sq_dist(pts, centres).argmin(1)
        cont = torch.bincount(lab * n + pred[b].reshape(-1), minlength=n * n).reshape(n, n)
        rows, cols = linear_sum_assignment(-cont.cpu().numpy())
        perm = torch.empty(n, dtype=torch.long)
        perm[torch.as_tensor(rows)] = torch.as_tensor(cols)
        out[b] = perm[lab].reshape(pred.shape[1:])
    return out.to(logits.device)


# ----------------------------------------------------------------------------- training
#: crops of the labelled images on which a start's classes are matched to the labels (``match_classes``)
MATCH_CROPS = 16


@torch.no_grad()
def match_classes(
    net: LevelSetUNet, data: list, labs: list, heads: list[int], crop: int, batch_size: int, seed: int
) -> dict[int, list[int] | None]:
    """Reorder each head's classes so that a started network's prediction agrees best with the labels.

    A model trained without labels (the shipped U-Net) numbers its classes as its own training
    left them: its 2-class head may call the nuclei class 1 where the labels call them class 2.
    The level-set loss does not depend on the classes' order, but the labels' cross-entropy does:
    from a head whose order is the labels' reversed, the first steps spend the largest gradients
    (a cross-entropy of about 19 on the nuclei sets) on swapping the classes through the whole
    network.  The head's output channels are permuted instead (an exact reordering of its
    logits), by the Hungarian matching [3]_ of labels and arg-max prediction on ``MATCH_CROPS``
    crops of the labelled images (drawn with ``seed``, as a step's crops are).

    Parameters
    ----------
    net : LevelSetUNet
        The network; its heads are changed in place.
    data, labs : list
        The training images ``(C, H, W)`` and their targets (None: unlabelled; 0 unlabelled
        pixels, ``k`` class ``k - 1``), each at least ``crop`` on a side.
    heads : list of int
        The heads given the labels' cross-entropy.
    crop, batch_size : int
        The crops' side and how many are run at once.
    seed : int
        Seed of the crops.

    Returns
    -------
    dict
        Per head: the new order (new class ``k`` is the old class ``order[k]``), or None where the
        order was kept.
    """
    rng = np.random.default_rng([int(seed), 2**31 - 1])  # not a step's crops
    counts = {n: np.zeros((n, n), np.int64) for n in heads}
    was = net.training
    net.eval()
    for start in range(0, MATCH_CROPS, batch_size):
        x, y = _batch(data, labs, rng, crop, min(batch_size, MATCH_CROPS - start), 1.0)
        logits = net(x)
        lab = y.numpy().ravel()
        for n in heads:
            pred = logits[n].argmax(1).numpy().ravel()
            use = (lab > 0) & (lab <= n)
            counts[n] += np.bincount((lab[use] - 1) * n + pred[use], minlength=n * n).reshape(n, n)
    net.train(was)
    out: dict[int, list[int] | None] = {}
    for n in heads:
        rows, cols = linear_sum_assignment(-counts[n])
        order = [int(c) for _, c in sorted(zip(rows, cols))]
        if order == list(range(n)):
            out[n] = None
            continue
        conv = net.heads[str(n)]
        conv.weight.copy_(conv.weight[order].clone())
        if conv.bias is not None:
            conv.bias.copy_(conv.bias[order].clone())
        out[n] = order
    return out


def train(
    images,
    out_path: str | os.PathLike,
    n_classes: int | Sequence[int] | None = None,
    lam: float = DEFAULT_TRAIN["lam"],
    steps: int = DEFAULT_TRAIN["steps"],
    crop: int = DEFAULT_TRAIN["crop"],
    batch_size: int = DEFAULT_TRAIN["batch_size"],
    lr: float = DEFAULT_TRAIN["lr"],
    labels=None,
    alpha: float = DEFAULT_TRAIN["alpha"],
    device: str = "auto",
    checkpoint_every: int = DEFAULT_TRAIN["checkpoint_every"],
    resume: bool = True,
    progress: bool = True,
    seed: int = 0,
    *,
    warmup: int = DEFAULT_TRAIN["warmup"],
    kmeans_weight: float = DEFAULT_TRAIN["kmeans_weight"],
    kmeans_steps: float | None = DEFAULT_TRAIN["kmeans_steps"],
    kmeans_heads: int = DEFAULT_TRAIN["kmeans_heads"],
    base: int = DEFAULT_TRAIN["base"],
    levels: int = DEFAULT_TRAIN["levels"],
    embed: int = DEFAULT_TRAIN["embed"],
    init: str | os.PathLike | None = DEFAULT_TRAIN["init"],
    finetune: str = DEFAULT_TRAIN["finetune"],
    labelled_share: float = DEFAULT_TRAIN["labelled_share"],
    threads: int | None = None,
    color: str = "rgb",
    stop_after: int | None = None,
    metadata: dict | None = None,
    overwrite: bool = False,
    allow_large: bool = False,
    label_kind: str = "auto",
    boundary: str = "keep",
    callback=None,
    contrast: str = "linear",
) -> TrainResult:
    """Train a U-Net on ``images`` with the level-set loss and write it to ``out_path``.

    ``n_classes``: None for heads 2..16 (one model for any N; with ``init``, its heads), an int for one
    head, or a list.  ``lam``: TV weight of the loss (default 0.05, as the
    shipped model).  ``steps`` Adam steps of ``batch_size`` crops of ``crop`` pixels
    (rounded down to a multiple of ``2**levels`` and to the largest image; smaller images
    are padded to it by reflection, unlabelled there).
    ``labels``/``alpha``: optional label images and the weight of their
    cross-entropy; instance masks, foreground masks and class labels become class targets
    by the rule of :mod:`napari_levelset.training.labels` (for nuclei: 2 classes).
    ``color``: ``rgb`` (per-channel normalisation) or ``lab`` (CIELAB), stored in the model so
    that it is segmented the same way.
    ``kmeans_weight``/``kmeans_steps``/``kmeans_heads``: the
    warm start -- for the first ``kmeans_steps`` (a fraction of ``steps``, or a
    count when > 1) a cross-entropy to per-crop k-means labels (Hungarian-matched
    to the prediction), weight decaying linearly from ``kmeans_weight`` to 0, on
    ``kmeans_heads`` randomly chosen heads per step.  Without it the loss sits
    at its trivial minimum (one class everywhere), where the softmax saturates.
    ``init``: a model file (or ``"unet"``, the shipped model) to fine-tune: its
    architecture is kept, any of its heads trained, grey images repeated to its channels.
    The model file records how its images were prepared (``preparation``: colour,
    contrast, normalisation), which segmentation with it then uses, and no folders of the
    machine it was made on.  ``threads``: torch CPU threads.  ``stop_after``: end (with a
    checkpoint, no model file) after that many steps of this call -- for tests
    and for splitting a long run.

    Parameters
    ----------
    images : str or os.PathLike or sequence
        Training images (see :func:`load_training_images`).
    out_path : str or os.PathLike
        The model file to write (its folder must be writable).
    n_classes : int or sequence of int or None
        Class counts to train heads for, each 2..255 (None: 2..16, or the heads of ``init``).
    lam : float
        Weight of the loss's total-variation term.
    steps : int
        Adam steps in all.
    crop : int
        Side of the square training crops, pixels.
    batch_size : int
        Crops per step.
    lr : float
        Adam's peak learning rate (linear warm-up over ``warmup`` steps, then cosine decay
        to 5 % of it).
    labels : str or os.PathLike or sequence or None
        Optional label images: a folder matched to the images by name
        (``napari_levelset.training.data.match_label_files``) or a list like ``images``
        (entries may be None).
    alpha : float
        Weight of the labels' cross-entropy.
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``mps``.
    checkpoint_every : int
        Steps between checkpoints.
    resume : bool
        Continue from ``<out_path>.ckpt`` when it exists.
    progress : bool
        Show a progress bar (tqdm) and notes on stderr.
    seed : int
        Seed of the initialisation and of the crops.
    warmup : int
        Steps of linear learning-rate warm-up.
    kmeans_weight : float
        Initial weight of the k-means cross-entropy.
    kmeans_steps : float or None
        Length of the k-means warm start: a fraction of ``steps`` (<= 1) or a step count; None:
        0.3 from random weights, 0 from a model file.
    kmeans_heads : int
        Heads given the k-means cross-entropy per step.
    base : int
        U-Net channels at full resolution.
    levels : int
        U-Net down-samplings.
    embed : int
        Embedding channels fed to the heads.
    init : str or os.PathLike or None
        The start: ``"auto"`` (the shipped U-Net when the run asks for its architecture, heads
        among its own, its colour handling and channels, else random weights), ``"unet"`` or a
        model file (its architecture -- ``base``, ``levels``, ``embed`` are taken from it --,
        channels and colour handling; ``n_classes`` among its heads; grey images repeated to its
        channels), or None / ``"none"`` (random weights).  See ``napari_levelset.training.start``.
    finetune : {"all", "last", "head"}
        What the run trains: everything, the last full-resolution block with the heads, or the
        heads alone.
    labelled_share : float
        With label images: the share (0..1) of every batch's crops drawn from the labelled
        images (at least one crop when > 0), the rest from the unlabelled ones; 0: every crop
        from an image drawn uniformly.
    threads : int or None
        torch CPU threads (None: one per core that other programs leave free when training
        starts, ``resources.run_threads``).
    color : {"rgb", "lab"}
        Image preparation, stored in the model.
    stop_after : int or None
        Steps of this call after which it ends with a checkpoint.
    metadata : dict or None
        Extra metadata for the model file.
    overwrite : bool
        Replace ``out_path`` when it exists and is not a model file (a model file is replaced anyway).
    allow_large : bool
        Read image files that declare more pixels than their size can honestly hold (``io.read_image``).
    label_kind : {"auto", "instances", "binary", "classes"}
        What the label images are (``napari_levelset.training.labels``; ``auto`` decides per image).
    boundary : {"keep", "unlabelled", "background"}
        What becomes of the line where two instances touch.
    callback : callable or None
        ``callback(step, steps, loss)`` after every step (steps done, steps in all, that step's
        level-set loss); returning ``False`` ends the call with a checkpoint, as ``stop_after`` does.
    contrast : {"linear", "fluorescence"}
        How images are prepared after the normalisation: as they are, or with the instance path's
        fluorescence contrast (bright objects on a dark field); recorded in the model's
        ``preparation``, which segmentation with it then uses.

    Returns
    -------
    TrainResult
        The file written, the steps, the losses and the metadata.

    Raises
    ------
    InputError
        For bad settings or data (images too small for a crop, labels beyond every head,
        an ``init`` model of another architecture, a checkpoint made otherwise or not as a
        run writes it, an output folder that cannot be written, an output that is another kind of
        file, without ``overwrite``).
    OSError
        When the model file cannot be written (``ENOSPC``, naming it, when the disk is full).
    RuntimeError
        When the loss becomes NaN or infinite (lower the learning rate).
    KeyboardInterrupt
        Ctrl-C: raised again after a checkpoint is written.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "tiny.pt")
    >>> res = train([np.random.rand(64, 64)], out, n_classes=2, steps=2, crop=32, batch_size=2,
    ...             base=4, levels=1, embed=4, progress=False)
    >>> res.steps, len(res.losses), res.path.name
    (2, 2, 'tiny.pt')
    """
    heads = _heads(n_classes)
    steps, crop, batch_size, checkpoint_every, warmup, kmeans_heads, base, levels, embed = (
        validate.integer(name, value)
        for name, value in (
            ("steps", steps),
            ("crop", crop),
            ("batch_size", batch_size),
            ("checkpoint_every", checkpoint_every),
            ("warmup", warmup),
            ("kmeans_heads", kmeans_heads),
            ("base", base),
            ("levels", levels),
            ("embed", embed),
        )
    )
    lam, lr, alpha, kmeans_weight = (
        validate.number(name, value)
        for name, value in (("lam", lam), ("lr", lr), ("alpha", alpha), ("kmeans_weight", kmeans_weight))
    )
    labelled_share = validate.number("labelled_share", labelled_share, 0.0, 1.0)
    kmeans_steps = None if kmeans_steps is None else validate.number("kmeans_steps", kmeans_steps)
    seed = validate.seed(seed)
    threads = validate.optional_integer("threads", threads)
    stop_after = validate.optional_integer("stop_after", stop_after)
    if color not in ("rgb", "lab"):
        raise InputError(f"color must be 'rgb' or 'lab', got {color!r}")
    if contrast not in TRAIN_CONTRASTS or (contrast == "fluorescence" and color == "lab"):
        raise InputError(f"contrast must be one of {', '.join(TRAIN_CONTRASTS)} (fluorescence with color 'rgb')")
    out = Path(out_path)
    check_output(out, overwrite)
    dev = resolve_device(device)
    torch.set_num_threads(run_threads(threads))  # None: one per core other programs leave free now
    start = read_init(init, None if n_classes is None else heads, color, dict(base=base, levels=levels, embed=embed))
    if start is not None:  # the model's architecture (and heads, unless asked for)
        heads = heads if n_classes is not None else list(start.net.head_counts)
        base, levels, embed = (start.net.config[k] for k in ("base", "levels", "embed"))

    def read(channels):
        return read_training_set(
            images,
            labels,
            color,
            allow_large=allow_large,
            label_kind=label_kind,
            boundary=boundary,
            n_classes=max(heads),
            channels=channels,
            contrast=contrast,
        )

    try:
        ts = read(None if start is None else start.net.in_channels)
    except InputError:
        if not (isinstance(init, str) and init == "auto" and start is not None):
            raise
        start = None  # "auto": images the shipped model cannot take (e.g. 2 channels) start from random weights
        ts = read(None)
    if progress:
        for line in ts.report():
            print(line, file=sys.stderr)
    data, labs, desc = ts.data, ts.labels, ts.description
    crop_used = _crop_size(data, crop, levels, progress)
    data, labs, _ = pad_to_crop(data, labs, crop_used)
    labelled, ce_heads = _label_heads(labs, heads)
    config = dict(heads=heads, in_channels=int(data[0].shape[0]), base=base, levels=levels, embed=embed)
    if kmeans_steps is None:  # the warm start is for random weights
        kmeans_steps = 0.3 if start is None else 0.0
    settings = dict(
        lam=float(lam),
        steps=steps,
        crop=crop_used,
        batch_size=batch_size,
        lr=float(lr),
        alpha=float(alpha),
        seed=int(seed),
        warmup=int(warmup),
        labelled=labelled,
        kmeans_weight=float(kmeans_weight),
        kmeans_steps=float(kmeans_steps),
        kmeans_heads=int(kmeans_heads),
        init=None if start is None else start.name,
        contrast=contrast,
        finetune=str(finetune),
        labelled_share=float(labelled_share),
    )
    net = start_network(config, seed, start)
    matched = {}
    if start is not None and labelled:  # the start's class order is its own: matched to the labels'
        matched = {str(n): o for n, o in match_classes(net, data, labs, ce_heads, crop_used, batch_size, seed).items()}
        if progress and any(matched.values()):
            print(f"the start's classes reordered to the labels' (head: new order) {matched}", file=sys.stderr)
    net.to(dev).train()
    opt = torch.optim.Adam(trainable_parameters(net, finetune), lr=float(lr))
    ckpt = checkpoint_path(out)
    now = dict(settings, color=color, data=desc)
    step, losses = _start_step(ckpt, out, resume, net, opt, config, now, steps, progress)

    meta = dict(metadata or {})
    meta.update(train_config=config, training=settings, data=desc, package_version=__version__, color=color)
    meta.update(preparation=training_preparation(color, ts.repeated, contrast), labels=[str(d) for d in ts.decisions])
    meta.update(classes_matched=matched)
    recipe = _recipe(heads, ce_heads, checkpoint_every, settings)

    def edge_rule(trained: LevelSetUNet) -> dict:  # the labels' convention at the image's edge (training.edges)
        return edge_metadata(trained, ts, min(ce_heads), crop_used, dev, progress) if labelled else {}

    return _optimise(
        net, opt, data, labs, recipe, dev, step, losses, meta, ckpt, out, stop_after, progress, callback, edge_rule
    )


# ----------------------------------------------------------------------------- the parts of a run
@dataclass(frozen=True)
class _Recipe:
    """The checked numbers of a run's optimisation (``train``'s arguments; ``crop`` as used)."""

    heads: list
    ce_heads: list
    lam: float
    steps: int
    crop: int
    batch_size: int
    lr: float
    alpha: float
    seed: int
    warmup: int
    kmeans_weight: float
    kmeans_steps: float
    kmeans_heads: int
    checkpoint_every: int
    labelled_share: float = 0.0


def _recipe(heads: list, ce_heads: list, checkpoint_every: int, settings: dict) -> _Recipe:
    """The ``_Recipe`` of a run: its heads, checkpoint interval and the optimisation's ``settings``."""
    return _Recipe(
        heads=heads,
        ce_heads=ce_heads,
        checkpoint_every=int(checkpoint_every),
        **{
            k: settings[k]
            for k in (
                "lam",
                "steps",
                "crop",
                "batch_size",
                "lr",
                "alpha",
                "seed",
                "warmup",
                "kmeans_weight",
                "kmeans_steps",
                "kmeans_heads",
                "labelled_share",
            )
        },
    )


def _crop_size(data: list[np.ndarray], crop: int, levels: int, progress: bool) -> int:
    """The crop side used: ``crop`` cut to the largest image's shorter side and to whole ``2**levels`` blocks
    (smaller images are padded to it, ``pad_to_crop``)."""
    m = 2**levels
    largest = max(min(d.shape[1:]) for d in data)
    crop_used = min(crop, largest) // m * m
    if crop_used < max(m, 16):
        raise InputError(f"the images are too small to train on (largest image's shorter side {largest} pixels)")
    if progress:
        if crop_used != crop:
            print(f"crop reduced to {crop_used} pixels (largest image's shorter side {largest})", file=sys.stderr)
        small = sum(min(d.shape[1:]) < crop_used for d in data)
        if small:
            print(f"{small} image(s) smaller than the crop padded by reflection (unlabelled there)", file=sys.stderr)
    return crop_used


def _label_heads(labs: list, heads: list[int]) -> tuple[bool, list[int]]:
    """``(labelled, heads given the labels' cross-entropy)``: the heads with at least as many classes as the
    largest label."""
    labelled = any(lab is not None for lab in labs)
    max_label = max((int(lab.max()) for lab in labs if lab is not None), default=0)
    ce_heads = [n for n in heads if n >= max_label] if labelled else []
    if labelled and not ce_heads:  # read_training_set refuses such class labels first
        raise InputError(f"labels go up to class {max_label}, more than any head's class count {heads}")
    return labelled, ce_heads


def _start_step(
    ckpt: Path,
    out: Path,
    resume: bool,
    net: LevelSetUNet,
    opt: torch.optim.Optimizer,
    config: dict,
    now: dict,
    steps: int,
    progress: bool,
) -> tuple[int, list[float]]:
    """``(step, losses)`` a run starts from: the checkpoint's when resuming from one, else ``(0, [])``;
    ``InputError`` when the checkpoint path is not a file."""
    step, losses = 0, []
    if ckpt.exists() and not ckpt.is_file():
        raise InputError(f"checkpoint path {ckpt} is a directory or other non-file: move it away to train to {out}")
    if resume and ckpt.is_file():
        step, losses = resume_from(ckpt, net, opt, config, now, steps)
        if progress:
            print(f"resuming from {ckpt} at step {step}", file=sys.stderr)
    return step, losses


def _step_loss(
    net: LevelSetUNet,
    x_host: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    rng: np.random.Generator,
    step: int,
    r: _Recipe,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss to minimise, level-set loss)`` of one step: the heads' mean level-set loss, the labels'
    cross-entropy and the k-means warm start's decaying cross-entropy."""
    logits = net(x)
    ls = x.new_zeros(())
    loss = x.new_zeros(())
    for n in r.heads:
        ls = ls + levelset_loss(class_probs(logits[n]), x, float(r.lam))
        if n in r.ce_heads and r.alpha > 0:
            loss = loss + float(r.alpha) * scribble_loss(logits[n], y)
    ls = ls / len(r.heads)
    loss = ls + loss / len(r.heads)
    k_steps = r.kmeans_steps * r.steps if r.kmeans_steps <= 1 else r.kmeans_steps
    beta = float(r.kmeans_weight) * max(0.0, 1.0 - step / k_steps) if k_steps > 0 else 0.0
    if beta > 0 and r.kmeans_heads > 0:
        chosen = rng.choice(r.heads, size=min(int(r.kmeans_heads), len(r.heads)), replace=False)
        ce = x.new_zeros(())
        for n in chosen:
            target = _kmeans_targets(x_host, logits[int(n)], int(n), int(r.seed) * 1000003 + step)
            ce = ce + torch.nn.functional.cross_entropy(logits[int(n)], target)
        loss = loss + beta * ce / len(chosen)
    return loss, ls


def _optimise(
    net,
    opt,
    data,
    labs,
    r: _Recipe,
    dev,
    step: int,
    losses: list[float],
    meta: dict,
    ckpt: Path,
    out: Path,
    stop_after: int | None,
    progress: bool,
    callback=None,
    before_save=None,
) -> TrainResult:
    """The steps from ``step`` to ``r.steps`` (checkpoints on the way and on Ctrl-C), then the model file;
    ``callback(step, steps, loss)`` returning False ends it with a checkpoint, as ``stop_after`` does;
    ``before_save(net)`` gives metadata measured on the trained network, added before the file is written."""

    def save_checkpoint() -> None:
        save_model_file(ckpt, net, meta, optimizer=opt.state_dict(), step=step, losses=list(losses))

    bar = tqdm(total=r.steps, initial=step, unit="step", desc="train", dynamic_ncols=True) if progress else None
    t0 = time.perf_counter()
    done_here = 0
    try:
        while step < r.steps:
            if stop_after is not None and done_here >= stop_after:
                save_checkpoint()
                return TrainResult(ckpt, step, losses, time.perf_counter() - t0, meta)
            rng = np.random.default_rng([int(r.seed), step])
            x_host, y = _batch(data, labs, rng, r.crop, r.batch_size, r.labelled_share)
            x, y = x_host.to(dev), y.to(dev)
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, r.steps, float(r.lr), int(r.warmup))
            opt.zero_grad(set_to_none=True)
            loss, ls = _step_loss(net, x_host, x, y, rng, step, r)
            if not torch.isfinite(loss):
                raise RuntimeError(f"the loss became {float(loss)} at step {step}: lower the learning rate")
            loss.backward()
            opt.step()
            step += 1
            done_here += 1
            losses.append(float(ls.detach()))  # the level-set loss alone
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
            if callback is not None and callback(step, r.steps, losses[-1]) is False and step < r.steps:
                save_checkpoint()
                return TrainResult(ckpt, step, losses, time.perf_counter() - t0, meta)
            if step % int(r.checkpoint_every) == 0 and step < r.steps:
                save_checkpoint()
    except KeyboardInterrupt:
        save_checkpoint()
        raise
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    meta.update(
        trained_steps=step,
        final_loss=float(np.mean(losses[-50:])) if losses else None,
        train_seconds_last_call=round(seconds, 1),
    )
    net.eval()
    if before_save is not None:
        meta.update(before_save(net))
    save_model_file(out, net, meta)
    if ckpt.exists():
        ckpt.unlink()
    return TrainResult(out, step, losses, seconds, meta)
