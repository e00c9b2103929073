"""Training across images (napari_levelset.training.train) and its command line."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from napari_levelset.cli.train import main
from napari_levelset.errors import InputError
from napari_levelset.nn.model_files import load_model
from napari_levelset.nn.pretrained import build_network
from napari_levelset.training.data import load_training_images
from napari_levelset.training.train import checkpoint_path, parse_classes, train

SMALL = dict(base=4, levels=2, embed=4, n_classes=[2, 3], progress=False, device="cpu")


def blobs(n=4, size=40, channels=3, seed=0):
    """Piecewise-constant noisy images: a few rectangles on a background."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = np.zeros((size, size, channels), np.float32)
        for _ in range(3):
            y, x = rng.integers(0, size - 10, 2)
            h, w = rng.integers(8, 20, 2)
            img[y : y + h, x : x + w] = rng.random(channels)
        img += rng.normal(0, 0.05, img.shape)
        out.append((np.clip(img, 0, 1) * 255).astype(np.uint8))
    return out


def _levelset(net, images, n=3):
    from napari_levelset.method.loss import levelset_loss

    x = torch.from_numpy(np.stack([load_training_images([im])[0][0] for im in images]).astype(np.float32))
    with torch.no_grad():
        return float(levelset_loss(torch.softmax(net(x, n), 1), x, 0.05))


def test_a_few_steps_lower_the_loss(tmp_path):
    from napari_levelset.nn.unet import LevelSetUNet

    images = blobs()
    res = train(
        images,
        tmp_path / "m.pt",
        steps=25,
        crop=32,
        batch_size=4,
        lr=1e-2,
        warmup=3,
        kmeans_steps=10,
        kmeans_heads=1,
        **SMALL,
    )
    torch.manual_seed(0)  # the same initial network as train(seed=0)
    before = _levelset(LevelSetUNet(3, [2, 3], base=4, levels=2, embed=4), images)
    net, meta = load_model(res.path)
    after = _levelset(net, images)
    assert after < 0.8 * before, (before, after)
    assert len(res.losses) == 25 and np.mean(res.losses[-5:]) < np.mean(res.losses[:5])
    assert net.head_counts == [2, 3]
    assert meta["training"]["steps"] == 25 and meta["training"]["lam"] == 0.05
    assert not checkpoint_path(res.path).exists()
    built = build_network(res.path, in_channels=3, n_classes=2, ndim=2)
    with torch.no_grad():
        assert built(torch.rand(1, 3, 32, 32)).shape == (1, 2, 32, 32)


def test_resume_continues_like_an_uninterrupted_run(tmp_path):
    kw = dict(steps=6, crop=24, batch_size=2, warmup=2, checkpoint_every=2, **SMALL)
    full = train(blobs(3), tmp_path / "full.pt", **kw)
    part = train(blobs(3), tmp_path / "part.pt", stop_after=4, **kw)
    assert part.path == checkpoint_path(tmp_path / "part.pt") and part.steps == 4
    rest = train(blobs(3), tmp_path / "part.pt", **kw)
    assert rest.steps == 6 and len(rest.losses) == 6
    np.testing.assert_allclose(rest.losses, full.losses, rtol=1e-5)
    a, _ = load_model(full.path)
    b, _ = load_model(rest.path)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(va, vb, atol=1e-6), k


def test_resume_refuses_a_checkpoint_of_another_model(tmp_path):
    kw = dict(steps=4, crop=24, batch_size=2, checkpoint_every=2, **SMALL)
    train(blobs(2), tmp_path / "m.pt", stop_after=2, **kw)
    with pytest.raises(InputError, match="different model"):
        train(blobs(2), tmp_path / "m.pt", **{**kw, "n_classes": [2, 4]})
    res = train(blobs(2), tmp_path / "m.pt", resume=False, **{**kw, "n_classes": [2, 4]})
    assert load_model(res.path)[0].head_counts == [2, 4]


