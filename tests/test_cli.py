import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_levelset.cli.main import main
from napari_levelset.evaluation.synthetic import matched_iou, phantom
from napari_levelset.io.read import read_image
from napari_levelset.io.write import write_labels


def rgb_phantom(tmp_path, name="img.png"):
    image, truth = phantom((64, 80), 3, channels=3, seed=2)
    rgb = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    path = tmp_path / name
    import imageio.v3 as iio

    iio.imwrite(path, rgb)
    return path, truth


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_round_trip_png(tmp_path, capsys):
    src, truth = rgb_phantom(tmp_path)
    out = tmp_path / "labels.png"
    code, _, err = run_cli(capsys, "segment", src, "-o", out, "--classes", 3, "--device", "cpu", "--iterations", 60)
    assert code == 0, err
    labels = read_image(out)
    assert labels.shape == (64, 80) and labels.dtype == np.uint8
    assert matched_iou(labels, truth).min() >= 0.95


def test_volume_to_tiff_with_scribbles(tmp_path, capsys):
    vol, truth = phantom((16, 20, 20), 2, seed=1)
    src = tmp_path / "vol.tif"
    tifffile.imwrite(src, (vol * 1000).astype(np.uint16))
    scr = np.zeros(vol.shape, np.uint8)
    scr[truth == 1] = 1  # deliberately the opposite of brightness order: scribbles win
    scr[truth == 0] = 2
    scr_path = tmp_path / "scr.tif"
    tifffile.imwrite(scr_path, scr)
    out = tmp_path / "lab.tif"
    code, _, err = run_cli(
        capsys, "segment", src, "-o", out, "--classes", 2, "--scribbles", scr_path, "--iterations", 20, "-q"
    )
    assert code == 0, err
    labels = read_image(out)
    assert labels.shape == vol.shape
    assert (labels[truth == 1] == 1).mean() > 0.95
    assert err == ""  # --quiet


def test_progress_bar_goes_to_stderr(tmp_path, capsys):
    src, _ = rgb_phantom(tmp_path)
    code, out, err = run_cli(capsys, "segment", src, "-o", tmp_path / "l.tif", "--iterations", 10, "--classes", 2)
    assert code == 0
    assert out == ""
    assert "level-set" in err and "wrote" in err


def write_bytes(path, data):
    path.write_bytes(data)
    return path


def write_tif(tmp_path, name, array):
    path = tmp_path / name
    tifffile.imwrite(path, array, photometric="minisblack")
    return path


@pytest.mark.parametrize(
    "make,extra,message",
    [
        (lambda p: p / "missing.png", [], "no such file"),
        (lambda p: write_bytes(p / "broken.png", b"\x89PNG garbage"), [], "cannot read"),
        (lambda p: write_tif(p, "flat.tif", np.full((20, 20), 7, np.uint8)), [], "constant"),
        (lambda p: write_tif(p, "nan.tif", np.full((20, 20), np.nan, np.float32)), [], "NaN"),
        (
            lambda p: write_tif(p, "ok.tif", np.random.rand(20, 20).astype(np.float32)),
            ["--classes", "1"],
            "from 2 to 64",
        ),
        (
            lambda p: write_tif(p, "ok.tif", np.random.rand(20, 20).astype(np.float32)),
            ["--scribbles", "SCR"],
            "scribbles have shape",
        ),
    ],
)
def test_bad_input_one_line_error_no_output(tmp_path, capsys, make, extra, message):
    src = make(tmp_path)
    write_tif(tmp_path, "scr.tif", np.zeros((10, 10), np.uint8))
    extra = [str(tmp_path / "scr.tif") if e == "SCR" else e for e in extra]
    out = tmp_path / "out.png"
    code, _stdout, err = run_cli(capsys, "segment", src, "-o", out, "--iterations", 2, *extra)
    assert code == 2
    assert message in err
    assert err.startswith("napari-levelset: error:") and err.count("\n") == 1
    assert "Traceback" not in err
    assert not out.exists()


