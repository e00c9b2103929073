import sys

import numpy as np
import pytest
import torch

from napari_levelset import Segmenter, segment
from napari_levelset.errors import InputError
from napari_levelset.evaluation.synthetic import matched_iou, phantom
from napari_levelset.method.loss import class_means
from napari_levelset.nn.devices import resolve_device

CASES = [
    # shape, phases, channels
    ((96, 96), 2, None),
    ((96, 96), 3, None),
    ((96, 96), 4, None),
    ((96, 96), 3, 3),
    ((96, 96), 4, 3),
    ((24, 24, 24), 2, None),
    ((24, 24, 24), 3, None),
    ((20, 20, 20), 4, 3),
]


@pytest.mark.parametrize("shape,k,channels", CASES)
def test_recovers_piecewise_constant_phantoms(shape, k, channels):
    image, truth = phantom(shape, k, channels=channels, seed=k + len(shape))
    labels = segment(image, n_classes=k, device="cpu", seed=0, spatial_dims=len(shape))
    assert labels.shape == shape
    assert labels.dtype == np.uint8
    assert set(np.unique(labels)) <= set(range(1, k + 1))
    iou = matched_iou(labels, truth)
    assert iou.min() >= 0.95, iou


def brightness_stripes():
    """Three vertical stripes of grey levels 0.1, 0.5, 0.9 with a little noise."""
    rng = np.random.default_rng(3)
    image = np.repeat(np.array([0.1, 0.5, 0.9]), 32)[None, :].repeat(64, 0)
    return (image + rng.normal(0, 0.03, image.shape)).astype(np.float32)


def test_scribbles_decide_which_regions_go_together():
    image = brightness_stripes()
    stripe = np.repeat(np.arange(3), 32)[None, :].repeat(64, 0)

    def run(groups):
        scr = np.zeros(image.shape, np.uint8)
        for s, lab in enumerate(groups):
            scr[28:36, 32 * s + 10 : 32 * s + 22] = lab
        return segment(image, n_classes=2, scribbles=scr, device="cpu", iterations=100)

    left = run([1, 1, 2])  # middle stripe goes with the dark one
    right = run([1, 2, 2])  # middle stripe goes with the bright one
    want_left = np.where(stripe < 2, 1, 2)
    want_right = np.where(stripe < 1, 1, 2)
    assert matched_iou(left, want_left).min() >= 0.95
    assert matched_iou(right, want_right).min() >= 0.95
    # and the scribble value is the output label
    assert (left[stripe == 1] == 1).mean() > 0.95
    assert (right[stripe == 1] == 2).mean() > 0.95


def test_scribbles_added_during_a_run_take_effect():
    image = brightness_stripes()
    stripe = np.repeat(np.arange(3), 32)[None, :].repeat(64, 0)
    seg = Segmenter(image, 2, device="cpu")
    scr = np.zeros(image.shape, np.uint8)
    scr[28:36, 10:22], scr[28:36, 42:54], scr[28:36, 74:86] = 1, 2, 2
    for snap in seg.run(80, every=10):
        if snap.iteration == 10:
            seg.set_scribbles(scr)
    assert (snap.labels[stripe == 1] == 2).mean() > 0.95
    assert (snap.labels[stripe == 0] == 1).mean() > 0.95


def test_same_seed_same_result_whatever_the_snapshot_interval():
    image, _ = phantom((64, 64), 3, channels=3, seed=1)
    a = segment(image, 3, iterations=30, device="cpu", seed=7)
    seg = Segmenter(image, 3, device="cpu", seed=7)
    snaps = list(seg.run(30, every=3))
    np.testing.assert_array_equal(a, snaps[-1].labels)
    c = segment(image, 3, iterations=30, device="cpu", seed=8)
    assert c.shape == a.shape  # a different seed is allowed to differ, but must work


def test_label_ids_are_stable_across_snapshots_and_sorted_by_brightness():
    image, truth = phantom((64, 64), 4, seed=2)
    seg = Segmenter(image, 4, device="cpu")
    snaps = list(seg.run(60, every=5))
    # after the first snapshot every truth region keeps its label
    majority = lambda lab: [np.bincount(lab[truth == t]).argmax() for t in range(4)]  # noqa: E731
    first = majority(snaps[0].labels)
    for s in snaps[1:]:
        assert majority(s.labels) == first
    # grey levels of the phantom rise with the truth index, and so do the label ids
    assert first == [1, 2, 3, 4]


