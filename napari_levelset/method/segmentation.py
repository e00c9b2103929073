"""``segment``: one call from an image to class labels, regions or instances.

It resolves the settings for the model and output (``Settings.resolved``), makes a
``Segmenter`` (``napari_levelset.method.segmenter``), runs it for the resolved number of
iterations (``run_with_progress``) and turns its labels into the regions asked for
(``Segmenter.regions``) or its probabilities into instances (``Segmenter.instances``).
Instances of the per-image CNN are optimised on a smaller copy of the image
(``INSTANCE_PIXELS``) and their probabilities brought back to the full grid.  The run is
planned by ``napari_levelset.method.plan.plan_run``, which the napari widget uses too.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from napari_levelset import validate
from napari_levelset.method.plan import plan_run
from napari_levelset.method.segmenter import Segmenter, Snapshot
from napari_levelset.resources import chooses_from_load, run_threads, torch_threads
from napari_levelset.settings import Settings

__all__ = ["run_with_progress", "segment"]


def run_with_progress(seg: Segmenter, iterations: int, progress: bool, desc: str = "level-set") -> Snapshot | None:
    """Run ``seg`` for ``iterations`` steps, with a tqdm progress bar on stderr when ``progress``
    (about 20 updates).

    Parameters
    ----------
    seg : Segmenter
        The run to continue.
    iterations : int
        Steps to take.
    progress : bool
        Whether to show the progress bar (with the loss).
    desc : str
        The bar's label.

    Returns
    -------
    Snapshot or None
        The last snapshot (None for 0 iterations).
    """
    iterations = int(iterations)
    every = max(1, iterations // 20) if progress else max(1, iterations)
    bar = None
    if progress and iterations:
        bar = tqdm(total=iterations, unit="it", desc=desc, leave=False)
    last = None
    try:
        for snap in seg.run(iterations, every=every):
            last = snap
            if bar is not None:
                bar.update(snap.iteration - bar.n)
                bar.set_postfix(loss=f"{snap.loss:.4g}")
    finally:
        if bar is not None:
            bar.close()
    return last


def segment(
    image,
    n_classes: int | None = None,
    lam: float | None = None,
    iterations: int | None = None,
    scribbles=None,
    channel_axis: int | None = None,
    spatial_dims: int | None = None,
    *,
    progress: bool = False,
    spacing=None,
    finetune_iterations: int | None = None,
    settings: Settings | None = None,
    threads: int | None = None,
    **changes,
) -> np.ndarray:
    """Segment ``image`` with the level-set loss: class labels, regions or instances.

    Parameters
    ----------
    image : array_like
        Grey or multichannel, 2D or 3D, any numeric or boolean dtype (see
        ``napari_levelset.io.prepare.prepare_image`` for how axes are read).
    n_classes, lam, iterations : optional
        Shorthands for the ``Settings`` fields of the same names (default: per model and
        output, ``Settings.resolved``).
    scribbles : array_like of int, optional
        The image's non-channel shape: 0 unpainted, ``k`` means label ``k``.
    channel_axis, spatial_dims : int, optional
        As for ``prepare_image``.
    progress : bool
        Show a progress bar on stderr.
    spacing : sequence of float, optional
        Physical size of a pixel (voxel) per spatial axis, for ``diameter``.
    finetune_iterations : int, optional
        A synonym of ``iterations`` for a pretrained U-Net (its iterations fine-tune it).
    settings : Settings, optional
        The settings; ``changes`` are applied to it.
    threads : int, optional
        torch CPU threads for this call, 1..4096; None: those of an enclosing
        ``resources.torch_threads`` block, else one per core free of other programs when the
        run starts (``resources.run_threads``).  torch's count before is restored after.
    **changes
        Any ``Settings`` field by name (``model``, ``regions``, ``merge``, ``lr``,
        ``diameter``, ...).

    Returns
    -------
    ndarray
        The image's shape without the channel axis.  ``regions="classes"`` (default):
        labels 1..N, uint8 (uint16 beyond 255 classes).  ``"connected"``: one label per
        connected piece of a class, uint32 1..R, pieces smaller than ``min_region``
        merged into a neighbour.  ``"merged"``: connected regions, adjacent ones merged
        while the level-set energy of the partition drops (``merge`` the boundary weight;
        ``napari_levelset.post.regions.merge_regions``).  ``"instances"``: one label per object,
        uint32, 0 background (``napari_levelset.post.instances.instance_labels``).

    Raises
    ------
    InputError
        For a bad image, scribbles or setting (named in the message), scribbles given to
        a pretrained model used directly, or (instances) a ``spacing`` or ``diameter`` that
        asks for more than the image holds (``napari_levelset.post.instances.check_scale``).

    Notes
    -----
    The per-image CNN (``model="cnn"``) is optimised on this image (after Kanezaki 2018,
    with the loss of Kim & Ye 2020); ``model="unet"`` or a model file segments at once
    and fine-tunes for ``iterations`` steps (default 0) from this image's k-means start.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((32, 32)); img[8:24, 8:24] = 1
    >>> labels = segment(img, n_classes=2, iterations=5)
    >>> labels.shape, int(labels.max())
    ((32, 32), 2)
    """
    shorthand = dict(n_classes=n_classes, lam=lam, iterations=iterations)
    for name, value in shorthand.items():
        if value is not None:
            changes[name] = value
    if finetune_iterations is not None:
        changes["iterations"] = validate.integer("finetune_iterations", finetune_iterations)
    threads = validate.optional_integer("threads", threads)
    from_load = not threads and chooses_from_load()
    with torch_threads(run_threads(threads)):  # threads=None: from the cores free now
        plan = plan_run(
            image, Settings.given(settings).replace(**changes), scribbles, channel_axis, spatial_dims, spacing
        )  # the one plan the napari widget runs too (napari_levelset.method.plan)
        with torch_threads(plan.threads(run_threads(threads), from_load)):  # instances on a small copy: fewer
            seg = plan.make_segmenter()
            last = run_with_progress(seg, plan.iterations, progress)
            return plan.finish(seg, last)
