"""The napari writer's contract, property-based (hypothesis): for any labels, scale, units, metadata and
file name, ``write_labels_layer`` writes a TIFF that reads back as the labels, or raises ``InputError`` --
never another exception, and never a file of another format."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from napari_levelset.errors import InputError  # noqa: E402
from napari_levelset.io.read import read_image  # noqa: E402
from napari_levelset.napari._writer import write_labels_layer  # noqa: E402

EXAMPLES = int(os.environ.get("NAPARI_LEVELSET_CONTRACT_EXAMPLES", "60"))

ODD = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-5, 5),
    st.text(max_size=4),
    st.none(),
    st.sampled_from([1e-300, 1e300, -1.0, 0.0, "1.5", b"x", [1.0]]),
)
SHAPES = st.sampled_from([(0,), (5,), (0, 4), (4, 5), (1, 4, 5), (3, 4, 5), (2, 3, 4, 5)])
LABELS = st.one_of(
    hnp.arrays(
        st.sampled_from([np.uint8, np.uint16, np.int32, np.int64, np.float32]), SHAPES, elements=st.integers(0, 255)
    ),
    hnp.arrays(np.bool_, SHAPES),
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    labels=LABELS,
    scale=st.one_of(st.none(), st.lists(st.one_of(st.floats(0.01, 10), ODD), min_size=0, max_size=4)),
    units=st.one_of(st.none(), st.text(max_size=6), st.lists(st.sampled_from(["micrometer", "pixel", "nm", ""]))),
    meta=st.one_of(st.none(), st.dictionaries(st.text(max_size=4), st.one_of(st.integers(), st.text(max_size=4)))),
    suffix=st.sampled_from([".tif", ".tiff", ".TIF", ".png", ".json", ""]),
)
def test_the_writer_writes_a_tiff_or_says_why(labels, scale, units, meta, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / f"out{suffix}")
        layer = {"name": "out", "scale": scale, "units": units, "metadata": {"napari_levelset": meta}}
        try:
            files = write_labels_layer(path, labels, layer)
        except InputError as exc:
            assert "\n" not in str(exc).strip()
            return
        assert suffix.lower() in (".tif", ".tiff")
        assert np.array_equal(read_image(files[0], labels=True), labels)
