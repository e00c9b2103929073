import os
import subprocess
import sys

import numpy as np
import pytest

from napari_levelset.errors import InputError
from napari_levelset.io.axes import infer_axes
from napari_levelset.io.prepare import normalize, prepare_image
from napari_levelset.io.read import read_image
from napari_levelset.io.write import write_labels


@pytest.mark.parametrize(
    "shape,kwargs,want",
    [
        ((30, 40), {}, (None, 2)),
        ((30, 40, 3), {}, (2, 2)),
        ((30, 40, 4), {}, (2, 2)),
        ((30, 40, 3), {"spatial_dims": 3}, (None, 3)),
        ((10, 30, 40), {}, (None, 3)),
        ((10, 30, 40), {"spatial_dims": 2}, (None, 2)),
        ((10, 30, 40, 3), {}, (3, 3)),
        ((2, 30, 40), {"channel_axis": 0}, (0, 2)),
        ((30, 40, 7), {"channel_axis": -1}, (2, 2)),
        ((5, 10, 30, 40), {"spatial_dims": 2}, (None, 2)),
    ],
)
def test_infer_axes(shape, kwargs, want):
    assert infer_axes(shape, **kwargs) == want


def test_prepare_moves_channels_and_batches_slices():
    rng = np.random.default_rng(0)
    img = rng.random((4, 10, 12, 2))
    p = prepare_image(img, channel_axis=-1, spatial_dims=2)
    assert p.data.shape == (4, 2, 10, 12)
    assert p.out_shape == (4, 10, 12)
    assert p.data.dtype == np.float32
    # channel 1 of slice 3 is the normalised version of img[3, ..., 1]
    ch = img[..., 1]
    lo, hi = np.percentile(ch, [0.5, 99.5])
    np.testing.assert_allclose(p.data[3, 1], np.clip((ch[3] - lo) / (hi - lo), 0, 1), rtol=1e-5, atol=1e-6)
    lab = np.arange(4 * 10 * 12).reshape(4, 10, 12)
    np.testing.assert_array_equal(p.to_output(p.to_batch(lab)), lab)


def test_normalize_is_robust_to_a_few_hot_pixels():
    rng = np.random.default_rng(1)
    img = rng.uniform(100, 200, (1, 64, 64))
    img[0, 0, :5] = 1e6  # hot pixels
    out = normalize(img)
    assert out.min() == 0.0 and out.max() == 1.0
    # the bulk keeps its contrast instead of being squashed near 0
    assert np.median(out) > 0.3


def test_constant_channel_becomes_zero_but_all_constant_is_an_error():
    img = np.zeros((2, 8, 8))
    img[0] = np.arange(64).reshape(8, 8)
    img[1] = 255.0
    out = normalize(img)
    assert np.all(out[1] == 0)
    with pytest.raises(InputError, match="constant"):
        normalize(np.full((1, 8, 8), 3.0))


def test_sparse_image_falls_back_to_min_max():
    img = np.zeros((1, 100, 100))
    img[0, 50, 50] = 7.0
    out = normalize(img)
    assert out.max() == 1.0 and out[0, 50, 50] == 1.0


@pytest.mark.parametrize("ext", [".tif", ".png"])
def test_write_then_read_labels(tmp_path, ext):
    lab = (np.arange(20 * 30).reshape(20, 30) % 5 + 1).astype(np.uint8)
    path = write_labels(tmp_path / f"out{ext}", lab)
    np.testing.assert_array_equal(read_image(path), lab)
    assert sorted(os.listdir(tmp_path)) == [f"out{ext}"]  # no temporary files left behind


def test_write_3d_labels_to_tiff(tmp_path):
    lab = np.random.default_rng(0).integers(1, 4, (5, 6, 7)).astype(np.uint16)
    np.testing.assert_array_equal(read_image(write_labels(tmp_path / "v.tiff", lab)), lab)


def test_failed_write_leaves_existing_file_untouched_and_no_temporaries(tmp_path):
    target = tmp_path / "keep.tif"
    target.write_bytes(b"precious")
    with pytest.raises(InputError):
        write_labels(target, np.array([[object(), object()]], dtype=object))
    assert target.read_bytes() == b"precious"
    assert sorted(os.listdir(tmp_path)) == ["keep.tif"]


