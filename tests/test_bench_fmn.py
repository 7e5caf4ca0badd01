"""The bench's L2 FMN: Foolbox's attack with its projection onto the L2 ball restored.

Oracles: the closed-form projection onto an L2 ball, and the closed-form minimal L2 adversarial of a
linear classifier (tests/test_alma_linear.py), on every backend.
"""

import eagerpy as ep
import foolbox as fb
import numpy as np
from helpers import linear_problem, minimal_distances, norms

from foolbox_alma.registry import ATTACKS, L2FMNAttack


def ball_projection(x, x0, epsilon):
    delta = (x - x0).reshape(len(x), -1).astype(np.float64)
    scale = np.minimum(1.0, epsilon / np.linalg.norm(delta, axis=1))
    return x0 + (delta * scale[:, None]).reshape(x.shape)


def projection_case():
    rng = np.random.default_rng(0)
    x0 = rng.random((6, 3, 4, 4))
    x = x0 + rng.normal(size=x0.shape) * np.array([0.01, 0.1, 1, 1, 2, 5])[:, None, None, None]
    # radii below, between and above the perturbations' norms (48 dims), and inf (FMN's start)
    epsilon = np.array([1.0, 1.0, 1.0, 10.0, 3.0, np.inf])
    return x, x0, epsilon


def test_projection_is_the_l2_ball_projection():
    x, x0, epsilon = projection_case()
    projected = L2FMNAttack().project(ep.astensor(x), ep.astensor(x0), ep.astensor(epsilon))
    np.testing.assert_allclose(projected.numpy(), ball_projection(x, x0, epsilon), rtol=1e-12)
    radii = np.linalg.norm((projected.numpy() - x0).reshape(6, -1), axis=1)
    assert np.all(radii <= epsilon * (1 + 1e-12))


def test_foolbox_projection_is_still_broken():
    """Why the subclass exists: Foolbox's own L2 projection returns its input unchanged. If this
    fails, Foolbox has fixed it and bench/attacks.py can use Foolbox's class again."""
    x, x0, epsilon = projection_case()
    stock = fb.attacks.L2FMNAttack().project(ep.astensor(x), ep.astensor(x0), ep.astensor(epsilon))
    np.testing.assert_array_equal(stock.numpy(), x)
    assert not np.allclose(stock.numpy(), ball_projection(x, x0, epsilon))


def test_reaches_the_closed_form_optimum_of_a_linear_model(fw):
    w, b, x, y = linear_problem(d=100, margin_scale=5.0, spread=0.4, separated=2)
    optimum = minimal_distances(w, b, x, y, 2)
    model = fw.linear_model(w, b)
    xs, ys = fw.tensor(x), fw.tensor(y)

    adversarials = fw.numpy(L2FMNAttack(steps=500).run(model, xs, ys))
    success = fw.numpy(model(fw.tensor(adversarials))).argmax(axis=1) != y
    ratio = (norms(adversarials, x, 2) / optimum)[success]
    # On a linear model FMN's epsilon (norm + distance to the boundary) puts the iterate exactly on
    # the boundary, where float rounding decides the class: a sample may end there, unsuccessful
    # (1 of 50 on JAX at 500 steps; it succeeds at 1000)
    assert success.mean() >= 0.9
    assert ratio.min() > 1 - 1e-4  # never below the optimum (float32 rounding)
    assert ratio.max() < 1.01

    # Foolbox's own class, for contrast: without the projection it keeps the first adversarial
    # on its path, several times the optimum
    stock = fw.numpy(fb.attacks.L2FMNAttack(steps=500).run(model, xs, ys))
    assert np.median(norms(stock, x, 2) / optimum) > 2


def test_the_registry_runs_the_fixed_attack(fw):
    w, b, x, y = linear_problem(d=100, margin_scale=5.0, spread=0.4, separated=2)
    model = fw.linear_model(w, b)
    run, settings = ATTACKS["fmn-l2"].build(20)
    assert settings == {"steps": 20, "projection": "l2 ball (fixed)"}  # results of the old differ
    registry = fw.numpy(run(model, None, fw.tensor(x), fw.tensor(y)))
    direct = fw.numpy(L2FMNAttack(steps=20).run(model, fw.tensor(x), fw.tensor(y)))
    stock = fw.numpy(fb.attacks.L2FMNAttack(steps=20).run(model, fw.tensor(x), fw.tensor(y)))
    np.testing.assert_array_equal(registry, direct)
    assert not np.allclose(registry, stock)
