"""Tests for napari_levelset.evaluation: the BSDS500 region benchmark and instance matching.

The reference test reproduces the original MATLAB benchmark's outputs for its
own example (``bench-check/`` in the BSDS500 data folder); it is skipped when
the data is not available.  The data folder is ``../shared/data/bsds500``
relative to the repository root, or ``$BSDS500_DIR``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from napari_levelset.evaluation import bsds, matching
from napari_levelset.evaluation.contingency import contingency


def _bsds_dir() -> Path:
    env = os.environ.get("BSDS500_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bsds500"


BENCH = _bsds_dir() / "bench-check"


# ----------------------------------------------------------- reference values
@pytest.fixture(scope="module")
def bench_results():
    if not (BENCH / "expected").is_dir():
        pytest.skip(f"BSDS500 bench-check data not found under {BENCH}")
    results = []
    for seg_file in sorted((BENCH / "segs").glob("*.mat")):
        gts = bsds.load_ground_truth(BENCH / "groundTruth" / seg_file.name)
        segs = bsds.load_segmentations(seg_file)
        assert len(segs) == 5
        results.append(bsds.evaluate_segmentations(segs, gts))
    assert len(results) == 5
    return results


def _expected(name: str) -> np.ndarray:
    return np.atleast_2d(np.loadtxt(BENCH / "expected" / name))


TOL = 1e-5  # "to 5 decimals": the reference files carry 6 significant digits


def test_reference_per_scale(bench_results):
    s = bsds.summarize(bench_results)
    ri_voi = _expected("eval_RI_VOI_thr.txt")
    cover = _expected("eval_cover_th.txt")
    assert s["scales"] == [1, 2, 3, 4, 5]
    np.testing.assert_array_equal(ri_voi[:, 0], s["scales"])
    np.testing.assert_allclose(s["pri_per_scale"], ri_voi[:, 1], rtol=0, atol=TOL)
    np.testing.assert_allclose(s["vi_per_scale"], ri_voi[:, 2], rtol=0, atol=TOL)
    np.testing.assert_array_equal(cover[:, 0], s["scales"])
    np.testing.assert_allclose(s["sc_per_scale"], cover[:, 1], rtol=0, atol=TOL)


def test_reference_ods_ois(bench_results):
    s = bsds.summarize(bench_results)
    scale, sc_ods, sc_ois, best = _expected("eval_cover.txt")[0]
    assert s["sc_ods_scale"] == scale
    assert s["sc_ods"] == pytest.approx(sc_ods, abs=TOL)
    assert s["sc_ois"] == pytest.approx(sc_ois, abs=TOL)
    assert s["best_covering"] == pytest.approx(best, abs=TOL)

    pri_scale, pri_ods, pri_ois, vi_scale, vi_ods, vi_ois = _expected("eval_RI_VOI.txt")[0]
    assert s["pri_ods_scale"] == pri_scale
    assert s["pri_ods"] == pytest.approx(pri_ods, abs=TOL)
    assert s["pri_ois"] == pytest.approx(pri_ois, abs=TOL)
    assert s["vi_ods_scale"] == vi_scale
    assert s["vi_ods"] == pytest.approx(vi_ods, abs=TOL)
    assert s["vi_ois"] == pytest.approx(vi_ois, abs=TOL)


def _g(x: float) -> float:
    """Round like MATLAB's fprintf('%10g') followed by dlmread."""
    return float(f"{x:10g}")


