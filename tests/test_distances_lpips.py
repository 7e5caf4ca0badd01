"""LPIPS on each backend. Oracles: the ``lpips`` package (values stored in
``data/lpips_alex_random.npz`` for every env; live in the oracle env), autodiff vs finite
differences, the other backends (crossframework).

The real AlexNet weights cannot be downloaded here: the tests use random weights generated
locally (:func:`random_alexnet`, seeded), loaded into ``lpips.LPIPS(net="alex", pnet_rand=True)``.
Regenerate the stored values in the oracle env with ``python tests/test_distances_lpips.py``.
"""

import os
from typing import Dict

import numpy as np
import pytest
from helpers import (
    BACKENDS,
    directional_check,
    float64,
    random_alexnet,
    to_numpy,
    to_tensor,
    value_and_grad,
)

from foolbox_alma.distances import LPIPS, convert_alexnet_weights, get_distance
from foolbox_alma.distances.lpips import default_alexnet_path

DATA = os.path.join(os.path.dirname(__file__), "data", "lpips_alex_random.npz")
SHAPE = (2, 3, 35, 33)  # the smallest sizes that keep every layer, not square


def random_images(seed: int = 0, shape=SHAPE):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=shape)
    return x, np.clip(x + rng.normal(scale=0.2, size=shape), 0, 1)


def fingerprint(weights: Dict[str, np.ndarray]) -> np.ndarray:
    return np.array([np.abs(weights[k].astype(np.float64)).sum() for k in sorted(weights)])


def lpips_package_model(weights: Dict[str, np.ndarray]):
    """``lpips.LPIPS(net="alex")`` in float64 with the given backbone weights."""
    torch = pytest.importorskip("torch")
    lpips = pytest.importorskip("lpips")
    model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    net = model.net
    with torch.no_grad():
        for part in (net.slice1, net.slice2, net.slice3, net.slice4, net.slice5):
            for name, module in part.named_children():
                if isinstance(module, torch.nn.Conv2d):
                    module.weight.copy_(torch.from_numpy(weights[f"features.{name}.weight"]))
                    module.bias.copy_(torch.from_numpy(weights[f"features.{name}.bias"]))
    return model.double().eval()


def lpips_package_values(weights: Dict[str, np.ndarray], x: np.ndarray, y: np.ndarray):
    import torch

    model = lpips_package_model(weights)
    values = model(torch.from_numpy(x), torch.from_numpy(y), normalize=True)
    return values.detach().numpy().reshape(-1)


@pytest.fixture(scope="module")
def weights() -> Dict[str, np.ndarray]:
    return random_alexnet()


@pytest.fixture(scope="module")
def distance(weights) -> LPIPS:
    return LPIPS(weights)


def test_stored_values_are_for_these_weights(weights):
    with np.load(DATA) as data:
        np.testing.assert_allclose(fingerprint(weights), data["fingerprint"], rtol=1e-12)


def test_matches_lpips_package_values(fw, distance):
    x, y = random_images()
    with np.load(DATA) as data:
        expected = data["values"]
    with float64(fw.name):
        got = to_numpy(distance(fw.tensor(x), fw.tensor(y)))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_float32(fw, distance):
    x, y = random_images()
    with np.load(DATA) as data:
        expected = data["values"]
    got = to_numpy(distance(fw.tensor(x.astype("f4")), fw.tensor(y.astype("f4"))))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_layouts_gray_and_bounds(fw, distance):
    x, y = random_images(seed=1)
    xl, yl = x.transpose(0, 2, 3, 1), y.transpose(0, 2, 3, 1)
    with float64(fw.name):
        first = to_numpy(distance(fw.tensor(x), fw.tensor(y)))
        last = to_numpy(distance(fw.tensor(xl), fw.tensor(yl)))
        bound = distance.bind((0, 255), "channels_last")
        from_bind = bound(to_tensor(fw.name, 255 * xl), to_tensor(fw.name, 255 * yl)).numpy()
        gray = to_numpy(distance(fw.tensor(x[:, :1]), fw.tensor(y[:, :1])))
        gray_rgb = to_numpy(
            distance(fw.tensor(x[:, :1].repeat(3, 1)), fw.tensor(y[:, :1].repeat(3, 1)))
        )
    np.testing.assert_allclose(last, first, rtol=1e-10)
    np.testing.assert_allclose(from_bind, first, rtol=1e-10)
    np.testing.assert_allclose(gray, gray_rgb, rtol=1e-10)


def test_gradient_matches_finite_differences(fw, distance):
    x, y = random_images(seed=2)

    def fn(t):
        return distance.compute(to_tensor(fw.name, x), t)

    autodiff, finite = directional_check(fn, y, fw.name)
    assert autodiff == pytest.approx(finite, rel=1e-5)


@pytest.mark.parametrize("dead", [False, True], ids=["live", "dead-layer"])
def test_finite_at_zero_perturbation(fw, distance, dead):
    """Also where a layer's features are all zero (the channel norm is 0 there)."""
    if dead:
        distance = LPIPS(random_alexnet(dead_last_layer=True))
    x, y = random_images(seed=3)
    with float64(fw.name):
        for perturbed in (x, y):
            values, grad = value_and_grad(
                lambda t: distance.compute(to_tensor(fw.name, x), t), to_tensor(fw.name, perturbed)
            )
            assert np.all(np.isfinite(values)) and np.all(np.isfinite(grad))
    assert np.abs(values).max() > 0  # from the last pair (x, y)