def test_position_channels_are_centred_and_isotropic():
    from napari_levelset.method.start import position_channels

    c = position_channels(torch.zeros(2, 3, 5, 9), 0.8)
    assert c.shape == (2, 2, 5, 9)
    assert torch.allclose(c[:, 1, 0], torch.linspace(-0.4, 0.4, 9).expand(2, 9))  # longest axis spans the weight
    assert torch.allclose(c[0, 0, :, 0], torch.arange(5.0).sub(2) * 0.1)  # same unit along the short axis
    assert torch.allclose(c.mean(dim=(2, 3)), torch.zeros(2, 2), atol=1e-6)


def test_position_separates_same_coloured_regions_far_apart():
    # two dark disks on a bright background: colour alone has two classes; with
    # coordinates in the data term, three classes split the disks (left, right)
    yy, xx = np.mgrid[:48, :96]
    image = np.ones((48, 96), np.float32)
    left = (yy - 24) ** 2 + (xx - 20) ** 2 < 12**2
    right = (yy - 24) ** 2 + (xx - 76) ** 2 < 12**2
    image[left | right] = 0.0
    plain = segment(image, 3, iterations=40, device="cpu")
    placed = segment(image, 3, iterations=40, device="cpu", position=2.0)
    assert np.bincount(plain[left]).argmax() == np.bincount(plain[right]).argmax()
    assert np.bincount(placed[left]).argmax() != np.bincount(placed[right]).argmax()
    # label ids still follow brightness: the disks' labels are below the background's
    inside = max(np.bincount(placed[left]).argmax(), np.bincount(placed[right]).argmax())
    assert inside < np.bincount(placed[~(left | right)]).argmax()


