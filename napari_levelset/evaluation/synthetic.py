"""Synthetic piecewise-constant images with known truth, and matched IoU.

Used by the tests and benchmarks to measure quality where the answer is known.
"""

from __future__ import annotations

import numpy as np

__all__ = ["matched_iou", "nuclei", "nuclei_volume", "phantom"]


def phantom(
    shape: tuple[int, ...],
    n_phases: int,
    channels: int | None = None,
    noise: float = 0.08,
    seed: int = 0,
    min_fraction: float = 0.06,
) -> tuple[np.ndarray, np.ndarray]:
    """A noisy piecewise-constant image and its truth (values ``0..n_phases-1``).

    Regions are the Voronoi cells of ``n_phases`` random centres (redrawn until
    every region covers at least ``min_fraction`` of the image).  Grey images
    take evenly spaced levels in [0.2, 0.8]; with ``channels`` the colours are
    random but at least 0.4 apart.  Gaussian noise of std ``noise`` is added.

    Parameters
    ----------
    shape : tuple of int
        Spatial shape, ``(H, W)`` or ``(D, H, W)`` (pixels).
    n_phases : int
        Number of regions (classes).
    channels : int or None
        Colour channels (None or 0: a grey image).
    noise : float
        Standard deviation of the Gaussian noise, in image values (the levels lie in [0, 1]).
    seed : int
        Seed of ``numpy.random.default_rng``.
    min_fraction : float
        Least area of every region, as a fraction of the image.

    Returns
    -------
    image : numpy.ndarray
        float32, ``shape`` or ``shape + (channels,)``.
    truth : numpy.ndarray
        int (``intp``), ``shape``, values ``0..n_phases-1``.

    Raises
    ------
    ValueError
        When no draw of 1000 gives every region ``min_fraction`` of the image.

    Examples
    --------
    >>> image, truth = phantom((32, 32), 3)
    >>> image.shape, image.dtype, sorted(set(truth.ravel().tolist()))
    ((32, 32), dtype('float32'), [0, 1, 2])
    """
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    for _ in range(1000):
        centres = [rng.uniform(0, s, n_phases) for s in shape]
        d = np.stack([sum((g - c[i]) ** 2 for g, c in zip(grids, centres)) for i in range(n_phases)])
        truth = d.argmin(0)
        if np.bincount(truth.ravel(), minlength=n_phases).min() >= min_fraction * truth.size:
            break
    else:  # pragma: no cover - practically unreachable for sane settings
        raise ValueError("could not draw balanced regions; lower min_fraction")
    if channels:
        for _ in range(1000):
            colours = rng.uniform(0, 1, (n_phases, channels))
            dist = np.linalg.norm(colours[:, None] - colours[None], axis=-1)
            if dist[np.triu_indices(n_phases, 1)].min() >= 0.4:
                break
        image = colours[truth] + rng.normal(0, noise, shape + (channels,))
    else:
        levels = np.linspace(0.2, 0.8, n_phases)
        image = levels[truth] + rng.normal(0, noise, shape)
    return image.astype(np.float32), truth


