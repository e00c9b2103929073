"""U-Net model (napari_levelset.nn.unet), model files (nn.model_files) and ``build_network`` (nn.pretrained)."""

from __future__ import annotations

import json
import pickle
import re

import numpy as np
import pytest
import torch

import napari_levelset
from napari_levelset.errors import InputError
from napari_levelset.nn.model_files import FORMAT, load_model, model_color, pretrained_path, save_model
from napari_levelset.nn.pretrained import PretrainedNetwork, build_network
from napari_levelset.nn.unet import ChannelNorm, LevelSetUNet
from napari_levelset.training.train import DEFAULT_TRAIN

SMALL = dict(base=4, levels=2, embed=4)


def small_net(in_channels=3, heads=(2, 3), ndim=2, seed=0) -> LevelSetUNet:
    torch.manual_seed(seed)
    return LevelSetUNet(in_channels, heads, ndim=ndim, **SMALL).eval()


@pytest.fixture
def model_file(tmp_path):
    net = small_net()
    return save_model(tmp_path / "m.pt", net, {"note": "test"}), net


def test_forward_shapes_and_padding():
    net = small_net()
    x = torch.rand(2, 3, 21, 30)  # not a multiple of 4: padded inside, cropped back
    out = net(x)
    assert set(out) == {2, 3}
    assert out[3].shape == (2, 3, 21, 30)
    assert net(x, 2).shape == (2, 2, 21, 30)


def test_channel_norm_is_per_pixel_and_batch_independent():
    norm = ChannelNorm(5)
    x = torch.randn(3, 5, 7, 9)
    ref = (x - x.mean(1, keepdim=True)) / torch.sqrt(x.var(1, unbiased=False, keepdim=True) + 1e-5)
    assert torch.allclose(norm(x), ref, atol=1e-5)
    net = small_net()
    with torch.no_grad():
        both = net(torch.cat([x[:, :3], x[:, 2:]]), 2)
        one = net(x[:1, :3], 2)
    assert torch.allclose(both[:1], one, atol=1e-5)


def test_receptive_radius_bounds_the_dependence():
    net = small_net()
    r = net.receptive_radius
    x = torch.rand(1, 3, 4 * r, 4 * r, requires_grad=True)
    c = 2 * r
    net(x, 2)[0, :, c, c].sum().backward()
    ys, xs = np.nonzero(x.grad.abs().sum((0, 1)).numpy())
    assert np.abs(ys - c).max() <= r and np.abs(xs - c).max() <= r


def test_save_load_round_trip(model_file):
    path, net = model_file
    loaded, meta = load_model(path)
    x = torch.rand(1, 3, 24, 20)
    with torch.no_grad():
        for n in (2, 3):
            assert torch.equal(net(x, n), loaded(x, n))
    assert meta["package_version"] == napari_levelset.__version__
    assert meta["architecture"]["heads"] == [2, 3]
    assert meta["architecture"]["base"] == 4 and meta["architecture"]["norm"] == "channel-layernorm"
    assert "percentile" in meta["normalisation"]
    assert meta["note"] == "test"


def test_build_network_matches_the_model(model_file):
    path, net = model_file
    built = build_network(str(path), in_channels=3, n_classes=3, ndim=2)
    assert isinstance(built, PretrainedNetwork)
    x = torch.rand(1, 3, 17, 26)
    with torch.no_grad():
        assert torch.allclose(built(x), net(x, 3), atol=1e-5)
    # a saved built network loads back with just its head
    again, _meta = load_model(save_model(path.with_name("one.pt"), built))
    assert again.head_counts == [3]
    with torch.no_grad():
        assert torch.allclose(again(x, 3), net(x, 3), atol=1e-5)


def test_grey_on_colour_model_repeats_the_channel(model_file):
    path, net = model_file
    built = build_network(path, in_channels=1, n_classes=2, ndim=2)
    g = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(built(g), net(g.repeat(1, 3, 1, 1), 2), atol=1e-5)
    rgba = build_network(path, in_channels=4, n_classes=2, ndim=2)
    x = torch.rand(1, 4, 16, 16)
    with torch.no_grad():
        assert torch.allclose(rgba(x), net(x[:, :3], 2), atol=1e-5)
    with pytest.raises(InputError, match="trained on 3-channel images and cannot take 2 channels"):
        build_network(path, in_channels=2, n_classes=2, ndim=2)


