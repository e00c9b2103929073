"""Per-image optimisation with the level-set loss: the streaming ``Segmenter`` and ``segment``.

A ``Segmenter`` owns one image, one network and its optimiser.  ``run(k)``
optimises for ``k`` more iterations and yields a ``Snapshot`` every ``every``
iterations; calling ``run`` again continues from the current state (warm
start), and so does changing the scribbles, ``lam`` or ``lr`` in between or
even while a run is going (they take effect at the next iteration).  ``stop()``
ends a run after the current iteration, from any thread.

Label ids are stable.  Output label ``k`` is network class ``order[k-1]``,
where ``order`` sorts the classes by the mean brightness of the (normalised)
image they cover at the start (with the default k-means start: darkest class
first).  It is fixed when the ``Segmenter`` is made, so snapshots never swap
colours, scribble value ``k`` always means output label ``k``, and a run with
the same seed on the CPU gives the same ids whatever the snapshot interval.

Shapes: an image is read as ``B`` items (slices of a stack, frames) of ``C``
channels over the spatial axes ``S`` (2 or 3 of them); the network sees
``(B, C, *S)`` float32 and gives logits ``(B, N, *S)`` for ``N`` classes.  Results
(labels, probabilities, regions) come back in the input's non-channel shape.

References
----------
Kim, B. & Ye, J. C. (2020).  Mumford-Shah loss functional for image segmentation
with deep learning.  IEEE Transactions on Image Processing 29, 1856-1866 (the
level-set loss, ``napari_levelset.method.loss``).

Kanezaki, A. (2018).  Unsupervised image segmentation by backpropagation.  IEEE
ICASSP, 1543-1547 (a CNN optimised on one image, ``napari_levelset.nn.models.PerImageCNN``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch

from napari_levelset import validate
from napari_levelset.method.cluster import init_centres
from napari_levelset.post.instances import (
    as_spacing,
    contrast_color,
    fluorescence_prepared,
    foreground_classes,
    instance_labels,
    resample_prepared,
    upsample,
)
from napari_levelset.errors import InputError
from napari_levelset.io.images import Prepared, labels_dtype, prepare_image
from napari_levelset.method.loss import class_means, class_probs, levelset_loss, scribble_loss
from napari_levelset.nn.devices import resolve_device
from napari_levelset.nn.models import PerImageCNN, init_parameters
from napari_levelset.resources import available_memory, is_out_of_memory
from napari_levelset.settings import (
    INSTANCE_PIXELS,
    MERGE_OPTIONS,
    SNAPSHOT_EVERY,
    Settings,
    default_position,
    is_builtin_cnn,
    model_kind,
    region_defaults,
)
from napari_levelset.method.strokes import scribbles_to_grid, stroke_channels, stroke_means, upsample_logits, working_copy

__all__ = ["Snapshot", "Segmenter", "Settings", "segment", "restore_segmenter"]

#: held while a network is built from the global torch generator (seeded, then restored)
_GLOBAL_RNG_LOCK = threading.Lock()

#: glibc ``mallopt`` parameters (malloc.h) and the values ``keep_step_buffers`` sets
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD, _TRIM_THRESHOLD = 2**30, 2**31 - 1
_libc: Any = None


def keep_step_buffers() -> bool:
    """Let the C heap keep the large buffers one optimisation step frees, for the next step.

    glibc serves allocations of 32 MiB and more (its largest dynamic ``mmap``
    threshold) with ``mmap`` and returns them to the system when freed, so every
    step of a large image maps its activations afresh and page-faults them in: at
    1024² the per-image CNN took 323 000 minor page faults and 2.3 s per step on one
    thread, against 0 faults and 0.6-0.9 s with the buffers kept (system time 3.9 s
    against 0.5 s for five steps).  This raises the ``mmap`` threshold to 1 GiB and
    the heap-trim threshold to 2 GiB (``mallopt``, see ``man mallopt``), once per process:
    the heap then keeps up to 2 GiB of freed memory for reuse (beyond that glibc hands it
    back).  It is not trimmed after each run: the widget calls ``Segmenter.run`` for a few
    iterations at a time.  Results are unchanged.

    Returns
    -------
    bool
        Whether the setting was made (False where the C library is not glibc).
    """
    global _libc
    if _libc is None:
        import ctypes
        import ctypes.util
        import sys

        _libc = False
        if sys.platform.startswith("linux"):
            try:
                lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                lib.mallopt  # noqa: B018 - glibc only
            except (OSError, AttributeError):
                pass
            else:
                if lib.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) and lib.mallopt(_M_TRIM_THRESHOLD,
                                                                                  _TRIM_THRESHOLD):
                    _libc = lib
    return bool(_libc)


def release_heap() -> None:
    """Give the C heap's free memory back to the system (glibc ``malloc_trim``), after an allocation
    failed: under an address-space limit the memory ``keep_step_buffers`` keeps would otherwise stop
    other threads (oneDNN's) from getting any."""
    if _libc:
        _libc.malloc_trim(0)


@dataclass
class Snapshot:
    """The state of a run after ``iteration`` iterations.

    ``labels`` has the input's non-channel shape, values 1..N.  ``probs``
    (only when asked for) is float32 ``(N, *labels.shape)``, class ``k`` of it
    belonging to label ``k + 1``.  ``done`` is true for the last snapshot of a
    run, ``stopped`` when that run was ended by ``stop()``.

    Parameters
    ----------
    iteration : int
        Iterations done by the ``Segmenter`` so far (over all its runs).
    loss : float
        The loss of the last step (NaN before the first step).
    labels : ndarray, uint8 or uint16
        Labels 1..N, the input's non-channel shape (``Segmenter.labels``).
    probs : ndarray of float32, optional
        Class probabilities ``(N, *labels.shape)`` (``Segmenter.probabilities``), or None.
    done : bool
        Whether this is the last snapshot of a run.
    stopped : bool
        Whether that run was ended early by ``stop()``.
    elapsed : float
        Seconds since the run began (wall clock).
    settings : dict
        ``Segmenter.settings`` at this iteration (JSON-serialisable).
    """

    iteration: int
    loss: float
    labels: np.ndarray
    probs: np.ndarray | None = None
    done: bool = False
    stopped: bool = False
    elapsed: float = 0.0
    settings: dict = field(default_factory=dict)


class Segmenter:
    """One image, one network and its optimiser: the streaming level-set optimisation.

    Parameters
    ----------
    image : array_like or None
        Any numeric or boolean array: grey or multichannel, 2D or 3D (see
        ``napari_levelset.io.images.prepare_image`` for how axes are read).  None with ``prepared``.
    n_classes : int, optional
        Shorthand for ``Settings.n_classes``.
    settings : Settings, optional
        All settings (``napari_levelset.settings.Settings``: what each is, its default and
        range); ``**changes`` are applied to it.  Defaults are resolved by
        ``Settings.resolved`` (the number of iterations is ``run``'s argument here).
    scribbles : array_like of int, optional
        The image's non-channel shape: 0 unlabelled, ``k`` means label ``k``.  They add α
        times the cross-entropy on the painted pixels, start their classes' means at the
        painted pixels' mean (k-means start) and keep them there in the data term
        (``napari_levelset.method.strokes.stroke_means``); given here, they also make the
        per-image CNN work on a smaller copy (``Settings.work_pixels``).
    channel_axis, spatial_dims : int, optional
        See ``napari_levelset.io.images.prepare_image``.
    prepared : napari_levelset.io.images.Prepared, optional
        The image already prepared (then ``image`` may be None).
    spacing : sequence of float, optional
        Physical size of a pixel (voxel) per spatial axis (for ``diameter``).
    **changes
        ``Settings`` fields by name: ``lam``, ``lr``, ``alpha`` (these three may also
        change during a run, as properties), ``width``, ``depth``, ``model``, ``init``,
        ``finetune``, ``color``, ``position``, ``contrast``, ``seed``, ``device``,
        ``max_pixels``, ``work_pixels``, ``diameter``.

    Raises
    ------
    InputError
        For a bad image, bad scribbles, an unknown setting or one out of range.

    Notes
    -----
    ``init="kmeans"`` (the per-image CNN's default) starts from the soft assignment to
    k-means class means of a lightly smoothed copy of the image; ``"random"`` is
    Kanezaki's plain random start (Kanezaki 2018); ``"network"`` (a pretrained U-Net's
    default) uses the trained head; a U-Net with ``"kmeans"`` keeps its body and
    restarts its head from this image's k-means, which a fine-tune then refines.
    ``position`` appends the pixel coordinates as channels (they span the weight along
    the longest axis) to the network's input and the data term; with a U-Net they go to
    its class head only.  A larger image than ``max_pixels`` is optimised on random crops
    and its labels computed tile by tile.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((32, 32)); img[8:24, 8:24] = 1
    >>> seg = Segmenter(img, 2, lam=0.1)
    >>> last = list(seg.run(10, every=5))[-1]
    >>> last.labels.shape
    (32, 32)
    """

    def __init__(
        self,
        image,
        n_classes: int | None = None,
        *,
        settings: Settings | None = None,
        scribbles=None,
        channel_axis: int | None = None,
        spatial_dims: int | None = None,
        prepared: Prepared | None = None,
        spacing=None,
        **changes,
    ):
        if n_classes is not None:
            changes["n_classes"] = n_classes
        s = Settings.given(settings).replace(**changes)  # unknown names are an InputError here
        channel_axis, spatial_dims = validate.channel_axis(channel_axis), validate.spatial_dims(spatial_dims)
        if image is not None and prepared is None:
            image = validate.image_array(image)
        strokes = scribbles is not None and bool(np.any(validate.scribble_array(scribbles)))
        # a Segmenter made directly runs for as long as asked, so the iterations rule is not applied here
        s = s.resolved(strokes=strokes, image=None)
        n_classes, model, color, contrast = s.n_classes, s.model, s.color, s.contrast
        keep_step_buffers()
        given = isinstance(model, torch.nn.Module)
        self._model_kind = model_kind(model)  # "cnn": a network made for this image; the per-model tables' key
        per_image = self._model_kind == "cnn"
        auto_color = color == "auto"
        if auto_color and not per_image:  # a U-Net takes the input it was trained on
            from napari_levelset.nn.unet import model_color

            color = model.model_color if given else model_color(model)
            if color == "lab":  # CIELAB for RGB images; others are normalised (grey goes in as lightness)
                color = "auto"
        color = contrast_color(contrast, color)
        if prepared is None:
            # a U-Net gets the normalisation it was trained with (unet.NORMALISATION)
            prepared = prepare_image(image, channel_axis, spatial_dims, color=color, structures=per_image)
        color = prepared.color
        #: physical size of a pixel (voxel) per spatial axis, or None (pixels)
        self.spacing = as_spacing(spacing, len(prepared.spatial_shape))
        #: expected object diameter (unit of ``spacing``), given or estimated; used by instances
        self.diameter = s.diameter
        self.contrast = contrast
        if contrast == "fluorescence":
            prepared, self.diameter = fluorescence_prepared(prepared, self.diameter, self.spacing)
        position = s.position
        if position is None:  # position channels for colour photographs, built-in CNN only
            position = default_position(model, color, n_classes, strokes)
        self.prepared = prepared
        # with strokes the per-image CNN works on a smaller copy (napari_levelset.method.strokes)
        self._work = prepared
        if per_image and s.work_pixels is not None:
            self._work, zoom = working_copy(prepared, s.work_pixels, self.diameter, self.spacing)
            if strokes and not prepared.rgb:
                # grey or fluorescence channels: local contrast where it sets the strokes further apart
                grid = self._to_work(prepared.to_batch(validate.scribble_array(scribbles)))
                self._work = stroke_channels(self._work, zoom, self.diameter, self.spacing, grid)
        # merging regions compares CIELAB on RGB images (unless color="rgb" was asked for), whatever the network saw
        lab_merge = auto_color and prepared.rgb and color != "lab" and image is not None
        self._merge_source = (image, channel_axis, spatial_dims) if lab_merge else None
        self._merge_features: np.ndarray | None = None
        self.device = resolve_device(s.device)
        self.n_classes = n_classes
        self.seed = s.seed
        self.alpha = s.alpha
        self._lam = s.lam
        ndim = len(self.prepared.spatial_shape)
        self.x = torch.from_numpy(self._work.data).to(self.device)
        self.image_channels = self.x.shape[1]
        #: the channels whose mean orders the classes darkest first: CIELAB's lightness, else all
        self._brightness_channels = 1 if self.prepared.color == "lab" else self.image_channels
        n_position = 0
        if position:
            self.x = torch.cat([self.x, position_channels(self.x, position)], 1)
            n_position = self.x.shape[1] - self.image_channels
        in_ch = self.x.shape[1]
        first_logits = None
        # a seed means one network even when several are built at once in other threads: the
        # per-image CNN draws from a private generator, and other builds hold the global one alone
        with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            if isinstance(model, torch.nn.Module):
                self.model = model
            elif model == "cnn":
                self.model = init_parameters(
                    PerImageCNN(in_ch, n_classes, width=s.width, depth=s.depth, ndim=ndim),
                    torch.Generator(device="cpu").manual_seed(self.seed))
            else:
                from napari_levelset.nn.unet import build_network

                self.model = build_network(
                    model, in_channels=self.image_channels, n_classes=n_classes, ndim=ndim, finetune=s.finetune,
                    color=color, extra_channels=n_position,
                )
        from napari_levelset.nn.unet import PretrainedNetwork

        pretrained = isinstance(self.model, PretrainedNetwork)
        init = s.init
        if init == "auto":  # a k-means start where the model can take one
            init = "kmeans" if getattr(self.model, "takes_centres", True) else "network"
        if init == "random" and pretrained:
            raise InputError("init='random' is for the per-image CNN; a pretrained model starts from 'network' "
                             "or 'kmeans'")
        self.model.to(self.device).train()
        start_means = None
        #: the k-means start's variance, and which network classes started from their own strokes' mean
        self._spread: float | None = None
        self._seeded = torch.zeros(n_classes, dtype=torch.bool)
        if init == "kmeans" and hasattr(self.model, "init_from_centres"):
            start_scr = None
            if scribbles is not None:
                start_scr = torch.from_numpy(self._to_work(self._check_scribbles(scribbles))).to(self.device)
            centres, spread = init_centres(self.x, n_classes, seed=self.seed, scribbles=start_scr,
                                           order_channels=self._brightness_channels)
            self.model.init_from_centres(centres, float(spread))
            self._spread = float(spread)
            if start_scr is not None:  # the k-means start took the strokes' classes from them
                ids = torch.unique(start_scr).cpu()
                self._seeded[ids[ids > 0] - 1] = True
            start_means = centres
            if hasattr(self.model, "skip"):  # the CNN branch starts at zero: the first labels cost one 1x1 conv
                try:
                    with torch.no_grad():
                        first_logits = self.model.skip(self.x)
                except (RuntimeError, MemoryError) as exc:  # computed tile by tile when first needed
                    if not is_out_of_memory(exc):
                        raise
                    first_logits = None
        if pretrained and not getattr(self.model, "head_trained", True):
            from napari_levelset.nn.unet import _ranges

            if self.model.takes_centres:
                hint = "or fine-tune (a fine-tune starts its head from the image's k-means, init='kmeans')"
            else:  # a grey model given colour: the head cannot start from the image's colours
                hint = ("since a new head needs a k-means start, which this model cannot take: it was trained "
                        "on grey images and sees this colour image as grey")
            raise InputError(f"this model has heads for {_ranges(self.model.head_counts)} classes, "
                             f"not {n_classes}: use one of those, {hint}")
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=s.lr)
        self.iteration = 0
        self._crop = self._plan_crops(s.max_pixels, s.width)
        self._rng = np.random.default_rng(self.seed)
        self._mean_stats: torch.Tensor | None = None  # crops: running (B, N, C + 1) sums of y*x and y per pixel
        if self._crop is not None:
            first_logits = None  # computed tile by tile when first needed
            if start_means is not None:  # the k-means centres, equal class weights
                c = start_means.to(self.x.device, self.x.dtype)
                w = torch.full((n_classes, 1), 1.0 / n_classes, device=c.device, dtype=c.dtype)
                self._mean_stats = torch.cat([c * w, w], 1).unsqueeze(0).repeat(self.x.shape[0], 1, 1)
        #: the settings this run was made with, every default resolved (``lam``, ``lr`` and ``alpha`` as made:
        #: the live values are the properties of the same names)
        self.run_settings = s.replace(init=init, color=color, position=float(position), contrast=contrast,
                                      diameter=self.diameter, device=str(self.device))
        self._record = dict(  # what describes this run beside its settings
            crop=None if self._crop is None else list(self._crop["shape"]),
            work_shape=None if self._work is self.prepared else list(self._work.spatial_shape),
            spacing=None if self.spacing is None else list(self.spacing),
        )
        self._stop = threading.Event()
        self._pending_scribbles: Any = _UNSET
        self._scribbles: torch.Tensor | None = None  # in network class ids, 0 = none
        self._stroke_means: tuple[torch.Tensor, torch.Tensor] | None = None  # see strokes.stroke_means
        self._logits: torch.Tensor | None = first_logits
        self._loss: torch.Tensor | None = None
        # label k -> network class order[k-1]; with a k-means start class j - 1 *is*
        # label j (centres darkest first, scribbled classes where the user put them)
        self._order = np.arange(n_classes) if init == "kmeans" else self._current_order()
        if scribbles is not None:
            self.set_scribbles(scribbles)

    # -- live settings -------------------------------------------------------------
    @property
    def lam(self) -> float:
        """λ, the weight of the total-variation term (in [0, 1000]); may change between steps."""
        return self._lam

    @lam.setter
    def lam(self, value: float) -> None:
        self._lam = validate.number("lam", value)

    @property
    def alpha(self) -> float:
        """Weight of the scribbles' cross-entropy; may change between steps."""
        return self._alpha

    @alpha.setter
    def alpha(self, value: float) -> None:
        self._alpha = validate.number("alpha", value)

    @property
    def lr(self) -> float:
        """The Adam learning rate (in (0, 10]); may change between steps."""
        return float(self.optimizer.param_groups[0]["lr"])

    @lr.setter
    def lr(self, value: float) -> None:
        value = validate.number("lr", value)
        for group in self.optimizer.param_groups:
            group["lr"] = value

    @property
    def settings(self) -> dict:
        """Everything needed to reproduce this run (JSON-serialisable)."""
        return dict(
            **self.run_settings.replace(lam=self.lam, lr=self.lr, alpha=self.alpha).to_json(),
            iteration=self.iteration,
            channel_axis=self.prepared.channel_axis,
            spatial_dims=len(self.prepared.spatial_shape),
            order=[int(i) for i in self._order],
            **self._record,
        )

    def set_scribbles(self, scribbles) -> None:
        """Set (or clear, with None) the scribbles; safe to call while running.

        They are checked here and take effect at the next iteration.

        Parameters
        ----------
        scribbles : array_like of int, or None
            The image's non-channel shape: 0 unlabelled, ``k`` (1..N) means label ``k``;
            bool, integer or integral float dtype.  None (or all zeros) clears them.

        Raises
        ------
        InputError
            For scribbles that are not whole numbers, do not fit the image's shape, or hold a
            label below 0 or above N.
        """
        self._pending_scribbles = None if scribbles is None else self._to_work(self._check_scribbles(scribbles))

    def _to_work(self, scribbles: np.ndarray) -> np.ndarray:
        """Checked scribbles ``(B, *S)`` on the grid the network works on (``scribbles_to_grid``)."""
        if self._work is self.prepared:
            return scribbles
        return scribbles_to_grid(scribbles, self._work.spatial_shape)

    def _check_scribbles(self, scribbles) -> np.ndarray:
        """Validate scribbles; return them as int64 ``(B, *S)`` label ids."""
        s = self.prepared.to_batch(validate.scribble_array(scribbles)).astype(np.int64)  # whole numbers, checked
        if s.min() < 0:
            raise InputError("scribble labels must be >= 0 (0 = unlabelled)")
        if s.max() > self.n_classes:
            raise InputError(f"scribble label {int(s.max())} is larger than the number of classes {self.n_classes}")
        return s

    def state_dict(self) -> dict:
        """The network's weights (numpy arrays), label order and iteration count.

        With the same settings, ``load_state_dict`` restores them into a new
        ``Segmenter`` so that a stored result can be refined later.  The
        optimiser's moments are not included: a restored run restarts them.

        Returns
        -------
        dict
            ``model``: the network's ``state_dict`` as numpy arrays (copies, on the CPU);
            ``order``: list of int, label ``k`` is network class ``order[k-1]``;
            ``iteration``: int.
        """
        return dict(
            model={k: v.detach().cpu().numpy().copy() for k, v in self.model.state_dict().items()},
            order=[int(i) for i in self._order],
            iteration=self.iteration,
        )

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned (arrays may be numpy or torch).

        The cached logits and loss are dropped; the optimiser's state is kept as it is.

        Parameters
        ----------
        state : dict
            ``model`` (weights by name), and optionally ``order`` (default: 0..N-1) and
            ``iteration`` (default 0).

        Raises
        ------
        InputError
            When the weights do not fit this network (missing, unexpected or mis-shaped),
            or ``order`` is not a permutation of 0..N-1.
        """
        try:
            weights = {k: torch.as_tensor(np.asarray(v)) for k, v in state["model"].items()}
            self.model.load_state_dict(weights)
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise InputError(f"the stored network state does not fit these settings ({exc.__class__.__name__})") \
                from None
        self.model.to(self.device)
        order = np.asarray(state.get("order", np.arange(self.n_classes)), dtype=np.int64)
        if sorted(order.tolist()) != list(range(self.n_classes)):
            raise InputError("the stored label order does not fit the number of classes")
        self._order = order
        self.iteration = int(state.get("iteration", 0))
        self._logits = None
        self._loss = None

    def stop(self) -> None:
        """Ask a running ``run`` to end after the current iteration (thread-safe)."""
        self._stop.set()

    def clear_stop(self) -> None:
        """Forget a ``stop`` that came after the last ``run`` had ended (it would end the next one at once)."""
        self._stop.clear()

    # -- optimisation --------------------------------------------------------------
    def _apply_pending(self) -> None:
        pending, self._pending_scribbles = self._pending_scribbles, _UNSET
        if pending is _UNSET:
            return
        if pending is None or not pending.any():
            self._scribbles = self._stroke_means = None
            return
        lut = np.concatenate([[0], self._order + 1])
        self._scribbles = torch.from_numpy(lut[pending]).to(self.device)
        self._stroke_means = stroke_means(self.x, self._scribbles, self.n_classes)
        stroked, centres = self._stroke_means
        new = stroked.cpu() & ~self._seeded
        if new.any() and self._spread is not None and hasattr(self.model, "seed_class"):
            for k in torch.nonzero(new).flatten().tolist():  # a class stroked for the first time: restart it
                self.model.seed_class(k, centres[k], self._spread)
            self._seeded |= new
            self._logits = None

    def step(self) -> torch.Tensor:
        """One iteration; returns the loss as a tensor (no host sync).

        When an allocation fails, the step is retried on crops of a quarter of the
        pixels (see ``_shrink_crops``) until it fits or crops reach 16 pixels a side.

        Returns
        -------
        torch.Tensor
            The loss, a 0-d tensor on ``device`` (detached): the level-set loss plus α times
            the scribbles' cross-entropy.

        Raises
        ------
        MemoryError
            When even the smallest crops do not fit.
        """
        return self._until_it_fits(self._step, "crops")

    def _until_it_fits(self, compute, what: str):
        """``compute()``; when an allocation fails, free what the failed attempt held, plan crops (or
        tiles) of a quarter of the pixels and try again, down to 16 pixels a side."""
        while True:
            try:
                return compute()
            except (RuntimeError, MemoryError) as exc:
                if not is_out_of_memory(exc):
                    raise
            # outside the except block, so the failed attempt's tensors are freed first
            self.optimizer.zero_grad(set_to_none=True)
            release_heap()
            if not self._shrink_crops():
                raise MemoryError(f"out of memory even on the smallest {what}")

    def _step(self) -> torch.Tensor:
        self._apply_pending()
        self.optimizer.zero_grad(set_to_none=True)
        x, scr = self.x, self._scribbles
        if self._crop is not None:
            items, window = self._random_window()
            x = x[items][window]
            scr = None if scr is None else scr[items][window[:1] + window[2:]]
        logits = self.model(x)
        probs = class_probs(logits)
        means = None if self._crop is None else self._running_means(probs.detach(), x, items)
        if self._stroke_means is not None:  # stroked classes keep their strokes' means
            stroked, centres = self._stroke_means
            means = class_means(probs.detach(), x) if means is None else means
            means = torch.where(stroked[None, :, None], centres[None], means)
        loss = levelset_loss(probs, x, self._lam, means=means)
        if scr is not None and self.alpha > 0:
            loss = loss + self.alpha * scribble_loss(logits, scr, check=False)  # checked in set_scribbles
        loss.backward()
        self.optimizer.step()
        self.iteration += 1
        self._logits = logits.detach() if self._crop is None else None
        self._loss = loss.detach()
        return self._loss

    # -- large images: random crops for optimisation, tiles for labels ---------------
    def _shrink_crops(self) -> bool:
        """After a failed allocation, plan crops of a quarter of the pixels now used; False at the floor."""
        spatial = tuple(self.x.shape[2:])
        if self._crop is None:
            used = self.x.shape[0] * int(np.prod(spatial))
        else:
            used = self._crop["items"] * int(np.prod(self._crop["shape"]))
        smallest = int(np.prod([min(s, 16) for s in spatial]))
        if used <= smallest:
            return False
        self._crop = self._plan_crops(max(used // 4, smallest), self.run_settings.width)
        self._logits = None
        return self._crop is not None

    def _plan_crops(self, max_pixels: int | None, width: int) -> dict | None:
        """Decide whether steps must work on crops; return the crop plan or None."""
        B, C = self.x.shape[:2]
        spatial = tuple(self.x.shape[2:])
        per_item = int(np.prod(spatial))
        if max_pixels is None:
            bytes_per_pixel = 4 * (8 * width + 12 * self.n_classes + 6 * C)
            max_pixels = int(0.5 * _free_memory(self.device) / bytes_per_pixel)
        max_pixels = max(int(max_pixels), 1)
        if B * per_item <= max_pixels:
            return None
        if per_item <= max_pixels:  # whole slices, a random subset of them per step
            return dict(items=max(1, max_pixels // per_item), shape=spatial, max_pixels=max_pixels)
        scale = (max_pixels / per_item) ** (1.0 / len(spatial))
        shape = tuple(max(min(s, 16), min(s, int(s * scale))) for s in spatial)
        return dict(items=1, shape=shape, max_pixels=max_pixels)

    #: weight of the newest crop in the running class statistics of crop mode
    CROP_MEAN_RATE = 0.1

    def _running_means(self, probs: torch.Tensor, x: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Whole-image class means for a crop step, from running statistics over crops.

        The means of one crop alone would follow whatever the crop holds: a class
        the crop hardly contains gets a mean from a few stray pixels and can be
        lost for good.  Instead the per-pixel sums of ``y x`` and ``y`` are
        averaged over recent crops (exponentially, rate ``CROP_MEAN_RATE``; they
        start from the k-means centres), which estimates the whole-image means
        the full loss would use.
        """
        y = probs.flatten(2)
        xf = x.flatten(2)
        stats = torch.cat([torch.bmm(y, xf.transpose(1, 2)), y.sum(-1, keepdim=True)], 2) / y.shape[-1]
        if self._mean_stats is None:
            self._mean_stats = torch.zeros((self.x.shape[0],) + stats.shape[1:], device=x.device, dtype=x.dtype)
            self._mean_stats[items] = stats
        else:
            r = self.CROP_MEAN_RATE
            self._mean_stats[items] = (1 - r) * self._mean_stats[items] + r * stats
        s = self._mean_stats[items]
        return s[..., :-1] / (s[..., -1:] + 1e-8)

    def _random_window(self):
        B = self.x.shape[0]
        k = min(B, self._crop["items"])
        items = torch.from_numpy(np.sort(self._rng.choice(B, size=k, replace=False))).to(self.device)
        window = [slice(None), slice(None)]
        for size, full in zip(self._crop["shape"], self.x.shape[2:]):
            start = int(self._rng.integers(0, full - size + 1))
            window.append(slice(start, start + size))
        return items, tuple(window)

    @torch.no_grad()
    def _tiled_logits(self) -> torch.Tensor:
        """Whole-image logits computed tile by tile (eval mode: BatchNorm's running statistics)."""
        from napari_levelset.nn.tiling import tiled_apply

        radius = getattr(self.model, "receptive_radius", getattr(self.model, "depth", 8))
        multiple = getattr(self.model, "multiple", 1)
        side = max(16, int(self._crop["max_pixels"] ** (1.0 / (self.x.dim() - 2))))
        was_training = self.model.training
        self.model.eval()
        try:
            chunks = [
                tiled_apply(self.model, self.x[b : b + 1], radius=radius, multiple=multiple, tile=side,
                            output="raw", out_device=self.device)
                for b in range(self.x.shape[0])
            ]
        finally:
            self.model.train(was_training)
        return torch.cat(chunks)

    def run(self, iterations: int, every: int = SNAPSHOT_EVERY, with_probs: bool = False) -> Iterator[Snapshot]:
        """Optimise ``iterations`` more steps, yielding a snapshot every ``every`` steps.

        The last snapshot has ``done=True`` (and ``stopped=True`` when ``stop()``
        ended the run early).  The generator may also simply be closed.

        Parameters
        ----------
        iterations : int
            Steps to take, 0..100000 (0: one snapshot of the current state).
        every : int
            Steps between two snapshots, >= 1.
        with_probs : bool
            Whether snapshots carry ``probs`` (class probabilities).

        Yields
        ------
        Snapshot
            After every ``every`` steps, and once at the end (``done=True``).

        Raises
        ------
        InputError
            For ``iterations`` or ``every`` out of range, or when the loss becomes NaN or
            infinite (lower ``lr`` or ``lam``).

        Examples
        --------
        >>> import numpy as np
        >>> seg = Segmenter(np.eye(16), 2)
        >>> [(s.iteration, s.done) for s in seg.run(4, every=2)]
        [(2, False), (4, True)]
        """
        iterations = validate.integer("iterations", iterations)
        every = validate.integer("every", every)
        t0 = time.perf_counter()
        try:
            for i in range(iterations):
                if self._stop.is_set():
                    self._check_loss()
                    yield self.snapshot(with_probs, done=True, stopped=True, t0=t0)
                    return
                self.step()
                if (i + 1) % every == 0 and i + 1 < iterations:
                    self._check_loss()
                    yield self.snapshot(with_probs, t0=t0)
            self._check_loss()
            yield self.snapshot(with_probs, done=True, stopped=self._stop.is_set(), t0=t0)
        finally:
            self._stop.clear()

    def _check_loss(self) -> None:
        """End the run with an ``InputError`` when the last step's loss is NaN or infinite.

        Called where a snapshot reads the loss anyway, so it adds no wait for the device.
        """
        if self._loss is not None and not bool(torch.isfinite(self._loss)):
            lo, hi = validate.LIMITS["lr"]
            raise InputError(
                f"the optimisation diverged (loss {float(self._loss)} at iteration {self.iteration}): "
                f"lower lr (now {self.lr:g}; allowed ({lo:g}, {hi:g}], default {Settings().lr:g}) "
                f"or lam (now {self.lam:g}; default {Settings().resolved().lam:g})")

    # -- reading results -----------------------------------------------------------
    @torch.no_grad()
    def _ensure_logits(self) -> torch.Tensor:
        if self._logits is None:  # whole-image logits that do not fit are computed tile by tile
            self._logits = self._until_it_fits(
                lambda: self._look(self.x) if self._crop is None else self._tiled_logits(), "tiles")
        return self._logits

    def _look(self, x: torch.Tensor) -> torch.Tensor:
        """The model's logits for ``x`` as the optimisation sees them (training mode: BatchNorm on the
        batch's statistics), without moving BatchNorm's running statistics: reading the labels must
        not change the network a result layer saves."""
        norms = [m for m in self.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                 and m.training and m.track_running_stats]
        saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
        try:
            for m in norms:
                m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch
            return self.model(x)
        finally:
            for m, (momentum, count) in zip(norms, saved):
                m.momentum = momentum
                m.num_batches_tracked.copy_(count)

    @torch.no_grad()
    def _current_order(self) -> np.ndarray:
        probs = torch.softmax(self._ensure_logits(), dim=1)
        brightness = class_means(probs, self.x[:, : self._brightness_channels]).mean(dim=(0, 2))  # N
        return np.argsort(brightness.cpu().numpy(), kind="stable")

    def _lut(self) -> torch.Tensor:
        """Map network class -> output label (1..N)."""
        lut = np.empty(self.n_classes, dtype=np.int64)
        lut[self._order] = np.arange(1, self.n_classes + 1)
        return torch.from_numpy(lut).to(self.device)

    def _full_logits(self, b: int) -> torch.Tensor:
        """Logits ``(1, N, *S)`` of batch item ``b`` on the full grid (interpolated from a working copy)."""
        return upsample_logits(self._ensure_logits()[b : b + 1], self.prepared.spatial_shape)

    @torch.no_grad()
    def labels(self) -> np.ndarray:
        """Current labels 1..N with the input's non-channel shape.

        Returns
        -------
        ndarray, uint8 (uint16 beyond 255 classes)
            The input's non-channel shape; label ``k`` is network class ``order[k-1]``.
        """
        if self._work is self.prepared:
            lab = self._lut()[self._ensure_logits().argmax(1)]
        else:  # item by item: the full-size logits of a stack need not exist at once
            lab = torch.cat([self._lut()[self._full_logits(b).argmax(1)] for b in range(self.x.shape[0])])
        out = lab.cpu().numpy().astype(labels_dtype(self.n_classes))
        return self.prepared.to_output(out)

    @torch.no_grad()
    def probabilities(self) -> np.ndarray:
        """Current class probabilities ``(N, *out_shape)``, class k for label k+1.

        Returns
        -------
        ndarray of float32
            ``(N, *out_shape)``, ``out_shape`` the input's non-channel shape; they sum to 1 over
            the first axis (a softmax of the logits).
        """
        order = torch.from_numpy(self._order).to(self.device)
        if self._work is self.prepared:
            p = torch.softmax(self._ensure_logits(), dim=1)[:, order].transpose(0, 1).float().cpu().numpy()
        else:
            p = np.stack([torch.softmax(self._full_logits(b), dim=1)[0, order].float().cpu().numpy()
                          for b in range(self.x.shape[0])], axis=1)
        return p.reshape((self.n_classes,) + self.prepared.out_shape)

    def features(self) -> np.ndarray:
        """What ``regions="merged"`` compares, ``(C, *out_shape)``: the prepared image (no position channels).

        On an RGB image with ``color="auto"`` that is CIELAB even where the network
        takes normalised RGB (a U-Net trained on RGB): the merging and its default
        weight were chosen on CIELAB, and merging photographs on RGB is worse (see
        ``benchmarks/RESULTS.md``).  With ``color="rgb"`` asked for, the normalised
        channels are compared.

        Returns
        -------
        ndarray of float32
            ``(C, *out_shape)``, computed once and kept.
        """
        if self._merge_features is None:
            prepared = self.prepared
            if self._merge_source is not None:
                prepared = prepare_image(*self._merge_source, color="lab", structures=self._model_kind == "cnn")
            x = prepared.data  # B C *S
            self._merge_features = np.moveaxis(x, 1, 0).reshape((x.shape[1],) + self.prepared.out_shape)
        return self._merge_features

    def regions(self, labels: np.ndarray | None = None, mode: str = "connected", *, min_region: float | None = None,
                merge: float | None = None, diameter: float | None = None, foreground=None) -> np.ndarray:
        """``labels`` (default: the current ones) as regions: see ``napari_levelset.post.regions.to_regions``.

        ``merge`` and ``min_region`` default to the model's for ``mode``
        (``napari_levelset.settings.region_defaults``), and so does the boundary
        weighting (``MERGE_OPTIONS``).
        ``mode="instances"`` returns ``instances(diameter=..., foreground=..., min_region=min_region)``
        (``labels`` is not used: instances come from the current probabilities).

        Parameters
        ----------
        labels : ndarray of int, optional
            Class labels, the input's non-channel shape; default: ``labels()``.
        mode : {"classes", "connected", "merged", "instances"}
            What to make of them (``napari_levelset.post.regions.REGION_MODES``).
        min_region : float, optional
            Smallest region kept: pixels (>= 1) or a fraction of the image (< 1); for
            instances, pixels (voxels).
        merge : float, optional
            Boundary weight of ``"merged"`` (>= 0).
        diameter : float, optional
            Instances only: expected object diameter, unit of ``spacing`` (pixels without).
        foreground : int or sequence of int, optional
            Instances only: class labels that are objects.

        Returns
        -------
        ndarray
            ``"classes"``: ``labels`` as they are; otherwise uint32 of the same shape, regions
            1..R (instances: 0 background).

        Raises
        ------
        InputError
            For ``min_region`` or ``merge`` out of range, or (instances) a bad ``diameter`` or
            ``foreground``.
        ValueError
            For an unknown ``mode`` (``napari_levelset.post.regions.to_regions``).

        Examples
        --------
        >>> import numpy as np
        >>> seg = Segmenter(np.eye(8), 2)
        >>> lab = np.ones((8, 8), np.uint8); lab[:, 4:] = 2; lab[2:4, 1:3] = 2
        >>> int(seg.regions(lab, "connected", min_region=1).max())
        3
        """
        from napari_levelset.post.regions import to_regions

        min_region = validate.optional_number("min_region", min_region)
        merge = validate.optional_number("merge", merge)
        if mode == "instances":
            return self.instances(diameter=diameter, foreground=foreground, min_region=min_region)
        labels = self.labels() if labels is None else labels
        kind = self._model_kind
        default_merge, default_min_region = region_defaults(kind, mode)
        return to_regions(labels, mode, min_region=default_min_region if min_region is None else min_region,
                          features=self.features() if mode == "merged" else None,
                          merge=default_merge if merge is None else merge,
                          spatial_dims=len(self.prepared.spatial_shape), **MERGE_OPTIONS[kind])

    def instances(self, *, diameter: float | None = None, foreground=None, min_region: float | None = None,
                  probs: np.ndarray | None = None) -> np.ndarray:
        """One label per object of the foreground class(es): uint32, 0 background, 1..K.

        Parameters
        ----------
        diameter : float, optional
            Expected object diameter in the unit of ``spacing`` (pixels without it);
            default: the one given to or estimated by this ``Segmenter`` (fluorescence
            contrast), else estimated from the foreground.
        foreground : int or sequence of int, optional
            Class labels (1..N) that are objects; default: the brightest class, label N
            (``napari_levelset.post.instances.foreground_classes``).
        min_region : float, optional
            Smallest object kept, in pixels (voxels); default: a fifth of the expected
            object's area (volume).
        probs : ndarray, optional
            Class probabilities ``(N, *shape)`` to use instead of the current ones; their
            shape (batch axes, then this image's number of spatial axes) is the result's.

        Returns
        -------
        ndarray, uint32, the input's non-channel shape
            Each batch item (slice of a stack, frame of a time-lapse) is split on its
            own; ids are numbered over the whole array.  See
            ``napari_levelset.post.instances.instance_labels``.

        Raises
        ------
        InputError
            For foreground labels outside 1..N or a non-positive diameter.
        """
        diameter = validate.optional_number("diameter", diameter)
        min_region = validate.optional_number("min_region", min_region)
        fg = foreground_classes(self.n_classes, foreground)
        probs = self.probabilities() if probs is None else np.asarray(probs)
        out_shape = probs.shape[1:]  # the input's non-channel shape (or a larger one's, see ``segment``)
        ndim = len(self.prepared.spatial_shape)
        p = probs[[k - 1 for k in fg]].sum(0).reshape((-1,) + out_shape[len(out_shape) - ndim:])
        d = self.diameter if diameter is None else diameter
        out = np.zeros(p.shape, np.uint32)
        offset = 0
        for i, item in enumerate(p):
            lab = instance_labels(item, diameter=d, spacing=self.spacing, min_region=min_region)
            out[i] = np.where(lab > 0, lab + offset, 0)
            offset += int(lab.max())
        return out.reshape(out_shape)

    def snapshot(self, with_probs: bool = False, done: bool = False, stopped: bool = False, t0: float | None = None):
        """A ``Snapshot`` of the current state (labels computed now).

        Parameters
        ----------
        with_probs : bool
            Whether to include the class probabilities.
        done, stopped : bool
            The snapshot's flags (see ``Snapshot``).
        t0 : float, optional
            ``time.perf_counter()`` at the start of the run, for ``elapsed`` (0 without).

        Returns
        -------
        Snapshot
            ``loss`` is the last step's, NaN before any step.
        """
        loss = float(self._loss) if self._loss is not None else float("nan")
        return Snapshot(
            iteration=self.iteration,
            loss=loss,
            labels=self.labels(),
            probs=self.probabilities() if with_probs else None,
            done=done,
            stopped=stopped,
            elapsed=0.0 if t0 is None else time.perf_counter() - t0,
            settings=self.settings,
        )


