"""Stroke-guided segmentation: the working copy, strokes carried to it, 2D / 3D / multichannel."""

from pathlib import Path

import numpy as np
import pytest

from napari_levelset import Segmenter, segment
from napari_levelset.errors import InputError
from napari_levelset.method.strokes import scribbles_to_grid, stroke_contrast


def three_levels(shape, levels=(0.1, 0.5, 0.9), noise=0.05, seed=0):
    """Three vertical bands of the given grey levels with Gaussian noise; also the band index."""
    band = np.arange(shape[-1]) * 3 // shape[-1]
    band = np.broadcast_to(band, shape)
    rng = np.random.default_rng(seed)
    return (np.asarray(levels)[band] + noise * rng.standard_normal(shape)).astype(np.float32), band


def test_thin_strokes_stay_connected_and_in_place_on_a_smaller_grid():
    from scipy import ndimage as ndi

    s = np.zeros((1, 300, 400), np.int64)
    s[0, 50, 20:380] = 1  # a horizontal line one pixel wide
    rr = np.arange(100, 290)
    s[0, rr, rr] = 2  # a diagonal one
    small = scribbles_to_grid(s, (75, 100))
    assert small.shape == (1, 75, 100)
    for k in (1, 2):
        _, pieces = ndi.label(small[0] == k, structure=np.ones((3, 3)))
        assert pieces == 1
    assert set(np.unique(small[0, 12])) == {0, 1} and (small[0, 12, 5:95] == 1).all()  # row 50 -> 12
    assert small[0, 25, 25] == 2 and small[0, 72, 72] == 2 and small[0, 20, 80] == 0


def test_strokes_decide_the_classes_on_a_working_copy():
    image, band = three_levels((210, 330))  # 69 300 pixels: optimised on a smaller copy
    scr = np.zeros(image.shape, np.uint8)
    scr[120, 10:100] = 1  # the dark band
    scr[120, 130:230] = 1  # the middle band goes with it
    scr[120, 250:350] = 2
    seg = Segmenter(image, 2, scribbles=scr, device="cpu")
    work = seg.settings["work_shape"]
    assert work is not None and np.prod(work) <= 60_000
    labels = list(seg.run(40, every=40))[-1].labels
    assert labels.shape == image.shape
    # (the band boundaries are drawn from the smaller copy: a few per cent of a band)
    assert (labels[band < 2] == 1).mean() > 0.95 and (labels[band == 2] == 2).mean() > 0.95
    assert seg.probabilities().shape == (2,) + image.shape
    # the other grouping, given later to a run going on: it reaches the working copy too
    scr[120, 130:230] = 2
    seg.set_scribbles(scr)
    labels = list(seg.run(40, every=40))[-1].labels
    assert (labels[band == 0] == 1).mean() > 0.97 and (labels[band >= 1] == 2).mean() > 0.97


def test_without_strokes_the_image_is_optimised_at_full_size():
    image, _ = three_levels((240, 360))
    assert Segmenter(image, 3, device="cpu").settings["work_shape"] is None
    assert Segmenter(image, 3, device="cpu", work_pixels=20_000).settings["work_shape"] is not None
    with pytest.raises(InputError, match="work_pixels"):
        Segmenter(image, 3, device="cpu", work_pixels=0)


def test_a_stroke_on_one_slice_of_a_volume_acts_in_3d():
    # background 0.1, ball A 0.5, ball B 0.9; strokes on slice 12 only: A goes with the background
    zz, yy, xx = np.mgrid[:24, :36, :44]
    ra = (zz - 12) ** 2 + (yy - 18) ** 2 + (xx - 11) ** 2
    rb = (zz - 12) ** 2 + (yy - 18) ** 2 + (xx - 32) ** 2
    a, b = ra < 9**2, rb < 9**2
    rng = np.random.default_rng(1)
    volume = (0.1 + 0.4 * a + 0.8 * b + 0.05 * rng.standard_normal(a.shape)).astype(np.float32)
    scr = np.zeros(volume.shape, np.uint8)
    scr[12, 18, 6:17] = 1  # inside A
    scr[12, 3, 3:41] = 1  # background
    scr[12, 18, 27:38] = 2  # inside B
    labels = segment(volume, n_classes=2, scribbles=scr, spatial_dims=3, device="cpu", iterations=30)
    assert labels.shape == volume.shape
    off = np.abs(zz - 12) >= 3  # slices the strokes are not on
    inner_a, inner_b = ra < 7**2, rb < 7**2  # away from the partial-volume rim
    assert (labels[inner_a & off] == 1).mean() > 0.95
    assert (labels[inner_b & off] == 2).mean() > 0.95
    assert (labels[(ra > 11**2) & (rb > 11**2) & off] == 1).mean() > 0.95