def test_bad_output_is_refused_before_any_work(tmp_path, capsys):
    src, _ = rgb_phantom(tmp_path)
    code, _, err = run_cli(capsys, "segment", src, "-o", tmp_path / "x.jpg")
    assert code == 2 and "must end in" in err
    code, _, err = run_cli(capsys, "segment", src, "-o", tmp_path / "no" / "x.png")
    assert code == 2 and "does not exist" in err


def test_existing_output_survives_a_failed_run(tmp_path, capsys):
    out = tmp_path / "out.tif"
    write_labels(out, np.ones((4, 4), np.uint8))
    before = out.read_bytes()
    flat = write_tif(tmp_path, "flat.tif", np.zeros((8, 8), np.uint8))
    code, _, _ = run_cli(capsys, "segment", flat, "-o", out)
    assert code == 2
    assert out.read_bytes() == before


def test_installed_entry_point(tmp_path):
    exe = shutil.which("napari-levelset")
    cmd = [exe] if exe else [sys.executable, "-m", "napari_levelset.cli.main"]
    src, _ = rgb_phantom(tmp_path)
    out = tmp_path / "l.png"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    res = subprocess.run(
        cmd + ["segment", str(src), "-o", str(out), "--iterations", "5", "-q"], capture_output=True, text=True, env=env
    )
    assert res.returncode == 0, res.stderr
    assert out.exists()
    res = subprocess.run(cmd + ["segment", str(tmp_path / "nope.png"), "-o", str(out)], capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"napari-levelset: error: no such file: {tmp_path / 'nope.png'}"]


def test_pretrained_unet_segments_and_fine_tunes(tmp_path, capsys):
    src, truth = rgb_phantom(tmp_path)
    for extra in ([], ["--iterations", "5"]):
        out = tmp_path / f"unet{len(extra)}.tif"
        code, _, err = run_cli(capsys, "segment", src, "-o", out, "--model", "unet", "--classes", 3, "-q", *extra)
        assert code == 0, err
        labels = read_image(out)
        assert labels.shape == truth.shape
        assert matched_iou(labels, truth).min() >= 0.9


def test_bad_model_file_is_a_one_line_error(tmp_path, capsys):
    src, _ = rgb_phantom(tmp_path)
    bogus = tmp_path / "model.pt"
    bogus.write_bytes(b"not a model")
    code, _, err = run_cli(capsys, "segment", src, "-o", tmp_path / "x.tif", "--model", bogus)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err


def test_train_subcommand_is_routed(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", tmp_path / "nothing-here", "-o", tmp_path / "m.pt")
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "m.pt").exists()


def test_merged_regions_output(tmp_path, capsys):
    src, truth = rgb_phantom(tmp_path)
    out = tmp_path / "regions.tif"
    # six classes for three phases: merging by the level-set energy brings the count back to the phases
    code, _, err = run_cli(
        capsys,
        "segment",
        src,
        "-o",
        out,
        "--classes",
        6,
        "--device",
        "cpu",
        "--iterations",
        40,
        "--regions",
        "merged",
        "--min-region",
        20,
        "-q",
    )
    assert code == 0, err
    labels = read_image(out)
    assert len(np.unique(labels)) == 3
    assert matched_iou(labels, truth).min() >= 0.95
    code, _, err = run_cli(capsys, "segment", src, "-o", out, "--regions", "merged", "--merge", "-1")
    assert code == 2 and "--merge" in err and err.count("\n") == 1


def test_output_never_replaces_an_input(tmp_path, capsys):
    src, _ = rgb_phantom(tmp_path)
    before = src.read_bytes()
    code, _, err = run_cli(capsys, "segment", src, "-o", src, "--iterations", 2)
    assert code == 2 and "is an input file" in err
    assert src.read_bytes() == before


def test_png_for_a_volume_is_refused_before_the_run(tmp_path, capsys):
    vol = write_tif(tmp_path, "vol.tif", np.random.default_rng(0).random((4, 16, 16)).astype(np.float32))
    code, _, err = run_cli(capsys, "segment", vol, "-o", tmp_path / "v.png", "--iterations", 2)
    assert code == 2 and "PNG holds 2D labels only" in err and "Traceback" not in err
    assert not (tmp_path / "v.png").exists()


