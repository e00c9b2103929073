"""The training recipe: labelled crops in every batch, the start from the shipped U-Net, what a run trains,
and labels that change what a run learns (napari_levelset.training)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_levelset.errors import InputError
from napari_levelset.nn.model_files import load_model, pretrained_path
from napari_levelset.training.data import _batch
from napari_levelset.training.start import read_init
from napari_levelset.training.train import train

TINY = dict(base=4, levels=1, embed=4, n_classes=2, progress=False, device="cpu", threads=1)


def _marked(n_images: int, labelled: set[int], size: int = 40):
    """Images whose every pixel holds the image's index, labels (all 1) for ``labelled`` only."""
    data = [np.full((1, size, size), i, np.float16) for i in range(n_images)]
    labs = [np.ones((size, size), np.int16) if i in labelled else None for i in range(n_images)]
    return data, labs


@pytest.mark.parametrize("share, batch, expected", [(0.5, 8, 4), (0.25, 8, 2), (0.01, 8, 1), (1.0, 6, 6)])
def test_a_fixed_share_of_every_batch_comes_from_the_labelled_images(share, batch, expected):
    data, labs = _marked(14, {0, 5})
    for step in range(20):
        x, y = _batch(data, labs, np.random.default_rng([0, step]), 16, batch, share)
        from_labelled = (y > 0).flatten(1).all(1)
        assert int(from_labelled.sum()) == expected
        source = x[:, 0, 0, 0].round().long()
        assert set(source[from_labelled].tolist()) <= {0, 5}
        assert not set(source[~from_labelled].tolist()) & {0, 5}  # the rest from the unlabelled images


def test_without_a_share_crops_come_from_any_image_and_all_labelled_images_fill_the_batch():
    data, labs = _marked(14, {0})
    counts = np.zeros(14, int)
    for step in range(40):
        x, y = _batch(data, labs, np.random.default_rng([0, step]), 16, 8, 0.0)
        counts += np.bincount(x[:, 0, 0, 0].round().long().numpy(), minlength=14)
    assert counts[0] < 0.2 * counts.sum() and (counts > 0).sum() >= 12
    data, labs = _marked(3, {0, 1, 2})
    x, y = _batch(data, labs, np.random.default_rng(0), 16, 8, 0.5)
    assert bool((y > 0).all())


