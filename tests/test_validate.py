"""Every public setting of ``segment`` and ``Segmenter`` is checked in one place (``napari_levelset.validate``):
bad values give an ``InputError`` naming the setting, the value and what is allowed."""

import numpy as np
import pytest

import napari_levelset
from napari_levelset import Segmenter
from napari_levelset.errors import InputError


@pytest.fixture
def image():
    return np.random.default_rng(0).random((16, 16)).astype(np.float32)


def run_segment(image, **kwargs):
    kwargs = {"n_classes": 2, "iterations": 2, "device": "cpu", **kwargs}
    return napari_levelset.segment(image, **kwargs)


BAD_SETTINGS = [
    ("seed", -1, "0..4294967295"),
    ("seed", 2**64, "0..4294967295"),
    ("seed", True, "0..4294967295"),
    ("seed", 1.5, "0..4294967295"),
    ("lr", 1e300, r"\(0, 10\]"),
    ("lr", float("nan"), r"\(0, 10\]"),
    ("position", 1e300, r"\[0, 100\]"),
    ("lam", 1e300, r"\[0, 1000\]"),
    ("lam", float("inf"), r"\[0, 1000\]"),
    ("alpha", float("nan"), r"\[0, 1000\]"),
    ("n_classes", float("nan"), "2..65535"),
    ("n_classes", float("inf"), "2..65535"),
    ("n_classes", 2.7, "2..65535"),
    ("n_classes", True, "2..65535"),
    ("n_classes", "3", "2..65535"),
    ("spatial_dims", 2.5, "2 or 3"),
    ("spatial_dims", "2", "2 or 3"),
    ("spatial_dims", True, "2 or 3"),
    ("channel_axis", 1.5, "whole number"),
    ("channel_axis", "0", "whole number"),
    ("channel_axis", True, "whole number"),
    ("width", 0.5, "1..1024"),
    ("width", 100000, "1..1024"),
    ("depth", 100000, "1..16"),
    ("depth", 0, "1..16"),
    ("min_region", float("nan"), ">= 0"),
    ("merge", float("inf"), ">= 0"),
    ("iterations", float("nan"), "0..100000"),
    ("iterations", float("inf"), "0..100000"),
    ("iterations", "2", "0..100000"),
    ("iterations", 2.5, "0..100000"),
    ("max_pixels", 0, ">= 1"),
]


@pytest.mark.parametrize("name,value,allowed", BAD_SETTINGS)
def test_segment_names_the_setting_the_value_and_the_range(image, name, value, allowed):
    kwargs = {name: value}
    if name == "merge" or name == "min_region":
        kwargs["regions"] = "connected"
    with pytest.raises(InputError, match=allowed) as info:
        run_segment(image, **kwargs)
    message = str(info.value)
    assert name in message and (repr(value)[:20] in message or str(value) in message), message


@pytest.mark.parametrize(
    "name,value,allowed", [b for b in BAD_SETTINGS if b[0] not in ("min_region", "merge", "iterations")]
)
def test_segmenter_checks_the_same_settings(image, name, value, allowed):
    kwargs = {"n_classes": 2, "device": "cpu", name: value}
    with pytest.raises(InputError, match=allowed):
        Segmenter(image, **kwargs)


def test_no_number_of_classes_means_the_default(image):
    from napari_levelset.settings import Settings

    assert Segmenter(image, None, device="cpu").n_classes == Settings().resolved().n_classes == 4
    with pytest.raises(InputError, match=r"n_classes.*2..65535.*'4'"):
        Segmenter(image, "4", device="cpu")


@pytest.mark.parametrize("model", ["cnn", "unet"])
def test_iterations_as_text_are_refused_by_every_model(image, model):
    rgb = np.random.default_rng(1).random((16, 16, 3)).astype(np.float32)
    with pytest.raises(InputError, match="iterations"):
        napari_levelset.segment(rgb, 2, iterations="2", model=model, device="cpu")


