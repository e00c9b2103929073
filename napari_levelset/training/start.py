"""The network a training run starts from and the part of it the run trains.

``init="auto"`` (the default of ``napari_levelset.training.train.train``) starts from the
shipped U-Net (``"unet"``, trained without labels on photographs) whenever the run asks
for its architecture (``base``, ``levels``, ``embed``), heads it has and its colour
handling: a start that already segments, so a short run only has to adapt it.  Grey
images are then repeated to its 3 input channels (as ``PretrainedNetwork`` does when it
segments a grey image with it).  Any other ``auto`` run starts from random weights.

``finetune`` says what the run trains: ``all``, ``last`` (the last full-resolution
block of the body, its 1x1 embedding convolution and the heads: the trunk gets no
gradients, so a step costs its forward pass only there) or ``head`` (the heads alone),
the words of ``Settings.finetune``.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from napari_levelset.errors import InputError
from napari_levelset.nn.model_files import load_model, resolve_model_path
from napari_levelset.nn.unet import LevelSetUNet

__all__ = ["FINETUNE", "network_start", "repeat_channels", "start_network", "trainable_parameters"]

#: what a run may train
FINETUNE = ("all", "last", "head")
_RANDOM = (None, "none", "random")


def network_start(init, config: dict, color: str) -> tuple[str | None, int]:
    """Resolve ``init``: ``(the model file to start from or None, the network's input channels)``.

    Parameters
    ----------
    init : str or os.PathLike or None
        ``"auto"`` (the shipped U-Net where it fits the run, else random), ``None`` /
        ``"none"`` / ``"random"`` (random weights), ``"unet"`` or a model file.
    config : dict
        The run's ``heads``, ``in_channels`` (of the data), ``base``, ``levels``, ``embed``.
    color : str
        The run's colour handling (``rgb`` or ``lab``).

    Returns
    -------
    init : str or None
        The model file's path (None: random start).
    in_channels : int
        The network's input channels: the data's, or the start's when the data are grey.

    Raises
    ------
    InputError
        When a named start has another architecture, lacks a head asked for, or takes
        another channel count than the data's (grey data go to any).
    """
    if (isinstance(init, str) and init.lower() in _RANDOM[1:]) or init is None:
        return None, int(config["in_channels"])
    auto = isinstance(init, str) and init == "auto"
    try:
        path = resolve_model_path("unet" if auto else init)
    except InputError:
        if auto:  # the shipped model is not installed
            return None, int(config["in_channels"])
        raise
    start, meta = load_model(path)
    cin, data_cin = int(start.in_channels), int(config["in_channels"])
    body = {k: start.body.config.get(k) for k in ("base", "levels", "embed", "ndim")}
    wanted = {k: config[k] for k in ("base", "levels", "embed")} | {"ndim": 2}
    fits = body == wanted and set(config["heads"]) <= set(start.head_counts) and data_cin in (1, cin)
    if auto:
        ok = fits and meta.get("color", "rgb") == color
        return (str(path), cin) if ok else (None, data_cin)
    if not fits:
        raise InputError(
            f"{init} has a different architecture ({body}), heads {start.head_counts} or input channels ({cin}) "
            f"than asked for ({wanted}, heads {config['heads']}, {data_cin} channels)"
        )
    return str(path), cin


def start_network(config: dict, seed: int, init: str | os.PathLike | None) -> LevelSetUNet:
    """The network a run starts from: seeded with ``seed``, the body and the asked heads of ``init`` if given.

    Parameters
    ----------
    config : dict
        ``heads``, ``in_channels``, ``base``, ``levels``, ``embed`` of the network.
    seed : int
        torch's seed for the random weights.
    init : str or os.PathLike or None
        A model file checked by ``network_start`` (None: random weights).

    Returns
    -------
    LevelSetUNet
        In training mode, on the CPU.
    """
    torch.manual_seed(int(seed))
    net = LevelSetUNet(
        config["in_channels"], config["heads"], base=config["base"], levels=config["levels"], embed=config["embed"]
    )
    if init is not None:
        start, _ = load_model(init)
        net.body.load_state_dict(start.body.state_dict())
        for n in config["heads"]:
            net.heads[str(n)].load_state_dict(start.heads[str(n)].state_dict())
    return net


def trainable_parameters(net: LevelSetUNet, finetune: str) -> list[torch.nn.Parameter]:
    """Freeze what ``finetune`` leaves alone (``requires_grad`` False) and return the rest.

    Parameters
    ----------
    net : LevelSetUNet
        The network.
    finetune : {"all", "last", "head"}
        What the run trains.

    Returns
    -------
    list of torch.nn.Parameter
        The parameters the optimiser gets.

    Raises
    ------
    InputError
        For an unknown ``finetune``.
    """
    if finetune not in FINETUNE:
        raise InputError(f"finetune must be one of {', '.join(FINETUNE)}, got {finetune!r}")
    keep = [net.heads]
    if finetune == "all":
        keep.append(net.body)
    elif finetune == "last":
        keep.extend(net.body.tail_modules())
    trained = {id(p) for m in keep for p in m.parameters()}
    for p in net.parameters():
        p.requires_grad_(id(p) in trained)
    return [p for p in net.parameters() if p.requires_grad]


def repeat_channels(data: list[np.ndarray], channels: int) -> list[np.ndarray]:
    """Grey ``(1, H, W)`` training images repeated to ``channels`` (others as they are)."""
    return [np.repeat(d, channels, 0) if d.shape[0] == 1 and channels > 1 else d for d in data]
