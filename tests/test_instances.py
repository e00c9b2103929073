"""One label per object: ``segment(regions="instances")`` and ``napari_levelset.post.instances``.

Phantoms with known truth (``synthetic.nuclei``: 16-bit, touching nuclei, uneven
illumination, haze, shot noise); the real nuclei data is only used by
``benchmarks/nuclei.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_levelset import segment
from napari_levelset.errors import InputError
from napari_levelset.evaluation.matching import instance_scores
from napari_levelset.evaluation.synthetic import nuclei
from napari_levelset.post.instances import (
    estimate_diameter,
    fluorescence_contrast,
    foreground_classes,
    instance_labels,
)
from napari_levelset.post.objects import linear_signal, outline_on_linear
from napari_levelset.settings import object_contrast


@pytest.fixture(scope="module")
def nuclei2d():
    return nuclei((256, 256), n_objects=30, diameter=24, seed=2)


def test_instances_find_touching_nuclei_of_uneven_brightness(nuclei2d):
    image, truth = nuclei2d
    labels = segment(image, regions="instances")
    assert labels.dtype == np.uint32 and labels.shape == image.shape
    assert labels.min() == 0  # background is 0
    scores = instance_scores(labels, truth)
    assert scores["f1"] >= 0.9, scores
    assert scores["dice"] >= 0.85, scores


def test_two_touching_discs_are_two_objects():
    yy, xx = np.mgrid[:96, :128]
    truth = np.zeros((96, 128), np.uint16)
    truth[(yy - 48) ** 2 + (xx - 44) ** 2 <= 20**2] = 1
    truth[(yy - 48) ** 2 + (xx - 83) ** 2 <= 20**2] = 2  # centres 39 px apart: they touch
    rng = np.random.default_rng(0)
    image = (truth > 0) * 800.0 + 100 + rng.normal(0, 20, truth.shape)
    labels = segment(image.astype(np.uint16), regions="instances")
    assert instance_scores(labels, truth)["f1"] == 1.0
    # the plain connected components of the foreground would be one object
    assert len(np.unique(labels[truth > 0])) == 2


def test_debris_below_the_object_size_is_left_out():
    yy, xx = np.mgrid[:128, :128]
    truth = np.zeros((128, 128), np.uint16)
    truth[(yy - 40) ** 2 + (xx - 40) ** 2 <= 14**2] = 1
    truth[(yy - 90) ** 2 + (xx - 85) ** 2 <= 14**2] = 2
    image = (truth > 0) * 1000.0 + 100
    image[20:22, 100:102] = 1100  # a 2x2 speck
    image[110, 20] = 1100
    rng = np.random.default_rng(1)
    labels = segment((image + rng.normal(0, 15, image.shape)).astype(np.uint16), regions="instances")
    assert labels[20:22, 100:102].max() == 0 and labels[110, 20] == 0
    assert instance_scores(labels, truth)["f1"] == 1.0


def test_the_same_values_in_any_dtype_give_the_same_instances(nuclei2d):
    image, _ = nuclei2d
    a = segment(image, regions="instances")
    b = segment(image.astype(np.float32), regions="instances")
    c = segment(image.astype(np.int64), regions="instances")
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_diameter_in_physical_units_equals_diameter_in_pixels():
    image, truth = nuclei((256, 256), n_objects=30, diameter=12.0, spacing=(0.5, 0.5), seed=2)
    physical = segment(image, regions="instances", spacing=(0.5, 0.5), diameter=12.0)
    pixels = segment(image, regions="instances", diameter=24.0)
    np.testing.assert_array_equal(physical, pixels)
    assert instance_scores(physical, truth)["f1"] >= 0.9


def test_anisotropic_volume_with_its_voxel_size():
    image, truth = nuclei((32, 96, 96), n_objects=15, diameter=20, spacing=(2.0, 1.0, 1.0), seed=1)
    labels = segment(image, regions="instances", spacing=(2.0, 1.0, 1.0))
    assert labels.shape == image.shape and labels.dtype == np.uint32
    assert instance_scores(labels, truth)["f1"] >= 0.9


def test_a_stack_of_frames_is_split_frame_by_frame_with_distinct_ids():
    a, ta = nuclei((128, 128), n_objects=10, diameter=20, seed=4)
    b, tb = nuclei((128, 128), n_objects=10, diameter=20, seed=5)
    labels = segment(np.stack([a, b]), regions="instances", spatial_dims=2)
    assert labels.shape == (2, 128, 128)
    assert not set(np.unique(labels[0])[1:]) & set(np.unique(labels[1])[1:])  # ids numbered over the stack
    for frame, truth in zip(labels, (ta, tb)):
        assert instance_scores(frame, truth)["f1"] >= 0.8


def test_estimated_diameter_is_close_to_the_truth():
    for d in (12.0, 24.0, 40.0):
        image, _ = nuclei((256, 256), n_objects=25, diameter=d, seed=6, touching=0.3)
        log = np.log1p(np.maximum(image.astype(np.float64) - 100, 0))
        assert 0.75 * d <= estimate_diameter(log) <= 1.33 * d, d


def test_bounded_estimate_searches_windows_within_its_pixel_budget(monkeypatch):
    """With ``max_diameter`` the copy's pixels are fine; on a large image the blobs are searched in windows
    of it, no search over more than ``BOUNDED_ESTIMATE_PIXELS``, and the diameter is still found."""
    import skimage.feature

    from napari_levelset.post.diameter import BOUNDED_ESTIMATE_PIXELS

    image, _ = nuclei((1024, 1024), n_objects=120, diameter=24.0, seed=0)
    log = np.log1p(np.maximum(image.astype(np.float64) - 100, 0))
    real, sizes = skimage.feature.blob_log, []
    monkeypatch.setattr(skimage.feature, "blob_log", lambda x, **k: sizes.append(x.size) or real(x, **k))
    d = estimate_diameter(log, max_diameter=40.0)
    assert len(sizes) > 1 and sum(sizes) <= BOUNDED_ESTIMATE_PIXELS[2], sizes
    assert 0.8 * 24 <= d <= 1.25 * 24, d


def test_bounded_estimate_of_a_few_objects_searches_where_they_are():
    """A large image of a few objects: the windows are those holding them, not its empty field, nor the
    bright side of a background ramp."""
    image, _ = nuclei((1024, 1024), n_objects=8, diameter=24.0, seed=1)
    log = np.log1p(np.maximum(image.astype(np.float64) - 100, 0))
    ramp = log + 2.0 * np.mgrid[:1024, :1024][1] / 1024
    assert 0.8 * 24 <= estimate_diameter(log, max_diameter=40.0) <= 1.25 * 24
    assert 0.8 * 24 <= estimate_diameter(ramp, max_diameter=40.0) <= 1.25 * 24


def test_estimate_leaves_out_objects_larger_than_asked():
    """``largest``: the scales of objects larger than that fraction of the image are not searched."""
    yy, xx = np.mgrid[:256, :256].astype(np.float32)
    big = np.exp(-((yy - 128) ** 2 + (xx - 128) ** 2) / (2 * 40.0**2))  # one object about 110 px across
    small, _ = nuclei((256, 256), n_objects=12, diameter=12.0, seed=3)
    small = np.log1p(np.maximum(small.astype(np.float32) - 100, 0))
    image = big * float(small.max()) + small
    assert estimate_diameter(big) > 0.3 * 256
    assert estimate_diameter(big, largest=0.18) <= 0.18 * 256
    assert estimate_diameter(image, largest=0.18) <= estimate_diameter(image)
    with pytest.raises(InputError, match="largest"):
        estimate_diameter(image, largest=0.0)


def test_estimated_diameter_follows_the_pixel_size():
    image, _ = nuclei((256, 256), n_objects=25, diameter=24, seed=6)
    log = np.log1p(np.maximum(image.astype(np.float64) - 100, 0))
    assert estimate_diameter(log, spacing=(0.25, 0.25)) == pytest.approx(0.25 * estimate_diameter(log), rel=1e-6)


def test_fluorescence_contrast_evens_dim_and_bright_objects_and_removes_a_ramp():
    yy, xx = np.mgrid[:128, :128].astype(np.float32)
    ramp = 0.5 * xx / 127  # background rising to half the bright object's level
    img = ramp.copy()
    img[(yy - 40) ** 2 + (xx - 30) ** 2 <= 100] += 0.1  # dim, on the dark side
    img[(yy - 90) ** 2 + (xx - 100) ** 2 <= 100] += 1.0  # bright, on the bright side
    img += np.random.default_rng(0).normal(0, 0.01, img.shape).astype(np.float32)
    out = fluorescence_contrast(img[None, None], diameter=20)[0, 0]
    dim, bright = out[40, 30], out[90, 100]
    background = np.ones(img.shape, bool)
    background[(yy - 40) ** 2 + (xx - 30) ** 2 <= 400] = False
    background[(yy - 90) ** 2 + (xx - 100) ** 2 <= 400] = False
    # away from the edges (where an opening cannot follow a ramp), the ramp is gone: the
    # background's level on the bright side is that of the dark side, well below the dim object
    left, right = out[20:108, 20:44][background[20:108, 20:44]], out[20:108, 84:108][background[20:108, 84:108]]
    assert np.median(right) < 0.4 * dim and np.median(left) < 0.4 * dim
    assert abs(np.median(right) - np.median(left)) < 0.25 * dim
    assert bright / dim < 3  # a 10x brighter object is less than 3x the dim one


def test_foreground_rule_and_its_errors():
    assert foreground_classes(2) == [2]
    assert foreground_classes(4, [3, 4]) == [3, 4]
    assert foreground_classes(3, 1) == [1]
    for bad in ([0], [5], [1, 2, 3, 4], [], [1.5]):
        with pytest.raises(InputError):
            foreground_classes(4, bad)


def test_dark_objects_on_a_bright_background_with_linear_contrast():
    yy, xx = np.mgrid[:128, :128]
    truth = np.zeros((128, 128), np.uint16)
    for k, (cy, cx) in enumerate([(30, 30), (30, 90), (90, 40), (92, 95)], 1):
        truth[(yy - cy) ** 2 + (xx - cx) ** 2 <= 15**2] = k
    rng = np.random.default_rng(3)
    image = (2000.0 - 1200.0 * (truth > 0) + rng.normal(0, 40, truth.shape)).astype(np.uint16)  # as in brightfield
    labels = segment(image, regions="instances", contrast="linear", foreground=1)
    assert instance_scores(labels, truth)["f1"] == 1.0
    # the default reads dark objects on a light field (settings.object_contrast) and finds them too
    assert object_contrast(image)[0] == "transmitted"
    assert instance_scores(segment(image, regions="instances"), truth)["f1"] == 1.0


def test_outlines_on_the_linear_signal_are_tighter_than_the_log_contrast_ones():
    from scipy import ndimage
    from skimage.segmentation import expand_labels

    yy, xx = np.mgrid[:128, :128]
    truth = np.zeros((128, 128), np.int32)
    for k, (cy, cx) in enumerate([(30, 30), (30, 92), (92, 36), (94, 96)], 1):
        truth[(yy - cy) ** 2 + (xx - cx) ** 2 <= 10**2] = k
    disc = (truth > 0).astype(np.float32)
    # a sharp object with a faint halo (out-of-focus light), on a flat background with noise
    image = ndimage.gaussian_filter(disc, 1.0) + 0.1 * ndimage.gaussian_filter(disc, 5.0)
    image = 0.1 + image + np.random.default_rng(0).normal(0, 0.01, image.shape).astype(np.float32)
    wide = expand_labels(truth, 4)  # the log contrast's outline: widened into the faint halo
    tight = outline_on_linear(wide, linear_signal(image[None, None], 20.0)[0], 20.0, min_region=50)

    def iou(a, b):
        return np.logical_and(a > 0, b > 0).sum() / np.logical_or(a > 0, b > 0).sum()

    assert tight.max() == 4 and set(np.unique(tight[truth > 0])) >= {1, 2, 3, 4}
    assert (tight > 0).sum() < (wide > 0).sum()
    assert iou(tight, truth) > 0.85 > iou(wide, truth)


def test_a_unet_s_instances_are_outlined_on_the_linear_signal_too():
    """The shipped U-Net finds sharp nuclei with a faint halo on the log contrast, as wide as the halo lets
    it; its instances are outlined again on the linear signal, as the per-image CNN's are."""
    from scipy import ndimage

    from napari_levelset.nn.model_files import pretrained_path

    if not pretrained_path("unet").is_file():
        pytest.skip("the shipped model is not installed")
    yy, xx = np.mgrid[:192, :192]
    truth = np.zeros((192, 192), np.int32)
    for k, (cy, cx) in enumerate([(40, 40), (40, 140), (140, 50), (146, 146), (95, 95)], 1):
        truth[(yy - cy) ** 2 + (xx - cx) ** 2 <= 12**2] = k
    disc = (truth > 0).astype(np.float32)
    image = ndimage.gaussian_filter(disc, 1.0) + 0.15 * ndimage.gaussian_filter(disc, 6.0)
    image = 0.1 + image + np.random.default_rng(0).normal(0, 0.01, image.shape).astype(np.float32)
    labels = segment(image, model="unet", regions="instances")
    iou = np.logical_and(labels > 0, truth > 0).sum() / np.logical_or(labels > 0, truth > 0).sum()
    assert labels.max() == 5 and set(np.unique(labels[truth > 0])) >= {1, 2, 3, 4, 5}
    assert iou > 0.85  # 0.81 with the log contrast's outlines