def _free_memory(device: torch.device) -> int:
    """Bytes free for activations on ``device`` (see :func:`napari_levelset.resources.available_memory`)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return available_memory()  # host memory, within the process's rlimit and cgroup


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Any = _Unset()


def position_channels(x: torch.Tensor, weight: float) -> torch.Tensor:
    """Centred coordinate channels ``(B, D, *S)`` for ``x`` ``(B, C, *S)``, scaled by ``weight``.

    Each axis's coordinate is divided by the longest axis, so they span at most
    ``[-weight/2, weight/2]`` and a unit of distance is the same along every axis.

    Parameters
    ----------
    x : torch.Tensor
        The image, ``(B, C, *S)``; only its shape, device and dtype are used.
    weight : float
        The span of the longest axis' coordinate (``Settings.position``).

    Returns
    -------
    torch.Tensor
        ``(B, D, *S)``, ``D = len(S)``, ``x``'s device and dtype; channel ``d`` is the
        coordinate along spatial axis ``d``.
    """
    spatial = x.shape[2:]
    scale = float(weight) / max(max(spatial) - 1, 1)
    axes = [(torch.arange(s, device=x.device, dtype=x.dtype) - (s - 1) / 2) * scale for s in spatial]
    grids = torch.meshgrid(*axes, indexing="ij")
    return torch.stack(grids).unsqueeze(0).expand(x.shape[0], len(spatial), *spatial).contiguous()


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
        from tqdm import tqdm

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
    **changes,
) -> np.ndarray:
    """Segment ``image`` with the level-set loss: class labels, regions or instances.

    Parameters
    ----------
    image : array_like
        Grey or multichannel, 2D or 3D, any numeric or boolean dtype (see
        ``napari_levelset.io.images.prepare_image`` for how axes are read).
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
        For a bad image, scribbles or setting (named in the message), or scribbles given to
        a pretrained model used directly.

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
    s = Settings.given(settings).replace(**changes)
    channel_axis, spatial_dims = validate.channel_axis(channel_axis), validate.spatial_dims(spatial_dims)
    if image is not None:
        image = validate.image_array(image)
    instances = s.regions == "instances"
    if not instances and (s.diameter is not None or s.foreground is not None):
        raise InputError("diameter and foreground are settings of regions='instances'")
    strokes = scribbles is not None and bool(np.any(validate.scribble_array(scribbles)))
    s = s.resolved(strokes=strokes, image=image, channel_axis=channel_axis)
    if s.iterations == 0 and model_kind(s.model) == "unet" and s.init == "network" and strokes:
        raise InputError("scribbles steer the optimisation: a pretrained model used directly would ignore them; "
                         "give finetune_iterations (e.g. 20)")
    full = prepared = None
    if instances:
        prepared, full = _instance_preparation(image, channel_axis, spatial_dims, spacing, s, scribbles)
        if full is not None:
            s = s.replace(contrast="linear", diameter=full[1])
    seg = Segmenter(image, settings=s, scribbles=scribbles, channel_axis=channel_axis, spatial_dims=spatial_dims,
                    prepared=prepared, spacing=spacing)
    last = run_with_progress(seg, s.iterations, progress)
    if instances:
        probs = None
        if full is not None:  # optimised on a smaller copy: probabilities back to the full image
            n = s.n_classes
            probs = upsample(seg.probabilities().reshape((n, -1) + seg.prepared.spatial_shape),
                             full[0].spatial_shape).reshape((n,) + full[0].out_shape)
        return seg.instances(diameter=s.diameter, foreground=s.foreground, min_region=s.min_region, probs=probs)
    labels = last.labels if last is not None else seg.labels()
    return seg.regions(labels, s.regions, min_region=s.min_region, merge=s.merge)