def test_write_errors_are_clear(tmp_path):
    with pytest.raises(InputError, match="PNG holds 2D"):
        write_labels(tmp_path / "v.png", np.ones((2, 3, 4), np.uint8))
    with pytest.raises(InputError, match=r"\.tif, \.tiff or \.png"):
        write_labels(tmp_path / "v.jpg", np.ones((3, 4), np.uint8))
    with pytest.raises(InputError, match="folder does not exist"):
        write_labels(tmp_path / "nope" / "v.png", np.ones((3, 4), np.uint8))


def test_read_errors_are_clear(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "missing.png")
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(InputError, match="cannot read"):
        read_image(bad)
    with pytest.raises(InputError, match="directory"):
        read_image(tmp_path)


def test_written_files_get_normal_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        path = write_labels(tmp_path / "perm.tif", np.ones((3, 3), np.uint8))
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_integer_rgb_of_any_type_gives_the_same_cielab():
    from skimage import data

    rgb = data.coffee()[::8, ::8]
    ref = prepare_image(rgb, color="lab").data
    for dt in (np.int64, np.int32, np.uint16):  # e.g. img.astype(int): 8-bit data in a wider type
        np.testing.assert_allclose(prepare_image(rgb.astype(dt), color="lab").data, ref, atol=1e-5)
    twelve_bit = prepare_image(rgb.astype(np.uint16) * 16, color="lab").data  # read as 0..4095
    assert np.abs(twelve_bit - ref).max() < 0.01


def test_a_constant_colour_image_is_an_error():
    with pytest.raises(InputError, match="constant"):
        prepare_image(np.full((20, 30, 3), (200, 30, 30), np.uint8), color="lab")


def test_values_beyond_float32_and_single_pixels():
    huge = np.zeros((20, 20))
    huge[5:15, 5:15] = 1e300
    out = prepare_image(huge).data
    assert np.isfinite(out).all() and out.max() == 1.0 and out.min() == 0.0
    with pytest.raises(InputError, match="1 pixel"):
        prepare_image(np.full((1, 1, 3), 5, np.uint8))


