import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_levelset.method.loss import (
    LOGIT_FLOOR,
    class_means,
    class_probs,
    data_term,
    levelset_loss,
    scribble_loss,
    total_variation,
)


def brute_force_loss(probs: np.ndarray, image: np.ndarray, lam: float, eps: float = 1e-8) -> float:
    """The loss of the issue written as plain loops over items, classes, pixels, channels and axes."""
    B, N = probs.shape[:2]
    C = image.shape[1]
    spatial = probs.shape[2:]
    npix = int(np.prod(spatial))
    total = 0.0
    for b in range(B):
        data = 0.0
        tv = 0.0
        for n in range(N):
            y = probs[b, n]
            for c in range(C):
                x = image[b, c]
                num = 0.0
                den = 0.0
                for r in np.ndindex(*spatial):
                    num += x[r] * y[r]
                    den += y[r]
                cn = num / (den + eps)
                for r in np.ndindex(*spatial):
                    data += (x[r] - cn) ** 2 * y[r]
            for ax in range(len(spatial)):
                for r in np.ndindex(*spatial):
                    if r[ax] + 1 < spatial[ax]:
                        r2 = list(r)
                        r2[ax] += 1
                        tv += abs(y[tuple(r2)] - y[r])
        total += (data + lam * tv) / npix
    return total / B


def random_inputs(shape, n, c, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn((shape[0], n) + shape[1:], generator=g, dtype=dtype)
    image = torch.rand((shape[0], c) + shape[1:], generator=g, dtype=dtype)
    return torch.softmax(logits, 1), image


@pytest.mark.parametrize(
    "shape,n,c,lam",
    [((2, 5, 6), 3, 1, 0.3), ((1, 7, 4), 2, 3, 0.0), ((2, 3, 4, 5), 4, 2, 0.7), ((1, 4, 3, 3), 2, 1, 2.0)],
)
def test_matches_brute_force(shape, n, c, lam):
    probs, image = random_inputs(shape, n, c, seed=len(shape) * 10 + n)
    got = levelset_loss(probs, image, lam).item()
    want = brute_force_loss(probs.numpy(), image.numpy(), lam)
    assert got == pytest.approx(want, rel=1e-10, abs=1e-12)


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 3, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    image = torch.rand(1, 2, 4, 5, generator=g, dtype=torch.float64)

    def f(z):
        return levelset_loss(torch.softmax(z, 1), image, 0.5)

    assert torch.autograd.gradcheck(f, (logits,), eps=1e-6, atol=1e-6)


def test_invariant_to_batch_split():
    probs, image = random_inputs((4, 6, 7), 3, 2, seed=5)
    whole = levelset_loss(probs, image, 0.4)
    halves = (levelset_loss(probs[:2], image[:2], 0.4) + levelset_loss(probs[2:], image[2:], 0.4)) / 2
    singles = sum(levelset_loss(probs[i : i + 1], image[i : i + 1], 0.4) for i in range(4)) / 4
    assert whole.item() == pytest.approx(halves.item(), rel=1e-12)
    assert whole.item() == pytest.approx(singles.item(), rel=1e-12)


def test_perfect_partition_of_piecewise_constant_image_has_zero_data_term():
    image = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    image[..., 2:] = 1.0
    probs = torch.cat([1 - image, image], 1)
    assert levelset_loss(probs, image, 0.0).item() == pytest.approx(0.0, abs=1e-12)
    # one vertical boundary of length 4 between the two halves, counted for both classes
    assert total_variation(probs).item() == pytest.approx(2 * 4 / 16)
    means = class_means(probs, image)
    assert means[0, :, 0].tolist() == pytest.approx([0.0, 1.0])


def test_lambda_does_not_depend_on_image_size():
    # The same pattern at two sizes gives the same loss: both terms are per-pixel means.
    small = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    small[..., :, 4:] = 1
    big = F.interpolate(small, scale_factor=2, mode="nearest")
    soft = lambda x: torch.cat([0.9 - 0.8 * x, 0.1 + 0.8 * x], 1)  # noqa: E731
    a = levelset_loss(soft(small), small, 0.0).item()
    b = levelset_loss(soft(big), big, 0.0).item()
    assert a == pytest.approx(b, rel=1e-12)


def test_shape_mismatch_is_an_error():
    probs, image = random_inputs((1, 4, 4), 2, 1, seed=0)
    with pytest.raises(ValueError, match="does not match"):
        levelset_loss(probs, image[..., :3], 0.1)


def test_scribble_loss_only_counts_labelled_pixels():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 3, 5, 5, generator=g)
    scr = torch.zeros(1, 5, 5, dtype=torch.long)
    scr[0, 0, 0] = 1
    scr[0, 4, 4] = 3
    got = scribble_loss(logits, scr)
    want = (
        F.cross_entropy(logits[:, :, 0, 0], torch.tensor([0])) + F.cross_entropy(logits[:, :, 4, 4], torch.tensor([2]))
    ) / 2
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    changed = logits.clone()
    changed[0, :, 2, 2] += 5.0  # an unlabelled pixel
    assert scribble_loss(changed, scr).item() == pytest.approx(got.item(), rel=1e-6)


