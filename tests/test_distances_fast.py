"""The PyTorch fast paths of CIEDE2000, SSIM, MS-SSIM and LPIPS (``_fast`` and the
``_torch_*`` modules) and their reference cache (``_prepared``). Oracles: the generic EagerPy
code (the same distance through autograd), colour-science, the 34 published CIEDE2000 pairs,
finite differences.

What they would catch: a wrong line in a hand-written gradient, a fast path whose values drift
from the generic code's, and a stale cache (the classic bug of reusing the reference's prepared
half): the same tensor changed in place (seen by PyTorch's version counter, or not: through
``.data`` or shared NumPy memory), another tensor with the same values, a new batch.
"""

import gc
import os

import eagerpy as ep
import numpy as np
import pytest
from helpers import colour_ciede2000, random_alexnet

from foolbox_alma import ALMA
from foolbox_alma.distances import CIEDE2000, LPIPS, MSSSIM, SSIM, _fast, ciede2000, ssim

torch = pytest.importorskip("torch")
_torch_ciede2000 = pytest.importorskip("foolbox_alma.distances._torch_ciede2000")

SHARMA = np.loadtxt(os.path.join(os.path.dirname(__file__), "data", "ciede2000_sharma2005.txt"))
KINDS = ("random", "gray", "white", "black", "saturated", "gray pixels")