def test_streaming_snapshots_and_probabilities():
    image, _ = phantom((48, 40), 3, seed=0)
    seg = Segmenter(image, 3, device="cpu")
    snaps = list(seg.run(25, every=10, with_probs=True))
    assert [s.iteration for s in snaps] == [10, 20, 25]
    assert [s.done for s in snaps] == [False, False, True]
    last = snaps[-1]
    assert last.probs.shape == (3, 48, 40)
    np.testing.assert_allclose(last.probs.sum(0), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(last.probs.argmax(0) + 1, last.labels)
    assert np.isfinite(last.loss)
    assert last.settings["n_classes"] == 3 and last.settings["iteration"] == 25


def test_warm_start_continues_instead_of_restarting():
    image, _ = phantom((48, 48), 3, channels=3, seed=4)
    once = Segmenter(image, 3, device="cpu")
    list(once.run(20))
    twice = Segmenter(image, 3, device="cpu")
    list(twice.run(10))
    list(twice.run(10))
    assert twice.iteration == 20
    np.testing.assert_array_equal(once.labels(), twice.labels())
    for p, q in zip(once.model.parameters(), twice.model.parameters()):
        torch.testing.assert_close(p, q)


def test_state_round_trip_refines_from_where_it_stopped():
    image, _ = phantom((48, 48), 3, channels=3, seed=6)
    a = Segmenter(image, 3, device="cpu")
    list(a.run(20))
    state = a.state_dict()
    b = Segmenter(image, 3, device="cpu", seed=99)  # different start, then restored
    b.load_state_dict(state)
    assert b.iteration == 20
    a_logits = a.model(a.x)
    torch.testing.assert_close(b.model(b.x), a_logits)
    with pytest.raises(InputError, match="does not fit"):
        Segmenter(image, 4, device="cpu").load_state_dict(state)


def test_stop_ends_the_run_between_snapshots():
    image, _ = phantom((48, 48), 2, seed=0)
    seg = Segmenter(image, 2, device="cpu")
    seen = []
    for snap in seg.run(1000, every=5):
        seen.append(snap)
        if snap.iteration == 10:
            seg.stop()
    assert seen[-1].done and seen[-1].stopped
    assert seen[-1].iteration == 10  # asked between iterations: no further step is taken
    # a later run is not affected by the old stop request
    more = list(seg.run(5, every=5))
    assert more[-1].iteration == 15 and not more[-1].stopped


def test_a_stop_asked_as_a_run_hands_out_its_last_snapshot_is_kept():
    """The widget runs in chunks: a Stop pressed while a chunk's last snapshot was being handed out was
    forgotten as that chunk ended, and the run went on (a Stop that did not stop). It ends the next
    chunk before its first step."""
    image, _ = phantom((32, 32), 2, seed=0)
    seg = Segmenter(image, 2, device="cpu")
    chunk = seg.run(3, every=3)
    last = next(chunk)
    assert last.done and not last.stopped and last.iteration == 3
    seg.stop()
    assert list(chunk) == []
    after = list(seg.run(5, every=5))
    assert after[-1].stopped and after[-1].iteration == 3


def test_lambda_change_takes_effect_without_restart():
    image, _ = phantom((64, 64), 4, noise=0.25, seed=5)
    seg = Segmenter(image, 4, lam=0.0, device="cpu")
    list(seg.run(40))
    rough = seg.labels()
    seg.lam = 1.0
    list(seg.run(40))
    smooth = seg.labels()
    assert seg.iteration == 80
    boundary = lambda lab: (np.diff(lab, axis=0) != 0).sum() + (np.diff(lab, axis=1) != 0).sum()  # noqa: E731
    assert boundary(smooth) < 0.7 * boundary(rough)


@pytest.mark.parametrize(
    "image,kwargs,shape",
    [
        ((np.random.default_rng(0).random((40, 40)) * 255).astype(np.uint8), {}, (40, 40)),
        ((np.random.default_rng(0).random((40, 40)) * 60000).astype(np.uint16), {}, (40, 40)),
        (np.random.default_rng(0).random((40, 40)) > 0.5, {}, (40, 40)),
        (np.random.default_rng(0).random((40, 40, 3)), {}, (40, 40)),
        (np.random.default_rng(0).random((2, 40, 40)), {"channel_axis": 0}, (40, 40)),
        (np.random.default_rng(0).random((40, 40, 5)), {"channel_axis": -1}, (40, 40)),
        (np.random.default_rng(0).random((6, 24, 24)), {"spatial_dims": 2}, (6, 24, 24)),
        (np.random.default_rng(0).random((6, 24, 24)), {}, (6, 24, 24)),
    ],
)
def test_accepts_dtypes_channels_and_axes(image, kwargs, shape):
    labels = segment(image, 2, iterations=3, device="cpu", **kwargs)
    assert labels.shape == shape
    assert labels.min() >= 1 and labels.max() <= 2


def test_per_slice_segmentation_shares_labels_between_slices():
    image, truth = phantom((48, 48), 2, seed=3)
    stack = np.stack([image, image[::-1], image[:, ::-1]])
    truths = np.stack([truth, truth[::-1], truth[:, ::-1]])
    labels = segment(stack, 2, spatial_dims=2, device="cpu")
    assert labels.shape == stack.shape
    assert matched_iou(labels, truths).min() >= 0.95  # one matching for all slices


@pytest.mark.parametrize(
    "image,kwargs,message",
    [
        (np.zeros((20, 20)), {}, "constant"),
        (np.full((20, 20), np.nan), {}, "NaN"),
        (np.zeros((0, 20)), {}, "empty"),
        (np.random.rand(20, 20), {"n_classes": 1}, "at least 2 classes"),
        (np.random.rand(20, 20), {"lam": -1.0}, "lam"),
        (np.random.rand(20, 20), {"lr": 0.0}, "lr"),
        (np.random.rand(20, 20), {"scribbles": np.zeros((10, 10), np.uint8)}, "scribbles have shape"),
        (np.random.rand(20, 20), {"scribbles": np.full((20, 20), 5, np.uint8)}, "larger than the number of classes"),
        (np.random.rand(20), {}, "2 spatial axes"),
        (np.random.rand(2, 3, 4, 5, 6), {}, "cannot tell the axes"),
        (np.random.rand(20, 20), {"device": "tpu"}, "unknown device"),
        (np.random.rand(20, 20), {"position": -0.5}, "position"),
        (np.random.rand(20, 20), {"init": "random", "model": "unet"}, "init='random' is for the per-image CNN"),
    ],
)
def test_bad_input_gives_clear_errors(image, kwargs, message):
    kwargs = {"n_classes": 2, **kwargs}
    with pytest.raises(InputError, match=message):
        segment(image, iterations=2, device=kwargs.pop("device", "cpu"), **kwargs)


def test_auto_device_on_this_machine():
    dev = resolve_device("auto")
    if torch.cuda.is_available():
        assert dev.type == "cuda"
    else:
        assert dev.type in ("cpu", "mps")
        with pytest.raises(InputError, match="no CUDA device"):
            resolve_device("cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_recovers_phantom():
    image, truth = phantom((128, 128), 3, channels=3, seed=1)
    labels = segment(image, 3, device="cuda")
    assert matched_iou(labels, truth).min() >= 0.95


def test_images_too_large_for_memory_are_optimised_on_crops():
    image, truth = phantom((96, 128), 3, channels=3, seed=3)
    # position channels, as a colour photograph at N >= 8 or with regions gets them: on crops of a quarter of
    # the image two of these phases (lightness 0.46 and 0.67, same hue) merge without them at lam 0.05
    seg = Segmenter(image, 3, device="cpu", max_pixels=48 * 64, position=0.5)
    assert seg.settings["crop"] is not None
    assert seg.settings["crop"][0] * seg.settings["crop"][1] <= 48 * 64
    snaps = list(seg.run(150, every=50))
    assert matched_iou(snaps[-1].labels, truth).min() >= 0.95


def test_crop_steps_use_whole_image_class_means():
    """A crop holding one class must not drag the other classes' means to its own colour."""
    image, _truth = phantom((96, 128), 3, channels=3, seed=3)
    # position channels, as a colour photograph at N >= 8 or with regions gets them: on crops of a quarter of
    # the image two of these phases (lightness 0.46 and 0.67, same hue) merge without them at lam 0.05
    seg = Segmenter(image, 3, device="cpu", max_pixels=48 * 64, position=0.5)
    start = seg._mean_stats.clone()
    c0 = start[0, :, :-1] / start[0, :, -1:]
    # a crop of pure class-0 pixels: its soft means for the other classes are whatever few pixels leak
    x = seg.x[:, :, :8, :8]
    probs = torch.softmax(seg.model(x), 1).detach()
    means = seg._running_means(probs, x, torch.tensor([0]))
    assert torch.allclose(means[0], c0, atol=0.05 * float(c0.abs().max()))  # close to the start means
    own = class_means(probs, x)[0]
    assert (own - c0).abs().max() > (means[0] - c0).abs().max()


def test_tiled_labels_equal_whole_image_labels_in_eval_mode():
    image, _ = phantom((64, 80), 3, channels=3, seed=2)
    seg = Segmenter(image, 3, device="cpu", max_pixels=30 * 30)
    list(seg.run(20))
    tiled = seg._tiled_logits()
    seg.model.eval()
    with torch.no_grad():
        whole = seg.model(seg.x)
    torch.testing.assert_close(tiled, whole, rtol=1e-4, atol=1e-4)


def test_volume_slices_beyond_memory_are_sampled_per_step():
    stack = np.stack([phantom((40, 40), 2, seed=s)[0] for s in range(6)])
    truth = np.stack([phantom((40, 40), 2, seed=s)[1] for s in range(6)])
    seg = Segmenter(stack, 2, spatial_dims=2, device="cpu", max_pixels=2 * 40 * 40)
    assert seg.settings["crop"] == [40, 40]
    labels = list(seg.run(150, every=150))[-1].labels
    assert labels.shape == stack.shape
    assert matched_iou(labels, truth).min() >= 0.9


def test_colour_classes_are_ordered_by_lightness():
    """Dark red (L 24) is label 1 and light blue (L 69) label 2, though blue's a, b mean is lower."""
    image = np.zeros((40, 80, 3), np.uint8)
    image[:, :40] = (120, 0, 0)
    image[:, 40:] = (120, 170, 250)
    labels = segment(image, 2, iterations=10, device="cpu")
    assert labels[0, 0] == 1 and labels[0, -1] == 2


def test_volumes_with_axes_of_one_or_two_voxels():
    rng = np.random.default_rng(0)
    for shape in [(2, 20, 24), (1, 20, 24), (20, 2, 24)]:
        vol = rng.random(shape) * 0.1
        vol[..., 12:] += 1
        labels = segment(vol, 2, iterations=5, device="cpu", spatial_dims=3)
        assert labels.shape == shape and (labels[..., :12] != labels[..., 12:].max()).all()


def test_scribbles_a_direct_unet_would_ignore_are_an_error():
    image, _ = phantom((48, 64), 3, channels=3, seed=1)
    scribbles = np.zeros((48, 64), np.uint8)
    scribbles[:4, :4] = 1
    with pytest.raises(InputError, match="would ignore them"):
        segment(image, 3, model="unet", scribbles=scribbles, device="cpu")
    labels = segment(image, 3, model="unet", scribbles=scribbles, finetune_iterations=5, device="cpu")
    assert labels.shape == (48, 64)


def test_a_seed_gives_one_network_however_many_threads_build_at_once():
    """Segmenters built at once in several threads, while another thread reseeds and draws from
    torch's global generator, all start from the network of a lone build with that seed."""
    import threading

    import torch

    from napari_levelset.method.segmenter import Segmenter

    image = np.random.default_rng(0).random((24, 24)).astype(np.float32)
    reference = Segmenter(image, 3, seed=7).model.state_dict()
    stop = threading.Event()

    def hammer():
        k = 0
        while not stop.is_set():
            torch.manual_seed(k)
            torch.rand(64)
            k += 1

    results = []

    def build():
        for _ in range(4):
            results.append(Segmenter(image, 3, seed=7).model.state_dict())

    import sys

    noise = threading.Thread(target=hammer)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns often, as on a busy machine
    noise.start()
    builders = [threading.Thread(target=build) for _ in range(4)]
    try:
        for t in builders:
            t.start()
        for t in builders:
            t.join()
    finally:
        stop.set()
        noise.join()
        sys.setswitchinterval(switch)
    assert len(results) == 16
    for state in results:
        assert all(torch.equal(state[k], reference[k]) for k in reference)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's heap and page-fault counts")
def test_large_step_buffers_are_reused_not_faulted_in_again():
    # 512² with 32 channels: activations of 32 MiB, which glibc would mmap and unmap at every
    # step (about 160 000 minor page faults per step); kept in the heap they are reused
    import resource

    image = np.random.default_rng(0).random((512, 512)).astype(np.float32)
    seg = Segmenter(image, 2, device="cpu", width=32)
    seg.step(), seg.step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    seg.step(), seg.step()
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 2
    assert faults < 40_000


def test_a_class_stroked_during_a_run_takes_its_stroke_at_the_next_step():
    """A stroke for a class no stroke had marked restarts that class from the stroke's mean: its pixels change
    label at the next iteration (they used to need 15 or more, over a second in the widget)."""
    image, truth = phantom((64, 96), 3, seed=2)
    rng = np.random.default_rng(0)
    first = np.zeros(truth.shape, np.uint8)  # two regions painted as one class: class 3 is left without pixels
    for k, label in ((0, 1), (1, 2), (2, 2)):
        rows, cols = np.nonzero(truth == k)
        pick = rng.choice(rows.size, 40, replace=False)
        first[rows[pick], cols[pick]] = label
    seg = Segmenter(image, 3, device="cpu", scribbles=first)
    for _ in seg.run(20, every=20):
        pass
    region = truth == 2
    assert np.mean(seg.labels()[region] == 3) < 0.1  # the region is class 2's, as painted
    corrected = np.where(region & (first > 0), 3, first)  # the user repaints its strokes as class 3
    seg.set_scribbles(corrected)
    for _ in seg.run(1, every=1):
        pass
    labels = seg.labels()
    assert np.mean(labels[corrected == 3] == 3) > 0.5
    assert np.mean(labels[corrected == 1] == 1) > 0.9 and np.mean(labels[corrected == 2] == 2) > 0.9


def test_reading_the_labels_leaves_the_network_as_it_was():
    """``labels()`` computes the logits it needs in training mode; it used to move BatchNorm's running statistics,
    so looking at a result changed the network a result layer saves."""
    image, _ = phantom((32, 40), 3, seed=1)
    seg = Segmenter(image, 3, device="cpu")
    for _ in seg.run(3, every=3):
        pass
    state = seg.state_dict()
    seg.load_state_dict(state)  # as a restored run: the next labels need a forward pass
    before = {k: v.copy() for k, v in state["model"].items()}
    seg.labels()
    seg.probabilities()
    after = seg.state_dict()["model"]
    assert all(np.array_equal(before[k], after[k]) for k in before)
