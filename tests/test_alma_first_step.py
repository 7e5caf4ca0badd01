"""ALMA's automatic first step (``init_lr_distance="auto"``): the paper's L2 step, with the
distance measured in that step's units, so that nothing depends on the distance's units or power.

Oracles: the closed-form minimal L2 adversarials of linear classifiers (a distance that is a
power of L2 has the same minimisers), the paper's L2 setting (for L2, "auto" is its 0.1), exact
invariances (units, powers, the model's bounds), and call counts.
"""

import eagerpy as ep
import numpy as np
import pytest
from helpers import linear_problem, minimal_distances, norms

from foolbox_alma import ALMA
from foolbox_alma.distances import AttackDistance, l2_distances


class ScaledPowerOfL2(AttackDistance):
    """``scale * ||x~ - x||_2 ** power`` in the model's units: the minimisers of L2, in other
    units and another power (as a squared distance such as LPIPS near the input)."""

    name = "scaled-power-l2"

    def __init__(self, scale: float, power: float):
        self.scale, self.power = scale, power
        self.calls = 0

    def compute(self, reference: ep.Tensor, perturbed: ep.Tensor) -> ep.Tensor:
        self.calls += 1
        return self.scale * l2_distances(reference, perturbed) ** self.power


def test_a_distance_of_ones_own_starts_with_the_automatic_step():
    """Catches a base-class default in the distance's own units (the old 0.1 of any D)."""
    assert ScaledPowerOfL2(1, 1).init_lr_distance == "auto"
    assert ALMA(distance=ScaledPowerOfL2(1, 1)).init_lr_distance == "auto"


@pytest.mark.parametrize("scale, power", [(1e-4, 2.0), (300.0, 1.0), (5.0, 0.5)])
def test_any_power_of_l2_reaches_the_closed_form_l2_optimum(fw, scale, power):
    """Closed form: c * L2^q has L2's minimal adversarials. Catches a first step sized in the
    distance's units (1e-4 L2^2 would move by 0.1 of ITS units: about 30 in L2) and a Lagrangian
    with the raw D (the gradient of a squared distance vanishes near the input; a large scale
    drowns the penalty)."""
    w, b, x, y = linear_problem(d=100, margin_scale=5.0, spread=0.4, separated=2)
    optimum = minimal_distances(w, b, x, y, 2)
    model = fw.linear_model(w, b)
    attack = ALMA(distance=ScaledPowerOfL2(scale, power), steps=500)
    raw, _, success = attack(model, fw.tensor(x), fw.tensor(y))
    assert fw.numpy(success).all()
    ratio = norms(fw.numpy(raw), x, 2) / optimum
    assert ratio.min() > 1 - 1e-4
    assert np.median(ratio) < 1.02


def test_for_l2_auto_is_the_papers_setting(fw):
    """The paper's L2 first step is 0.1: for L2, "auto" gives the same adversarials (up to
    round-off: the distance goes through its units and back). Catches an automatic step of
    another size, measured in other coordinates, or a unit conversion that changes L2."""
    with fw.float64():
        w, b, x, y = linear_problem(d=100, margin_scale=5.0, dtype=np.float64)
        model = fw.linear_model(w, b)
        results = []
        for init_lr_distance in (0.1, "auto"):
            attack = ALMA(steps=100, alpha=0.9, init_lr_distance=init_lr_distance)
            results.append(fw.numpy(attack.run(model, fw.tensor(x), fw.tensor(y))))
    np.testing.assert_allclose(results[1], results[0], rtol=1e-6, atol=1e-9)


def test_auto_does_not_depend_on_the_distances_units_or_power(fw):
    """D and 1e3 D^2 are the same problem: under "auto" the attack takes the same steps.
    Catches any use of D's raw values in the first step or the Lagrangian."""
    with fw.float64():
        w, b, x, y = linear_problem(d=100, margin_scale=5.0, dtype=np.float64)
        model = fw.linear_model(w, b)
        results = [
            fw.numpy(
                ALMA(distance=distance, steps=100, alpha=0.9).run(model, fw.tensor(x), fw.tensor(y))
            )
            for distance in (ScaledPowerOfL2(1.0, 1.0), ScaledPowerOfL2(1e3, 2.0))
        ]
    np.testing.assert_allclose(results[1], results[0], rtol=1e-6, atol=1e-9)


def test_auto_is_equivariant_to_the_models_bounds(fw):
    """A model with bounds (0, 255) that divides by 255, and a distance measured in the model's
    units (its values grow 255^2 times): the adversarials are 255 times those with bounds (0, 1).
    Catches an automatic step measured in the model's units instead of [0, 1]."""
    with fw.float64():
        w, b, x, y = linear_problem(d=100, margin_scale=5.0, dtype=np.float64)
        unit = fw.linear_model(w, b, bounds=(0, 1))
        wide = fw.linear_model(w / 255, b, bounds=(0, 255))
        attack = ALMA(distance=ScaledPowerOfL2(1.0, 2.0), steps=100, alpha=0.9)
        raw1 = fw.numpy(attack.run(unit, fw.tensor(x), fw.tensor(y)))
        raw255 = fw.numpy(attack.run(wide, fw.tensor(255 * x), fw.tensor(y)))
    np.testing.assert_allclose(raw255, 255 * raw1, rtol=1e-6, atol=255 * 1e-8)


def test_auto_costs_two_evaluations_of_the_distance_and_no_model_pass(fw):
    """The first step of "auto" measures D twice (its size and degree along the step); an
    explicit value searches for it (doubling and 20 bisections). One model pass per step either
    way. Catches a line search on D or on the model behind "auto"."""
    w, b, x, y = linear_problem(n=8, d=20)
    model = fw.linear_model(w, b)
    passes = []

    def counting(inputs):
        passes.append(1)
        return model(inputs)

    counting.bounds = model.bounds  # type: ignore[attr-defined]
    calls = {}
    for init_lr_distance in ("auto", 3.0):
        distance = ScaledPowerOfL2(1.0, 2.0)
        ALMA(distance=distance, steps=1, init_lr_distance=init_lr_distance).run(
            model, fw.tensor(x), fw.tensor(y)
        )
        calls[init_lr_distance] = distance.calls
    assert calls["auto"] == 1 + 2  # the Lagrangian's, then the step's size and degree
    assert calls[3.0] >= 1 + 21
    distance = ScaledPowerOfL2(1.0, 2.0)
    ALMA(distance=distance, steps=5, compile=False).run(counting, fw.tensor(x), fw.tensor(y))
    assert len(passes) == 5
