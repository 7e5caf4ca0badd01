"""The distance interface ALMA minimises, compatible with Foolbox's ``Distance``.

A distance is two things at once:

* an EagerPy function ``compute(reference, perturbed) -> per-sample distances`` that the attack
  differentiates (it only touches ``ep.`` operations, so it runs on every backend), and
* a Foolbox :class:`foolbox.distances.Distance` (``__call__`` on native tensors and
  ``clip_perturbation``), so that Foolbox's ``epsilons`` work with it.

Distances that are not norms of the perturbation (CIEDE2000, SSIM, LPIPS) look at images mapped from
the model's bounds to [0, 1]; :meth:`AttackDistance.bind` returns the function the attack uses for a
given model (bounds and channel layout).
"""

from abc import ABC, abstractmethod
from typing import Any, Callable, Optional, Tuple

import eagerpy as ep
import foolbox as fb

DistanceFn = Callable[[ep.Tensor, ep.Tensor], ep.Tensor]
BoundsLike = Tuple[float, float]


class AttackDistance(fb.distances.Distance, ABC):
    """Base class of the distances ALMA can minimise.

    Attributes:
        name: The short name (``"l2"``, ``"ciede2000"``...), as accepted by ``ALMA(distance=...)``.
        init_lr_distance: The paper's value of ``init_lr_distance`` for this distance (inputs in [0, 1]).
        homogeneous: True when ``D(x + c p, x) = |c| D(x + p, x)`` and the distance is measured in the
            model's input units (the Lp norms): step-size-like quantities then scale with the range of
            the model's bounds. False for distances measured on images mapped to [0, 1].
    """

    name: str = ""
    init_lr_distance: float = 0.1
    homogeneous: bool = False

    @abstractmethod
    def compute(self, reference: ep.Tensor, perturbed: ep.Tensor) -> ep.Tensor:
        """Per-sample distances between two batches of inputs (EagerPy, differentiable)."""

    def bind(self, bounds: BoundsLike, data_format: Optional[str] = None) -> DistanceFn:
        """The EagerPy function ``(reference, perturbed) -> distances`` for inputs in ``bounds``.

        ``data_format`` is the model's ``"channels_first"`` / ``"channels_last"`` when known.
        The default measures the inputs as they are (right for Lp norms).
        """
        del bounds, data_format
        return self.compute

    def __call__(self, references: Any, perturbed: Any) -> Any:
        (x, xp), restore_type = ep.astensors_(references, perturbed)
        return restore_type(self.compute(x, xp))

    def clip_perturbation(self, references: Any, perturbed: Any, epsilon: float) -> Any:
        """The perturbed inputs with their perturbation shrunk so that the distance is <= epsilon.

        The default finds by bisection the largest scale ``s`` in [0, 1] with
        ``D(x, x + s (xp - x)) <= epsilon`` (relative tolerance 1e-3), which works for any distance that
        grows along the segment. Norms override it with the closed form.
        """
        (x, xp), restore_type = ep.astensors_(references, perturbed)
        return restore_type(bisect_clip(self.compute, x, xp, epsilon))


def bisect_clip(
    distance: DistanceFn, x: ep.Tensor, xp: ep.Tensor, epsilon: float, rtol: float = 1e-3
) -> ep.Tensor:
    """Largest ``x + s (xp - x)``, ``s`` in [0, 1], with ``distance(x, .) <= epsilon``, per sample.

    Stops once every sample's bracket [lo, hi] satisfies ``hi - lo <= rtol * hi`` (or after 60 halvings).
    """
    if len(x) == 0:
        return xp
    p = xp - x
    ndim = x.ndim

    def at(scale: ep.Tensor) -> ep.Tensor:
        return x + scale.reshape((-1,) + (1,) * (ndim - 1)).astype(x.dtype) * p

    full = distance(x, xp)
    ok_full = full <= epsilon
    lo = ep.zeros(x, len(x)).astype(x.dtype)
    hi = ep.ones(x, len(x)).astype(x.dtype)
    for _ in range(60):
        if ((hi - lo) <= rtol * hi).all():
            break
        mid = (lo + hi) / 2
        inside = distance(x, at(mid)) <= epsilon
        lo = ep.where(inside, mid, lo)
        hi = ep.where(inside, hi, mid)
    scale = ep.where(ok_full, ep.ones_like(lo), lo)
    return at(scale)
