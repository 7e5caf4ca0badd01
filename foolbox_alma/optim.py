"""ALMA's optimiser pieces as small pure functions over explicit state (Optax style).

* :func:`rmsprop_init` / :func:`rmsprop_update`: RMSProp with momentum, as in the authors' code
  (the squared-gradient average starts at 1, the momentum buffer at 0).
* :func:`exponential_decay`: the per-sample learning-rate decay that starts when a sample first
  becomes adversarial.
* :func:`find_initial_lr`: the learning-rate finder of the first step (doubling, then bisection).

All work in the attack's normalised coordinates (inputs scaled to [0, 1]).
"""

import math
from typing import Callable, NamedTuple

import eagerpy as ep

RMSPROP_EPS = 1e-8


def batch_view(t: ep.Tensor, ndim: int) -> ep.Tensor:
    """A per-sample tensor of shape (N,) reshaped to broadcast against (N, ...) with ``ndim`` dims."""
    return t.reshape((-1,) + (1,) * (ndim - 1))


class RMSPropState(NamedTuple):
    square_avg: ep.Tensor
    momentum_buffer: ep.Tensor


def rmsprop_init(params: ep.Tensor) -> RMSPropState:
    return RMSPropState(ep.ones_like(params), ep.zeros_like(params))


def rmsprop_update(
    grad: ep.Tensor, state: RMSPropState, alpha: float, momentum: float
) -> "tuple[ep.Tensor, RMSPropState]":
    """One RMSProp-with-momentum step: returns the update direction and the new state.

    s <- a s + (1 - a) g^2;  m <- momentum m + g / (sqrt(s) + 1e-8).
    """
    square_avg = alpha * state.square_avg + (1 - alpha) * ep.square(grad)
    buffer = momentum * state.momentum_buffer + grad / (ep.sqrt(square_avg) + RMSPROP_EPS)
    return buffer, RMSPropState(square_avg, buffer)


def exponential_decay(
    lr: ep.Tensor, lr_reduction: float, step: int, step_found: ep.Tensor, steps: int
) -> ep.Tensor:
    """lr * lr_reduction ** (max(step - step_found, 0) / (steps - step_found)), per sample.

    ``step_found`` is the step at which the sample first became adversarial (``steps + 1`` while
    none is known, which gives no decay). Written with ``exp`` since EagerPy has no reflected power.
    """
    progress = ep.maximum(step - step_found, 0) / (steps - step_found)
    return lr * ep.exp(math.log(lr_reduction) * progress)


def find_initial_lr(
    distance: Callable[[ep.Tensor], ep.Tensor],
    u: ep.Tensor,
    grad: ep.Tensor,
    target: float,
    max_doublings: int = 64,
    bisection_steps: int = 20,
) -> ep.Tensor:
    """Per-sample learning rate ``lr`` such that ``distance(clip(u - lr * grad, 0, 1)) = target``.

    Doubles ``lr`` from 1 until the distance exceeds the target (at most ``max_doublings`` times:
    a sample whose clipped step cannot reach the target keeps the last, largest ``lr``), then
    bisects ``bisection_steps`` times and returns the middle of the final bracket. ``distance`` maps
    a batch of normalised inputs to per-sample distances from the originals ``u``.
    """
    ndim = u.ndim

    def reached(lr: ep.Tensor) -> ep.Tensor:
        return distance(ep.clip(u - batch_view(lr, ndim) * grad, 0, 1)) > target

    lr = ep.ones(u, len(u)).astype(u.dtype)
    lower = ep.zeros_like(lr)
    found_upper = reached(lr)
    for _ in range(max_doublings):
        if found_upper.all():
            break
        lower = ep.where(found_upper, lower, lr)
        lr = ep.where(found_upper, lr, 2 * lr)
        found_upper = reached(lr)
    for _ in range(bisection_steps):
        mid = (lower + lr) / 2
        larger = reached(mid)
        lower = ep.where(larger, lower, mid)
        lr = ep.where(larger, mid, lr)
    return (lower + lr) / 2
