"""Model functions for the model-spec tests (``tests/test_evaluate_loaders.py``): tiny networks
with seeded weights, one per framework, and functions that fail in each way a user's can.

Each ``*_model`` function builds a Foolbox model of inputs ``(N, 1, 6, 6)``; ``linear_weights``
and ``torch_net`` give the test the same network, to compute its logits independently."""

from typing import Any

import numpy as np

INPUT_SHAPE = (1, 6, 6)
CLASSES = 4


def linear_weights() -> np.ndarray:
    """The (36, 4) float32 matrix of the TensorFlow and JAX models: logits = flatten(x) @ W."""
    return np.random.default_rng(0).normal(size=(36, CLASSES)).astype(np.float32)


def torch_net() -> Any:
    """A seeded conv + linear PyTorch network in eval mode."""
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(2 * 4 * 4, CLASSES),
    ).eval()


def torch_model() -> Any:
    import foolbox as fb

    return fb.PyTorchModel(torch_net(), bounds=(0, 1))


def tensorflow_model() -> Any:
    import foolbox as fb
    import tensorflow as tf

    inputs = tf.keras.Input(shape=INPUT_SHAPE)
    dense = tf.keras.layers.Dense(CLASSES, use_bias=False)
    model = tf.keras.Model(inputs, dense(tf.keras.layers.Flatten()(inputs)))
    dense.set_weights([linear_weights()])
    return fb.TensorFlowModel(model, bounds=(0, 1))


def jax_model() -> Any:
    import foolbox as fb
    import jax.numpy as jnp

    weights = jnp.asarray(linear_weights())
    return fb.JAXModel(lambda x: x.reshape(x.shape[0], -1) @ weights, bounds=(0, 1))


def not_a_model() -> Any:
    return [1, 2, 3]


def fails() -> Any:
    raise RuntimeError("the checkpoint is missing")


not_callable = 3