def test_grey_alpha_png_loses_alpha_and_palette_labels_read_as_indices(tmp_path):
    from PIL import Image

    grey = np.arange(48, dtype=np.uint8).reshape(6, 8)
    Image.fromarray(np.stack([grey, np.full_like(grey, 255)], 2), mode="LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_image(tmp_path / "la.png"), grey)
    idx = np.zeros((6, 8), np.uint8)
    idx[:, 4:] = 2
    pal = Image.fromarray(idx, mode="P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    pal.save(tmp_path / "scribbles.png")
    np.testing.assert_array_equal(read_image(tmp_path / "scribbles.png", labels=True), idx)
    assert read_image(tmp_path / "scribbles.png").shape == (6, 8, 3)  # as a picture: its colours


def test_region_ids_write_to_png_and_stacks_to_greyscale_tiff(tmp_path):
    import tifffile

    regions = np.arange(1, 13, dtype=np.uint32).reshape(3, 4) * 1000
    write_labels(tmp_path / "r.png", regions)
    np.testing.assert_array_equal(read_image(tmp_path / "r.png"), regions)
    with pytest.raises(InputError, match="up to 65535"):
        write_labels(tmp_path / "big.png", regions * 100)
    stack = np.ones((3, 8, 8), np.uint8)
    write_labels(tmp_path / "s.tif", stack)
    with tifffile.TiffFile(tmp_path / "s.tif") as tif:
        assert tif.pages[0].photometric == tifffile.PHOTOMETRIC.MINISBLACK
        assert tif.asarray().shape == (3, 8, 8)


# ---------------------------------------------------------------- normalisation: the rule


def bright_discs(shape=(128, 128), radius=2.5, snr=12.0, seed=0):
    """Unit-noise background with three small discs ``snr`` brighter: < 0.5 % of the pixels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    truth = np.zeros(shape, bool)
    for cy, cx in [(30, 40), (80, 90), (100, 30)]:
        truth |= (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    return rng.normal(0, 1, shape) + snr * truth, truth


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_sparse_bright_objects_keep_their_contrast():
    import napari_levelset as nls

    img, truth = bright_discs()
    assert truth.mean() < 0.005  # fewer than the 0.5 % above the 99.5th percentile
    out = normalize(img[None])[0]
    assert np.median(out[truth]) > 0.7 and np.percentile(out[~truth], 99.9) < 0.5
    labels = nls.segment(img.astype(np.float32), n_classes=2, device="cpu")
    assert iou(labels == 2, truth) > 0.8
    # structures=False: the 99.5th percentile alone, which clips the discs to the brightest noise
    old = normalize(img[None], structures=False)[0]
    assert (old[truth] == 1).all() and (old[~truth] == 1).sum() > 0


def test_hot_pixels_and_thin_lines_do_not_set_the_range():
    rng = np.random.default_rng(3)
    img = rng.normal(100, 5, (1, 128, 128))
    img[0, 10, 10] = 1e6  # a hot pixel
    img[0, 40, 40:60] = 1e6  # a line one pixel wide
    img[0, 80:95, 30:32] = 1e6  # a bar two pixels wide: together under 0.5 % of the pixels
    out = normalize(img)
    assert np.median(out) > 0.3  # the bulk keeps its contrast


@pytest.mark.parametrize("rgb", [False, True])
def test_same_values_in_any_dtype_prepare_and_segment_identically(rgb):
    import napari_levelset as nls
    from napari_levelset.evaluation.synthetic import phantom

    image, _ = phantom((48, 56), 3, channels=3 if rgb else None, seed=3)
    u16 = (np.clip(image, 0, 1) * 4095).astype(np.uint16)  # 12-bit data
    ref = prepare_image(u16, color="auto").data
    ref_labels = nls.segment(u16, n_classes=3, device="cpu", iterations=20)
    for dt in (np.float32, np.float64, np.int32, np.int64):
        copy = u16.astype(dt)
        np.testing.assert_array_equal(prepare_image(copy, color="auto").data, ref)
        np.testing.assert_array_equal(nls.segment(copy, n_classes=3, device="cpu", iterations=20), ref_labels)


def test_wide_integers_and_their_float64_copy_prepare_identically():
    big = np.random.default_rng(0).integers(2**30, 2**31, (32, 32)).astype(np.int64)  # beyond float32's integers
    np.testing.assert_array_equal(prepare_image(big).data, prepare_image(big.astype(np.float64)).data)


def test_float64_extremes_do_not_overflow():
    img = np.full((20, 20), -1.7e308)
    img[5:15, 5:15] = 1.7e308
    out = prepare_image(img).data[0, 0]
    assert np.isfinite(out).all()
    assert (out[5:15, 5:15] == 1).all() and (out[:5] == 0).all()


def test_an_explicit_channel_axis_uses_every_channel():
    import napari_levelset as nls

    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:64, :64]
    truth = (yy - 32) ** 2 + (xx - 28) ** 2 < 12**2
    img4 = rng.normal(0.5, 0.05, (64, 64, 4)).astype(np.float32)
    img4[..., 3] += 0.5 * truth  # only the 4th channel holds the object
    assert prepare_image(img4, channel_axis=-1, color="auto").data.shape[1] == 4
    labels = nls.segment(img4, n_classes=2, channel_axis=-1, device="cpu")
    assert iou(labels == 2, truth) > 0.8
    # a guessed channel axis is napari's RGBA: alpha dropped in every colour mode
    assert prepare_image(img4, color="auto").data.shape[1] == 3
    assert prepare_image(img4, color="rgb").data.shape[1] == 3
    with pytest.raises(InputError, match="explicit channel_axis"):
        prepare_image(img4, channel_axis=-1, color="lab")


# ---------------------------------------------------------------- files: axes and pixel size


def test_imagej_hyperstack_labels_round_trip_with_axes_and_voxel_size(tmp_path):
    from napari_levelset.io.read import read_image_file

    lab = np.random.default_rng(0).integers(0, 5, (2, 3, 8, 9)).astype(np.uint8)  # T Z Y X
    path = write_labels(tmp_path / "lab.tif", lab, axes="TZYX", spacing=(2.0, 0.25, 0.5), unit="µm")
    f = read_image_file(path)
    np.testing.assert_array_equal(f.data, lab)
    assert (f.axes, f.spacing, f.unit) == ("TZYX", (2.0, 0.25, 0.5), "µm")
    np.testing.assert_array_equal(read_image(path), lab)  # the array as stored, as before
    import tifffile

    with tifffile.TiffFile(path) as tif:  # what ImageJ reads: a hyperstack with its calibration
        assert tif.is_imagej and tif.imagej_metadata["spacing"] == 2.0 and tif.imagej_metadata["unit"] == "micron"
        assert tif.imagej_metadata["frames"] == 2 and tif.imagej_metadata["slices"] == 3


@pytest.mark.parametrize("dtype,top", [(np.uint32, 70_000), (np.int64, 5), (np.uint32, 300)])
def test_labels_imagej_cannot_hold_keep_their_metadata(tmp_path, dtype, top):
    from napari_levelset.io.read import read_image_file

    lab = np.arange(2 * 4 * 5, dtype=dtype).reshape(2, 4, 5) % 7
    lab[0, 0, 0] = top  # region ids beyond 65535 need 32 bits; int64 needs tifffile's own description
    path = write_labels(tmp_path / "ids.tif", lab, axes="ZYX", spacing=(3.0, 0.5, 0.5), unit="nm")
    f = read_image_file(path)
    np.testing.assert_array_equal(f.data, lab)
    assert (f.axes, f.spacing, f.unit) == ("ZYX", (3.0, 0.5, 0.5), "nm")


def test_unnamed_axes_and_no_metadata(tmp_path):
    from napari_levelset.io.read import read_image_file

    lab = np.ones((3, 8, 8), np.uint16)
    path = write_labels(tmp_path / "q.tif", lab, axes="QYX", spacing=(0.5, 0.5), unit="µm")
    f = read_image_file(path)
    assert (f.axes, f.spacing, f.unit) == ("QYX", (0.5, 0.5), "µm")
    f = read_image_file(write_labels(tmp_path / "plain.tif", lab))  # as before: no metadata
    assert f.axes == "QYX" and f.spacing is None and f.unit is None
    with pytest.raises(InputError, match="spacing must be 3"):
        write_labels(tmp_path / "bad.tif", lab, axes="ZYX", spacing=(1.0, 1.0))
    with pytest.raises(InputError, match="do not fit"):
        write_labels(tmp_path / "bad.tif", lab, axes="YX")


def test_reads_imagej_ome_and_calibrated_tiffs(tmp_path):
    import tifffile

    from napari_levelset.io.read import read_image_file

    rng = np.random.default_rng(1)
    ij = rng.integers(0, 4000, (2, 3, 2, 8, 9)).astype(np.uint16)  # T Z C Y X
    tifffile.imwrite(
        tmp_path / "ij.tif",
        ij,
        imagej=True,
        resolution=(1 / 0.2, 1 / 0.3),
        metadata={"axes": "TZCYX", "spacing": 1.5, "unit": "micron"},
    )
    f = read_image_file(tmp_path / "ij.tif")
    assert (f.axes, f.spacing, f.unit, f.rgb) == ("TZCYX", pytest.approx((1.5, 0.3, 0.2)), "µm", False)
    assert f.layout() == (2, 3)  # C is the channel axis, Z makes a volume, T a batch axis
    assert f.label_axes(2) == "TZYX"

    ome = rng.integers(0, 4000, (3, 2, 8, 9)).astype(np.uint16)  # C Z Y X
    tifffile.imwrite(
        tmp_path / "x.ome.tif",
        ome,
        ome=True,
        metadata={
            "axes": "CZYX",
            "PhysicalSizeX": 0.1,
            "PhysicalSizeY": 0.1,
            "PhysicalSizeZ": 500.0,
            "PhysicalSizeXUnit": "µm",
            "PhysicalSizeYUnit": "µm",
            "PhysicalSizeZUnit": "nm",
        },
    )
    f = read_image_file(tmp_path / "x.ome.tif")
    np.testing.assert_array_equal(f.data, ome)
    assert (f.axes, f.spacing, f.unit) == ("CZYX", pytest.approx((0.5, 0.1, 0.1)), "µm")  # mixed units in µm
    assert f.layout() == (0, 3)

    rgb = rng.integers(0, 255, (8, 9, 3)).astype(np.uint8)  # a plain RGB TIFF, 5 µm pixels given per centimetre
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb", resolution=(2000, 2000), resolutionunit="CENTIMETER")
    f = read_image_file(tmp_path / "rgb.tif")
    assert (f.axes, f.spacing, f.unit, f.rgb) == ("YXC", pytest.approx((5.0, 5.0)), "µm", True)
    assert f.layout() == (None, 2)  # napari's rule finds the channel axis: alpha would be dropped as usual

    tifffile.imwrite(tmp_path / "dpi.tif", rgb[..., 0], resolution=(72, 72), resolutionunit="INCH")
    assert read_image_file(tmp_path / "dpi.tif").spacing is None  # a print setting, not a pixel size


def test_compressed_tiffs_are_read(tmp_path):
    import tifffile

    from napari_levelset.io.read import read_image_file

    img = (np.random.default_rng(2).random((32, 40)) * 60000).astype(np.uint16)
    for compression in ("lzw", "zlib", "zstd"):
        tifffile.imwrite(tmp_path / f"{compression}.tif", img, compression=compression)
        np.testing.assert_array_equal(read_image(tmp_path / f"{compression}.tif"), img)
        np.testing.assert_array_equal(read_image_file(tmp_path / f"{compression}.tif").data, img)


def test_plain_pictures_keep_reading_as_before(tmp_path):
    import imageio.v3 as iio

    from napari_levelset.io.read import read_image_file

    rgba = np.random.default_rng(3).integers(0, 255, (6, 8, 4)).astype(np.uint8)
    iio.imwrite(tmp_path / "a.png", rgba)
    f = read_image_file(tmp_path / "a.png")
    np.testing.assert_array_equal(f.data, rgba)
    assert (f.axes, f.spacing, f.rgb, f.layout()) == ("YXC", None, True, (None, 2))
    iio.imwrite(tmp_path / "g.png", rgba[..., 0])
    assert read_image_file(tmp_path / "g.png").axes == "YX"
    with pytest.raises(InputError, match="no such file"):
        read_image_file(tmp_path / "missing.tif")


def test_a_rewrite_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    out = tmp_path / "keep-mode.tif"
    write_labels(out, np.zeros((3, 3), np.uint8))
    os.chmod(out, 0o640)
    write_labels(out, np.ones((3, 3), np.uint8))
    assert out.stat().st_mode & 0o777 == 0o640
    assert read_image(out).max() == 1


def test_a_symlinked_output_rewrites_its_target_and_stays_a_link(tmp_path):
    (tmp_path / "data").mkdir()
    real = tmp_path / "data" / "labels.png"
    write_labels(real, np.zeros((3, 3), np.uint8))
    link = tmp_path / "link.png"
    link.symlink_to(real)
    write_labels(link, np.full((3, 3), 2, np.uint8))
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert read_image(real).max() == 2
    assert sorted(os.listdir(tmp_path / "data")) == ["labels.png"]


def test_an_interrupt_right_after_the_temporary_file_is_made_removes_it(tmp_path, monkeypatch):
    real_close = os.close

    def close_then_interrupt(fd):  # Ctrl-C arriving the moment the temporary file exists
        real_close(fd)
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "close", close_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_labels(tmp_path / "x.tif", np.ones((3, 3), np.uint8))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_a_full_disk_fails_with_one_error_and_no_temporaries(tmp_path):
    # the temporary file opens /dev/full: every write fails with ENOSPC, as on a full disk
    script = f"""
import builtins, io, os, sys
import numpy as np
from napari_levelset.io.write import write_labels
real_open = io.open
def full_open(file, mode="r", *a, **k):
    if "w" in mode and os.path.dirname(str(file)) == {str(tmp_path)!r}:
        return real_open("/dev/full", mode, *a, **k)
    return real_open(file, mode, *a, **k)
builtins.open = io.open = full_open
try:
    write_labels({str(tmp_path / "x.png")!r}, np.random.default_rng(0).integers(0, 255, (300, 300)).astype(np.uint8))
except OSError as exc:
    print("error:", exc.errno, file=sys.stderr)
"""
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert res.stderr.strip().splitlines() == ["error: 28"], res.stderr
    assert os.listdir(tmp_path) == []
