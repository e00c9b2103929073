"""n_classes=K gives K labels, or says why not: a class the optimisation empties is restarted once from
the pixels fitted worst, and a run that still gives fewer labels warns and records why."""

import warnings

import numpy as np
import pytest
import torch

from napari_levelset import Segmenter, segment
from napari_levelset.errors import FewerClassesWarning
from napari_levelset.evaluation.synthetic import matched_iou, phantom
from napari_levelset.method.classes import worst_fit_centre


def held(labels, n_classes):
    """How many labels hold at least 0.1 % of the pixels (fewer count as lost)."""
    return int((np.bincount(labels.ravel(), minlength=n_classes + 1)[1:] >= 0.001 * labels.size).sum())


def run_quietly(*args, **kwargs):
    """``segment(...)`` and the ``FewerClassesWarning`` messages it gave."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        labels = segment(*args, **kwargs)
    return labels, [str(w.message) for w in seen if issubclass(w.category, FewerClassesWarning)]


def test_a_class_the_optimisation_empties_comes_back():
    # at λ 0.5 the per-image CNN let the darkest of four levels shrink into the next one (label 1 empty)
    image, truth = phantom((128, 128), 4, seed=3, noise=0.08)
    labels, said = run_quietly(image, n_classes=4, lam=0.5, device="cpu")
    assert sorted(np.unique(labels).tolist()) == [1, 2, 3, 4]
    assert matched_iou(labels, truth).min() > 0.9
    assert said == []


def test_the_unet_gives_four_labels_on_four_levels_or_says_why():
    image, truth = phantom((128, 128), 4, seed=3, noise=0.08)
    direct, said = run_quietly(image, n_classes=4, model="unet", device="cpu")
    if held(direct, 4) < 4:  # the trained head learned on photographs
        assert len(said) == 1 and "trained head" in said[0] and "fine-tune" in said[0]
    tuned, said = run_quietly(image, n_classes=4, model="unet", finetune_iterations=20, device="cpu")
    assert sorted(np.unique(tuned).tolist()) == [1, 2, 3, 4] and said == []
    assert matched_iou(tuned, truth).min() > 0.9


def test_the_direct_unet_records_why_in_the_settings():
    image, _ = phantom((128, 128), 4, seed=3, noise=0.08)
    seg = Segmenter(image, 4, model="unet", device="cpu")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        last = list(seg.run(0))[-1]
    found = held(last.labels, 4)
    assert found < 4  # the shipped head leaves one of four phantom levels empty
    assert f"{found} of the 4 classes" in last.settings["classes"]


def test_fewer_levels_than_classes_warn_and_are_recorded():
    image, truth = phantom((96, 96), 2, seed=0)
    labels, said = run_quietly(image, n_classes=4, device="cpu")
    found = held(labels, 4)
    assert found < 4
    assert len(said) == 1 and f"{found} of the 4 classes" in said[0] and "fewer classes" in said[0]
    seg = Segmenter(image, 4, device="cpu")
    with pytest.warns(FewerClassesWarning):
        last = list(seg.run(100))[-1]
    assert "fewer than 4 levels" in last.settings["classes"]
    assert matched_iou(labels, truth).min() > 0.9  # what it finds is right


def test_a_run_with_every_class_says_nothing():
    image, _ = phantom((96, 96), 3, seed=1)
    seg = Segmenter(image, 3, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FewerClassesWarning)
        last = list(seg.run(60))[-1]
    assert len(np.unique(last.labels)) == 3 and "classes" not in last.settings


def test_the_command_line_prints_why(tmp_path, capsys):
    import tifffile

    from napari_levelset.cli.main import main

    image, _ = phantom((96, 96), 2, seed=0)
    src = tmp_path / "two.tif"
    tifffile.imwrite(src, (image * 1000).astype(np.uint16))
    code = main([str(a) for a in ("segment", src, "-o", tmp_path / "l.tif", "-k", 4, "--device", "cpu", "-q")])
    err = capsys.readouterr().err
    assert code == 0
    lines = [line for line in err.splitlines() if "classes asked for" in line]
    assert len(lines) == 1 and lines[0].startswith("napari-levelset: warning: ")


def test_the_restart_takes_the_level_a_class_swallowed():
    # class 0 covers a large level at 0.2 and a smaller one at 0.6; class 1 a level at 1.0
    x = torch.full((1, 1, 30, 30), 0.2)
    x[..., 20:, :] = 0.6
    x[..., :, 25:] = 1.0
    winners = torch.where(x[:, 0] > 0.8, 1, 0)
    centre, split = worst_fit_centre(x, winners, 3)
    assert split == 0
    assert float(centre[0]) == pytest.approx(0.6, abs=0.05)
