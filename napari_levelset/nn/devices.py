"""The one device helper: which torch device a run uses.

Every front end passes the ``device`` setting (``napari_levelset.settings.DEVICES`` lists the
names it accepts) to :func:`resolve_device`; nothing else in the package decides a device.
"""

from __future__ import annotations

import torch

from napari_levelset.errors import InputError
from napari_levelset.settings import DEVICE_WORDS

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device a run uses: ``auto`` picks CUDA, then MPS, else the CPU; other names are checked.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"``, ``"cpu"``, ``"cuda"`` (or ``"cuda:1"``, ...) or ``"mps"``, in any case; a
        ``torch.device`` is returned as it is.

    Returns
    -------
    torch.device
        The device.

    Raises
    ------
    InputError
        When CUDA or MPS is asked for but not available, or for an unknown name.

    Examples
    --------
    >>> resolve_device("CPU")
    device(type='cpu')
    """
    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("device 'cuda' was asked for, but no CUDA device is available")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("device 'mps' was asked for, but MPS is not available")
    if not (name == "cpu" or name == "mps" or name.startswith("cuda")):
        raise InputError(f"unknown device {device!r}: use {DEVICE_WORDS}")
    return torch.device(name)
