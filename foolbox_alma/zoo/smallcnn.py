"""The SmallCNN of the ALMA paper and its colour variants, one set of weights, three frameworks.

The architecture is the SmallCNN of DDN (Rony et al., CVPR 2019), TRADES and adv_lib::

    conv3x3 1->32, ReLU, conv3x3 32->32, ReLU, maxpool 2      28 -> 26 -> 24 -> 12
    conv3x3 32->64, ReLU, conv3x3 64->64, ReLU, maxpool 2     12 -> 10 -> 8 -> 4
    flatten (C, H, W order: 64 * 4 * 4 = 1024)
    fc 1024->200, ReLU, dropout 0.5, fc 200->200, ReLU, fc 200->10 (logits)

no padding, inputs in [0, 1]. The colour models of the zoo are the same network with other input
channels, image size and widths (:func:`parameter_shapes`); every builder reads them from the
weights (:func:`architecture`), so one code path serves all. The weight archive
(``data/smallcnn.npz``, written by ``scripts/train_smallcnn.py``) is framework neutral: float32
arrays under PyTorch ``state_dict`` names and layouts (see ``PARAMETER_SHAPES``: convolutions OIHW,
linear layers (out, in), ``fc1`` reading the C,H,W-flattened features), plus a ``meta`` JSON
string. The TensorFlow and JAX builders convert from that layout, so the three models compute the
same logits up to float32 rounding.

The shipped weights were trained on MNIST t10k images 0..8999 (gray, or coloured by
:mod:`.colour_mnist`); ``data/<data set>_heldout.npz`` holds the disjoint images 9000..9999 they are
evaluated on (:data:`HELDOUT_DATA`, :func:`load_heldout`).

Framework imports happen inside the functions that need them: importing this module imports none.
"""

import functools
import json
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, NamedTuple, Optional, Tuple, Union

import foolbox as fb
import numpy as np

from .._runtime import TensorFlowModel
from ._common import HELDOUT_SIZE, Weights, checked_weights, heldout_count, jax_forward
from ._common import checked_data_format as _data_format
from ._common import data_file as _data_file
from ._common import read_npz as _read_npz

ARCHITECTURES = ("smallcnn", "smallcnn-robust", "colour-cnn", "colour-cnn-b")
"""Names accepted by :func:`load_weights` (each is ``data/<name>.npz``): the regularly trained
MNIST SmallCNN (``scripts/train_smallcnn.py``) and an L2-robust one, adversarially trained with DDN
(``scripts/train_robust_smallcnn.py``); two colour classifiers of 3x32x32 images
(``scripts/train_colour_cnn.py``): ``colour-cnn``, the SmallCNN with 3 input channels, on
``colour-mnist``, and ``colour-cnn-b``, half as wide, on ``colour-mnist-texture``. Same network
family, same archive layout."""

HELDOUT_DATA = {
    "smallcnn": "mnist",
    "smallcnn-robust": "mnist",
    "colour-cnn": "colour-mnist",
    "colour-cnn-b": "colour-mnist-texture",
}
"""The held-out data set of each zoo model (``data/<data set>_heldout.npz``)."""


