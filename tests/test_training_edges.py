"""Objects cut by the image's edge: a model trained with labels learns whether its labeller annotates them
(napari_levelset.training.edges) and its instances follow (napari_levelset.method.plan)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from skimage.segmentation import clear_border

from napari_levelset import segment
from napari_levelset.cli.train import main
from napari_levelset.method.plan import _drop_edge_objects
from napari_levelset.nn.model_files import pretrained_path, read_model_file
from napari_levelset.training.train import train

# the shipped U-Net, not moved (lr 1e-12): what the rule reads is then the labels, not how well a run trained
START = dict(n_classes=2, steps=1, crop=64, batch_size=2, lr=1e-12, progress=False, threads=1, resume=False)
EDGE = [(2, 40), (2, 90), (125, 30), (125, 80), (45, 2), (100, 2), (60, 125), (110, 125)]


@pytest.fixture(autouse=True)
def _shipped():
    if not pretrained_path("unet").is_file():
        pytest.skip("the shipped model is not installed")


def painted(seed, size, r, centres):
    """A grey image of bright discs of radius ``r`` at ``centres`` on a noisy field, and its instance mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    img = rng.normal(20, 3, (size, size))
    mask = np.zeros((size, size), np.uint16)
    for k, (cy, cx) in enumerate(centres, 1):
        d = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        img[d] = 200 + rng.normal(0, 5, int(d.sum()))
        mask[d] = k
    return np.clip(img, 0, 255).astype(np.uint8), mask


def discs(seed=0, size=128, r=6):
    """A grey image of bright discs, 25 inside and 8 cut by the image's edge, and its instance mask."""
    inside = [(y, x) for y in range(20, size - 19, 22) for x in range(20, size - 19, 22)]
    return painted(seed, size, r, inside + EDGE)


def big_discs(seed=0, size=256, r=16):
    """Like ``discs``, with objects about three times as large: 16 inside and 8 cut by the image's edge."""
    inside = [(y, x) for y in range(45, size - 40, 55) for x in range(45, size - 40, 55)]
    edge = [(4, 80), (4, 180), (251, 60), (251, 160), (90, 4), (200, 4), (120, 251), (220, 251)]
    return painted(seed, size, r, inside + edge)


def at_edge(labels: np.ndarray) -> int:
    """Objects of ``labels`` touching the image's edge."""
    return len(np.unique(labels[labels > 0])) - len(np.unique(clear_border(labels)[clear_border(labels) > 0]))


def test_the_phantom_has_objects_cut_by_the_edge():
    _, mask = discs()
    assert mask.max() == 33 and at_edge(mask) == 8


@pytest.mark.parametrize("kind", ["instances", "binary"])
def test_labels_that_leave_out_cut_objects_make_the_model_drop_them(tmp_path, kind):
    img, mask = discs()
    lab = clear_border(mask)  # the labeller left out the 8 cut discs
    lab = lab if kind == "instances" else np.where(lab > 0, 255, 0).astype(np.uint8)
    res = train([img, discs(1)[0]], tmp_path / "m.pt", labels=[lab, None], **START)
    meta = read_model_file(res.path)["metadata"]
    assert meta["edge_objects"] == "dropped", meta.get("edge_objects_evidence")
    assert meta["edge_objects_evidence"]["found"] >= 5 and meta["edge_objects_evidence"]["labelled"] == 0
    other = discs(2)[0]
    out = segment(other, model=str(res.path), regions="instances", threads=1)
    assert at_edge(out) == 0 and out.max() == 25  # the 25 discs inside, numbered 1..25
    assert at_edge(segment(other, model="unet", regions="instances", threads=1)) == 8  # the shipped one: all


def test_labels_that_hold_cut_objects_keep_them(tmp_path):
    img, mask = discs()
    res = train([img], tmp_path / "m.pt", labels=[mask], **START)
    assert res.metadata["edge_objects"] == "kept"
    assert res.metadata["edge_objects_evidence"]["labelled"] >= 0.75 * res.metadata["edge_objects_evidence"]["found"]
    out = segment(discs(2)[0], model=str(res.path), regions="instances", threads=1)
    assert at_edge(out) == 8


def test_partial_class_labels_say_nothing_about_cut_objects(tmp_path):
    img, mask = discs()
    strokes = np.zeros(mask.shape, np.uint8)  # 0 unlabelled: some discs and some background painted
    strokes[clear_border(mask) > 0] = 2
    strokes[10:14, 10:118] = 1
    res = train([img], tmp_path / "m.pt", labels=[strokes], label_kind="classes", **START)
    ev = res.metadata["edge_objects_evidence"]
    assert res.metadata["edge_objects"] == "kept" and ev["images"] == [] and "class labels" in ev["reason"]
    assert at_edge(segment(discs(2)[0], model=str(res.path), regions="instances", threads=1)) == 8


