"""The contract of the rest of the API, property-based (hypothesis): ``scale.chunked``, ``scale.batch`` and
``Settings.from_json`` work or raise ``InputError`` for any input -- never another exception.

``NAPARI_LEVELSET_CONTRACT_EXAMPLES`` sets how many examples each test draws (besides the ones it always
runs); the default keeps a test run short.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

hypothesis = pytest.importorskip("hypothesis")
pytest.importorskip("dask")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from napari_levelset.errors import PROG, InputError  # noqa: E402
from napari_levelset.scale.batch import segment_arrays, segment_files  # noqa: E402
from napari_levelset.scale.chunked import segment_volume  # noqa: E402
from napari_levelset.settings import Settings  # noqa: E402

EXAMPLES = int(os.environ.get("NAPARI_LEVELSET_CONTRACT_EXAMPLES", "10"))
CONTRACT = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

#: numbers no argument expects
ODD = st.one_of(
    st.integers(-3, 3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.booleans(),
    st.sampled_from(["2", "", 2.5, 1e300, -1e-300, 2**32, 2**64, (1,), [2, 2]]),
)


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """A run given ``threads`` sets torch's thread count: give the next test the count it had."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@st.composite
def volumes(draw):
    shape = draw(
        st.sampled_from(
            [
                (1, 1, 1),
                (1, 1),
                (0, 4, 4),
                (2, 3),
                (1, 1, 2),
                (3, 4, 5),
                (6, 9, 8),
                (9, 11),
                (2, 5, 6, 6),
                (5,),
                (2, 2, 2, 2, 2),
            ]
        )
    )
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.int16, np.float32, np.float64, np.bool_]))
    if dtype == np.bool_:
        elements = st.booleans()
    elif np.issubdtype(dtype, np.integer):
        elements = st.integers(int(np.iinfo(dtype).min), int(np.iinfo(dtype).max))
    else:
        elements = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=32)
        if draw(st.booleans()):
            elements = st.one_of(elements, st.just(float("nan")))
    return draw(hnp.arrays(dtype, shape, elements=elements))


TINY = np.random.default_rng(0).random((1, 1, 1)).astype(np.float32)
SMALL = np.random.default_rng(1).random((3, 4, 5)).astype(np.float32)


@CONTRACT
@given(
    volume=volumes(),
    n_classes=st.one_of(st.integers(2, 3), ODD),
    model=st.sampled_from(["cnn", "unet", "bogus"]),
    iterations=st.one_of(st.integers(0, 2), ODD),
    tile=st.one_of(st.none(), st.integers(1, 40), ODD),
    crop=st.one_of(st.integers(1, 16), ODD),
    crops=st.one_of(st.integers(1, 3), ODD),
    channel_axis=st.one_of(st.none(), st.integers(-3, 3), st.sampled_from([1.5, "0", True])),
    scheduler=st.sampled_from([None, "sync", "threads", "bogus", "", 3]),
)
@example(
    volume=SMALL, n_classes=2, model="cnn", iterations=1, tile=0, crop=8, crops=1, channel_axis=None, scheduler=None
)
@example(
    volume=SMALL, n_classes=2, model="cnn", iterations=1, tile=2.5, crop=8, crops=1, channel_axis=None, scheduler=None
)
@example(
    volume=SMALL, n_classes=2, model="cnn", iterations=1, tile="a", crop=8, crops=1, channel_axis=None, scheduler=None
)
@example(
    volume=SMALL, n_classes=2, model="cnn", iterations=1, tile=None, crop=0, crops=1, channel_axis=None, scheduler=None
)
@example(
    volume=SMALL, n_classes=2, model="cnn", iterations=1, tile=None, crop=8, crops=0, channel_axis=None, scheduler=None
)
@example(
    volume=SMALL,
    n_classes=2,
    model="cnn",
    iterations=1,
    tile=None,
    crop=8,
    crops=2**40,
    channel_axis=None,
    scheduler=None,
)
@example(
    volume=TINY, n_classes=2, model="cnn", iterations=1, tile=None, crop=8, crops=1, channel_axis=None, scheduler=None
)
@example(
    volume=TINY,
    n_classes=2,
    model="unet",
    iterations=None,
    tile=None,
    crop=8,
    crops=1,
    channel_axis=None,
    scheduler=None,
)
@example(
    volume=SMALL,
    n_classes=2,
    model="cnn",
    iterations=1,
    tile=None,
    crop=8,
    crops=1,
    channel_axis=None,
    scheduler="bogus",
)
def test_chunked_gives_labels_or_an_input_error(
    volume, n_classes, model, iterations, tile, crop, crops, channel_axis, scheduler
):
    try:
        labels = segment_volume(
            volume,
            n_classes=n_classes,
            model=model,
            iterations=iterations,
            tile=tile,
            crop=crop,
            crops=crops,
            channel_axis=channel_axis,
            scheduler=scheduler,
            device="cpu",
        )
    except InputError:
        return
    labels = np.asarray(labels)
    spatial = volume.shape[1:] if labels.ndim < volume.ndim else volume.shape
    assert labels.shape == spatial
    assert labels.min() >= 1 and labels.max() <= int(n_classes if n_classes is not None else 4)


