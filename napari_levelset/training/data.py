"""Training data: images read from a folder (or given as arrays) with their optional labels, and the
random crops a training step takes from them (``load_training_images``; see
:func:`napari_levelset.training.train.train` for the label format and the training itself).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from napari_levelset.errors import InputError
from napari_levelset.io.prepare import prepare_image
from napari_levelset.io.read import PLAIN_EXT, TIFF_EXT, read_image
from napari_levelset.nn.model_files import STRUCTURES

__all__ = ["IMAGE_EXT", "load_training_images"]

IMAGE_EXT = PLAIN_EXT | TIFF_EXT


# ----------------------------------------------------------------------------- data
def _list_images(folder: Path) -> list[Path]:
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXT and not p.name.startswith(".")
    )
    if not files:
        raise InputError(f"no images (png, jpg, tif, ...) in {folder}")
    return files


def _split(arr: np.ndarray, name: str, color: str = "rgb") -> np.ndarray:
    """Normalised ``(B, C, H, W)`` float16 of one image or stack (RGBA loses alpha, as when segmenting)."""
    try:
        prep = prepare_image(arr, spatial_dims=2, color=color, structures=STRUCTURES)
    except InputError as exc:
        raise InputError(f"{name}: {exc}") from None
    data = prep.data[:, :3] if prep.rgb else prep.data
    return data.astype(np.float16)


def load_training_images(
    images, labels=None, color: str = "rgb", *, allow_large: bool = False
) -> tuple[list[np.ndarray], list[np.ndarray | None], str]:
    """Read and normalise training images (and optional labels).

    ``images``: a folder of images, one image or stack file, or a list of arrays
    (or paths).  ``labels``: a folder with label images named like the images
    (same stem), or a list like ``images`` (entries may be None).

    Parameters
    ----------
    images : str or os.PathLike or sequence
        A folder of images, one image or stack file (a 3D file is a stack of 2D images),
        or a list of arrays (or paths).
    labels : str or os.PathLike or sequence or None
        A folder of label images named like the images, or a list like ``images``
        (entries may be None): integers, 0 unlabelled, ``k`` class ``k - 1``.
    color : str
        ``rgb`` or ``lab``, as for segmentation (``prepare_image``).
    allow_large : bool
        Read files that declare more pixels than their size can honestly hold (``io.read_image``).

    Returns
    -------
    images : list of numpy.ndarray
        The 2D images ``(C, H, W)`` float16, one per slice of a stack (grey ones repeated
        to the colour images' channel count).
    labels : list of numpy.ndarray or None
        Per image, ``(H, W)`` int16 labels or None.
    description : str
        A short description of the data (e.g. ``"2 arrays"``).

    Raises
    ------
    InputError
        When no images are given or found, an image cannot be read or prepared, the images
        have incompatible channel counts, or the labels do not fit (shape, dtype, negative
        values, none matching).

    Examples
    --------
    >>> import numpy as np
    >>> data, labs, desc = load_training_images([np.random.rand(3, 32, 40)])
    >>> len(data), data[0].shape, data[0].dtype, labs, desc
    (3, (1, 32, 40), dtype('float16'), [None, None, None], '1 arrays')
    """
    names: list[str] = []
    arrays: list[np.ndarray] = []
    if isinstance(images, (str, os.PathLike)):
        p = Path(images)
        if not p.exists():
            raise InputError(f"no such file or folder: {p}")
        files = _list_images(p) if p.is_dir() else [p]
        desc = f"{p} ({len(files)} file{'s' if len(files) != 1 else ''})"
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
        d = _split(arr, name, color)
        data.extend(d)
        owner.extend([i] * len(d))
    chans = {d.shape[0] for d in data}
    if len(chans) > 1:
        cmax = max(chans)
        if chans != {1, cmax}:
            raise InputError(f"the images have different channel counts {sorted(chans)}: use images of one kind")
        data = [np.repeat(d, cmax, 0) if d.shape[0] == 1 else d for d in data]
    labs: list[np.ndarray | None] = [None] * len(data)
    if labels is not None:
        per_image = _read_labels(labels, names, arrays)
        for k, i in enumerate(owner):
            lab = per_image[i]
            if lab is None:
                continue
            j = k - owner.index(i)  # slice within the image's stack
            sl = lab.reshape((-1,) + lab.shape[-2:])
            if sl.shape[0] != sum(1 for o in owner if o == i) or sl.shape[1:] != data[k].shape[1:]:
                raise InputError(f"labels of {names[i]} have shape {lab.shape}, which does not match the image")
            labs[k] = sl[j].astype(np.int16)
        if all(lab is None for lab in labs):
            raise InputError("no label image matches any training image (labels are matched by file name)")
    return data, labs, desc


def _read_labels(labels, names: list[str], arrays: list[np.ndarray]) -> list[np.ndarray | None]:
    if isinstance(labels, (str, os.PathLike)):
        folder = Path(labels)
        if not folder.is_dir():
            raise InputError(f"labels must be a folder of label images, got {folder}")
        by_stem = {p.stem: p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXT}
        out = [np.asarray(read_image(by_stem[n], labels=True)) if n in by_stem else None for n in names]
    else:
        out = [None if lab is None else np.asarray(lab) for lab in labels]
        if len(out) != len(names):
            raise InputError(f"got {len(out)} label images for {len(names)} images")
    for name, lab in zip(names, out):
        if lab is None:
            continue
        if not (np.issubdtype(lab.dtype, np.integer) or lab.dtype == bool):
            raise InputError(f"labels of {name} must be integers (0 = unlabelled), got {lab.dtype}")
        if lab.min() < 0:
            raise InputError(f"labels of {name} must be >= 0 (0 = unlabelled)")
    return out


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
