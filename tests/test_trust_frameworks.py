"""Evaluations a user can trust, with TensorFlow and JAX models (the PyTorch side is
tests/test_trust.py): weights a fingerprint cannot hash told apart by their outputs, adversarials
returned in the data's layout, NumPy inputs given to a framework's model.

Oracles: the user's own computation (the data plus the perturbation, their model's outputs).
"""

import numpy as np
import pytest

from foolbox_alma import zoo
from foolbox_alma.evaluation import EvaluationError, evaluate

FAST = dict(steps=8, batch_size=4, threads=1, progress=False)


@pytest.mark.framework
def test_a_model_whose_weights_cannot_be_hashed_is_told_apart_by_its_outputs(tmp_path):
    """A JAX function whose weights hide in an object the fingerprint cannot see: only the probe
    tells two models apart, compared with a tolerance. Catches: a fingerprint that is None for
    such models (and thus the same for any two), a probe that is not checked on resume."""
    jax = pytest.importorskip("jax")
    import foolbox as fb

    class Hidden:
        def __init__(self, seed):
            self.w = jax.numpy.asarray(np.random.default_rng(seed).normal(size=(784, 10)))

    def model(seed):
        box = Hidden(seed)
        return fb.JAXModel(lambda x: x.reshape(len(x), -1) @ box.w.astype(x.dtype), (0, 1),
                           data_format="channels_first")  # fmt: skip

    x, y = zoo.load_mnist_heldout(4)
    evaluate(model(0), (x, y), out=tmp_path / "r", **FAST)
    with pytest.raises(EvaluationError, match="outputs on the fingerprint's probe differ"):
        evaluate(model(1), (x, y), out=tmp_path / "r", **FAST)


@pytest.mark.framework
def test_adversarials_come_back_in_the_datas_layout(tmp_path):
    """Channels-first data given to a channels-last (TensorFlow) model: adversarials.npz has the
    data's shape, and its points are the data's plus the attack's perturbation. Catches:
    adversarials returned channels-last without a word."""
    pytest.importorskip("tensorflow")
    x, y = zoo.load_heldout("colour-mnist", 4)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    result = evaluate("colour-cnn", str(tmp_path / "d.npz"), framework="tensorflow",
                      out=tmp_path / "o", save_adversarials=True, **FAST)  # fmt: skip
    saved = np.load(tmp_path / "o" / "adversarials.npz")["adversarials"]
    assert saved.shape == x.shape and result.adversarials.shape == x.shape
    l2 = np.sqrt(((saved - x).reshape(len(x), -1).astype(np.float64) ** 2).sum(1))
    np.testing.assert_allclose(l2[result.success], result.distance[result.success], rtol=1e-5)


@pytest.mark.framework
def test_numpy_inputs_to_a_framework_model_name_the_fix():
    """NumPy inputs given to an fb.TensorFlowModel: the message says to pass tf tensors (it was
    wrapped already). Catches: "wrap the network with fb.TensorFlowModel" said to someone who
    did."""
    pytest.importorskip("tensorflow")
    from foolbox_alma import ALMA

    fmodel = zoo.foolbox_model("tensorflow")
    x, y = zoo.load_mnist_heldout(2)
    with pytest.raises(TypeError, match=r"give this TensorFlowModel TensorFlow tensors"):
        ALMA(steps=2)(fmodel, x.transpose(0, 2, 3, 1), y)
