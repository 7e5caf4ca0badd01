"""Input and hyperparameter validation with errors that name the problem.

Foolbox itself checks the input bounds with bare ``assert`` statements; the attack checks everything
first so that users get a ``ValueError`` or ``TypeError`` that says what is wrong. Nothing here
modifies the tensors it looks at. Labels and criteria given in any form (lists, NumPy arrays,
tensors of another framework) become a Foolbox criterion on the inputs' framework here
(:func:`as_criterion`).
"""

import math
from typing import Any, Mapping, Optional, Tuple, TypeVar, Union

import eagerpy as ep
import foolbox as fb
import numpy as np
from foolbox.attacks.base import get_criterion
from foolbox.criteria import Misclassification, TargetedMisclassification

T = TypeVar("T")


def check_model_has_gradients(model: Any, x: ep.Tensor) -> None:
    if isinstance(model, fb.models.NumPyModel):
        raise TypeError(
            "ALMA needs gradients of the model's outputs with respect to its inputs, and a "
            f"{type(model).__name__} has none; wrap the network with fb.PyTorchModel, "
            "fb.TensorFlowModel or fb.JAXModel instead"
        )
    if isinstance(x, ep.NumPyTensor):
        native = {
            fb.PyTorchModel: "torch tensors (torch.from_numpy(x))",
            fb.TensorFlowModel: "TensorFlow tensors (tf.constant(x))",
            fb.JAXModel: "JAX arrays (jnp.asarray(x))",
        }
        wanted = next((v for k, v in native.items() if isinstance(model, k)), None)
        raise TypeError(
            "the inputs are NumPy arrays, which carry no gradients: "
            + (
                f"give this {type(model).__name__} {wanted}"
                if wanted
                else "give the model tensors of its own framework"
            )
        )


def check_inputs(x: ep.Tensor, model: Any) -> None:
    """Floating point, at least 2-D (batch first), finite, inside ``model.bounds``."""
    dtype = np.dtype(_numpy_dtype(x))
    if dtype.kind != "f":
        raise TypeError(f"inputs must be floating point (float32 or float64), got dtype {dtype}")
    if x.ndim < 2:
        raise ValueError(
            f"inputs must have a batch dimension first and at least one more, got shape {x.shape}"
        )
    if len(x) == 0:
        return
    n_nan = int(ep.isnan(x).sum().item())
    n_inf = int(ep.isinf(x).sum().item())
    if n_nan or n_inf:
        raise ValueError(f"inputs contain {n_nan} NaN and {n_inf} infinite values")
    lo, hi = model.bounds
    x_min, x_max = x.min().item(), x.max().item()
    if x_min < lo or x_max > hi:
        raise ValueError(
            f"inputs must lie inside the model's bounds ({lo}, {hi}), but their min is {x_min} and "
            f"their max is {x_max}"
        )


def _numpy_dtype(t: ep.Tensor) -> Any:
    raw = t.raw
    dtype = getattr(raw, "dtype", None)
    if isinstance(t, ep.PyTorchTensor):
        import torch

        return torch.empty((), dtype=raw.dtype).numpy().dtype
    if isinstance(t, ep.TensorFlowTensor):
        return raw.dtype.as_numpy_dtype
    return dtype


def check_classes(classes: ep.Tensor, n: int, targeted: bool) -> None:
    """Shape (N,) and an integer dtype; the range is checked once the number of classes is known."""
    name = "target_classes" if targeted else "labels"
    if classes.shape != (n,):
        raise ValueError(f"expected {name} of shape ({n},), got shape {tuple(classes.shape)}")
    dtype = np.dtype(_numpy_dtype(classes))
    if dtype.kind not in "iu":
        raise TypeError(f"{name} must be integers, got dtype {dtype}")


def is_integer(t: ep.Tensor) -> bool:
    return np.dtype(_numpy_dtype(t)).kind in "iu"


def check_classes_range(classes: ep.Tensor, num_classes: int, targeted: bool) -> None:
    if len(classes) == 0:
        return
    values = classes.numpy()
    bad = (values < 0) | (values >= num_classes)
    if bad.any():
        name = "target_classes" if targeted else "labels"
        raise ValueError(
            f"{name} must lie in [0, {num_classes - 1}] for a model with {num_classes} outputs; "
            f"got {values[bad][:5].tolist()} at positions {np.flatnonzero(bad)[:5].tolist()}"
        )


def check_logits(logits: ep.Tensor, n: int) -> None:
    if logits.ndim != 2 or len(logits) != n:
        raise ValueError(
            f"the model must return logits of shape ({n}, classes), got {logits.shape}"
        )
    if logits.shape[-1] < 2:
        raise ValueError(f"the model must have at least 2 outputs, got {logits.shape[-1]}")