def test_bad_instance_settings_are_input_errors(nuclei2d):
    image, _ = nuclei2d
    with pytest.raises(InputError, match="diameter"):
        segment(image, regions="instances", diameter=-3)
    with pytest.raises(InputError, match="spacing"):
        segment(image, regions="instances", spacing=(1.0, 0.0))
    with pytest.raises(InputError, match="contrast"):
        segment(image, regions="instances", contrast="gamma")
    with pytest.raises(InputError, match="instances"):
        segment(image, diameter=10)  # a setting of instances given to another output


def test_instance_labels_of_an_empty_foreground_are_all_background():
    out = instance_labels(np.zeros((32, 32), np.float32))
    assert out.dtype == np.uint32 and not out.any()


def test_an_empty_or_nan_image_is_an_input_error_for_instances():
    """Found by the contract test: deciding bright or dark objects read the percentiles of an empty image."""
    from napari_levelset.errors import InputError

    for image in (np.zeros((0, 4), np.uint8), np.full((8, 8), np.nan, np.float32)):
        try:
            labels = segment(image, regions="instances", iterations=0)
        except InputError:
            continue
        assert labels.shape == image.shape


def test_an_estimate_larger_than_the_objects_found_neither_drops_nor_merges_them():
    """The split uses the foreground's own diameter where the estimate before the run was too large
    (an estimate read off clusters or texture once dropped small nuclei as debris)."""
    from napari_levelset.method.plan import plan_run
    from napari_levelset.settings import Settings

    image, truth = nuclei((192, 192), n_objects=25, diameter=12.0, seed=3, touching=0.3)
    plan = plan_run(image, Settings(regions="instances"))
    assert plan.diameter_estimated
    plan.split_diameter = 5.0 * plan.split_diameter  # as an estimate misled by clusters would be
    seg = plan.make_segmenter()
    for _ in seg.run(plan.iterations):
        pass
    labels = plan.finish(seg)
    assert instance_scores(labels, truth)["f1"] > 0.8
    assert "split at diameter" in seg._record["objects"]


