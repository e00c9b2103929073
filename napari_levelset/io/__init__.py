"""Images in and out: which axes are what, reading files, normalisation, writing labels, zarr volumes.

- :mod:`~napari_levelset.io.axes`: channel, batch and spatial axes (``infer_axes``), and
  ``ImageFile``, an array with the axes and pixel size its file names;
- :mod:`~napari_levelset.io.read`: ``read_image`` / ``read_image_file`` (TIFF, PNG, JPEG, ...), each
  file's header checked against what its size can hold (``check_claim``);
- :mod:`~napari_levelset.io.prepare`: ``prepare_image`` (checks, axes, per-channel normalisation
  or CIELAB) into a ``Prepared`` array for the network; ``join_channels``;
- :mod:`~napari_levelset.io.write`: ``write_labels`` with axes and voxel size, ``atomic_write``;
- :mod:`~napari_levelset.io.zarr`: zarr / OME-Zarr volumes opened lazily (or read whole, checked),
  label arrays made.

Numpy only; tifffile, imageio, Pillow, scikit-image and zarr are imported when used.  The
public names are re-exported here.
"""

from napari_levelset.io.axes import AXES, ImageFile, infer_axes
from napari_levelset.io.prepare import MAX_COLOUR_BITS, Prepared, join_channels, normalize, prepare_image, to_lab
from napari_levelset.io.read import PLAIN_EXT, TIFF_EXT, check_claim, claim_limit, read_image, read_image_file
from napari_levelset.io.write import atomic_write, labels_dtype, write_labels
from napari_levelset.io.zarr import Volume, create_labels, open_volume, read_region, read_volume

__all__ = [
    "AXES",
    "MAX_COLOUR_BITS",
    "PLAIN_EXT",
    "TIFF_EXT",
    "ImageFile",
    "Prepared",
    "Volume",
    "atomic_write",
    "check_claim",
    "claim_limit",
    "create_labels",
    "infer_axes",
    "join_channels",
    "labels_dtype",
    "normalize",
    "open_volume",
    "prepare_image",
    "read_image",
    "read_image_file",
    "read_region",
    "read_volume",
    "to_lab",
    "write_labels",
]