def matched_iou(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """IoU of each truth region with its best-matching predicted label.

    The matching is one-to-one and maximises the total IoU (Hungarian method);
    a truth region left without a partner scores 0.

    Parameters
    ----------
    pred : numpy.ndarray
        Integer labels, any shape.
    truth : numpy.ndarray
        Integer labels, the same shape (every value, 0 included, is a region).

    Returns
    -------
    numpy.ndarray
        float64 ``(K,)``, one value in [0, 1] per truth region, in the order of
        ``np.unique(truth)``.

    Raises
    ------
    ValueError
        When the shapes differ.

    Notes
    -----
    The matching is ``scipy.optimize.linear_sum_assignment`` on the IoU matrix.

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.array([[0, 0, 1, 1]])
    >>> matched_iou(np.array([[5, 5, 5, 7]]), truth).tolist()
    [0.6666666666666666, 0.5]
    """
    from scipy.optimize import linear_sum_assignment

    pred = np.asarray(pred).ravel()
    truth = np.asarray(truth).ravel()
    if pred.shape != truth.shape:
        raise ValueError(f"shapes differ: {pred.shape} vs {truth.shape}")
    t_ids, t_inv = np.unique(truth, return_inverse=True)
    p_ids, p_inv = np.unique(pred, return_inverse=True)
    inter = np.zeros((len(t_ids), len(p_ids)), dtype=np.int64)
    np.add.at(inter, (t_inv, p_inv), 1)
    t_area = inter.sum(1, keepdims=True)
    p_area = inter.sum(0, keepdims=True)
    iou = inter / (t_area + p_area - inter)
    rows, cols = linear_sum_assignment(-iou)
    out = np.zeros(len(t_ids))
    out[rows] = iou[rows, cols]
    return out


def nuclei(
    shape: tuple[int, ...] = (256, 256),
    n_objects: int = 30,
    diameter: float = 24.0,
    spacing: tuple[float, ...] | None = None,
    seed: int = 0,
    touching: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic fluorescence image of nuclei and its instance truth (2D or 3D).

    Ellipsoidal nuclei of about ``diameter`` (in the unit of ``spacing``; pixels
    without it) and brightness varying by up to 8x, some pairs touching (a fraction
    ``touching`` of the nuclei is placed against a neighbour), on a dim background
    with a slow illumination gradient and a smooth haze, blurred like a widefield
    image, with Poisson (shot) and Gaussian (camera) noise, written as 16-bit with
    a narrow range (an offset of 100 counts), as cameras do.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)`` or ``(D, H, W)``, pixels.
    n_objects : int
        Nuclei to place; one that finds no free place in 200 tries is left out.
    diameter : float
        Mean nucleus diameter (radii vary by ±20 %), in the unit of ``spacing``.
    spacing : tuple of float or None
        Physical pixel size per axis (None: 1, so ``diameter`` is in pixels).
    seed : int
        Seed of ``numpy.random.default_rng``.
    touching : float
        Fraction (0..1) of the nuclei placed against an earlier neighbour.

    Returns
    -------
    image : numpy.ndarray
        uint16, ``shape``.
    truth : numpy.ndarray
        uint16, ``shape``: 0 background, 1..K one id per nucleus; an overlap goes to the
        later nucleus.

    Notes
    -----
    The blur and the haze are ``scipy.ndimage.gaussian_filter`` (sigma ``0.05 * diameter``,
    at least 1 pixel, and ``3 * diameter``).

    Examples
    --------
    >>> image, truth = nuclei((64, 64), n_objects=3, diameter=12.0)
    >>> image.dtype, truth.shape, int(truth.max()) <= 3
    (dtype('uint16'), (64, 64), True)
    """
    rng = np.random.default_rng(seed)
    return _draw_nuclei(
        rng, shape, n_objects, lambda: 0.5 * diameter * rng.uniform(0.8, 1.2), diameter, spacing, touching
    )


def _draw_nuclei(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    n_objects: int,
    radius,
    diameter: float,
    spacing: tuple[float, ...] | None,
    touching: float,
    axial_blur: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The nuclei of :func:`nuclei` and :func:`nuclei_volume`: ``radius()`` draws each one's radius.

    ``axial_blur`` None: the blur is ``max(1, 0.05 * diameter / spacing)`` pixels on every
    axis; else it is ``max(min(spacing), 0.05 * diameter)`` in the unit of ``spacing``
    across the first axis and that times ``axial_blur`` along it (a widefield point spread
    function is longer along the optical axis), in pixels at least 0.5.
    """
    from scipy import ndimage

    shape = tuple(int(s) for s in shape)
    nd = len(shape)
    sp = np.ones(nd) if spacing is None else np.asarray(spacing, float)
    grids = np.meshgrid(*[np.arange(s, dtype=np.float32) * v for s, v in zip(shape, sp)], indexing="ij")
    extent = np.asarray(shape) * sp
    truth = np.zeros(shape, np.uint16)
    signal = np.zeros(shape, np.float32)
    centres: list[np.ndarray] = []
    radii: list[float] = []
    for k in range(1, n_objects + 1):
        r = radius()
        for _ in range(200):
            if centres and rng.random() < touching:  # against an earlier nucleus
                j = rng.integers(len(centres))
                direction = rng.normal(size=nd)
                direction /= np.linalg.norm(direction)
                c = centres[j] + direction * (radii[j] + r) * 0.95
            else:
                c = rng.uniform(r, extent - r)
            if (
                np.all(c > r)
                and np.all(c < extent - r)
                and all(np.linalg.norm(c - o) > 0.9 * (r + ro) for o, ro in zip(centres, radii))
            ):
                break
        else:
            continue
        axes = r * rng.uniform(0.85, 1.15, nd)
        rot = np.linalg.qr(rng.normal(size=(nd, nd)))[0]
        d = np.stack([g - ci for g, ci in zip(grids, c)])
        q = np.tensordot(rot.T, d, axes=1)
        inside = sum((qi / ai) ** 2 for qi, ai in zip(q, axes)) <= 1.0
        truth[inside] = k
        brightness = rng.uniform(0.125, 1.0)
        texture = 1.0 + 0.15 * rng.normal(size=shape).astype(np.float32)
        signal[inside] = brightness * texture[inside]
        centres.append(c)
        radii.append(r)
    _, truth = np.unique(truth, return_inverse=True)
    truth = truth.reshape(shape).astype(np.uint16)
    if axial_blur is None:
        blur = np.maximum(1.0, 0.05 * diameter / sp)
    else:
        lateral = max(float(sp.min()), 0.05 * diameter)
        blur = np.maximum(0.5, np.r_[axial_blur * lateral, np.full(nd - 1, lateral)] / sp)
    image = ndimage.gaussian_filter(signal, blur)
    ramp = sum(g / e for g, e in zip(grids, extent)) / nd  # uneven illumination, 0..1
    haze = ndimage.gaussian_filter(rng.normal(size=shape).astype(np.float32), 3 * diameter / sp)
    haze = (haze - haze.min()) / max(float(np.ptp(haze)), 1e-6)
    counts = 1500.0 * image * (0.7 + 0.3 * ramp) + 40.0 * (0.5 + ramp) + 60.0 * haze
    noisy = rng.poisson(np.maximum(counts, 0)).astype(np.float32) + rng.normal(0, 4.0, shape)
    return np.clip(noisy + 100.0, 0, 65535).astype(np.uint16), truth


def nuclei_volume(
    shape: tuple[int, int, int] = (24, 112, 112),
    n_objects: int = 24,
    diameters: tuple[float, ...] = (10.0, 14.0, 20.0),
    xy_step: float = 1.0,
    z_step: float | None = None,
    seed: int = 0,
    touching: float = 0.4,
    axial_blur: float = 2.5,
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """A synthetic fluorescence z-stack of nuclei with anisotropic voxels, its instance truth and voxel size.

    Ellipsoidal nuclei of several sizes (each takes one of ``diameters`` at random,
    varied by ±10 %, with axes varied by ±15 % and a random orientation), some
    touching, of brightness varying by up to 8x, on a dim background with an
    illumination gradient and a smooth haze, blurred with a point spread function
    ``axial_blur`` times longer along z than across, with shot and camera noise, as
    :func:`nuclei` makes them; the volume is sampled ``z_step`` apart along z and
    ``xy_step`` across, as a widefield or confocal z-stack is.

    Parameters
    ----------
    shape : tuple of int
        ``(D, H, W)``, voxels.
    n_objects : int
        Nuclei to place; one that finds no free place in 200 tries is left out.
    diameters : tuple of float
        The nucleus sizes drawn from, in the unit of the voxel size (``xy_step`` 1: pixels across).
    xy_step : float
        The voxel's size across (y and x), > 0.
    z_step : float or None
        The voxel's size along z, > 0; None draws it from the seed, 2 to 4 times
        ``xy_step`` (rounded to 0.1 ``xy_step``).
    seed : int
        Seed of ``numpy.random.default_rng``: the same seed gives the same volume.
    touching : float
        Fraction (0..1) of the nuclei placed against an earlier neighbour.
    axial_blur : float
        How much longer the blur is along z than across, >= 1 (the blur across is
        ``max(xy_step, 0.05 * mean diameter)``).

    Returns
    -------
    volume : numpy.ndarray
        uint16, ``shape``.
    truth : numpy.ndarray
        uint16, ``shape``: 0 background, 1..K one id per nucleus (an overlap goes to
        the later nucleus).
    spacing : tuple of float
        ``(z_step, xy_step, xy_step)``: the voxel size to pass as ``spacing``.

    Raises
    ------
    ValueError
        For a shape that is not 3D, an empty ``diameters``, a step that is not positive
        or ``axial_blur`` below 1.

    Notes
    -----
    The objects, noise and background are those of :func:`nuclei`; the blur is
    ``scipy.ndimage.gaussian_filter`` with a sigma per axis.

    Examples
    --------
    >>> volume, truth, spacing = nuclei_volume((12, 48, 48), n_objects=4, diameters=(10.0,), z_step=3.0)
    >>> volume.dtype, truth.shape, spacing
    (dtype('uint16'), (12, 48, 48), (3.0, 1.0, 1.0))
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise ValueError(f"a volume is (D, H, W); got the shape {shape}")
    if not diameters:
        raise ValueError("diameters is empty: give at least one nucleus size")
    if xy_step <= 0 or (z_step is not None and z_step <= 0) or axial_blur < 1:
        raise ValueError(f"steps must be > 0 and axial_blur >= 1; got {xy_step}, {z_step}, {axial_blur}")
    rng = np.random.default_rng(seed)
    if z_step is None:
        z_step = round(float(rng.uniform(2.0, 4.0)), 1) * xy_step
    spacing = (float(z_step), float(xy_step), float(xy_step))
    sizes = np.asarray(diameters, float)
    volume, truth = _draw_nuclei(
        rng,
        shape,
        n_objects,
        lambda: 0.5 * rng.choice(sizes) * rng.uniform(0.9, 1.1),
        float(sizes.mean()),
        spacing,
        touching,
        axial_blur,
    )
    return volume, truth, spacing