def test_regions_to_png_and_palette_scribbles(tmp_path, capsys):
    from PIL import Image

    src, truth = rgb_phantom(tmp_path)
    idx = np.zeros(truth.shape, np.uint8)
    idx[truth == truth[0, 0]] = 1  # sparse strokes would do; a whole class is simplest
    pal = Image.fromarray(idx, mode="P")
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.save(tmp_path / "strokes.png")
    out = tmp_path / "regions.png"
    code, _, err = run_cli(
        capsys,
        "segment",
        src,
        "-o",
        out,
        "--scribbles",
        tmp_path / "strokes.png",
        "--classes",
        3,
        "--iterations",
        20,
        "--device",
        "cpu",
        "--regions",
        "connected",
        "-q",
    )
    assert code == 0, err
    labels = read_image(out)
    assert labels.shape == truth.shape and labels.max() >= 3


# ---------------------------------------------------------------- axes and pixel size from the file


def capture_segment(monkeypatch):
    """Replace the library's ``segment`` with one that records its keywords and returns ones."""
    import napari_levelset.method.segmentation as engine
    from napari_levelset.io.axes import infer_axes

    seen = {}

    def fake(image, **kw):
        seen.update(kw)
        ch, _ = infer_axes(image.shape, kw["channel_axis"], kw["spatial_dims"])
        shape = image.shape if ch is None else image.shape[:ch] + image.shape[ch + 1 :]
        return np.ones(shape, np.uint8)

    monkeypatch.setattr(engine, "segment", fake)
    return seen


def test_axes_and_spacing_come_from_an_imagej_hyperstack(tmp_path, capsys, monkeypatch):
    from napari_levelset.io.read import read_image_file

    seen = capture_segment(monkeypatch)
    src = tmp_path / "stack.tif"
    tifffile.imwrite(
        src,
        np.zeros((2, 3, 2, 8, 9), np.uint16),
        imagej=True,
        resolution=(1 / 0.2, 1 / 0.2),
        metadata={"axes": "TZCYX", "spacing": 1.5, "unit": "micron"},
    )
    out = tmp_path / "lab.tif"
    code, _, err = run_cli(capsys, "segment", src, "-o", out, "-q")
    assert code == 0, err
    # C -> channel axis, Z -> a volume, T -> segmented slice by slice; the voxel size goes to the library
    assert seen["channel_axis"] == 2 and seen["spatial_dims"] == 3
    assert seen["spacing"] == pytest.approx((1.5, 0.2, 0.2))
    given = seen["settings"]  # flags left out stay "the default for this model and output"
    assert given.n_classes is None and given.diameter is None and given.foreground is None
    f = read_image_file(out)
    assert f.data.shape == (2, 3, 8, 9) and f.axes == "TZYX"
    assert f.spacing == pytest.approx((1.5, 0.2, 0.2)) and f.unit == "µm"

    # what the user says wins; the spacing follows the axes segmented together
    code, _, err = run_cli(capsys, "segment", src, "-o", out, "-q", "--channel-axis", 2, "--spatial-dims", 2)
    assert code == 0, err
    assert seen["spatial_dims"] == 2 and seen["spacing"] == pytest.approx((0.2, 0.2))
    assert read_image_file(out).axes == "TZYX"


def test_time_series_is_segmented_per_frame_and_plain_stacks_as_before(tmp_path, capsys, monkeypatch):
    seen = capture_segment(monkeypatch)
    ts = tmp_path / "ts.tif"
    tifffile.imwrite(ts, np.zeros((5, 8, 9), np.uint8), imagej=True, metadata={"axes": "TYX"})
    assert run_cli(capsys, "segment", ts, "-o", tmp_path / "a.tif", "-q")[0] == 0
    assert (seen["channel_axis"], seen["spatial_dims"], seen["spacing"]) == (None, 2, None)
    plain = write_tif(tmp_path, "plain.tif", np.zeros((5, 8, 9), np.uint8))  # pages the file does not name
    assert run_cli(capsys, "segment", plain, "-o", tmp_path / "b.tif", "-q")[0] == 0
    assert (seen["channel_axis"], seen["spatial_dims"]) == (None, None)  # guessed as before: a volume
    src, _ = rgb_phantom(tmp_path)  # a PNG: napari's rule as before
    assert run_cli(capsys, "segment", src, "-o", tmp_path / "c.png", "-q")[0] == 0
    assert (seen["channel_axis"], seen["spatial_dims"], seen["spacing"]) == (None, 2, None)


