"""The strokes' evidence map on a photograph: the segments' average and the covariance floor."""

import numpy as np

from napari_levelset.method import strokes as strokes_module
from napari_levelset.method.strokes import segment_average, stroke_prior


def _halves(shape=(30, 40)):
    """A colour item of two flat halves (left dark, right bright) and the right half's mask."""
    item = np.zeros((3, *shape))
    right = np.zeros(shape, bool)
    right[:, shape[1] // 2 :] = True
    item[:, right] = 1.0
    return item, right


def test_segment_average_gives_each_flat_segment_its_mean():
    item, right = _halves()
    maps = np.random.default_rng(0).normal(size=(2, *right.shape))
    full = segment_average(item, maps, 1.0)
    inner = np.ones(right.shape, bool)
    inner[:, right.shape[1] // 2 - 3 : right.shape[1] // 2 + 3] = False  # the segments by the edge aside
    for f in full:
        assert np.ptp(f[right & inner]) < 1e-6 and np.ptp(f[~right & inner]) < 1e-6
        assert abs(float(f[right & inner][0] - f[~right & inner][0])) > 1e-6  # one value per half
    half = segment_average(item, maps, 0.5)
    assert np.allclose(half, 0.5 * maps + 0.5 * full, atol=1e-5)
    assert np.array_equal(segment_average(item, maps, 0.0), maps.astype(np.float32))


def test_segment_average_leaves_a_volume_as_it_is():
    volume = np.zeros((3, 4, 10, 12))
    maps = np.random.default_rng(1).normal(size=(2, 4, 10, 12))
    assert np.array_equal(segment_average(volume, maps, 1.0), maps.astype(np.float32))


def _disc_scene(seed=0):
    """A flat dark disc in a noisy bright background, a short stroke in each; the disc's mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:80, :120]
    disc = (yy - 40) ** 2 + (xx - 30) ** 2 < 15**2
    image = 0.75 + 0.08 * rng.standard_normal((1, 3, 80, 120))
    image[0][:, disc] = 0.3
    strokes = np.zeros((1, 80, 120), np.int64)
    strokes[0, 38:42, 25:35], strokes[0, 5:8, 40:80] = 1, 2
    return image, strokes, disc


def test_a_flat_region_goes_whole_to_its_stroke_beside_a_noisy_one(monkeypatch):
    """The rim of a flat disc, where the blurred colour is neither the disc's nor the background's, goes with
    the disc's segment: the first map averaged over segments labels more of the disc than the map alone (the
    later looks, learnt from the first map, take the rest)."""
    image, strokes, disc = _disc_scene()
    labels = stroke_prior(image, strokes, 2)[0].argmax(0) + 1
    assert np.mean(labels[disc] == 1) > 0.99
    assert np.mean(labels[~disc] == 2) > 0.99
    monkeypatch.setattr(strokes_module, "PRIOR_LOOKS", 0)
    labels = stroke_prior(image, strokes, 2)[0].argmax(0) + 1
    assert np.mean(labels[disc] == 1) > 0.9
    monkeypatch.setattr(strokes_module, "PRIOR_SEGMENT_SHARE", 0.0)
    alone = stroke_prior(image, strokes, 2)[0].argmax(0) + 1
    assert np.mean(labels[disc] == 1) > np.mean(alone[disc] == 1)


def test_the_second_looks_features_tell_texture_from_a_flat_patch():
    """Colour at three blurs and local spread in three windows: the spread is 0 on a flat patch, grows with noise."""
    from napari_levelset.method.stroke_look import PRIOR_REFIT_SIGMAS, PRIOR_REFIT_TEXTURES, refit_features

    rng = np.random.default_rng(2)
    item = np.full((3, 40, 80), 0.5)
    item[:, :, 40:] += 0.1 * rng.standard_normal((3, 40, 40))
    feats = refit_features(item)
    n_colour = 3 * len(PRIOR_REFIT_SIGMAS)
    assert feats.shape == (n_colour + 3 * len(PRIOR_REFIT_TEXTURES), 40, 80)
    spread = feats[n_colour:]
    assert np.all(spread[:, 5:35, :6] < 1e-6)  # beyond the widest window's reach of the noise: flat
    assert np.all(spread[:, 5:35, 60:75] > 0.05)
    assert np.allclose(feats[:n_colour, 5:35, :6], 0.5)
