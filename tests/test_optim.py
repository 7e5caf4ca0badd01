"""Optimiser pieces against hand-computed updates and closed forms."""

import eagerpy as ep
import numpy as np

from foolbox_alma.optim import exponential_decay, find_initial_lr, rmsprop_init, rmsprop_update


def test_rmsprop_with_momentum_two_steps(fw):
    g1 = np.array([[0.5, -2.0, 0.0]])
    g2 = np.array([[1.0, 1.0, -3.0]])
    a, m = 0.9, 0.5
    with fw.float64():
        state = rmsprop_init(ep.astensor(fw.tensor(np.zeros_like(g1))))
        d1, state = rmsprop_update(ep.astensor(fw.tensor(g1)), state, a, m)
        d2, state = rmsprop_update(ep.astensor(fw.tensor(g2)), state, a, m)
        d1, d2 = d1.numpy(), d2.numpy()
    s1 = a * 1.0 + (1 - a) * g1**2  # the squared-gradient average starts at 1
    b1 = g1 / (np.sqrt(s1) + 1e-8)
    s2 = a * s1 + (1 - a) * g2**2
    b2 = m * b1 + g2 / (np.sqrt(s2) + 1e-8)
    np.testing.assert_allclose(d1, b1, rtol=1e-12)
    np.testing.assert_allclose(d2, b2, rtol=1e-12)


def test_exponential_decay_starts_when_found(fw):
    steps = 100
    with fw.float64():
        lr = ep.astensor(fw.tensor(np.array([0.2, 0.2, 0.2])))
        found = ep.astensor(fw.tensor(np.array([steps + 1.0, 10.0, 0.0])))
        at_50 = exponential_decay(lr, 0.01, 50, found, steps).numpy()
        at_5 = exponential_decay(lr, 0.01, 5, found, steps).numpy()
    np.testing.assert_allclose(at_50, [0.2, 0.2 * 0.01 ** (40 / 90), 0.2 * 0.01 ** (50 / 100)])
    np.testing.assert_allclose(at_5, [0.2, 0.2, 0.2 * 0.01 ** (5 / 100)])


def test_initial_lr_finder_closed_form(fw):
    """For the L2 distance, no clipping: ||lr g|| = target, so lr = target / ||g||."""
    rng = np.random.default_rng(0)
    u = 0.5 + 0.01 * rng.normal(size=(6, 20))
    g = rng.normal(size=(6, 20)) * np.array([1e-3, 0.1, 1, 10, 1e3, 1e5])[:, None]
    with fw.float64():
        ut, gt = ep.astensor(fw.tensor(u)), ep.astensor(fw.tensor(g))

        def l2(v):
            return ep.sqrt(ep.square(v - ut).reshape((6, -1)).sum(axis=-1))

        lr = find_initial_lr(l2, ut, gt, 0.1).numpy()
    target_lr = 0.1 / np.linalg.norm(g, axis=1)
    # 20 bisection steps after doubling from 1 (or from below) leave a bracket of 2^-20 relative
    np.testing.assert_allclose(lr, target_lr, rtol=2e-6 * max(1, 1 / target_lr.min()))


def test_initial_lr_finder_is_bounded_when_target_unreachable(fw):
    """The box stops the step: the distance can never reach the target; the doubling must end."""
    u = np.zeros((2, 4))
    g = np.ones((2, 4))  # stepping along -g leaves the [0, 1] box immediately: clip keeps u
    with fw.float64():
        ut, gt = ep.astensor(fw.tensor(u)), ep.astensor(fw.tensor(g))

        def l2(v):
            return ep.sqrt(ep.square(v - ut).sum(axis=-1))

        lr = find_initial_lr(l2, ut, gt, 0.1, max_doublings=10).numpy()
    # 10 doublings from 1 without reaching the target: the bracket is [2^9, 2^10]
    assert np.isfinite(lr).all()
    assert ((lr >= 2**9) & (lr <= 2**10)).all()