def test_a_calibrated_volume_is_segmented_and_written_with_its_voxel_size(tmp_path, capsys):
    from napari_levelset.io.read import read_image_file

    vol, truth = phantom((8, 24, 24), 2, seed=1)
    src = tmp_path / "vol.tif"
    tifffile.imwrite(
        src,
        (vol * 1000).astype(np.uint16),
        imagej=True,
        resolution=(2.0, 2.0),
        metadata={"axes": "ZYX", "spacing": 2.0, "unit": "micron"},
    )
    out = tmp_path / "lab.tif"
    code, _, err = run_cli(
        capsys, "segment", src, "-o", out, "--classes", 2, "--iterations", 20, "--device", "cpu", "-q"
    )
    assert code == 0, err
    f = read_image_file(out)
    assert f.axes == "ZYX" and f.spacing == pytest.approx((2.0, 0.5, 0.5)) and f.unit == "µm"
    assert matched_iou(f.data, truth).min() > 0.9


def touching_discs(tmp_path, spacing=None):
    """Two discs of radius 10 that touch, on a noisy background, as a 16-bit TIFF."""
    yy, xx = np.mgrid[:48, :80]
    truth = np.zeros((48, 80), np.uint8)
    truth[(yy - 24) ** 2 + (xx - 29) ** 2 <= 100] = 1
    truth[(yy - 24) ** 2 + (xx - 49) ** 2 <= 100] = 2
    img = 1000 + 400 * (truth > 0) + np.random.default_rng(0).normal(0, 20, truth.shape)
    path = tmp_path / "discs.tif"
    kw = (
        {}
        if spacing is None
        else dict(imagej=True, resolution=(1 / spacing, 1 / spacing), metadata={"axes": "YX", "unit": "micron"})
    )
    tifffile.imwrite(path, img.astype(np.uint16), **kw)
    return path, truth


@pytest.mark.parametrize("extra", [[], ["--diameter", 10, "--foreground", 2]])
def test_instances_give_one_label_per_object(tmp_path, capsys, extra):
    # --diameter 10 is in micrometres: the file's pixels are 0.5 um, so 20 pixels, the discs' size
    src, truth = touching_discs(tmp_path, spacing=0.5 if extra else None)
    out = tmp_path / "inst.tif"
    code, _, err = run_cli(capsys, "segment", src, "-o", out, "--regions", "instances", "--device", "cpu", "-q", *extra)
    assert code == 0, err
    labels = read_image(out)
    assert labels.shape == truth.shape
    assert (labels[truth == 0] == 0).mean() > 0.98  # 0 is background
    ids = np.unique(labels[labels > 0])
    assert len(ids) == 2  # the touching discs are split
    assert matched_iou(labels, truth).min() > 0.8


def test_instance_settings_are_checked(tmp_path, capsys):
    src, _ = touching_discs(tmp_path)
    for bad in (["--diameter", "0"], ["--diameter", "x"], ["--foreground", "-1"], ["--foreground"]):
        code, _, err = run_cli(capsys, "segment", src, "-o", tmp_path / "x.tif", "--regions", "instances", *bad)
        assert code == 2 and "--" in err and err.count("\n") == 1
    code, _, err = run_cli(capsys, "segment", src, "-o", tmp_path / "x.tif", "--diameter", 10, "-q")
    assert code == 2 and "instances" in err and err.count("\n") == 1  # a setting of instances only