def test_strokes_on_a_multichannel_image():
    # two channels: the bands differ in channel 0, a square differs only in channel 1
    ch0, _band = three_levels((200, 330))
    ch1 = np.full(ch0.shape, 0.2, np.float32)
    ch1[60:140, 40:120] = 0.8
    image = np.stack([ch0, ch1])
    scr = np.zeros(ch0.shape, np.uint8)
    scr[100, 60:100] = 2  # the square
    scr[20, 10:320] = 1  # the bands above it
    labels = segment(image, n_classes=2, scribbles=scr, channel_axis=0, device="cpu")
    square = np.zeros(ch0.shape, bool)
    square[60:140, 40:120] = True
    assert labels.shape == ch0.shape
    assert (labels[square] == 2).mean() > 0.9 and (labels[~square] == 1).mean() > 0.9


def test_stroke_contrast_follows_the_widgets_rule():
    assert stroke_contrast(np.zeros((8, 8), np.uint16)) == "fluorescence"
    assert stroke_contrast(np.zeros((8, 8), np.uint8)) == "linear"
    assert stroke_contrast(np.zeros((8, 8), np.float32)) == "linear"
    assert stroke_contrast(np.zeros((8, 8, 3), np.uint16)) == "linear"  # an RGB picture
    assert stroke_contrast(np.zeros((2, 8, 8), np.uint16), channel_axis=0) == "fluorescence"


def test_stroke_means_are_the_means_of_the_painted_pixels():
    import torch

    from napari_levelset.method.strokes import stroke_means

    x = torch.arange(2 * 2 * 4 * 5, dtype=torch.float32).reshape(2, 2, 4, 5)  # B 2, C 2
    scr = torch.zeros(2, 4, 5, dtype=torch.int64)
    scr[0, 1, 1:3] = 3  # network class 2, on the first item
    scr[1, 0, 0] = 3  # and on the second
    stroked, centres = stroke_means(x, scr, 4)
    assert stroked.tolist() == [False, False, True, False]
    painted = torch.stack([x[0, :, 1, 1], x[0, :, 1, 2], x[1, :, 0, 0]])
    assert torch.allclose(centres[2], painted.mean(0)) and not centres[[0, 1, 3]].any()
    assert stroke_means(x, None, 4) is None


def test_local_contrast_makes_dim_and_bright_objects_alike():
    from napari_levelset.method.strokes import local_contrast

    yy, xx = np.mgrid[:96, :128]
    dim = (yy - 30) ** 2 + (xx - 30) ** 2 < 12**2
    bright = (yy - 60) ** 2 + (xx - 90) ** 2 < 12**2
    rng = np.random.default_rng(0)
    x = (0.1 + 0.05 * dim + 0.8 * bright + 0.002 * rng.standard_normal(dim.shape)).astype(np.float32)
    log, norm = local_contrast(x, 24)
    assert log.shape == norm.shape == x.shape and norm.min() >= 0 and norm.max() <= 1
    assert np.median(norm[dim]) > 0.7 and np.median(norm[bright]) > 0.7  # both near 1 inside
    background = ~(np.hypot(yy - 30, xx - 30) < 20) & ~(np.hypot(yy - 60, xx - 90) < 20)
    assert np.median(norm[background]) < 0.1
    assert np.median(log[bright]) > np.median(log[dim]) > np.median(log[background])


