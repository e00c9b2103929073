"""The region network learnt from people's segmentations of photographs, and where the strokes' map uses it."""

import numpy as np
import pytest

from napari_levelset import Segmenter
from napari_levelset.io.prepare import prepare_image
from napari_levelset.method import strokes as strokes_module
from napari_levelset.method.strokes import stroke_prior
from napari_levelset.nn.regions import REGIONS_FILE, region_features


def _two_halves(seed=0, shape=(64, 96)):
    """A photograph (uint8 RGB) of a red-brown left half and a grey-blue right half, noisy; the right half's mask."""
    rng = np.random.default_rng(seed)
    right = np.zeros(shape, bool)
    right[:, shape[1] // 2 :] = True
    image = np.where(right[..., None], [90, 110, 150], [150, 80, 60]) + rng.integers(-12, 13, (*shape, 3))
    return np.clip(image, 0, 255).astype(np.uint8), right


def _lab_item(image):
    return prepare_image(image, color="lab", structures=True).data[0]


def test_the_shipped_weights_are_in_the_package():
    assert REGIONS_FILE.is_file() and REGIONS_FILE.parent.name == "weights"


def test_the_shipped_network_is_loaded_once_however_it_is_named():
    from napari_levelset.nn.regions import load_region_net

    assert load_region_net() is load_region_net(None) is load_region_net(str(REGIONS_FILE))


def test_region_features_give_an_embedding_and_a_boundary_probability_per_pixel():
    image, right = _two_halves()
    item = _lab_item(image)
    embedding, boundary = region_features(item)
    assert embedding.dtype == np.float64 and embedding.ndim == 3 and embedding.shape[1:] == right.shape
    assert boundary.dtype == np.float64 and boundary.shape == right.shape
    assert boundary.min() >= 0.0 and boundary.max() <= 1.0
    # a per-channel linear change of the item changes nothing (each channel is standardised first)
    again, _ = region_features(item * 2.0 + 0.5)
    assert np.allclose(again, embedding, atol=1e-4)


def test_the_boundary_lies_on_the_edge_between_two_regions_and_the_embedding_tells_them_apart():
    image, right = _two_halves(1)
    embedding, boundary = region_features(_lab_item(image))
    edge = boundary[:, 44:52].max(1)  # the columns beside the edge at 48
    inside = np.concatenate([boundary[8:-8, 8:36], boundary[8:-8, 60:-8]], 1).mean(1)
    assert np.all(edge > 2 * inside[: len(edge)].mean())
    flat = embedding.reshape(len(embedding), -1)
    left_mean = flat[:, ~right.ravel()].mean(1)
    right_mean = flat[:, right.ravel()].mean(1)
    spread = np.linalg.norm(flat[:, ~right.ravel()] - left_mean[:, None], axis=0).mean()
    assert np.linalg.norm(left_mean - right_mean) > 2 * spread


def test_region_features_run_the_network_once_for_an_item_of_the_same_values():
    """New strokes on the same image: the features come back without a second forward pass."""
    from napari_levelset.nn import regions

    image, _ = _two_halves(4)
    item = _lab_item(image)
    net = regions.load_region_net(None)  # the instance region_features uses
    calls = []
    hook = net.register_forward_hook(lambda *_: calls.append(1))
    try:
        first = region_features(item)
        again = region_features(item.copy())
        assert len(calls) == 1 and again[0] is first[0] and not first[0].flags.writeable
        named = region_features(item, path=str(regions.REGIONS_FILE))  # the same weights, named
        assert len(calls) == 1 and named[0] is first[0]
        other = region_features(item[:, ::-1].copy())
        assert len(calls) == 2 and not np.allclose(other[1], first[1])
    finally:
        hook.remove()


def test_region_features_refuse_an_item_of_another_channel_count():
    with pytest.raises(ValueError, match="channels"):
        region_features(np.zeros((1, 20, 20), np.float32))


def test_the_map_with_the_region_network_labels_two_regions_and_leaves_a_grey_item_alone():
    image, right = _two_halves(2)
    item = _lab_item(image)
    strokes = np.zeros((1, *right.shape), np.int64)
    strokes[0, 30:33, 10:20], strokes[0, 30:33, 70:80] = 1, 2
    learnt = stroke_prior(item[None], strokes, 2, regions=True)
    assert learnt.shape == (1, 2, *right.shape) and learnt.min() >= -1 and learnt.max() <= 0
    assert np.mean(learnt[0].argmax(0) + 1 == np.where(right, 2, 1)) > 0.97
    grey = stroke_prior(item[:1][None], strokes, 2, regions=True)  # one channel: the network is not for it
    assert np.array_equal(grey, stroke_prior(item[:1][None], strokes, 2))


def test_a_boundary_map_takes_the_gradients_place_in_the_reach():
    """A flat image whose boundary map holds a wall: the wall stops the reach as a strong edge would."""
    from napari_levelset.method.strokes import geodesic_distances

    image = np.full((1, 3, 40, 80), 0.5)
    strokes = np.zeros((1, 40, 80), np.int64)
    strokes[0, 20, 5] = 1
    wall = np.full((1, 40, 80), 0.05)
    wall[0, :, 40:42] = 1.0
    flat = geodesic_distances(image, strokes, 1)[0, 0]
    walled = geodesic_distances(image, strokes, 1, boundary=wall)[0, 0]
    assert flat[20, 60] < 3 * flat[20, 30]  # 55 and 25 pixels from the stroke
    assert walled[20, 60] > 10 * walled[20, 30]


def test_a_haze_of_boundary_inside_a_region_does_not_slow_the_reach_and_the_wall_still_stops_it():
    """A boundary map of 0.3 over a textured region and 1 on a wall: its edges for the reach cost nothing
    inside the region, so the stroke reaches the region's far end as across an empty image."""
    from napari_levelset.method.strokes import geodesic_distances, reach_edges

    image = np.full((1, 3, 40, 80), 0.5)
    strokes = np.zeros((1, 40, 80), np.int64)
    strokes[0, 20, 5] = 1
    haze = 0.3 + 0.1 * np.random.default_rng(0).random((40, 80))
    haze[:, 60:62] = 1.0
    edges = reach_edges(haze)
    assert edges.shape == haze.shape and edges.min() == 0.0 and np.mean(edges == 0.0) >= 0.5
    flat = geodesic_distances(image, strokes, 1)[0, 0]
    raw = geodesic_distances(image, strokes, 1, boundary=haze[None])[0, 0]
    floored = geodesic_distances(image, strokes, 1, boundary=edges[None])[0, 0]
    assert raw[20, 50] > 4 * flat[20, 50]  # the haze makes every step dear
    assert floored[20, 50] < 2 * flat[20, 50]  # above the floor only: the inside is nearly free
    assert floored[20, 75] > 10 * floored[20, 50]  # the wall at 60 still stops the reach


def test_a_segmenter_on_a_photograph_asks_for_the_region_network_and_on_a_grey_image_does_not(monkeypatch):
    """The real map is made; a wrapper records what the Segmenter asked of it."""
    asked = []
    real = strokes_module.stroke_prior

    def recording(data, scribbles, n_classes, regions=False):
        asked.append(regions)
        return real(data, scribbles, n_classes, regions=regions)

    import napari_levelset.method.segmenter as segmenter_module

    monkeypatch.setattr(segmenter_module, "stroke_prior", recording)
    image, right = _two_halves(3)
    strokes = np.zeros(right.shape, np.uint8)
    strokes[30:33, 10:20], strokes[30:33, 70:80] = 1, 2
    seg = Segmenter(image, 2, scribbles=strokes, device="cpu")
    assert asked == [True]
    assert np.mean(np.asarray(seg.labels()) == np.where(right, 2, 1)) > 0.97
    asked.clear()
    Segmenter(image, 2, scribbles=strokes, device="cpu", color="rgb")
    assert asked in ([], [False])


def _train_folder(root):
    """A BSDS500-like folder with two train photographs of three colour regions and two people's segmentations."""
    from PIL import Image
    from scipy.io import savemat

    yy, xx = np.mgrid[:96, :144]
    regions = np.where(xx < 60, 1, np.where(yy < 48, 2, 3))
    colours = np.array([(0, 0, 0), (170, 60, 40), (60, 140, 70), (70, 80, 200)])
    (root / "images" / "train").mkdir(parents=True)
    (root / "groundTruth" / "train").mkdir(parents=True)
    for seed, name in enumerate(("2001", "2002")):
        noise = np.random.default_rng(seed).integers(-15, 16, (*regions.shape, 3))
        image = np.clip(colours[regions] + noise, 0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / "train" / f"{name}.jpg", quality=95)
        cell = np.empty((1, 2), dtype=object)
        cell[0, 0], cell[0, 1] = {"Segmentation": regions}, {"Segmentation": np.where(regions == 1, 1, 2)}
        savemat(root / "groundTruth" / "train" / f"{name}.mat", {"groundTruth": cell})
    return regions


def test_the_training_script_writes_weights_the_map_can_load_and_they_learn_the_boundaries(tmp_path):
    import importlib.util
    import sys
    from pathlib import Path

    from PIL import Image
    from skimage.segmentation import find_boundaries

    from napari_levelset.nn.regions import load_region_net

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "train_regions.py"
    spec = importlib.util.spec_from_file_location("train_regions", script)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(script.parent))
    try:
        spec.loader.exec_module(module)
        regions = _train_folder(tmp_path / "bsds")
        out = tmp_path / "regions.pt"
        args = f"--bsds {tmp_path / 'bsds'} --out {out} --start 0 --steps 150 --crop 64 --batch 2 --widths 16 32 48"
        module.main(args.split())
    finally:
        sys.path.remove(str(script.parent))
    net = load_region_net(str(out))
    assert net.emb.out_channels == 16 and (net.a1.out_channels, net.b1.out_channels, net.c0.out_channels) == (
        16,
        32,
        48,
    )
    image = np.asarray(Image.open(tmp_path / "bsds" / "images" / "train" / "2001.jpg"))
    _, boundary = region_features(_lab_item(image), path=str(out))

    edge = find_boundaries(regions, mode="thick")
    assert boundary[edge].mean() > 2 * boundary[~edge].mean()
