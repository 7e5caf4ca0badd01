"""Every zoo model by name: the family that builds it, its weights, its held-out data.

The zoo has three families of networks, each in its own module: the SmallCNNs (:mod:`.smallcnn`,
one trained archive per model), the CIFAR ResNet-18 (:mod:`.resnet`, seeded kernels and a small
archive of trained parts) and the ImageNet ResNet-50 (:mod:`.resnet50`, seeded kernels and
calibrated BatchNorm statistics; its images are Foolbox's ImageNet samples). The functions here
take a zoo name and hand it to its family, so that callers (``foolbox_model``, ``heldout_for``,
the evaluation engine's model specs, ``compare``, ``bench``) work with any name of
:data:`ARCHITECTURES`; a new family adds its names to :data:`FAMILY` and a branch to
:func:`load_weights`, :func:`load_heldout` and :func:`foolbox_model`. Importing this module
imports no framework.
"""

import json
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from . import resnet, resnet50, smallcnn
from ._common import (
    Weights,
    canonical_framework,
    checked_data_format,
    data_file,
    native_tensors,
    read_npz,
)

FAMILY: Dict[str, str] = {
    **{name: "smallcnn" for name in smallcnn.ARCHITECTURES},
    resnet.NAME: "resnet",
    resnet50.NAME: "resnet50",
}
"""Zoo name -> family (the module that builds it)."""

ARCHITECTURES = tuple(FAMILY)
"""Every zoo model: the SmallCNNs (``smallcnn``, ``smallcnn-robust``, ``colour-cnn``,
``colour-cnn-b``, see :data:`.smallcnn.ARCHITECTURES`), ``resnet18-cifar``, a CIFAR-size
ResNet-18 (3x32x32 inputs, 11.2M parameters) on colour MNIST, and ``resnet50-imagenet``,
torchvision's ResNet-50 (3x224x224, 25.6M parameters) with seeded random weights."""

HELDOUT_DATA: Dict[str, str] = {
    **smallcnn.HELDOUT_DATA,
    resnet.NAME: "colour-mnist",
    resnet50.NAME: resnet50.NAME,
}
"""The held-out data set of each zoo model: ``data/<data set>_heldout.npz``, but for
``resnet50-imagenet``, whose data set bears its name: Foolbox's 20 ImageNet samples labelled with
its own predictions (:func:`.resnet50.load_heldout`)."""


def family(name: str) -> str:
    """``"smallcnn"``, ``"resnet"`` or ``"resnet50"``; a ValueError listing the zoo for an unknown name."""
    try:
        return FAMILY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown zoo model {name!r}; available: {', '.join(ARCHITECTURES)}"
        ) from None


def load_weights(
    name: str = "smallcnn", *, path: Union[str, Path, None] = None
) -> Dict[str, np.ndarray]:
    """The float32 parameters of a zoo model, under PyTorch ``state_dict`` names.

    Args:
        name: one of :data:`ARCHITECTURES`.
        path: read this ``.npz`` archive of the same family instead of the shipped one.

    Raises:
        ValueError: unknown ``name``, or an archive whose keys or shapes are not the family's.
    """
    if family(name) == "resnet":
        return resnet.load_weights(path=path)
    if family(name) == "resnet50":
        return resnet50.load_weights(path=path)
    return smallcnn.load_weights(name, path=path)


def weights_info(name: str = "smallcnn", *, path: Union[str, Path, None] = None) -> Dict[str, Any]:
    """The ``meta`` record of a weight archive: how it was made, seed, held-out accuracy, ..."""
    source = Path(path) if path is not None else data_file(f"{name}.npz")
    if path is None:
        family(name)
    meta = read_npz(source).get("meta")
    return {} if meta is None else json.loads(str(meta))


def load_heldout(
    name: str = "smallcnn", n: Optional[int] = None, offset: int = 0
) -> Tuple[np.ndarray, np.ndarray]:
    """The held-out images of a zoo model or data set: MNIST t10k images 9000..9999, never trained
    on, for the SmallCNNs and ``resnet18-cifar``; Foolbox's 20 ImageNet samples labelled with the
    network's own predictions for ``resnet50-imagenet`` (:func:`.resnet50.load_heldout`).

    Args:
        name: a zoo model (its data set, :data:`HELDOUT_DATA`) or a data set (``"mnist"``,
            ``"colour-mnist"``, ``"colour-mnist-texture"``, ``"resnet50-imagenet"``).
        n: how many images (all remaining after ``offset`` when None).
        offset: index of the first image within the held-out ones (1000, or 20).

    Returns:
        ``(images, labels)``: float32 ``(n, channels, height, width)`` in [0, 1] and int64 ``(n,)``.
    """
    dataset = _dataset(name)
    if dataset == resnet50.NAME:
        return resnet50.load_heldout(n, offset)
    return smallcnn.load_heldout(dataset, n, offset)


def heldout_for(
    framework: str = "pytorch",
    data_format: Optional[str] = None,
    n: Optional[int] = None,
    offset: int = 0,
    *,
    model: str = "smallcnn",
) -> Tuple[Any, Any]:
    """:func:`load_heldout` of ``model`` as ``framework``'s native tensors, in ``data_format`` layout
    (the framework's default when None): float32 images in [0, 1] and integer labels."""
    framework = canonical_framework(framework)
    data_format = checked_data_format(framework, data_format)
    images, labels = load_heldout(model, n, offset)
    return native_tensors(framework, data_format, images, labels)


def foolbox_model(
    framework: str = "pytorch",
    name: str = "smallcnn",
    data_format: Optional[str] = None,
    *,
    weights: Optional[Weights] = None,
) -> Any:
    """A Foolbox model (bounds (0, 1)) of a zoo network in ``framework``.

    Args:
        framework: ``"pytorch"`` (or ``"torch"``), ``"tensorflow"`` (or ``"tf"``), ``"jax"``.
        name: zoo model name (:data:`ARCHITECTURES`).
        data_format: input layout; None takes the framework's default (channels_first for PyTorch
            and JAX, channels_last for TensorFlow). The result's ``data_format`` reports it.
        weights: parameters in archive layout, overriding ``load_weights(name)``.
    """
    framework = canonical_framework(framework)
    data_format = checked_data_format(framework, data_format)
    if family(name) == "resnet":
        return resnet.foolbox_model(framework, data_format, weights)
    if family(name) == "resnet50":
        return resnet50.foolbox_model(framework, data_format, weights)
    return smallcnn.foolbox_model(framework, name, data_format, weights=weights)


def _dataset(name: str) -> str:
    """The held-out data set of a zoo model, or ``name`` itself when it names a data set."""
    dataset = HELDOUT_DATA.get(name, name)
    if dataset not in set(HELDOUT_DATA.values()):
        raise ValueError(
            f"unknown zoo model or data set {name!r}; available: "
            + ", ".join([*ARCHITECTURES, *sorted(set(HELDOUT_DATA.values()))])
        )
    return dataset
