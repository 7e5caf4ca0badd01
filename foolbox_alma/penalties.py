"""Penalty-Lagrangian functions P(y, rho, mu) of ALMA (Rony et al., ICCV 2021, Eqs. 19-22).

Each penalty is an EagerPy function of the constraint value ``y`` (the DLR+), the penalty parameter
``rho > 0`` and the multiplier ``mu > 0`` (all per-sample tensors of the same shape), paired with its
closed-form derivative in ``y``. ALMA's multiplier update is an exponential moving average of that
derivative, so the closed form saves a second differentiation. All four satisfy the axioms of the
paper: ``dP/dy >= 0`` and ``dP/dy(0) = mu``.
"""

from typing import Callable, Dict, NamedTuple, Optional, Union

import eagerpy as ep

from .checks import by_name

PenaltyFn = Callable[[ep.Tensor, ep.Tensor, ep.Tensor], ep.Tensor]


class Penalty(NamedTuple):
    """A penalty-Lagrangian function and its derivative in ``y``.

    ``derivative`` may be None, in which case it is obtained by automatic differentiation.
    """

    name: str
    value: PenaltyFn
    derivative: Optional[PenaltyFn]

    def __call__(self, y: ep.Tensor, rho: ep.Tensor, mu: ep.Tensor) -> ep.Tensor:
        return self.value(y, rho, mu)

    def grad(self, y: ep.Tensor, rho: ep.Tensor, mu: ep.Tensor) -> ep.Tensor:
        """dP/dy at ``y`` (per sample)."""
        if self.derivative is not None:
            return self.derivative(y, rho, mu)

        def total(y_: ep.Tensor) -> ep.Tensor:
            return self.value(y_, rho, mu).sum()

        _, g = ep.value_and_grad(total, y)
        return g


# The branches are evaluated on the half-line they apply to (``where``, not ``maximum``, so that
# the gradient at y = 0 flows whole into the branch that is kept), so that the branch ``where``
# discards never holds an inf or NaN that would leak into gradients.


def _nonnegative(y: ep.Tensor) -> ep.Tensor:
    return ep.where(y >= 0, y, ep.zeros_like(y))


def _negative(y: ep.Tensor) -> ep.Tensor:
    return ep.where(y < 0, y, ep.zeros_like(y))


def phr(y: ep.Tensor, rho: ep.Tensor, mu: ep.Tensor) -> ep.Tensor:
    """PHR(y) = (max(0, mu + rho y)^2 - mu^2) / (2 rho)  (Powell-Hestenes-Rockafellar)."""
    return (ep.square(ep.maximum(mu + rho * y, 0)) - ep.square(mu)) / (2 * rho)


def phr_grad(y: ep.Tensor, rho: ep.Tensor, mu: ep.Tensor) -> ep.Tensor:
    return ep.maximum(mu + rho * y, 0)


def p1(y: ep.Tensor, rho: ep.Tensor, mu: ep.Tensor) -> ep.Tensor:
    """P1: mu y + rho y^2/2 + rho^2 y^3 (y >= 0); mu y + rho y^2/2 (-mu/rho <= y <= 0);
    -mu^2 / (2 rho) (y <= -mu/rho)."""
    y_pos = _nonnegative(y)
    y_mid = ep.where(y >= -mu / rho, _negative(y), -mu / rho)
    above = mu * y_pos + rho * ep.square(y_pos) / 2 + ep.square(rho) * y_pos**3
    middle = mu * y_mid + rho * ep.square(y_mid) / 2  # equals -mu^2 / (2 rho) at y_mid = -mu/rho
    return ep.where(y >= 0, above, middle)


def p1_grad(y: ep.Tensor, rho: ep.Tensor, mu: ep.Tensor) -> ep.Tensor:
    y_pos = _nonnegative(y)
    above = mu + rho * y_pos + 3 * ep.square(rho) * ep.square(y_pos)
    middle = ep.maximum(mu + rho * _negative(y), 0)  # 0 below -mu/rho
    return ep.where(y >= 0, above, middle)


def _rational(y: ep.Tensor, rho: ep.Tensor, mu: ep.Tensor) -> ep.Tensor:
    y_neg = _negative(y)
    return mu * y_neg / (1 - rho * y_neg)


def _rational_grad(y: ep.Tensor, rho: ep.Tensor, mu: ep.Tensor) -> ep.Tensor:
    y_neg = _negative(y)
    return mu / ep.square(1 - rho * y_neg)


def p2(y: ep.Tensor, rho: ep.Tensor, mu: ep.Tensor) -> ep.Tensor:
    """P2 (the paper's default): mu y + mu rho y^2 + rho^2 y^3 / 6 (y >= 0); mu y / (1 - rho y) (y < 0)."""
    y_pos = _nonnegative(y)
    above = mu * y_pos + mu * rho * ep.square(y_pos) + ep.square(rho) * y_pos**3 / 6
    return ep.where(y >= 0, above, _rational(y, rho, mu))


def p2_grad(y: ep.Tensor, rho: ep.Tensor, mu: ep.Tensor) -> ep.Tensor:
    y_pos = _nonnegative(y)
    above = mu + 2 * mu * rho * y_pos + ep.square(rho) * ep.square(y_pos) / 2
    return ep.where(y >= 0, above, _rational_grad(y, rho, mu))


def p3(y: ep.Tensor, rho: ep.Tensor, mu: ep.Tensor) -> ep.Tensor:
    """P3: mu y + mu rho y^2 (y >= 0); mu y / (1 - rho y) (y < 0)."""
    y_pos = _nonnegative(y)
    return ep.where(y >= 0, mu * y_pos + mu * rho * ep.square(y_pos), _rational(y, rho, mu))


def p3_grad(y: ep.Tensor, rho: ep.Tensor, mu: ep.Tensor) -> ep.Tensor:
    y_pos = _nonnegative(y)
    return ep.where(y >= 0, mu + 2 * mu * rho * y_pos, _rational_grad(y, rho, mu))


PENALTIES: Dict[str, Penalty] = {
    "P1": Penalty("P1", p1, p1_grad),
    "P2": Penalty("P2", p2, p2_grad),
    "P3": Penalty("P3", p3, p3_grad),
    "PHR": Penalty("PHR", phr, phr_grad),
}


def get_penalty(penalty: Union[str, Penalty, PenaltyFn]) -> Penalty:
    """The :class:`Penalty` for a name (``"P1"``, ``"P2"``, ``"P3"``, ``"PHR"``), a Penalty, or a
    callable ``(y, rho, mu) -> values`` on EagerPy tensors (its derivative then comes from autodiff)."""
    if isinstance(penalty, Penalty):
        return penalty
    if isinstance(penalty, str):
        return by_name(PENALTIES, penalty, "penalty", "a callable (y, rho, mu) -> values")
    if callable(penalty):
        name = getattr(penalty, "__name__", type(penalty).__name__)
        return Penalty(name, penalty, None)
    raise TypeError(
        f"penalty must be one of {', '.join(PENALTIES)} or a callable, got {type(penalty).__name__}"
    )
