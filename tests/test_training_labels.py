"""The label rule of training (napari_levelset.training.labels), label files matched by name, fine-tuning a
model file (the shipped one on grey images), the metadata a trained model keeps, the step callback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_levelset.cli.train import main
from napari_levelset.errors import InputError
from napari_levelset.method.plan import plan_run
from napari_levelset.nn.model_files import load_model, read_model_file
from napari_levelset.settings import Settings
from napari_levelset.training.data import load_training_images, match_label_files, read_training_set
from napari_levelset.training.labels import decide_label_kind, label_targets
from napari_levelset.training.train import train

SMALL = dict(base=4, levels=2, embed=4, n_classes=[2, 3], progress=False, device="cpu")


def nuclei(n=30, size=96, seed=0):
    """A grey fluorescence-like image with ``n`` bright discs, and its instance mask (ids 1..n)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    img = rng.normal(20, 3, (size, size))
    mask = np.zeros((size, size), np.uint16)
    for k in range(1, n + 1):
        cy, cx = rng.integers(4, size - 4, 2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= 9
        img[disc] = 200 + rng.normal(0, 5, int(disc.sum()))
        mask[disc] = k
    return np.clip(img, 0, 255).astype(np.uint8), mask


# -- the rule ---------------------------------------------------------------------------------------------
def test_instance_mask_becomes_foreground_and_background():
    img, mask = nuclei(30)
    assert len(np.unique(mask)) > 17  # more ids than any head: refused before the rule
    _, labs, _ = load_training_images([img], [mask])
    assert set(np.unique(labs[0])) == {1, 2}
    np.testing.assert_array_equal(labs[0] == 2, mask > 0)
    s = read_training_set([img], [mask])
    assert s.decisions[0].kind == "instances" and s.decisions[0].objects == len(np.unique(mask)) - 1
    assert "class 2" in str(s.decisions[0])


def test_small_instance_mask_is_not_classes():
    """An instance mask with few objects is still foreground vs background, not one class per object."""
    img, mask = nuclei(5)
    _, labs, _ = load_training_images([img], [mask])
    assert labs[0].max() == 2


@pytest.mark.parametrize("fg", [1, 255, True])
def test_binary_masks_label_their_zeros_background(fg):
    img, mask = nuclei(10)
    binary = (mask > 0).astype(bool if fg is True else np.uint8) * (1 if fg is True else fg)
    if fg is True:
        binary = binary.astype(bool)
    _, labs, _ = load_training_images([img], [binary])
    assert (labs[0][mask == 0] == 1).all()  # 0 is labelled background, not left unlabelled
    assert (labs[0][mask > 0] == 2).all()
    assert decide_label_kind(binary)[0] == "binary"


def test_class_labels_are_an_explicit_mode():
    lab = np.zeros((40, 40), np.uint8)
    lab[:5, :5] = 1
    lab[-5:, -5:] = 2
    lab[10:12, 10:12] = 3
    _, auto, _ = load_training_images([np.random.rand(40, 40)], [lab])
    _, classes, _ = load_training_images([np.random.rand(40, 40)], [lab], label_kind="classes")
    assert auto[0].max() == 2 and (auto[0] > 0).all()  # read as 3 objects
    np.testing.assert_array_equal(classes[0], lab)  # 0 unlabelled, k = class k


def test_touching_boundary_option():
    mask = np.zeros((20, 20), np.uint8)
    mask[5:15, 2:10] = 1
    mask[5:15, 10:18] = 2  # touching along column 9 | 10
    keep, _ = label_targets(mask)
    unl, _ = label_targets(mask, boundary="unlabelled")
    bg, _ = label_targets(mask, boundary="background")
    assert (keep[5:15, 9:11] == 2).all()
    assert (unl[5:15, 9:11] == 0).all() and (unl[5:15, 8] == 2).all()
    assert (bg[5:15, 9:11] == 1).all()
    assert (unl[mask == 0] == 1).all()


@pytest.mark.parametrize(
    "lab, kw, message",
    [
        (np.ones((30, 30), np.uint8), {}, "have shape"),
        (np.full((40, 40), 0.5), {}, "non-whole"),
        (np.full((40, 40), -1), {}, "negative"),
        (np.zeros((40, 40), np.uint8), {}, "all 0"),
        (np.zeros((40, 40), np.uint8), {"label_kind": "classes"}, "all 0"),
        (np.arange(1600).reshape(40, 40) % 7, {"label_kind": "classes"}, "up to class 6, more than the 3 classes"),
        (np.ones((40, 40), np.uint8), {"label_kind": "shapes"}, "label_kind must be"),
    ],
)
def test_label_refusals(tmp_path, lab, kw, message):
    with pytest.raises(InputError, match=message) as err:
        train([np.random.rand(40, 40)], tmp_path / "m.pt", labels=[lab], steps=1, crop=32, **SMALL, **kw)
    assert "\n" not in str(err.value)


def test_whole_float_labels_are_accepted():
    lab = np.zeros((40, 40))
    lab[10:20, 10:20] = 1.0
    _, labs, _ = load_training_images([np.random.rand(40, 40)], [lab])
    assert labs[0].max() == 2


# -- matching label files ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "label_name", ["t01.tif", "t01 level-set.tif", "t01_masks.tif", "t01_Labels.tif", "man_seg01.tif"]
)
def test_label_files_matched_by_rule(tmp_path, label_name):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "labs").mkdir()
    img, mask = nuclei(6, 48)
    tifffile.imwrite(tmp_path / "imgs" / "t01.tif", img)
    tifffile.imwrite(tmp_path / "imgs" / "t02.tif", img)
    tifffile.imwrite(tmp_path / "labs" / label_name, mask)
    tifffile.imwrite(tmp_path / "labs" / "notes_masks.tif", mask)
    s = read_training_set(tmp_path / "imgs", tmp_path / "labs")
    assert s.labels[0] is not None and s.labels[1] is None
    assert s.unmatched == ["notes_masks.tif"]
    assert any("notes_masks.tif matches no image" in line for line in s.report())


