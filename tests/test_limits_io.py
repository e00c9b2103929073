"""Limits of the readers and writers: what a file may claim, one ``InputError`` line for every refusal,
and label images that come back as they were written."""

import io
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from _memory import PEAK_FOOTER, peak_kib

from napari_levelset.errors import InputError
from napari_levelset.io import read as read_mod
from napari_levelset.io.read import read_image, read_image_file
from napari_levelset.io.write import write_labels


def forged_tiff(width: int, height: int | None = None, tile=(16, 16), dtype=np.uint8) -> bytes:
    """A tiled zlib TIFF of 32 x 32 pixels (4 tiles) whose header is patched to declare ``height x width``."""
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, np.full((32, 32), 7, dtype), tile=tile, compression="zlib", metadata=None)
    data = bytearray(buf.getvalue())
    with tifffile.TiffFile(io.BytesIO(bytes(data))) as tif:
        tags = tif.pages[0].tags
        w, h = tags["ImageWidth"], tags["ImageLength"]
    struct.pack_into("<I", data, w.valueoffset, width)
    if height is not None:
        struct.pack_into("<I", data, h.valueoffset, height)
    return bytes(data)


def one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert msg and "\n" not in msg
    return msg


# -- what a file may claim ------------------------------------------------------------------------
def test_tiff_bomb_refused_under_1gb(tmp_path):
    """32 x 16,776,960 pixels declared by a file of a few hundred bytes: refused before decoding, in a child."""
    bomb = tmp_path / "bomb.tif"
    bomb.write_bytes(forged_tiff(16_776_960))
    assert bomb.stat().st_size < 2000
    code = (
        textwrap.dedent(f"""
        from napari_levelset.errors import InputError
        from napari_levelset.io.read import read_image
        try:
            read_image({str(bomb)!r})
        except InputError as exc:
            print("REFUSED", exc)
        else:
            print("READ")
    """)
        + PEAK_FOOTER
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("REFUSED"), out.stdout
    assert "allow_large" in lines[0]
    assert peak_kib(out.stdout) < 2**20  # KiB: under 1 GiB


@pytest.mark.parametrize("reader", [read_image, read_image_file])
def test_a_forged_huge_tiff_is_refused_in_one_line_by_both_readers(tmp_path, reader):
    bomb = tmp_path / "bomb.tif"
    bomb.write_bytes(forged_tiff(16_776_960))
    with pytest.raises(InputError) as err:
        reader(bomb)
    msg = one_line(err.value)
    assert "bomb.tif" in msg and "allow_large" in msg


def test_allow_large_reads_a_sparse_tiff_the_size_rule_refuses(tmp_path, monkeypatch):
    """A sparse tiled TIFF (missing tiles are zeros) over the floor: refused, then read with ``allow_large``."""
    monkeypatch.setattr(read_mod, "CLAIM_FLOOR", 2**20)  # 1 MiB, so that the test stays small
    sparse = tmp_path / "sparse.tif"
    sparse.write_bytes(forged_tiff(4096, 1024))  # 4 MiB declared, 4 tiles present
    with pytest.raises(InputError):
        read_image(sparse)
    got = read_image(sparse, allow_large=True)
    assert got.shape == (1024, 4096) and got.dtype == np.uint8
    assert (got[:16, :64] == 7).all() and int(got.sum()) == 7 * 32 * 32  # the 4 tiles: the first of row 1
    f = read_image_file(sparse, allow_large=True)
    assert f.data.shape == (1024, 4096)


def test_what_memory_cannot_hold_is_refused_even_with_allow_large(tmp_path):
    bomb = tmp_path / "huge.tif"
    bomb.write_bytes(forged_tiff(2**31, 2**31 - 32, tile=(16, 16)))  # 4.6e18 bytes declared
    for allow in (False, True):
        with pytest.raises(InputError) as err:
            read_image(bomb, allow_large=allow)
        assert "memory" in one_line(err.value)


def test_honest_compressed_files_are_read(tmp_path):
    import tifffile

    zeros = np.zeros((2000, 2000), np.uint8)
    zeros[5, 7] = 3
    tifffile.imwrite(tmp_path / "z.tif", zeros, compression="zlib")
    assert (tmp_path / "z.tif").stat().st_size < 40_000
    np.testing.assert_array_equal(read_image(tmp_path / "z.tif"), zeros)
    write_labels(tmp_path / "z.png", zeros)
    np.testing.assert_array_equal(read_image(tmp_path / "z.png"), zeros)


def test_claim_limit_rule():
    assert read_mod.claim_limit(10) == read_mod.CLAIM_FLOOR
    assert read_mod.claim_limit(2**30) == read_mod.CLAIM_RATIO * 2**30
    assert read_mod.claim_limit(10, allow_large=True) is None


def test_a_png_that_declares_more_than_its_data_is_refused_before_decoding(tmp_path):
    """A PNG header claiming 9000 x 9000 RGBA (324 MB) with a few bytes of data."""
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 9000, 9000, 8, 6, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\0" * 100))
        + chunk(b"IEND", b"")
    )
    (tmp_path / "big.png").write_bytes(png)
    with pytest.raises(InputError) as err:
        read_image(tmp_path / "big.png")
    assert "allow_large" in one_line(err.value)


