"""Segmenting at scale: many images with one set of settings, and volumes larger than memory.

- :mod:`~napari_levelset.scale.batch`: files or arrays in this process or spread over a dask
  cluster, each segmented as ``napari-levelset segment`` would;
- :mod:`~napari_levelset.scale.chunked`: a zarr / OME-Zarr volume normalised with its whole
  statistics and labelled tile by tile, equal to whole-volume inference (reading and making
  the zarr arrays is :mod:`napari_levelset.io.zarr`'s).

dask and zarr are imported when used (``pip install 'napari-levelset[scale]'``).
"""
