"""The synthetic nuclei z-stacks of the 3D benchmark, and a volume's voxel size given on the command line."""

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from napari_levelset.evaluation.synthetic import nuclei_volume


def test_a_volume_its_truth_and_voxel_size():
    volume, truth, spacing = nuclei_volume((16, 64, 64), n_objects=10, diameters=(8.0, 12.0, 18.0), seed=3)
    assert volume.shape == truth.shape == (16, 64, 64)
    assert volume.dtype == np.uint16 and truth.dtype == np.uint16
    assert len(spacing) == 3 and spacing[1] == spacing[2] == 1.0
    assert 2.0 <= spacing[0] <= 4.0  # z step drawn from the seed, 2-4 times the xy step
    ids = np.unique(truth)
    assert ids[0] == 0 and ids[1:].tolist() == list(range(1, len(ids)))  # 1..K, consecutive
    assert len(ids) - 1 >= 5
    fg = truth > 0
    assert volume[fg].mean() > volume[~fg].mean() + 100  # the objects are the bright parts


def test_objects_are_ellipsoids_of_several_sizes_sampled_coarser_along_z():
    _, truth, spacing = nuclei_volume((24, 96, 96), n_objects=16, diameters=(10.0, 20.0), z_step=3.0, seed=1)
    assert spacing == (3.0, 1.0, 1.0)
    extents = []
    for k, box in enumerate(ndimage.find_objects(truth), start=1):
        obj = truth[box] == k
        assert ndimage.label(obj)[1] == 1  # one piece each
        extents.append((obj.shape[0] * spacing[0], max(obj.shape[1:]), obj.sum() * spacing[0]))
    z_extent, xy_extent, physical_volume = np.array(extents).T
    # physically round: z extent (in the unit of spacing) within a factor 2 of the xy extent
    assert np.median(z_extent / xy_extent) == pytest.approx(1.0, abs=0.5)
    assert physical_volume.max() > 3 * physical_volume.min()  # several sizes
    touching = [
        k for k in range(1, truth.max() + 1) if set(np.unique(truth[ndimage.binary_dilation(truth == k)])) - {0, k}
    ]
    assert touching  # some nuclei touch


def test_the_same_seed_gives_the_same_volume():
    a = nuclei_volume((12, 48, 48), n_objects=5, seed=7)
    b = nuclei_volume((12, 48, 48), n_objects=5, seed=7)
    c = nuclei_volume((12, 48, 48), n_objects=5, seed=8)
    for x, y in zip(a[:2], b[:2]):
        np.testing.assert_array_equal(x, y)
    assert a[2] == b[2]
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize(
    "kwargs", [dict(shape=(64, 64)), dict(diameters=()), dict(z_step=0.0), dict(xy_step=-1.0), dict(axial_blur=0.5)]
)
def test_bad_arguments_are_refused(kwargs):
    with pytest.raises(ValueError):
        nuclei_volume(**kwargs)


def test_spacing_on_the_command_line_equals_the_library(tmp_path, capsys):
    from napari_levelset import segment
    from napari_levelset.cli.main import main
    from napari_levelset.io.read import read_image_file

    volume, _, spacing = nuclei_volume((12, 64, 64), n_objects=6, diameters=(14.0,), z_step=3.0, seed=2)
    src = tmp_path / "stack.tif"
    tifffile.imwrite(src, volume)  # no voxel size in the file
    assert read_image_file(src).spacing is None
    out = tmp_path / "nuclei.tif"
    args = ["segment", src, "-o", out, "--regions", "instances", "--spacing", *spacing, "--device", "cpu", "-q"]
    code = main([str(a) for a in args])
    assert code == 0, capsys.readouterr().err
    expected = segment(volume, regions="instances", spacing=spacing, device="cpu")
    assert len(np.unique(expected)) > 3
    np.testing.assert_array_equal(read_image_file(out).data, expected)
    plain = segment(volume, regions="instances", device="cpu")
    assert not np.array_equal(plain, expected)  # the voxel size was used
