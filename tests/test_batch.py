"""Batches of files and arrays: failures reported while the rest go on, resume, dask clusters."""

import os

import numpy as np
import pytest
import tifffile

import napari_levelset as nls
from napari_levelset.cli.main import main
from napari_levelset.errors import InputError
from napari_levelset.evaluation.synthetic import phantom
from napari_levelset.scale.batch import find_inputs, output_for, segment_arrays, segment_files

SETTINGS = dict(n_classes=2, iterations=5, seed=0, device="cpu")


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """A cluster in this process sets torch's thread count for its tasks: give the next test the count it had."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def fields(folder, count=3, shape=(40, 48)):
    folder.mkdir(exist_ok=True)
    paths = []
    for i in range(count):
        image, _ = phantom(shape, 2, seed=i)
        p = folder / f"field_{i}.tif"
        tifffile.imwrite(p, (image * 4000).astype(np.uint16))
        paths.append(p)
    return paths


def test_batch_with_a_bad_file_writes_the_good_ones_and_exits_nonzero(tmp_path, capsys):
    good = fields(tmp_path / "in")
    (tmp_path / "in" / "broken.tif").write_bytes(b"this is not a TIFF file")
    out = tmp_path / "out"
    out.mkdir()
    code = main(["segment", str(tmp_path / "in"), "-o", str(out), "--classes", "2", "--iterations", "5", "-q"])
    err = capsys.readouterr().err
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in good)
    # the reason, in the single-file command's words, naming the file
    assert "broken.tif: cannot read" in err and "napari-levelset: error:" in err
    assert "3 done, 0 skipped (output exists), 1 failed" in err
    for p in good:  # each output is what the single-file command writes
        single = tmp_path / f"single_{p.name}"
        assert main(["segment", str(p), "-o", str(single), "--classes", "2", "--iterations", "5", "-q"]) == 0
        np.testing.assert_array_equal(tifffile.imread(out / p.name), tifffile.imread(single))


def test_resume_skips_finished_outputs_unless_overwrite(tmp_path, capsys):
    inputs = fields(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    finished = output_for(inputs[0], out, suffix="_labels")
    sentinel = np.full((40, 48), 7, np.uint8)
    tifffile.imwrite(finished, sentinel)  # as if an earlier, interrupted run had written it
    pattern = str(tmp_path / "in" / "field_*.tif")
    summary = segment_files([pattern], out, suffix="_labels", progress=False, **SETTINGS)
    assert [p for p, _ in summary.skipped] == [inputs[0]]
    assert sorted(p for p, _ in summary.done) == sorted(inputs[1:]) and not summary.failed
    np.testing.assert_array_equal(tifffile.imread(finished), sentinel)  # left alone
    again = segment_files([pattern], out, suffix="_labels", progress=False, **SETTINGS)
    assert len(again.skipped) == 3 and not again.done
    code = main(
        [
            "segment",
            pattern,
            "-o",
            str(out),
            "--suffix",
            "_labels",
            "--overwrite",
            "--classes",
            "2",
            "--iterations",
            "5",
            "-q",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert set(np.unique(tifffile.imread(finished))) <= {1, 2}  # rewritten


def test_inputs_and_names(tmp_path):
    inputs = fields(tmp_path / "in", count=2)
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    assert find_inputs([tmp_path / "in"]) == inputs
    assert find_inputs([inputs[1], str(tmp_path / "in" / "*.tif")]) == [inputs[1], inputs[0]]
    assert output_for("a/b/cell.ome.tif", "out", ext=".png") == output_for("cell.png", "out", ext=".png")
    with pytest.raises(InputError, match="no files match"):
        find_inputs([str(tmp_path / "*.png")])
    other = tmp_path / "other"
    other.mkdir()
    tifffile.imwrite(other / "field_0.tif", np.zeros((4, 4), np.uint8))
    with pytest.raises(InputError, match="would both be written"):
        segment_files([inputs[0], other / "field_0.tif"], tmp_path, progress=False, **SETTINGS)


def test_local_dask_cluster_gives_the_single_process_outputs(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    inputs = fields(tmp_path / "in", count=4)
    (tmp_path / "in" / "broken.tif").write_bytes(b"broken")
    one, many = tmp_path / "one", tmp_path / "many"
    one.mkdir()
    many.mkdir()
    alone = segment_files([tmp_path / "in"], one, progress=False, threads=1, **SETTINGS)
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cl,
        distributed.Client(cl) as client,
    ):
        spread = segment_files([tmp_path / "in"], many, client=client, progress=False, threads=1, **SETTINGS)
    assert len(alone.done) == len(spread.done) == 4
    assert [p.name for p, _ in spread.failed] == ["broken.tif"] and "cannot read" in spread.failed[0][1]
    for p in inputs:
        np.testing.assert_array_equal(tifffile.imread(one / p.name), tifffile.imread(many / p.name))


def test_pretrained_model_read_once_and_each_item_as_alone(tmp_path):
    """The model file is read once for the batch, and a fine-tune of one item never reaches the next."""
    from napari_levelset.nn import model_files as unet

    images = [(phantom((48, 48), 3, seed=s)[0] * 255).astype(np.uint8) for s in (3, 4)]
    settings = dict(n_classes=3, model="unet", finetune_iterations=3, seed=0, device="cpu", finetune="all")
    before = unet.files_read()
    res = segment_arrays(images + [np.zeros((8, 8))], **settings)
    assert res.failed and res.failed[0][0] == 2 and "constant" in res.failed[0][1]
    assert unet.files_read() - before <= 1
    for image, labels in zip(images, res.labels):
        np.testing.assert_array_equal(labels, nls.segment(image, **settings))


def test_segment_arrays_on_an_in_process_cluster(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    images = [(phantom((32, 40), 2, seed=s)[0] * 255).astype(np.uint8) for s in range(3)]
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cl,
        distributed.Client(cl) as client,
    ):
        res = segment_arrays(images, client=client, **SETTINGS)
    assert not res.failed
    for image, labels in zip(images, res.labels):
        np.testing.assert_array_equal(labels, nls.segment(image, **SETTINGS))


def test_batch_needs_an_output_folder(tmp_path, capsys):
    inputs = fields(tmp_path / "in", count=2)
    code = main(["segment", *map(str, inputs), "-o", str(tmp_path / "labels.tif")])
    assert code == 2
    assert "must be a folder" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "labels.tif")


@pytest.mark.slow
def test_command_on_a_scheduler_address_and_on_local_worker_processes(tmp_path, capsys):
    distributed = pytest.importorskip("dask.distributed")
    inputs = fields(tmp_path / "in", count=2)
    alone, at, procs = tmp_path / "alone", tmp_path / "at", tmp_path / "procs"
    for d in (alone, at, procs):
        d.mkdir()
    args = ["--classes", "2", "--iterations", "5", "--threads", "1", "-q"]
    assert main(["segment", str(tmp_path / "in"), "-o", str(alone), *args]) == 0
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cl:
        assert main(["segment", str(tmp_path / "in"), "-o", str(at), "--scheduler", cl.scheduler_address, *args]) == 0
    # two worker processes of their own (each imports torch and reads the files itself)
    assert main(["segment", str(tmp_path / "in" / "*.tif"), "-o", str(procs), "--workers", "2", *args]) == 0
    for p in inputs:
        expected = tifffile.imread(alone / p.name)
        np.testing.assert_array_equal(tifffile.imread(at / p.name), expected)
        np.testing.assert_array_equal(tifffile.imread(procs / p.name), expected)
