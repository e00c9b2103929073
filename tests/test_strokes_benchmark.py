"""``benchmarks/strokes.py`` on tiny synthetic BSDS500 and nuclei folders written to ``tmp_path``."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "strokes.py"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))  # as running the script does: it imports benchmarks/_common.py
    spec = importlib.util.spec_from_file_location("strokes_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _human_maps(shape=(64, 96)) -> tuple[np.ndarray, np.ndarray]:
    """A coarse map (a background, two boxes, a disc, a tiny box under 2 %) and a finer one."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    coarse = np.ones(shape, np.uint16)
    coarse[8:40, 6:40] = 2
    coarse[30:60, 50:90] = 3
    coarse[(yy - 18) ** 2 + (xx - 70) ** 2 < 100] = 4
    coarse[50:54, 10:14] = 5
    fine = coarse.copy()
    fine[8:40, 6:20] = 6
    fine[:4] = 7
    return coarse, fine


def _write_bsds(root: Path, ids=("1001", "1002")) -> np.ndarray:
    from PIL import Image
    from scipy.io import savemat

    coarse, fine = _human_maps()
    colours = np.array([(0, 0, 0), (30, 120, 40), (200, 40, 40), (40, 60, 220), (240, 220, 30), (250, 250, 250)])
    noise = np.random.default_rng(0).integers(-12, 13, (*coarse.shape, 3))
    image = np.clip(colours[coarse] + noise, 0, 255).astype(np.uint8)
    (root / "images" / "val").mkdir(parents=True)
    (root / "groundTruth" / "val").mkdir(parents=True)
    for i in ids:
        Image.fromarray(image).save(root / "images" / "val" / f"{i}.jpg", quality=95)
        cell = np.empty((1, 2), dtype=object)
        cell[0, 0], cell[0, 1] = {"Segmentation": fine}, {"Segmentation": coarse}
        savemat(root / "groundTruth" / "val" / f"{i}.mat", {"groundTruth": cell})
    return coarse


def _nuclei_truth(shape=(96, 128)) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    truth = np.zeros(shape, np.uint16)
    centres = [(15, 15), (15, 60), (20, 105), (50, 30), (55, 75), (80, 15), (80, 60), (78, 110)]
    for k, (cy, cx) in enumerate(centres, start=1):
        truth[(yy - cy) ** 2 + (xx - cx) ** 2 < (8 + k % 3) ** 2] = k
    return truth


