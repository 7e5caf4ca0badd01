"""The floor an attack's time is compared with: plain forward+backward passes of the model.

One pass is the gradient of a cross-entropy loss with respect to the inputs, on the batch the
attack runs on, through the same Foolbox model (compiled with ``tf.function`` / ``jax.jit`` on
TensorFlow and JAX, as the attack's steps are). An attack's overhead is its time over the time of
as many such passes as it made (its counted backward passes).

The floor is measured interleaved with the attack, so that a change of machine load during the run
affects both sides alike, in one of two ways:

* ``"steps"`` (PyTorch, where the module is at hand): a forward pre-hook on the module runs a
  timed floor pass right before every k-th gradient-carrying forward of the attack (one per
  attack step; passes with gradients disabled, such as final checks, are skipped). The floor
  passes are not counted as the attack's, and their time is subtracted from the attack's.
* ``"around"`` (everywhere): half of the floor passes are timed just before the attack's call on
  a batch and half just after.
"""

import time
from typing import Any, Callable, Optional

import eagerpy as ep
import foolbox as fb

from ._dispatch import value_aux_and_grad


def floor_pass(fmodel: fb.Model, x: Any, y: Any, warm_up: bool = True) -> Callable[[], None]:
    """A function running one forward+backward pass on ``(x, y)`` and waiting for the result
    (called once here, untimed, unless ``warm_up`` is False: that compiles it on TF and JAX)."""
    xe, ye = ep.astensor(x), ep.astensor(y)

    def loss(inputs: ep.Tensor, labels: ep.Tensor) -> ep.Tensor:
        return ep.crossentropy(fmodel(inputs), labels).sum()

    def gradient(inputs: ep.Tensor, labels: ep.Tensor) -> ep.Tensor:
        # with respect to the inputs only (on PyTorch: no parameter gradients), as ALMA does
        return value_aux_and_grad(lambda i: (loss(i, labels), ()), inputs)[2]

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
    if warm_up:
        run()  # compiles on TF and JAX, warms caches on PyTorch: not timed
    return run


def time_passes(run: Callable[[], None], passes: int) -> float:
    """Seconds taken by ``passes`` calls of ``run``."""
    start = time.perf_counter()
    for _ in range(passes):
        run()
    return time.perf_counter() - start


class StepSampler:
    """Runs and times a floor pass before every ``every``-th gradient-carrying forward of a
    PyTorch module (see the module docstring).

    Example::

        with StepSampler(module, floor, every=1, counter=counter) as sampler:
            attack(...)
        attack_seconds = elapsed - sampler.seconds
    """

    def __init__(
        self, module: Any, floor: Callable[[], None], every: int = 1, counter: Optional[Any] = None
    ):
        self.module = module
        self.floor = floor
        self.every = max(1, int(every))
        self.counter = counter
        self.seconds = 0.0
        self.passes = 0
        self._calls = 0
        self._busy = False
        self._handle: Any = None

    def __enter__(self) -> "StepSampler":
        self._handle = self.module.register_forward_pre_hook(self._hook)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._handle.remove()

    def _hook(self, module: Any, args: Any) -> None:
        import torch

        if self._busy or not torch.is_grad_enabled():
            return
        if not (args and getattr(args[0], "requires_grad", False)):
            return
        self._calls += 1
        if (self._calls - 1) % self.every:
            return
        self._busy = True
        if self.counter is not None:
            self.counter.paused = True
        try:
            start = time.perf_counter()
            self.floor()
            self.seconds += time.perf_counter() - start
            self.passes += 1
        finally:
            self._busy = False
            if self.counter is not None:
                self.counter.paused = False
