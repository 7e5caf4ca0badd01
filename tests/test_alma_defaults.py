"""Defaults that follow the step budget: the paper's two settings at its two budgets, and the
documented log-linear join of the EMA window in between (closed form)."""

import math

import pytest

from foolbox_alma import ALMA
from foolbox_alma.alma import default_alpha


@pytest.mark.parametrize(
    "steps, alpha", [(1, 0.5), (50, 0.5), (100, 0.5), (1000, 0.9), (10**5, 0.9)]
)
def test_paper_points_and_clamping(steps, alpha):
    assert default_alpha(steps) == pytest.approx(alpha, abs=1e-12)
    assert ALMA(steps=steps).alpha == pytest.approx(alpha, abs=1e-12)


def test_window_grows_geometrically_between_the_paper_points():
    for steps in (150, 200, 300, 500, 700):
        window = 1 / (1 - default_alpha(steps))
        expected = 2 * 5 ** (math.log10(steps) - 2)  # 2 steps at 100, 10 at 1000
        assert window == pytest.approx(expected, rel=1e-12)
    values = [default_alpha(s) for s in range(100, 1001, 50)]
    assert all(a < b for a, b in zip(values, values[1:]))


def test_explicit_alpha_wins_and_rms_follows_it():
    attack = ALMA(steps=100, alpha=0.7)
    assert attack.alpha == 0.7 and attack.alpha_rms == 0.7 and attack.momentum == 0.7
    assert ALMA(steps=1000).momentum == pytest.approx(0.9)