def test_stroke_channels_replace_each_channel_by_two():
    from napari_levelset.io.prepare import prepare_image
    from napari_levelset.method.strokes import stroke_channels

    image = np.random.default_rng(1).random((2, 40, 50)).astype(np.float32)
    prepared = prepare_image(image, channel_axis=0)
    out = stroke_channels(prepared, 1.0, 10.0)
    assert out.data.shape == (1, 4, 40, 50) and out.data.dtype == np.float32
    assert out.spatial_shape == prepared.spatial_shape


def test_strokes_on_bright_nuclei_find_the_dim_ones_too():
    """Strokes on three bright nuclei and the background of a 16-bit fluorescence image: the dim nuclei, which
    no stroke touches and which are nearer the background's intensity than the stroked nuclei', are found too
    (the working copy's local-contrast channels, ``strokes.stroke_channels``)."""
    rng = np.random.default_rng(0)
    size = 256
    yy, xx = np.mgrid[:size, :size]
    img = np.full((size, size), 100.0) + 40 * (xx / size)  # an uneven background
    truth = np.zeros((size, size), bool)
    centres = [(40 + 58 * i, 40 + 58 * j) for i in range(4) for j in range(4)]
    bright = {0, 3, 5, 10, 12, 15}
    for k, (cy, cx) in enumerate(centres):
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= 14**2
        img[disk] += 2000 if k in bright else 150
        truth |= disk
    img = rng.poisson(img).astype(np.uint16)
    scribbles = np.zeros((size, size), np.uint8)
    for k in (0, 5, 10):
        cy, cx = centres[k]
        scribbles[cy - 5 : cy + 6, cx] = 2
    scribbles[10, 10:240] = 1
    scribbles[10:240, 250] = 1
    foreground = segment(img, 2, scribbles=scribbles, device="cpu") == 2
    assert all(foreground[centres[k]] for k in range(16) if k not in bright)
    assert 2 * (foreground & truth).sum() / (foreground.sum() + truth.sum()) >= 0.95


def test_a_first_stroke_after_a_run_keeps_the_region_its_class_holds():
    """Coins, N 3, a run, then a label-1 stroke on the background and Refine: the background stays (becomes)
    label 1.  The stroked class used to be restarted from its stroke's mean although it held most of the
    background; with the other classes' trained logits it lost it, and most of the background went to label 2."""
    import tifffile

    sample = Path(__file__).resolve().parents[1] / "napari_levelset" / "sample_data"

    image = tifffile.imread(sample / "coins.tif")
    seg = Segmenter(image, 3, device="cpu")
    for _ in seg.run(100, every=100):
        pass
    before = seg.labels()
    background = before < 3  # labels 1 and 2: the background's darker and lighter parts; 3 the coins
    assert 0.3 < np.mean(before[background] == 1) < 0.9
    strokes = np.zeros(image.shape, np.uint8)
    strokes[10:14, 20:200] = 1  # on the lighter background, labelled 2 so far
    assert np.all(before[strokes > 0] == 2)
    seg.set_scribbles(strokes)
    for _ in seg.run(1, every=1):
        pass
    assert np.mean(seg.labels()[background] == 1) > 0.5  # was 0.05 after this step
    for _ in seg.run(40, every=40):
        pass
    after = seg.labels()
    assert np.all(after[strokes > 0] == 1)
    assert np.mean(after[background] == 1) > 0.8  # was 0.34


def _photo(shape=(60, 90), seed=0):
    """An RGB image of three colour regions (two alike, far apart), with noise; also the region index."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    region = np.where(xx < shape[1] // 3, 0, np.where(yy < shape[0] // 2, 1, 2))
    colours = np.array([(200, 60, 50), (40, 150, 60), (60, 80, 200)])
    noise = np.random.default_rng(seed).integers(-15, 16, (*shape, 3))
    return np.clip(colours[region] + noise, 0, 255).astype(np.uint8), region


def test_short_strokes_reach_their_whole_regions_on_a_photograph():
    """One short dab per region: the strokes' prior (appearance and geodesic distance) labels every region."""
    from napari_levelset.method.strokes import stroke_prior

    image, region = _photo()
    strokes = np.zeros(region.shape, np.uint8)
    strokes[5:8, 3:9], strokes[3:6, 80:86], strokes[54:57, 80:86] = 1, 2, 3  # in a corner of each region
    seg = Segmenter(image, 3, scribbles=strokes, device="cpu")
    assert seg.settings["prior"] > 0 and seg.settings["position"] == 0
    assert np.mean(seg.labels() == region + 1) > 0.95  # the first labels, before any iteration
    prior = stroke_prior(np.moveaxis(image, -1, 0)[None] / 255.0, strokes[None], 3)
    assert prior.shape == (1, 3, *region.shape) and prior.max() <= 0 and prior.min() >= -1
    for _ in seg.run(10, every=10):
        pass
    assert np.mean(seg.labels() == region + 1) > 0.95


