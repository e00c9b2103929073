"""Regenerate the sample images shipped with napari-levelset.

Run from anywhere: ``python sample_data/make_samples.py``.  Only scikit-image's
bundled data is used (no downloads), so the output is reproducible offline.

- ``coins.tif``: grey 2D, uint8 (303, 384) -- ``skimage.data.coins()``.
- ``coffee.tif``: RGB 2D, uint8 (213, 320, 3) -- ``skimage.data.coffee()`` downscaled.
- ``blobs3d.tif``: grey 3D volume, uint8 (64, 64, 64) -- smoothed 3D binary blobs
  with Gaussian noise (seeded); ``blobs3d_truth.tif`` holds the blobs (0/1) it was
  made from.
- ``nuclei.tif``: grey 2D fluorescence, uint16 (512, 512) -- 60 synthetic nuclei of
  about 28 pixels across (``napari_levelset.evaluation.synthetic.nuclei``, seed 0: uneven
  brightness, touching pairs, background haze, shot and camera noise);
  ``nuclei_truth.tif`` holds one id per nucleus (0 background, uint16).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from skimage import data, filters, transform
from skimage.util import img_as_ubyte

HERE = Path(__file__).resolve().parent


def make_coins() -> np.ndarray:
    return data.coins()


def make_coffee() -> np.ndarray:
    img = transform.resize(data.coffee(), (213, 320), anti_aliasing=True)
    return img_as_ubyte(img)


def make_blobs3d(size: int = 64, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    truth = data.binary_blobs(size, blob_size_fraction=0.15, n_dim=3, volume_fraction=0.3, rng=seed)
    rng = np.random.default_rng(seed)
    vol = filters.gaussian(truth.astype(np.float32), sigma=1.0)
    vol = 0.2 + 0.6 * vol + rng.normal(0.0, 0.08, vol.shape)
    return np.clip(vol * 255, 0, 255).astype(np.uint8), truth.astype(np.uint8)


def make_nuclei(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from napari_levelset.evaluation.synthetic import nuclei

    return nuclei((512, 512), n_objects=60, diameter=28.0, seed=seed)


def main() -> None:
    opts = dict(compression="zlib")
    tifffile.imwrite(HERE / "coins.tif", make_coins(), **opts)
    tifffile.imwrite(HERE / "coffee.tif", make_coffee(), photometric="rgb", **opts)
    vol, truth = make_blobs3d()
    tifffile.imwrite(HERE / "blobs3d.tif", vol, **opts)
    tifffile.imwrite(HERE / "blobs3d_truth.tif", truth, **opts)
    image, truth = make_nuclei()
    tifffile.imwrite(HERE / "nuclei.tif", image, predictor=True, **opts)
    tifffile.imwrite(HERE / "nuclei_truth.tif", truth, predictor=True, **opts)
    for p in sorted(HERE.glob("*.tif")):
        print(f"{p.name}: {p.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