def test_grey_on_cielab_model_is_lightness(tmp_path):
    from napari_levelset import segment
    from napari_levelset.evaluation.synthetic import matched_iou, phantom

    net = small_net()
    path = save_model(tmp_path / "lab.pt", net, {"color": "lab"})
    assert "CIELAB" in load_model(path)[1]["normalisation"]
    built = build_network(path, in_channels=1, n_classes=2, ndim=2, color="rgb")
    assert built.adapt == "lightness"
    g = torch.rand(1, 1, 16, 16)
    with torch.no_grad():  # L = the normalised grey, a = b = 0
        assert torch.allclose(built(g), net(torch.cat([g, torch.zeros(1, 2, 16, 16)], 1), 2), atol=1e-5)
    with pytest.raises(InputError, match="trained on 'lab' input"):  # colour must come as CIELAB
        build_network(path, in_channels=3, n_classes=2, ndim=2, color="rgb")
    # segment: an RGB image is converted to CIELAB, a grey one (2D or a volume) goes in as lightness
    image, truth = phantom((40, 40), 3, channels=1, seed=1)
    labels = segment(image[..., 0], n_classes=3, model=str(path), finetune_iterations=10, init="kmeans")
    assert min(matched_iou(labels, truth)) > 0.9
    from napari_levelset.method.segmenter import Segmenter

    assert Segmenter(image[..., 0], 3, model=str(path), device="cpu").settings["color"] == "rgb"
    rgb, _ = phantom((24, 24), 2, channels=3, seed=0)
    assert Segmenter(rgb, 2, model=str(path), device="cpu").settings["color"] == "lab"
    assert segment(rgb, n_classes=2, model=str(path)).shape == (24, 24)
    vol = np.stack([image[..., 0]] * 3)
    assert segment(vol, n_classes=3, model=str(path), spatial_dims=3).shape == (3, 40, 40)


def test_unknown_class_count_and_dimension_errors(model_file, tmp_path):
    path, _ = model_file
    # no trained head for N = 5: usable only from a k-means start of the head
    assert not build_network(path, in_channels=3, n_classes=5, ndim=2).head_trained
    from napari_levelset.evaluation.synthetic import matched_iou, phantom
    from napari_levelset.method.segmenter import Segmenter

    image, truth = phantom((40, 40), 5, channels=3, seed=0)
    with pytest.raises(InputError, match=r"heads for 2, 3 classes, not 5.*fine-tune"):
        Segmenter(image, 5, model=str(path), device="cpu")
    seg = Segmenter(image, 5, model=str(path), init="kmeans", device="cpu")
    assert seg.model.head_trained and min(matched_iou(seg.labels(), truth)) > 0.9
    p3 = save_model(tmp_path / "m3.pt", small_net(ndim=3))
    with pytest.raises(InputError, match="3D model"):
        build_network(p3, in_channels=3, n_classes=2, ndim=2)
    lab = save_model(tmp_path / "lab.pt", small_net(), {"color": "lab"})
    with pytest.raises(InputError, match="trained on 'lab' input"):
        build_network(lab, in_channels=3, n_classes=2, ndim=2, color="rgb")
    assert build_network(lab, in_channels=3, n_classes=2, ndim=2, color="lab").n_classes == 2
    with pytest.raises(InputError, match="no such model file"):
        build_network(tmp_path / "missing.pt", in_channels=3, n_classes=2, ndim=2)


def test_2d_model_on_a_volume_runs_per_slice(model_file):
    path, net = model_file
    v = torch.rand(1, 3, 4, 15, 12)
    for mode in ("head", "last", "all"):
        built = build_network(path, in_channels=3, n_classes=2, ndim=3, finetune=mode)
        with torch.no_grad():
            out = built(v)
        for z in range(4):
            assert torch.allclose(out[:, :, z], net(v[:, :, z], 2), atol=1e-5), mode