def test_clip_perturbation_bisects_to_epsilon(fw, distance):
    x, y = random_images(seed=4)
    with float64(fw.name):
        full = to_numpy(distance(fw.tensor(x), fw.tensor(y)))
        epsilon = float(full.min()) / 2
        clipped = to_numpy(distance.clip_perturbation(fw.tensor(x), fw.tensor(y), epsilon))
        after = to_numpy(distance(fw.tensor(x), fw.tensor(clipped)))
    assert np.all(after <= epsilon) and np.all(after >= epsilon * (1 - 2e-3))


def test_errors(fw, distance):
    small = np.zeros((1, 3, 30, 40))
    with pytest.raises(ValueError, match="at least 31"):
        distance(fw.tensor(small), fw.tensor(small))
    four = np.zeros((1, 4, 32, 32))
    with pytest.raises(ValueError, match="3 channels"):
        LPIPS(random_alexnet(), channel_axis=1)(fw.tensor(four), fw.tensor(four))


@pytest.mark.crossframework
def test_backends_agree(distance):
    if len(BACKENDS) < 2:
        pytest.skip("needs two or more frameworks")
    x, y = random_images(seed=5)
    values = {}
    for name in BACKENDS:
        with float64(name):
            d, grad = value_and_grad(
                lambda t, name=name: distance.compute(to_tensor(name, x), t), to_tensor(name, y)
            )
        values[name] = d, grad
    first = values[BACKENDS[0]]
    for name in BACKENDS[1:]:
        np.testing.assert_allclose(values[name][0], first[0], rtol=1e-10)
        np.testing.assert_allclose(values[name][1], first[1], rtol=1e-7, atol=1e-12)


def test_weights_files(tmp_path, weights, monkeypatch):
    x, y = random_images()
    expected = LPIPS(weights)(x, y)  # NumPy backend: values only
    npz = tmp_path / "alexnet.npz"
    np.savez(npz, **weights)
    np.testing.assert_allclose(LPIPS(str(npz))(x, y), expected, rtol=1e-12)
    with pytest.raises(FileNotFoundError, match="download.pytorch.org"):
        LPIPS(str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="features.0.weight"):
        LPIPS({"features.0.bias": weights["features.0.bias"]})
    # the default: torchvision's cache, read at first use
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert default_alexnet_path() == str(
        tmp_path / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    )
    lazy = LPIPS()
    with pytest.raises(FileNotFoundError, match="IMAGENET1K_V1"):
        lazy(x, y)
    named = get_distance("lpips")
    assert named.init_lr_distance == "auto" and not named.homogeneous and named.name == "lpips"


def test_pth_and_converter(tmp_path, weights, monkeypatch):
    torch = pytest.importorskip("torch")
    x, y = random_images()
    expected = LPIPS(weights)(x, y)
    state = {k: torch.from_numpy(v) for k, v in weights.items()}
    state["classifier.1.weight"] = torch.zeros(2, 2)  # a whole torchvision state dict is fine
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    pth = checkpoints / "alexnet-owt-7be5be79.pth"
    torch.save(state, pth)
    np.testing.assert_allclose(LPIPS(str(pth))(x, y), expected, rtol=1e-12)
    np.testing.assert_allclose(LPIPS(state)(x, y), expected, rtol=1e-12)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    np.testing.assert_allclose(LPIPS()(x, y), expected, rtol=1e-12)
    converted = convert_alexnet_weights(pth, tmp_path / "converted")
    assert converted.endswith(".npz")
    np.testing.assert_allclose(LPIPS(converted)(x, y), expected, rtol=1e-12)


@pytest.mark.oracle
def test_lpips_package(tmp_path, weights):
    """Live comparison with ``lpips.LPIPS(net="alex", pnet_rand=True)`` and the same weights."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("lpips")
    pth = tmp_path / "alexnet.pth"
    torch.save({k: torch.from_numpy(v) for k, v in weights.items()}, pth)
    distance = LPIPS(str(pth))
    for seed in range(3):
        x, y = random_images(seed, shape=(3, 3, 48, 40))
        expected = lpips_package_values(weights, x, y)
        got = distance(torch.from_numpy(x), torch.from_numpy(y)).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5)
    # gradients too (finite there: no all-zero feature vector with these weights)
    model = lpips_package_model(weights)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y).requires_grad_(True)
    model(tx, ty, normalize=True).sum().backward()
    _, grad = value_and_grad(
        lambda t: distance.compute(to_tensor("pytorch", x), t), to_tensor("pytorch", y)
    )
    np.testing.assert_allclose(grad, ty.grad.numpy(), rtol=1e-5, atol=1e-9)
    # and the values stored for the other envs
    x, y = random_images()
    with np.load(DATA) as data:
        np.testing.assert_allclose(lpips_package_values(weights, x, y), data["values"], rtol=1e-12)


if __name__ == "__main__":  # regenerate the stored values (oracle env)
    weights = random_alexnet()
    values = lpips_package_values(weights, *random_images())
    np.savez(DATA, values=values, fingerprint=fingerprint(weights))
    print(f"wrote {DATA}: {values}")
