import itertools

import numpy as np
import pytest

from napari_levelset import segment
from napari_levelset.post.regions import _merge_features, connected_regions, merge_regions


def test_each_connected_piece_of_a_class_becomes_a_region():
    lab = np.ones((20, 30), np.uint8)
    lab[2:8, 2:8] = 2
    lab[12:18, 20:28] = 2  # same class, separate piece
    out = connected_regions(lab, min_region=1)
    assert len(np.unique(out)) == 3
    assert out[4, 4] != out[14, 24]
    assert out[0, 0] == out[19, 0]


def test_small_fragments_merge_into_the_nearest_region():
    lab = np.ones((40, 40), np.uint8)
    lab[:, 20:] = 2
    lab[10, 5] = 2  # one-pixel speck inside class 1
    out = connected_regions(lab, min_region=5)
    assert len(np.unique(out)) == 2
    assert out[10, 5] == out[0, 0]


def test_fraction_and_slices_are_independent():
    lab = np.ones((2, 30, 30), np.uint8)
    lab[0, :, 15:] = 2
    out = connected_regions(lab, min_region=0.01, spatial_dims=2)
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
    from napari_levelset.errors import InputError

    with pytest.raises(InputError, match="needs an RGB image"):
        segment(img[..., 0], 2, iterations=1, device="cpu", color="lab")
    with pytest.raises(InputError, match="regions must be"):
        segment(img, 2, iterations=1, device="cpu", regions="blobs")


def _energy(regions, f, lam, edge=0.0):
    """The energy merge_regions lowers, by brute force on features ``f``: data term + lam * weighted TV."""
    d2 = [((np.diff(f, axis=ax + 1)) ** 2).sum(0) for ax in range(regions.ndim)]
    mean_d2 = np.mean([d.mean() for d in d2])
    e = 0.0
    for r in np.unique(regions):
        m = regions == r
        x = f[:, m]
        e += float(((x - x.mean(1, keepdims=True)) ** 2).sum())
        for ax in range(regions.ndim):
            w = np.exp(-edge * d2[ax] / (2 * mean_d2)) if edge else 1.0
            e += lam * float((np.abs(np.diff(m.astype(float), axis=ax)) * w).sum())
    return e


def _blocks_image(seed=0):
    rng = np.random.default_rng(seed)
    truth = np.zeros((30, 40), int)
    truth[:, 20:] = 1
    truth[10:20, 5:15] = 2
    colours = np.array([[0.1, 0.2], [0.8, 0.3], [0.4, 0.9]])
    features = np.moveaxis(colours[truth], -1, 0) + rng.normal(0, 0.05, (2, 30, 40))
    # an over-segmentation: every truth region cut into 5x5 blocks
    blocks = (np.arange(30)[:, None] // 5) * 8 + np.arange(40)[None] // 5
    return truth, features, truth * 1000 + blocks


@pytest.mark.parametrize("plain", [True, False])
def test_merging_lowers_the_energy_to_a_local_minimum(plain):
    truth, features, over = _blocks_image()
    if plain:
        kw, f, lam, edge = dict(texture=0.0, edge=0.0, normalize=False), features, 0.05, 0.0
    else:  # the defaults: normalised features with a texture channel, edge-weighted boundaries
        kw, f, lam, edge = {}, _merge_features(features, 1.0, True), 0.1, 2.0
    merged = merge_regions(over, features, lam, **kw)
    assert merged.dtype == np.uint32 and merged.min() == 1
    assert _energy(merged, f, lam, edge) < _energy(over, f, lam, edge)
    # it recovers the three regions exactly
    assert len(np.unique(merged)) == 3
    for t in range(3):
        assert len(np.unique(merged[truth == t])) == 1
    # a local minimum: no merge of two adjacent regions lowers the energy any further
    e = _energy(merged, f, lam, edge)
    ids = np.unique(merged)
    for a in ids:
        for b in ids[ids > a]:
            joined = np.where(merged == b, a, merged)
            assert _energy(joined, f, lam, edge) >= e - 1e-9


def test_merge_weight_sets_the_granularity():
    features = np.zeros((1, 20, 20))
    features[0, :, 10:] = 1.0
    regions = np.where(np.arange(20)[None, :] < 10, 1, 2) * np.ones((20, 1), int)
    plain = dict(texture=0.0, edge=0.0, normalize=False)
    # merging costs 200*200/400 * 1 = 100 and removes 20 boundary pairs: worth it above lam = 2.5
    assert len(np.unique(merge_regions(regions, features, 2.4, **plain))) == 2
    assert len(np.unique(merge_regions(regions, features, 2.6, **plain))) == 1
    assert len(np.unique(merge_regions(regions, features, 0.0))) == 2
    with pytest.raises(ValueError, match="features"):
        merge_regions(regions, features[:, :10], 1.0)
    with pytest.raises(ValueError, match="edge"):
        merge_regions(regions, features, 1.0, edge=-1)


def test_merging_is_nested_and_contrast_invariant():
    _, features, over = _blocks_image(1)
    features = features + np.random.default_rng(2).normal(0, 0.2, features.shape)  # hard to tell apart
    results = [merge_regions(over, features, lam) for lam in (0.02, 0.05, 0.1, 0.2, 0.5)]
    counts = [len(np.unique(r)) for r in results]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]
    for fine, coarse in itertools.pairwise(results):
        # every region at the larger weight is a union of regions at the smaller one
        pairs = np.unique(np.stack([fine.ravel(), coarse.ravel()]), axis=1)
        assert len(np.unique(pairs[0])) == pairs.shape[1]
    # the features are normalised: the same picture at a third of the contrast merges the same way
    assert np.array_equal(merge_regions(over, features / 3 + 7, 0.1), results[2])


