"""What every zoo family shares: the shipped data files, framework names and layouts, the weight
digest (the Foolbox wrapper of Keras models is :class:`foolbox_alma._runtime.TensorFlowModel`).
Importing this module imports no framework."""

import hashlib
import importlib.resources
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import numpy as np

from .._runtime import FRAMEWORK_ALIASES

HELDOUT_SIZE = 1000
DATA_FORMATS = ("channels_first", "channels_last")
DEFAULT_DATA_FORMAT = {
    "pytorch": "channels_first",
    "tensorflow": "channels_last",
    "jax": "channels_first",
}

Weights = Mapping[str, np.ndarray]


def data_file(filename: str) -> Any:
    """A file of ``foolbox_alma/zoo/data`` (a ``Traversable``: works from a wheel or a zip too)."""
    return importlib.resources.files(__package__).joinpath("data", filename)


def read_npz(source: Any) -> Dict[str, np.ndarray]:
    """Every array of an ``.npz`` archive (a path or a ``Traversable``), read eagerly."""
    with source.open("rb") as f, np.load(f, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def weights_sha256(weights: Weights) -> str:
    """Digest of the parameter values (not of the file): ties derived data to the weights."""
    digest = hashlib.sha256()
    for key in sorted(weights):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(weights[key], dtype="<f4").tobytes())
    return digest.hexdigest()


def checked_weights(
    weights: Weights, shapes: Mapping[str, Tuple[int, ...]], label: str
) -> Dict[str, np.ndarray]:
    """``weights`` as float32 arrays in ``shapes``' order; a ValueError that names the missing,
    unexpected and misshapen entries (``label``: whose weights) otherwise."""
    missing = sorted(set(shapes) - set(weights))
    unexpected = sorted(set(weights) - set(shapes))
    if missing or unexpected:
        raise ValueError(f"{label}: missing keys {missing}, unexpected keys {unexpected}")
    wrong = {k: np.shape(weights[k]) for k, s in shapes.items() if np.shape(weights[k]) != s}
    if wrong:
        expected = {k: shapes[k] for k in wrong}
        raise ValueError(f"{label}: wrong shapes {wrong}, expected {expected}")
    return {k: np.asarray(weights[k], dtype=np.float32) for k in shapes}


def heldout_count(n: Optional[int], offset: int, size: int, images: str) -> int:
    """How many of ``size`` held-out ``images`` (a phrase for the error) ``n`` and ``offset``
    take: all remaining after ``offset`` when ``n`` is None; a ValueError outside the set."""
    if n is None:
        n = size - offset
    if offset < 0 or n < 0 or offset + n > size:
        raise ValueError(
            f"offset={offset}, n={n} outside the {size} {images} "
            f"(need 0 <= offset and offset + n <= {size})"
        )
    return n


def canonical_framework(framework: str) -> str:
    """``"pytorch"``, ``"tensorflow"`` or ``"jax"`` for any alias (``"torch"``, ``"tf"``)."""
    try:
        return FRAMEWORK_ALIASES[framework.lower()]
    except KeyError:
        raise ValueError(
            f"unknown framework {framework!r}; use one of {', '.join(FRAMEWORK_ALIASES)}"
        ) from None


def checked_data_format(framework: str, data_format: Optional[str]) -> str:
    """``data_format``, or the framework's default when None; PyTorch models are NCHW only."""
    if data_format is None:
        return DEFAULT_DATA_FORMAT[framework]
    if data_format not in DATA_FORMATS:
        raise ValueError(f"data_format must be one of {DATA_FORMATS}, got {data_format!r}")
    if framework == "pytorch" and data_format != "channels_first":
        raise ValueError("the PyTorch zoo models take channels_first (N, C, H, W) inputs only")
    return data_format


def jax_forward(apply: Callable[[Any, Any], Any], params: Any, data_format: str) -> Any:
    """The function ``images -> apply(params, images)`` (what ``fb.JAXModel`` takes), with the
    attributes ``params``, ``apply`` and ``data_format``: its parts, for code that wants the pure
    ``(params, images)`` form."""

    def forward(images: Any) -> Any:
        return apply(params, images)

    forward.params = params  # type: ignore[attr-defined]
    forward.apply = apply  # type: ignore[attr-defined]
    forward.data_format = data_format  # type: ignore[attr-defined]
    return forward


def native_tensors(
    framework: str, data_format: str, images: np.ndarray, labels: np.ndarray
) -> Tuple[Any, Any]:
    """Channels-first NumPy ``images`` and ``labels`` as ``framework``'s tensors, the images in
    ``data_format`` layout (both names canonical and checked)."""
    if data_format == "channels_last":
        images = np.ascontiguousarray(images.transpose(0, 2, 3, 1))
    if framework == "pytorch":
        import torch

        return torch.from_numpy(images), torch.from_numpy(labels)
    if framework == "tensorflow":
        import tensorflow as tf

        return tf.constant(images), tf.constant(labels)
    import jax.numpy as jnp

    return jnp.asarray(images), jnp.asarray(labels)
