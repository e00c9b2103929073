"""Training data: images read from a folder (or given as arrays) with their optional labels, and the
random crops a training step takes from them (``read_training_set``, ``load_training_images``; see
:mod:`napari_levelset.training.labels` for what a label image may be and
:func:`napari_levelset.training.train.train` for the training itself).

Labels in a folder are matched to the images by file name (``match_label_files``), in this order:

1. the same stem (``t01.tif`` for ``t01.png``);
2. the stem and one of ``LABEL_SUFFIXES``, compared without regard to case: ``t01_masks.tif``,
   ``t01_mask``, ``t01_labels``, ``t01_label``, ``t01_seg``, ``t01_gt``, ``t01_cp_masks``,
   ``t01-labels``, and the names napari gives the layers it saves (``t01 level-set.tif``,
   ``t01 instances.tif``, ``t01 regions.tif``, ``t01 labels.tif``);
3. the Cell Tracking Challenge's ``man_segNN`` for ``tNN`` (``man_seg001.tif`` for ``t001.tif``).

Two label files for one image are refused (naming both); a label file that matches no image is
reported; an image without a label file is trained on unlabelled.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from napari_levelset.errors import InputError
from napari_levelset.io.prepare import prepare_image
from napari_levelset.io.read import PLAIN_EXT, TIFF_EXT, read_image
from napari_levelset.nn.model_files import STRUCTURES
from napari_levelset.post.instances import fluorescence_prepared
from napari_levelset.training.labels import LabelDecision, label_targets

__all__ = [
    "IMAGE_EXT",
    "LABEL_SUFFIXES",
    "TRAIN_CONTRASTS",
    "TrainingSet",
    "load_training_images",
    "match_label_files",
    "pad_to_crop",
    "read_training_set",
]

IMAGE_EXT = PLAIN_EXT | TIFF_EXT
#: how training may prepare its images after the normalisation (``read_training_set``'s ``contrast``)
TRAIN_CONTRASTS = ("linear", "fluorescence")
#: what may follow an image's stem in its label file's name (compared without regard to case)
LABEL_SUFFIXES = (
    "_cp_masks",
    "_masks",
    "_mask",
    "_labels",
    "_label",
    "_seg",
    "_gt",
    "-labels",
    "-mask",
    " level-set",
    " instances",
    " regions",
    " labels",
)
_CTC = re.compile(r"^man_seg(\d+)$")


# ----------------------------------------------------------------------------- data
def _list_images(folder: Path) -> list[Path]:
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXT and not p.name.startswith(".")
    )
    if not files:
        raise InputError(f"no images (png, jpg, tif, ...) in {folder}")
    return files


def _split(arr: np.ndarray, name: str, color: str = "rgb", contrast: str = "linear") -> np.ndarray:
    """Normalised ``(B, C, H, W)`` float16 of one image or stack (RGBA loses alpha, as when segmenting), with
    the fluorescence contrast of the instance path where asked (``post.instances.fluorescence_prepared``)."""
    try:
        prep = prepare_image(arr, spatial_dims=2, color=color, structures=STRUCTURES)
        if contrast == "fluorescence":
            prep = fluorescence_prepared(prep)[0]
    except InputError as exc:
        raise InputError(f"{name}: {exc}") from None
    data = prep.data[:, :3] if prep.rgb else prep.data
    return data.astype(np.float16)


def _image_for(stem: str, names: set[str]) -> tuple[str | None, str]:
    """The image name a label file's stem belongs to under the matching rule, and how (None: none)."""
    if stem in names:
        return stem, "same name"
    low = stem.lower()
    for suffix in LABEL_SUFFIXES:
        if low.endswith(suffix) and stem[: -len(suffix)] in names:
            return stem[: -len(suffix)], f"name + {suffix.strip()!r}"
    m = _CTC.match(stem)
    if m and f"t{m.group(1)}" in names:
        return f"t{m.group(1)}", "Cell Tracking Challenge man_seg"
    return None, ""


