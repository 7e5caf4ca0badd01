"""Compiling a pure step function of EagerPy tensors with the framework's own compiler, and the
process-wide cache of compiled steps.

The step takes and returns a (possibly nested) tuple of EagerPy tensors; the compiled version is
traced on raw framework tensors (``tf.function`` or ``jax.jit``) and wraps the results back.

Tracing a step costs as much as tens or hundreds of steps (seconds for a ResNet on TensorFlow), so
a compiled step is kept for as long as its model lives and reused by every later call with the same
key (:class:`StepCache`): every batch and shard of an evaluation, and every attack object with the
same settings. The cache holds models weakly, and the steps it keeps must not hold their model
(they reach it through a weak reference), so a model that is dropped takes its steps with it.
"""

import weakref
from typing import Any, Callable, Dict, Hashable

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


class StepCache:
    """Compiled steps per model (held weakly) and key (shapes, dtypes, settings...)."""

    def __init__(self) -> None:
        self._per_model: weakref.WeakKeyDictionary[Any, Dict[Hashable, Any]] = (
            weakref.WeakKeyDictionary()
        )
        self.traces = 0  # steps traced in this process (a compiled step counts its traces)

    def get(
        self, model: Any, key: Hashable, make: Callable[[], Callable[..., Any]]
    ) -> Callable[..., Any]:
        """The step compiled for ``model`` and ``key``, made with ``make()`` on first use."""
        steps = self._per_model.setdefault(model, {})
        if key not in steps:
            steps[key] = make()
        return steps[key]

    def __len__(self) -> int:
        """Models with compiled steps alive (for tests: a dropped model leaves none behind)."""
        return len(self._per_model)


STEPS = StepCache()
"""The process-wide cache of ALMA's compiled steps."""