def positive(name: str, value: Any) -> float:
    if not _is_real(value) or not value > 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def in_range(
    name: str,
    value: Any,
    low: float,
    high: float,
    low_closed: bool = True,
    high_closed: bool = True,
) -> float:
    ok = _is_real(value) and (value >= low if low_closed else value > low)
    ok = ok and (value <= high if high_closed else value < high)
    if not ok:
        interval = f"{'[' if low_closed else '('}{low}, {high}{']' if high_closed else ')'}"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return float(value)


def first_step(name: str, value: Any) -> Union[float, str]:
    """``"auto"``, or a number in [0, inf] (``init_lr_distance``)."""
    if isinstance(value, str):
        if value == "auto":
            return value
        raise ValueError(f"{name} must be 'auto' or a number in [0, inf], got {value!r}")
    return in_range(name, value, 0, math.inf)


def integer_at_least(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def optional(check: Any, name: str, value: Optional[Any], *args: Any) -> Optional[Any]:
    return None if value is None else check(name, value, *args)


def by_name(table: Mapping[str, T], name: str, what: str, alternative: str) -> T:
    """``table``'s entry for ``name``, in any case; else a ``ValueError`` that lists the valid names
    (sorted) and the ``alternative`` to a name (``"unknown distance 'l3'; valid names: ..."``)."""
    folded = {key.lower(): value for key, value in table.items()}
    if name.lower() in folded:
        return folded[name.lower()]
    raise ValueError(
        f"unknown {what} {name!r}; valid names: {', '.join(sorted(table))}, or {alternative}"
    )


def _is_real(value: Any) -> bool:
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


# -- criteria -------------------------------------------------------------------------------------


def read_criterion(criterion: Any) -> Tuple[bool, ep.Tensor]:
    """``(targeted, classes)`` of a Foolbox criterion ALMA supports."""
    if isinstance(criterion, Misclassification):
        return False, criterion.labels
    if isinstance(criterion, TargetedMisclassification):
        return True, criterion.target_classes
    raise ValueError(
        "ALMA supports labels, fb.criteria.Misclassification and "
        f"fb.criteria.TargetedMisclassification, got {type(criterion).__name__}"
    )


def as_criterion(criterion: Any, x: ep.Tensor) -> Any:
    """A Foolbox criterion with its classes on the inputs' framework. Labels may be given as a
    native tensor, an EagerPy tensor, a NumPy integer array, or a Python list or tuple of ints
    (Foolbox's own ``get_criterion`` takes tensors only)."""
    if isinstance(criterion, (list, tuple, np.ndarray, np.generic, int)):
        criterion = Misclassification(ep.from_numpy(x, labels_array(criterion, "labels")))
    return _criterion_like(get_criterion(criterion), x)


def labels_array(value: Any, name: str) -> np.ndarray:
    """``value`` as a 1-D array of class indices (a copy), or an error saying what was given."""
    given = f"{type(value).__name__}"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        raise ValueError(
            f"{name} must hold one class index per input (a list, tuple, array or tensor of "
            f"shape (N,)), got the single integer {value}"
        )
    try:
        array = np.asarray(value)
    except ValueError as error:  # ragged nested lists
        raise ValueError(
            f"{name} must be a flat sequence of integer class indices, got a ragged {given} "
            f"({error})"
        ) from None
    if array.dtype.kind not in "iu":
        sample = repr(value[:3] if isinstance(value, (list, tuple)) else array.ravel()[:3])
        raise TypeError(
            f"{name} must be integer class indices (a list or tuple of ints, an integer "
            f"array or tensor), got a {given} of {array.dtype} values such as {sample}"
        )
    if array.ndim != 1:
        raise ValueError(
            f"{name} must hold one class index per input, shape (N,), got a {given} of shape "
            f"{array.shape}"
        )
    return np.array(array, copy=True)


def _criterion_like(criterion: Any, x: ep.Tensor) -> Any:
    """The criterion with its classes on the inputs' framework (lists and NumPy arrays accepted)."""
    if not isinstance(criterion, (Misclassification, TargetedMisclassification)):
        return criterion
    targeted, given = read_criterion(criterion)
    classes = given
    if type(classes) is not type(x):
        raw = classes.numpy() if isinstance(classes, ep.Tensor) else np.asarray(classes)
        if raw.dtype.kind not in "iu":
            return criterion  # the dtype check names the problem
        classes = ep.from_numpy(x, np.array(raw))  # a writable copy
    # Foolbox compares the classes with argmax outputs, and EagerPy's TensorFlow backend fails on
    # mixed integer dtypes: use the dtype argmax returns on this framework.
    index_dtype = ep.zeros(x, (1, 2)).argmax(axis=-1).dtype
    if classes.dtype != index_dtype and is_integer(classes):
        classes = classes.astype(index_dtype)
    elif classes is given:
        return criterion
    return TargetedMisclassification(classes) if targeted else Misclassification(classes)
