"""The floor an attack's time is compared with: plain forward+backward passes of the model.

One pass is the gradient of a cross-entropy loss with respect to the inputs, on the batch the
attack runs on, through the same Foolbox model (compiled with ``tf.function`` / ``jax.jit`` on
TensorFlow and JAX, as the attack's steps are). An attack's overhead is its time over the time of
as many such passes as it made (its counted backward passes).

The floor is measured interleaved with the attack, half of the passes just before it and half just
after, so that a change of machine load during the run affects both sides alike.
"""

import time
from typing import Any, Callable

import eagerpy as ep
import foolbox as fb


def floor_pass(fmodel: fb.Model, x: Any, y: Any) -> Callable[[], None]:
    """A function running one forward+backward pass on ``(x, y)`` and waiting for the result."""
    xe, ye = ep.astensor(x), ep.astensor(y)

    def loss(inputs: ep.Tensor, labels: ep.Tensor) -> ep.Tensor:
        return ep.crossentropy(fmodel(inputs), labels).sum()

    def gradient(inputs: ep.Tensor, labels: ep.Tensor) -> ep.Tensor:
        return ep.value_and_grad(loss, inputs, labels)[1]

    if isinstance(xe, ep.TensorFlowTensor):
        import tensorflow as tf

        compiled = tf.function(lambda a, b: gradient(ep.astensor(a), ep.astensor(b)).raw)

        def run() -> None:
            compiled(xe.raw, ye.raw).numpy()

    elif isinstance(xe, ep.JAXTensor):
        import jax

        compiled = jax.jit(lambda a, b: gradient(ep.astensor(a), ep.astensor(b)).raw)

        def run() -> None:
            compiled(xe.raw, ye.raw).block_until_ready()

    elif isinstance(xe, ep.PyTorchTensor):
        import torch

        cuda = xe.raw.is_cuda

        def run() -> None:
            gradient(xe, ye)
            if cuda:
                torch.cuda.synchronize()

    else:
        raise TypeError(f"no floor for {type(xe).__name__} inputs")
    run()  # compiles on TF and JAX, warms caches on PyTorch: not timed
    return run


def time_passes(run: Callable[[], None], passes: int) -> float:
    """Seconds taken by ``passes`` calls of ``run``."""
    start = time.perf_counter()
    for _ in range(passes):
        run()
    return time.perf_counter() - start