def test_foreground_diameter_of_discs_and_of_a_stack():
    from napari_levelset.post.instances import foreground_diameter

    yy, xx = np.mgrid[:80, :80]
    small = ((yy - 20) ** 2 + (xx - 20) ** 2 < 36) | ((yy - 60) ** 2 + (xx - 60) ** 2 < 36)
    large = (yy - 40) ** 2 + (xx - 40) ** 2 < 400
    assert 10 <= foreground_diameter(small.astype(float)) <= 14
    assert 38 <= foreground_diameter(large.astype(float)) <= 42
    # two touching discs: the inscribed radius, not the pair's area
    pair = ((yy - 40) ** 2 + (xx - 30) ** 2 < 100) | ((yy - 40) ** 2 + (xx - 48) ** 2 < 100)
    assert foreground_diameter(pair.astype(float)) <= 22
    assert foreground_diameter(np.stack([small, small]).astype(float)) == foreground_diameter(small.astype(float))
    assert foreground_diameter(large.astype(float), spacing=(0.5, 0.5)) == pytest.approx(
        0.5 * foreground_diameter(large.astype(float)), rel=0.05
    )


def test_concave_pieces_are_left_out_and_ids_stay_unique_over_a_stack():
    from napari_levelset.post.objects import drop_concave

    yy, xx = np.mgrid[:80, :80]
    disc = (yy - 20) ** 2 + (xx - 20) ** 2 < 100
    crescent = ((yy - 55) ** 2 + (xx - 50) ** 2 < 225) & ~((yy - 50) ** 2 + (xx - 44) ** 2 < 196)
    lab = np.zeros((80, 80), np.uint32)
    lab[disc], lab[crescent] = 1, 2
    out = drop_concave(lab, 2)
    assert set(np.unique(out)) == {0, 1} and (out[disc] == 1).all() and not out[crescent].any()
    stack = drop_concave(np.stack([lab, lab]), 2)
    assert sorted(np.unique(stack)) == [0, 1, 2] and (stack[1][disc] == 2).all()


