"""Tiled inference equals whole-image inference (napari_levelset.nn.tiling)."""

from __future__ import annotations

import pytest
import torch

from napari_levelset.nn.model_files import save_model
from napari_levelset.nn.pretrained import build_network
from napari_levelset.nn.tiling import predict, tile_grid, tiled_apply
from napari_levelset.nn.unet import LevelSetUNet


def small_body(in_channels=3, ndim=2, levels=2):
    torch.manual_seed(0)
    return LevelSetUNet(in_channels, [3], base=4, levels=levels, embed=4, ndim=ndim).eval()


def whole(net, x):
    with torch.no_grad():
        return net(x, 3)


@pytest.mark.parametrize("shape", [(45, 61), (64, 64), (33, 100)])
def test_tiled_equals_whole_2d(shape):
    net = small_body()
    x = torch.rand((2, 3) + shape)
    ref = whole(net, x)
    fn = lambda t: net(t, 3)  # noqa: E731
    r, m = net.receptive_radius, net.multiple
    out = tiled_apply(fn, x, radius=r, multiple=m, tile=16, overlap=4)
    assert out.shape == ref.shape and out.device.type == "cpu"
    assert torch.allclose(out, ref, atol=1e-5)
    probs = tiled_apply(fn, x, radius=r, multiple=m, tile=16, output="probs")
    assert torch.allclose(probs, torch.softmax(ref, 1), atol=1e-5)
    labels = tiled_apply(fn, x, radius=r, multiple=m, tile=16, output="labels")
    assert labels.dtype == torch.uint8
    agree = (labels.long() == ref.argmax(1)).float().mean()
    assert agree > 0.999  # exact up to ties decided by float rounding


def test_many_tiles_are_used():
    grid = tile_grid((45, 61), radius=22, multiple=4, tile=16, overlap=4)
    assert [len(g) for g in grid] == [3, 4]
    for g in grid:  # keep ranges cover the image, halos hold the receptive field
        assert g[0][4] == 0 and g[-1][5] in (45, 61)
        for c0, _c1, i0, i1, k0, k1 in g:
            assert i0 % 4 == 0 and (i0 == 0 or k0 - i0 >= 22)
            assert k0 <= c0 and (i1 == g[-1][3] or i1 - k1 >= 22)


def test_blend_weights_sum_to_one():
    x = torch.zeros(1, 1, 50, 70)
    out = tiled_apply(lambda t: torch.ones_like(t).repeat(1, 2, 1, 1), x, radius=0, tile=16, overlap=5, halo=8)
    assert torch.allclose(out, torch.ones_like(out), atol=1e-6)


def test_small_halo_is_blended_not_exact():
    net = small_body()
    x = torch.rand(1, 3, 64, 64)
    ref = whole(net, x)
    out = tiled_apply(lambda t: net(t, 3), x, radius=net.receptive_radius, multiple=4, tile=16, overlap=4, halo=8)
    err = (out - ref).abs()
    assert err.max() > 1e-4  # the halo is smaller than the receptive field ...
    assert err.mean() < ref.abs().mean()  # ... yet the result stays close


def test_tiled_equals_whole_3d():
    net = small_body(in_channels=1, ndim=3, levels=1)
    x = torch.rand(1, 1, 21, 18, 23)
    ref = whole(net, x)
    out = tiled_apply(lambda t: net(t, 3), x, radius=net.receptive_radius, multiple=net.multiple, tile=8, overlap=2)
    assert torch.allclose(out, ref, atol=1e-5)


def test_predict_and_network_tiling(tmp_path):
    path = save_model(tmp_path / "m.pt", small_body())
    net = build_network(path, in_channels=3, n_classes=3, ndim=2, tile=16)
    x = torch.rand(1, 3, 40, 52)
    with torch.no_grad():
        ref = net._whole(x)
        auto = net(x)  # no gradients and larger than the tile: tiled inside
    assert torch.allclose(auto, ref, atol=1e-5)
    for mode in ("last", "all"):  # the cached/tiled frozen part gives the same logits
        other = build_network(path, in_channels=3, n_classes=3, ndim=2, tile=16, finetune=mode)
        with torch.no_grad():
            assert torch.allclose(other(x), ref, atol=1e-5)
        assert torch.allclose(other(x), ref, atol=1e-5)  # with gradients: untiled
    probs = predict(net, x.numpy(), tile=16, device="cpu")
    assert torch.allclose(probs, torch.softmax(ref, 1), atol=1e-5)
    # 2D model on a volume: tiles along z need no halo
    vol = build_network(path, in_channels=1, n_classes=3, ndim=3, tile=16)
    v = torch.rand(1, 1, 5, 36, 20)
    assert vol.receptive_radius[0] == 0 and vol.multiple[0] == 1
    with torch.no_grad():
        ref = vol._whole(v)
    out = predict(vol, v, tile=(2, 16, 16), output="raw", device="cpu")
    assert torch.allclose(out, ref, atol=1e-5)
    labels = predict(vol, v, tile=(2, 16, 16), output="labels", device="cpu")
    assert labels.shape == (1, 5, 36, 20)


def test_bad_arguments():
    with pytest.raises(ValueError, match="output"):
        tiled_apply(lambda t: t, torch.zeros(1, 1, 8, 8), radius=0, output="nope")
    with pytest.raises(ValueError, match="one per spatial axis"):
        tiled_apply(lambda t: t, torch.zeros(1, 1, 8, 8), radius=(1, 2, 3))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tiled_equals_whole_on_cuda():
    net = small_body().to("cuda")
    x = torch.rand((1, 3, 45, 61), device="cuda")
    ref = whole(net, x)
    out = tiled_apply(lambda t: net(t, 3), x, radius=net.receptive_radius, multiple=net.multiple, tile=16, overlap=4)
    assert out.shape == ref.shape
    # cuDNN may pick other convolution algorithms (TF32) for tiles than for the whole image
    assert torch.allclose(out.to(ref.device), ref, atol=2e-3)
