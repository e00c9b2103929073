"""Per-image optimisation with the level-set loss: the streaming ``Segmenter``.

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

``segment`` (``napari_levelset.method.segmentation``) is the one-call front end; large
images are optimised on crops (``napari_levelset.method.memory``).

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
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from napari_levelset import validate
from napari_levelset.errors import InputError
from napari_levelset.io.prepare import Prepared
from napari_levelset.method import classes
from napari_levelset.method.loss import class_means, class_probs, levelset_loss, scribble_loss
from napari_levelset.method.memory import (
    keep_step_buffers,
    plan_crops,
    random_window,
    release_heap,
    running_means,
    smaller_crops,
    start_statistics,
    tiled_logits,
)
from napari_levelset.method.results import ResultsMixin
from napari_levelset.method.start import (
    build_model,
    check_head,
    kmeans_start,
    position_channels,
    prepare_run_image,
    resolve_init,
)
from napari_levelset.method.strokes import scribbles_to_grid, stroke_means, stroke_prior
from napari_levelset.nn.devices import resolve_device
from napari_levelset.nn.models import forward_keeping_statistics
from napari_levelset.resources import is_out_of_memory
from napari_levelset.settings import SNAPSHOT_EVERY, Settings, default_position, model_kind

__all__ = ["Segmenter", "Snapshot"]

#: a class stroked for the first time during a run restarts from its stroke's mean (``seed_class``) only while
#: it holds less than this share of ``1 / N`` of the image (see ``Segmenter._apply_pending``)
EMPTY_CLASS_SHARE = 0.25
#: with strokes, where a photograph would get position channels: the weight of the strokes' evidence
#: (``napari_levelset.method.strokes.stroke_prior``, in [-1, 0]) added to the network's logits; 0 keeps the
#: position channels instead
PRIOR_WEIGHT = 100.0
#: the position weight such a run keeps beside the prior
PRIOR_POSITION = 0.0


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


def _every_class_stroked(scribbles, n_classes: int) -> bool:
    """Whether ``scribbles`` (0 unpainted, ``k`` class ``k``) paint every one of the ``n_classes`` classes."""
    painted = np.unique(np.asarray(scribbles))
    return set(range(1, n_classes + 1)) <= {int(k) for k in painted if k > 0}


class Segmenter(ResultsMixin):
    """One image, one network and its optimiser: the streaming level-set optimisation.

    Parameters
    ----------
    image : array_like or None
        Any numeric or boolean array: grey or multichannel, 2D or 3D (see
        ``napari_levelset.io.prepare.prepare_image`` for how axes are read).  None with ``prepared``.
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
        See ``napari_levelset.io.prepare.prepare_image``.
    prepared : napari_levelset.io.prepare.Prepared, optional
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
        keep_step_buffers()
        self._model_kind = model_kind(s.model)  # "cnn": a network made for this image; the per-model tables' key
        run_image = prepare_run_image(
            image,
            prepared,
            (channel_axis, spatial_dims),
            spacing,
            s,
            scribbles,
            strokes,
            per_image=self._model_kind == "cnn",
        )
        color = run_image.color
        #: physical size of a pixel (voxel) per spatial axis, or None (pixels)
        self.spacing = run_image.spacing
        #: expected object diameter (unit of ``spacing``), given or estimated; used by instances
        self.diameter = run_image.diameter
        self.contrast = s.contrast
        self.prepared = run_image.prepared
        self._work = run_image.work  # the per-image CNN's smaller copy with strokes, else ``prepared``
        self._merge_source = run_image.merge_source
        self._merge_features: np.ndarray | None = None
        self.device = resolve_device(s.device)
        self.n_classes = s.n_classes
        self.seed = s.seed
        self.alpha = s.alpha
        self._lam = s.lam
        position, geodesic = self._network_input(s, color, strokes, scribbles)
        n_position = self.x.shape[1] - self.image_channels
        spatial = len(self.prepared.spatial_shape)
        self.model = build_model(s, self.x.shape[1], self.image_channels, spatial, color, n_position=n_position)
        init, start_means, first_logits = self._start(s.init, scribbles)
        if init != "kmeans":  # the prior is in label ids, which are network classes with a k-means start only
            self._prior, self._prior_weight = None, 0.0
        if first_logits is not None:
            first_logits = self._with_prior(first_logits)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=s.lr)
        self.iteration = 0
        self._crop = plan_crops(tuple(self.x.shape), self.n_classes, s.max_pixels, s.width, self.device)
        self._rng = np.random.default_rng(self.seed)
        self._mean_stats: torch.Tensor | None = None  # crops: running (B, N, C + 1) sums of y*x and y per pixel
        if self._crop is not None:
            first_logits = None  # computed tile by tile when first needed
            if start_means is not None:  # the k-means centres, equal class weights
                self._mean_stats = start_statistics(start_means, self.x)
        #: the settings this run was made with, every default resolved (``lam``, ``lr`` and ``alpha`` as made:
        #: the live values are the properties of the same names)
        self.run_settings = s.replace(
            init=init,
            color=color,
            position=float(position),
            contrast=self.contrast,
            diameter=self.diameter,
            device=str(self.device),
        )
        self._record = dict(  # what describes this run beside its settings
            # how the image was read for instances (post.objects: object_contrast, transmitted_prepared)
            objects=run_image.objects,
            crop=None if self._crop is None else list(self._crop["shape"]),
            work_shape=None if self._work is self.prepared else list(self._work.spatial_shape),
            prior=float(geodesic),
            spacing=None if self.spacing is None else list(self.spacing),
        )
        self._classes = classes.ClassWatch(self.n_classes)  # the classes the optimisation emptied, and their restarts
        self._stop = threading.Event()
        self._pending_scribbles: Any = _UNSET
        self._scribbles: torch.Tensor | None = None  # in network class ids, 0 = none
        self._stroke_means: tuple[torch.Tensor, torch.Tensor] | None = None  # see strokes.stroke_means
        self._logits: torch.Tensor | None = first_logits
        self._loss: torch.Tensor | None = None
        # label k -> network class order[k-1]; with a k-means start class j - 1 *is*
        # label j (centres darkest first, scribbled classes where the user put them)
        self._order = np.arange(self.n_classes) if init == "kmeans" else self._current_order()
        if scribbles is not None:
            self.set_scribbles(scribbles)

    def _network_input(self, s: Settings, color: str, strokes: bool, scribbles) -> tuple[float, float]:
        """Make ``self.x``, the working image with its position channels, and ``self._prior``, the strokes'
        evidence map; return the position weight and the evidence weight taken (0 where none)."""
        position = s.position
        geodesic = 0.0
        if position is None:  # position channels for colour photographs, built-in CNN only
            position = default_position(s.model, color, s.n_classes, strokes)
            # with a stroke in every class: the strokes' evidence, not coordinates (an unstroked class would
            # lose every pixel to the best stroked one, so with fewer strokes the coordinates stay)
            if strokes and position and PRIOR_WEIGHT and _every_class_stroked(scribbles, s.n_classes):
                geodesic, position = PRIOR_WEIGHT, PRIOR_POSITION
        self.x = torch.from_numpy(self._work.data).to(self.device)
        self.image_channels = self.x.shape[1]
        #: the channels whose mean orders the classes darkest first: CIELAB's lightness, else all
        self._brightness_channels = 1 if self.prepared.color == "lab" else self.image_channels
        if position:
            self.x = torch.cat([self.x, position_channels(self.x, position)], 1)
        #: with strokes on a photograph: the strokes' evidence (``strokes.stroke_prior``) times its weight,
        #: added to the network's logits, ``(B, N, *S)`` on the working grid; else None
        self._prior: torch.Tensor | None = None
        #: the evidence weight strokes painted later get (``_update_prior``), and the strokes of ``_prior``
        photo = s.position is None and default_position(s.model, color, s.n_classes, True) > 0
        self._prior_weight = PRIOR_WEIGHT if photo else 0.0
        self._prior_strokes: np.ndarray | None = None
        #: whether the map may use the region network learnt from photographs (a CIELAB photograph's copy)
        self._regions = photo and self.prepared.color == "lab"
        if geodesic:
            grid = self._to_work(self._check_scribbles(scribbles))
            prior = stroke_prior(self._work.data, grid, self.n_classes, regions=self._regions)
            self._prior = torch.from_numpy(geodesic * prior).to(self.device)
            self._prior_strokes = grid
        return position, geodesic

    def _update_prior(self, strokes: np.ndarray | None) -> None:
        """New strokes (label ids on the working grid, or None): the evidence map follows them where this run
        may take one, switched on once every class has a stroke and off when one has none."""
        if not self._prior_weight:
            return
        if strokes is None or not _every_class_stroked(strokes, self.n_classes):
            if self._prior is not None:
                self._prior = self._prior_strokes = self._logits = None
            return
        if self._prior_strokes is not None and np.array_equal(strokes, self._prior_strokes):
            return
        prior = stroke_prior(self._work.data, strokes, self.n_classes, regions=self._regions)
        net = np.empty_like(prior)
        net[:, self._order] = prior  # label k is network class order[k - 1]
        self._prior = torch.from_numpy(self._prior_weight * net).to(self.device)
        self._prior_strokes, self._logits = strokes, None

    def _start(self, init: str, scribbles) -> tuple[str, torch.Tensor | None, torch.Tensor | None]:
        """Put the network on the device in training mode and start it (``napari_levelset.method.start``).

        Returns the start taken (``init`` resolved), the k-means centres ``(N, C + D)``
        (None without a k-means start) and the first logits where they came cheap (else None).
        """
        init = resolve_init(init, self.model)
        self.model.to(self.device).train()
        start_means = first_logits = None
        #: the k-means start's variance, and which network classes started from their own strokes' mean
        self._spread: float | None = None
        self._seeded = torch.zeros(self.n_classes, dtype=torch.bool)
        if init == "kmeans" and hasattr(self.model, "init_from_centres"):
            start_scr = None
            if scribbles is not None:
                start_scr = torch.from_numpy(self._to_work(self._check_scribbles(scribbles))).to(self.device)
            start_means, self._spread, first_logits = kmeans_start(
                self.model, self.x, self.n_classes, self.seed, start_scr, self._brightness_channels
            )
            if start_scr is not None:  # the k-means start took the strokes' classes from them
                ids = torch.unique(start_scr).cpu()
                self._seeded[ids[ids > 0] - 1] = True
        check_head(self.model, self.n_classes)
        return init, start_means, first_logits

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
            raise InputError(
                f"the stored network state does not fit these settings ({exc.__class__.__name__})"
            ) from None
        self.model.to(self.device)
        order = np.asarray(state.get("order", np.arange(self.n_classes)), dtype=np.int64)
        if sorted(order.tolist()) != list(range(self.n_classes)):
            raise InputError("the stored label order does not fit the number of classes")
        self._order = order
        self.iteration = int(state.get("iteration", 0))
        self._logits = None
        self._loss = None

    def stop(self) -> None:
        """Ask a running ``run`` to end after the current iteration (thread-safe); asked between two runs, or
        after a run's last snapshot was made, it ends the next run before its first step (``clear_stop``
        forgets it)."""
        self._stop.set()

    def clear_stop(self) -> None:
        """Forget a ``stop`` that came after the last ``run`` had ended (it would end the next one at once)."""
        self._stop.clear()

    # -- optimisation --------------------------------------------------------------
    def _apply_pending(self) -> None:
        pending, self._pending_scribbles = self._pending_scribbles, _UNSET
        if pending is _UNSET:
            return
        self._update_prior(None if pending is None or not pending.any() else pending)
        if pending is None or not pending.any():
            self._scribbles = self._stroke_means = None
            return
        lut = np.concatenate([[0], self._order + 1])
        self._scribbles = torch.from_numpy(lut[pending]).to(self.device)
        self._stroke_means = stroke_means(self.x, self._scribbles, self.n_classes)
        stroked, centres = self._stroke_means
        new = stroked.cpu() & ~self._seeded
        if new.any() and self._spread is not None and hasattr(self.model, "seed_class"):
            # a class stroked for the first time restarts from its stroke's mean, but only where it holds (almost)
            # no pixels: restarting a class that holds a region throws away what it learnt, and with the other
            # classes' grown logits it then loses its region, strokes and all (coins, N 3, a label-1 stroke on
            # the background after a run: most of the background went to label 2)
            share = self._class_shares()
            empty = new & (share < EMPTY_CLASS_SHARE / self.n_classes)
            for k in torch.nonzero(empty).flatten().tolist():
                self.model.seed_class(k, centres[k], self._spread)
            self._seeded |= new
            if empty.any():
                self._logits = None

    @torch.no_grad()
    def _class_shares(self) -> torch.Tensor:
        """The share of the (working) image each network class holds now, ``(N,)`` on the CPU."""
        winners = self._ensure_logits().max(1).indices.flatten()
        return torch.bincount(winners, minlength=self.n_classes).cpu().double() / max(winners.numel(), 1)

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
            items, window = random_window(self._rng, self._crop, tuple(self.x.shape), self.device)
            x = x[items][window]
            scr = None if scr is None else scr[items][window[:1] + window[2:]]
        logits = self.model(x)
        if self._crop is None:
            logits = self._with_prior(logits)
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
        if self._logits is not None and self.iteration % classes.CHECK_EVERY == 0:
            self._keep_classes(self._logits.max(1).indices)
        return self._loss

    def _keep_classes(self, winners: torch.Tensor) -> None:
        """Restart, once, a class the optimisation emptied from the pixels fitted worst (``method.classes``)."""
        restart = getattr(self.model, "restart_class", getattr(self.model, "seed_class", None))
        if self._spread is None or self._scribbles is not None or restart is None:
            return
        empty = self._classes.emptied(winners)
        if empty:  # one at a time: the next check sees the pixels the restarted class took
            centre, split = classes.worst_fit_centre(self.x, winners, self.n_classes)
            restart(int(empty[0]), centre, self._spread, like=split)
            self._classes.reseeded[int(empty[0])] = self.iteration
            self._logits = None

    def _with_prior(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits`` of the whole working image plus the strokes' prior (where there is one)."""
        if self._prior is None or self._prior.shape != logits.shape:
            return logits
        return logits + self._prior.to(logits.dtype)

    # -- large images: random crops for optimisation, tiles for labels ---------------
    def _shrink_crops(self) -> bool:
        """After a failed allocation, plan crops of a quarter of the pixels now used; False at the floor."""
        max_pixels = smaller_crops(tuple(self.x.shape), self._crop)
        if max_pixels is None:
            return False
        self._crop = plan_crops(tuple(self.x.shape), self.n_classes, max_pixels, self.run_settings.width, self.device)
        self._logits = None
        return self._crop is not None

    def _running_means(self, probs: torch.Tensor, x: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Whole-image class means for a crop step (``napari_levelset.method.memory.running_means``)."""
        self._mean_stats, means = running_means(self._mean_stats, probs, x, items, self.x.shape[0])
        return means

    def _tiled_logits(self) -> torch.Tensor:
        """Whole-image logits computed tile by tile (eval mode: BatchNorm's running statistics)."""
        return tiled_logits(self.model, self.x, self._crop["max_pixels"], self.device)

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
        honoured = False  # a stop is forgotten once a snapshot said so: one that came later ends the next run
        try:
            for i in range(iterations):
                if self._stop.is_set():
                    self._check_loss()
                    honoured = True
                    yield self.snapshot(with_probs, done=True, stopped=True, t0=t0)
                    return
                self.step()
                if (i + 1) % every == 0 and i + 1 < iterations:
                    self._check_loss()
                    yield self.snapshot(with_probs, t0=t0)
            self._check_loss()
            honoured = self._stop.is_set()
            yield self.snapshot(with_probs, done=True, stopped=honoured, t0=t0)
        finally:
            if honoured:
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
                f"or lam (now {self.lam:g}; default {Settings().resolved().lam:g})"
            )

    # -- reading results -----------------------------------------------------------
    @torch.no_grad()
    def _ensure_logits(self) -> torch.Tensor:
        if self._logits is None:  # whole-image logits that do not fit are computed tile by tile; the whole
            # image's as the optimisation sees them (training mode), BatchNorm's running statistics kept
            self._logits = self._until_it_fits(
                lambda: (
                    self._with_prior(forward_keeping_statistics(self.model, self.x))
                    if self._crop is None
                    else self._tiled_logits()
                ),
                "tiles",
            )
        return self._logits

    @torch.no_grad()
    def _current_order(self) -> np.ndarray:
        probs = torch.softmax(self._ensure_logits(), dim=1)
        brightness = class_means(probs, self.x[:, : self._brightness_channels]).mean(dim=(0, 2))  # N
        return np.argsort(brightness.cpu().numpy(), kind="stable")

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
        labels = self.labels()
        if done:  # fewer labels than classes: say why (method.classes)
            self._record.pop("classes", None)
            why = classes.fewer_classes(
                labels, self._order, self._classes.reseeded, self.run_settings.init == "network", self.lam
            )
            if why:
                self._record["classes"] = why
                if self.run_settings.regions == "classes":  # regions and instances need not show every class
                    warnings.warn(why, classes.FewerClassesWarning, stacklevel=3)
        return Snapshot(
            iteration=self.iteration,
            loss=loss,
            labels=labels,
            probs=self.probabilities() if with_probs else None,
            done=done,
            stopped=stopped,
            elapsed=0.0 if t0 is None else time.perf_counter() - t0,
            settings=self.settings,
        )


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Any = _Unset()