def test_a_zarr_with_missing_chunks_is_refused_when_read_whole(tmp_path):
    zarr = pytest.importorskip("zarr")
    from napari_levelset.io.zarr import read_volume

    big = zarr.create_array(
        str(tmp_path / "big.zarr"),
        shape=(40_000, 40_000),
        chunks=(256, 256),
        dtype=np.uint8,
        fill_value=0,
        zarr_format=2,
    )
    big[:3, :3] = 1
    with pytest.raises(InputError) as err:
        read_volume(tmp_path / "big.zarr")
    assert "allow_large" in one_line(err.value)
    small = zarr.create_array(
        str(tmp_path / "small.zarr"), shape=(20, 30), chunks=(8, 8), dtype=np.uint16, zarr_format=2
    )
    values = np.arange(600, dtype=np.uint16).reshape(20, 30)
    small[:] = values
    vol = read_volume(tmp_path / "small.zarr")
    assert isinstance(vol.data, np.ndarray)
    np.testing.assert_array_equal(vol.data, values)


# -- labels written come back as they were ----------------------------------------------------------
@pytest.mark.parametrize(
    "shape,dtype,kw",
    [
        ((2, 3, 1), np.uint8, {}),
        ((1, 5, 6), np.uint8, {}),
        ((2, 1, 3, 4), np.uint8, {"axes": "TZYX"}),
        ((1, 1, 5, 6), np.uint16, {"axes": "ZCYX"}),
        ((2, 1, 3, 4), np.int32, {"axes": "TZYX", "spacing": (2.0, 0.5, 0.25), "unit": "µm"}),
        ((2, 1, 3, 4), np.int64, {"axes": "TZYX", "spacing": (2.0, 0.5, 0.25), "unit": "µm"}),
        ((1, 3, 1), np.uint16, {"spacing": (3.0, 1.0, 0.5)}),
        ((3, 1), np.uint8, {"spacing": (1.0, 0.5), "unit": "nm"}),
    ],
)
def test_axes_of_length_one_are_kept(tmp_path, shape, dtype, kw):
    labels = np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)
    out = write_labels(tmp_path / "l.tif", labels, **kw)
    f = read_image_file(out)
    assert f.data.shape == shape
    np.testing.assert_array_equal(f.data, labels)
    if "axes" in kw:
        assert f.axes == kw["axes"]
    if "spacing" in kw:
        assert f.spacing == pytest.approx(kw["spacing"], rel=1e-9)
    np.testing.assert_array_equal(read_image(out), labels)


def test_float_labels_to_png_are_refused_or_kept_exactly(tmp_path):
    for bad in (np.array([[0.5, 1.0], [2.0, 3.0]]), np.array([[np.nan, 1.0], [2.0, 3.0]], np.float32)):
        with pytest.raises(InputError) as err:
            write_labels(tmp_path / "f.png", bad)
        assert ".tif" in one_line(err.value)
    assert not (tmp_path / "f.png").exists()
    whole = np.array([[0.0, 1.0], [2.0, 300.0]])
    np.testing.assert_array_equal(read_image(write_labels(tmp_path / "w.png", whole)), whole)


def test_int16_labels_to_png(tmp_path):
    fits = np.array([[0, 1], [2, 300]], np.int16)
    got = read_image(write_labels(tmp_path / "i.png", fits))
    np.testing.assert_array_equal(got, fits)
    with pytest.raises(InputError) as err:
        write_labels(tmp_path / "n.png", np.array([[0, -1], [2, 3]], np.int16))
    one_line(err.value)


@pytest.mark.parametrize(
    "labels,kw",
    [
        (np.arange(5), {}),
        (np.array(3), {}),
        (np.zeros((0, 4), np.uint8), {}),
        (np.zeros((4, 0, 4), np.uint8), {"axes": "ZYX"}),
        (np.zeros((4, 4), np.uint8), {"spacing": "ab"}),
        (np.zeros((4, 4), np.uint8), {"spacing": ("a", "b")}),
        (np.zeros((4, 4), np.uint8), {"spacing": (1e-300, 1e-300)}),
        (np.zeros((4, 4), np.uint8), {"spacing": (1e-300,)}),
        (np.zeros((4, 4), np.uint8), {"spacing": (0.5,), "unit": "µm"}),
        (np.zeros((4, 4), np.uint8), {"spacing": (0.5,)}),
        (np.zeros((4, 4), np.uint8), {"spacing": (1.0, 1.0), "unit": "a\nb"}),
        (np.zeros((4, 4), np.uint8), {"axes": "YXYX"}),
        (np.zeros((4, 4, 4, 4), np.uint8), {"axes": "YXYX"}),
        (np.full((4, 4), "a"), {}),
        (np.zeros((4, 4), np.complex64), {}),
        (np.zeros((4, 4), object), {}),
    ],
)
@pytest.mark.parametrize("ext", [".tif", ".png"])
def test_write_labels_refuses_in_one_line(tmp_path, labels, kw, ext):
    if ext == ".png" and labels.ndim == 2 and labels.dtype.kind in "u" and labels.size:
        return  # a PNG keeps labels only: it does not look at axes, spacing and unit
    with pytest.raises(InputError) as err:
        write_labels(tmp_path / f"l{ext}", labels, **kw)
    one_line(err.value)
    assert list(tmp_path.iterdir()) == []


def test_axes_that_cannot_be_the_labels_are_refused_for_a_png_too(tmp_path):
    """Found by the io contract test: a PNG ignored its axes, so ``axes="0"`` was accepted."""
    with pytest.raises(InputError, match="axes"):
        write_labels(tmp_path / "out.png", np.zeros((1, 1), np.uint8), axes="0")
    assert not (tmp_path / "out.png").exists()
