"""Sample images for napari's File > Open Sample menu.

The files live in ``napari_levelset/sample_data/`` (a link to the repository's
top-level ``sample_data/`` in the source tree, a real folder in the installed
package); ``sample_data/make_samples.py`` regenerates them.  Only numpy and
tifffile are needed to load them.
"""

from __future__ import annotations

from importlib.resources import as_file, files

import numpy as np

__all__ = ["SAMPLES", "TRUTH", "blobs3d", "coffee", "coins", "load_sample", "load_truth", "nuclei", "sample_path"]

#: key -> (file name, layer name, is RGB)
SAMPLES: dict[str, tuple[str, str, bool]] = {
    "coins": ("coins.tif", "coins", False),
    "coffee": ("coffee.tif", "coffee", True),
    "blobs3d": ("blobs3d.tif", "blobs3d", False),
    "nuclei": ("nuclei.tif", "nuclei", False),
}

#: key -> file name of the sample's known answer (not offered in napari's menu)
TRUTH: dict[str, str] = {
    "blobs3d": "blobs3d_truth.tif",  # 0/1 blobs
    "nuclei": "nuclei_truth.tif",  # one id per nucleus, 0 background
}


def sample_path(filename: str):
    """A ``Traversable`` for a file in the package's ``sample_data`` folder.

    Parameters
    ----------
    filename : str
        A file name in ``sample_data/``, e.g. ``"coins.tif"`` (see ``SAMPLES`` and ``TRUTH``).

    Returns
    -------
    importlib.resources.abc.Traversable
        The file (a ``pathlib.Path`` for a package installed as a folder); it need not exist.

    Examples
    --------
    >>> sample_path("coins.tif").name
    'coins.tif'
    """
    return files("napari_levelset") / "sample_data" / filename


def _read(filename: str) -> np.ndarray:
    import tifffile

    with as_file(sample_path(filename)) as path:
        return np.asarray(tifffile.imread(path))


def load_sample(key: str) -> np.ndarray:
    """A sample image (``SAMPLES``), as the file stores it.

    Parameters
    ----------
    key : str
        One of ``SAMPLES``: ``"coins"``, ``"coffee"``, ``"blobs3d"`` or ``"nuclei"``.

    Returns
    -------
    numpy.ndarray
        The image, read with ``tifffile.imread``: coins uint8 (303, 384), coffee uint8
        (213, 320, 3) RGB, blobs3d uint8 (64, 64, 64) (Z, Y, X), nuclei uint16 (512, 512).

    Raises
    ------
    KeyError
        When ``key`` is not in ``SAMPLES``.

    Examples
    --------
    >>> load_sample("coins").shape
    (303, 384)
    """
    return _read(SAMPLES[key][0])


def load_truth(key: str) -> np.ndarray:
    """The answer a sample was made from (``TRUTH``): ``blobs3d``'s blobs, ``nuclei``'s instances.

    Parameters
    ----------
    key : str
        One of ``TRUTH``: ``"blobs3d"`` or ``"nuclei"``.

    Returns
    -------
    numpy.ndarray
        blobs3d: uint8 (64, 64, 64), 1 inside a blob and 0 outside; nuclei: uint16 (512, 512),
        one id per nucleus (1..60), 0 background.

    Raises
    ------
    KeyError
        When ``key`` is not in ``TRUTH``.

    Examples
    --------
    >>> int(load_truth("nuclei").max())
    60
    """
    return _read(TRUTH[key])


def _layer(key: str) -> list[tuple]:
    _filename, name, rgb = SAMPLES[key]
    return [(load_sample(key), {"name": name, "rgb": rgb}, "image")]


def coins() -> list[tuple]:
    """Grey 2D: scikit-image's coins, uint8 (303, 384).

    Returns
    -------
    list of tuple
        One napari layer tuple ``(data, {"name": "coins", "rgb": False}, "image")``.
    """
    return _layer("coins")


def coffee() -> list[tuple]:
    """RGB 2D: scikit-image's coffee cup downscaled, uint8 (213, 320, 3).

    Returns
    -------
    list of tuple
        One napari layer tuple ``(data, {"name": "coffee", "rgb": True}, "image")``.
    """
    return _layer("coffee")


def blobs3d() -> list[tuple]:
    """Grey 3D volume: smoothed noisy 3D blobs, uint8 (64, 64, 64).

    Returns
    -------
    list of tuple
        One napari layer tuple ``(data, {"name": "blobs3d", "rgb": False}, "image")``.
    """
    return _layer("blobs3d")


def nuclei() -> list[tuple]:
    """Grey 2D fluorescence: 60 synthetic nuclei about 28 px across, uint16 (512, 512).

    Made by ``napari_levelset.evaluation.synthetic.nuclei`` (seed 0): brightness varying 8x,
    touching pairs, an uneven background, shot and camera noise, in a narrow
    16-bit range as a camera writes it.  ``load_truth("nuclei")`` is its answer.

    Returns
    -------
    list of tuple
        One napari layer tuple ``(data, {"name": "nuclei", "rgb": False}, "image")``.
    """
    return _layer("nuclei")