def test_3d_model(tmp_path):
    net = small_net(in_channels=1, ndim=3)
    built = build_network(save_model(tmp_path / "v.pt", net), in_channels=1, n_classes=3, ndim=3)
    v = torch.rand(1, 1, 9, 10, 11)
    with torch.no_grad():
        assert torch.allclose(built(v), net(v, 3), atol=1e-5)


@pytest.mark.parametrize("kwargs", [dict(n_classes=5), dict(n_classes=2, position=0.5)])
def test_3d_model_fine_tunes_a_new_head_and_position_columns(tmp_path, kwargs):
    path = save_model(tmp_path / "v.pt", small_net(in_channels=1, ndim=3))
    vol = np.random.default_rng(0).random((12, 12, 12))
    vol[:6] += 1
    labels = napari_levelset.segment(
        vol, model=str(path), spatial_dims=3, finetune_iterations=3, device="cpu", **kwargs
    )
    assert labels.shape == vol.shape
    assert labels.min() >= 1 and labels.max() <= kwargs["n_classes"]
    top, bottom = (np.bincount(labels[h].ravel()).argmax() for h in (slice(0, 6), slice(6, 12)))
    assert top != bottom  # the brighter half is told apart


def _expect_bad(path, match):
    with pytest.raises(InputError, match=match) as info:
        load_model(path)
    assert "\n" not in str(info.value)


def test_corrupt_and_foreign_files_are_rejected(model_file, tmp_path):
    path, _net = model_file
    bad = tmp_path / "junk.pt"
    bad.write_bytes(b"this is not a model")
    _expect_bad(bad, "cannot read model file")
    truncated = tmp_path / "cut.pt"
    truncated.write_bytes(path.read_bytes()[:500])
    _expect_bad(truncated, "cannot read model file")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    _expect_bad(foreign, "not a napari-levelset U-Net model file")
    blob = torch.load(path, weights_only=True)
    for meta in ("[]", "null", "{not json"):
        odd = tmp_path / "odd-metadata.pt"
        torch.save(dict(blob, metadata=meta), odd)
        _expect_bad(odd, "unreadable metadata")


class _Evil:
    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_arbitrary_pickle_is_refused(tmp_path, capsys):
    p = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "payload": _Evil()}, p, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    _expect_bad(p, "cannot read model file")
    assert "arbitrary code ran" not in capsys.readouterr().out


def test_mismatched_and_future_files_are_rejected(model_file, tmp_path):
    path, _ = model_file
    blob = torch.load(path, weights_only=True)
    meta = json.loads(blob["metadata"])
    meta["architecture"]["base"] = 8  # weights no longer fit
    torch.save({**blob, "metadata": json.dumps(meta)}, tmp_path / "mismatch.pt")
    _expect_bad(tmp_path / "mismatch.pt", "does not match its architecture")
    torch.save({**blob, "format_version": 99}, tmp_path / "future.pt")
    _expect_bad(tmp_path / "future.pt", "format version 99")
    meta["architecture"] = {"arch": "transformer"}
    torch.save({**blob, "metadata": json.dumps(meta)}, tmp_path / "arch.pt")
    _expect_bad(tmp_path / "arch.pt", "cannot build")
    state = dict(blob["state_dict"])
    state["heads.2.bias"] = torch.tensor([float("nan"), 0.0])
    torch.save({**blob, "state_dict": state}, tmp_path / "nan.pt")
    _expect_bad(tmp_path / "nan.pt", "NaN")


def test_head_finetune_freezes_and_caches_the_body(model_file):
    from napari_levelset.method.segmenter import Segmenter

    path, _ = model_file
    rng = np.random.default_rng(0)
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, 16:] = 200
    image = (image + rng.integers(0, 30, image.shape)).astype(np.uint8)
    seg = Segmenter(image, 2, model=str(path), device="cpu")
    net = seg.model
    calls = []
    net.body.register_forward_hook(lambda *a: calls.append(1))
    body0 = [p.detach().clone() for p in net.body.parameters()]
    head0 = net.head.weight.detach().clone()
    snap = list(seg.run(3))[-1]
    assert snap.labels.shape == (32, 32) and set(np.unique(snap.labels)) <= {1, 2}
    assert all(torch.equal(a, b) for a, b in zip(body0, net.body.parameters()))
    assert not torch.equal(head0, net.head.weight)
    assert len(calls) == 0  # the embedding was cached when the Segmenter was made