def test_reference_text_identical(bench_results):
    """Emulating the benchmark's per-image text files ('%10g' round trip)
    gives the reference files character for character."""
    rounded, best_cnt = [], 0.0
    for img in bench_results:
        rounded.append([{**r, **{k: _g(r[k]) for k in ("cntR", "sumR", "pri", "vi")}} for r in img])
        best = np.max([r["gt_matches"] for r in img], axis=0)
        best_cnt += _g(float(np.sum(best * img[0]["gt_areas"])))  # <id>_ev3.txt
    s = bsds.summarize(rounded)
    sum_r = sum(img[0]["sumR"] for img in rounded)

    def fmt(*vals):
        return " ".join(f"{v:10g}" for v in vals)

    def read(name):
        return (BENCH / "expected" / name).read_text().rstrip("\n").split("\n")

    assert read("eval_cover.txt") == [fmt(s["sc_ods_scale"], s["sc_ods"], s["sc_ois"], best_cnt / sum_r)]
    assert read("eval_RI_VOI.txt") == [
        fmt(s["pri_ods_scale"], s["pri_ods"], s["pri_ois"], s["vi_ods_scale"], s["vi_ods"], s["vi_ois"])
    ]
    assert read("eval_cover_th.txt") == [fmt(t, v) for t, v in zip(s["scales"], s["sc_per_scale"])]
    assert read("eval_RI_VOI_thr.txt") == [
        fmt(t, p, v) for t, p, v in zip(s["scales"], s["pri_per_scale"], s["vi_per_scale"])
    ]


def test_reference_gt_against_itself(bench_results):
    """A human map scored against all maps of its image beats a trivial segmentation."""
    gts = bsds.load_ground_truth(BENCH / "groundTruth" / "2018.mat")
    own = bsds.evaluate_image(gts[1], gts)
    one = bsds.evaluate_image(np.ones_like(gts[1]), gts)
    assert own["sc"] > one["sc"]
    assert own["pri"] > one["pri"]
    assert own["vi"] < one["vi"]


