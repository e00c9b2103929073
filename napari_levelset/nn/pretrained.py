"""The network a ``Segmenter`` runs for a pretrained U-Net: ``PretrainedNetwork`` and ``build_network``.

``build_network`` loads a model file (``napari_levelset.nn.model_files``) and returns a
``PretrainedNetwork`` for one class count ``N``: channel adapter + the U-Net's body
(``napari_levelset.nn.unet``) + the head for ``N``.  What a per-image fine-tune with the
``Segmenter`` trains is ``finetune``: ``"head"`` (default: the body is frozen,
so each iteration costs a 1x1 convolution plus the loss), ``"last"`` (the last
full-resolution block of the body too) or ``"all"``.  The frozen part's output
is computed once per image and cached, so the fine-tune loop runs only the
trainable part.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from napari_levelset.errors import InputError
from napari_levelset.nn.model_files import load_model, resolve_model_path
from napari_levelset.nn.models import conv_layer
from napari_levelset.nn.tiling import tiled_apply
from napari_levelset.nn.unet import LevelSetUNet

__all__ = ["CACHE_BYTES", "PretrainedNetwork", "build_network"]

#: Largest embedding (bytes) kept between calls when the body is frozen.
CACHE_BYTES = 1 << 30


class PretrainedNetwork(nn.Module):
    """One class count of a ``LevelSetUNet``, ready for ``Segmenter``.

    Maps the normalised image ``(B, C, *S)`` to logits ``(B, N, *S)``.  Handles
    the channel adaptation (``adapt``: ``repeat`` grey to the trained channels,
    ``lightness`` grey as CIELAB L with a = b = 0 for a CIELAB model,
    ``drop-alpha`` 4 to 3, ``mean`` colour to grey, or none) and a 2D model on
    a 3D image (applied slice by slice along the first spatial axis).

    ``finetune`` says what a ``Segmenter`` run trains: ``head`` (the 1x1 head;
    the body is frozen), ``last`` (the last full-resolution block of the body
    and the head) or ``all``.  The frozen part's output is computed without
    gradients and cached for the input tensor last seen, so the fine-tune loop
    (always the same image) only runs the trainable part.  Calls without
    gradients on inputs larger than ``tile`` go through
    ``napari_levelset.nn.tiling``, so only one tile's activations exist at a time.

    Parameters
    ----------
    unet : LevelSetUNet
        The loaded model; its body is shared (not copied), and so is the head for
        ``n_classes`` when it has one.
    n_classes : int
        N.  Without a trained head for N the head is new (zeros; ``head_trained`` False)
        and only usable from a k-means start (:meth:`init_from_centres`).
    in_channels : int
        Channels of the image given (adapted to the model's, see above).
    ndim : int
        Spatial axes of the image, 2 or 3.
    finetune : {"head", "last", "all"}
        What a ``Segmenter`` run trains.
    tile : int or None
        Tile size (pixels) for gradient-free calls on large inputs; None: 512 in 2D, 128 in 3D.
    extra_channels : int
        Trailing input channels (pixel coordinates) that go to the head only; their head
        weights start at zero.
    model_color : str
        The preparation the model was trained with (``rgb`` or ``lab``).

    Raises
    ------
    InputError
        When ``ndim`` is not 2 or 3, a 3D model gets a 2D image, ``finetune`` is unknown, or
        the model cannot take ``in_channels`` channels.
    """

    #: read by ``settings.model_kind`` (a pretrained network takes the U-Net's per-model defaults) and by
    #: ``napari_levelset.nn.model_files.save_model`` (it is saved as a one-head ``LevelSetUNet``)
    pretrained = True

    def __init__(
        self,
        unet: LevelSetUNet,
        n_classes: int,
        in_channels: int,
        ndim: int,
        finetune: str = "head",
        tile: int | None = None,
        extra_channels: int = 0,
        model_color: str = "rgb",
    ):
        super().__init__()
        self.body = unet.body
        #: False for a class count the model has no trained head for: the head is then new
        #: (zeros) and only usable from a k-means start (``init_from_centres``)
        self.head_trained = str(n_classes) in unet.heads
        self.head_counts = list(unet.head_counts)
        if self.head_trained:
            self.head = unet.heads[str(n_classes)]
        else:
            ref = next(iter(unet.heads.values()))
            self.head = conv_layer(unet.ndim)(ref.in_channels, int(n_classes), 1)
            with torch.no_grad():
                self.head.weight.zero_()
                self.head.bias.zero_()
        self.extra_channels = int(extra_channels)
        if self.extra_channels:  # head-only inputs (pixel coordinates): new head columns, starting at zero
            old = self.head
            self.head = conv_layer(unet.ndim)(old.in_channels + self.extra_channels, old.out_channels, 1)
            with torch.no_grad():
                self.head.weight.zero_()
                self.head.weight[:, : old.in_channels] = old.weight
                self.head.bias.copy_(old.bias)
        self.n_classes = int(n_classes)
        self.model_channels = unet.in_channels
        self.in_channels = int(in_channels)
        #: the image preparation the model was trained with (``rgb`` or ``lab``)
        self.model_color = model_color
        self.adapt = _channel_adaptation(self.in_channels, self.model_channels, model_color)
        if ndim not in (2, 3):
            raise InputError(f"only 2D and 3D images are supported, got ndim={ndim}")
        if unet.ndim == 3 and ndim == 2:
            raise InputError("this is a 3D model: it cannot segment 2D images")
        self.ndim = int(ndim)
        self.slicewise = unet.ndim == 2 and ndim == 3
        if finetune not in ("head", "last", "all"):
            raise InputError(f"finetune must be 'head', 'last' or 'all', got {finetune!r}")
        self.finetune = finetune
        if finetune == "head":
            self.body.requires_grad_(False)
        elif finetune == "last":
            self.body.requires_grad_(False)
            for m in self.body.tail_modules():
                m.requires_grad_(True)
        self.tile = tile
        self._cache: tuple[Any, torch.Tensor, torch.Tensor] | None = None  # (key, output, input)

    # geometry for napari_levelset.nn.tiling
    @property
    def multiple(self) -> tuple[int, ...]:
        """Per spatial axis, the multiple inputs are padded to (1 along the slices of a 2D model on 3D data)."""
        m = self.body.multiple
        return (1, m, m) if self.slicewise else (m,) * self.ndim

    @property
    def receptive_radius(self) -> tuple[int, ...]:
        """Per spatial axis, the body's receptive radius in pixels (0 across slices of a 2D model on 3D data)."""
        r = self.body.receptive_radius
        return (0, r, r) if self.slicewise else (r,) * self.ndim

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The image channels and the head-only extra channels of the input."""
        if x.shape[1] != self.in_channels + self.extra_channels:
            raise InputError(
                f"the network was built for {self.in_channels + self.extra_channels} channels, got {x.shape[1]}"
            )
        if not self.extra_channels:
            return x, None
        return x[:, : self.in_channels], x[:, self.in_channels :]

    def _adapt(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_channels:
            raise InputError(f"the network was built for {self.in_channels} channels, got {x.shape[1]}")
        if self.adapt == "repeat":
            x = x.expand(x.shape[0], self.model_channels, *x.shape[2:])
        elif self.adapt == "drop-alpha":
            x = x[:, :3]
        elif self.adapt == "mean":
            x = x.mean(1, keepdim=True)
        elif self.adapt == "lightness":  # grey = CIELAB lightness with a = b = 0
            x = torch.cat([x, x.new_zeros((x.shape[0], self.model_channels - 1, *x.shape[2:]))], 1)
        return x

    def _slices(self, fn, x: torch.Tensor) -> torch.Tensor:
        """``fn`` on ``x`` as it is, or slice by slice for a 2D body on 3D data."""
        if not self.slicewise:
            return fn(x)
        b, c, z = x.shape[:3]
        y = fn(x.transpose(1, 2).reshape(b * z, c, *x.shape[3:]))
        return y.reshape(b, z, y.shape[1], *y.shape[2:]).transpose(1, 2)

    def _crop(self, y: torch.Tensor, spatial) -> torch.Tensor:
        if tuple(y.shape[2:]) == tuple(spatial):
            return y
        return y[(slice(None), slice(None)) + tuple(slice(0, s) for s in spatial)]

    @staticmethod
    def _head_cat(feats: torch.Tensor, xa: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        """The head's input: ``[embedding, image]`` and the extra (position) channels if any."""
        return torch.cat([feats, xa] if extra is None else [feats, xa, extra], 1)

    def _head(self, feats: torch.Tensor, xa: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        return self._head_conv(self._head_cat(feats, xa, extra))

    def _head_conv(self, z: torch.Tensor) -> torch.Tensor:
        if self.slicewise:  # the 2D 1x1 head on every slice = a 1x1x1 3D convolution
            return F.conv3d(z, self.head.weight.unsqueeze(2), self.head.bias)
        return self.head(z)

    def _whole(self, x: torch.Tensor) -> torch.Tensor:
        """Logits from scratch (no cache, no tiling)."""
        x, extra = self._split(x)
        xa = self._adapt(x)
        return self._head(self._slices(self.body, xa), xa, extra)

    # the frozen part (cached) and the trainable part of the network
    def _frozen_fn(self, xa: torch.Tensor) -> torch.Tensor:
        if self.finetune == "last":  # the trunk, on the input padded to a multiple
            return self._slices(lambda t: self.body.trunk(self.body.pad(t)), xa)
        return self._slices(self.body, xa)

    def _trainable(self, frozen: torch.Tensor, xa: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        if self.finetune == "last":
            feats = self._crop(self._slices(self.body.tail, frozen), xa.shape[2:])
        else:
            feats = frozen
        return self._head(feats, xa, extra)

    def _frozen(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen part's output, without gradients, tiled when large, cached for the last input."""
        key = _cache_key(x, self.finetune)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        with torch.no_grad():
            xa = self._adapt(x)
            if self._big(x):
                if self.finetune == "last":  # tile the padded input: the output keeps the padding
                    xa = self._slices(self.body.pad, xa)
                    fn = lambda t: self._slices(self.body.trunk, t)  # noqa: E731
                else:
                    fn = self._frozen_fn
                out = tiled_apply(
                    fn, xa, radius=self.receptive_radius, multiple=self.multiple, tile=self._tile(), out_device=x.device
                )
            else:
                out = self._frozen_fn(xa)
        if out.numel() * out.element_size() <= CACHE_BYTES:
            self._cache = (key, out, x)  # x is held so that its memory cannot pass to another input
        return out

    def _tile(self) -> int:
        return self.tile or (512 if self.ndim == 2 else 128)

    def _big(self, x: torch.Tensor) -> bool:
        t = self._tile()
        return any(s > t for s in (x.shape[3:] if self.slicewise else x.shape[2:]))

    def clear_cache(self) -> None:
        """Forget the cached output of the frozen part (it is recomputed on the next call)."""
        self._cache = None

    @property
    def takes_centres(self) -> bool:
        """Whether ``init_from_centres`` can start the head: the image's channels reach it unchanged."""
        return self.adapt != "mean"

    @torch.no_grad()
    def init_from_centres(self, centres: torch.Tensor, spread: float) -> None:
        """Restart the head from this image's k-means, keeping the pretrained body.

        The head is a 1x1 convolution of ``[embedding, image]``: its image part is
        set to the soft nearest-centre assignment (as ``PerImageCNN.init_from_centres``)
        and its embedding part to zero, so the first labels are the k-means ones
        and a fine-tune learns how to use the body's features for this image's
        classes.  Needs the image channels to reach the head unchanged (no colour
        to grey adaptation).  ``centres`` may go on over the extra (position)
        channels, which then get their part of the assignment too.

        Parameters
        ----------
        centres : torch.Tensor
            Float ``(n_classes, k)``: class means over the image channels, optionally
            followed by the extra channels (e.g. ``cluster.init_centres``).
        spread : float
            Mean squared distance of a pixel to its centre (floored at 1e-4).

        Raises
        ------
        InputError
            When the model averages colour to grey (``takes_centres`` is False).
        """
        rows, bias = self._mixture_rows(centres, spread)
        self.head.weight.copy_(rows.view_as(self.head.weight))
        self.head.bias.copy_(bias)
        self.head_trained = True  # started from this image: usable as it is

    def _mixture_rows(self, centres: torch.Tensor, spread: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Head rows ``(n, in)`` and biases ``(n,)`` of the soft nearest-centre assignment to ``centres``
        ``(n, k)`` (zero on the embedding), as ``init_from_centres`` sets them; ``InputError`` when the model
        averages colour to grey (``takes_centres`` is False)."""
        if not self.takes_centres:
            raise InputError("a k-means start needs the model's input channels; this model averages colour to grey")
        s = max(float(spread), 1e-4)
        centres = centres.to(self.head.weight)
        k = min(int(centres.shape[1]), self.in_channels, self.model_channels)
        e = min(max(int(centres.shape[1]) - self.in_channels, 0), self.extra_channels)
        used = torch.cat([centres[:, :k], centres[:, self.in_channels : self.in_channels + e]], 1)
        flat = torch.zeros(centres.shape[0], self.head.weight[0].numel()).to(self.head.weight)
        feats = flat.shape[1] - self.model_channels - self.extra_channels
        flat[:, feats : feats + k] = centres[:, :k] / s
        if e:
            start = feats + self.model_channels
            flat[:, start : start + e] = centres[:, self.in_channels : self.in_channels + e] / s
        return flat, -(used**2).sum(1) / (2 * s)

    @torch.no_grad()
    def restart_class(self, k: int, centre: torch.Tensor, spread: float, like: int | None = None) -> None:
        """Restart head class ``k`` from a new mean, as ``PerImageCNN.seed_class`` does.

        The image part of the head's row ``k`` becomes the soft assignment to ``centre`` (as
        :meth:`init_from_centres` sets it), its embedding part that of row ``like`` (None:
        the mean of the other rows).

        Parameters
        ----------
        k : int
            Class index, 0..n_classes-1.
        centre : torch.Tensor
            Float ``(k_channels,)``: the class's new mean over the image (and extra) channels.
        spread : float
            The assignment's variance (floored at 1e-4).
        like : int or None
            The class whose embedding weights class ``k`` takes.

        Raises
        ------
        InputError
            When the model averages colour to grey (``takes_centres`` is False).
        """
        rows, bias = self._mixture_rows(centre[None], spread)
        flat = self.head.weight.view(self.n_classes, -1)
        feats = flat.shape[1] - self.model_channels - self.extra_channels
        others = [j for j in range(self.n_classes) if j != k] if like is None else [like]
        rows[0, :feats] = flat[others, :feats].mean(0)
        flat[k] = rows[0]
        self.head.bias[k] = bias[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for ``x`` (cached frozen part, tiled when large and without gradients).

        Parameters
        ----------
        x : torch.Tensor
            Float ``(B, in_channels + extra_channels, *S)``, the prepared image.

        Returns
        -------
        torch.Tensor
            Float ``(B, n_classes, *S)``.

        Raises
        ------
        InputError
            When ``x`` has another number of channels.
        """
        if self.finetune == "all" and torch.is_grad_enabled() and any(p.requires_grad for p in self.body.parameters()):
            return self._whole(x)
        if self.finetune == "all":  # nothing is frozen: no cache (the body changes), tiled when large
            if self._big(x):
                return tiled_apply(
                    self._whole,
                    x,
                    radius=self.receptive_radius,
                    multiple=self.multiple,
                    tile=self._tile(),
                    out_device=x.device,
                )
            return self._whole(x)
        img, extra = self._split(x)
        if self.finetune == "head":  # everything but the 1x1 head is fixed: keep its whole input
            return self._head_conv(self._head_input(x, img, extra))
        return self._trainable(self._frozen(img), self._adapt(img), extra)

    def _head_input(self, x: torch.Tensor, img: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        """``[embedding, image, extra]`` for the head, cached for the last input (in place of the embedding)."""
        key = _cache_key(x, "head-input")
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        z = self._head_cat(self._frozen(img), self._adapt(img), extra)
        if z.numel() * z.element_size() <= CACHE_BYTES:
            self._cache = (key, z, x)  # replaces the embedding's entry: one copy, not two
        return z

    def _apply(self, fn, *args, **kwargs):  # .to(device) etc. invalidate the cache
        self._cache = None
        return super()._apply(fn, *args, **kwargs)


def _cache_key(x: torch.Tensor, what: str) -> tuple:
    """What identifies an input tensor's contents while the cache holds the tensor.

    The cache keeps a reference to the input, so no other tensor can take over
    its memory (crops and tiles are temporaries whose memory is reused); the
    version counter, shared by all views of that memory, changes on every
    in-place write.
    """
    return (x.data_ptr(), x._version, tuple(x.shape), x.stride(), x.dtype, str(x.device), what)


def _channel_adaptation(cin: int, cmodel: int, model_color: str = "rgb") -> str:
    if cin == cmodel:
        return "none"
    if cin == 1:
        return "lightness" if model_color == "lab" and cmodel == 3 else "repeat"
    if cin == 4 and cmodel == 3:
        return "drop-alpha"
    if cmodel == 1:
        return "mean"
    raise InputError(
        f"the model was trained on {cmodel}-channel images and cannot take {cin} channels"
        " (grey images are repeated, RGBA loses alpha, colour becomes grey for a grey model)"
    )


def build_network(
    model: str | os.PathLike = "unet",
    in_channels: int = 3,
    n_classes: int = 4,
    ndim: int = 2,
    *,
    finetune: str = "head",
    tile: int | None = None,
    color: str | None = None,
    extra_channels: int = 0,
) -> PretrainedNetwork:
    """The network ``Segmenter`` uses for ``model`` other than ``cnn``.

    ``model`` is ``"unet"`` (the shipped model, trained on BSDS500) or the path
    of a model file.  ``in_channels`` of the image (grey is repeated for an
    RGB model and goes in as lightness for a CIELAB one), ``n_classes`` (a
    head must exist for it), ``ndim`` 2 or 3 (a 2D model is applied per slice
    of a volume).  ``finetune``: ``"head"``
    (default; the body is frozen and its embedding cached), ``"last"`` (the
    last full-resolution block trains too) or ``"all"``.
    ``tile``: tile size for gradient-free inference on large inputs.
    ``color``: the image preparation the caller uses (``rgb`` or ``lab``);
    when given it must be the one the model was trained with (or ``rgb``, i.e.
    normalised, for a grey image and a CIELAB model).
    ``extra_channels``: trailing input channels (pixel coordinates) that go to
    the class head only, beside the embedding and the image; their head
    weights start at zero (or from a k-means start) and are learnt in a
    fine-tune.

    Parameters
    ----------
    model : str or os.PathLike
        ``"unet"`` (the shipped model) or the path of a model file.
    in_channels : int
        Channels of the prepared image.
    n_classes : int
        N (>= 2).
    ndim : int
        Spatial axes of the image, 2 or 3.
    finetune : {"head", "last", "all"}
        What a fine-tune trains.
    tile : int or None
        Tile size (pixels) for gradient-free inference on large inputs.
    color : str or None
        The image preparation the caller uses (``rgb`` or ``lab``), checked against the model's.
    extra_channels : int
        Head-only trailing input channels (pixel coordinates).

    Returns
    -------
    PretrainedNetwork
        With ``metadata`` (the model file's) as an attribute.

    Raises
    ------
    InputError
        When ``n_classes < 2``, the model cannot be found or read, ``color`` differs from the
        model's, or the network cannot take the image (see :class:`PretrainedNetwork`).

    Examples
    --------
    >>> import torch
    >>> net = build_network("unet", in_channels=1, n_classes=3)
    >>> net(torch.rand(1, 1, 64, 64)).shape, net.finetune, net.head_trained
    (torch.Size([1, 3, 64, 64]), 'head', True)
    """
    n_classes = int(n_classes)
    if n_classes < 2:
        raise InputError(f"need at least 2 classes, got {n_classes}")
    net, meta = load_model(resolve_model_path(model))
    trained = meta.get("color", "rgb")
    # a grey image is normalised (color "rgb") and goes into a CIELAB model as lightness
    grey_on_lab = color == "rgb" and _channel_adaptation(int(in_channels), net.in_channels, trained) == "lightness"
    if color is not None and color != trained and not grey_on_lab:
        raise InputError(f"this model was trained on {trained!r} input, not {color!r}: use color={trained!r}")
    out = PretrainedNetwork(
        net,
        n_classes,
        in_channels=int(in_channels),
        ndim=int(ndim),
        finetune=finetune,
        tile=tile,
        extra_channels=extra_channels,
        model_color=trained,
    )
    out.metadata = meta
    return out