def test_finetune_last_trains_only_the_last_block(model_file):
    from napari_levelset.method.segmenter import Segmenter

    path, net0 = model_file
    net = build_network(path, in_channels=3, n_classes=3, ndim=2, finetune="last")
    x = torch.rand(1, 3, 19, 22)
    with torch.no_grad():
        assert torch.allclose(net(x), net0(x, 3), atol=1e-5)
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("body.dec.0.", "body.out.", "head.")) for n in trainable)
    assert any(n.startswith("body.dec.0.") for n in trainable)
    image = (np.random.default_rng(2).random((24, 24, 3)) * 255).astype(np.uint8)
    seg = Segmenter(image, 3, model=net, device="cpu")
    frozen0 = {n: p.detach().clone() for n, p in net.named_parameters() if n not in trainable}
    tail0 = net.body.dec[0][0].weight.detach().clone()
    for _ in seg.run(3):
        pass
    assert all(torch.equal(frozen0[n], p) for n, p in net.named_parameters() if n in frozen0)
    assert not torch.equal(tail0, net.body.dec[0][0].weight)


def test_finetune_all_trains_the_body(model_file):
    path, _ = model_file
    net = build_network(path, in_channels=3, n_classes=2, ndim=2, finetune="all")
    assert all(p.requires_grad for p in net.parameters())
    with pytest.raises(InputError, match="finetune"):
        build_network(path, in_channels=3, n_classes=2, ndim=2, finetune="some")


def test_segment_with_a_model_file(model_file):
    path, _ = model_file
    image = np.random.default_rng(1).integers(0, 255, (20, 24, 3)).astype(np.uint8)
    labels = napari_levelset.segment(image, n_classes=3, model=str(path), iterations=0, device="cpu")
    assert labels.shape == (20, 24) and labels.min() >= 1 and labels.max() <= 3


def test_kmeans_start_keeps_the_body_and_restarts_the_head(model_file):
    from napari_levelset.evaluation.synthetic import matched_iou, phantom
    from napari_levelset.method.segmenter import Segmenter

    path, _net = model_file
    image, truth = phantom((48, 48), 3, channels=3, seed=1)
    seg = Segmenter(image, 3, model=str(path), init="kmeans", device="cpu")
    body = {k: v.clone() for k, v in seg.model.body.state_dict().items()}
    # the first labels are the k-means ones, whatever the (untrained) head said
    assert min(matched_iou(seg.labels(), truth)) > 0.95
    w = seg.model.head.weight.detach().reshape(3, -1)
    assert torch.all(w[:, : w.shape[1] - 3] == 0)  # the embedding part starts at zero
    list(seg.run(15, every=15))
    assert min(matched_iou(seg.labels(), truth)) > 0.95
    for k, v in seg.model.body.state_dict().items():  # a head fine-tune leaves the body as it was
        assert torch.equal(v, body[k])
    # without a k-means start the same file gives the pretrained head's answer
    direct = Segmenter(image, 3, model=str(path), device="cpu")
    assert direct.settings["init"] == "network"


def test_shipped_model():
    p = pretrained_path("unet")
    if not p.is_file():
        pytest.skip("the pretrained weights are not built")
    assert p.stat().st_size <= 10 * 2**20
    net, meta = load_model(p)
    assert net.head_counts == list(range(2, 17)) and net.in_channels == 3
    assert meta["training"]["lam"] == DEFAULT_TRAIN["lam"]
    built = build_network("unet", in_channels=1, n_classes=5, ndim=2)
    with torch.no_grad():
        assert built(torch.rand(1, 1, 40, 40)).shape == (1, 5, 40, 40)


