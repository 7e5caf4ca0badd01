"""The few framework primitives EagerPy lacks, dispatched on the tensor's backend.

Everything else in the attack is written with ``ep.`` operations only.
"""

from typing import Any, Callable, Tuple

import eagerpy as ep


def stop_gradient(t: ep.Tensor) -> ep.Tensor:
    """``t`` as a constant for automatic differentiation (same value, no gradient)."""
    if isinstance(t, ep.PyTorchTensor):
        return ep.PyTorchTensor(t.raw.detach())
    if isinstance(t, ep.TensorFlowTensor):
        import tensorflow as tf

        return ep.TensorFlowTensor(tf.stop_gradient(t.raw))
    if isinstance(t, ep.JAXTensor):
        import jax

        return ep.JAXTensor(jax.lax.stop_gradient(t.raw))
    return t


def framework_name(t: Any) -> str:
    """``"pytorch"``, ``"tensorflow"``, ``"jax"`` or ``"numpy"`` for an EagerPy tensor."""
    for cls, name in (
        (ep.PyTorchTensor, "pytorch"),
        (ep.TensorFlowTensor, "tensorflow"),
        (ep.JAXTensor, "jax"),
        (ep.NumPyTensor, "numpy"),
    ):
        if isinstance(t, cls):
            return name
    raise TypeError(f"not an EagerPy tensor: {type(t).__name__}")


def value_aux_and_grad(
    f: Callable[[ep.Tensor], Tuple[ep.Tensor, Any]], x: ep.Tensor
) -> Tuple[ep.Tensor, Any, ep.Tensor]:
    """``f(x) = (loss, aux)``: the loss, ``aux`` (no gradient) and d loss / d x.

    On PyTorch the gradient is taken with ``torch.autograd.grad`` with respect to the inputs only:
    EagerPy's ``backward()`` would also compute (and leave in ``.grad``) the gradients of every
    model parameter that requires one, which costs time and changes the caller's model.
    """
    if isinstance(x, ep.PyTorchTensor):
        import torch

        raw = x.raw.detach().requires_grad_()
        with torch.enable_grad():
            loss, aux = f(ep.PyTorchTensor(raw))
            (grad,) = torch.autograd.grad(loss.raw, raw)
        aux = tuple(
            ep.PyTorchTensor(a.raw.detach()) if isinstance(a, ep.PyTorchTensor) else a for a in aux
        )
        return ep.PyTorchTensor(loss.raw.detach()), aux, ep.PyTorchTensor(grad)
    return ep.value_and_grad_fn(x, f, has_aux=True)(x)
