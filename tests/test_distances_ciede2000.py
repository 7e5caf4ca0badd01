"""CIEDE2000 on each backend. Oracles: the 34 published pairs of Sharma, Wu and Dalal (2005),
colour-science (sRGB -> Lab -> Delta E00), autodiff vs finite differences, adv_lib (oracle env)."""

import os

import numpy as np
import pytest
from helpers import (
    colour_ciede2000,
    colour_lab,
    directional_check,
    float64,
    to_numpy,
    to_tensor,
    value_and_grad,
)

from foolbox_alma.distances import CIEDE2000, ciede2000, delta_e_00, get_distance
from foolbox_alma.distances.ciede2000 import srgb_to_lab

SHARMA = np.loadtxt(os.path.join(os.path.dirname(__file__), "data", "ciede2000_sharma2005.txt"))


def random_pair(shape=(2, 3, 8, 8), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=shape)
    return x, np.clip(x + rng.normal(scale=0.1, size=shape), 0, 1)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sharma_test_data(fw, dtype):
    with float64(fw.name):
        lab = to_tensor(fw.name, SHARMA[:, :6].astype(dtype))
        forward = to_numpy(delta_e_00(lab[:, :3], lab[:, 3:]))
        backward = to_numpy(delta_e_00(lab[:, 3:], lab[:, :3]))  # symmetric
    if dtype == "float64":  # to the 4 published decimals
        np.testing.assert_array_equal(np.round(forward, 4), SHARMA[:, 6])
        np.testing.assert_array_equal(np.round(backward, 4), SHARMA[:, 6])
    else:
        np.testing.assert_allclose(forward, SHARMA[:, 6], atol=2e-4)
        np.testing.assert_allclose(backward, SHARMA[:, 6], atol=2e-4)


def test_srgb_to_lab_matches_colour_science(fw):
    x, _ = random_pair()
    rows = np.moveaxis(x, 1, -1).reshape(-1, 3)
    with float64(fw.name):
        lab = srgb_to_lab(to_tensor(fw.name, rows)).numpy()
    np.testing.assert_allclose(lab, colour_lab(x).reshape(-1, 3), rtol=1e-10, atol=1e-9)


def test_matches_colour_science(fw):
    x, y = random_pair(seed=1)
    expected = colour_ciede2000(x, y)
    with float64(fw.name):
        got = to_numpy(ciede2000(fw.tensor(x), fw.tensor(y)))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert np.abs(got / expected - 1).max() < 1e-10  # what is measured: float64 round-off


def test_adv_lib_scale_is_colour_science_on_xyz_over_100(fw):
    x, y = random_pair(seed=2)
    expected = colour_ciede2000(x, y, xyz_scale=0.01)
    with float64(fw.name):
        got = to_numpy(CIEDE2000(adv_lib_scale=True)(fw.tensor(x), fw.tensor(y)))
        standard = to_numpy(ciede2000(fw.tensor(x), fw.tensor(y)))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert np.all(standard > 2 * got)  # the adv_lib scale is several times smaller


def test_float32_close_to_float64(fw):
    x, y = random_pair(seed=3)
    expected = colour_ciede2000(x, y)
    got = to_numpy(ciede2000(fw.tensor(x.astype(np.float32)), fw.tensor(y.astype(np.float32))))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_layouts_gray_and_bounds(fw):
    with float64(fw.name):
        _check_layouts_gray_and_bounds(fw)


def _check_layouts_gray_and_bounds(fw):
    x, y = random_pair(seed=4)
    first = to_numpy(ciede2000(fw.tensor(x), fw.tensor(y)))
    xl, yl = x.transpose(0, 2, 3, 1), y.transpose(0, 2, 3, 1)
    last = to_numpy(ciede2000(fw.tensor(xl), fw.tensor(yl)))
    np.testing.assert_allclose(last, first, rtol=1e-10)
    in_255 = CIEDE2000(bounds=(0, 255))(fw.tensor(255 * x), fw.tensor(255 * y))
    np.testing.assert_allclose(to_numpy(in_255), first, rtol=1e-10)
    # bind: the model's bounds and data_format
    bound = ciede2000.bind((0, 255), "channels_last")
    got = bound(to_tensor(fw.name, 255 * xl), to_tensor(fw.name, 255 * yl)).numpy()
    np.testing.assert_allclose(got, first, rtol=1e-10)
    # gray = gray RGB
    gray_x, gray_y = x[:, :1], y[:, :1]
    gray = to_numpy(ciede2000(fw.tensor(gray_x), fw.tensor(gray_y)))
    rgb = to_numpy(ciede2000(fw.tensor(gray_x.repeat(3, 1)), fw.tensor(gray_y.repeat(3, 1))))
    np.testing.assert_allclose(gray, rgb, rtol=1e-10)