def test_instances_from_the_command_line_equal_the_library_defaults(tmp_path, capsys):
    from napari_levelset import segment
    from napari_levelset.evaluation.synthetic import nuclei

    image, _ = nuclei((128, 128), n_objects=10, diameter=20, seed=4)
    src = tmp_path / "nuclei.tif"
    tifffile.imwrite(src, image)
    out = tmp_path / "inst.tif"
    code, _, err = run_cli(capsys, "segment", src, "-o", out, "--regions", "instances", "--device", "cpu", "-q")
    assert code == 0, err
    np.testing.assert_array_equal(read_image(out), segment(image, regions="instances", device="cpu"))


def one_line_error(code, err, *words):
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err


@pytest.mark.parametrize(
    "extra,words",
    [
        (["--lr", "1e300"], ["--lr", "<= 10"]),
        (["--lr", "inf"], ["--lr", "finite"]),
        (["--lr", "0"], ["--lr", "> 0"]),
        (["--width", "100000"], ["--width", "1 to 1024"]),
        (["--depth", "17"], ["--depth", "1 to 16"]),
        (["--seed", "-1"], ["--seed", "0 to 4294967295"]),
        (["--seed", str(2**64)], ["--seed", "0 to 4294967295"]),
        (["--classes", "300"], ["--classes", "2 to 64"]),
        (["--iterations", "-1"], ["--iterations", "0 to 100000"]),
    ],
)
def test_out_of_range_settings_are_one_line_errors_naming_the_bound(tmp_path, capsys, extra, words):
    src, _ = rgb_phantom(tmp_path)
    out = tmp_path / "out.tif"
    code, _, err = run_cli(capsys, "segment", src, "-o", out, "-k", 2, *extra)
    one_line_error(code, err, *words)
    assert not out.exists()


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 GB"),
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore text"),
        MemoryError(),
    ],
)
def test_out_of_memory_is_a_one_line_error_with_advice(tmp_path, capsys, monkeypatch, exc):
    import napari_levelset.method.segmentation as engine

    def fail(image, **kw):
        raise exc

    monkeypatch.setattr(engine, "segment", fail)
    src, _ = rgb_phantom(tmp_path)
    code, _, err = run_cli(capsys, "segment", src, "-o", tmp_path / "o.tif")
    one_line_error(code, err, "out of memory", "fewer classes", "--width", "--max-pixels")


def test_an_unwritable_output_folder_is_refused_before_the_run(tmp_path, capsys, monkeypatch):
    import napari_levelset.method.segmentation as engine

    src, _ = rgb_phantom(tmp_path)
    folder = tmp_path / "locked"
    folder.mkdir()
    calls = []
    monkeypatch.setattr(engine, "segment", lambda image, **kw: calls.append(1) or np.zeros(image.shape[:2], np.uint8))
    real_open = os.open

    def no_write(path, flags, *a, **k):  # a folder where no file can be made, even by root
        if os.path.dirname(os.fspath(path)) == str(folder) and flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", no_write)
    code, _, err = run_cli(capsys, "segment", src, "-o", folder / "o.tif")
    monkeypatch.undo()
    one_line_error(code, err, "cannot write to", str(folder))
    assert calls == [] and os.listdir(folder) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_read_only_output_folder_is_refused_before_the_run(tmp_path, capsys):
    src, _ = rgb_phantom(tmp_path)
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code, _, err = run_cli(capsys, "segment", src, "-o", folder / "o.tif", "-k", 1000, "-q")
    finally:
        folder.chmod(0o755)
    one_line_error(code, err, "cannot write to")


