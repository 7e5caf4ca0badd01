"""DLR+ and tDLR+: hand-computed values, invariance to scaling (and shifting) the logits, the sign at
the decision boundary, and the fallback with fewer than 3 or 4 classes."""

import eagerpy as ep
import numpy as np
import pytest

from foolbox_alma.constraints import dlr_plus, targeted_dlr_plus, two_class_gap


def call(fn, fw, logits, classes, kappa=0.0):
    z = ep.astensor(fw.tensor(np.asarray(logits, dtype=np.float64)))
    c = ep.astensor(fw.tensor(np.asarray(classes, dtype=np.int64)))
    return fn(z, c, kappa).numpy()


def test_hand_computed_values(fw):
    logits = [[4.0, 1.0, 3.0, 0.0, -2.0], [1.0, 5.0, 2.0, 2.0, 0.0]]
    with fw.float64():
        # sample 0, label 0: (4 - 3) / (4 - 1); sample 1, label 2: (2 - 5) / (5 - 2)
        np.testing.assert_allclose(call(dlr_plus, fw, logits, [0, 2]), [1 / 3, -1.0], rtol=1e-7)
        # kappa enters the numerator
        np.testing.assert_allclose(
            call(dlr_plus, fw, logits, [0, 2], kappa=0.5), [1.5 / 3, -2.5 / 3], rtol=1e-7
        )
        # targeted, target 2 then 1: (4 - 3 + k) / (4 - (1 + 0)/2); (2 - 5 + k) / (5 - (2 + 1)/2)
        np.testing.assert_allclose(
            call(targeted_dlr_plus, fw, logits, [2, 1], kappa=0.25),
            [1.25 / 3.5, -2.75 / 3.5],
            rtol=1e-7,
        )


@pytest.mark.parametrize("fn", [dlr_plus, targeted_dlr_plus])
def test_invariant_to_scale_and_shift_of_logits(fw, fn):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(64, 10))
    classes = rng.integers(0, 10, size=64)
    with fw.float64():
        base = call(fn, fw, logits, classes)
        for a, b in [(7.5, 0.0), (0.1, -3.0), (1000.0, 42.0)]:  # up to the 1e-8 in the normaliser
            np.testing.assert_allclose(call(fn, fw, a * logits + b, classes), base, rtol=1e-6)


def test_sign_at_the_decision_boundary(fw):
    # two logits tied at the top: with kappa > 0 the sample is not adversarial yet (>0);
    # a tiny push of the other class beyond kappa makes it adversarial (<0).
    kappa = 1e-4
    tied = [[2.0, 2.0, 0.0, -1.0]]
    with fw.float64():
        assert call(dlr_plus, fw, tied, [0], kappa)[0] > 0
        assert call(dlr_plus, fw, [[2.0, 2.0 + 2 * kappa, 0.0, -1.0]], [0], kappa)[0] < 0
        assert call(dlr_plus, fw, [[2.0, 2.0 + kappa / 2, 0.0, -1.0]], [0], kappa)[0] > 0
        # targeted: the target must exceed every other logit by kappa
        assert call(targeted_dlr_plus, fw, tied, [1], kappa)[0] > 0
        assert call(targeted_dlr_plus, fw, [[2.0, 2.0 + 2 * kappa, 0.0, -1.0]], [1], kappa)[0] < 0


def test_sign_agrees_with_argmax(fw):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(500, 6))
    labels = rng.integers(0, 6, size=500)
    with fw.float64():
        untargeted = call(dlr_plus, fw, logits, labels, kappa=0.0)
        targeted = call(targeted_dlr_plus, fw, logits, labels, kappa=0.0)
    predicted = logits.argmax(axis=1)
    np.testing.assert_array_equal(untargeted < 0, predicted != labels)
    np.testing.assert_array_equal(targeted < 0, predicted == labels)


def test_fewer_classes_fallback(fw):
    with fw.float64():
        # 3 classes, targeted: the 4th sorted logit falls back to the 3rd -> z_pi1 - z_pi3
        got = call(targeted_dlr_plus, fw, [[3.0, 1.0, 0.0]], [1], kappa=0.0)
        np.testing.assert_allclose(got, [(3 - 1) / (3 - 0)], rtol=1e-7)
        # 3 classes untargeted uses the true 3rd logit
        np.testing.assert_allclose(
            call(dlr_plus, fw, [[3.0, 1.0, 0.0]], [0]), [(3 - 1) / 3], rtol=1e-7
        )
        # 2 classes: difference of logits over the given per-sample scale (default 1)
        np.testing.assert_allclose(call(dlr_plus, fw, [[3.0, 1.0]], [0], 0.1), [2.1], rtol=1e-7)
        z = ep.astensor(fw.tensor(np.array([[3.0, 1.0], [0.0, 4.0]])))
        scale = two_class_gap(z)
        np.testing.assert_allclose(scale.numpy(), [2.0, 4.0], rtol=1e-7)
        c = ep.astensor(fw.tensor(np.array([0, 0])))
        np.testing.assert_allclose(dlr_plus(z, c, 0.0, scale).numpy(), [1.0, -1.0], rtol=1e-7)
        np.testing.assert_allclose(
            call(targeted_dlr_plus, fw, [[3.0, 1.0]], [1], 0.1), [2.1], rtol=1e-7
        )
        z = ep.astensor(fw.tensor(np.array([[3.0, 1.0]])))
        c = ep.astensor(fw.tensor(np.array([0])))
        _, g = ep.value_and_grad(lambda t: dlr_plus(t, c, 1e-4).sum(), z)
        np.testing.assert_allclose(g.numpy(), [[1.0, -1.0]])
