"""The compiled step (tf.function, jax.jit) against the eager one, trace counts, and memory that
does not grow with the number of steps."""

import gc

import numpy as np
import pytest

from foolbox_alma import ALMA
from foolbox_alma.alma import ALMA as ALMAClass

TRACES = 2
"""Compiled functions per (model, input shape, settings): the gradient (the model's passes, for
every step, step 0 included) and the update (the rest of a step)."""


def problem(fw, n=16, d=30, k=10, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(k, d)).astype(dtype)
    b = (-w @ np.full(d, 0.5) + 2 * rng.normal(size=k)).astype(dtype)
    x = rng.uniform(0.45, 0.55, size=(n, d)).astype(dtype)
    y = (x @ w.T + b).argmax(axis=1)
    return fw.linear_model(w, b), x, y


@pytest.mark.parametrize("distance, init_lr_distance", [("l2", None), ("l1", None), ("l1", "auto")])
@pytest.mark.parametrize("targeted", [False, True])
def test_compiled_and_eager_agree(fw, distance, init_lr_distance, targeted):
    """With ``"auto"`` the compiled step also carries the distance's unit and exponent."""
    if fw.name == "pytorch":
        pytest.skip("PyTorch always runs eagerly")
    import foolbox as fb

    with fw.float64():
        model, x, y = problem(fw, dtype=np.float64)
        labels = (y + 1) % 10 if targeted else y
        criterion = fb.criteria.TargetedMisclassification(fw.tensor(labels)) if targeted else None
        results = []
        for compile in (True, False):
            attack = ALMA(
                distance=distance, steps=40, compile=compile, init_lr_distance=init_lr_distance
            )
            crit = criterion if targeted else fw.tensor(labels)
            results.append(fw.numpy(attack.run(model, fw.tensor(x), crit)))
            assert attack.trace_count == (TRACES if compile else 0)
    np.testing.assert_allclose(results[0], results[1], rtol=1e-9, atol=1e-12)
    assert not np.array_equal(results[0], x)


def test_traced_once_per_model_and_shape(fw):
    if fw.name == "pytorch":
        pytest.skip("PyTorch always runs eagerly")
    model, x, y = problem(fw)
    attack = ALMA(steps=25)
    attack(model, fw.tensor(x), fw.tensor(y))
    assert attack.trace_count == TRACES  # 25 gradients and updates, each traced once
    _, x2, y2 = problem(fw, seed=1)
    attack(model, fw.tensor(x2), fw.tensor(y2))
    assert attack.trace_count == TRACES  # another batch of the same shape: no retracing
    attack(model, fw.tensor(x2[:5]), fw.tensor(y2[:5]))
    assert attack.trace_count == 2 * TRACES  # a new shape traces again


def test_the_model_is_traced_once_for_all_steps(fw):
    """The model's Python function runs once per trace: step 0 and the later steps share one
    compiled gradient, so an attack traces the network once (compiling a ResNet's forward and
    backward costs seconds on JAX). Catches: a separately compiled first step (the model traced
    twice), a step recompiled per call or per value of the step index or of the step-0 flag."""
    if fw.name == "pytorch":
        pytest.skip("PyTorch always runs eagerly")
    import foolbox as fb

    model, x, y = problem(fw)
    calls = []
    raw = model._model

    def counted(inputs):
        calls.append(1)
        return raw(inputs)

    counting = (fb.TensorFlowModel if fw.name == "tensorflow" else fb.JAXModel)(
        counted, bounds=model.bounds
    )
    adversarials = fw.numpy(ALMA(steps=12).run(counting, fw.tensor(x), fw.tensor(y)))
    assert len(calls) == 1, f"the model was traced {len(calls)} times"
    assert not np.array_equal(adversarials, x)  # the steps did run


def _live_tensors(fw):
    gc.collect()
    if fw.name == "jax":
        import jax

        return len(jax.live_arrays())
    if fw.name == "pytorch":
        import torch

        return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))
    import tensorflow as tf

    eager = type(tf.constant(0.0))
    return sum(1 for o in gc.get_objects() if isinstance(o, eager))


def test_memory_does_not_grow_with_steps(fw, monkeypatch):
    counts = {}
    original = ALMAClass._step_function

    def recording(self, problem, x, classes):
        step = original(self, problem, x, classes)

        def wrapped(state, i, x, classes):
            if i in (20, 199):
                counts[i] = _live_tensors(fw)
            return step(state, i, x, classes)

        return wrapped

    monkeypatch.setattr(ALMAClass, "_step_function", recording)
    model, x, y = problem(fw)
    ALMA(steps=200).run(model, fw.tensor(x), fw.tensor(y))
    assert counts[199] <= counts[20] + 2, counts


@pytest.mark.framework
@pytest.mark.parametrize("framework", ["tensorflow", "jax"])
def test_an_evaluation_traces_once_over_its_shards(framework):
    """An evaluation of a compiled framework's model over 10 shards (20 batches) traces ALMA's
    step once in the process, and a second evaluation of the same model none. Catches: a
    cache keyed by the counting wrapper made per shard (a trace per shard: seconds each on a real
    network), a key that holds the batch's data."""
    pytest.importorskip(framework)
    from foolbox_alma import _compile, zoo
    from foolbox_alma.evaluation import evaluate

    fmodel = zoo.foolbox_model(framework)
    x, y = zoo.load_mnist_heldout(40)
    if framework == "tensorflow":
        x = x.transpose(0, 2, 3, 1)
    before = _compile.STEPS.traces
    settings = dict(steps=4, batch_size=2, shard_size=4, progress=False)
    first = evaluate(fmodel, (x, y), **settings)
    assert first.summary["shards"]["total"] == 10
    assert _compile.STEPS.traces == before + TRACES
    evaluate(fmodel, (x, y), **settings)
    assert _compile.STEPS.traces == before + TRACES


def test_an_evaluated_live_model_is_not_kept_alive(fw):
    """After evaluating a live model object and dropping it, nothing of the package holds it (nor
    its compiled steps). Catches: the engine's process-wide cache of live models, compiled steps
    that close over their model, a counting wrapper cached by model."""
    import weakref

    from foolbox_alma import _compile
    from foolbox_alma.evaluation import evaluate

    model, x, y = problem(fw, n=4)
    evaluate(model, (x, y), steps=4, batch_size=2, progress=False)
    ref = weakref.ref(model)
    alive = len(_compile.STEPS)
    del model
    gc.collect()
    assert ref() is None
    assert len(_compile.STEPS) <= alive - (1 if fw.name != "pytorch" else 0)
