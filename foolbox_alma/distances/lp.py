"""L1 and L2 distances: norms of the flattened perturbation, in the model's input units."""

from typing import Any

import eagerpy as ep

from .base import AttackDistance


def _flat(t: ep.Tensor) -> ep.Tensor:
    return t.reshape((len(t), -1))


def l1_distances(reference: ep.Tensor, perturbed: ep.Tensor) -> ep.Tensor:
    """Per-sample L1 norm of ``perturbed - reference``.

    Written ``d * sign(d)`` rather than ``abs(d)``: JAX differentiates ``abs`` at 0 as 1, which
    would push coordinates with no perturbation (e.g. clipped at the bounds); ``sign`` gives the
    subgradient 0 there on every backend.
    """
    d = _flat(perturbed - reference)
    return (d * ep.sign(d)).sum(axis=-1)


def l2_distances(reference: ep.Tensor, perturbed: ep.Tensor) -> ep.Tensor:
    """Per-sample L2 norm of ``perturbed - reference``."""
    return ep.sqrt(ep.square(_flat(perturbed - reference)).sum(axis=-1))


class LpDistance(AttackDistance):
    """An Lp norm (p = 1 or 2) of the perturbation, usable by ALMA and as a Foolbox distance.

    Equivalent to ``foolbox.distances.l1`` / ``l2`` (same values, same clipping), plus the EagerPy
    ``compute`` the attack differentiates.
    """

    homogeneous = True

    def __init__(self, p: int):
        if p not in (1, 2):
            raise ValueError(f"LpDistance supports p = 1 or 2, got p = {p!r}")
        self.p = p
        self.name = f"l{p}"
        # The paper's initial step distances (inputs in [0, 1]): L1 0.5, L2 0.1.
        self.init_lr_distance = 0.5 if p == 1 else 0.1
        self._fn = l1_distances if p == 1 else l2_distances

    def __repr__(self) -> str:
        return f"LpDistance({self.p})"

    def compute(self, reference: ep.Tensor, perturbed: ep.Tensor) -> ep.Tensor:
        return self._fn(reference, perturbed)

    def clip_perturbation(self, references: Any, perturbed: Any, epsilon: float) -> Any:
        (x, xp), restore_type = ep.astensors_(references, perturbed)
        p = xp - x
        norms = ep.maximum(self._fn(x, xp), 1e-12)
        factor = ep.minimum(1, epsilon / norms).reshape((-1,) + (1,) * (x.ndim - 1))
        return restore_type(x + factor.astype(x.dtype) * p)


l1 = LpDistance(1)
l2 = LpDistance(2)
