"""The readers' and writers' contract, property-based (hypothesis): labels written read back as they were, or
``write_labels`` raises ``InputError``; any file, however garbled or forged, reads as an array within what its
size may claim, or raises ``InputError`` -- never another exception."""

from __future__ import annotations

import io
import os
import struct

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from napari_levelset.errors import InputError  # noqa: E402
from napari_levelset.io.axes import _norm_unit  # noqa: E402
from napari_levelset.io.read import claim_limit, read_image, read_image_file  # noqa: E402
from napari_levelset.io.write import write_labels  # noqa: E402

EXAMPLES = int(os.environ.get("NAPARI_LEVELSET_CONTRACT_EXAMPLES", "60"))
SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck))

DTYPES = st.sampled_from(
    [
        np.uint8,
        np.uint16,
        np.int8,
        np.int16,
        np.int32,
        np.uint32,
        np.int64,
        np.uint64,
        np.float16,
        np.float32,
        np.float64,
        np.bool_,
        np.complex64,
        "<U2",
    ]
)
ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
    st.sampled_from([1e-300, 1e300, -1.0, 0.0, 2**64]),
)


@st.composite
def labels_arrays(draw):
    dtype = np.dtype(draw(DTYPES))
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=0, max_size=5)))
    if draw(st.booleans()):  # mostly pictures of at least 2 x 2 pixels
        shape = shape[:3] + (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    if dtype.kind == "U":
        return draw(hnp.arrays(dtype, shape, elements=st.text(max_size=2)))
    if dtype.kind == "c":
        return draw(hnp.arrays(dtype, shape, elements=st.complex_numbers(max_magnitude=10, width=64)))
    if dtype.kind == "f":
        whole = draw(st.booleans())
        elements = (
            st.integers(0, 2000).map(float)
            if whole
            else st.floats(allow_nan=True, allow_infinity=True, width=8 * dtype.itemsize)
        )
        return draw(hnp.arrays(dtype, shape, elements=elements))
    return draw(hnp.arrays(dtype, shape))


SPACINGS = st.one_of(
    st.none(),
    st.none(),
    st.lists(st.floats(0.01, 100), min_size=2, max_size=3),
    st.lists(st.one_of(st.floats(1e-13, 1e13), st.floats(allow_nan=True, allow_infinity=True), ODD), max_size=4),
    ODD,
)
AXES = st.one_of(
    st.none(),
    st.none(),
    st.none(),
    st.text(alphabet="TZCYXQ", max_size=5).map(lambda a: a + "YX"),
    st.text(alphabet="TZCYXQ", min_size=2, max_size=5),
    ODD,
)
UNITS = st.one_of(
    st.none(),
    st.none(),
    ODD,
    st.sampled_from(["µm", "um", "micron", "nm", "mm", "m", "pixel", "", "Å", "furlong", "a\nb", "x" * 100]),
)


def _canonical(axes: str | None) -> bool:
    letters = [a for a in (axes or "") if a != "C"]
    rank = {"T": 0, "Q": 0, "Z": 1, "Y": 2, "X": 3}
    return axes is None or letters == sorted(letters, key=rank.__getitem__)


@settings(max_examples=EXAMPLES, **SETTINGS)
@given(
    labels=labels_arrays(),
    axes=AXES,
    spacing=SPACINGS,
    unit=UNITS,
    suffix=st.sampled_from([".tif", ".tif", ".tiff", ".TIF", ".png", ".png", ".jpg", ""]),
)
def test_labels_written_read_back_as_they_were_or_an_input_error(tmp_path_factory, labels, axes, spacing, unit, suffix):
    folder = tmp_path_factory.mktemp("labels")
    out = folder / f"labels{suffix}"
    try:
        write_labels(out, labels, axes=axes, spacing=spacing, unit=unit)
    except InputError as exc:
        event("InputError")
        assert "\n" not in str(exc) and list(folder.iterdir()) == []
        return
    event(f"written {suffix.lower()}")
    back = read_image(out)
    assert back.shape == labels.shape
    assert np.array_equal(back, labels, equal_nan=labels.dtype.kind == "f")
    if labels.dtype.kind in "biu":
        assert back.dtype.kind in "biu"
    f = read_image_file(out)
    assert f.data.size == labels.size and sorted(f.data.shape) == sorted(labels.shape)
    if _canonical(axes if isinstance(axes, str) else None):
        assert f.data.shape == labels.shape
        assert np.array_equal(f.data, labels, equal_nan=labels.dtype.kind == "f")
        if suffix.lower() == ".png":  # a PNG keeps the labels only
            return
        if isinstance(axes, str):
            assert f.axes == axes.upper()
        if spacing is not None:
            assert f.spacing == pytest.approx(tuple(float(v) for v in np.ravel(spacing)), rel=1e-9)
            if _norm_unit(unit) is not None:
                assert f.unit == _norm_unit(unit)


def _within_claim(path, arr: np.ndarray) -> None:
    limit = claim_limit(os.path.getsize(path))
    assert arr.nbytes <= limit


def _read_both(path) -> None:
    for reader in (read_image, read_image_file):
        try:
            got = reader(path)
        except InputError as exc:
            event(f"{reader.__name__}: InputError")
            assert "\n" not in str(exc)
            continue
        event(f"{reader.__name__}: array")
        _within_claim(path, got if isinstance(got, np.ndarray) else got.data)


MAGIC = st.sampled_from(
    [b"", b"II*\0", b"MM\0*", b"II+\0\x08\0\0\0", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"\xff\xd8\xff"]
)


@settings(max_examples=EXAMPLES, **SETTINGS)
@given(magic=MAGIC, body=st.binary(max_size=600), suffix=st.sampled_from([".tif", ".png", ".jpg", ".gif", ".bmp"]))
def test_garbage_files_read_as_an_array_or_an_input_error(tmp_path_factory, magic, body, suffix):
    path = tmp_path_factory.mktemp("garbage") / f"file{suffix}"
    path.write_bytes(magic + body)
    _read_both(path)


#: sizes a forged header declares: small ones (read), and huge ones (refused before decoding)
SIDES = st.one_of(st.integers(1, 2048), st.integers(2**16, 2**32 - 1))


@st.composite
def forged_tiffs(draw) -> bytes:
    """A small TIFF made by tifffile, its shape tags forged, some bytes changed, maybe truncated."""
    import tifffile

    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.float32]))
    shape = draw(st.sampled_from([(32, 32), (3, 32, 32), (32, 32, 3)]))
    kw = draw(
        st.sampled_from(
            [
                {},
                {"tile": (16, 16)},
                {"compression": "zlib"},
                {"tile": (16, 16), "compression": "zlib"},
                {"rowsperstrip": 4},
                {"imagej": True},
            ]
        )
    )
    if kw.get("imagej") and shape[-1] == 3:
        shape = shape[::-1]  # a 3-slice stack: ImageJ's RGB is uint8 only
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.ones(shape, dtype), photometric="rgb" if shape[-1] == 3 else "minisblack", **kw)
    data = bytearray(buf.getvalue())
    with tifffile.TiffFile(io.BytesIO(bytes(data))) as tif:
        tags = tif.pages[0].tags
        for name in (
            "ImageWidth",
            "ImageLength",
            "TileWidth",
            "TileLength",
            "RowsPerStrip",
            "SamplesPerPixel",
            "BitsPerSample",
        ):
            tag = tags.get(name)
            if tag is not None and tag.count == 1 and draw(st.booleans()):
                value = draw(SIDES) if name in ("ImageWidth", "ImageLength") else draw(st.integers(0, 2**16 - 1))
                fmt = "<I" if tag.dtype == 4 else "<H"
                struct.pack_into(fmt, data, tag.valueoffset, value % (2**32 if fmt == "<I" else 2**16))
    for _ in range(draw(st.integers(0, 3))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(8, len(data)))]
    return bytes(data)


@settings(max_examples=EXAMPLES, **SETTINGS)
@given(data=forged_tiffs())
def test_forged_tiffs_read_as_an_array_within_the_claim_or_an_input_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("forged") / "forged.tif"
    path.write_bytes(data)
    _read_both(path)
