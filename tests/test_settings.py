"""The settings object: checks, JSON round trip, live and restarting fields, and the per-model rules."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_levelset.errors import InputError
from napari_levelset.method.restore import restore_segmenter
from napari_levelset.settings import (
    LIVE,
    RESTART,
    Settings,
    default_position,
    model_kind,
    region_defaults,
)


def test_every_value_is_checked_when_made():
    with pytest.raises(InputError, match="lam"):
        Settings(lam=-1)
    with pytest.raises(InputError, match="n_classes"):
        Settings(n_classes=1)
    with pytest.raises(InputError, match="finetune"):
        Settings(finetune="some")
    with pytest.raises(InputError, match="regions"):
        Settings(regions="superpixels")
    with pytest.raises(InputError, match="unknown setting lamda"):
        Settings().replace(lamda=0.1)
    assert Settings(width=np.int64(8), lr=np.float32(0.5)).width == 8
    assert isinstance(Settings(width=np.int64(8)).width, int)


def test_json_round_trip_and_records_of_older_runs():
    s = Settings(
        n_classes=5,
        lam=0.2,
        model="unet",
        finetune="all",
        max_pixels=4096,
        foreground=[2, 3],
        regions="merged",
        merge=0.7,
    )
    text = json.dumps(s.to_json())
    assert Settings.from_json(text) == s
    # a run's record carries more keys, and a per-image CNN's used to store finetune=None
    old = dict(s.to_json(), iteration=40, order=[1, 0], crop=None, finetune=None)
    assert Settings.from_json(old).finetune == "head"
    with pytest.raises(InputError, match="JSON"):
        Settings.from_json("{not json")


def test_live_fields_never_restart_and_the_restart_key_follows_the_rest():
    assert set(LIVE) == {"lam", "lr", "alpha"}
    assert not set(LIVE) & set(RESTART)
    s = Settings()
    assert s.replace(lam=1.0, lr=0.1, alpha=5.0, iterations=7, merge=3.0).restart_key() == s.restart_key()
    for name, value in dict(n_classes=3, width=8, model="unet", seed=2, position=1.0, contrast="linear").items():
        assert s.replace(**{name: value}).restart_key() != s.restart_key(), name


def test_one_rule_per_model_for_iterations_start_and_merging():
    torch = pytest.importorskip("torch")

    class Tiny(torch.nn.Module):  # a network of the user's own, optimised on the image like the built-in CNN
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, x):
            return self.conv(x)

    assert model_kind("cnn") == model_kind(Tiny()) == "cnn"
    assert model_kind("unet") == model_kind("my_model.pt") == "unet"
    cnn, custom, unet = (Settings(model=m).resolved() for m in ("cnn", Tiny(), "unet"))
    assert cnn.iterations == custom.iterations == 100 and unet.iterations == 0
    assert cnn.init == custom.init == "kmeans" and unet.init == "network"
    assert Settings(model="unet", iterations=20).resolved().init == "auto"
    assert cnn.merge == custom.merge < unet.merge
    assert region_defaults("unet", "merged")[1] < region_defaults("unet", "connected")[1]
    assert Settings(regions="instances").resolved().n_classes == 2


def test_a_network_of_ones_own_is_optimised_for_the_per_image_default():
    """``segment`` used to treat any module as a pretrained U-Net and run it for 0 iterations."""
    torch = pytest.importorskip("torch")
    from napari_levelset import segment

    class Counting(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)
            self.steps = 0

        def forward(self, x):
            self.steps += self.training and torch.is_grad_enabled()
            return self.conv(x)

    img = np.zeros((24, 24), np.float32)
    img[6:18, 6:18] = 1
    net = Counting()
    segment(img, 2, model=net, device="cpu")
    assert net.steps == Settings(model=net).resolved().iterations == 100


def test_position_fits_the_output_asked_for():
    # a few classes of a photograph are colour phases; many classes are compact pieces
    assert default_position("cnn", "lab", 4) == default_position("cnn", "lab", 7) == 0.0
    assert default_position("cnn", "lab", 8) == default_position("cnn", "lab", 16) == 0.5
    # a stroke says where a class is: with strokes a photograph keeps its coordinates at any N
    assert default_position("cnn", "lab", 3, strokes=True) == 0.5
    assert default_position("cnn", "rgb", 16) == 0.0
    assert default_position("unet", "lab", 16) == 0.0


def test_restored_segmenter_keeps_every_setting():
    """Restoring used to turn init='network' into 'kmeans', drop finetune and max_pixels, and take width 32
    where a record had none."""
    pytest.importorskip("torch")
    from napari_levelset.method.segmenter import Segmenter

    rng = np.random.default_rng(0)
    img = rng.random((40, 48)).astype(np.float32)
    seg = Segmenter(img, 3, device="cpu", width=8, max_pixels=20 * 24, seed=4)
    again = restore_segmenter(img, seg.settings)
    assert again.run_settings == seg.run_settings
    assert again.settings["crop"] == seg.settings["crop"] is not None
    unet = Segmenter(img, 4, model="unet", device="cpu", finetune="all")
    restored = restore_segmenter(img, unet.settings)
    assert restored.run_settings.init == "network" and restored.run_settings.finetune == "all"
    np.testing.assert_array_equal(restored.labels(), unet.labels())
    with pytest.raises(InputError, match="unknown setting"):
        restore_segmenter(img, seg.settings, widht=4)


def test_strokes_on_a_photograph_keep_the_position_channels_while_a_class_is_unstroked():
    """With strokes in every class a colour photograph takes the strokes' evidence map instead of its pixels'
    places; with a class left unstroked it keeps the position channels (the strokes benchmark on BSDS500 val
    fell from 0.770 to 0.613 without them), so the unstroked class can still win pixels."""
    pytest.importorskip("torch")
    from skimage import data

    from napari_levelset.method.segmenter import Segmenter

    photo = data.coffee()[::4, ::4]
    strokes = np.zeros(photo.shape[:2], np.uint8)
    strokes[10, 10:60], strokes[60, 40:90], strokes[90, 10:60] = 1, 2, 3
    every = Segmenter(photo, 3, device="cpu", scribbles=strokes).settings
    assert every["position"] == 0.0 and every["prior"] > 0
    strokes[strokes == 3] = 0
    some = Segmenter(photo, 3, device="cpu", scribbles=strokes).settings
    assert some["position"] == 0.5 and some["prior"] == 0
    assert Segmenter(photo, 3, device="cpu").settings["position"] == 0.0


def test_the_writers_json_and_a_dict_are_read_and_nonsense_is_refused(tmp_path):
    from napari_levelset.napari._writer import write_labels_layer

    s = Settings(n_classes=4, lam=0.2)
    files = write_labels_layer(
        str(tmp_path / "out.tif"),
        np.ones((8, 8), np.uint8),
        {"name": "out", "metadata": {"napari_levelset": s.to_json()}},
    )
    text = (tmp_path / "out.json").read_text()
    assert str(tmp_path / "out.json") in files
    assert Settings.from_json(text) == s  # used to come back as all defaults, without a word
    with pytest.raises(InputError, match="no settings here"):
        Settings.from_json({"lamda": 3})
    with pytest.raises(InputError, match="device"):
        Settings(device="tpu")
    assert Settings(device="cuda:1").device == "cuda:1"
    assert Settings.given({"lam": 0.3}).lam == 0.3
    with pytest.raises(InputError, match="settings must be"):
        Settings.given(0.3)


def test_the_spec_lists_every_field_in_order_with_its_default_range_and_kind():
    from napari_levelset import validate
    from napari_levelset.settings import DEVICES, SPEC, SettingSpec

    assert tuple(SPEC) == Settings.names()
    defaults = Settings()
    for name, spec in SPEC.items():
        assert isinstance(spec, SettingSpec) and spec.name == name
        assert getattr(defaults, name) == spec.default
        assert spec.kind in ("live", "network", "run", "output") and spec.kind == Settings.kind(name)
        assert spec.flag.startswith("--") and spec.help == Settings.doc(name)
        if spec.type in (int, float) and spec.lo is not None:
            assert validate.LIMITS[name] == (spec.lo, spec.hi)  # each range written once, in SPEC
            with pytest.raises(InputError, match=name if name != "n_classes" else "classes"):
                Settings(**{name: spec.lo if spec.lo_open else spec.lo - 1})
            if spec.hi is not None:
                with pytest.raises(InputError, match=name if name != "n_classes" else "classes"):
                    Settings(**{name: spec.hi * 2})
        if spec.choices is not None and name != "device":
            for value in spec.choices:
                assert getattr(Settings(**{name: value}), name) == value
    assert SPEC["device"].choices == DEVICES and SPEC["lr"].lo_open and not SPEC["lam"].lo_open
    assert Settings(device="cuda:0").device == "cuda:0"