def _write_nuclei(root: Path) -> np.ndarray:
    import tifffile
    from PIL import Image

    truth = _nuclei_truth()
    noise = np.random.default_rng(1).integers(0, 300, truth.shape)
    image = (33000 + 2500 * (truth > 0) + noise).astype(np.uint16)
    for folder in ("N2DL-HeLa/img", "N2DL-HeLa/gt", "NIH3T3/img", "NIH3T3/gt"):
        (root / folder).mkdir(parents=True)
    tifffile.imwrite(root / "N2DL-HeLa" / "img" / "t07.tif", image)
    tifffile.imwrite(root / "N2DL-HeLa" / "gt" / "man_seg07.tif", truth)
    Image.fromarray((image // 160).astype(np.uint8)).save(root / "NIH3T3" / "img" / "dna-3.png")
    Image.fromarray(((truth > 0) * 255).astype(np.uint8)).save(root / "NIH3T3" / "gt" / "3.png")
    return truth


def _connected(mask: np.ndarray) -> bool:
    return ndi.label(mask, structure=np.ones((3, 3)))[1] == 1


def test_bsds_strokes_follow_the_coarsest_human_map(bench, tmp_path):
    coarse = _write_bsds(tmp_path)
    case = bench.bsds_case(tmp_path, "val", "1001", seed=0)
    # the coarse map's four regions of at least 2 %, largest first; the tiny box is not scored
    assert case.n_classes == 4
    for k, region_id in enumerate((1, 3, 2, 4), start=1):
        region = coarse == region_id
        assert np.array_equal(case.truth == k, region)
        stroke = case.strokes == k
        assert 1 <= stroke.sum() <= max(1, int(0.02 * region.sum()))
        assert _connected(stroke)
        assert not (stroke & ~ndi.binary_erosion(region)).any()  # inside, off the region's edge
    assert not case.truth[coarse == 5].any() and not case.strokes[coarse == 5].any()
    again = bench.bsds_case(tmp_path, "val", "1001", seed=0)
    assert np.array_equal(again.strokes, case.strokes)


def test_nuclei_strokes_in_three_nuclei_and_on_the_background(bench):
    truth = _nuclei_truth()
    dataset = bench.NUCLEI_SETS["HeLa"]
    case = bench.nuclei_case(dataset, "t07", truth.astype(np.uint16), truth, seed=0)
    assert case.n_classes == 2 and case.foreground
    assert np.array_equal(case.truth, np.where(truth > 0, 2, 1))
    stroked = np.unique(truth[case.strokes == 2])
    assert len(stroked) == 3 and 0 not in stroked
    for i in stroked:
        assert _connected((case.strokes == 2) & (truth == i))
    background = case.strokes == 1
    assert background.any() and not (background & (ndi.distance_transform_edt(truth == 0) < 8)).any()
    assert ndi.label(background, structure=np.ones((3, 3)))[1] <= 3


def test_methods_are_split_at_commas_outside_levelset_settings(bench):
    assert bench.split_methods("levelset:model='unet',iterations=30,rf, levelset,first:work_pixels=9,lam=1") == [
        "levelset:model='unet',iterations=30",
        "rf",
        "levelset",
        "first:work_pixels=9,lam=1",
    ]
    with pytest.raises(SystemExit):
        bench.build_methods("otsu")


@pytest.mark.filterwarnings("ignore:Using the fractional value max_samples")
def test_the_script_scores_every_method_on_both_datasets(bench, tmp_path, capsys):
    pytest.importorskip("sklearn")
    _write_bsds(tmp_path / "bsds")
    _write_nuclei(tmp_path / "nuclei")
    out_json, figure = tmp_path / "out" / "strokes.json", tmp_path / "out" / "strokes.png"
    summary = bench.main(
        [
            "--bsds",
            str(tmp_path / "bsds"),
            "--nuclei",
            str(tmp_path / "nuclei"),
            "--limit",
            "1",
            "--methods",
            "levelset:iterations=10,rf,first",
            "--threads",
            "1",
            "--json",
            str(out_json),
            "--figure",
            str(figure),
        ]
    )
    table = capsys.readouterr().out
    assert "| set (images) | score | levelset:iterations=10 | rf | first |" in table
    assert set(summary) == {"BSDS500 val", "HeLa", "NIH3T3"}
    for by_method in summary.values():
        for entry in by_method.values():
            assert "error" not in entry and entry["n_images"] == 1
            assert 0 <= entry["miou"] <= 1 and entry["seconds"] > 0
    assert summary["BSDS500 val"]["levelset:iterations=10"]["miou"] > 0.8  # flat colours, one stroke each
    assert summary["HeLa"]["levelset:iterations=10"]["dice"] > 0.8  # (the forest sees a pixel or two per tree here)
    assert summary["BSDS500 val"]["first"]["miou"] > 0.8  # the strokes' start, before any iteration
    records = json.loads(out_json.read_text())["records"]
    assert len(records) == 3 * 3
    from PIL import Image

    with Image.open(figure) as im:
        assert im.width > 4 * 64 and im.height > 2 * 200


@pytest.mark.parametrize("kind", ["short", "short2"])
def test_short_strokes_are_brush_dabs_near_an_end_of_each_region(bench, tmp_path, kind):
    coarse = _write_bsds(tmp_path)
    case = bench.bsds_case(tmp_path, "val", "1001", seed=0, kind=kind)
    long = bench.bsds_case(tmp_path, "val", "1001", seed=0)
    assert case.n_classes == 4 and np.array_equal(case.truth, long.truth)
    for k, region_id in enumerate((1, 3, 2, 4), start=1):
        region = coarse == region_id
        stroke = case.strokes == k
        pieces = ndi.label(stroke, structure=np.ones((3, 3)))[1]
        assert 1 <= pieces <= (2 if kind == "short2" else 1)
        assert stroke.sum() <= (2 if kind == "short2" else 1) * max(1, int(0.02 * region.sum()))
        assert not (stroke & ~region).any()
        # a brush of 3 px (a disc of radius 1): some pixel of the stroke has its whole disc painted
        assert ndi.binary_erosion(stroke, ndi.generate_binary_structure(2, 1)).any()
    again = bench.bsds_case(tmp_path, "val", "1001", seed=0, kind=kind)
    assert np.array_equal(again.strokes, case.strokes)


def test_short_nuclei_strokes(bench):
    truth = _nuclei_truth()
    dataset = bench.NUCLEI_SETS["HeLa"]
    for kind, most in (("short", 1), ("short2", 2)):
        case = bench.nuclei_case(dataset, "t07", truth.astype(np.uint16), truth, seed=0, kind=kind)
        assert len(np.unique(truth[case.strokes == 2])) == 3 and 0 not in np.unique(truth[case.strokes == 2])
        background = case.strokes == 1
        assert background.any() and not (background & (truth > 0)).any()
        assert ndi.label(background, structure=np.ones((3, 3)))[1] <= most


def test_the_strokes_option_reaches_the_cases(bench, tmp_path):
    assert bench.parse_args(["--bsds", "x"]).strokes == "long"
    assert bench.parse_args(["--bsds", "x", "--strokes", "short2"]).strokes == "short2"
    _write_bsds(tmp_path)
    cases = bench.bsds_cases(tmp_path, "val", 1, 0, "short")
    assert len(cases) == 1 and cases[0].strokes.any()


def test_start_skips_the_first_images(bench, tmp_path):
    _write_bsds(tmp_path)
    assert bench.parse_args(["--bsds", "x", "--start", "1"]).start == 1
    assert [c.id for c in bench.bsds_cases(tmp_path, "val", None, 0, start=1)] == ["1002"]
    assert [c.id for c in bench.bsds_cases(tmp_path, "val", 1, 0, start=0)] == ["1001"]
    assert [c.id for c in bench.bsds_cases(tmp_path, "val", None, 0)] == ["1001", "1002"]