# --------------------------------------------------------------- behaviour
def _blocks(shape=(40, 60), seed=0, n=6):
    """A piecewise-constant label map with ``n`` irregular regions."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    centres = rng.uniform([0, 0], shape, size=(n, 2))
    d = (yy[..., None] - centres[:, 0]) ** 2 + (xx[..., None] - centres[:, 1]) ** 2
    return d.argmin(-1).astype(np.int32) + 1


def test_identical_segmentation_is_perfect():
    gt = _blocks()
    r = bsds.evaluate_image(gt.copy(), [gt])
    assert r["sc"] == pytest.approx(1.0, abs=1e-12)
    assert r["pri"] == pytest.approx(1.0, abs=1e-12)
    assert r["vi"] == pytest.approx(0.0, abs=1e-12)
    assert r["cntP"] == pytest.approx(r["sumP"])
    assert r["n_regions"] == len(np.unique(gt))


def test_hand_computed_values():
    seg = np.array([[1, 1], [2, 2]])
    gt = np.array([[1, 2], [1, 2]])
    r = bsds.evaluate_image(seg, [gt])
    # every pair of pixels: 6 pairs, 2 agree (the two "different in both" pairs)
    assert r["pri"] == pytest.approx(1 / 3)
    assert r["vi"] == pytest.approx(2.0)  # H1 = H2 = 1 bit, MI = 0
    assert r["sc"] == pytest.approx(1 / 3)  # each region overlaps 1 of 3 in its union
    assert bsds.rand_index(contingency(seg, gt)) == pytest.approx(1 / 3)


def test_relabelling_invariance():
    gts = [_blocks(seed=1), _blocks(seed=2, n=4)]
    seg = _blocks(seed=3, n=8)
    ref = bsds.evaluate_image(seg, gts)
    perm = np.random.default_rng(0).permutation(100)
    variants = [
        perm[seg],  # permuted values
        seg * 1000 - 7,  # sparse, negative values
        (seg - 1).astype(np.uint8),  # label 0 is a region like any other
        seg.astype(np.float64) + 0.0,  # integral floats
        seg.astype(np.uint64) + np.uint64(2**63),  # beyond int64
    ]
    for v in variants:
        r = bsds.evaluate_image(v, gts)
        for key in ("sc", "pri", "vi", "cntR", "sumR", "cntP", "sumP", "n_regions"):
            assert r[key] == pytest.approx(ref[key], abs=1e-12), key
    # relabelling the ground truth does not matter either
    r = bsds.evaluate_image(seg, [perm[gts[0]], gts[1] + 50])
    for key in ("sc", "pri", "vi"):
        assert r[key] == pytest.approx(ref[key], abs=1e-12)


def test_every_label_value_is_one_region():
    gt = np.array([[1, 1, 2, 2]])
    # two disconnected pieces with the same label form one region
    seg = np.array([[5, 7, 7, 5]])
    r = bsds.evaluate_image(seg, [gt])
    assert r["n_regions"] == 2
    assert r["sc"] == pytest.approx(1 / 3)


def test_single_region_scores_lower_than_gt():
    gts = [_blocks(seed=4), _blocks(seed=4, n=5)]
    one = bsds.evaluate_image(np.zeros_like(gts[0]), gts)
    own = bsds.evaluate_image(gts[0], gts)
    assert one["sc"] < own["sc"]
    assert one["pri"] < own["pri"]
    assert one["vi"] > own["vi"]
    assert one["n_regions"] == 1


def test_non_integer_labels_rejected():
    with pytest.raises(ValueError):
        bsds.evaluate_image(np.array([[0.5, 1.0]]), [np.array([[1, 2]])])


def test_shape_mismatch_rejected():
    with pytest.raises(ValueError):
        bsds.evaluate_image(np.ones((3, 4), int), [np.ones((4, 3), int)])


def test_summarize_ods_ois_best():
    gt = _blocks(seed=5)
    fine = _blocks(seed=6, n=20)
    coarse = np.ones_like(gt)
    # image A is best at scale "fine", image B at scale "gt" (perfect)
    img_a = bsds.evaluate_segmentations([coarse, fine, fine], [gt])
    img_b = bsds.evaluate_segmentations([coarse, fine, gt], [gt])
    s = bsds.summarize({"a": img_a, "b": img_b}, scales=[1, 10, 100])
    assert s["n_images"] == 2
    assert s["sc_ods_scale"] == 100 and s["pri_ods_scale"] == 100 and s["vi_ods_scale"] == 100
    # per image optimum on ties is the last scale (MATLAB ff(end))
    assert s["sc_ois_scales"] == [100, 100]
    assert s["vi_ois_scales"][1] == 100
    assert s["sc_ois"] >= s["sc_ods"] - 1e-12
    assert s["pri_ois"] >= s["pri_ods"] - 1e-12
    assert s["vi_ois"] <= s["vi_ods"] + 1e-12
    assert s["best_covering"] >= s["sc_ois"] - 1e-12
    # dataset covering is pixel-weighted: sum(cnt) / sum(total)
    cnt = img_a[0]["cntR"] + img_b[0]["cntR"]
    tot = img_a[0]["sumR"] + img_b[0]["sumR"]
    assert s["sc_per_scale"][0] == pytest.approx(cnt / tot)
    assert s["pri_per_scale"][2] == pytest.approx((img_a[2]["pri"] + 1.0) / 2)


def test_summarize_from_json_like_results():
    """Results round-tripped through JSON (lists instead of arrays) still work."""
    import json

    gt = _blocks(seed=7)
    res = bsds.evaluate_segmentations([np.ones_like(gt), gt], [gt])
    plain = [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in r.items()} for r in res]
    back = json.loads(json.dumps(plain))
    s1 = bsds.summarize([res])
    s2 = bsds.summarize([back])
    assert s1["best_covering"] == pytest.approx(s2["best_covering"]) == pytest.approx(1.0)
    assert s1["sc_ods"] == s2["sc_ods"]


def test_summarize_rejects_ragged():
    gt = _blocks(seed=8)
    r = bsds.evaluate_image(gt, [gt])
    with pytest.raises(ValueError):
        bsds.summarize([[r, r], [r]])


# ------------------------------------------------------------ instance metrics
def _squares(shape=(40, 60), boxes=((2, 2, 10), (2, 20, 10), (20, 5, 12)), ids=None):
    """A label map with square objects ``(row, col, side)``, ids 1.. (or ``ids``)."""
    lab = np.zeros(shape, np.int32)
    for k, (r, c, s) in enumerate(boxes):
        lab[r : r + s, c : c + s] = k + 1 if ids is None else ids[k]
    return lab


def _brute_force_tp(pred, truth, threshold):
    """Matches counted from every pair's IoU (objects compared as boolean masks)."""
    tp = 0
    for p in np.unique(pred[pred != 0]):
        for t in np.unique(truth[truth != 0]):
            a, b = pred == p, truth == t
            if np.count_nonzero(a & b) / np.count_nonzero(a | b) > threshold:
                tp += 1
    return tp


