"""The command's limits, run as the real command: every failure is one line with an exit status, memory and
processes are bounded by what the machine has, and the user's files are never replaced by surprise."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import tifffile

zarr = pytest.importorskip("zarr")

ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
#: a tiny U-Net trained for one step
TINY_TRAIN = [
    "--steps",
    "1",
    "--crop",
    "16",
    "--batch-size",
    "1",
    "--base",
    "4",
    "--embed",
    "4",
    "--levels",
    "1",
    "--classes",
    "2",
    "--quiet",
]


def cli(*args, timeout=240):
    """Run ``python -m napari_levelset.cli ARGS``: ``(exit status, stderr)``."""
    res = subprocess.run(
        [sys.executable, "-m", "napari_levelset.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
    )
    return res.returncode, res.stderr


def one_line(code, err, *words, status=2):
    assert code == status, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err


def grey(path, shape=(32, 32), seed=0):
    tifffile.imwrite(path, (np.random.default_rng(seed).random(shape) * 255).astype(np.uint8))
    return path


# -- numbers beyond what the machine can do ---------------------------------------------------------
@pytest.mark.parametrize("command", ["segment", "train"])
def test_threads_beyond_any_machine_are_one_line(tmp_path, command):
    src = grey(tmp_path / "a.tif")
    code, err = cli(command, src, "-o", tmp_path / ("o.tif" if command == "segment" else "m.pt"), "--threads", 2**32)
    one_line(code, err, "--threads", "4096")


@pytest.mark.parametrize("address", ["bogus", ""])
def test_a_scheduler_address_that_is_no_address_is_one_line(tmp_path, address):
    a, b = grey(tmp_path / "a.tif"), grey(tmp_path / "b.tif", seed=1)
    (tmp_path / "out").mkdir()
    code, err = cli("segment", a, b, "-o", tmp_path / "out", "-k", "1", "-q", "--scheduler", address)
    one_line(code, err, "--scheduler")
    code, err = cli("segment", a, "-o", tmp_path / "o.tif", "-k", "1", "-q", "--scheduler", address)
    one_line(code, err, "--scheduler")
    assert not (tmp_path / "o.tif").exists()


def test_more_workers_than_the_machine_runs_are_refused_at_once(tmp_path):
    a, b = grey(tmp_path / "a.tif"), grey(tmp_path / "b.tif", seed=1)
    (tmp_path / "out").mkdir()
    code, err = cli("segment", a, b, "-o", tmp_path / "out", "-k", "1", "-q", "--workers", 65536, timeout=60)
    one_line(code, err, "--workers", "65536")
    assert os.listdir(tmp_path / "out") == []


def test_a_diameter_beyond_any_object_is_one_line(tmp_path):
    src = grey(tmp_path / "a.tif")
    code, err = cli(
        "segment", src, "-o", tmp_path / "o.tif", "-k", "1", "-q", "--regions", "instances", "--diameter", "1e300"
    )
    one_line(code, err, "--diameter")


# -- malformed volumes ------------------------------------------------------------------------------------
def ome_zarr(path, datasets=None, shape=(8, 16, 16), scale=(1, 1, 1), axes="zyx", multiscales=None):
    g = zarr.open_group(str(path), mode="w", zarr_format=2)
    if shape is not None:
        arr = g.create_array("0", shape=shape, chunks=(8, 8, 8), dtype="uint8", fill_value=0)
        if 0 not in shape:
            arr[...] = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    if datasets is None:
        datasets = [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": list(scale)}]}]
    ms = {"version": "0.4", "axes": [{"name": a, "type": "space"} if isinstance(a, str) else a for a in axes]}
    if datasets != "none":
        ms["datasets"] = datasets
    g.attrs["multiscales"] = [ms] if multiscales is None else multiscales
    return path


MALFORMED = {
    "no datasets": dict(datasets="none"),
    "no levels": dict(datasets=[]),
    "an empty path": dict(datasets=[{"path": ""}]),
    "a missing level": dict(datasets=[{"path": "1"}]),
    "a short scale": dict(scale=(1,)),
    "a text scale": dict(scale=("a", "b", "c")),
    "an empty array": dict(shape=(0, 8, 8)),
    "axes without names": dict(axes=[5, None, {"x": 1}]),
    "multiscales not a list": dict(multiscales={"a": 1}),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_ome_zarr_is_one_line(tmp_path, case):
    src = ome_zarr(tmp_path / "in.zarr", **MALFORMED[case])
    code, err = cli("segment", src, "-o", tmp_path / "out.zarr", "-k", "1", "-q", "--crop", 8, "--crops", 1)
    one_line(code, err, "in.zarr")
    assert not (tmp_path / "out.zarr").exists()


def test_a_corrupt_zarr_chunk_is_an_input_error(tmp_path):
    src = ome_zarr(tmp_path / "in.zarr")
    (src / "0" / "0.0.1").write_bytes(b"garbage, not a compressed chunk")
    code, err = cli("segment", src, "-o", tmp_path / "out.zarr", "-k", "1", "-q", "--crop", 8, "--crops", 1)
    one_line(code, err, "in.zarr")


# -- messages that say what happened ------------------------------------------------------------------
@contextlib.contextmanager
def small_disk(size="96k"):
    """A folder on a file system of ``size`` (a tmpfs; needs the right to mount one)."""
    folder = tempfile.mkdtemp()
    if (
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", folder], capture_output=True).returncode
        != 0
    ):
        os.rmdir(folder)
        pytest.skip("cannot mount a small file system here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", folder], capture_output=True)
        os.rmdir(folder)


def test_a_full_disk_is_said_so_naming_the_file(tmp_path):
    src = grey(tmp_path / "a.tif", shape=(320, 320))
    with small_disk() as disk:
        out = os.path.join(disk, "labels.tif")
        code, err = cli("segment", src, "-o", out, "-k", "1", "-q")
        one_line(code, err, "No space left on device", "labels.tif")
        assert os.listdir(disk) == []
        model = os.path.join(disk, "model.pt")
        train = TINY_TRAIN[:]
        train[train.index("--base") + 1] = train[train.index("--embed") + 1] = "48"
        code, err = cli("train", src, "-o", model, *train)
        one_line(code, err, "No space left on device", "model.pt")


def test_a_model_file_with_deeply_nested_metadata_is_one_line(tmp_path):
    import torch

    from napari_levelset.nn.model_files import FORMAT, FORMAT_VERSION

    model = tmp_path / "deep.pt"
    torch.save(
        dict(format=FORMAT, format_version=FORMAT_VERSION, metadata="[" * 100_000 + "]" * 100_000, state_dict={}), model
    )
    code, err = cli("segment", grey(tmp_path / "a.tif"), "-o", tmp_path / "o.tif", "--model", model, "-q")
    one_line(code, err, "deep.pt")


def test_train_says_one_line_about_a_damaged_tiff(tmp_path):
    tifffile.imwrite(tmp_path / "c.tif", np.zeros((64, 64), np.uint8))
    data = bytearray((tmp_path / "c.tif").read_bytes())
    data[4:8] = (10**6).to_bytes(4, "little")  # the first page's offset points past the end
    (tmp_path / "bad.tif").write_bytes(bytes(data))
    code, err = cli("train", tmp_path / "bad.tif", "-o", tmp_path / "m.pt", *TINY_TRAIN)
    one_line(code, err, "bad.tif")


# -- the user's files ----------------------------------------------------------------------------------
def test_train_never_replaces_a_file_that_is_not_a_model(tmp_path):
    src = grey(tmp_path / "a.tif")
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n not really, but a user's file")
    before = photo.read_bytes()
    code, err = cli("train", src, "-o", photo, *TINY_TRAIN)
    one_line(code, err, "photo.png", "--overwrite")
    assert photo.read_bytes() == before
    # a model file is replaced as before; and asked to, anything
    model = tmp_path / "m.pt"
    assert cli("train", src, "-o", model, *TINY_TRAIN)[0] == 0
    assert cli("train", src, "-o", model, *TINY_TRAIN, "--seed", "1")[0] == 0
    assert cli("train", src, "-o", photo, *TINY_TRAIN, "--overwrite")[0] == 0
    assert photo.read_bytes() != before


def test_a_batch_makes_its_output_folder(tmp_path):
    a, b = grey(tmp_path / "a.tif"), grey(tmp_path / "b.tif", seed=1)
    out = tmp_path / "new" / "labels"
    code, err = cli("segment", a, b, "-o", out, "-k", "1", "-q")
    assert code == 0, err
    assert sorted(os.listdir(out)) == ["a.tif", "b.tif"]


def test_settings_json_too_deep_for_the_parser_is_an_input_error():
    from napari_levelset.errors import InputError
    from napari_levelset.settings import Settings

    with pytest.raises(InputError):
        Settings.from_json("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError):
        Settings.from_json(json.dumps({"lam": 0.1})[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
