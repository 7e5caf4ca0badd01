"""The MNIST SmallCNN of the ALMA paper, one set of weights, three frameworks.

The architecture is the SmallCNN of DDN (Rony et al., CVPR 2019), TRADES and adv_lib::

    conv3x3 1->32, ReLU, conv3x3 32->32, ReLU, maxpool 2      28 -> 26 -> 24 -> 12
    conv3x3 32->64, ReLU, conv3x3 64->64, ReLU, maxpool 2     12 -> 10 -> 8 -> 4
    flatten (C, H, W order: 64 * 4 * 4 = 1024)
    fc 1024->200, ReLU, dropout 0.5, fc 200->200, ReLU, fc 200->10 (logits)

no padding, inputs in [0, 1]. The weight archive (``data/smallcnn.npz``, written by
``scripts/train_smallcnn.py``) is framework neutral: float32 arrays under PyTorch ``state_dict``
names and layouts (see ``PARAMETER_SHAPES``: convolutions OIHW, linear layers (out, in), ``fc1``
reading the C,H,W-flattened features), plus a ``meta`` JSON string. The TensorFlow and JAX builders
convert from that layout, so the three models compute the same logits up to float32 rounding.

The shipped weights were trained on MNIST t10k images 0..8999; ``data/mnist_heldout.npz`` holds the
disjoint images 9000..9999 they are evaluated on.

Framework imports happen inside the functions that need them: importing this module imports none.
"""

import functools
import hashlib
import importlib.resources
import json
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

import foolbox as fb
import numpy as np

ARCHITECTURES = ("smallcnn", "smallcnn-robust")
"""Names accepted by :func:`load_weights` (each is ``data/<name>.npz``): the regularly trained
SmallCNN (``scripts/train_smallcnn.py``) and an L2-robust one, adversarially trained with DDN
(``scripts/train_robust_smallcnn.py``); same architecture, same archive layout."""

PARAMETER_SHAPES: Dict[str, Tuple[int, ...]] = {
    "feature_extractor.conv1.weight": (32, 1, 3, 3),
    "feature_extractor.conv1.bias": (32,),
    "feature_extractor.conv2.weight": (32, 32, 3, 3),
    "feature_extractor.conv2.bias": (32,),
    "feature_extractor.conv3.weight": (64, 32, 3, 3),
    "feature_extractor.conv3.bias": (64,),
    "feature_extractor.conv4.weight": (64, 64, 3, 3),
    "feature_extractor.conv4.bias": (64,),
    "classifier.fc1.weight": (200, 64 * 4 * 4),
    "classifier.fc1.bias": (200,),
    "classifier.fc2.weight": (200, 200),
    "classifier.fc2.bias": (200,),
    "classifier.fc3.weight": (10, 200),
    "classifier.fc3.bias": (10,),
}
"""Archive keys (PyTorch ``state_dict`` names of the SmallCNN) and their shapes."""

HELDOUT_SIZE = 1000
DATA_FORMATS = ("channels_first", "channels_last")
DEFAULT_DATA_FORMAT = {
    "pytorch": "channels_first",
    "tensorflow": "channels_last",
    "jax": "channels_first",
}
_FRAMEWORK_ALIASES = {
    "pytorch": "pytorch",
    "torch": "pytorch",
    "tensorflow": "tensorflow",
    "tf": "tensorflow",
    "jax": "jax",
}
_CONVS = ("conv1", "conv2", "conv3", "conv4")
_FCS = ("fc1", "fc2", "fc3")

Weights = Mapping[str, np.ndarray]


# --- data -----------------------------------------------------------------------------------------


def _data_file(filename: str) -> Any:
    return importlib.resources.files(__package__).joinpath("data", filename)