def _random_disks(seed, shape=(64, 80), n=12):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    lab = np.zeros(shape, np.int32)
    for k in range(n):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        rad = rng.uniform(3, 9)
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 < rad**2] = k + 1
    return lab


def test_instances_perfect_match():
    truth = _squares()
    s = matching.instance_scores(truth.copy(), truth)
    for key in ("f1", "precision", "recall", "ap", "dice", "mean_matched_iou"):
        assert s[key] == 1.0, key
    assert (s["tp"], s["fp"], s["fn"]) == (3, 0, 0)
    m = matching.match_instances(truth, truth)
    np.testing.assert_array_equal(m["pred_ids"], [1, 2, 3])
    np.testing.assert_array_equal(m["true_ids"], [1, 2, 3])


def test_instances_object_split_in_halves():
    truth = _squares()
    pred = truth.copy()
    pred[20:32, 11:17] = 9  # object 3 (cols 5..16) split into two halves of 72 px: IoU exactly 0.5 each
    s = matching.instance_scores(pred, truth)
    # neither half exceeds IoU 0.5: TP 2, FP 2 (the halves), FN 1 (object 3)
    assert (s["tp"], s["fp"], s["fn"]) == (2, 2, 1)
    assert s["f1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))  # 4/7
    assert s["precision"] == pytest.approx(2 / 4)
    assert s["recall"] == pytest.approx(2 / 3)
    assert s["ap"] == pytest.approx(2 / 5)  # TP / (TP + FP + FN) at every threshold
    assert s["dice"] == 1.0  # the foreground is unchanged


def test_instances_unequal_split_average_precision():
    truth = _squares()
    pred = truth.copy()
    pred[20:32, 14:17] = 9  # object 3 keeps 3/4 of its pixels: IoU 0.75 exactly
    s = matching.instance_scores(pred, truth)
    assert s["f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 0))
    # thresholds 0.5..0.70: 3 / (3 + 1 + 0); 0.75..0.95 (IoU must exceed t): 2 / (2 + 2 + 1)
    np.testing.assert_allclose(s["ap_per_threshold"], [0.75] * 5 + [0.4] * 5)
    assert s["ap"] == pytest.approx(0.575)
    assert matching.match_instances(pred, truth, threshold=0.7)["tp"] == 3
    assert matching.match_instances(pred, truth, threshold=0.75)["tp"] == 2


@pytest.mark.parametrize("shift, iou", [(2, 8 / 12), (4, 6 / 14)])
def test_instances_shifted_objects(shift, iou):
    boxes = ((2, 2, 10), (2, 20, 10), (20, 30, 10))
    truth = _squares(boxes=boxes)
    pred = _squares(boxes=[(r, c + shift, s) for r, c, s in boxes])
    m = matching.match_instances(pred, truth)
    s = matching.instance_scores(pred, truth)
    assert s["dice"] == pytest.approx(2 * (10 - shift) / 20)
    if iou > 0.5:
        assert m["tp"] == 3 and s["f1"] == 1.0
        np.testing.assert_allclose(m["iou"], iou)
        # matched at 0.5, 0.55, 0.6, 0.65 of the ten thresholds
        assert s["ap"] == pytest.approx(0.4)
    else:
        assert m["tp"] == 0 and s["f1"] == 0.0 and s["ap"] == 0.0
        assert (s["fp"], s["fn"]) == (3, 3)
        assert matching.match_instances(pred, truth, threshold=0.4)["tp"] == 3


def test_instances_empty_prediction():
    truth = _squares()
    s = matching.instance_scores(np.zeros_like(truth), truth)
    for key in ("f1", "precision", "recall", "ap", "dice"):
        assert s[key] == 0.0, key
    assert (s["tp"], s["fp"], s["fn"], s["n_pred"], s["n_true"]) == (0, 0, 3, 0, 3)
    # extra objects where there are none
    s = matching.instance_scores(truth, np.zeros_like(truth))
    assert s["f1"] == 0.0 and s["fp"] == 3
    # nothing to find and nothing found is perfect
    none = matching.instance_scores(np.zeros_like(truth), np.zeros_like(truth))
    assert none["f1"] == none["ap"] == none["dice"] == 1.0


def test_instances_ids_need_not_be_consecutive():
    truth = _squares()
    pred = truth.copy()
    pred[20:32, 14:17] = 4
    ref = matching.instance_scores(pred, truth)
    ids = np.array([0, 7, 1000, 65535, 3])
    variants = [
        (ids[pred], truth),
        (pred, _squares(ids=(40000, 5, 17))),
        (pred.astype(np.uint64) * np.uint64(2**40), truth.astype(np.uint16)),
        (pred.astype(np.float32), -truth),  # integral floats, negative ids
    ]
    for p, t in variants:
        s = matching.instance_scores(p, t)
        for key in ("f1", "ap", "dice", "tp", "fp", "fn", "mean_matched_iou"):
            assert s[key] == pytest.approx(ref[key]), key
    m = matching.match_instances(ids[pred], _squares(ids=(40000, 5, 17)))
    np.testing.assert_array_equal(m["pred_ids"], [7, 1000, 65535])  # the label values, not indices
    np.testing.assert_array_equal(m["true_ids"], [40000, 5, 17])


def test_instances_disconnected_id_is_one_object():
    truth = np.array([[1, 1, 0, 2, 2]])
    pred = np.array([[5, 5, 0, 5, 5]])  # one object covering both: IoU 0.5 with each
    s = matching.instance_scores(pred, truth)
    assert (s["tp"], s["fp"], s["fn"]) == (0, 1, 2)


def test_instances_agree_with_brute_force():
    for seed in range(4):
        truth = _random_disks(seed)
        pred = np.roll(_random_disks(seed), (1, 2), axis=(0, 1))
        pred[_random_disks(seed + 10) > 0] = 50  # one large extra object over some of them
        s = matching.instance_scores(pred, truth)
        for t, ap_t in zip(s["thresholds"], s["ap_per_threshold"]):
            tp = _brute_force_tp(pred, truth, t)
            n_pred, n_true = len(np.unique(pred)) - 1, len(np.unique(truth)) - 1
            assert matching.match_instances(pred, truth, t)["tp"] == tp
            assert ap_t == pytest.approx(tp / (n_pred + n_true - tp))
        inter = np.count_nonzero((pred > 0) & (truth > 0))
        assert s["dice"] == pytest.approx(2 * inter / (np.count_nonzero(pred) + np.count_nonzero(truth)))


def test_instances_below_half_match_one_to_one():
    truth = np.zeros((10, 20), int)
    truth[:, :12] = 1
    pred = truth.copy()
    pred[:, 6:12] = 2  # two halves, IoU 0.5 each with object 1
    m = matching.match_instances(pred, truth, threshold=0.3)
    assert (m["tp"], m["fp"], m["fn"]) == (1, 1, 0)
    # the assignment keeps the largest total IoU: truth 1 -> the larger piece
    pred[:, 4:12] = 2  # pieces of 4/12 and 8/12
    m = matching.match_instances(pred, truth, threshold=0.3)
    np.testing.assert_array_equal(m["pred_ids"], [2])
    np.testing.assert_allclose(m["iou"], [8 / 12])


def test_foreground_dice_of_a_mask():
    truth = np.zeros((10, 10), np.uint8)
    truth[:, :5] = 255  # a 0 / 255 mask
    pred = np.zeros((10, 10), np.int32)
    pred[:, 2:5] = 3
    pred[:, 5:7] = 4
    assert matching.foreground_dice(pred, truth) == pytest.approx(2 * 30 / (50 + 50))
    assert matching.instance_scores(pred, truth)["dice"] == pytest.approx(matching.foreground_dice(pred, truth))


def test_instance_input_errors():
    with pytest.raises(ValueError):
        matching.instance_scores(np.ones((3, 4), int), np.ones((4, 3), int))
    with pytest.raises(ValueError):
        matching.match_instances(np.ones((3, 3), int), np.ones((3, 3), int), threshold=1.0)
    with pytest.raises(ValueError):
        matching.instance_scores(np.array([[0.5, 1.0]]), np.array([[0, 1]]))


def test_instance_scores_fast_on_large_images():
    import time

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[-20:21, -20:21]
    disk = yy**2 + xx**2 < 20**2
    truth = np.zeros((1024 + 40, 1024 + 40), np.uint16)
    for k, (cy, cx) in enumerate(rng.integers(0, 1024, size=(300, 2))):
        truth[cy : cy + 41, cx : cx + 41][disk] = k + 1
    truth = truth[20:-20, 20:-20]
    pred = np.roll(truth, 3, axis=1)
    t0 = time.perf_counter()
    s = matching.instance_scores(pred, truth)
    assert time.perf_counter() - t0 < 1.0
    assert s["n_true"] == len(np.unique(truth)) - 1 > 150
    assert s["f1"] > 0.9


# ------------------------------------------------- the nuclei benchmark script
def _load_nuclei_benchmark(monkeypatch):
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "nuclei.py"
    monkeypatch.syspath_prepend(str(path.parent))  # as when run as a script: its folder's modules import
    spec = importlib.util.spec_from_file_location("nuclei_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_nuclei_benchmark_on_a_tiny_dataset(tmp_path, monkeypatch, capsys):
    """The script reads both layouts, scores the baselines, reports a failing method and goes on."""
    import json

    import tifffile
    from PIL import Image

    import napari_levelset

    bench = _load_nuclei_benchmark(monkeypatch)
    truth = _squares(shape=(64, 80), boxes=((5, 5, 14), (30, 40, 16), (8, 50, 12)))
    image = (33000 + 2000 * (truth > 0) + np.random.default_rng(0).integers(0, 200, truth.shape)).astype(np.uint16)
    for folder, name in (("N2DL-HeLa", "t07"), ("N2DL-HeLa", "t12")):
        (tmp_path / folder / "img").mkdir(parents=True, exist_ok=True)
        (tmp_path / folder / "gt").mkdir(exist_ok=True)
        tifffile.imwrite(tmp_path / folder / "img" / f"{name}.tif", image, compression="lzw")
        tifffile.imwrite(tmp_path / folder / "gt" / f"man_seg{name[1:]}.tif", truth.astype(np.uint16))
    (tmp_path / "NIH3T3" / "img").mkdir(parents=True)
    (tmp_path / "NIH3T3" / "gt").mkdir()
    Image.fromarray((image // 256).astype(np.uint8)).save(tmp_path / "NIH3T3" / "img" / "dna-3.png")
    Image.fromarray(((truth > 0) * 255).astype(np.uint8)).save(tmp_path / "NIH3T3" / "gt" / "3.png")

    def broken(*args, **kwargs):
        raise RuntimeError("not yet")

    monkeypatch.setattr(napari_levelset, "segment", broken)
    summaries = bench.main(
        [
            str(tmp_path),
            "--sets",
            "HeLa,NIH3T3",
            "--methods",
            "otsu,voronoi-otsu-4,levelset:lam=0.1",
            "--json",
            str(tmp_path / "out.json"),
            "--figure",
            str(tmp_path / "fig.png"),
        ]
    )
    hela = summaries["HeLa"]
    assert hela["otsu"]["n_images"] == 2
    assert hela["otsu"]["f1"] == 1.0 and hela["otsu"]["dice"] > 0.99  # the blur rounds the corners
    assert hela["levelset:lam=0.1"]["error"] == "RuntimeError: not yet"
    assert summaries["NIH3T3"]["otsu"]["dice"] > 0.99 and "f1" not in summaries["NIH3T3"]["otsu"]
    out = capsys.readouterr().out
    assert "| otsu | 1.000 | " in out and "failed: RuntimeError: not yet" in out
    records = json.loads((tmp_path / "out.json").read_text())["records"]
    assert [r["image"] for r in records if r["method"] == "otsu"] == ["t07", "t12", "dna-3"]
    assert Image.open(tmp_path / "fig.png").size[0] > 2 * 64