def test_position_channels_reach_the_head_only():
    x = torch.rand(1, 3, 24, 20)
    plain = build_network("unet", in_channels=3, n_classes=4, ndim=2)
    placed = build_network("unet", in_channels=3, n_classes=4, ndim=2, extra_channels=2)
    pos = torch.rand(1, 2, 24, 20)
    with torch.no_grad():
        # the new head columns start at zero: the same logits as without them
        assert torch.allclose(placed(torch.cat([x, pos], 1)), plain(x), atol=1e-5)
    assert placed.head.weight.shape[1] == plain.head.weight.shape[1] + 2
    with pytest.raises(InputError, match="built for 5 channels"):
        placed(x)


def test_unet_kmeans_start_with_position_separates_objects_far_apart():
    # two dark disks on a bright background: colour alone cannot tell them apart; the
    # k-means start on colour and place gives them different labels, and the head's
    # position columns are trained in a fine-tune
    yy, xx = np.mgrid[:48, :96]
    image = np.ones((48, 96), np.float32)
    left = (yy - 24) ** 2 + (xx - 20) ** 2 < 12**2
    right = (yy - 24) ** 2 + (xx - 76) ** 2 < 12**2
    image[left | right] = 0.0
    from napari_levelset.method.segmenter import Segmenter

    kw = dict(model="unet", init="kmeans", device="cpu")
    plain = Segmenter(image, 3, **kw).labels()
    seg = Segmenter(image, 3, position=2.0, **kw)
    placed = seg.labels()
    assert np.bincount(plain[left]).argmax() == np.bincount(plain[right]).argmax()
    assert np.bincount(placed[left]).argmax() != np.bincount(placed[right]).argmax()
    before = seg.model.head.weight[:, -2:].detach().clone()
    assert before.abs().sum() > 0  # the k-means start uses the coordinates
    for _ in seg.run(3):
        pass
    assert not torch.equal(seg.model.head.weight[:, -2:], before)
    assert seg.settings["position"] == 2.0


def test_segment_fine_tune_starts_from_kmeans_unless_told_otherwise(model_file):
    import napari_levelset
    from napari_levelset.evaluation.synthetic import phantom
    from napari_levelset.method.segmenter import Segmenter

    path, _ = model_file
    image, _ = phantom((32, 32), 3, channels=3, seed=2)
    tuned = napari_levelset.segment(image, n_classes=3, model=str(path), finetune_iterations=2, device="cpu")
    same = napari_levelset.segment(
        image, n_classes=3, model=str(path), finetune_iterations=2, device="cpu", init="kmeans"
    )
    trained = napari_levelset.segment(
        image, n_classes=3, model=str(path), finetune_iterations=2, device="cpu", init="network"
    )
    assert np.array_equal(tuned, same) and not np.array_equal(tuned, trained)
    assert Segmenter(image, 3, model=str(path), init="auto", device="cpu").settings["init"] == "kmeans"
    # a model that averages colour to grey cannot take an RGB k-means start: auto falls back
    grey_path = save_model(path.parent / "grey.pt", small_net(in_channels=1))
    assert Segmenter(image, 3, model=str(grey_path), init="auto", device="cpu").settings["init"] == "network"


