"""Reading a run: a ``Segmenter``'s labels and probabilities, and the regions and instances made of them.

``ResultsMixin`` is a base of ``napari_levelset.method.segmenter.Segmenter``: what the
current state of a run reads as.  Labels and probabilities come from the network's
logits on the grid it works on, interpolated back to the full grid where that is a
smaller working copy (``napari_levelset.method.strokes.upsample_logits``); regions
and instances are made by ``napari_levelset.post`` with the model's defaults.

Shapes: results have the input's non-channel shape (``Prepared.out_shape``);
probabilities have ``N`` classes in front.
"""

from __future__ import annotations

import numpy as np
import torch

from napari_levelset import validate
from napari_levelset.io.prepare import Prepared, prepare_image
from napari_levelset.io.write import labels_dtype
from napari_levelset.method.strokes import upsample_logits
from napari_levelset.post.instances import foreground_classes, instance_labels_per_item
from napari_levelset.post.regions import to_regions
from napari_levelset.settings import MERGE_OPTIONS, region_defaults

__all__ = ["ResultsMixin"]


class ResultsMixin:
    """Labels, probabilities, merge features, regions and instances of a ``Segmenter``'s current state.

    The ``Segmenter`` sets the attributes annotated here and provides ``_ensure_logits()``: the
    current logits ``(B, N, *s)`` on the grid the network works on.
    """

    n_classes: int
    #: the image on its full grid
    prepared: Prepared
    #: what the network works on: ``prepared`` itself or a smaller working copy
    _work: Prepared
    #: the network's input ``(B, C + D, *s)``
    x: torch.Tensor
    device: torch.device
    #: label ``k`` is network class ``_order[k - 1]``
    _order: np.ndarray
    #: ``"cnn"``, ``"unet"``, ...: the key of the per-model tables (``region_defaults``, ``MERGE_OPTIONS``)
    _model_kind: str
    #: ``(image, channel_axis, spatial_dims)`` where merging compares CIELAB, else None; the features, once made
    _merge_source: tuple | None
    _merge_features: np.ndarray | None
    spacing: tuple | None
    diameter: float | None

    def _ensure_logits(self) -> torch.Tensor:  # pragma: no cover - provided by Segmenter
        raise NotImplementedError

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
            lab = self._lut()[self._ensure_logits().max(1).indices]  # max: 5x faster than argmax on CPU
        else:  # item by item: the full-size logits of a stack need not exist at once
            lab = torch.cat([self._lut()[self._full_logits(b).max(1).indices] for b in range(self.x.shape[0])])
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
            p = np.stack(
                [
                    torch.softmax(self._full_logits(b), dim=1)[0, order].float().cpu().numpy()
                    for b in range(self.x.shape[0])
                ],
                axis=1,
            )
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

    def regions(
        self,
        labels: np.ndarray | None = None,
        mode: str = "connected",
        *,
        min_region: float | None = None,
        merge: float | None = None,
        diameter: float | None = None,
        foreground=None,
    ) -> np.ndarray:
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
        >>> from napari_levelset import Segmenter
        >>> seg = Segmenter(np.eye(8), 2)
        >>> lab = np.ones((8, 8), np.uint8); lab[:, 4:] = 2; lab[2:4, 1:3] = 2
        >>> int(seg.regions(lab, "connected", min_region=1).max())
        3
        """
        min_region = validate.optional_number("min_region", min_region)
        merge = validate.optional_number("merge", merge)
        if mode == "instances":
            return self.instances(diameter=diameter, foreground=foreground, min_region=min_region)
        labels = self.labels() if labels is None else labels
        kind = self._model_kind
        default_merge, default_min_region = region_defaults(kind, mode)
        return to_regions(
            labels,
            mode,
            min_region=default_min_region if min_region is None else min_region,
            features=self.features() if mode == "merged" else None,
            merge=default_merge if merge is None else merge,
            spatial_dims=len(self.prepared.spatial_shape),
            **MERGE_OPTIONS[kind],
        )

    def instances(
        self,
        *,
        diameter: float | None = None,
        foreground=None,
        min_region: float | None = None,
        probs: np.ndarray | None = None,
    ) -> np.ndarray:
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
        p = probs[[k - 1 for k in fg]].sum(0).reshape((-1,) + out_shape[len(out_shape) - ndim :])
        d = self.diameter if diameter is None else diameter
        return instance_labels_per_item(p, diameter=d, spacing=self.spacing, min_region=min_region).reshape(out_shape)