def match_label_files(names: list[str], files: list[Path]) -> tuple[dict[str, Path], list[str], list[Path]]:
    """Match label files to images by name (the rule in this module's docstring).

    Parameters
    ----------
    names : list of str
        The images' stems.
    files : list of pathlib.Path
        The label files.

    Returns
    -------
    matched : dict
        Image stem -> its label file.
    how : list of str
        One line per match: ``"<label file> -> <image> (<rule>)"``.
    unmatched : list of pathlib.Path
        The label files that match no image.

    Raises
    ------
    InputError
        When two label files match one image.

    Examples
    --------
    >>> from pathlib import Path
    >>> m, how, left = match_label_files(["t01", "t02"], [Path("t01 level-set.tif"), Path("man_seg02.tif")])
    >>> sorted((k, v.name) for k, v in m.items()), left
    ([('t01', 't01 level-set.tif'), ('t02', 'man_seg02.tif')], [])
    """
    known = set(names)
    matched: dict[str, Path] = {}
    how: list[str] = []
    unmatched: list[Path] = []
    for f in sorted(files):
        image, rule = _image_for(f.stem, known)
        if image is None:
            unmatched.append(f)
            continue
        if image in matched:
            raise InputError(
                f"two label files match image {image}: {matched[image].name} and {f.name}; keep one of them "
                "in the labels folder"
            )
        matched[image] = f
        how.append(f"{f.name} -> {image} ({rule})")
    return matched, how, unmatched


@dataclass
class TrainingSet:
    """Training images with their class targets, and what was decided about them.

    Parameters
    ----------
    data : list of numpy.ndarray
        The 2D images ``(C, H, W)`` float16, one per slice of a stack.
    labels : list of numpy.ndarray or None
        Per image, ``(H, W)`` int16 class targets (0 unlabelled, ``k`` class ``k``) or None.
    description : str
        A short description of the data, without folders (e.g. ``"imgs (3 files)"``).
    decisions : list of LabelDecision
        The label rule's decision for each label image.
    matches : list of str
        How label files were matched to images (label folders only).
    unmatched : list of str
        Label files that match no image.
    repeated : bool
        Whether grey images were repeated to more channels.
    names : list of str
        Per image (slice of a stack), the name of the file or array it came from.
    kinds : list of str or None
        Per image, the kind of its label image (``instances``, ``binary``, ``classes``) or None.
    """

    data: list
    labels: list
    description: str
    decisions: list[LabelDecision] = field(default_factory=list)
    matches: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    repeated: bool = False
    names: list = field(default_factory=list)
    kinds: list = field(default_factory=list)

    def report(self) -> list[str]:
        """Lines for people: the matches, the decisions, the unmatched label files.

        Returns
        -------
        list of str
            One line each, starting ``"labels: "``.
        """
        out = [f"labels: {m}" for m in self.matches]
        out += [f"labels: {d}" for d in self.decisions]
        out += [f"labels: {u} matches no image (ignored)" for u in self.unmatched]
        return out