def test_unstroked_classes_still_take_pixels_with_the_prior():
    """N above the stroked labels: the unstroked class gets a neutral prior and its k-means start finds a region."""
    image, region = _photo()
    strokes = np.zeros(region.shape, np.uint8)
    strokes[5:8, 3:9], strokes[3:6, 80:86] = 1, 2  # region 2 (blue) left unstroked
    labels = np.asarray(segment(image, n_classes=3, scribbles=strokes, device="cpu"))
    assert np.mean(labels[region == 0] == 1) > 0.9 and np.mean(labels[region == 1] == 2) > 0.9
    assert np.mean(labels[region == 2] == 3) > 0.8


def test_a_short_strokes_evidence_stops_at_a_strong_edge():
    """Two regions alike but for a dark line between them: each stroke keeps its own side, the far side too.

    A's stroke lies 30 pixels from the line, B's 5 pixels across it: A's pixels by the line lie nearer
    B's stroke in straight distance, but the line is in the way.
    """
    from napari_levelset.method.strokes import geodesic_distances, stroke_prior

    rng = np.random.default_rng(1)
    shape = (50, 120)
    image = np.clip(rng.normal(0.5, 0.03, (1, 3, *shape)), 0, 1)
    image[..., 60:62] = 0.0  # the edge: a dark line two pixels wide
    strokes = np.zeros((1, *shape), np.int64)
    strokes[0, 20:23, 25:31], strokes[0, 20:23, 66:72] = 1, 2
    labels = stroke_prior(image, strokes, 2)[0].argmax(0) + 1
    assert np.mean(labels[:, :60] == 1) > 0.97
    assert np.mean(labels[:, 62:] == 2) > 0.97
    # A's pixels nearer B's stroke than A's in straight distance, but for the column touching the line (its
    # blurred colour is the line's, its gradient the line's peak, reached alike from both sides)
    near_line = (slice(None), slice(50, 59))
    assert np.mean(labels[near_line] == 1) > 0.97
    without = image.copy()
    without[..., 60:62] = 0.5  # no line: the same strokes' geodesic distances cross over
    d = geodesic_distances(without, strokes, 2)[0]
    assert np.mean(d[1][near_line] < d[0][near_line]) > 0.9


def test_strokes_on_a_colour_photograph_take_the_shorter_run():
    """RGB with strokes: PHOTO_STROKE_ITERATIONS on PHOTO_STROKE_PIXELS; grey, or no strokes, as before."""
    from napari_levelset.settings import (
        PHOTO_STROKE_ITERATIONS,
        PHOTO_STROKE_PIXELS,
        STROKE_ITERATIONS,
        STROKE_PIXELS,
        Settings,
    )

    rgb, grey = np.zeros((32, 48, 3), np.uint8), np.zeros((32, 48), np.uint16)
    photo = Settings().resolved(strokes=True, image=rgb)
    assert (photo.iterations, photo.work_pixels) == (PHOTO_STROKE_ITERATIONS, PHOTO_STROKE_PIXELS)
    assert PHOTO_STROKE_ITERATIONS < STROKE_ITERATIONS and PHOTO_STROKE_PIXELS < STROKE_PIXELS
    for s in (Settings().resolved(strokes=True, image=grey), Settings(color="rgb").resolved(strokes=True, image=rgb)):
        assert (s.iterations, s.work_pixels) == (STROKE_ITERATIONS, STROKE_PIXELS)
    assert Settings().resolved(image=rgb).iterations > STROKE_ITERATIONS  # no strokes: the full run