def test_gradient_matches_finite_differences(fw):
    x, y = random_pair(seed=5)
    y = 0.1 + 0.8 * y  # away from the kinks of the sRGB curve at 0.04045 and of the box

    def fn(t):
        return ciede2000.compute(to_tensor(fw.name, x), t)

    autodiff, finite = directional_check(fn, y, fw.name)
    assert autodiff == pytest.approx(finite, rel=1e-5)


@pytest.mark.parametrize("kind", ["random", "black", "white", "gray", "saturated"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_finite_at_zero_perturbation_and_achromatic_colours(fw, kind, dtype):
    x, _ = random_pair(seed=6)
    x = {
        "random": x,
        "black": np.zeros_like(x),
        "white": np.ones_like(x),
        "gray": np.full_like(x, 0.5),
        "saturated": (x > 0.5).astype(x.dtype),
    }[kind].astype(dtype)
    step = np.zeros_like(x)
    step[:, :, 0, 0] = 1e-3  # one pixel changed, the others equal (zero perturbation there)
    with float64(fw.name):
        reference = to_tensor(fw.name, x)
        for perturbed in (x, np.clip(x + step, 0, 1), np.clip(x - step, 0, 1)):
            values, grad = value_and_grad(
                lambda t: ciede2000.compute(reference, t), to_tensor(fw.name, perturbed)
            )
            assert np.all(np.isfinite(values)) and np.all(np.isfinite(grad))
        values, grad = value_and_grad(lambda t: ciede2000.compute(reference, t), reference)
    assert np.all(values == 0) and np.all(grad == 0)


def test_clip_perturbation_bisects_to_epsilon(fw):
    x, y = random_pair(seed=7)
    with float64(fw.name):
        full = to_numpy(ciede2000(fw.tensor(x), fw.tensor(y)))
        epsilon = float(np.median(full))
        clipped = to_numpy(ciede2000.clip_perturbation(fw.tensor(x), fw.tensor(y), epsilon))
        after = to_numpy(ciede2000(fw.tensor(x), fw.tensor(clipped)))
    inside = full <= epsilon
    np.testing.assert_array_equal(clipped[inside], y[inside])
    assert np.all(after <= epsilon)
    assert np.all(after[~inside] >= epsilon * (1 - 2e-3))
    assert clipped.min() >= 0 and clipped.max() <= 1


def test_channel_errors(fw):
    x = np.zeros((2, 4, 5, 5))
    with pytest.raises(ValueError, match="3 channels"):
        CIEDE2000(channel_axis=1)(fw.tensor(x), fw.tensor(x))
    with pytest.raises(ValueError, match="channel_axis"):
        ciede2000(fw.tensor(np.zeros((2, 3, 3, 3))), fw.tensor(np.zeros((2, 3, 3, 3))))
    with pytest.raises(ValueError, match="channel_axis"):
        ciede2000(fw.tensor(x), fw.tensor(x))


def test_registry_and_paper_settings():
    assert get_distance("ciede2000") is ciede2000
    assert get_distance("CIEDE2000") is ciede2000
    assert not ciede2000.homogeneous
    # the paper's step size stays with adv_lib's scale; the standard scale's is calibrated
    assert CIEDE2000(adv_lib_scale=True).init_lr_distance == 0.05
    assert ciede2000.init_lr_distance > 0.05
    assert "adv_lib_scale=True" in repr(CIEDE2000(adv_lib_scale=True))
    # the paper's scale by name (the bench's adv_lib rows are measured with it)
    named = get_distance("ciede2000-adv_lib")
    assert named.adv_lib_scale and named.init_lr_distance == 0.05
    x, y = np.random.default_rng(3).uniform(size=(2, 2, 3, 4, 4))
    np.testing.assert_array_equal(named(x, y), CIEDE2000(adv_lib_scale=True)(x, y))


@pytest.mark.oracle
def test_adv_lib_ciede2000_loss_scale():
    """adv_lib's ciede2000_loss (the paper's tables) equals CIEDE2000(adv_lib_scale=True) up to
    adv_lib's slightly different sRGB matrix and white point (Lindbloom's, 7 decimals)."""
    torch = pytest.importorskip("torch")
    color_difference = pytest.importorskip("adv_lib.distances.color_difference")
    x, y = random_pair(shape=(4, 3, 8, 8), seed=8)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    # adv_lib computes in float32 only
    theirs = color_difference.ciede2000_loss(tx.float(), ty.float()).double().numpy()
    ours = CIEDE2000(adv_lib_scale=True)(tx, ty).numpy()
    standard = ciede2000(tx, ty).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-3)
    assert np.all(standard / theirs > 3)
