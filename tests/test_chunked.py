"""Volumes chunk by chunk: the whole volume's normalisation, and labels equal to whole-volume inference."""

import numpy as np
import pytest
import torch

import napari_levelset as nls
from napari_levelset.cli.main import main
from napari_levelset.io import prepare
from napari_levelset.io.zarr import open_volume
from napari_levelset.scale import chunked

zarr = pytest.importorskip("zarr")


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """A cluster in this process sets torch's thread count for its tasks: give the next test the count it had."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def blobs(shape=(24, 40, 36), seed=0, dtype=np.uint16):
    rng = np.random.default_rng(seed)
    grid = np.indices(shape)
    centre = np.array(shape)[:, None, None, None] / 2
    inside = ((grid - centre) ** 2).sum(0) < (min(shape) / 3) ** 2
    corner = ((grid - centre / 2) ** 2).sum(0) < (min(shape) / 6) ** 2
    v = 800 + 2500 * inside + 1200 * corner + rng.normal(0, 250, shape)
    return np.clip(v, 0, 65535).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.uint8, np.float32, np.float64])
def test_value_range_is_the_in_memory_rule(dtype):
    v = blobs((13, 29, 31), dtype=dtype)
    v[3, 4, 5] = v.max() * 2 if dtype in (np.float32, np.float64) else np.iinfo(dtype).max  # a hot pixel
    for structures in (True, False):
        got = chunked.value_range(v, tile=(8, 16, 8), structures=structures)
        x = prepare._fit_range(prepare._working_copy(v))
        assert got == [prepare._value_range(x, 3, 0.5, 99.5, structures)]
    # and each tile maps like the whole volume
    np.testing.assert_array_equal(
        chunked.normalize_block(v[None], got), prepare.normalize(v[None], spatial_dims=3, structures=False)
    )


def test_zarr_per_image_labels_equal_whole_volume_inference(tmp_path):
    v = blobs()
    src = zarr.create_array(str(tmp_path / "in.zarr"), shape=v.shape, chunks=(8, 16, 16), dtype=v.dtype, zarr_format=2)
    src[:] = v
    fitted = chunked.fit_volume(str(tmp_path / "in.zarr"), 3, iterations=8, crop=16, crops=3, seed=0, device="cpu")
    out = chunked.segment_volume(str(tmp_path / "in.zarr"), tmp_path / "labels.zarr", fitted=fitted)
    assert isinstance(out, zarr.Array) and out.chunks == (8, 16, 16) and out.dtype == np.uint8
    # the same network on the whole volume, normalised in memory, in one piece
    x = torch.from_numpy(prepare.normalize(v[None], spatial_dims=3))[None]
    with torch.no_grad():
        whole = fitted.network.eval()(x).argmax(1)[0].numpy()
    lut = np.empty(3, np.uint8)
    lut[fitted.order] = [1, 2, 3]
    labels = np.asarray(zarr.open_array(str(tmp_path / "labels.zarr"), mode="r")[:])
    np.testing.assert_array_equal(labels, lut[whole])
    assert len(np.unique(labels)) >= 2


def test_unet_over_chunks_equals_segment_and_ome_zarr_round_trip(tmp_path):
    v = blobs((10, 48, 56), seed=1)
    root = zarr.open_group(str(tmp_path / "in.ome.zarr"), mode="w", zarr_format=2)
    root.create_array("0", shape=v.shape, chunks=(4, 24, 24), dtype=v.dtype)[:] = v
    root.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [
                {"name": "z", "type": "space", "unit": "micrometer"},
                {"name": "y", "type": "space", "unit": "micrometer"},
                {"name": "x", "type": "space", "unit": "micrometer"},
            ],
            "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [2.0, 0.5, 0.5]}]}],
        }
    ]
    vol = open_volume(tmp_path / "in.ome.zarr")
    assert vol.axes == "ZYX" and vol.spacing == (2.0, 0.5, 0.5) and vol.unit == "µm"
    chunked.segment_volume(vol, tmp_path / "labels.ome.zarr", 4, model="unet", device="cpu")
    back = open_volume(tmp_path / "labels.ome.zarr")
    assert back.axes == "ZYX" and back.spacing == (2.0, 0.5, 0.5) and back.unit == "µm"
    # tiles of 24 px in y and x, against the U-Net's receptive radius of about 60: halos do the work
    np.testing.assert_array_equal(np.asarray(back.data[:]), nls.segment(v, 4, model="unet", device="cpu"))


def test_chunked_on_an_in_process_cluster_and_the_command(tmp_path, capsys):
    distributed = pytest.importorskip("dask.distributed")
    v = blobs((16, 32, 32), seed=2)
    src = zarr.create_array(str(tmp_path / "in.zarr"), shape=v.shape, chunks=(8, 16, 16), dtype=v.dtype, zarr_format=2)
    src[:] = v
    code = main(
        [
            "segment",
            str(tmp_path / "in.zarr"),
            "-o",
            str(tmp_path / "cli.zarr"),
            "--classes",
            "2",
            "--iterations",
            "5",
            "--crop",
            "16",
            "--crops",
            "2",
            "--device",
            "cpu",
            "--threads",
            "1",
            "-q",
        ]
    )
    assert code == 0, capsys.readouterr().err
    cli = np.asarray(zarr.open_array(str(tmp_path / "cli.zarr"), mode="r")[:])
    fitted = chunked.fit_volume(src, 2, iterations=5, crop=16, crops=2, seed=0, device="cpu")
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cl,
        distributed.Client(cl) as client,
    ):
        spread = chunked.segment_volume(src, tmp_path / "spread.zarr", fitted=fitted, client=client)
    np.testing.assert_array_equal(np.asarray(spread[:]), cli)
    # an existing output is kept unless --overwrite
    code = main(["segment", str(tmp_path / "in.zarr"), "-o", str(tmp_path / "cli.zarr"), "-q"])
    assert code == 2 and "exists" in capsys.readouterr().err


def test_the_same_values_in_float64_normalise_alike():
    v = blobs((9, 20, 22))
    a = chunked.value_range(v, tile=8)
    b = chunked.value_range(v.astype(np.float64), tile=8)
    assert a == b and a[0].dtype == b[0].dtype == np.float32
    np.testing.assert_array_equal(
        chunked.normalize_block(v[None].astype(np.float64), b), prepare.normalize(v[None], spatial_dims=3)
    )


def test_labels_of_a_trained_segmenter_over_chunks_equal_its_own():
    """A Segmenter in crop mode labels its image tile by tile in eval mode: chunks give the same labels."""
    v = blobs((20, 36, 40), seed=3)
    seg = nls.Segmenter(v, 3, max_pixels=4000, seed=1, device="cpu")
    for _ in seg.run(6):
        pass
    vm = chunked.from_segmenter(seg, chunked.value_range(v, tile=16))
    labels = chunked.segment_volume(v, None, fitted=vm, tile=(8, 16, 16))
    np.testing.assert_array_equal(labels, seg.labels())
    assert len(np.unique(labels)) >= 2


def test_what_goes_to_worker_processes_survives_pickling():
    """A cluster of processes gets the model and the ranges pickled: they must come back the same."""
    import pickle

    v = blobs((12, 24, 24), seed=4).astype(np.float64)
    fitted = chunked.fit_volume(v, 2, iterations=3, crop=12, crops=2, seed=0, device="cpu")
    back = pickle.loads(pickle.dumps(fitted))
    assert back.ranges == fitted.ranges and [r.dtype for r in back.ranges] == [r.dtype for r in fitted.ranges]
    np.testing.assert_array_equal(
        chunked.segment_volume(v, None, fitted=back, tile=8), chunked.segment_volume(v, None, fitted=fitted, tile=8)
    )


def test_crops_too_small_to_fit_a_network_are_an_input_error():
    """Found by the contract test: a 2x3 volume with one 1-pixel crop reached batch normalisation's ValueError."""
    from napari_levelset.errors import InputError

    with pytest.raises(InputError, match="crop"):
        chunked.segment_volume(np.zeros((2, 3), np.uint8), n_classes=2, model="cnn", iterations=1, crop=1, crops=1)