def test_a_damaged_tiff_cannot_be_read_as_an_image(tmp_path, capsys):
    good = write_tif(tmp_path, "good.tif", np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    data = good.read_bytes()
    bad = write_bytes(tmp_path / "bad.tif", data[:8] + b"\0" * (len(data) - 8))
    code, _, err = run_cli(capsys, "segment", bad, "-o", tmp_path / "o.tif")
    one_line_error(code, err, f"cannot read {bad} as an image")
    assert "empty" not in err


def test_a_full_disk_with_png_output_is_one_line(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    src, _ = rgb_phantom(tmp_path)
    (tmp_path / "out").mkdir()
    script = f"""
import builtins, io, os, sys
real_open = io.open
def full_open(file, mode="r", *a, **k):  # files made in out/ are /dev/full: a full disk
    if "w" in mode and os.path.dirname(str(file)) == {str(tmp_path / "out")!r}:
        return real_open("/dev/full", mode, *a, **k)
    return real_open(file, mode, *a, **k)
builtins.open = io.open = full_open
from napari_levelset.cli.main import main
sys.exit(main(sys.argv[1:]))
"""
    res = subprocess.run(
        [sys.executable, "-c", script, "segment", str(src), "-o", str(tmp_path / "out" / "o.png"), "-k", "1", "-q"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert res.returncode == 2
    assert res.stderr.splitlines() == ["napari-levelset: error: No space left on device"] or (
        len(res.stderr.splitlines()) == 1 and "No space left" in res.stderr
    ), res.stderr
    assert os.listdir(tmp_path / "out") == []


def test_sigterm_during_the_write_removes_the_temporary_file(tmp_path):
    import signal

    src, _ = rgb_phantom(tmp_path)
    (tmp_path / "out").mkdir()
    script = """
import sys, time
import numpy as np, tifffile
import napari_levelset.method.segmentation as engine
engine.segment = lambda image, **kw: np.zeros(image.shape[:2], np.uint8)
real = tifffile.imwrite
def slow(*a, **k):
    real(*a, **k)
    print("writing", flush=True)
    time.sleep(60)
tifffile.imwrite = slow
from napari_levelset.cli.main import main
sys.exit(main(sys.argv[1:]))
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, "segment", str(src), "-o", str(tmp_path / "out" / "o.tif"), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        assert proc.stdout.readline().strip() == "writing"
        assert os.listdir(tmp_path / "out")  # the temporary file
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert err.splitlines() == ["napari-levelset: terminated"]
    assert os.listdir(tmp_path / "out") == []


def test_unet_advice_is_given_in_flags(tmp_path, capsys):
    src, _ = rgb_phantom(tmp_path)
    code, _, err = run_cli(capsys, "segment", src, "-o", tmp_path / "o.tif", "--model", "unet", "--classes", 32)
    one_line_error(code, err, "--iterations 20", "--init kmeans")
    assert "init='kmeans'" not in err


def test_a_direct_unet_run_draws_no_progress_bar(tmp_path, capsys):
    src, _ = rgb_phantom(tmp_path)
    code, _, err = run_cli(capsys, "segment", src, "-o", tmp_path / "o.tif", "--model", "unet", "--classes", 3)
    assert code == 0, err
    assert "nan" not in err and "level-set" not in err and "wrote" in err


def test_finetune_without_iterations_is_refused(tmp_path, capsys):
    src, _ = rgb_phantom(tmp_path)
    out = tmp_path / "o.tif"
    code, _, err = run_cli(capsys, "segment", src, "-o", out, "--model", "unet", "--finetune", "all")
    one_line_error(code, err, "--finetune all", "--iterations")
    assert not out.exists()
    code, _, err = run_cli(capsys, "segment", src, "-o", out, "--model", "unet", "--finetune", "all", "-k", 0)
    one_line_error(code, err, "--iterations")


def test_segment_help_shows_defaults_and_every_option_is_explained(capsys):
    assert main(["segment", "--help"]) == 0
    text = capsys.readouterr().out
    assert "(default: 0.01)" in text and "(default: auto)" in text  # --lr, --device
    assert "where the network runs" in text


def test_threads_option_runs_the_real_command(tmp_path, capsys):
    """``--threads 1``: the installed command runs with one torch thread and gives what segment() gives with one."""
    import torch

    import napari_levelset as nls

    exe = shutil.which("napari-levelset")
    cmd = [exe] if exe else [sys.executable, "-m", "napari_levelset.cli.main"]
    image, _ = phantom((48, 56), 3, seed=5)
    src = write_tif(tmp_path, "in.tif", (image * 3000).astype(np.uint16))
    out = tmp_path / "out.tif"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "2"}  # the flag, not the environment, decides
    res = subprocess.run(
        cmd + ["segment", str(src), "-o", str(out), "--classes", "3", "--iterations", "20", "--threads", "1", "-q"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert res.returncode == 0, res.stderr
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        expected = nls.segment(tifffile.imread(src), 3, iterations=20)
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(tifffile.imread(out), expected)
    code, _, err = run_cli(capsys, "segment", src, "-o", out, "--threads", 0)
    one_line_error(code, err, "--threads", "from 1 to 4096")
    assert main(["segment", "--help"]) == 0
    assert "other programs leave free" in " ".join(capsys.readouterr().out.split())


# ---------------------------------------------------------------- flags generated from the settings' spec


def _segment_parser():
    import argparse

    from napari_levelset.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["segment"]


def test_every_setting_has_a_flag_with_the_specs_range_choices_and_default(capsys):
    import argparse

    from napari_levelset.settings import MAX_OFFERED_CLASSES, SPEC, Settings

    actions = {a.dest: a for a in _segment_parser()._actions}
    assert set(Settings.names()) <= set(actions)
    assert main(["segment", "--help"]) == 0
    text = capsys.readouterr().out
    for name, spec in SPEC.items():
        action = actions[name]
        assert spec.flag in action.option_strings and spec.flag in text, name
        if spec.choices is not None and name != "device":
            assert list(action.choices) == [c for c in spec.choices if c is not None], name
        if spec.default is not None and name != "finetune":  # --finetune: None tells whether it was given
            assert action.default == spec.default, name
        if spec.lo is None or spec.type not in (int, float):
            continue
        hi = MAX_OFFERED_CLASSES if name == "n_classes" else spec.hi
        step = 1 if spec.type is int else 1e-9
        below = spec.lo if spec.lo_open else spec.lo - step
        with pytest.raises(argparse.ArgumentTypeError):
            action.type(str(below))
        assert action.type(str(spec.lo + (step if spec.lo_open else 0))) >= spec.lo
        if hi is not None:
            assert action.type(str(hi)) == hi
            with pytest.raises(argparse.ArgumentTypeError):
                action.type(str(hi + step if spec.type is int else hi * 1.001))


def test_the_flags_give_the_settings(tmp_path, capsys, monkeypatch):
    seen = capture_segment(monkeypatch)
    src = write_tif(tmp_path, "in.tif", np.zeros((8, 12, 12), np.uint16))
    code, _, err = run_cli(
        capsys,
        "segment",
        src,
        "-o",
        tmp_path / "o.tif",
        "-q",
        "--contrast",
        "fluorescence",
        "--work-pixels",
        400,
        "--spacing",
        2,
        0.5,
        0.5,
        "--device",
        "cpu",
        "--finetune",
        "last",
        "-k",
        3,
        "--foreground",
        1,
        2,
    )
    assert code == 0, err
    s = seen["settings"]
    assert (s.contrast, s.work_pixels, s.device, s.finetune, s.iterations, s.foreground) == (
        "fluorescence",
        400,
        "cpu",
        "last",
        3,
        (1, 2),
    )
    assert seen["spacing"] == [2.0, 0.5, 0.5]
    for bad, words in (
        (["--device", "tpu"], ["--device", "cuda:N"]),
        (["--work-pixels", 8], ["--work-pixels"]),
        (["--spacing", 0], ["--spacing", "> 0"]),
        (["--contrast", "log"], ["--contrast"]),
    ):
        code, _, err = run_cli(capsys, "segment", src, "-o", tmp_path / "o.tif", *bad)
        one_line_error(code, err, *words)


def test_a_cuda_device_by_its_index_is_a_choice(tmp_path, capsys, monkeypatch):
    seen = capture_segment(monkeypatch)
    src = write_tif(tmp_path, "in.tif", np.zeros((12, 12), np.uint16))
    code, _, err = run_cli(capsys, "segment", src, "-o", tmp_path / "o.tif", "-q", "--device", "cuda:1")
    assert code == 0, err
    assert seen["settings"].device == "cuda:1"