def _read_npz(source: Any) -> Dict[str, np.ndarray]:
    with source.open("rb") as f, np.load(f, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def load_mnist_heldout(n: Optional[int] = None, offset: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """The held-out MNIST images the shipped weights never saw (t10k images 9000..9999).

    Args:
        n: how many images (all remaining after ``offset`` when None).
        offset: index of the first image within the 1000 held-out ones.

    Returns:
        ``(images, labels)``: float32 ``(n, 1, 28, 28)`` in [0, 1] and int64 ``(n,)``.
    """
    if n is None:
        n = HELDOUT_SIZE - offset
    if offset < 0 or n < 0 or offset + n > HELDOUT_SIZE:
        raise ValueError(
            f"offset={offset}, n={n} outside the {HELDOUT_SIZE} held-out images "
            f"(need 0 <= offset and offset + n <= {HELDOUT_SIZE})"
        )
    data = _read_npz(_data_file("mnist_heldout.npz"))
    images = data["images"][offset : offset + n].astype(np.float32) / 255.0
    labels = data["labels"][offset : offset + n].astype(np.int64)
    return images[:, None], labels


def load_weights(
    name: str = "smallcnn", *, path: Union[str, Path, None] = None
) -> Dict[str, np.ndarray]:
    """The float32 parameters of a zoo model, under PyTorch ``state_dict`` names.

    Args:
        name: one of ``ARCHITECTURES``.
        path: read this ``.npz`` archive (same keys and layout as the shipped one) instead.

    Raises:
        ValueError: unknown ``name``, or an archive whose keys or shapes are not the SmallCNN's.
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


def weights_sha256(weights: Weights) -> str:
    """Digest of the parameter values (not of the file): ties derived data to the weights."""
    digest = hashlib.sha256()
    for key in sorted(weights):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(weights[key], dtype="<f4").tobytes())
    return digest.hexdigest()


def _checked(weights: Weights, label: str = "weights") -> Dict[str, np.ndarray]:
    missing = sorted(set(PARAMETER_SHAPES) - set(weights))
    unexpected = sorted(set(weights) - set(PARAMETER_SHAPES))
    if missing or unexpected:
        raise ValueError(f"{label}: missing keys {missing}, unexpected keys {unexpected}")
    wrong = {
        k: np.shape(weights[k]) for k, s in PARAMETER_SHAPES.items() if np.shape(weights[k]) != s
    }
    if wrong:
        expected = {k: PARAMETER_SHAPES[k] for k in wrong}
        raise ValueError(f"{label}: wrong shapes {wrong}, expected {expected}")
    return {k: np.asarray(weights[k], dtype=np.float32) for k in PARAMETER_SHAPES}


def _weights_or_default(weights: Optional[Weights]) -> Dict[str, np.ndarray]:
    return load_weights("smallcnn") if weights is None else _checked(weights)


def _framework(framework: str) -> str:
    try:
        return _FRAMEWORK_ALIASES[framework.lower()]
    except KeyError:
        raise ValueError(
            f"unknown framework {framework!r}; use one of {', '.join(_FRAMEWORK_ALIASES)}"
        ) from None


def _data_format(framework: str, data_format: Optional[str]) -> str:
    if data_format is None:
        return DEFAULT_DATA_FORMAT[framework]
    if data_format not in DATA_FORMATS:
        raise ValueError(f"data_format must be one of {DATA_FORMATS}, got {data_format!r}")
    if framework == "pytorch" and data_format != "channels_first":
        raise ValueError("the PyTorch SmallCNN takes channels_first (N, 1, 28, 28) inputs only")
    return data_format


# --- PyTorch --------------------------------------------------------------------------------------


def smallcnn_torch(weights: Optional[Weights] = None) -> Any:
    """The SmallCNN as a ``torch.nn.Module`` in eval mode, inputs ``(N, 1, 28, 28)``.

    Its ``state_dict`` names are the archive's (and DDN's / adv_lib's): ``feature_extractor.conv1``
    ... ``classifier.fc3``. ``weights`` defaults to the shipped ones (:func:`load_weights`).
    """
    import torch
    from torch import nn

    params = _weights_or_default(weights)
    feature_extractor = nn.Sequential()
    in_channels = 1
    for i, conv in enumerate(_CONVS):
        out_channels = PARAMETER_SHAPES[f"feature_extractor.{conv}.weight"][0]
        feature_extractor.add_module(conv, nn.Conv2d(in_channels, out_channels, 3))
        feature_extractor.add_module(f"relu{i + 1}", nn.ReLU())
        if i % 2 == 1:
            feature_extractor.add_module(f"maxpool{i // 2 + 1}", nn.MaxPool2d(2, 2))
        in_channels = out_channels
    classifier = nn.Sequential()
    classifier.add_module("fc1", nn.Linear(64 * 4 * 4, 200))
    classifier.add_module("relu1", nn.ReLU())
    classifier.add_module("drop", nn.Dropout(0.5))
    classifier.add_module("fc2", nn.Linear(200, 200))
    classifier.add_module("relu2", nn.ReLU())
    classifier.add_module("fc3", nn.Linear(200, 10))
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
        data_format: ``"channels_last"`` for ``(N, 28, 28, 1)`` inputs (TensorFlow's native layout)
            or ``"channels_first"`` for ``(N, 1, 28, 28)``. The model's ``data_format`` attribute
            records it (Foolbox's own ``TensorFlowModel`` reads the global Keras setting instead;
            :func:`foolbox_model` corrects that).
    """
    import tensorflow as tf

    data_format = _data_format("tensorflow", data_format)
    params = _weights_or_default(weights)
    layers = tf.keras.layers
    channels_last = data_format == "channels_last"
    inputs = tf.keras.Input(shape=(28, 28, 1) if channels_last else (1, 28, 28), name="images")
    h = inputs
    for i, conv in enumerate(_CONVS):
        filters = PARAMETER_SHAPES[f"feature_extractor.{conv}.weight"][0]
        h = layers.Conv2D(filters, 3, activation="relu", data_format=data_format, name=conv)(h)
        if i % 2 == 1:
            h = layers.MaxPooling2D(2, data_format=data_format, name=f"maxpool{i // 2 + 1}")(h)
    if channels_last:
        # fc1 was trained on PyTorch's C, H, W flattening: reorder (H, W, C) -> (C, H, W) first.
        h = layers.Permute((3, 1, 2), name="to_chw")(h)
    h = layers.Flatten(name="flatten")(h)
    h = layers.Dense(200, activation="relu", name="fc1")(h)
    h = layers.Dropout(0.5, name="drop")(h)
    h = layers.Dense(200, activation="relu", name="fc2")(h)
    logits = layers.Dense(10, name="fc3")(h)
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


class _TensorFlowModel(fb.TensorFlowModel):
    """``fb.TensorFlowModel`` whose ``data_format`` is the model's, not the global Keras setting."""

    def __init__(self, model: Any, bounds: Any, data_format: str, **kwargs: Any):
        super().__init__(model, bounds=bounds, **kwargs)
        self._zoo_data_format = data_format

    @property
    def data_format(self) -> str:
        return self._zoo_data_format


# --- JAX ------------------------------------------------------------------------------------------


def jax_params(weights: Optional[Weights] = None) -> Dict[str, Any]:
    """Archive-layout parameters as ``jax.numpy`` arrays (``params`` of :func:`smallcnn_apply`)."""
    import jax.numpy as jnp

    return {k: jnp.asarray(v) for k, v in _weights_or_default(weights).items()}


def smallcnn_apply(
    params: Mapping[str, Any], images: Any, data_format: str = "channels_first"
) -> Any:
    """Pure JAX SmallCNN: ``params`` (archive names and layouts), ``images`` -> logits ``(N, 10)``.

    ``images`` are ``(N, 1, 28, 28)`` (channels_first) or ``(N, 28, 28, 1)`` (channels_last).
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
    ``(N, 1, 28, 28)`` by default.
    """
    import jax

    data_format = _data_format("jax", data_format)
    params = jax_params(weights)
    apply = jax.jit(functools.partial(smallcnn_apply, data_format=data_format))

    def forward(images: Any) -> Any:
        return apply(params, images)

    forward.params = params  # type: ignore[attr-defined]
    forward.apply = apply  # type: ignore[attr-defined]
    forward.data_format = data_format  # type: ignore[attr-defined]
    return forward


# --- Foolbox --------------------------------------------------------------------------------------


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
        name: zoo model name (``ARCHITECTURES``).
        data_format: input layout; None takes the framework's default (``DEFAULT_DATA_FORMAT``:
            channels_first for PyTorch and JAX, channels_last for TensorFlow). The result's
            ``data_format`` property reports it.
        weights: parameters in archive layout, overriding ``load_weights(name)``.
    """
    framework = _framework(framework)
    data_format = _data_format(framework, data_format)
    params = load_weights(name) if weights is None else _checked(weights)
    if framework == "pytorch":
        return fb.PyTorchModel(smallcnn_torch(params), bounds=(0, 1))
    if framework == "tensorflow":
        model = smallcnn_tensorflow(params, data_format=data_format)
        return _TensorFlowModel(model, bounds=(0, 1), data_format=data_format)
    return fb.JAXModel(smallcnn_jax(params, data_format), bounds=(0, 1), data_format=data_format)


def heldout_for(
    framework: str = "pytorch",
    data_format: Optional[str] = None,
    n: Optional[int] = None,
    offset: int = 0,
) -> Tuple[Any, Any]:
    """:func:`load_mnist_heldout` as ``framework``'s native tensors, in ``data_format`` layout.

    Returns ``(images, labels)``: float32 images in [0, 1], ``(n, 1, 28, 28)`` or ``(n, 28, 28, 1)``
    (the framework's default layout when ``data_format`` is None), and integer labels.
    """
    framework = _framework(framework)
    data_format = _data_format(framework, data_format)
    images, labels = load_mnist_heldout(n, offset)
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