def test_the_command_line_says_what_the_labels_do_at_the_edge(tmp_path, capsys):
    img, mask = discs()
    (tmp_path / "im").mkdir()
    (tmp_path / "lab").mkdir()
    tifffile.imwrite(tmp_path / "im" / "t01.tif", img)
    tifffile.imwrite(tmp_path / "lab" / "man_seg01.tif", clear_border(mask))
    args = ["--classes", "2", "--steps", "1", "--crop", "64", "--batch-size", "2", "--lr", "1e-12", "--threads", "1"]
    code = main([str(tmp_path / "im"), "-o", str(tmp_path / "m.pt"), "--labels", str(tmp_path / "lab"), *args])
    err = capsys.readouterr().err
    assert code == 0
    assert "labels leave out objects cut by the image's edge (0 of 8 labelled)" in err
    assert "the model's instances drop objects touching the edge" in err


def test_objects_are_dropped_at_the_edge_of_each_item_of_a_stack():
    labels = np.zeros((2, 10, 10), np.uint32)
    labels[0, 0:3, 4:6] = 1  # at item 0's edge
    labels[0, 4:6, 4:6] = 2
    labels[1, 4:6, 4:6] = 3  # inside: the stack's first and last items are not an edge
    labels[1, 4:6, 8:10] = 4  # at item 1's edge
    out = _drop_edge_objects(labels, 2)
    assert out.dtype == labels.dtype
    assert sorted(np.unique(out).tolist()) == [0, 1, 2]
    assert out[0, 1, 4] == 0 and out[0, 4, 4] > 0 and out[1, 4, 4] > 0 and out[1, 4, 9] == 0


def test_kinds_of_image_whose_labels_differ_at_the_edge_each_keep_their_own(tmp_path):
    """Small objects labelled without the cut ones, large ones with them: each image follows the labelled
    images nearest it in object size."""
    small, small_mask = discs()
    big, big_mask = big_discs()
    assert at_edge(big_mask) == 8
    res = train([small, big], tmp_path / "m.pt", labels=[clear_border(small_mask), big_mask], **START)
    meta = read_model_file(res.path)["metadata"]
    assert meta["edge_objects"] == "by size", meta.get("edge_objects_evidence")
    kinds = {tuple(k["images"]): k["edge_objects"] for k in meta["edge_objects_evidence"]["kinds"]}
    assert sorted(kinds.values()) == ["dropped", "kept"]
    out_small = segment(discs(2)[0], model=str(res.path), regions="instances", threads=1)
    assert at_edge(out_small) == 0 and out_small.max() == 25
    out_big = segment(big_discs(3)[0], model=str(res.path), regions="instances", threads=1)
    assert at_edge(out_big) >= 6  # of the 8 cut discs


def test_an_object_the_labels_hold_just_inside_the_edge_is_not_a_cut_one():
    """The network's outline may bring a labelled object 1 px from the edge to it: it counts as found at
    the edge, and as labelled only where the labels hold it on the edge itself."""
    from napari_levelset.training.edges import _objects_at_edge

    targets = np.ones((40, 40), np.uint8)  # 1 background, 2 foreground
    targets[1:9, 10:18] = 2  # held by the labels, one pixel inside the top edge
    targets[0:8, 25:33] = 2  # held by the labels, cut by the top edge
    pred = np.zeros((40, 40), bool)
    pred[0:9, 10:18] = pred[0:8, 25:33] = True  # the network's pieces: both touch the edge
    ev = _objects_at_edge(pred, targets, "a")
    assert (ev.found, ev.labelled) == (2, 1)


def test_labels_without_objects_make_no_kind_of_their_own():
    """A negative example (labels all background) has no object size: its evidence counts in all images'
    pooled only, so it cannot split the labels into kinds; an image without objects follows the pooled."""
    from napari_levelset.training.edges import EdgeEvidence, decide_edge_objects, decide_for_diameter

    rule = decide_edge_objects([EdgeEvidence("a", 7, 5, 40.0), EdgeEvidence("empty", 8, 0, float("nan"))])
    assert rule["edge_objects"] == "kept" and rule["images"][1]["diameter"] is None
    assert decide_for_diameter(rule["images"], float("nan")) == "kept"
    assert decide_for_diameter(rule["images"], 18.0) == "kept"


def test_a_model_by_size_drops_the_cut_objects_of_the_items_nearest_the_kind_that_leaves_them_out():
    from napari_levelset.method.plan import _edge_convention

    images = [
        dict(name="small", found=7, labelled=1, diameter=12.0),  # leaves cut objects out
        dict(name="large", found=10, labelled=10, diameter=60.0),  # holds them
    ]
    meta = dict(edge_objects="by size", edge_objects_evidence=dict(images=images))
    labels = np.zeros((3, 64, 64), np.uint16)
    labels[1, 0:10, 20:30] = 1  # small objects, one cut by the edge
    labels[1, 30:40, 30:40] = 2
    labels[2, 0:60, 0:60] = 3  # one large object at the edge
    out, note = _edge_convention(labels, 2, meta)  # item 0 has no objects: nothing to decide there
    assert out[1, 5, 25] == 0 and out[1, 35, 35] > 0 and out[2, 30, 30] > 0
    assert sorted(np.unique(out).tolist()) == [0, 1, 2] and out.dtype == labels.dtype
    assert "objects of 11 px" in note or "objects of 10 px" in note