def test_integral_numbers_are_whole_numbers(image):
    a = run_segment(image, n_classes=3, spatial_dims=2, seed=4)
    b = run_segment(image, n_classes=3.0, spatial_dims=2.0, seed=np.int64(4), iterations=2.0, width=16.0)
    np.testing.assert_array_equal(a, b)
    rgb = np.random.default_rng(1).random((3, 16, 16)).astype(np.float32)
    np.testing.assert_array_equal(run_segment(rgb, channel_axis=0), run_segment(rgb, channel_axis=0.0))


def test_live_settings_and_run_arguments_are_checked(image):
    seg = Segmenter(image, 2, device="cpu")
    for name, value in [("lr", 1e300), ("lr", float("nan")), ("lam", 1e300), ("lam", "0.1")]:
        with pytest.raises(InputError, match=name):
            setattr(seg, name, value)
    with pytest.raises(InputError, match="every"):
        list(seg.run(2, every=float("nan")))
    with pytest.raises(InputError, match="iterations"):
        list(seg.run(float("inf")))
    with pytest.raises(InputError, match="iterations"):
        list(seg.run("2"))
    assert seg.iteration == 0


@pytest.mark.parametrize(
    "scribbles",
    [
        np.zeros((16, 16), np.complex64),
        np.full((16, 16), "1"),
        np.full((16, 16), np.nan),
    ],
)
def test_scribbles_must_be_whole_numbers(image, scribbles):
    with pytest.raises(InputError, match="scribbles must be integer labels"):
        run_segment(image, scribbles=scribbles)
    seg = Segmenter(image, 2, device="cpu")
    with pytest.raises(InputError, match="scribbles must be integer labels"):
        seg.set_scribbles(scribbles)


def test_a_ragged_list_is_not_an_image():
    with pytest.raises(InputError, match="the image is not a rectangular array"):
        napari_levelset.segment([[0.0, 1.0, 0.5], [1.0, 0.0]], 2, iterations=2, device="cpu")
    with pytest.raises(InputError, match="the image is not a rectangular array"):
        Segmenter([[0.0, 1.0, 0.5], [1.0, 0.0]], 2, device="cpu")


def test_a_loss_that_becomes_nan_ends_the_run_and_says_what_to_lower(image, monkeypatch):
    import napari_levelset.method.segmenter as engine

    real = engine.levelset_loss

    def diverging(probs, x, lam, **kw):
        return real(probs, x, lam, **kw) * float("nan")

    monkeypatch.setattr(engine, "levelset_loss", diverging)
    with pytest.raises(InputError, match=r"lower lr.*or lam"):
        run_segment(image, iterations=3)
    seg = Segmenter(image, 2, device="cpu")
    with pytest.raises(InputError, match="lower lr"):
        for _ in seg.run(10, every=5):
            pass
    assert seg.iteration == 5  # ended at the first snapshot


def test_valid_settings_still_work_at_the_limits(image):
    labels = run_segment(image, lr=10, lam=1000, position=100, width=1, depth=1, seed=2**32 - 1, alpha=0)
    assert labels.shape == image.shape


def test_an_absurd_iteration_count_is_refused_not_run():
    """2**64 iterations ran "forever" (found by tests/test_contract.py)."""
    import numpy as np

    from napari_levelset import segment
    from napari_levelset.errors import InputError

    with pytest.raises(InputError, match="iterations"):
        segment(np.random.default_rng(0).random((8, 8)), iterations=2**64)
    with pytest.raises(InputError, match="finetune_iterations"):
        segment(np.random.default_rng(0).random((8, 8)), model="unet", finetune_iterations=10**6)


@pytest.mark.parametrize("name", ["lam", "lr", "alpha"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, 1e300, "0.1", None])
def test_live_settings_are_checked_when_set(name, value):
    """λ, lr and α change during a run (the widget sets them live): a bad value is refused at once,
    and the old one is kept (a NaN α used to switch the scribbles off without a word)."""
    from napari_levelset import Segmenter

    seg = Segmenter(np.random.default_rng(0).random((12, 12)).astype(np.float32), 2, device="cpu", width=4)
    before = getattr(seg, name)
    with pytest.raises(InputError, match=name):
        setattr(seg, name, value)
    assert getattr(seg, name) == before