def test_merged_regions_compare_cielab_on_an_rgb_model(model_file):
    """An RGB-trained U-Net sees normalised RGB, but its regions are merged on CIELAB, as the per-image mode's."""
    from napari_levelset.evaluation.synthetic import phantom
    from napari_levelset.io.prepare import prepare_image
    from napari_levelset.method.segmenter import Segmenter
    from napari_levelset.post.regions import connected_regions, merge_regions
    from napari_levelset.settings import MERGE_OPTIONS, MERGED_MIN_REGION

    path, _ = model_file
    image, _ = phantom((40, 48), 3, channels=3, seed=2)
    image = (image * 255).astype(np.uint8)
    seg = Segmenter(image, 3, model=str(path), init="kmeans", device="cpu")
    assert seg.settings["color"] == "rgb"  # what the network takes
    lab = prepare_image(image, color="lab").data[0]
    assert not np.allclose(seg.prepared.data[0], lab)
    np.testing.assert_array_equal(seg.features(), lab)
    labels = seg.labels()
    expected = merge_regions(connected_regions(labels, MERGED_MIN_REGION["unet"]), lab, 0.5, **MERGE_OPTIONS["unet"])
    np.testing.assert_array_equal(seg.regions(labels, "merged", merge=0.5), expected)
    # a grey image has no CIELAB: its normalised values are compared
    grey = Segmenter(image[..., 0], 3, model=str(path), init="kmeans", device="cpu")
    np.testing.assert_array_equal(grey.features(), grey.prepared.data[0])
    # color="rgb" asked for: the channels the network saw are compared
    asked = Segmenter(image, 3, model=str(path), init="kmeans", device="cpu", color="rgb")
    np.testing.assert_array_equal(asked.features(), asked.prepared.data[0])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_shipped_model_on_cuda_agrees_with_cpu_and_fine_tunes():
    from napari_levelset.evaluation.synthetic import matched_iou, phantom

    image, truth = phantom((96, 128), 3, channels=3, seed=2)
    direct = {
        dev: napari_levelset.segment(image, n_classes=3, model="unet", iterations=0, device=dev)
        for dev in ("cpu", "cuda")
    }
    assert (direct["cpu"] == direct["cuda"]).mean() > 0.99
    tuned = napari_levelset.segment(image, n_classes=3, model="unet", finetune_iterations=20, device="cuda")
    assert matched_iou(tuned, truth).min() >= 0.9


def test_cached_embedding_is_never_that_of_an_earlier_crop(model_file, monkeypatch):
    """Crops are temporaries whose memory is reused: the cache must not mistake one for another."""
    import napari_levelset.nn.pretrained as unet_module
    from napari_levelset.method.segmenter import Segmenter

    path, _ = model_file
    rng = np.random.default_rng(0)
    stack = rng.random((8, 40, 40)).astype(np.float32)
    stack[::2, 10:30, 10:30] += 0.5

    def labels():
        seg = Segmenter(
            stack, 3, model=str(path), spatial_dims=2, max_pixels=40 * 40 * 2, init="kmeans", device="cpu", seed=0
        )
        assert seg.settings["crop"] is not None
        for _ in seg.run(10):
            pass
        return seg.labels()

    cached = labels()
    monkeypatch.setattr(unet_module, "CACHE_BYTES", 0)  # every call computes the embedding afresh
    np.testing.assert_array_equal(cached, labels())


def test_a_built_network_as_model_gets_the_input_it_was_trained_on(model_file):
    """A network object passed as ``model`` is prepared for as its file says (not as the per-image CNN)."""
    from napari_levelset.method.segmenter import Segmenter

    path, _ = model_file
    image = (np.random.default_rng(3).random((24, 32, 3)) * 255).astype(np.uint8)
    net = build_network(str(path), in_channels=3, n_classes=3)
    given = Segmenter(image, 3, model=net, device="cpu")
    named = Segmenter(image, 3, model=str(path), device="cpu")
    assert given.prepared.color == named.prepared.color == "rgb"
    np.testing.assert_array_equal(given.labels(), named.labels())


def test_saving_a_fine_tuned_network_keeps_what_loading_needs(tmp_path):
    lab_path = save_model(tmp_path / "lab.pt", small_net(heads=(2, 3)), {"color": "lab"})
    tuned = build_network(str(lab_path), in_channels=3, n_classes=3, color="lab")
    saved = save_model(tmp_path / "tuned.pt", tuned)
    assert model_color(saved) == "lab"  # the colour handling travels with the weights
    fresh = build_network(str(lab_path), in_channels=3, n_classes=5, color="lab")
    with pytest.raises(InputError, match="new and untrained"):
        save_model(tmp_path / "new.pt", fresh)
    fresh.init_from_centres(torch.rand(5, 3), 0.1)
    assert load_model(save_model(tmp_path / "new.pt", fresh))[0].head_counts == [5]
    with pytest.raises(InputError, match="position channels"):
        save_model(
            tmp_path / "pos.pt", build_network(str(lab_path), in_channels=3, n_classes=3, color="lab", extra_channels=2)
        )