def test_dark_objects_of_a_grey_image_are_convex_ones(nuclei2d):
    """Grey images of dark objects lose their cytoplasm before the run; the rims it leaves are no objects."""
    from napari_levelset.method.plan import plan_run
    from napari_levelset.settings import Settings

    image, truth = nuclei2d
    dark = (image.max() - image).astype(np.uint16)  # dark nuclei on a light field
    plan = plan_run(dark, Settings(regions="instances"))
    assert plan.contrast == "transmitted" and plan.convex
    assert "convex" in plan.objects
    assert instance_scores(segment(dark, regions="instances"), truth)["f1"] > 0.6


def _dark_cells(shape, diameter, n_objects, texture, seed=0):
    """Dark nuclei with a lighter cytoplasm around them on a light field, as in bright-field smears;
    ``texture`` is the chromatin's speckle within the nuclei (in units of their darkness)."""
    from scipy import ndimage

    _, truth = nuclei(shape, n_objects=n_objects, diameter=diameter, seed=seed, touching=0.2)
    rng = np.random.default_rng(seed)
    cells = ndimage.grey_dilation(truth, size=(15, 15)) > 0
    speck = ndimage.gaussian_filter(rng.random(truth.shape), 1.0)
    speck = (speck - speck.mean()) / speck.std()
    x = np.clip(0.3 * cells + (truth > 0) * (0.6 + 0.3 * texture * speck), 0.0, 1.2) / 1.2
    dark = 60000 * (1 - 0.8 * x) + rng.normal(0, 300, truth.shape)
    return dark.clip(0, 65535).astype(np.uint16), truth


