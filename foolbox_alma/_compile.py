"""Compiling a pure step function of EagerPy tensors with the framework's own compiler.

The step takes and returns a (possibly nested) tuple of EagerPy tensors; the compiled version is
traced on raw framework tensors (``tf.function`` or ``jax.jit``) and wraps the results back.
"""

from typing import Any, Callable

import eagerpy as ep


def _to_raw(tree: Any) -> Any:
    if isinstance(tree, ep.Tensor):
        return tree.raw
    if isinstance(tree, tuple):
        values = [_to_raw(t) for t in tree]
        return type(tree)(*values) if hasattr(tree, "_fields") else tuple(values)
    return tree


def _to_ep(tree: Any) -> Any:
    if isinstance(tree, tuple):
        values = [_to_ep(t) for t in tree]
        return type(tree)(*values) if hasattr(tree, "_fields") else tuple(values)
    return ep.astensor(tree)


def compile_step(fn: Callable[..., Any], framework: str) -> Callable[..., Any]:
    """``fn`` compiled with ``tf.function`` (TensorFlow) or ``jax.jit`` (JAX)."""

    def raw_fn(*raw_args: Any) -> Any:
        return _to_raw(fn(*_to_ep(raw_args)))

    if framework == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(raw_fn, autograph=False)
    elif framework == "jax":
        import jax

        compiled = jax.jit(raw_fn)
    else:
        raise ValueError(f"no compiler for {framework}")

    def call(*args: Any) -> Any:
        return _to_ep(compiled(*_to_raw(args)))

    return call