class Architecture(NamedTuple):
    """What varies between the zoo's SmallCNNs; :func:`parameter_shapes` gives their archives."""

    in_channels: int = 1
    image_size: int = 28
    widths: Tuple[int, int] = (32, 64)  # channels of conv1-2 and of conv3-4
    hidden: int = 200
    classes: int = 10

    @property
    def feature_side(self) -> int:
        """Height (= width) of the last feature map: two valid 3x3 convolutions, pool 2, twice."""
        return ((self.image_size - 4) // 2 - 4) // 2


def parameter_shapes(arch: Architecture = Architecture()) -> Dict[str, Tuple[int, ...]]:
    """Archive keys (PyTorch ``state_dict`` names of the SmallCNN) and their shapes."""
    (c, c1, c2), h = (arch.in_channels, *arch.widths), arch.hidden
    return {
        "feature_extractor.conv1.weight": (c1, c, 3, 3),
        "feature_extractor.conv1.bias": (c1,),
        "feature_extractor.conv2.weight": (c1, c1, 3, 3),
        "feature_extractor.conv2.bias": (c1,),
        "feature_extractor.conv3.weight": (c2, c1, 3, 3),
        "feature_extractor.conv3.bias": (c2,),
        "feature_extractor.conv4.weight": (c2, c2, 3, 3),
        "feature_extractor.conv4.bias": (c2,),
        "classifier.fc1.weight": (h, c2 * arch.feature_side**2),
        "classifier.fc1.bias": (h,),
        "classifier.fc2.weight": (h, h),
        "classifier.fc2.bias": (h,),
        "classifier.fc3.weight": (arch.classes, h),
        "classifier.fc3.bias": (arch.classes,),
    }


PARAMETER_SHAPES = parameter_shapes()
"""The MNIST SmallCNN's archive keys and shapes (1x28x28 inputs)."""

_CONVS = ("conv1", "conv2", "conv3", "conv4")
_FCS = ("fc1", "fc2", "fc3")


# --- data -----------------------------------------------------------------------------------------


def load_mnist_heldout(n: Optional[int] = None, offset: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """The held-out MNIST images the shipped weights never saw (t10k images 9000..9999).

    Args:
        n: how many images (all remaining after ``offset`` when None).
        offset: index of the first image within the 1000 held-out ones.

    Returns:
        ``(images, labels)``: float32 ``(n, 1, 28, 28)`` in [0, 1] and int64 ``(n,)``.
    """
    return load_heldout("mnist", n, offset)


def load_heldout(
    name: str = "smallcnn", n: Optional[int] = None, offset: int = 0
) -> Tuple[np.ndarray, np.ndarray]:
    """The held-out images of a zoo model or data set (t10k images 9000..9999, never trained on).

    Args:
        name: a zoo model (``ARCHITECTURES``: its data set, :data:`HELDOUT_DATA`) or a data set
            (``"mnist"``, ``"colour-mnist"``, ``"colour-mnist-texture"``).
        n: how many images (all remaining after ``offset`` when None).
        offset: index of the first image within the 1000 held-out ones.

    Returns:
        ``(images, labels)``: float32 ``(n, channels, height, width)`` in [0, 1] (``(n, 1, 28,
        28)`` for MNIST, ``(n, 3, 32, 32)`` for the colour sets) and int64 ``(n,)``.
    """
    dataset = HELDOUT_DATA.get(name, name)
    if dataset not in set(HELDOUT_DATA.values()):
        raise ValueError(
            f"unknown zoo model or data set {name!r}; available: "
            + ", ".join([*ARCHITECTURES, *sorted(set(HELDOUT_DATA.values()))])
        )
    n = heldout_count(n, offset, HELDOUT_SIZE, "held-out images")
    data = _read_npz(_data_file(f"{dataset}_heldout.npz"))
    images = data["images"][offset : offset + n].astype(np.float32) / 255.0
    labels = data["labels"][offset : offset + n].astype(np.int64)
    return (images[:, None] if images.ndim == 3 else images), labels


def load_weights(
    name: str = "smallcnn", *, path: Union[str, Path, None] = None
) -> Dict[str, np.ndarray]:
    """The float32 parameters of a zoo model, under PyTorch ``state_dict`` names.

    Args:
        name: one of ``ARCHITECTURES``.
        path: read this ``.npz`` archive (same keys and layout as the shipped one) instead.

    Raises:
        ValueError: unknown ``name``, or an archive whose keys or shapes are not a SmallCNN's
            (:func:`parameter_shapes` of the :func:`architecture` its shapes imply).
    """
    if path is not None:
        source: Any = Path(path)
        label = str(path)
    elif name in ARCHITECTURES:
        source = _data_file(f"{name}.npz")
        label = f"zoo weights {name!r}"
    else:
        raise ValueError(f"unknown zoo model {name!r}; available: {', '.join(ARCHITECTURES)}")
    arrays = _read_npz(source)
    arrays.pop("meta", None)
    return _checked(arrays, label)


def weights_info(name: str = "smallcnn", *, path: Union[str, Path, None] = None) -> Dict[str, Any]:
    """The ``meta`` record of a weight archive: training seed, epochs, held-out accuracy, ..."""
    if path is None and name not in ARCHITECTURES:
        raise ValueError(f"unknown zoo model {name!r}; available: {', '.join(ARCHITECTURES)}")
    source = Path(path) if path is not None else _data_file(f"{name}.npz")
    meta = _read_npz(source).get("meta")
    return {} if meta is None else json.loads(str(meta))


def architecture(weights: Weights) -> Architecture:
    """The SmallCNN variant that ``weights`` (archive names and layouts) imply.

    Channels and widths come from the convolution kernels, the hidden width and classes from the
    linear layers, and the image size from ``fc1``'s input (``widths[1] * side**2`` features, image
    ``4 * side + 12`` pixels: 28 for side 4, 32 for side 5). It does not check the other shapes:
    :func:`load_weights` and the builders do (:func:`parameter_shapes`).
    """
    try:
        in_channels = int(np.shape(weights["feature_extractor.conv1.weight"])[1])
        widths = (
            int(np.shape(weights["feature_extractor.conv1.weight"])[0]),
            int(np.shape(weights["feature_extractor.conv3.weight"])[0]),
        )
        hidden, features = (int(d) for d in np.shape(weights["classifier.fc1.weight"]))
        classes = int(np.shape(weights["classifier.fc3.bias"])[0])
    except (KeyError, IndexError, ValueError):
        return Architecture()  # malformed: the shape check reports against the MNIST SmallCNN
    side = int(round(np.sqrt(features / max(widths[1], 1))))
    return Architecture(in_channels, 4 * side + 12, widths, hidden, classes)


def _checked(weights: Weights, label: str = "weights") -> Dict[str, np.ndarray]:
    return checked_weights(weights, parameter_shapes(architecture(weights)), label)


def _weights_or_default(weights: Optional[Weights]) -> Dict[str, np.ndarray]:
    return load_weights("smallcnn") if weights is None else _checked(weights)


# --- PyTorch --------------------------------------------------------------------------------------


def smallcnn_torch(weights: Optional[Weights] = None) -> Any:
    """The SmallCNN as a ``torch.nn.Module`` in eval mode, inputs ``(N, C, H, W)``.

    Its ``state_dict`` names are the archive's (and DDN's / adv_lib's): ``feature_extractor.conv1``
    ... ``classifier.fc3``. ``weights`` defaults to the shipped MNIST ones (:func:`load_weights`);
    their shapes set the input channels, image size and widths (:func:`architecture`): ``(N, 1,
    28, 28)`` for MNIST, ``(N, 3, 32, 32)`` for the colour models.
    """
    import torch
    from torch import nn

    params = _weights_or_default(weights)
    arch = architecture(params)
    feature_extractor = nn.Sequential()
    in_channels = arch.in_channels
    for i, conv in enumerate(_CONVS):
        out_channels = arch.widths[i // 2]
        feature_extractor.add_module(conv, nn.Conv2d(in_channels, out_channels, 3))
        feature_extractor.add_module(f"relu{i + 1}", nn.ReLU())
        if i % 2 == 1:
            feature_extractor.add_module(f"maxpool{i // 2 + 1}", nn.MaxPool2d(2, 2))
        in_channels = out_channels
    classifier = nn.Sequential()
    classifier.add_module("fc1", nn.Linear(arch.widths[1] * arch.feature_side**2, arch.hidden))
    classifier.add_module("relu1", nn.ReLU())
    classifier.add_module("drop", nn.Dropout(0.5))
    classifier.add_module("fc2", nn.Linear(arch.hidden, arch.hidden))
    classifier.add_module("relu2", nn.ReLU())
    classifier.add_module("fc3", nn.Linear(arch.hidden, arch.classes))
    net = nn.Sequential()
    net.add_module("feature_extractor", feature_extractor)
    net.add_module("flatten", nn.Flatten())  # C, H, W order, as fc1 expects
    net.add_module("classifier", classifier)
    net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in params.items()})
    return net.eval()


# --- TensorFlow -----------------------------------------------------------------------------------


def smallcnn_tensorflow(
    weights: Optional[Weights] = None, data_format: str = "channels_last"
) -> Any:
    """The SmallCNN as a ``tf.keras.Model``.

    Args:
        weights: archive-layout parameters; the shipped ones when None.
        data_format: ``"channels_last"`` for ``(N, H, W, C)`` inputs (TensorFlow's native layout)
            or ``"channels_first"`` for ``(N, C, H, W)``; ``C, H, W`` are the weights'
            (:func:`architecture`: ``1, 28, 28`` for MNIST, ``3, 32, 32`` for the colour models).
            The model's ``data_format`` attribute records it (Foolbox's own
            ``TensorFlowModel`` reads the global Keras setting instead; :func:`foolbox_model`
            corrects that with :class:`foolbox_alma._runtime.TensorFlowModel`).
    """
    import tensorflow as tf

    data_format = _data_format("tensorflow", data_format)
    params = _weights_or_default(weights)
    arch = architecture(params)
    layers = tf.keras.layers
    channels_last = data_format == "channels_last"
    c, s = arch.in_channels, arch.image_size
    inputs = tf.keras.Input(shape=(s, s, c) if channels_last else (c, s, s), name="images")
    h = inputs
    for i, conv in enumerate(_CONVS):
        filters = arch.widths[i // 2]
        h = layers.Conv2D(filters, 3, activation="relu", data_format=data_format, name=conv)(h)
        if i % 2 == 1:
            h = layers.MaxPooling2D(2, data_format=data_format, name=f"maxpool{i // 2 + 1}")(h)
    if channels_last:
        # fc1 was trained on PyTorch's C, H, W flattening: reorder (H, W, C) -> (C, H, W) first.
        h = layers.Permute((3, 1, 2), name="to_chw")(h)
    h = layers.Flatten(name="flatten")(h)
    h = layers.Dense(arch.hidden, activation="relu", name="fc1")(h)
    h = layers.Dropout(0.5, name="drop")(h)
    h = layers.Dense(arch.hidden, activation="relu", name="fc2")(h)
    logits = layers.Dense(arch.classes, name="fc3")(h)
    model = tf.keras.Model(inputs, logits, name=f"smallcnn_{data_format}")

    for conv in _CONVS:  # OIHW -> HWIO
        kernel = params[f"feature_extractor.{conv}.weight"].transpose(2, 3, 1, 0)
        model.get_layer(conv).set_weights([kernel, params[f"feature_extractor.{conv}.bias"]])
    for fc in _FCS:  # (out, in) -> (in, out)
        model.get_layer(fc).set_weights(
            [params[f"classifier.{fc}.weight"].T, params[f"classifier.{fc}.bias"]]
        )
    model.data_format = data_format
    return model


# --- JAX ------------------------------------------------------------------------------------------


def jax_params(weights: Optional[Weights] = None) -> Dict[str, Any]:
    """Archive-layout parameters as ``jax.numpy`` arrays (``params`` of :func:`smallcnn_apply`)."""
    import jax.numpy as jnp

    return {k: jnp.asarray(v) for k, v in _weights_or_default(weights).items()}


def smallcnn_apply(
    params: Mapping[str, Any], images: Any, data_format: str = "channels_first"
) -> Any:
    """Pure JAX SmallCNN: ``params`` (archive names and layouts), ``images`` -> logits ``(N, 10)``.

    ``images`` are ``(N, C, H, W)`` (channels_first) or ``(N, H, W, C)`` (channels_last), with the
    channels and size of ``params`` (:func:`architecture`).
    Differentiable and ``jax.jit``-able (``data_format`` static).
    """
    import jax
    import jax.numpy as jnp
    from jax import lax

    h = jnp.transpose(images, (0, 3, 1, 2)) if data_format == "channels_last" else images
    for i, conv in enumerate(_CONVS):
        h = lax.conv_general_dilated(
            h,
            params[f"feature_extractor.{conv}.weight"],
            window_strides=(1, 1),
            padding="VALID",
            dimension_numbers=("NCHW", "OIHW", "NCHW"),
            precision=lax.Precision.HIGHEST,
        )
        h = jax.nn.relu(h + params[f"feature_extractor.{conv}.bias"][None, :, None, None])
        if i % 2 == 1:
            h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
    h = h.reshape(h.shape[0], -1)  # C, H, W order, as fc1 expects
    for fc in _FCS:
        h = jnp.dot(h, params[f"classifier.{fc}.weight"].T, precision=lax.Precision.HIGHEST)
        h = h + params[f"classifier.{fc}.bias"]
        if fc != "fc3":
            h = jax.nn.relu(h)  # dropout after fc1 is the identity at inference
    return h


def smallcnn_jax(
    weights: Optional[Weights] = None, data_format: str = "channels_first"
) -> Callable[[Any], Any]:
    """The SmallCNN as a jitted JAX function ``images -> logits`` (what ``fb.JAXModel`` takes).

    It is :func:`smallcnn_apply` with the parameters bound; ``fn.params`` and ``fn.apply`` expose
    the two halves for code that wants the pure ``(params, images)`` form. Inputs are NCHW
    (``(N, 1, 28, 28)`` for MNIST weights) by default.
    """
    import jax

    data_format = _data_format("jax", data_format)
    params = jax_params(weights)
    apply = jax.jit(functools.partial(smallcnn_apply, data_format=data_format))
    return jax_forward(apply, params, data_format)


# --- Foolbox --------------------------------------------------------------------------------------


def foolbox_model(
    framework: str, name: str, data_format: str, weights: Optional[Weights] = None
) -> Any:
    """The Foolbox model (bounds (0, 1)) of the SmallCNN ``name``: :func:`.registry.foolbox_model`
    for this family (it checks ``framework`` and ``data_format`` and gives their canonical names)."""
    params = load_weights(name) if weights is None else _checked(weights)
    if framework == "pytorch":
        return fb.PyTorchModel(smallcnn_torch(params), bounds=(0, 1))
    if framework == "tensorflow":
        model = smallcnn_tensorflow(params, data_format=data_format)
        return TensorFlowModel(model, bounds=(0, 1), data_format=data_format)
    return fb.JAXModel(smallcnn_jax(params, data_format), bounds=(0, 1), data_format=data_format)
