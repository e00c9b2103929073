import numpy as np
import pytest

from napari_levelset import segment
from napari_levelset.regions import connected_regions


def test_each_connected_piece_of_a_class_becomes_a_region():
    lab = np.ones((20, 30), np.uint8)
    lab[2:8, 2:8] = 2
    lab[12:18, 20:28] = 2  # same class, separate piece
    out = connected_regions(lab, min_size=1)
    assert len(np.unique(out)) == 3
    assert out[4, 4] != out[14, 24]
    assert out[0, 0] == out[19, 0]


def test_small_fragments_merge_into_the_nearest_region():
    lab = np.ones((40, 40), np.uint8)
    lab[:, 20:] = 2
    lab[10, 5] = 2  # one-pixel speck inside class 1
    out = connected_regions(lab, min_size=5)
    assert len(np.unique(out)) == 2
    assert out[10, 5] == out[0, 0]


def test_fraction_and_slices_are_independent():
    lab = np.ones((2, 30, 30), np.uint8)
    lab[0, :, 15:] = 2
    out = connected_regions(lab, min_size=0.01, spatial_dims=2)
    # slice 0 has two regions, slice 1 one, and ids are not shared between slices
    assert len(np.unique(out[0])) == 2 and len(np.unique(out[1])) == 1
    assert not set(np.unique(out[0])) & set(np.unique(out[1]))


def test_segment_connected_output():
    img = np.zeros((40, 60), np.float32)
    img[5:15, 5:15] = 1
    img[25:35, 40:55] = 1
    img += np.random.default_rng(0).normal(0, 0.05, img.shape).astype(np.float32)
    classes = segment(img, 2, iterations=30, device="cpu")
    regions = segment(img, 2, iterations=30, device="cpu", regions="connected", min_region=10)
    assert len(np.unique(classes)) == 2
    assert len(np.unique(regions)) == 3  # background and two squares


def test_lab_colour_input():
    rng = np.random.default_rng(1)
    img = np.zeros((40, 40, 3), np.uint8)
    img[:, :20] = (200, 30, 30)
    img[:, 20:] = (30, 30, 200)
    img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
    lab = segment(img, 2, iterations=20, device="cpu", color="lab")
    assert (lab[:, :20] == lab[0, 0]).mean() > 0.98 and (lab[:, 20:] != lab[0, 0]).mean() > 0.98
    from napari_levelset.io import InputError

    with pytest.raises(InputError, match="needs an RGB image"):
        segment(img[..., 0], 2, iterations=1, device="cpu", color="lab")
    with pytest.raises(InputError, match="regions must be"):
        segment(img, 2, iterations=1, device="cpu", regions="blobs")
