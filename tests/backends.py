"""Backend helpers for tests of EagerPy code: native tensors from NumPy, gradients, float64.

Builds on :mod:`frameworks` (the ``fw`` fixture of ``conftest.py`` gives one ``Framework`` per
installed backend; the others are skipped). ``BACKENDS`` lists the installed ones, for tests that
loop over them (cross-framework comparisons).
"""

import contextlib
from typing import Callable, Iterator, Tuple

import eagerpy as ep
import numpy as np
from frameworks import FRAMEWORKS, Framework, available

BACKENDS = tuple(name for name in FRAMEWORKS if available(name))


def to_tensor(framework: str, array: np.ndarray) -> ep.Tensor:
    """``array`` as an EagerPy tensor of ``framework`` (same dtype; JAX keeps float64 only inside
    :func:`float64`)."""
    return ep.astensor(Framework(framework).tensor(array))


def to_numpy(tensor: object) -> np.ndarray:
    """A native or EagerPy tensor as a NumPy array."""
    if isinstance(tensor, ep.Tensor):
        return tensor.numpy()
    return Framework.numpy(tensor)


@contextlib.contextmanager
def float64(framework: str) -> Iterator[None]:
    """Computations in float64 (switches on ``jax_enable_x64`` for JAX, inside the block only)."""
    with Framework(framework).float64():
        yield


def value_and_grad(
    fn: Callable[[ep.Tensor], ep.Tensor], x: ep.Tensor
) -> Tuple[np.ndarray, np.ndarray]:
    """``fn(x)`` (per-sample values) and the gradient of their sum, as NumPy arrays.

    Eager on every backend (JAX compiles each primitive once per shape and dtype and reuses it,
    which is faster over a test session than one ``jax.jit`` compilation per call).
    """
    values = fn(x).numpy()
    _, grad = ep.value_and_grad(lambda t: fn(t).sum(), x)
    return values, grad.numpy()


def directional_check(
    fn: Callable[[ep.Tensor], ep.Tensor],
    x: np.ndarray,
    framework: str,
    step: float = 1e-6,
    seed: int = 0,
) -> Tuple[float, float]:
    """Directional derivative of ``sum(fn(x))`` along a random direction: (autodiff, central
    finite difference), in float64."""
    direction = np.random.default_rng(seed).standard_normal(x.shape)
    direction /= np.linalg.norm(direction)
    with float64(framework):
        _, grad = value_and_grad(fn, to_tensor(framework, x))
        plus = fn(to_tensor(framework, x + step * direction)).numpy().sum()
        minus = fn(to_tensor(framework, x - step * direction)).numpy().sum()
    return float((grad * direction).sum()), float((plus - minus) / (2 * step))
