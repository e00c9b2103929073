"""Checkpoints of a training run: where they go (``checkpoint_path``) and resuming from one, every
value checked (a checkpoint made otherwise, or damaged, is an ``InputError`` that says what to do)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch

from napari_levelset.errors import InputError
from napari_levelset.nn.model_files import load_model, read_model_file
from napari_levelset.nn.unet import LevelSetUNet

__all__ = ["checkpoint_path", "resume_from"]


def checkpoint_path(out_path: str | os.PathLike) -> Path:
    """The checkpoint file of a training run writing ``out_path``: ``<out_path>.ckpt``.

    Parameters
    ----------
    out_path : str or os.PathLike
        The model file.

    Returns
    -------
    pathlib.Path
        The checkpoint's path.

    Examples
    --------
    >>> checkpoint_path("models/mine.pt").as_posix()
    'models/mine.pt.ckpt'
    """
    return Path(str(out_path) + ".ckpt")


_FRESH = "delete it or train with resume=False (--no-resume)"


def _checkpoint_progress(blob: dict, ckpt: Path, steps: int) -> tuple[int, list[float]]:
    """``(step, losses)`` of a checkpoint: a whole step in 0..steps and one finite loss per step done."""
    step = blob.get("step")
    if (
        isinstance(step, torch.Tensor)
        and step.numel() == 1
        and not step.is_floating_point()
        and step.dtype != torch.bool
    ):
        step = int(step)
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= steps:
        raise InputError(f"checkpoint {ckpt} has step {repr(step)[:40]}, not a whole number in 0..{steps}; {_FRESH}")
    losses = blob.get("losses")
    if not isinstance(losses, (list, tuple)) or len(losses) != step:
        what = f"{len(losses)} losses" if isinstance(losses, (list, tuple)) else f"losses {repr(losses)[:40]}"
        raise InputError(f"checkpoint {ckpt} has {what} for {step} steps done; {_FRESH}")
    out = []
    for v in losses:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InputError(f"checkpoint {ckpt} has a loss {repr(v)[:40]} that is not a finite number; {_FRESH}")
        out.append(float(v))
    return step, out


def _load_optimizer(opt: torch.optim.Optimizer, state: Any, ckpt: Path) -> None:
    """Load a checkpoint's optimiser state, checked against the parameters (``InputError`` otherwise)."""
    if (
        not isinstance(state, dict)
        or not isinstance(state.get("state"), dict)
        or not isinstance(state.get("param_groups"), list)
    ):
        raise InputError(
            f"checkpoint {ckpt} has an unusable optimiser state (not a record of state and parameter groups); {_FRESH}"
        )
    try:
        opt.load_state_dict(state)
    except (KeyError, ValueError, RuntimeError, TypeError, AttributeError, IndexError) as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise InputError(f"checkpoint {ckpt} has an unusable optimiser state ({detail}); {_FRESH}") from None
    for group in opt.param_groups:
        for p in group["params"]:
            for key, v in opt.state.get(p, {}).items():
                if not isinstance(v, torch.Tensor):
                    raise InputError(
                        f"checkpoint {ckpt} has an unusable optimiser state ({key} is not a tensor); {_FRESH}"
                    )
                if key != "step" and tuple(v.shape) != tuple(p.shape):
                    raise InputError(
                        f"checkpoint {ckpt} has an unusable optimiser state ({key} of shape "
                        f"{tuple(v.shape)} for a parameter of shape {tuple(p.shape)}); {_FRESH}"
                    )
                if not torch.isfinite(v).all():
                    raise InputError(f"checkpoint {ckpt} has an unusable optimiser state (non-finite {key}); {_FRESH}")


def resume_from(
    ckpt: Path, net: LevelSetUNet, opt: torch.optim.Optimizer, config: dict, now: dict, steps: int
) -> tuple[int, list[float]]:
    """Load the checkpoint ``ckpt`` into ``net`` and ``opt`` to go on with a run.

    Parameters
    ----------
    ckpt : pathlib.Path
        The checkpoint (``checkpoint_path`` of the model file).
    net : napari_levelset.nn.unet.LevelSetUNet
        The run's network; its weights are replaced by the checkpoint's.
    opt : torch.optim.Optimizer
        The run's optimiser; its state is replaced by the checkpoint's.
    config : dict
        The network's configuration, which must be the checkpoint's.
    now : dict
        The run's training settings (and ``color``, ``data``), which must be the checkpoint's.
    steps : int
        The run's step count.

    Returns
    -------
    step : int
        Steps done, 0..``steps``.
    losses : list of float
        One finite loss per step done.

    Raises
    ------
    InputError
        For a checkpoint made for another network or with other settings, or one whose step,
        losses, weights or optimiser state cannot be used (the message says to delete it or to
        train with ``resume=False``).
    """
    blob = read_model_file(ckpt)
    saved = blob["metadata"].get("train_config")
    if saved != config:
        raise InputError(
            f"checkpoint {ckpt} was made for a different model ({str(saved)[:200]}); "
            "delete it or train with resume=False (--no-resume)"
        )
    training = blob["metadata"].get("training")
    if training is not None and not isinstance(training, dict):
        raise InputError(
            f"checkpoint {ckpt} has unreadable training settings; delete it or train with resume=False (--no-resume)"
        )
    was = dict(training or {}, color=blob["metadata"].get("color"), data=blob["metadata"].get("data"))
    changed = sorted(k for k in now if was.get(k) != now[k])
    if changed:
        raise InputError(
            f"checkpoint {ckpt} was made with other settings ("
            + ", ".join(f"{k} {repr(was.get(k))[:60]}, now {now[k]!r}" for k in changed)
            + "): train as before to resume, or start afresh with resume=False (--no-resume)"
        )
    step, losses = _checkpoint_progress(blob, ckpt, steps)
    resumed, _ = load_model(ckpt)
    if resumed.config != net.config:
        raise InputError(
            f"checkpoint {ckpt} holds a different network than its settings say; delete it or "
            "train with resume=False (--no-resume)"
        )
    net.load_state_dict(resumed.state_dict())
    _load_optimizer(opt, blob.get("optimizer"), ckpt)
    return step, losses