def read_training_set(
    images,
    labels=None,
    color: str = "rgb",
    *,
    allow_large: bool = False,
    label_kind: str = "auto",
    boundary: str = "keep",
    n_classes: int | None = None,
    channels: int | None = None,
    contrast: str = "linear",
) -> TrainingSet:
    """Read and normalise training images and turn their labels into class targets.

    Parameters
    ----------
    images : str or os.PathLike or sequence
        A folder of images, one image or stack file (a 3D file is a stack of 2D images),
        or a list of arrays (or paths).
    labels : str or os.PathLike or sequence or None
        A folder of label images matched to the images by name (``match_label_files``), or a
        list like ``images`` (entries may be None).  Each is an instance mask, a foreground
        mask or class labels (:mod:`napari_levelset.training.labels`).
    color : str
        ``rgb`` or ``lab``, as for segmentation (``prepare_image``).
    allow_large : bool
        Read files that declare more pixels than their size can honestly hold (``io.read_image``).
    label_kind : {"auto", "instances", "binary", "classes"}
        What the label images are (``auto``: decided per image, ``labels.decide_label_kind``).
    boundary : {"keep", "unlabelled", "background"}
        The line where two instances touch (``labels.label_targets``).
    n_classes : int or None
        The largest head's class count: class labels beyond it are refused.
    channels : int or None
        Repeat grey images to this many channels (a model's input channels); None: to the
        colour images' count in a mixed set.
    contrast : {"linear", "fluorescence"}
        ``linear``: the normalisation alone; ``fluorescence``: then the instance path's
        fluorescence contrast (background removed, log-compressed in noise units,
        ``post.instances.fluorescence_prepared``), for bright objects on a dark field.

    Returns
    -------
    TrainingSet
        The images, their targets and the decisions.

    Raises
    ------
    InputError
        When no images are given or found, an image cannot be read or prepared, the images
        have incompatible channel counts (or colour images meet a grey ``channels``), or the
        labels do not fit (see ``labels.label_targets``; none matching an image).
    """
    names: list[str] = []
    arrays: list[np.ndarray] = []
    if isinstance(images, (str, os.PathLike)):
        p = Path(images)
        if not p.exists():
            raise InputError(f"no such file or folder: {p}")
        files = _list_images(p) if p.is_dir() else [p]
        desc = f"{p.name} ({len(files)} file{'s' if len(files) != 1 else ''})"
        for f in files:
            names.append(f.stem)
            arrays.append(read_image(f, allow_large=allow_large))
    else:
        items = list(images)
        if not items:
            raise InputError("no training images were given")
        for i, item in enumerate(items):
            if isinstance(item, (str, os.PathLike)):
                names.append(Path(item).stem)
                arrays.append(read_image(item, allow_large=allow_large))
            else:
                names.append(f"image {i}")
                arrays.append(np.asarray(item))
        desc = f"{len(items)} arrays"
    data: list[np.ndarray] = []
    owner: list[int] = []
    for i, (name, arr) in enumerate(zip(names, arrays)):
        d = _split(arr, name, color, contrast)
        data.extend(d)
        owner.extend([i] * len(d))
    data, repeated = _same_channels(data, channels)
    out = TrainingSet(
        data, [None] * len(data), desc, repeated=repeated, names=[names[o] for o in owner], kinds=[None] * len(data)
    )
    if labels is not None:
        per_image = _read_labels(labels, names, out, allow_large)
        for i, lab in enumerate(per_image):
            if lab is None:
                continue
            ks = [k for k, o in enumerate(owner) if o == i]
            shape = (len(ks),) + data[ks[0]].shape[1:]
            lab = np.asarray(lab)
            if lab.ndim == 2 and len(ks) == 1:
                lab = lab[None]
            targets, decision = label_targets(lab, n_classes, label_kind, boundary=boundary, shape=shape, name=names[i])
            out.decisions.append(decision)
            for j, k in enumerate(ks):
                out.labels[k], out.kinds[k] = targets[j], decision.kind
        if all(lab is None for lab in out.labels):
            raise InputError(
                "no label image matches any training image (see the matching rule: same name, name_masks, "
                "'name level-set', man_segNN for tNN)"
            )
    return out


def _same_channels(data: list[np.ndarray], channels: int | None) -> tuple[list[np.ndarray], bool]:
    """Grey images repeated to the colour images' channel count (or to ``channels``)."""
    chans = {d.shape[0] for d in data}
    cmax = max(chans) if channels is None else int(channels)
    if chans <= {1, cmax}:
        repeated = 1 in chans and cmax > 1
        return ([np.repeat(d, cmax, 0) if d.shape[0] == 1 else d for d in data], repeated)
    if channels is None:
        raise InputError(f"the images have different channel counts {sorted(chans)}: use images of one kind")
    raise InputError(
        f"the model takes {channels}-channel images; these have {sorted(chans)} channels "
        "(grey images are repeated to a colour model's channels, colour cannot go into a grey model)"
    )


def load_training_images(
    images, labels=None, color: str = "rgb", *, allow_large: bool = False, label_kind: str = "auto"
) -> tuple[list[np.ndarray], list[np.ndarray | None], str]:
    """Read and normalise training images (and optional labels): ``read_training_set``'s parts.

    Parameters
    ----------
    images : str or os.PathLike or sequence
        A folder of images, one image or stack file (a 3D file is a stack of 2D images),
        or a list of arrays (or paths).
    labels : str or os.PathLike or sequence or None
        A folder of label images matched by name, or a list like ``images`` (entries may be
        None): instance masks, foreground masks or class labels
        (:mod:`napari_levelset.training.labels`).
    color : str
        ``rgb`` or ``lab``, as for segmentation (``prepare_image``).
    allow_large : bool
        Read files that declare more pixels than their size can honestly hold (``io.read_image``).
    label_kind : {"auto", "instances", "binary", "classes"}
        What the label images are.

    Returns
    -------
    images : list of numpy.ndarray
        The 2D images ``(C, H, W)`` float16, one per slice of a stack (grey ones repeated
        to the colour images' channel count).
    labels : list of numpy.ndarray or None
        Per image, ``(H, W)`` int16 class targets (0 unlabelled, ``k`` class ``k``) or None.
    description : str
        A short description of the data (e.g. ``"2 arrays"``).

    Raises
    ------
    InputError
        As ``read_training_set``.

    Examples
    --------
    >>> import numpy as np
    >>> data, labs, desc = load_training_images([np.random.rand(3, 32, 40)])
    >>> len(data), data[0].shape, data[0].dtype, labs, desc
    (3, (1, 32, 40), dtype('float16'), [None, None, None], '1 arrays')
    """
    s = read_training_set(images, labels, color, allow_large=allow_large, label_kind=label_kind)
    return s.data, s.labels, s.description