def _instance_preparation(image, channel_axis, spatial_dims, spacing, s: Settings, scribbles):
    """For ``segment(regions="instances")`` with the per-image CNN and no scribbles: the
    image prepared (fluorescence contrast where asked) at full size, and a copy small
    enough for fast optimisation (``INSTANCE_PIXELS``).  Returns ``(small, (full, diameter))``,
    or ``(None, None)`` where the ``Segmenter`` should prepare the image itself."""
    if not is_builtin_cnn(s.model) or scribbles is not None:
        return None, None
    full = prepare_image(image, channel_axis, spatial_dims, color=contrast_color(s.contrast, s.color))
    spacing = as_spacing(spacing, len(full.spatial_shape))
    diameter = s.diameter
    if s.contrast == "fluorescence":
        full, diameter = fluorescence_prepared(full, diameter, spacing)
    small, zoom = resample_prepared(full, INSTANCE_PIXELS, diameter, spacing)
    return (full if zoom == 1.0 else small), (full, diameter)


#: keys of ``Segmenter.settings`` that describe the run rather than choose it
_RECORD = ("channel_axis", "spatial_dims", "spacing")


def restore_segmenter(image, settings: Mapping, state: Mapping | None = None, **overrides):
    """Rebuild a ``Segmenter`` from a result layer's metadata (imports torch).

    Parameters
    ----------
    image : array_like
        The image the run was made on (for a run on several channel layers, their arrays
        stacked on a first axis, in the order of ``settings["channels"]``; an RGB image
        the widget turned grey is turned grey again when ``settings["to_grey"]``).
    settings : mapping
        ``metadata["napari_levelset"]`` of the result layer: ``Segmenter.settings`` (and
        the widget's own keys, which are ignored here).
    state : mapping, optional
        ``metadata["napari_levelset_state"]``: the network's weights.  With it the network
        continues from the weights it stopped with (refine; the optimiser's moments are not
        kept, and a snapshot's labels came from the forward pass before its last step, so
        the rebuilt labels differ in a few pixels); without it a new run with the same
        settings reproduces the result on the CPU (same seed).
    **overrides
        Settings to replace (e.g. ``device="cpu"``).

    Returns
    -------
    napari_levelset.method.engine.Segmenter
        Made on ``image`` with the stored settings (and ``channel_axis``, ``spatial_dims``,
        ``spacing``), with the weights, label order and iteration count of ``state`` where given.

    Raises
    ------
    InputError
        For settings out of range, unknown names among ``overrides``, or a ``state`` that does
        not fit the network (``Segmenter.load_state_dict``).
    """
    if isinstance(settings.get("settings"), Mapping):  # the napari writer's .json
        settings = settings["settings"]
    s = Settings.from_json(settings).replace(**overrides)
    data = join_channels(image, to_grey=bool(settings.get("to_grey", False)))
    seg = Segmenter(data, settings=s, **{k: settings.get(k) for k in _RECORD})
    if state is not None:
        seg.load_state_dict({"model": state, "order": settings.get("order", list(range(seg.n_classes))),
                             "iteration": settings.get("iteration", 0)})
    return seg
