"""Counting forward and backward passes, per sample, instead of assuming them.

On PyTorch a forward pre-hook and a full backward hook on the module count every pass the attack
makes (including passes made outside Foolbox's model wrapper).
"""

from typing import Any


class PassCounter:
    """Forward and backward passes, counted in samples (a batch of 200 counts 200)."""

    def __init__(self) -> None:
        self.forward_samples = 0
        self.backward_samples = 0

    def per_sample(self, n: int) -> "tuple[float, float]":
        return self.forward_samples / n, self.backward_samples / n


class count_torch_passes:
    """Context manager counting the passes through a ``torch.nn.Module``.

    Example:
        with count_torch_passes(net) as counter:
            attack.run(fmodel, x, y)
        forwards, backwards = counter.per_sample(len(x))
    """

    def __init__(self, module: Any):
        self.module = module
        self.counter = PassCounter()
        self._handles: list = []

    def __enter__(self) -> PassCounter:
        counter = self.counter

        def on_forward(module: Any, args: Any) -> None:
            counter.forward_samples += len(args[0])

        def on_backward(module: Any, grad_input: Any, grad_output: Any) -> None:
            counter.backward_samples += len(grad_output[0])

        self._handles = [
            self.module.register_forward_pre_hook(on_forward),
            self.module.register_full_backward_hook(on_backward),
        ]
        return counter

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
