"""What identifies a model's weights, so that results are never attributed to other weights.

A run's results belong to the weights that ran, not to the spec text that named them: the same
``model.py:build`` loads other weights after retraining, a live model object may hold any network.
:func:`fingerprint` records two things:

* ``parameters``: a SHA-256 of the model's parameters and buffers where the framework exposes them
  (the ``state_dict`` of a PyTorch module, TorchScript included; the variables of a Keras model or
  ``tf.Module``; the arrays a JAX function carries in a ``params`` attribute, a
  ``functools.partial`` or its closure), in a fixed order, bytes exact. None where nothing is
  found (a JAX function whose weights are out of reach).
* ``probe``: the model's outputs on a fixed probe (inputs drawn from a seeded generator inside the
  bounds, in the data's shape), which any model has. Float outputs differ in their last bits
  between thread counts, devices and processes, so the probe is compared with a tolerance
  (:func:`probe_differs`), never hashed.

The parameters' digest goes into the run's identity (its hash); the probe is kept beside it and
checked on every rerun and in every worker (:func:`check`).
"""

import functools
import hashlib
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import eagerpy as ep
import numpy as np

from .._runtime import model_framework, to_native
from ..counting import torch_module_of

PROBE_SIZE = 4
PROBE_SEED = 14
PROBE_RTOL = 1e-4
"""Relative tolerance (of the largest probe output) within which two probes are the same model:
retraining or a changed weight moves outputs by far more; thread counts and devices by ~1e-6."""

_ATTRIBUTE = "_foolbox_alma_fingerprint"


def fingerprint(fmodel: Any, sample_shape: Sequence[int]) -> Dict[str, Any]:
    """The model's fingerprint for inputs of ``sample_shape`` (see the module docstring).

    Computed once per model object and input shape (kept on the model), so that a worker that
    attacks many shards hashes its parameters once.
    """
    key = tuple(int(d) for d in sample_shape)
    cached = getattr(fmodel, _ATTRIBUTE, None)
    if isinstance(cached, tuple) and cached[0] == key:
        return cached[1]
    digest, count = parameters_digest(fmodel)
    result = {"parameters": digest, "parameter_count": count, "probe": probe(fmodel, key)}
    try:
        setattr(fmodel, _ATTRIBUTE, (key, result))
    except AttributeError:
        pass
    return result


def probe(fmodel: Any, sample_shape: Tuple[int, ...]) -> List[List[float]]:
    """The model's outputs (float64 lists) on :data:`PROBE_SIZE` seeded inputs in its bounds."""
    lo, hi = fmodel.bounds
    rng = np.random.default_rng(PROBE_SEED)
    x = rng.uniform(lo, hi, size=(PROBE_SIZE, *sample_shape)).astype(np.float32)
    outputs = ep.astensor(fmodel(to_native(fmodel, x))).numpy().astype(np.float64)
    return [[float(v) for v in row] for row in outputs.reshape(len(outputs), -1)]


def probe_differs(a: Any, b: Any) -> Optional[float]:
    """None when two probes agree within :data:`PROBE_RTOL`; else their largest difference
    relative to the largest output (inf when their shapes differ)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    scale = max(float(np.abs(a).max(initial=0)), float(np.abs(b).max(initial=0)), 1e-12)
    gap = float(np.abs(a - b).max(initial=0)) / scale
    return None if gap <= PROBE_RTOL else gap


def check(fmodel: Any, expected: Dict[str, Any], sample_shape: Sequence[int]) -> Optional[str]:
    """None when ``fmodel`` has the ``expected`` fingerprint; else what differs, in words."""
    actual = fingerprint(fmodel, sample_shape)
    if actual["parameters"] != expected.get("parameters"):
        return (
            f"its parameters' digest is {_short(actual['parameters'])}, the run's "
            f"{_short(expected.get('parameters'))}"
        )
    gap = probe_differs(actual["probe"], expected.get("probe"))
    if gap is not None:
        return f"its outputs on the probe differ from the run's by {gap:.3g} (relative)"
    return None


def _short(digest: Optional[str]) -> str:
    return "unknown" if digest is None else digest[:12]


# -- parameters ----------------------------------------------------------------------------------


def parameters_digest(fmodel: Any) -> Tuple[Optional[str], int]:
    """SHA-256 of the parameters the framework exposes (None if none) and how many numbers."""
    arrays = list(_parameter_arrays(fmodel))
    if not arrays:
        return None, 0
    digest = hashlib.sha256()
    count = 0
    for name, array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
        count += int(array.size)
    return digest.hexdigest(), count


def _parameter_arrays(fmodel: Any) -> Iterator[Tuple[str, np.ndarray]]:
    framework = model_framework(fmodel)
    inner = getattr(fmodel, "model", None)  # a counting wrapper holds the model
    if inner is not None and inner is not fmodel:
        yield from _parameter_arrays(inner)
        return
    if framework == "pytorch":
        module = torch_module_of(fmodel)
        if module is not None:
            for name, tensor in sorted(module.state_dict().items()):
                yield name, tensor.detach().cpu().numpy()
    elif framework == "tensorflow":
        variables = getattr(getattr(fmodel, "_model", None), "variables", None) or []
        for index, variable in enumerate(variables):  # in the model's order: names vary by load
            yield str(index), variable.numpy()
    else:
        yield from _jax_arrays(getattr(fmodel, "_model", None))


def _jax_arrays(function: Any) -> Iterator[Tuple[str, np.ndarray]]:
    """The arrays a JAX model function carries: a ``params`` attribute, the arguments of a
    ``functools.partial``, or the cells of its closure (one level)."""
    import jax

    sources: List[Any] = []
    for candidate in (function, getattr(function, "__wrapped__", None)):
        if candidate is None:
            continue
        if getattr(candidate, "params", None) is not None:
            sources.append(candidate.params)
        if isinstance(candidate, functools.partial):
            sources += [candidate.args, candidate.keywords]
        for cell in getattr(candidate, "__closure__", None) or ():
            try:
                sources.append(cell.cell_contents)
            except ValueError:  # an empty cell
                continue
    index = 0
    for source in sources:
        if callable(source) and not hasattr(source, "shape"):
            continue
        for leaf in jax.tree_util.tree_leaves(source):
            if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
                yield str(index), np.asarray(leaf)
                index += 1