@pytest.mark.parametrize("change", [dict(steps=3), dict(lam=0.5), dict(color="lab"), dict(images=3)])
def test_resume_refuses_a_checkpoint_made_with_other_settings(tmp_path, change):
    """Resuming must equal an uninterrupted run: a checkpoint of other settings or data is not taken."""
    kw = dict(steps=4, crop=24, batch_size=2, checkpoint_every=2, **SMALL)
    train(blobs(2), tmp_path / "m.pt", stop_after=2, **kw)
    change = dict(change)
    n_images = change.pop("images", 2)
    key = next(iter(change), "data")
    with pytest.raises(InputError, match=f"other settings \\({key} "):
        train(blobs(n_images), tmp_path / "m.pt", **{**kw, **change})
    assert checkpoint_path(tmp_path / "m.pt").exists()  # nothing of the interrupted run is lost


def test_folder_stack_and_labels(tmp_path):
    imgs = tmp_path / "imgs"
    labs = tmp_path / "labs"
    imgs.mkdir()
    labs.mkdir()
    grey = [b[..., 0] for b in blobs(3, channels=1)]
    tifffile.imwrite(imgs / "stack.tif", np.stack(grey[:2]))  # a 3D tif = 2 images
    tifffile.imwrite(imgs / "single.tif", grey[2])
    lab = np.zeros((2, 40, 40), np.uint8)
    lab[:, :5, :5] = 1
    lab[:, -5:, -5:] = 2
    tifffile.imwrite(labs / "stack.tif", lab)
    data, labels, desc = load_training_images(imgs, labs)
    assert len(data) == 3 and data[0].shape == (1, 40, 40) and "2 files" in desc
    assert sum(lb is not None for lb in labels) == 2
    assert float(data[0].min()) >= 0.0 and float(data[0].max()) <= 1.0
    res = train(imgs, tmp_path / "m.pt", labels=labs, steps=3, crop=32, batch_size=2, **SMALL)
    assert res.metadata["training"]["labelled"]
    assert load_model(res.path)[0].in_channels == 1


