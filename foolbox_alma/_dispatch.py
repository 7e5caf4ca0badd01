"""The few framework primitives EagerPy lacks, dispatched on the tensor's backend.

Everything else in the attack is written with ``ep.`` operations only.
"""

from typing import Any

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
