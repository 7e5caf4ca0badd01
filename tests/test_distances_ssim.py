"""SSIM distance on each backend. Oracles: scikit-image's structural_similarity, autodiff vs finite
differences, adv_lib's ssim_loss (oracle env)."""

import numpy as np
import pytest
from helpers import (
    directional_check,
    float64,
    skimage_distance,
    to_numpy,
    to_tensor,
    value_and_grad,
)

from foolbox_alma.distances import SSIM, get_distance, ssim
from foolbox_alma.distances.ssim import gaussian_window

SHAPE = (2, 3, 16, 13)  # channels first; one shape for all tests keeps JAX's op cache warm


def random_pair(shape=SHAPE, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=shape)
    return x, np.clip(x + rng.normal(scale=0.1, size=shape), 0, 1)


def test_gaussian_window_is_scipys():
    ndimage = pytest.importorskip("scipy.ndimage")
    impulse = np.zeros(11)
    impulse[5] = 1
    np.testing.assert_allclose(
        ndimage.gaussian_filter1d(impulse, 1.5, mode="constant", truncate=3.5),
        gaussian_window(),
        rtol=1e-12,
    )


def test_matches_scikit_image(fw):
    x, y = random_pair()
    expected = skimage_distance(x, y)
    with float64(fw.name):
        got = to_numpy(ssim(fw.tensor(x), fw.tensor(y)))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert np.abs(got / expected - 1).max() < 1e-10  # what is measured: float64 round-off


def test_layouts_channel_counts_and_bounds(fw):
    x, y = random_pair(seed=1)
    xl, yl = x.transpose(0, 2, 3, 1), y.transpose(0, 2, 3, 1)
    with float64(fw.name):
        first = to_numpy(ssim(fw.tensor(x), fw.tensor(y)))
        last = to_numpy(ssim(fw.tensor(xl), fw.tensor(yl)))
        in_255 = to_numpy(SSIM(bounds=(0, 255))(fw.tensor(255 * x), fw.tensor(255 * y)))
        bound = ssim.bind((-1, 1), "channels_last")
        from_bind = bound(to_tensor(fw.name, 2 * xl - 1), to_tensor(fw.name, 2 * yl - 1)).numpy()
        gray = to_numpy(ssim(fw.tensor(x[:, :1]), fw.tensor(y[:, :1])))
        four = np.concatenate([x, x[:, :1]], axis=1), np.concatenate([y, y[:, :1]], axis=1)
        rgba = to_numpy(SSIM(channel_axis=1)(fw.tensor(four[0]), fw.tensor(four[1])))
    np.testing.assert_allclose(last, first, rtol=1e-10)
    np.testing.assert_allclose(in_255, first, rtol=1e-10)
    np.testing.assert_allclose(from_bind, first, rtol=1e-10)
    np.testing.assert_allclose(gray, skimage_distance(x[:, :1], y[:, :1]), rtol=1e-10)
    np.testing.assert_allclose(rgba, skimage_distance(*four), rtol=1e-10)


def test_float32_close_to_float64(fw):
    x, y = random_pair(seed=2)
    got = to_numpy(ssim(fw.tensor(x.astype(np.float32)), fw.tensor(y.astype(np.float32))))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, skimage_distance(x, y), rtol=1e-4)


def test_gradient_matches_finite_differences(fw):
    x, y = random_pair(seed=3)

    def fn(t):
        return ssim.compute(to_tensor(fw.name, x), t)

    autodiff, finite = directional_check(fn, y, fw.name)
    assert autodiff == pytest.approx(finite, rel=1e-5)


@pytest.mark.parametrize("kind", ["random", "black", "white"])
def test_finite_at_zero_perturbation(fw, kind):
    x, _ = random_pair(seed=4)
    x = {"random": x, "black": np.zeros_like(x), "white": np.ones_like(x)}[kind]
    with float64(fw.name):
        values, grad = value_and_grad(
            lambda t: ssim.compute(to_tensor(fw.name, x), t), to_tensor(fw.name, x)
        )
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() < 1e-8
    assert np.abs(values).max() < 1e-12


def test_clip_perturbation_bisects_to_epsilon(fw):
    x, y = random_pair(seed=5)
    with float64(fw.name):
        full = to_numpy(ssim(fw.tensor(x), fw.tensor(y)))
        epsilon = float(full.min()) / 2
        clipped = to_numpy(ssim.clip_perturbation(fw.tensor(x), fw.tensor(y), epsilon))
        after = to_numpy(ssim(fw.tensor(x), fw.tensor(clipped)))
    assert np.all(after <= epsilon) and np.all(after >= epsilon * (1 - 2e-3))


def test_errors(fw):
    small = np.zeros((1, 3, 10, 12))
    with pytest.raises(ValueError, match="at least 11"):
        ssim(fw.tensor(small), fw.tensor(small))
    with pytest.raises(ValueError, match="channel_axis"):
        ssim(fw.tensor(np.zeros((1, 4, 12, 12))), fw.tensor(np.zeros((1, 4, 12, 12))))
    with pytest.raises(ValueError, match="differ in shape"):
        ssim(fw.tensor(np.zeros((1, 3, 12, 12))), fw.tensor(np.zeros((1, 3, 12, 13))))


def test_registry_and_paper_settings():
    assert get_distance("ssim") is ssim
    assert ssim.init_lr_distance == "auto" and not ssim.homogeneous  # README, "Defaults"


@pytest.mark.oracle
def test_adv_lib_ssim_loss():
    torch = pytest.importorskip("torch")
    structural_similarity = pytest.importorskip("adv_lib.distances.structural_similarity")
    x, y = random_pair(shape=(3, 3, 32, 32), seed=6)
    theirs = structural_similarity.ssim_loss(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    ours = ssim(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)
