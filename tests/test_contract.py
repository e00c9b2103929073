"""The API's contract, property-based (hypothesis): for any input, ``segment`` returns a valid
label image or raises ``InputError`` -- never another exception and never NaN-driven labels."""

from __future__ import annotations

import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from napari_levelset import segment  # noqa: E402
from napari_levelset.io import InputError  # noqa: E402

EXAMPLES = int(os.environ.get("NAPARI_LEVELSET_CONTRACT_EXAMPLES", "60"))

DTYPES = st.sampled_from([np.uint8, np.uint16, np.int16, np.int64, np.float32, np.float64, np.bool_])
ODD_NUMBERS = st.one_of(
    st.integers(-3, 70), st.floats(allow_nan=True, allow_infinity=True), st.none(), st.booleans(),
    st.sampled_from(["2", 2.5, 1e300, -1e-300, 2**64]),
)


@st.composite
def images(draw):
    dtype = draw(DTYPES)
    shape = draw(st.sampled_from([(1,), (0, 4), (8, 8), (12, 9), (6, 7, 3), (5, 6, 4), (4, 6, 6), (2, 3, 5, 5)]))
    if dtype == np.bool_:
        elements = st.booleans()
    elif np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        elements = st.integers(int(info.min), int(info.max))
    else:
        big = 1e308 if dtype == np.float64 else float(np.float32(3e38))
        width = 64 if dtype == np.float64 else 32
        elements = st.floats(-big, big, allow_nan=False, allow_infinity=False, width=width)
        if draw(st.booleans()):
            elements = st.one_of(elements, st.just(float("nan")))
    return draw(hnp.arrays(dtype, shape, elements=elements))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    image=images(),
    n_classes=st.one_of(st.integers(2, 5), ODD_NUMBERS),
    lam=st.one_of(st.floats(0, 0.5), ODD_NUMBERS),
    iterations=st.one_of(st.integers(0, 3), ODD_NUMBERS),
    regions=st.sampled_from(["classes", "connected", "merged", "instances", "bogus"]),
    seed=st.one_of(st.integers(0, 5), ODD_NUMBERS),
    channel_axis=st.one_of(st.none(), st.integers(-4, 4), st.sampled_from([1.5, "0", True])),
)
def test_a_valid_result_or_an_input_error(image, n_classes, lam, iterations, regions, seed, channel_axis):
    try:
        labels = segment(image, n_classes=n_classes, lam=lam, iterations=iterations, regions=regions, seed=seed,
                         channel_axis=channel_axis, device="cpu")
    except InputError:
        return
    labels = np.asarray(labels)
    assert np.issubdtype(labels.dtype, np.integer)
    assert labels.size > 0 and labels.min() >= 0
    if regions == "classes":
        assert labels.min() >= 1 and labels.max() <= (4 if n_classes is None else int(n_classes))