def test_scribble_loss_is_zero_without_scribbles_and_keeps_graph():
    logits = torch.randn(1, 2, 3, 3, requires_grad=True)
    for s in (None, torch.zeros(1, 3, 3, dtype=torch.long)):
        loss = scribble_loss(logits, s)
        assert loss.item() == 0.0
        loss.backward()
        assert logits.grad is not None and float(logits.grad.abs().sum()) == 0.0


def test_scribble_value_beyond_classes_is_rejected():
    logits = torch.randn(1, 2, 3, 3)
    scr = torch.zeros(1, 3, 3, dtype=torch.long)
    scr[0, 1, 1] = 3
    with pytest.raises(ValueError, match="exceeds"):
        scribble_loss(logits, scr)


def test_scribble_loss_without_labelled_pixels_in_a_crop_is_zero_not_nan():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = scribble_loss(logits, torch.zeros(1, 4, 4, dtype=torch.long), check=False)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_fixed_means_give_the_same_value_and_constant_means():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 9, 11, requires_grad=True)
    image = torch.rand(2, 4, 9, 11)
    probs = torch.softmax(logits, 1)
    means = class_means(probs, image)
    assert torch.allclose(levelset_loss(probs, image, 0.1), levelset_loss(probs, image, 0.1, means=means), atol=1e-6)
    # with fixed means the data term is sum_n sum_r |x - c_n|^2 y_n exactly (no gradient through c)
    fixed = torch.rand(2, 3, 4)
    brute = ((image[:, None] - fixed[..., None, None]) ** 2).sum(2)  # B N H W
    expect = (brute * probs).sum((1, 2, 3)) / (9 * 11)
    assert torch.allclose(data_term(probs, image, means=fixed), expect, atol=1e-6)
    with pytest.raises(ValueError, match="means must be"):
        data_term(probs, image, means=torch.rand(2, 3, 3))


def test_class_probs_is_the_softmax_for_ordinary_logits():
    logits = torch.randn(2, 5, 8, 9, dtype=torch.float64) * 4
    assert torch.allclose(class_probs(logits), torch.softmax(logits, 1), atol=1e-15)


def test_class_probs_of_extreme_logits_has_no_subnormal_numbers_forward_or_backward():
    # logits hundreds apart, as after a k-means start on well-separated colours
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(1, 6, 32, 32, generator=g) * 300).requires_grad_()
    image = torch.rand(1, 3, 32, 32, generator=g)
    probs = class_probs(logits)
    levelset_loss(probs, image, 0.05).backward()

    def subnormal(t):
        a = t.detach().abs()
        return int(((a > 0) & (a < torch.finfo(torch.float32).tiny)).sum())

    assert subnormal(probs) == 0 and subnormal(logits.grad) == 0
    assert float(probs.min()) >= np.exp(-LOGIT_FLOOR) / 6 * 0.99  # floored, and still a distribution
    assert torch.allclose(probs.sum(1), torch.ones(1, 32, 32))
    # the plain softmax does produce them here: the floor is what removes them
    logits2 = logits.detach().clone().requires_grad_()
    levelset_loss(torch.softmax(logits2, 1), image, 0.05).backward()
    assert subnormal(logits2.grad) > 0