def test_a_grey_model_on_colour_explains_why_a_new_head_cannot_start(tmp_path):
    path = save_model(tmp_path / "grey.pt", small_net(in_channels=1))
    image = (np.random.default_rng(0).random((24, 24, 3)) * 255).astype(np.uint8)
    with pytest.raises(InputError, match="trained on grey images") as info:
        napari_levelset.segment(image, 5, model=str(path), finetune_iterations=3, device="cpu")
    assert "init='kmeans'" not in str(info.value)  # that advice cannot work here


def test_unet_regions_merge_with_the_unet_boundary_weighting(model_file):
    """A U-Net's pieces are merged with ``MERGE_OPTIONS["unet"]``, the per-image CNN's with ``["cnn"]``."""
    from skimage import data

    from napari_levelset.method.segmenter import Segmenter
    from napari_levelset.post.regions import connected_regions, merge_regions
    from napari_levelset.settings import MERGE_OPTIONS, MERGE_WEIGHT, MERGED_MIN_REGION

    path, _ = model_file
    image = data.coffee()[::8, ::8]
    h, w = image.shape[:2]
    labels = ((np.arange(h)[:, None] // 6 * 7 + np.arange(w)[None] // 6) % 8 + 1).astype(np.uint8)  # blocks
    labels[0, :2] = 5  # a fragment of 2 pixels: under 0.001 of the image, over 0.0002
    merged, segs = {}, {}
    for model, kind in ((str(path), "unet"), ("cnn", "cnn")):
        seg = segs[kind] = Segmenter(image, 8, model=model, init="kmeans", device="cpu")
        merged[kind] = seg.regions(labels, "merged", merge=0.5)
        pieces = connected_regions(labels, MERGED_MIN_REGION[kind])
        np.testing.assert_array_equal(merged[kind], merge_regions(pieces, seg.features(), 0.5, **MERGE_OPTIONS[kind]))
        # connected regions keep the common default
        np.testing.assert_array_equal(seg.regions(labels, "connected"), connected_regions(labels, 0.001))
    assert len(np.unique(merged["unet"])) > len(np.unique(merged["cnn"]))  # the weightings differ here
    for kind, seg in segs.items():  # without a weight, each model's own default
        np.testing.assert_array_equal(
            seg.regions(labels, "merged"), seg.regions(labels, "merged", merge=MERGE_WEIGHT[kind])
        )
    assert MERGE_WEIGHT["unet"] > MERGE_WEIGHT["cnn"]
    unmerged = {kind: len(np.unique(s.regions(labels, "merged", merge=0.0))) for kind, s in segs.items()}
    assert unmerged["unet"] == unmerged["cnn"] + 1  # the 2-pixel fragment is offered to the U-Net's merging only


def test_a_unet_gets_the_normalisation_it_was_trained_with():
    """The shipped U-Net learned the percentile rule (model_files.NORMALISATION); the per-image CNN's rule
    also keeps small bright structures, which would feed the U-Net inputs it never saw."""
    from napari_levelset.io.prepare import prepare_image
    from napari_levelset.method.segmenter import Segmenter

    rng = np.random.default_rng(0)
    image = rng.normal(0.2, 0.02, (64, 64, 3)).astype(np.float32)
    image[10:14, 10:14] = 5.0  # a small bright object (0.4 % of the pixels): the two rules differ here
    unet = Segmenter(image, 4, model="unet", color="rgb")
    cnn = Segmenter(image, 4, color="rgb")
    np.testing.assert_array_equal(unet.prepared.data, prepare_image(image, color="rgb", structures=False).data)
    np.testing.assert_array_equal(cnn.prepared.data, prepare_image(image, color="rgb").data)
    assert not np.array_equal(unet.prepared.data, cnn.prepared.data)


def _with_architecture(model_file, tmp_path, name="arch.pt", **changes):
    """A copy of the small model file whose metadata declares other architecture values (same weights)."""
    path, _ = model_file
    blob = torch.load(path, weights_only=True)
    meta = json.loads(blob["metadata"])
    meta["architecture"].update(changes)
    out = tmp_path / name
    torch.save({**blob, "metadata": json.dumps(meta)}, out)
    return out


@pytest.mark.parametrize(
    "changes,words",
    [
        (dict(base=5000), ["base 5000", "1..1024"]),
        (dict(base=0), ["base 0"]),
        (dict(base="16"), ["base '16'"]),
        (dict(base=True), ["base"]),
        (dict(base=16.5), ["base 16.5"]),
        (dict(levels=20), ["levels 20", "0..8"]),
        (dict(levels=-1), ["levels -1"]),
        (dict(embed=10**6), ["embed 1000000"]),
        (dict(in_channels=1000), ["in_channels 1000"]),
        (dict(convs=100), ["convs 100"]),
        (dict(ndim=4), ["ndim 4", "2..3"]),
        (dict(heads=list(range(2, 2002))), ["heads 2000", "1..254 heads"]),
        (dict(heads=[]), ["heads 0"]),
        (dict(heads="2-16"), ["heads str"]),
        (dict(heads=[2, 300]), ["300", "2..255"]),
        (dict(heads=[1, 2]), ["head for 1 classes"]),
        (dict(heads=[2, "3"]), ["'3'"]),
        (dict(heads=[2, 3, 3]), ["head twice"]),
    ],
)
def test_architecture_values_are_bounded(model_file, tmp_path, changes, words):
    bad = _with_architecture(model_file, tmp_path, **changes)
    with pytest.raises(InputError) as info:
        load_model(bad)
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 300, msg
    for w in words:
        assert w in msg, msg


def test_missing_architecture_value_is_named(model_file, tmp_path):
    path, _ = model_file
    blob = torch.load(path, weights_only=True)
    meta = json.loads(blob["metadata"])
    del meta["architecture"]["embed"]
    torch.save({**blob, "metadata": json.dumps(meta)}, tmp_path / "noembed.pt")
    _expect_bad(tmp_path / "noembed.pt", "no 'embed'")


def test_a_small_file_declaring_a_huge_network_is_refused_without_allocating_it(model_file, tmp_path):
    """base 1024 with 2 levels is 1.8 GB of weights: the mismatch is found on the meta device, not in memory."""
    import subprocess
    import sys

    bad = _with_architecture(model_file, tmp_path, base=1024)  # levels 2 as the small model
    assert bad.stat().st_size < 100_000
    code = (
        "import resource, sys, time\n"
        "from napari_levelset.errors import InputError\n"
        "from napari_levelset.nn.model_files import load_model\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "t = time.perf_counter()\n"
        "try:\n"
        "    load_model(sys.argv[1])\n"
        "except InputError as exc:\n"
        "    msg = str(exc)\n"
        "else:\n"
        "    msg = 'loaded'\n"
        "grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024\n"
        "print(f'{grew:.1f} {time.perf_counter() - t:.2f} {msg}')\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(bad)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    grew_mb, seconds, msg = out.stdout.strip().split(" ", 2)
    assert "does not match its architecture" in msg and "shape" in msg, msg
    assert float(grew_mb) < 200, f"peak memory grew by {grew_mb} MB"
    assert float(seconds) < 5, seconds


def test_stored_weights_are_checked_name_by_name_and_shape_by_shape(model_file, tmp_path):
    path, _ = model_file
    blob = torch.load(path, weights_only=True)
    state = dict(blob["state_dict"])
    cases = {
        "shape": ({**state, "heads.2.bias": torch.zeros(5)}, "heads.2.bias has shape (5,)"),
        "extra": ({**state, "heads.9.bias": torch.zeros(9)}, "unexpected weights (e.g. heads.9.bias)"),
        "missing": ({k: v for k, v in state.items() if k != "body.out.bias"}, "missing 1 weights (e.g. body.out.bias)"),
        "string": ({**state, "heads.2.bias": "zeros"}, "heads.2.bias is not a floating-point tensor"),
        "int": ({**state, "heads.2.bias": torch.zeros(2, dtype=torch.int64)}, "not a floating-point tensor"),
        "key": ({**state, 7: torch.zeros(2)}, "a weight is named 7"),
    }
    for name, (st, match) in cases.items():
        bad = tmp_path / f"{name}.pt"
        torch.save({**blob, "state_dict": st}, bad)
        _expect_bad(bad, re.escape(match))