def test_merging_slices_separately():
    features = np.zeros((1, 2, 10, 10))
    regions = np.ones((2, 10, 10), int)
    regions[:, :, 5:] = 2  # same colour on both sides: merges in every slice
    out = merge_regions(regions, features, 0.1, spatial_dims=2)
    assert len(np.unique(out[0])) == 1 and len(np.unique(out[1])) == 1 and out[0, 0, 0] != out[1, 0, 0]


def test_a_volume_of_one_slice_merges_like_the_image():
    """The edge weights' scale is the mean over all neighbour pairs: an axis of length 1 adds none."""
    rng = np.random.default_rng(0)
    image = rng.random((1, 24, 24))
    image[0, :, 12:] += 1.0
    regions = connected_regions(rng.integers(0, 6, (24, 24)), 1)
    for lam in (0.01, 0.1):
        flat = merge_regions(regions, image, lam)
        volume = merge_regions(regions[None], image[:, None], lam)
        np.testing.assert_array_equal(volume[0], flat)


@pytest.mark.parametrize("values", [(-1, 0), (0, 2**64 - 1)])
def test_any_class_values_make_regions(values):
    a, b = values
    dtype = np.uint64 if b > 2**62 else np.int64
    lab = np.array([[a, a, b, b]] * 4, dtype=dtype)
    out = connected_regions(lab, 1)
    assert len(np.unique(out)) == 2 and out[0, 0] != out[0, 3]
    assert len(np.unique(connected_regions(np.full((4, 4), a, dtype), 1))) == 1


def test_segment_merged_output():
    rng = np.random.default_rng(3)
    img = np.full((48, 48, 3), (40, 120, 40), np.uint8)
    img[8:24, 8:24] = (200, 40, 40)
    img[30:44, 26:44] = (40, 40, 200)
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    # eight classes over-segment three colours; merging brings back one region per object
    classes = segment(img, 8, iterations=30, device="cpu")
    merged = segment(img, 8, iterations=30, device="cpu", regions="merged", min_region=4)
    assert len(np.unique(merged)) == 3 < len(np.unique(classes))
    assert len(np.unique(merged[10:22, 10:22])) == 1 and len(np.unique(merged[32:42, 28:42])) == 1
    assert merged[0, 0] != merged[16, 16] != merged[36, 36] != merged[0, 0]