def images(kind="random", shape=(3, 3, 12, 12), seed=0, noise=0.1, dtype=torch.float64, low=0.0):
    """A reference batch of a kind and a perturbed copy (noise clipped to [low, 1]; some pixels
    and one whole image left unchanged)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=shape)
    x = {
        "random": x,
        "gray": np.full_like(x, 0.5),
        "white": np.ones_like(x),
        "black": np.zeros_like(x),
        "saturated": (x > 0.5).astype(x.dtype),
        "gray pixels": np.repeat(x[:, :1], shape[1], axis=1),
    }[kind]
    y = np.clip(x + rng.normal(scale=noise, size=shape), low, 1)
    y[:, :, 0, 0] = x[:, :, 0, 0]
    y[0] = x[0]
    return torch.tensor(x, dtype=dtype), torch.tensor(y, dtype=dtype)


def measure(distance_fn, x, y, generic=False):
    """Per-sample values and the gradient of their sum w.r.t. ``y``."""
    t = y.clone().requires_grad_()
    if generic:
        with _fast.generic_distances():
            value = distance_fn(x, t)
    else:
        value = distance_fn(x, t)
    (grad,) = torch.autograd.grad(value.sum(), t)
    return value.detach().numpy(), grad.numpy()


def relative(a, b):
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


# -- the fast paths against the generic code --------------------------------------------------


DISTANCES = {
    "ciede2000": lambda: CIEDE2000(),
    "ciede2000-adv_lib": lambda: CIEDE2000(adv_lib_scale=True),
    "ssim": lambda: SSIM(),
    "msssim": lambda: MSSSIM(),
    "lpips": lambda: LPIPS(random_alexnet()),
}
SHAPES = {"lpips": (3, 3, 32, 32), "msssim": (2, 3, 161, 163)}  # AlexNet 31, five scales 161


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kind", ["random", "gray", "white", "gray pixels"])
@pytest.mark.parametrize("name", sorted(DISTANCES))
def test_fast_path_is_the_generic_code(name, kind, dtype):
    distance = DISTANCES[name]()
    # perturbed pixels clipped to black: test_black_pixels_gradient
    x, y = images(kind, shape=SHAPES.get(name, (3, 3, 12, 12)), dtype=dtype, low=0.01)
    fast_value, fast_grad = measure(distance, x, y)
    generic_value, generic_grad = measure(distance, x, y, generic=True)
    # float64: round-off; float32: its round-off through the colour conversion and the formula
    # (MS-SSIM: 1 - a product of five powers near 1; fast and generic are both 2.5e-4 from
    # float64 there)
    value_tol, grad_tol = (1e-12, 1e-11) if dtype == torch.float64 else (1e-5, 1e-4)
    if name == "msssim":
        value_tol, grad_tol = (1e-11, 1e-11) if dtype == torch.float64 else (5e-4, 5e-4)
    np.testing.assert_allclose(fast_value, generic_value, rtol=value_tol, atol=0)
    assert relative(fast_grad, generic_grad) < grad_tol
    # the unchanged image: 0, with a zero gradient (CIEDE2000 masks unchanged pixels; SSIM's is
    # round-off, as the generic code's; LPIPS's too, relative to its gradients)
    zero_grad = {"ssim": 1e-8, "msssim": 1e-8, "lpips": 1e-6 * np.abs(generic_grad).max()}
    zero_grad = zero_grad.get(name, 0)
    assert fast_value[0] == 0 and np.abs(fast_grad[0]).max() <= zero_grad


@pytest.mark.parametrize("kind", ["black", "saturated"])
def test_ciede2000_on_black_is_colour_science(kind):
    """Black has a* = b* = 0 exactly here; the generic code's matrix product leaves a round-off
    chroma that takes it through the chromatic branch: colour-science is the referee."""
    x, y = images(kind)
    expected = colour_ciede2000(x.numpy(), y.numpy())
    fast = ciede2000(x, y).numpy()
    with _fast.generic_distances():
        generic = ciede2000(x, y).numpy()
    changed = expected > 0
    assert np.abs(fast[changed] / expected[changed] - 1).max() < 1e-6
    assert np.abs(generic[changed] / expected[changed] - 1).max() < 1e-4  # measured: 2.4e-5


def test_black_pixels_gradient():
    """Perturbed pixels clipped to black (ALMA's box projection makes many): the generic code's
    a* and b* of black are round-off (7e-15), so its gradient there is round-off amplified by
    the hue's 1 / chroma (measured: 5e3 against -0.017 on one such pixel); the fast path's is
    the derivative of the distance (finite differences)."""
    x, y = images("gray pixels")
    black = (y == 0).all(dim=1)
    assert black.any()
    _, grad = measure(ciede2000, x, y)
    direction = torch.zeros_like(y)
    direction[black[:, None].expand_as(y)] = 1.0
    step = 1e-5  # smaller steps meet the round-off of colours within 1e-6 of black
    plus = ciede2000(x, y + step * direction).sum().item()
    minus = ciede2000(x, y - step * direction).sum().item()
    autodiff = float((torch.from_numpy(grad) * direction).sum())
    assert autodiff == pytest.approx((plus - minus) / (2 * step), rel=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["ciede2000", "ssim"])
def test_gradient_matches_finite_differences(name, kind):
    if name == "ciede2000" and kind == "gray":
        pytest.skip("colours within 1e-3 of gray: the hue's curvature defeats finite differences")
    distance = ciede2000 if name == "ciede2000" else ssim
    x, y = images(kind, seed=1, noise=0.05)
    y = 0.02 + 0.96 * y  # off the box; black and white references stay
    y[:, :, 0, 0] = x[:, :, 0, 0]
    _, grad = measure(distance, x, y)
    direction = torch.from_numpy(np.random.default_rng(2).standard_normal(y.shape))
    step = 1e-6
    plus = distance(x, y + step * direction).sum().item()
    minus = distance(x, y - step * direction).sum().item()
    autodiff = float((torch.from_numpy(grad) * direction).sum())
    assert autodiff == pytest.approx((plus - minus) / (2 * step), rel=1e-5)


@pytest.mark.parametrize("channel_axis", [1, 2, 3])
@pytest.mark.parametrize("name", ["ciede2000", "ssim"])
def test_layouts_bounds_and_gray(name, channel_axis):
    make = CIEDE2000 if name == "ciede2000" else SSIM
    x, y = images(shape=(2, 3, 14, 12))
    moved_x, moved_y = (t.movedim(1, channel_axis) for t in (x, y))
    expected, expected_grad = measure(make(), x, y)
    in_255 = make(channel_axis=channel_axis, bounds=(0, 255))
    got, grad = measure(in_255, 255 * moved_x, 255 * moved_y)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert relative(np.moveaxis(grad, channel_axis, 1) * 255, expected_grad) < 1e-12
    # 1 channel: gray for CIEDE2000 (kept off black: see test_ciede2000_on_black_...), one plane
    # for SSIM
    gray_x, gray_y = x[:, :1].clamp_min(0.01), y[:, :1].clamp_min(0.01)
    fast = measure(make(channel_axis=1), gray_x, gray_y)
    generic = measure(make(channel_axis=1), gray_x, gray_y, generic=True)
    np.testing.assert_allclose(fast[0], generic[0], rtol=1e-12)
    assert relative(fast[1], generic[1]) < 1e-11


def test_ciede2000_kernel_on_the_published_pairs():
    for dtype, tolerance in ((torch.float64, 5e-5), (torch.float32, 2e-4)):
        planes = torch.tensor(SHARMA[:, :6], dtype=dtype).T[:, :, None]  # 6 x (34, 1)
        lab = [_torch_ciede2000.Lab(*p, torch.sqrt(p[1] ** 2 + p[2] ** 2 + 1e-12)) for p in
               (planes[:3], planes[3:])]  # fmt: skip
        for first, second in (lab, lab[::-1]):
            squared, _ = _torch_ciede2000.delta_e_00_squared(first, second)
            got = torch.sqrt(squared)[:, 0].double().numpy()
            np.testing.assert_allclose(got, SHARMA[:, 6], atol=tolerance)
    # the published pairs to their 4 decimals, in float64
    np.testing.assert_array_equal(np.round(got, 4), SHARMA[:, 6])


def test_torch_ops_are_exact_where_they_say_so():
    ops = pytest.importorskip("foolbox_alma.distances._torch_ops")
    d = torch.tensor([-1.0, -0.0, 0.0, 1e-45, 2.0])  # 1e-45: a float32 denormal
    assert ops.step(d).tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    a, b = torch.tensor([1e30, -3.0, 0.1]), torch.tensor([7.0, 1e-30, -2.5])
    assert torch.equal(
        ops.select(torch.tensor([1.0, 0.0, 1.0]), a, b), torch.tensor([1e30, 1e-30, 0.1])
    )
    x = torch.rand(10000, dtype=torch.float64) + 0.05
    np.testing.assert_allclose(ops.power(x, 2.4).numpy(), (x**2.4).numpy(), rtol=1e-14)
    np.testing.assert_allclose(ops.power(x.float(), 2.4).numpy(), (x**2.4).numpy(), rtol=2e-6)
    sixth, seventh = ops.seventh(x)
    np.testing.assert_allclose(sixth.numpy(), (x**6).numpy(), rtol=1e-14)
    np.testing.assert_allclose(seventh.numpy(), (x**7).numpy(), rtol=1e-14)


def test_other_backends_take_the_generic_code():
    fast = _fast.FastPath(_fast.torch_kernel("_torch_ssim", 1), (0, 1))
    x = np.random.default_rng(0).uniform(size=(1, 3, 12, 12))
    assert fast(ep.astensor(x), ep.astensor(x)) is None  # NumPy: no fast path
    assert fast.cache.hits + fast.cache.misses == 0


def test_value_only_calls_take_no_gradient():
    x, y = images()
    with torch.no_grad():
        value = ciede2000(x, y.requires_grad_())
    assert not value.requires_grad
    np.testing.assert_allclose(value.numpy(), measure(ciede2000, x, y.detach())[0], rtol=1e-14)


# -- the reference cache ----------------------------------------------------------------------


def bound(name):
    """A bound function of a new distance object (own cache) and its fast path's cache."""
    distance = DISTANCES[name]()
    fn = distance.bind((0, 1), "channels_first")
    zeros = torch.zeros((1,) + SHAPES.get(name, (3, 3, 32, 32))[1:])
    fn(ep.astensor(zeros), ep.astensor(zeros))
    (measure_fn,) = distance._compiled.values()
    return fn, measure_fn.fast.cache


def fresh(distance_fn, x, y):
    """The distances measured with the generic code (no cache)."""
    with _fast.generic_distances():
        return distance_fn(ep.astensor(x), ep.astensor(y)).raw.numpy()


@pytest.mark.parametrize("name", ["ciede2000", "ssim", "msssim", "lpips"])
def test_cache_is_reused_for_the_same_reference(name):
    fn, cache = bound(name)
    x, y = images(shape=SHAPES.get(name, (2, 3, 32, 32)))
    reference = ep.astensor(x)
    misses = cache.misses
    for scale in (0.5, 1.0, 1.5):
        got = fn(reference, ep.astensor(x + scale * (y - x))).raw.numpy()
        np.testing.assert_allclose(got, fresh(fn, x, x + scale * (y - x)), rtol=1e-12)
    assert cache.misses == misses + 1 and cache.hits >= 2


@pytest.mark.parametrize("name", ["ciede2000", "ssim", "lpips"])
@pytest.mark.parametrize(
    "change", ["in place", "through .data", "through numpy", "same values", "new batch", "shape"]
)
def test_cache_is_never_stale(name, change):
    fn, _ = bound(name)
    x, y = images(shape=(2, 3, 32, 32))
    reference = x.clone()
    fn(ep.astensor(reference), ep.astensor(y))  # cached
    if change == "in place":
        reference.mul_(0.5)  # bumps the version counter
    elif change == "through .data":
        reference.data.mul_(0.5)  # a new version counter: only the value check sees it
    elif change == "through numpy":
        array = x.numpy().copy()
        reference = torch.from_numpy(array)
        fn(ep.astensor(reference), ep.astensor(y))  # cached
        array *= 0.5  # shared memory, no version bump
    elif change == "same values":
        reference = reference.clone()
    elif change == "new batch":
        reference = torch.flip(reference, dims=(0,))
    else:
        reference, y = reference[:, :, :31, :31].contiguous(), y[:, :, :31, :31].contiguous()
    got = fn(ep.astensor(reference), ep.astensor(y)).raw.numpy()
    np.testing.assert_allclose(got, fresh(fn, reference, y), rtol=1e-12)


def test_cache_is_dropped_with_its_reference():
    fn, cache = bound("ciede2000")
    x, y = images(shape=(2, 3, 12, 12))
    fn(ep.astensor(x), ep.astensor(y))
    assert cache._entry is not None
    del x
    gc.collect()
    assert cache._entry is None  # nothing of the reference batch is kept


def test_no_cache_and_generic_gradient_when_the_reference_requires_one():
    x, y = images(shape=(2, 3, 12, 12))
    fast_ref = x.clone().requires_grad_()
    ciede2000(fast_ref, y).sum().backward()
    generic_ref = x.clone().requires_grad_()
    with _fast.generic_distances():
        ciede2000(generic_ref, y).sum().backward()
    np.testing.assert_allclose(fast_ref.grad.numpy(), generic_ref.grad.numpy(), rtol=1e-12)


def test_inference_tensors_and_torch_func():
    x, y = images(shape=(2, 3, 12, 12))
    expected = fresh(ciede2000.bind((0, 1)), x, y)
    with torch.inference_mode():
        got = ciede2000(x.clone(), y.clone()).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # torch.func traces with wrapped tensors: the generic code runs (and differentiates)
    grad = torch.func.grad(lambda t: ciede2000(x, t).sum())(y)
    np.testing.assert_allclose(grad.numpy(), measure(ciede2000, x, y, generic=True)[1], rtol=1e-12)


def test_generic_switch(monkeypatch):
    fn, cache = bound("ssim")
    x, y = images(shape=(2, 3, 12, 12))
    calls = cache.hits + cache.misses
    monkeypatch.setenv(_fast.GENERIC_ENV, "1")
    fn(ep.astensor(x), ep.astensor(y))
    with _fast.generic_distances():
        fn(ep.astensor(x), ep.astensor(y))
    assert cache.hits + cache.misses == calls
    monkeypatch.setenv(_fast.GENERIC_ENV, "0")
    fn(ep.astensor(x), ep.astensor(y))
    assert cache.hits + cache.misses == calls + 1


def test_alma_takes_the_same_steps_with_the_fast_path():
    """ALMA on a linear model, float64: the fast path's trajectory is the generic code's."""
    rng = np.random.default_rng(0)
    weight, x = rng.normal(size=(10, 3 * 12 * 12)), rng.uniform(size=(4, 3, 12, 12))
    model_fn = torch.nn.Linear(3 * 12 * 12, 10).double()
    with torch.no_grad():
        model_fn.weight.copy_(torch.from_numpy(weight))
        model_fn.bias.zero_()
    import foolbox as fb

    model = fb.PyTorchModel(torch.nn.Sequential(torch.nn.Flatten(), model_fn).eval(), (0, 1))
    inputs = torch.from_numpy(x)
    labels = model(inputs).argmax(-1)
    for name in ("ciede2000", "ssim"):
        attack = ALMA(distance=name, steps=30)
        fast = attack.run(model, inputs, labels).numpy()
        with _fast.generic_distances():
            generic = attack.run(model, inputs, labels).numpy()
        np.testing.assert_allclose(fast, generic, atol=1e-9)