def test_two_label_files_for_one_image_are_refused():
    with pytest.raises(InputError, match=r"two label files match image t01: t01 level-set\.tif and t01_masks\.tif"):
        match_label_files(["t01"], [Path("t01_masks.tif"), Path("t01 level-set.tif")])


# -- fine-tuning, metadata, callback, crops ---------------------------------------------------------------------
def test_finetune_shipped_model_on_grey_images_with_cli(tmp_path, capsys):
    img, mask = nuclei(12, 64)
    (tmp_path / "imgs").mkdir()
    (tmp_path / "labs").mkdir()
    tifffile.imwrite(tmp_path / "imgs" / "t01.tif", img)
    tifffile.imwrite(tmp_path / "labs" / "t01 level-set.tif", mask)
    out = tmp_path / "nuclei.pt"
    argv = [str(tmp_path / "imgs"), "-o", str(out), "--labels", str(tmp_path / "labs"), "--init", "unet"]
    code = main(argv + ["--classes", "2", "--steps", "1", "--crop", "32", "--batch-size", "1", "-q", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    net, meta = load_model(out)
    assert net.in_channels == 3 and net.head_counts == [2]
    assert meta["preparation"]["contrast"] == "linear" and "repeated" in meta["preparation"]["grey"]
    assert meta["training"]["init"] == "unet" and "instance mask" in meta["labels"][0]
    text = json.dumps(read_model_file(out)["metadata"])
    assert str(tmp_path) not in text and "/work/" not in text and "/tmp/" not in text


def test_a_model_saved_after_a_finetune_of_the_shipped_one_names_no_folders(tmp_path):
    """The shipped model's metadata names the folders it was trained in; a file saved from it does not."""
    from napari_levelset.nn.model_files import save_model
    from napari_levelset.nn.pretrained import build_network

    net = build_network("unet", in_channels=3, n_classes=4)
    save_model(tmp_path / "tuned.pt", net, {"note": f"made in {tmp_path}/work"})
    text = json.dumps(read_model_file(tmp_path / "tuned.pt")["metadata"])
    assert "unet_stage1.pt" in text and "/work/" not in text and "/tmp/" not in text and str(tmp_path) not in text


def test_init_refusal_says_what_the_model_takes(tmp_path, capsys):
    img, _ = nuclei(3, 48)
    tifffile.imwrite(tmp_path / "a.tif", img)
    code = main([str(tmp_path / "a.tif"), "-o", str(tmp_path / "m.pt"), "--init", "unet", "--classes", "20", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "3-channel images" in err and "2..16" in err


def test_trained_model_gives_instances_its_own_preparation(tmp_path):
    img, mask = nuclei(12, 64)
    res = train([img], tmp_path / "m.pt", labels=[mask], steps=1, crop=32, batch_size=1, **SMALL)
    plan = plan_run(img, Settings(model=str(res.path), regions="instances", n_classes=2), prepare=False)
    assert plan.settings.contrast == "linear" and "model" in plan.contrast_reason
    shipped = plan_run(img, Settings(model="unet", regions="instances", n_classes=2), prepare=False)
    assert shipped.settings.contrast == "fluorescence"  # a model that records nothing: measured as before


def test_a_model_trained_on_the_fluorescence_contrast_is_given_it(tmp_path):
    img, mask = nuclei(12, 64)
    res = train(
        [img], tmp_path / "m.pt", labels=[mask], steps=1, crop=32, batch_size=1, contrast="fluorescence", **SMALL
    )
    assert res.metadata["preparation"]["contrast"] == "fluorescence"
    plan = plan_run(img, Settings(model=str(res.path), regions="instances", n_classes=2), prepare=False)
    assert plan.settings.contrast == "fluorescence" and "model" in plan.contrast_reason
    linear = read_training_set([img]).data[0]
    fluo = read_training_set([img], contrast="fluorescence").data[0]
    assert linear.shape == fluo.shape and not np.allclose(linear, fluo)
    with pytest.raises(InputError, match="contrast must be one of linear, fluorescence"):
        train([img], tmp_path / "m.pt", steps=1, crop=32, contrast="transmitted", **SMALL)


def test_callback_sees_every_step_and_stops_with_a_checkpoint(tmp_path):
    seen = []

    def callback(step, steps, loss):
        seen.append((step, steps, loss))
        return step < 3

    img, _ = nuclei(8, 48)
    res = train([img], tmp_path / "m.pt", steps=10, crop=32, batch_size=1, callback=callback, **SMALL)
    assert [s for s, _, _ in seen] == [1, 2, 3] and all(n == 10 for _, n, _ in seen)
    assert res.steps == 3 and res.path.name.endswith(".ckpt") and res.path.is_file()
    assert [x for _, _, x in seen] == res.losses
    again = train([img], tmp_path / "m.pt", steps=10, crop=32, batch_size=1, **SMALL)
    assert again.steps == 10 and again.path == tmp_path / "m.pt"  # resumed from the checkpoint


def test_one_small_image_does_not_shrink_the_crops(tmp_path):
    big, _ = nuclei(8, 96)
    small = np.random.rand(20, 24)
    res = train([big, small], tmp_path / "m.pt", steps=1, crop=64, batch_size=2, **SMALL)
    assert res.metadata["training"]["crop"] == 64