def test_the_evidence_map_follows_strokes_painted_during_a_run():
    """Strokes changed during a run change the evidence map: a class-3 stroke first painted in the wrong
    region and then moved, and a third class stroked only after the run started."""
    image, region = _photo()
    strokes = np.zeros(region.shape, np.uint8)
    strokes[5:8, 3:9], strokes[3:6, 80:86], strokes[40:43, 3:9] = 1, 2, 3  # 3 painted in region 1
    seg = Segmenter(image, 3, scribbles=strokes, device="cpu")
    assert seg.settings["prior"] > 0
    for _ in seg.run(1, every=1):
        pass
    strokes[40:43, 3:9], strokes[54:57, 80:86] = 0, 3  # moved to a corner of region 3
    seg.set_scribbles(strokes)
    for _ in seg.run(3, every=3):
        pass
    assert np.mean(seg.labels() == region + 1) > 0.95  # the first map kept region 1's lower half as class 3

    strokes[54:57, 80:86] = 0
    seg = Segmenter(image, 3, scribbles=strokes, device="cpu")  # two of three classes: no map yet
    assert seg.settings["prior"] == 0
    for _ in seg.run(1, every=1):
        pass
    strokes[54:57, 80:86] = 3
    seg.set_scribbles(strokes)
    for _ in seg.run(3, every=3):
        pass
    assert np.mean(seg.labels() == region + 1) > 0.95


def test_the_evidence_map_is_made_on_a_photographs_working_copy_as_it_is():
    """The default working copy of a photograph with strokes is not shrunk again for the evidence map; a larger
    one is, to at most GEODESIC_PIXELS pixels."""
    from napari_levelset.method.strokes import GEODESIC_PIXELS, _geodesic_copy, working_copy
    from napari_levelset.settings import PHOTO_STROKE_PIXELS, Settings

    image = np.random.default_rng(0).integers(0, 256, (321, 481, 3), np.uint8)
    strokes = np.zeros(image.shape[:2], np.uint8)
    strokes[10, 10:20], strokes[300, 10:20] = 1, 2
    seg = Segmenter(image, 2, scribbles=strokes, device="cpu")
    assert seg.settings["work_shape"] is not None and seg.settings["prior"] > 0
    assert Settings().resolved(strokes=True, image=image).work_pixels == PHOTO_STROKE_PIXELS
    work, _ = working_copy(seg.prepared, PHOTO_STROKE_PIXELS)
    item = work.data[0]
    assert np.array_equal(_geodesic_copy(item), item)
    larger = np.zeros((3, 2 * item.shape[1], 2 * item.shape[2]), np.float32)
    assert np.prod(_geodesic_copy(larger).shape[1:]) <= GEODESIC_PIXELS < np.prod(larger.shape[1:])


def test_the_mean_field_pass_clears_speckle_but_keeps_a_thin_region_of_its_own_colour():
    """Wrong pixels scattered in a flat region go to the class around them; a stripe three pixels wide of
    another colour, which its map favours only slightly, keeps its class against the neighbours around it."""
    from napari_levelset.method.stroke_look import mean_field

    item = np.zeros((3, 40, 40))
    item[0, :, 18:21] = 1.0  # the stripe: another colour
    truth = np.zeros((40, 40), int)
    truth[:, 18:21] = 1
    maps = np.full((2, 40, 40), -0.5)  # outside the stripe class 0 ahead by 0.5
    maps[0][truth == 0] = maps[1][truth == 1] = 0.0
    maps[0][truth == 1] = -0.1  # in the stripe class 1 ahead by 0.1 only
    speckle = (np.random.default_rng(0).random((40, 40)) < 0.1) & (truth == 0)
    maps[:, speckle] = maps[::-1][:, speckle]  # these say the wrong class
    assert np.mean(maps.argmax(0) == truth) < 0.95
    out = mean_field(item, maps)
    assert out.shape == maps.shape and out.dtype == np.float32 and out.max() <= 0 and out.min() >= -1
    assert np.array_equal(out.argmax(0), truth)
