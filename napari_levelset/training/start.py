"""Where a training run starts (``init``) and the part of the network it trains (``finetune``).

A model file (``"unet"``, the shipped model, or a path) fixes the network's architecture
(``base``, ``levels``, ``embed``), its input channels and its colour handling; the run trains
any of its heads (a subset of its class counts, e.g. 2 for nuclei), and grey images are repeated
to a colour model's channels (as ``read_training_set`` does for a mixed set).

``init="auto"`` (the default of ``napari_levelset.training.train.train``) starts from the
shipped U-Net (trained without labels on photographs) whenever the run asks for its
architecture, heads it has and its colour handling: a start that already segments, so a short
run only has to adapt it.  Any other ``auto`` run, and ``None`` / ``"none"`` / ``"random"``,
starts from random weights.

``finetune`` says what the run trains: ``all``, ``last`` (the last full-resolution block of the
body, its 1x1 embedding convolution and the heads: the trunk gets no gradients, so a step costs
its forward pass only there) or ``head`` (the heads alone).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from napari_levelset.errors import InputError
from napari_levelset.nn.model_files import PRETRAINED, count_ranges, load_model, resolve_model_path
from napari_levelset.nn.unet import LevelSetUNet

__all__ = ["FINETUNE", "StartModel", "init_name", "read_init", "start_network", "trainable_parameters"]

#: what a run may train
FINETUNE = ("all", "last", "head")
#: ``init`` values that mean random weights
RANDOM = ("none", "random")


@dataclass
class StartModel:
    """A model file a run starts from.

    Parameters
    ----------
    net : napari_levelset.nn.unet.LevelSetUNet
        Its network.
    metadata : dict
        Its metadata.
    name : str
        The name it is known by (``"unet"`` or the file's name, no folders).
    """

    net: LevelSetUNet
    metadata: dict
    name: str

    @property
    def needs(self) -> str:
        """What the model can be fine-tuned with, in words."""
        return (
            f"{self.net.in_channels}-channel images (grey ones are repeated), class counts among "
            f"{count_ranges(self.net.head_counts)}, color {self.metadata.get('color', 'rgb')!r}"
        )


def init_name(init) -> str | None:
    """``init`` as the metadata records it.

    Parameters
    ----------
    init : str or os.PathLike or None
        ``"unet"`` or a model file's path.

    Returns
    -------
    str or None
        A shipped model's name, or the file's name without its folder; None for None.

    Examples
    --------
    >>> init_name("/data/models/nuclei.pt"), init_name("unet")
    ('nuclei.pt', 'unet')
    """
    if init is None or (isinstance(init, str) and init.lower() in RANDOM):
        return None
    if isinstance(init, str) and (init in PRETRAINED or init == "auto"):
        return init
    return Path(init).name


def read_init(
    init: str | os.PathLike | None, heads: list[int] | None, color: str, architecture: dict | None = None
) -> StartModel | None:
    """The model file ``init`` (None: a fresh start), checked to take ``heads`` and ``color``.

    Parameters
    ----------
    init : str or os.PathLike or None
        ``"auto"`` (the shipped model where it fits the run, else a fresh start), ``"unet"`` (the
        shipped model), the path of a model file, or None / ``"none"`` / ``"random"``.
    heads : list of int or None
        The class counts to train (each must be a head of the model); None: all its heads.
    color : str
        The run's image preparation (``rgb`` or ``lab``), which must be the model's.
    architecture : dict or None
        ``base``, ``levels``, ``embed`` the run asks for: ``"auto"`` takes the shipped model only
        where they are its own (None: any).

    Returns
    -------
    StartModel or None

    Raises
    ------
    InputError
        When the model cannot be read, lacks a head asked for, or was trained with another colour
        handling (the message says what the model takes).
    """
    if init is None or (isinstance(init, str) and init.lower() in RANDOM):
        return None
    if isinstance(init, str) and init == "auto":
        try:
            start = read_init("unet", heads, color)
        except InputError:  # not installed, or other heads or colour than asked for
            return None
        own = {k: start.net.config[k] for k in ("base", "levels", "embed")}
        return start if architecture is None or own == dict(architecture) else None
    net, meta = load_model(resolve_model_path(init))
    start = StartModel(net, meta, init_name(init))
    heads = list(net.head_counts) if heads is None else heads
    missing = [n for n in heads if n not in net.head_counts]
    trained = meta.get("color", "rgb")
    if missing or trained != color:
        raise InputError(
            f"cannot fine-tune {start.name} with class counts {count_ranges(heads)} and color {color!r}: "
            f"it takes {start.needs}"
        )
    return start


def start_network(config: dict, seed: int, start: StartModel | None) -> LevelSetUNet:
    """The network a run starts from: seeded with ``seed``; with ``start``'s body and heads where given.

    Parameters
    ----------
    config : dict
        ``heads``, ``in_channels``, ``base``, ``levels``, ``embed``.
    seed : int
        Seed of a fresh network's weights.
    start : StartModel or None
        The model to start from (its architecture must be ``config``'s, its heads include ``config``'s).

    Returns
    -------
    LevelSetUNet

    Raises
    ------
    InputError
        When ``start`` has another architecture or channel count than ``config`` asks for.
    """
    torch.manual_seed(int(seed))
    net = LevelSetUNet(
        config["in_channels"], config["heads"], base=config["base"], levels=config["levels"], embed=config["embed"]
    )
    if start is not None:
        mine = {k: v for k, v in net.config.items() if k != "heads"}
        theirs = {k: v for k, v in start.net.config.items() if k != "heads"}
        if mine != theirs or not set(config["heads"]) <= set(start.net.head_counts):
            raise InputError(f"cannot fine-tune {start.name} as asked: it takes {start.needs}")
        keep = {str(n) for n in config["heads"]}
        state = {
            k: v for k, v in start.net.state_dict().items() if not k.startswith("heads.") or k.split(".")[1] in keep
        }
        net.load_state_dict(state)
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