#: a batch's odd arguments: threads and workers no machine runs, never a cluster started
THREADS = st.one_of(st.none(), st.integers(1, 2), st.sampled_from([-1, 0, 0.5, "2", 2**32, 2**64, True]))
WORKERS = st.one_of(st.none(), st.sampled_from([-1, 0, 0.5, "2", 2**16, 2**64, True]))
IMAGES = st.lists(
    hnp.arrays(np.float32, st.sampled_from([(8, 8), (1, 1), (0, 4), (6, 7, 3)]), elements=st.floats(0, 1, width=32)),
    max_size=2,
)


@CONTRACT
@given(
    images=IMAGES,
    threads=THREADS,
    workers=WORKERS,
    n_classes=st.one_of(st.integers(2, 3), ODD),
    diameter=st.one_of(st.none(), st.floats(1, 20), ODD),
)
@example(
    images=[np.random.default_rng(0).random((8, 8)).astype(np.float32)],
    threads=-1,
    workers=None,
    n_classes=2,
    diameter=None,
)
@example(
    images=[np.random.default_rng(0).random((8, 8)).astype(np.float32)],
    threads=None,
    workers=-1,
    n_classes=2,
    diameter=None,
)
@example(
    images=[np.random.default_rng(0).random((16, 16)).astype(np.float32)],
    threads=None,
    workers=None,
    n_classes=2,
    diameter=1e300,
)
def test_segment_arrays_gives_labels_or_one_line_reasons(images, threads, workers, n_classes, diameter):
    try:
        res = segment_arrays(
            images,
            threads=threads,
            workers=workers,
            n_classes=n_classes,
            iterations=1,
            regions="instances" if diameter is not None else "classes",
            diameter=diameter,
            device="cpu",
        )
    except InputError:
        return
    assert len(res.labels) == len(images)
    for i, reason in res.failed:
        assert res.labels[i] is None
        assert reason.startswith(f"{PROG}: error: ") and "\n" not in reason, reason  # a bug has no such line


@CONTRACT
@given(
    inputs=st.lists(st.sampled_from(["one.tif", "missing.tif", "empty", "*.png", "folder", ""]), max_size=2),
    output=st.sampled_from(["folder", "out", "new/out", "one.tif", "labels.tif/x"]),
    ext=st.sampled_from([".tif", ".png", ".jpg", "", 3]),
    suffix=st.sampled_from(["", "_l", 3]),
    threads=THREADS,
    workers=WORKERS,
)
@example(inputs=["one.tif"], output="folder", ext=".tif", suffix="", threads=-1, workers=None)
@example(inputs=["one.tif"], output="new/out", ext=".tif", suffix="", threads=None, workers=None)
@example(inputs=["one.tif"], output="folder", ext=".tif", suffix="", threads=None, workers=-1)
def test_segment_files_gives_a_summary_or_an_input_error(inputs, output, ext, suffix, threads, workers):
    root = Path(tempfile.mkdtemp())
    (root / "empty").mkdir()
    (root / "folder").mkdir()
    tifffile.imwrite(root / "one.tif", (np.random.default_rng(0).random((12, 12)) * 255).astype(np.uint8))
    tifffile.imwrite(root / "folder" / "two.tif", np.zeros((12, 12), np.uint8))
    try:
        summary = segment_files(
            [str(root / i) for i in inputs],
            root / output,
            ext=ext,
            suffix=suffix,
            threads=threads,
            workers=workers,
            progress=False,
            report=lambda line: None,
            n_classes=2,
            iterations=1,
            device="cpu",
        )
    except InputError:
        return
    assert (root / output).is_dir()
    for _, reason in summary.failed:
        assert reason.startswith(f"{PROG}: error: ") and "\n" not in reason, reason


JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
FIELDS = st.sampled_from(
    ["n_classes", "lam", "lr", "model", "regions", "diameter", "foreground", "settings", "device", "seed"]
)


@st.composite
def settings_json(draw):
    kind = draw(st.sampled_from(["object", "json", "text", "deep"]))
    value = draw(st.dictionaries(FIELDS, JSON, max_size=4)) if draw(st.booleans()) else draw(JSON)
    if kind == "object":
        return value
    if kind == "json":
        return json.dumps(value)
    if kind == "text":
        return draw(st.text(max_size=20))
    depth = draw(st.sampled_from([10, 10_000, 100_000]))
    field = draw(FIELDS)
    return '{"' + field + '": ' + "[" * depth + "]" * depth + "}"


@CONTRACT
@given(data=settings_json())
@example(data="[" * 100_000 + "]" * 100_000)
@example(data='{"lam": ' + "[" * 100_000 + "]" * 100_000 + "}")
@example(data={"diameter": 1e300})
def test_settings_from_json_gives_settings_or_an_input_error(data):
    try:
        s = Settings.from_json(data)
    except InputError:
        return
    assert isinstance(s, Settings)
    assert Settings.from_json(s.to_json()) == s