def test_bad_training_input(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        train(tmp_path / "nope", tmp_path / "m.pt", **SMALL)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        train(tmp_path / "empty", tmp_path / "m.pt", **SMALL)
    with pytest.raises(InputError, match="output folder does not exist"):
        train(blobs(1), tmp_path / "no" / "m.pt", **SMALL)
    with pytest.raises(InputError, match="too small"):
        train([np.random.rand(8, 8)], tmp_path / "m.pt", **SMALL)
    with pytest.raises(InputError, match="labels of image 0 go up to class 5, more than the 3 classes"):
        train(blobs(1), tmp_path / "m.pt", labels=[np.full((40, 40), 5)], steps=1, crop=32, **SMALL)
    assert parse_classes("2-4,7") == [2, 3, 4, 7]
    with pytest.raises(InputError):
        parse_classes("many")


def test_cli(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    import imageio.v3 as iio

    for i, img in enumerate(blobs(2)):
        iio.imwrite(folder / f"{i}.png", img)
    out = tmp_path / "m.pt"
    code = main(
        [
            str(folder),
            "-o",
            str(out),
            "--classes",
            "2,3",
            "--steps",
            "2",
            "--crop",
            "32",
            "--batch-size",
            "2",
            "--base",
            "4",
            "--levels",
            "2",
            "--embed",
            "4",
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    assert code == 0 and out.is_file()
    assert load_model(out)[1]["command"].startswith("napari-levelset train")
    capsys.readouterr()
    for argv, message in [
        ([str(tmp_path / "missing"), "-o", str(out)], "no such file or folder"),
        ([str(tmp_path / "m.pt.d"), "-o", str(out)], "no such file or folder"),
        ([str(folder), "-o", str(tmp_path / "nodir" / "m.pt")], "output folder does not exist"),
        ([str(folder), "-o", str(folder)], "is a directory"),
    ]:
        assert main(argv + ["--quiet"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda_lowers_the_loss_and_the_file_loads_on_cpu(tmp_path):
    images = blobs()
    res = train(
        images,
        tmp_path / "m.pt",
        steps=25,
        crop=32,
        batch_size=4,
        lr=1e-2,
        warmup=3,
        kmeans_steps=10,
        kmeans_heads=1,
        **{**SMALL, "device": "cuda"},
    )
    assert np.mean(res.losses[-5:]) < np.mean(res.losses[:5])
    net, _ = load_model(res.path)  # tensors saved from the GPU load onto the CPU
    assert next(net.parameters()).device.type == "cpu"
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        on_cpu = net(x, 3)
        on_gpu = net.to("cuda")(x.to("cuda"), 3).cpu()
    assert torch.allclose(on_cpu, on_gpu, atol=1e-3)


def test_rgba_images_train_an_rgb_model(tmp_path):
    """Alpha is dropped as when segmenting: RGB and RGBA images mix, and the model takes RGB."""
    rgb = blobs(2, size=32)
    rgba = [np.concatenate([im, np.full(im.shape[:2] + (1,), 255, np.uint8)], 2) for im in blobs(2, size=32, seed=1)]
    res = train(rgb + rgba, tmp_path / "m.pt", steps=2, crop=24, batch_size=2, **SMALL)
    net, _ = load_model(res.path)
    assert net.in_channels == 3
    import napari_levelset

    labels = napari_levelset.segment(rgb[0], n_classes=3, model=str(res.path), finetune_iterations=2, device="cpu")
    assert labels.shape == (32, 32)


@pytest.mark.parametrize(
    "extra,words",
    [
        (["--base", "0"], ["--base"]),
        (["--levels=-1"], ["--levels"]),
        (["--lr", "inf"], ["--lr", "finite"]),
        (["--lr", "1e300"], ["--lr", "<= 10"]),
        (["--seed=-1"], ["--seed", "0 to 4294967295"]),
        (["--threads=-1"], ["--threads"]),
        (["--steps", "0"], ["--steps"]),
        (["--lam", "nan"], ["--lam"]),
        (["--crop", "8"], ["--crop", "16 to 16384"]),
        (["--crop", "16", "--levels", "5"], ["--crop", ">= 32"]),
    ],
)
def test_cli_settings_are_checked_in_one_line(tmp_path, capsys, extra, words):
    images = tmp_path / "imgs"
    images.mkdir()
    import imageio.v3 as iio

    iio.imwrite(images / "0.png", blobs(1)[0])
    out = tmp_path / "m.pt"
    code = main([str(images), "-o", str(out), "--steps", "1", "--device", "cpu", "--quiet", *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err and "too small" not in err, err
    for w in words:
        assert w in err, err
    assert not out.exists()


def test_cli_out_of_memory_is_one_line(tmp_path, capsys, monkeypatch):
    import napari_levelset.training.train as train_module

    def fail(*a, **k):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 GB")

    monkeypatch.setattr(train_module, "train", fail)
    code = main([str(tmp_path), "-o", str(tmp_path / "m.pt"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "out of memory" in err and "--crop" in err, err


def _tamper(ckpt, **changes):
    """Rewrite fields of a checkpoint file (a value of None removes the field)."""
    blob = torch.load(ckpt, weights_only=True)
    for k, v in changes.items():
        if v is None:
            blob.pop(k, None)
        else:
            blob[k] = v
    torch.save(blob, ckpt)


@pytest.mark.parametrize(
    "changes,words",
    [
        (dict(optimizer="adam"), ["optimiser state", "not a record"]),
        (dict(optimizer=None), ["optimiser state"]),
        (dict(optimizer={"state": {}, "param_groups": "x"}), ["optimiser state"]),
        (dict(optimizer={"state": {}, "param_groups": [{"lr": 1.0}]}), ["optimiser state"]),
        (dict(step="abc"), ["step 'abc'", "0..4"]),
        (dict(step=-3), ["step -3", "0..4"]),
        (dict(step=9), ["step 9", "0..4"]),
        (dict(step=2.5), ["step 2.5"]),
        (dict(step=None), ["step None"]),
        (dict(losses=["a", "b"]), ["loss 'a'", "not a finite number"]),
        (dict(losses=[1.0, float("nan")]), ["loss nan"]),
        (dict(losses="1,2"), ["losses '1,2'"]),
        (dict(losses=[1.0]), ["1 losses for 2 steps"]),
    ],
)
def test_resume_refuses_a_checkpoint_with_wrong_values_in_one_line(tmp_path, changes, words):
    kw = dict(steps=4, crop=24, batch_size=2, checkpoint_every=2, **SMALL)
    train(blobs(2), tmp_path / "m.pt", stop_after=2, **kw)
    ckpt = checkpoint_path(tmp_path / "m.pt")
    _tamper(ckpt, **changes)
    with pytest.raises(InputError) as info:
        train(blobs(2), tmp_path / "m.pt", **kw)
    msg = str(info.value)
    assert "\n" not in msg and str(ckpt) in msg and "--no-resume" in msg, msg
    for w in words:
        assert w in msg, msg
    assert ckpt.exists() and not (tmp_path / "m.pt").exists()
    res = train(blobs(2), tmp_path / "m.pt", resume=False, **kw)  # starting afresh works
    assert res.steps == 4 and len(res.losses) == 4


def test_resume_refuses_optimizer_moments_of_the_wrong_shape(tmp_path):
    kw = dict(steps=4, crop=24, batch_size=2, checkpoint_every=2, **SMALL)
    train(blobs(2), tmp_path / "m.pt", stop_after=2, **kw)
    ckpt = checkpoint_path(tmp_path / "m.pt")
    opt = torch.load(ckpt, weights_only=True)["optimizer"]
    opt["state"][0]["exp_avg"] = torch.zeros(7)
    _tamper(ckpt, optimizer=opt)
    with pytest.raises(InputError, match=r"exp_avg of shape \(7,\)"):
        train(blobs(2), tmp_path / "m.pt", **kw)


def test_a_directory_at_the_checkpoint_path_is_refused_before_training(tmp_path):
    checkpoint_path(tmp_path / "m.pt").mkdir()
    for resume in (True, False):
        with pytest.raises(InputError, match="is a directory"):
            train(blobs(2), tmp_path / "m.pt", steps=2, crop=24, batch_size=2, resume=resume, **SMALL)
    assert not (tmp_path / "m.pt").exists()


def test_a_checkpoint_at_the_last_step_resumes_to_the_model_file(tmp_path):
    kw = dict(steps=3, crop=24, batch_size=2, checkpoint_every=1, **SMALL)
    part = train(blobs(2), tmp_path / "m.pt", stop_after=2, **kw)
    _tamper(part.path, step=3, losses=part.losses + [part.losses[-1]])
    res = train(blobs(2), tmp_path / "m.pt", **kw)
    assert res.path == tmp_path / "m.pt" and res.steps == 3 and len(res.losses) == 3
    assert not checkpoint_path(tmp_path / "m.pt").exists()


@pytest.mark.parametrize(
    "setting, value",
    [
        ("seed", -1),
        ("seed", 2**64),
        ("lr", 1e300),
        ("lr", float("inf")),
        ("lam", float("nan")),
        ("base", 0),
        ("levels", -1),
        ("threads", -1),
        ("steps", 2.5),
        ("n_classes", 2.7),
        ("n_classes", [2, 300]),
        ("crop", 8),
        ("color", "hsv"),
        ("kmeans_heads", -1),
    ],
)
def test_bad_settings_are_input_errors_naming_the_setting(tmp_path, setting, value):
    """``train`` checks every setting before any work, as ``segment`` does (these were raw errors from
    torch or numpy, ran, or were truncated: ``steps=2.5`` trained 2 steps)."""
    kwargs = dict(SMALL, steps=2, crop=32)
    kwargs[setting] = value
    with pytest.raises(InputError, match=setting):
        train(blobs(1), tmp_path / "m.pt", **kwargs)
    assert not (tmp_path / "m.pt").exists()