def _three_levels(seed: int, size: int = 48):
    """Background 0.05, dim squares 0.35, bright squares 1, noise; labels: dim and bright are class 2."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size), 0.05, np.float32)
    truth = np.ones((size, size), np.uint8)
    for value in (0.35, 1.0, 0.35, 1.0):
        y, x = rng.integers(2, size - 14, 2)
        img[y : y + 12, x : x + 12] = value
        truth[y : y + 12, x : x + 12] = 2
    img += rng.normal(0, 0.02, img.shape).astype(np.float32)
    return np.clip(img, 0, 1), truth


def _dim_as_bright(path, img) -> float:
    """Share of the dim squares' pixels the model puts in the bright squares' class."""
    net, _ = load_model(path)
    with torch.no_grad():
        pred = net(torch.from_numpy(img)[None, None], 2)[0].argmax(0).numpy()
    bright_class = np.bincount(pred[img > 0.7]).argmax()
    dim = (img > 0.2) & (img < 0.6)
    return float(np.mean(pred[dim] == bright_class))


def test_labels_change_what_a_run_learns(tmp_path):
    """The level-set loss alone groups the dim squares with the background (their mean is nearer); labels
    that call them foreground, on one image of three, make the model group them with the bright ones."""
    pairs = [_three_levels(s) for s in range(3)]
    images = [p[0] for p in pairs]
    kw = dict(steps=80, crop=32, batch_size=4, lr=1e-2, init=None, **TINY)
    plain = train(images, tmp_path / "plain.pt", **kw)
    labels = [pairs[0][1], None, None]
    semi = train(images, tmp_path / "semi.pt", labels=labels, alpha=1.0, labelled_share=0.5, **kw)
    test_img, _ = _three_levels(7)
    assert _dim_as_bright(plain.path, test_img) < 0.2
    assert _dim_as_bright(semi.path, test_img) > 0.8


def test_the_default_start_is_the_shipped_unet_and_finetune_last_keeps_the_trunk(tmp_path):
    if not pretrained_path("unet").is_file():
        pytest.skip("the shipped model is not installed")
    shipped, _ = load_model(pretrained_path("unet"))
    arch = dict(base=16, levels=3, embed=32)
    auto = read_init("auto", [2], "rgb", arch)
    assert auto is not None and auto.name == "unet" and auto.net.in_channels == 3
    assert read_init("auto", [2], "lab", arch) is None  # another colour handling: random weights
    assert read_init("auto", [2], "rgb", dict(arch, base=8)) is None  # another architecture: random weights
    assert read_init("none", [2], "rgb", arch) is None
    with pytest.raises(InputError, match="takes"):
        read_init("unet", [2], "lab")
    img, truth = _three_levels(0, size=64)
    kw = dict(TINY, base=16, levels=3, embed=32)
    res = train([img], tmp_path / "m.pt", labels=[truth], steps=2, crop=32, batch_size=2, finetune="last", **kw)
    assert res.metadata["training"]["kmeans_steps"] == 0.0  # no k-means warm start from a model
    net, _ = load_model(res.path)
    assert net.in_channels == 3 and net.head_counts == [2]
    tail = {id(p) for m in net.body.tail_modules() for p in m.parameters()}
    names = dict(net.body.named_parameters())
    old = dict(shipped.body.named_parameters())
    trunk_same = [torch.equal(p, old[k]) for k, p in names.items() if id(p) not in tail]
    tail_same = [torch.equal(p, old[k]) for k, p in names.items() if id(p) in tail]
    assert all(trunk_same) and not all(tail_same)
    assert not torch.equal(net.heads["2"].weight, shipped.heads["2"].weight)


def test_a_random_start_keeps_the_kmeans_warm_start_and_bad_recipe_values_are_refused(tmp_path):
    img, _ = _three_levels(0)
    res = train([img], tmp_path / "m.pt", steps=2, crop=32, batch_size=2, **TINY)
    assert res.metadata["training"]["kmeans_steps"] == 0.3 and res.metadata["training"]["init"] is None
    with pytest.raises(InputError, match="finetune"):
        train([img], tmp_path / "m.pt", steps=2, crop=32, finetune="body", **TINY)
    with pytest.raises(InputError, match="labelled_share"):
        train([img], tmp_path / "m.pt", steps=2, crop=32, labelled_share=1.5, **TINY)


@pytest.mark.parametrize("reverse", [False, True])
def test_a_start_from_a_model_takes_the_labels_class_order(tmp_path, reverse):
    """The shipped U-Net numbers its two classes its own way; labels that call the bright squares
    class 2 (or class 1) are met by a run that starts in their order, not one that must swap them."""
    if not pretrained_path("unet").is_file():
        pytest.skip("the shipped model is not installed")
    img, _ = _three_levels(0, size=64)
    target = np.where(img > 0.7, 1, 2) if reverse else np.where(img > 0.7, 2, 1)
    kw = dict(TINY, base=16, levels=3, embed=32)
    # a learning rate too small to change anything: what the model predicts is where it started
    res = train([img], tmp_path / "m.pt", labels=[target], steps=1, crop=32, batch_size=2, lr=1e-12, **kw)
    net, _ = load_model(res.path)
    with torch.no_grad():
        pred = net(torch.from_numpy(img)[None, None].repeat(1, 3, 1, 1), 2)[0].argmax(0).numpy() + 1
    assert np.mean(pred[img > 0.7] == target[img > 0.7]) > 0.9
    assert np.mean(pred[img < 0.2] == target[img < 0.2]) > 0.9