def _read_labels(labels, names: list[str], out: TrainingSet, allow_large: bool) -> list:
    if isinstance(labels, (str, os.PathLike)):
        folder = Path(labels)
        if not folder.is_dir():
            raise InputError(f"labels must be a folder of label images, got {folder}")
        files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXT]
        matched, out.matches, unmatched = match_label_files(names, files)
        out.unmatched = [p.name for p in unmatched]
        return [
            np.asarray(read_image(matched[n], labels=True, allow_large=allow_large)) if n in matched else None
            for n in names
        ]
    got = [None if lab is None else np.asarray(lab) for lab in labels]
    if len(got) != len(names):
        raise InputError(f"got {len(got)} label images for {len(names)} images")
    return got


def pad_to_crop(data: list, labels: list, crop: int) -> tuple[list, list, int]:
    """Images smaller than ``crop`` padded to it by reflection; their targets padded unlabelled.

    Parameters
    ----------
    data : list of numpy.ndarray
        ``(C, H, W)`` images.
    labels : list of numpy.ndarray or None
        Their ``(H, W)`` class targets or None.
    crop : int
        The crop side, pixels.

    Returns
    -------
    data, labels : list
        Every image at least ``crop`` on each side (the padding mirrors the image, ``numpy.pad``
        ``symmetric``; targets there are 0, unlabelled).
    padded : int
        How many images were padded.
    """
    out_d, out_l, padded = [], [], 0
    for d, lab in zip(data, labels):
        h, w = d.shape[1:]
        ph, pw = max(0, crop - h), max(0, crop - w)
        if ph or pw:
            padded += 1
            d = np.pad(d, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)), mode="symmetric")
            if lab is not None:
                lab = np.pad(lab, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))
        out_d.append(d)
        out_l.append(lab)
    return out_d, out_l, padded


def _batch(data, labs, rng: np.random.Generator, crop: int, batch_size: int, labelled_share: float = 0.0):
    """``(x, y)`` of one step: ``batch_size`` random crops (flipped, transposed at random) and their labels.

    Without labels, or with ``labelled_share`` 0, each crop comes from an image drawn uniformly.  Otherwise
    ``round(labelled_share * batch_size)`` crops (at least 1) come from the labelled images and the rest
    from the unlabelled ones (from the labelled ones too when every image is labelled), so a few
    labelled images among many weigh as much in every step as the share says.
    """
    labelled = [i for i, lab in enumerate(labs) if lab is not None]
    others = [i for i, lab in enumerate(labs) if lab is None] or labelled
    n_lab = max(1, round(labelled_share * batch_size)) if labelled and labelled_share > 0 else 0
    xs, ys = [], []
    for b in range(batch_size):
        if n_lab:
            pool = labelled if b < n_lab else others
            i = pool[int(rng.integers(len(pool)))]
        else:
            i = int(rng.integers(len(data)))
        img, lab = data[i], labs[i]
        h, w = img.shape[1:]
        y0, x0 = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
        flip_v, flip_h, transpose = rng.random(3) < 0.5
        xc = img[:, y0 : y0 + crop, x0 : x0 + crop]
        lc = lab[y0 : y0 + crop, x0 : x0 + crop] if lab is not None else np.zeros((crop, crop), np.int16)
        if flip_v:
            xc, lc = xc[:, ::-1], lc[::-1]
        if flip_h:
            xc, lc = xc[:, :, ::-1], lc[:, ::-1]
        if transpose:
            xc, lc = xc.transpose(0, 2, 1), lc.T
        xs.append(xc)
        ys.append(lc)
    x = torch.from_numpy(np.ascontiguousarray(np.stack(xs), dtype=np.float32))
    y = torch.from_numpy(np.ascontiguousarray(np.stack(ys)).astype(np.int64))
    return x, y
