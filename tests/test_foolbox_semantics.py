"""ALMA behaves like Foolbox's own minimisation attacks: epsilons, criteria, repeat, native types,
and reproducible results."""

import foolbox as fb
import numpy as np
from helpers import minimal_adversarials, small_linear_problem, small_linear_weights

from foolbox_alma import ALMA
from foolbox_alma.distances import l1, l2


def test_epsilons_like_foolbox(fw):
    model, x, y = small_linear_problem(fw)
    attack = ALMA(steps=50)
    xt, yt = fw.tensor(x), fw.tensor(y)
    raw, clipped, success = attack(model, xt, yt)  # epsilons omitted: minimal adversarials
    assert isinstance(raw, fw.tensor_type) and isinstance(success, fw.tensor_type)
    raw = fw.numpy(raw)
    np.testing.assert_array_equal(fw.numpy(clipped), raw)
    assert fw.numpy(success).all()
    dist = np.linalg.norm(raw - x, axis=1)

    eps = float(np.median(dist))
    raw_e, clipped_e, success_e = attack(model, xt, yt, epsilons=eps)
    clipped_e = fw.numpy(clipped_e)
    assert (np.linalg.norm(clipped_e - x, axis=1) <= eps * (1 + 1e-5)).all()
    # clipping keeps the adversarials that were within eps and only those (per Foolbox)
    expected = fb.distances.l2.clip_perturbation(xt, fw.tensor(fw.numpy(raw_e)), eps)
    np.testing.assert_allclose(clipped_e, fw.numpy(expected), rtol=1e-6, atol=1e-7)
    assert fw.numpy(success_e).sum() >= (dist <= eps * 0.999).sum()

    raws, clippeds, successes = attack(model, xt, yt, epsilons=[0.0, eps, None])
    assert len(raws) == len(clippeds) == 3
    successes = fw.numpy(successes)
    assert successes.shape == (3, len(x))
    assert not successes[0].any() and successes[2].all()


def test_criteria_objects_and_labels_agree(fw):
    model, x, y = small_linear_problem(fw)
    attack = ALMA(steps=30)
    by_labels = fw.numpy(attack(model, fw.tensor(x), fw.tensor(y))[0])
    criterion = fb.criteria.Misclassification(fw.tensor(y))
    by_object = fw.numpy(attack(model, fw.tensor(x), criterion)[0])
    np.testing.assert_array_equal(by_labels, by_object)
    # NumPy labels and int32 labels are accepted too
    np.testing.assert_array_equal(fw.numpy(attack(model, fw.tensor(x), y)[0]), by_labels)
    by_int32 = fw.numpy(attack(model, fw.tensor(x), fw.tensor(y.astype(np.int32)))[0])
    np.testing.assert_array_equal(by_int32, by_labels)


def test_targeted_reaches_the_targets(fw):
    model, x, y = small_linear_problem(fw)
    targets = (y + 1) % 4
    criterion = fb.criteria.TargetedMisclassification(fw.tensor(targets))
    raw, _, success = ALMA(distance="l1", steps=100)(model, fw.tensor(x), criterion)
    assert fw.numpy(success).all()
    logits = fw.numpy(model(raw))
    np.testing.assert_array_equal(logits.argmax(axis=1), targets)


def test_repeat_keeps_the_best(fw):
    model, x, y = small_linear_problem(fw)
    fw.seed(0)
    raws, _, success = ALMA(steps=20).repeat(2)(model, fw.tensor(x), fw.tensor(y), epsilons=[None])
    assert fw.numpy(success).all()
    single = fw.numpy(ALMA(steps=20)(model, fw.tensor(x), fw.tensor(y))[0])
    repeated = fw.numpy(raws[0])
    # deterministic attack: the repeat finds the same points (none strictly better)
    np.testing.assert_allclose(repeated, single, rtol=1e-6, atol=1e-7)


def test_run_returns_native_adversarials(fw):
    """``run`` returns native tensors holding adversarials near the closed-form optimum of the
    linear model. Catches: an attack returning its input (not adversarial), one returning points
    outside the box or of another type, one ignoring the distance (far from the optimum)."""
    model, x, y = small_linear_problem(fw)
    out = ALMA(steps=100).run(model, fw.tensor(x), fw.tensor(y))
    assert isinstance(out, fw.tensor_type)
    predictions = fw.numpy(model(out)).argmax(axis=1)
    out = fw.numpy(out)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert (predictions != y).all()
    w, b = small_linear_weights()
    optimum = minimal_adversarials(w, b, x, y, 2)[0]
    found = np.linalg.norm((out - x).astype(np.float64), axis=1)
    assert (found >= optimum * (1 - 1e-4)).all() and (found <= 1.5 * optimum).all()


def test_reproducible_with_the_framework_seed(fw):
    """Randomness only enters where the first gradient vanishes. Here logit 1 is
    100 ||t - x||^2: at the clean inputs every gradient is zero, so each sample takes a random first
    direction, and any step along it makes the input adversarial."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0.3, 0.7, size=(6, 10)).astype(np.float32)
    if fw.name == "pytorch":
        import torch

        xt = torch.from_numpy(x)

        def forward(t):
            s = 100 * ((t - xt) ** 2).sum(dim=1)
            return torch.stack([torch.full_like(s, 0.01), s, torch.zeros_like(s)], dim=1)
    elif fw.name == "tensorflow":
        import tensorflow as tf

        xt = tf.constant(x)

        def forward(t):
            s = 100 * tf.reduce_sum((t - xt) ** 2, axis=1)
            return tf.stack([tf.fill(tf.shape(s), 0.01), s, tf.zeros_like(s)], axis=1)
    else:
        import jax.numpy as jnp

        xt = jnp.asarray(x)

        def forward(t):
            s = 100 * ((t - xt) ** 2).sum(axis=1)
            return jnp.stack([jnp.full_like(s, 0.01), s, jnp.zeros_like(s)], axis=1)

    model = fw.function_model(forward)
    y = np.zeros(6, dtype=np.int64)
    runs = []
    for _ in range(2):
        fw.seed(1234)
        runs.append(fw.numpy(ALMA(steps=20).run(model, fw.tensor(x), fw.tensor(y))))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], x)  # all found adversarials
    fw.seed(99)
    other = fw.numpy(ALMA(steps=20).run(model, fw.tensor(x), fw.tensor(y)))
    # the random directions were used: another seed moves the inputs differently
    assert not np.array_equal(other, runs[0])


def test_distance_objects_match_foolbox(fw):
    rng = np.random.default_rng(0)
    a = rng.random((5, 3, 4)).astype(np.float32)
    b = rng.random((5, 3, 4)).astype(np.float32)
    for ours, theirs in ((l1, fb.distances.l1), (l2, fb.distances.l2)):
        np.testing.assert_allclose(
            fw.numpy(ours(fw.tensor(a), fw.tensor(b))),
            fw.numpy(theirs(fw.tensor(a), fw.tensor(b))),
            rtol=1e-6,
        )
        np.testing.assert_allclose(
            fw.numpy(ours.clip_perturbation(fw.tensor(a), fw.tensor(b), 0.7)),
            fw.numpy(theirs.clip_perturbation(fw.tensor(a), fw.tensor(b), 0.7)),
            rtol=1e-6,
        )
