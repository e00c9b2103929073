"""The API's contract, property-based (hypothesis): for any input, ``segment`` returns a valid
label image or raises ``InputError`` -- never another exception and never NaN-driven labels."""

from __future__ import annotations

import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from napari_levelset import segment  # noqa: E402
from napari_levelset.errors import InputError  # noqa: E402

EXAMPLES = int(os.environ.get("NAPARI_LEVELSET_CONTRACT_EXAMPLES", "60"))

DTYPES = st.sampled_from([np.uint8, np.uint16, np.int16, np.int64, np.float32, np.float64, np.bool_])
ODD_NUMBERS = st.one_of(
    st.integers(-3, 70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.booleans(),
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


#: well-formed images, so that most examples of the Segmenter test get as far as the live settings
PLAIN_IMAGES = hnp.arrays(
    np.float32, st.sampled_from([(8, 8), (12, 9), (6, 7, 3), (4, 6, 6)]), elements=st.floats(0, 1, width=32)
)


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
        labels = segment(
            image,
            n_classes=n_classes,
            lam=lam,
            iterations=iterations,
            regions=regions,
            seed=seed,
            channel_axis=channel_axis,
            device="cpu",
        )
    except InputError:
        return
    labels = np.asarray(labels)
    assert np.issubdtype(labels.dtype, np.integer)
    assert labels.size > 0 and labels.min() >= 0
    if regions == "classes":
        assert labels.min() >= 1 and labels.max() <= (4 if n_classes is None else int(n_classes))


@settings(max_examples=max(10, EXAMPLES // 3), deadline=None, suppress_health_check=list(HealthCheck))
@given(
    image=st.one_of(PLAIN_IMAGES, PLAIN_IMAGES, images()),
    n_classes=st.one_of(st.integers(2, 4), st.integers(2, 4), ODD_NUMBERS),
    scribbles=st.one_of(st.none(), st.sampled_from(["fit", "wrong shape", "too high", "fractions", "text"])),
    live=st.lists(
        st.tuples(st.sampled_from(["lam", "lr", "alpha"]), st.one_of(st.floats(0, 1), ODD_NUMBERS)), max_size=3
    ),
    every=st.one_of(st.integers(1, 3), ODD_NUMBERS),
)
def test_a_segmenter_gives_valid_labels_or_an_input_error(image, n_classes, scribbles, live, every):
    """``Segmenter`` with scribbles, live changes of λ, lr and α between runs, and ``run(every=)``."""
    from napari_levelset import Segmenter

    try:
        seg = Segmenter(image, n_classes, device="cpu", width=4)
        n = seg.n_classes
        if scribbles is not None:
            shape = seg.labels().shape
            s = {
                "fit": np.zeros(shape, np.uint8),
                "wrong shape": np.zeros((3,) + shape, np.uint8),
                "too high": np.full(shape, n + 1, np.int32),
                "fractions": np.full(shape, 0.5),
                "text": np.full(shape, "a"),
            }[scribbles]
            if scribbles == "fit":
                s.flat[0] = 1
            seg.set_scribbles(s)
        for name, value in live:
            setattr(seg, name, value)
        for _ in seg.run(2, every=every):
            pass
    except InputError:
        event("InputError")
        return
    event("labels")
    labels = seg.labels()
    assert np.issubdtype(labels.dtype, np.integer) and labels.min() >= 1 and labels.max() <= n


@settings(max_examples=max(10, EXAMPLES // 3), deadline=None, suppress_health_check=list(HealthCheck))
@given(
    setting=st.sampled_from(
        [
            "n_classes",
            "lam",
            "lr",
            "alpha",
            "steps",
            "crop",
            "batch_size",
            "checkpoint_every",
            "seed",
            "warmup",
            "kmeans_weight",
            "kmeans_steps",
            "kmeans_heads",
            "base",
            "levels",
            "embed",
            "threads",
            "stop_after",
            "color",
        ]
    ),
    value=st.one_of(st.integers(-3, 40), ODD_NUMBERS, st.sampled_from(["lab", [2, 3], [], [2, 300]])),
)
def test_train_writes_a_model_or_raises_an_input_error(tmp_path_factory, setting, value):
    """``train`` with one setting drawn from odd values, the others small: a model file or an ``InputError``."""
    from napari_levelset.training.train import train

    out = tmp_path_factory.mktemp("train") / "model.pt"
    image = np.random.default_rng(0).random((48, 48)).astype(np.float32)
    kwargs = dict(
        n_classes=2, steps=2, crop=32, batch_size=1, base=2, levels=1, embed=2, progress=False, device="cpu", threads=1
    )
    kwargs[setting] = value
    if setting == "steps" and isinstance(value, int) and value > 3:
        kwargs[setting] = 3
    try:
        result = train([image], out, **kwargs)
    except InputError:
        event("InputError")
        return
    event("trained")
    if kwargs.get("stop_after") is None or result.steps >= kwargs["steps"]:
        assert out.is_file()
    assert all(np.isfinite(loss) for loss in np.ravel(result.losses)), result.losses
