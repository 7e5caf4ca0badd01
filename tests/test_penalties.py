"""Penalty-Lagrangian functions: values against the paper's formulas (Eqs. 19-22, NumPy), closed-form
derivatives against each backend's autodiff, and the axioms dP/dy >= 0, dP/dy(0) = mu."""

import eagerpy as ep
import numpy as np
import pytest

from foolbox_alma.penalties import PENALTIES, get_penalty


def reference(name: str, y: np.ndarray, rho: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """The piecewise definitions exactly as written in ALMA.md."""
    if name == "PHR":
        return (np.maximum(0, mu + rho * y) ** 2 - mu**2) / (2 * rho)
    if name == "P1":
        return np.where(
            y >= 0,
            mu * y + rho * y**2 / 2 + rho**2 * y**3,
            np.where(y >= -mu / rho, mu * y + rho * y**2 / 2, -(mu**2) / (2 * rho)),
        )
    negative = mu * y / (1 - rho * np.minimum(y, 0))
    if name == "P2":
        return np.where(y >= 0, mu * y + mu * rho * y**2 + rho**2 * y**3 / 6, negative)
    assert name == "P3"
    return np.where(y >= 0, mu * y + mu * rho * y**2, negative)


def sample(seed: int = 0, n: int = 200):
    rng = np.random.default_rng(seed)
    y = np.concatenate([rng.normal(scale=3, size=n), [0.0, -1e-9, 1e-9]])
    rho = np.exp(rng.normal(size=y.shape))
    mu = np.exp(rng.normal(size=y.shape))
    # also exactly the P1 kink at -mu/rho, and far on both sides
    y[:3] = [-mu[0] / rho[0], 50.0, -50.0]
    return y, rho, mu


@pytest.mark.parametrize("name", sorted(PENALTIES))
def test_values_match_the_paper(fw, name):
    y, rho, mu = sample()
    with fw.float64():
        t = [ep.astensor(fw.tensor(a)) for a in (y, rho, mu)]
        got = PENALTIES[name](*t).numpy()
    np.testing.assert_allclose(got, reference(name, y, rho, mu), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(PENALTIES))
def test_closed_form_derivative_matches_autodiff(fw, name):
    y, rho, mu = sample(1)
    with fw.float64():
        yt, rt, mt = [ep.astensor(fw.tensor(a)) for a in (y, rho, mu)]
        penalty = PENALTIES[name]
        _, autodiff = ep.value_and_grad(lambda v: penalty(v, rt, mt).sum(), yt)
        closed = penalty.grad(yt, rt, mt)
        np.testing.assert_allclose(closed.numpy(), autodiff.numpy(), rtol=1e-10, atol=1e-12)
        assert np.isfinite(autodiff.numpy()).all()


@pytest.mark.parametrize("name", sorted(PENALTIES))
def test_derivative_against_finite_differences(name):
    """An oracle independent of any autodiff: central differences of the NumPy reference."""
    y, rho, mu = sample(2)
    y = y[np.abs(y + mu / rho) > 1e-3]  # away from P1's kink
    rho, mu = rho[: len(y)], mu[: len(y)]
    h = 1e-6
    fd = (reference(name, y + h, rho, mu) - reference(name, y - h, rho, mu)) / (2 * h)
    closed = PENALTIES[name].grad(*[ep.astensor(a) for a in (y, rho, mu)]).numpy()
    np.testing.assert_allclose(closed, fd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(PENALTIES))
def test_axioms(name):
    y, rho, mu = sample(3, n=2000)
    penalty = PENALTIES[name]
    grad = penalty.grad(*[ep.astensor(a) for a in (y, rho, mu)]).numpy()
    assert (grad >= 0).all()  # Axiom 1
    at_zero = penalty.grad(*[ep.astensor(a) for a in (np.zeros_like(y), rho, mu)]).numpy()
    np.testing.assert_allclose(at_zero, mu, rtol=1e-15)  # Axiom 2


def test_custom_callable_derivative_by_autodiff(fw):
    def quadratic(y, rho, mu):
        return mu * y + rho * y * y

    penalty = get_penalty(quadratic)
    y, rho, mu = sample(4)
    with fw.float64():
        grad = penalty.grad(*[ep.astensor(fw.tensor(a)) for a in (y, rho, mu)]).numpy()
    np.testing.assert_allclose(grad, mu + 2 * rho * y, rtol=1e-12)


def test_unknown_penalty_name_lists_valid_ones():
    with pytest.raises(ValueError, match="P1, P2, P3, PHR"):
        get_penalty("P7")
    with pytest.raises(TypeError, match="callable"):
        get_penalty(3)