def test_the_chromatin_of_dark_nuclei_does_not_pass_for_them():
    """The diameter of dark nuclei is re-estimated without their cytoplasm, no smaller than a third of it."""
    from napari_levelset.post.objects import transmitted_prepared

    dark, _ = _dark_cells((384, 384), 16.0, 60, texture=1.5)
    assert transmitted_prepared(dark)[1] >= 16.0 / 3


def test_small_dark_objects_of_a_large_grey_image_on_a_capped_working_copy():
    from napari_levelset.method.plan import plan_run
    from napari_levelset.post.objects import TRANSMITTED_CAP
    from napari_levelset.settings import INSTANCE_PIXELS, Settings

    dark, truth = _dark_cells((640, 640), 9.0, 600, texture=0.0)
    plan = plan_run(dark, Settings(regions="instances"))
    # objects of 9 px would keep the image at full size (TRANSMITTED_MIN_PX); the cap holds (to whole pixels)
    assert plan.convex and np.prod(plan.prepared.spatial_shape) <= 1.01 * TRANSMITTED_CAP * INSTANCE_PIXELS
    assert instance_scores(segment(dark, regions="instances"), truth)["f1"] > 0.6


def test_dark_objects_estimates_stop_once_the_diameter_stays(monkeypatch):
    """A re-estimate that gives back the diameter it was bounded by is not made again (it would see the
    same image): two estimates instead of three, and the image prepared as with all three."""
    from napari_levelset.io.prepare import prepare_image
    from napari_levelset.post import objects
    from napari_levelset.post.instances import BACKGROUND_DIAMETERS, _background

    bright, _ = nuclei((384, 384), n_objects=40, diameter=20.0, seed=0)
    dark = (bright.max() - bright).astype(bright.dtype)  # dark nuclei, no cytoplasm: the estimate stays
    real, calls = objects.estimate_diameter, []
    monkeypatch.setattr(objects, "estimate_diameter", lambda *a, **k: calls.append(k) or real(*a, **k))
    prepared, d, _ = objects.transmitted_prepared(dark)
    assert len(calls) == 2

    x0 = prepare_image(objects.transmitted_signal(dark)[0], None, None).data[0, 0]  # all three, by hand
    e = real(x0, largest=objects.TRANSMITTED_LARGEST)
    floor = e / objects.TRANSMITTED_CELL_NUCLEUS
    for _ in range(2):
        r = np.maximum(x0 - _background(x0, np.full(2, max(3.0, BACKGROUND_DIAMETERS * e))), 0.0)
        e = max(real(r, max_diameter=e), floor)
    r = np.maximum(x0 - _background(x0, np.full(2, max(3.0, BACKGROUND_DIAMETERS * e))), 0.0)
    expected = np.clip(r / np.percentile(r, objects.TRANSMITTED_TOP), 0, 1)
    assert abs(d - e) <= 1e-5 * e
    np.testing.assert_allclose(prepared.data[0, 0], expected, atol=1e-6)
