"""A CIFAR-size ResNet-18, one set of weights, built identically in PyTorch, TensorFlow and JAX.

The network is the ResNet-18 of CIFAR code (He et al., CVPR 2016, as in kuangliu/pytorch-cifar and
RobustBench's ``ResNet18``), for 3x32x32 inputs in [0, 1] and 10 classes, 11.2M parameters::

    conv3x3 3->64 (stride 1, pad 1, no bias), BN, ReLU                      32x32, no max-pool
    layer1..layer4: 2 BasicBlocks each, 64/128/256/512 channels, strides 1/2/2/2
        BasicBlock: conv3x3 (stride s, pad 1), BN, ReLU, conv3x3 (pad 1), BN, + shortcut, ReLU
        shortcut: identity, or conv1x1 (stride s) + BN where the shape changes
    global average pooling (4x4 -> 1), fc 512->10 (logits)

Weights use the ``state_dict`` names of those repositories (:func:`parameter_shapes`: ``conv1``,
``bn1``, ``layer2.0.shortcut.0``, ..., ``linear``), so their checkpoints load too; BatchNorm runs
in inference mode (running statistics, eps 1e-5) in every framework.

PyTorch pads a stride-2 3x3 convolution by one pixel on every side; TensorFlow's ``"same"``
padding would pad only bottom and right (it puts the odd pixel there), shifting every stride-2
layer by one pixel. The TensorFlow build therefore pads explicitly and convolves ``"valid"``, and
the JAX one passes explicit padding, so the three compute the same function.

Weights: shipping the ResNet-18's 45 MB of float32 is not worth it for a model whose job is to cost
what a real network costs, so most of it is generated and only what was trained ships (1.7 MB,
439K values, 4% of the network):

* **Seeded kernels.** Every kernel starts as He-normal noise (std ``sqrt(2 / fan_in)``) drawn by
  ``numpy.random.default_rng([seed, i])`` for the ``i``-th convolution (:func:`seeded_kernels`):
  the same float32 bytes on every machine, whatever framework builds the network; built once per
  process (cached, read-only).
* **Shipped** (``data/resnet18-cifar.npz``, :data:`CORRECTION_KEYS`): the stem and ``layer1``
  kernels, trained in full (150K values); for each kernel of ``layer2``..``layer4``, a trained
  scale and rank-8 correction of its seeded kernel, ``kernel = base_scale * seeded + lowrank_u @
  lowrank_v``; every BatchNorm's affine parameters and running statistics (calibrated on the
  training images after training); the ``linear`` readout; and a ``meta`` JSON string (seed, how
  it was made, held-out accuracy, the digest of the full weights, date).

``scripts/make_resnet18_cifar.py`` trains those parts (Adam, 4 epochs on colour-MNIST t10k images
0..8999, 53 minutes on 2 shared CPU cores): 93.1% on the 1000 held-out images 9000..9999. Why not
less: with every kernel random, a least-squares readout of the 512 pooled features reached 17%
held-out in exploratory runs (random filters see the random colours, not the digit), and training
only the BatchNorms and the readout (with or without the stem) stayed at chance for an epoch.

:func:`load_weights` rebuilds the full weights (the corrections summed in float64 element-wise
arithmetic, not BLAS, so the same bytes everywhere) and checks them against the digest the archive
records: a NumPy whose normal generator changed would otherwise give a silently different network.

Framework imports happen inside the functions that need them: importing this module imports none.
"""

import functools
import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple, Union

import numpy as np

from .._runtime import TensorFlowModel
from ._common import (
    Weights,
    checked_data_format,
    data_file,
    read_npz,
    weights_sha256,
)

NAME = "resnet18-cifar"
IN_CHANNELS = 3
IMAGE_SIZE = 32
CLASSES = 10
STEM_WIDTH = 64
STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))
"""(channels, stride of the first block) of layer1..layer4."""
BLOCKS_PER_STAGE = 2
BN_EPS = 1e-5
BN_STATISTICS = ("weight", "bias", "running_mean", "running_var")


class Block(NamedTuple):
    """One BasicBlock: its name prefix (``layer2.0``), channels and stride."""

    prefix: str
    in_channels: int
    out_channels: int
    stride: int

    @property
    def has_projection(self) -> bool:
        """Whether the shortcut is a 1x1 convolution + BN (the shape changes) or the identity."""
        return self.stride != 1 or self.in_channels != self.out_channels


def blocks() -> List[Block]:
    """The eight BasicBlocks, in forward order."""
    result, channels = [], STEM_WIDTH
    for stage, (width, stride) in enumerate(STAGES, start=1):
        for index in range(BLOCKS_PER_STAGE):
            result.append(
                Block(f"layer{stage}.{index}", channels, width, stride if index == 0 else 1)
            )
            channels = width
    return result


def convolutions() -> Dict[str, Tuple[int, int, int, int]]:
    """Every convolution (prefix -> OIHW kernel shape), in forward order; each is followed by the BN
    of :func:`batch_norm_of`."""
    convs = {"conv1": (STEM_WIDTH, IN_CHANNELS, 3, 3)}
    for block in blocks():
        convs[f"{block.prefix}.conv1"] = (block.out_channels, block.in_channels, 3, 3)
        convs[f"{block.prefix}.conv2"] = (block.out_channels, block.out_channels, 3, 3)
        if block.has_projection:
            convs[f"{block.prefix}.shortcut.0"] = (block.out_channels, block.in_channels, 1, 1)
    return convs


def batch_norm_of(conv: str) -> str:
    """The BN after a convolution: ``conv1`` -> ``bn1``, ``layer1.0.conv2`` -> ``layer1.0.bn2``,
    ``layer2.0.shortcut.0`` -> ``layer2.0.shortcut.1``."""
    if conv.endswith("shortcut.0"):
        return conv[: -len("0")] + "1"
    head, _, last = conv.rpartition(".")
    return (head + "." if head else "") + "bn" + last[len("conv") :]


def parameter_shapes() -> Dict[str, Tuple[int, ...]]:
    """Every parameter (``state_dict`` name -> shape): kernels OIHW, BN vectors, ``linear``
    (out, in)."""
    shapes: Dict[str, Tuple[int, ...]] = {}
    for conv, kernel in convolutions().items():
        shapes[f"{conv}.weight"] = kernel
        for statistic in BN_STATISTICS:
            shapes[f"{batch_norm_of(conv)}.{statistic}"] = (kernel[0],)
    shapes["linear.weight"] = (CLASSES, STAGES[-1][0])
    shapes["linear.bias"] = (CLASSES,)
    return shapes


PARAMETER_SHAPES = parameter_shapes()


def checked(weights: Weights, label: str = "ResNet-18 weights") -> Dict[str, np.ndarray]:
    """``weights`` as float32 arrays in :func:`parameter_shapes` order; a ValueError that names the
    missing, unexpected and misshapen entries otherwise. PyTorch's ``num_batches_tracked`` counters
    are dropped (inference does not read them)."""
    given = {k: v for k, v in weights.items() if not k.endswith("num_batches_tracked")}
    missing = sorted(set(PARAMETER_SHAPES) - set(given))
    unexpected = sorted(set(given) - set(PARAMETER_SHAPES))
    if missing or unexpected:
        raise ValueError(f"{label}: missing keys {missing}, unexpected keys {unexpected}")
    wrong = {k: np.shape(given[k]) for k, s in PARAMETER_SHAPES.items() if np.shape(given[k]) != s}
    if wrong:
        expected = {k: PARAMETER_SHAPES[k] for k in wrong}
        raise ValueError(f"{label}: wrong shapes {wrong}, expected {expected}")
    return {k: np.asarray(given[k], dtype=np.float32) for k in PARAMETER_SHAPES}


def _weights_or_default(weights: Optional[Weights]) -> Dict[str, np.ndarray]:
    return load_weights() if weights is None else checked(weights)


def bn_scale_shift(params: Mapping[str, Any], bn: str) -> Tuple[np.ndarray, np.ndarray]:
    """Inference-mode BN as ``x * scale + shift`` (float64 maths, float32 result)."""
    gamma, beta, mean, var = (np.asarray(params[f"{bn}.{s}"], np.float64) for s in BN_STATISTICS)
    scale = gamma / np.sqrt(var + BN_EPS)
    return scale.astype(np.float32), (beta - mean * scale).astype(np.float32)


# --- weights ------------------------------------------------------------------------------------


RANK = 8
"""Rank of the trained corrections of the seeded kernels."""
CORRECTION_KEYS = ("base_scale", "lowrank_u", "lowrank_v")


def he_normal(seed: int, index: int, shape: Tuple[int, ...]) -> np.ndarray:
    """He-normal float32 kernel of convolution ``index``: ``default_rng([seed, index])`` normals
    (float64) times ``sqrt(2 / fan_in)``, rounded once to float32."""
    fan_in = int(np.prod(shape[1:]))
    normals = np.random.default_rng([seed, index]).standard_normal(shape)
    return (normals * np.sqrt(2.0 / fan_in)).astype(np.float32)


@functools.lru_cache(maxsize=4)
def seeded_kernels(seed: int) -> Dict[str, np.ndarray]:
    """Every convolution's seeded kernel (``<conv>.weight`` -> OIHW float32), read-only, built once
    per process and seed."""
    kernels = {}
    for index, (conv, shape) in enumerate(convolutions().items()):
        kernel = he_normal(seed, index, shape)
        kernel.flags.writeable = False
        kernels[f"{conv}.weight"] = kernel
    return kernels


def corrected_kernel(
    seeded: np.ndarray, base_scale: Any, lowrank_u: np.ndarray, lowrank_v: np.ndarray
) -> np.ndarray:
    """``base_scale * seeded + u @ v`` (reshaped to the kernel), float32.

    Summed one rank at a time in float64 element-wise operations, which IEEE arithmetic rounds the
    same everywhere; a BLAS matrix product may sum in another order on another machine.
    """
    u, v = np.asarray(lowrank_u, np.float64), np.asarray(lowrank_v, np.float64)
    if u.shape != (seeded.shape[0], v.shape[0]) or v.shape[1] != seeded[0].size:
        raise ValueError(
            f"low-rank factors {u.shape} @ {v.shape} do not make a {seeded.shape} kernel"
        )
    total = float(np.asarray(base_scale, np.float64).reshape(())) * seeded.astype(np.float64)
    flat = total.reshape(seeded.shape[0], -1)
    for k in range(u.shape[1]):
        flat += u[:, k, None] * v[None, k, :]
    return flat.reshape(seeded.shape).astype(np.float32)


def expand(archive: Dict[str, np.ndarray], seed: int) -> Dict[str, np.ndarray]:
    """Full ``state_dict``-layout weights from an archive's arrays: each kernel is the archive's
    own (``<conv>.weight``), its seeded kernel with a correction (``<conv>.base_scale``, ...), or the
    seeded kernel alone; the BatchNorm and ``linear`` arrays are taken as they are."""
    seeded = seeded_kernels(seed)
    weights = dict(archive)
    for conv in convolutions():
        key = f"{conv}.weight"
        parts = [f"{conv}.{part}" for part in CORRECTION_KEYS]
        present = [p for p in parts if p in weights]
        if key in weights:
            if present:
                raise ValueError(f"{conv}: a kernel and a correction of it, {present}")
            continue
        if present and len(present) != len(parts):
            raise ValueError(f"{conv}: incomplete correction, has {present} of {parts}")
        if present:
            weights[key] = corrected_kernel(seeded[key], *(weights.pop(p) for p in parts))
        else:
            weights[key] = seeded[key]
    return weights


def load_weights(*, path: Union[str, Path, None] = None) -> Dict[str, np.ndarray]:
    """The full float32 weights of ``resnet18-cifar`` (``state_dict`` names, OIHW kernels).

    Args:
        path: an archive of the same layout (or a full ``state_dict`` as ``.npz``) instead of the
            shipped one; its ``meta`` gives the seed (0 when absent).

    Raises:
        ValueError: missing, unexpected or misshapen arrays; or full weights whose digest is not the
            one the archive records (the seeded kernels came out different here).
    """
    if path is None:
        return dict(_shipped_weights())
    return _expanded(read_npz(Path(path)), str(path))


@functools.lru_cache(maxsize=1)
def _shipped_weights() -> Dict[str, np.ndarray]:
    weights = _expanded(read_npz(data_file(f"{NAME}.npz")), f"zoo weights {NAME!r}")
    for array in weights.values():
        array.flags.writeable = False
    return weights


def _expanded(arrays: Dict[str, np.ndarray], label: str) -> Dict[str, np.ndarray]:
    meta = _meta(arrays.pop("meta", None))
    weights = checked(expand(arrays, int(meta.get("seed", 0))), label)
    recorded = meta.get("weights_sha256")
    if recorded is not None and weights_sha256(weights) != recorded:
        raise ValueError(
            f"{label}: the rebuilt weights' sha256 is {weights_sha256(weights)}, the archive "
            f"recorded {recorded}: the seeded kernels differ on this machine (a NumPy whose "
            "normal generator changed?); rerun scripts/make_resnet18_cifar.py"
        )
    return weights


def _meta(value: Optional[np.ndarray]) -> Dict[str, Any]:
    return {} if value is None else dict(json.loads(str(value)))


# --- PyTorch --------------------------------------------------------------------------------------


@functools.cache
def _torch_classes() -> Tuple[type, type]:
    """The ``nn.Module`` classes, defined on first use so that importing this module needs no
    torch."""
    import torch
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self, block: Block):
            super().__init__()
            c_in, c_out, stride = block.in_channels, block.out_channels, block.stride
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out, eps=BN_EPS)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out, eps=BN_EPS)
            self.shortcut = nn.Sequential()
            if block.has_projection:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                    nn.BatchNorm2d(c_out, eps=BN_EPS),
                )

        def forward(self, x: Any) -> Any:
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return torch.relu(out + self.shortcut(x))

    class ResNet18(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(IN_CHANNELS, STEM_WIDTH, 3, stride=1, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(STEM_WIDTH, eps=BN_EPS)
            all_blocks = blocks()
            for stage in range(1, len(STAGES) + 1):
                stage_blocks = [b for b in all_blocks if b.prefix.startswith(f"layer{stage}.")]
                setattr(self, f"layer{stage}", nn.Sequential(*map(BasicBlock, stage_blocks)))
            self.linear = nn.Linear(STAGES[-1][0], CLASSES)

        def features(self, x: Any) -> Any:
            """The 512 globally average-pooled features the linear layer reads."""
            out = torch.relu(self.bn1(self.conv1(x)))
            for stage in range(1, len(STAGES) + 1):
                out = getattr(self, f"layer{stage}")(out)
            return out.mean(dim=(2, 3))

        def forward(self, x: Any) -> Any:
            return self.linear(self.features(x))

    return BasicBlock, ResNet18


def resnet18_torch(weights: Optional[Weights] = None) -> Any:
    """The ResNet-18 as a ``torch.nn.Module`` in eval mode (BN on its running statistics), inputs
    ``(N, 3, 32, 32)``.

    ``weights`` (``state_dict`` names, see :func:`parameter_shapes`) default to the zoo's
    (:func:`foolbox_alma.zoo.load_weights` of ``"resnet18-cifar"``); a kuangliu/pytorch-cifar or
    RobustBench ``ResNet18`` ``state_dict`` converted to NumPy loads as it is.
    """
    import torch

    params = _weights_or_default(weights)
    _, resnet_class = _torch_classes()
    net = resnet_class()
    state = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in params.items()}
    net.load_state_dict(state, strict=False)  # strict but for the num_batches_tracked counters
    return net.eval()


# --- TensorFlow -----------------------------------------------------------------------------------


def resnet18_tensorflow(
    weights: Optional[Weights] = None, data_format: str = "channels_last"
) -> Any:
    """The ResNet-18 as a ``tf.keras.Model`` (BN layers frozen: inference mode whatever
    ``training`` says).

    Args:
        weights: ``state_dict``-layout parameters; the zoo's when None.
        data_format: ``"channels_last"`` for ``(N, 32, 32, 3)`` inputs or ``"channels_first"`` for
            ``(N, 3, 32, 32)``. TensorFlow's CPU convolutions are NHWC only (Keras would transpose
            around each of the 21 convolutions), so the channels-first model transposes its input
            once and runs the channels-last network. ``model.data_format`` records the layout.
    """
    import tensorflow as tf

    data_format = checked_data_format("tensorflow", data_format)
    params = _weights_or_default(weights)
    layers = tf.keras.layers
    channels_last = data_format == "channels_last"
    shape = (IMAGE_SIZE, IMAGE_SIZE, IN_CHANNELS)
    inputs = tf.keras.Input(shape=shape if channels_last else shape[::-1], name="images")
    h = inputs if channels_last else layers.Permute((2, 3, 1), name="to_nhwc")(inputs)

    def conv_bn(x: Any, conv: str, stride: int = 1) -> Any:
        filters, _, size, _ = PARAMETER_SHAPES[f"{conv}.weight"]
        if size == 3:  # PyTorch's padding=1 on every side, also at stride 2 (not "same")
            x = layers.ZeroPadding2D(1, name=f"{conv}.pad")(x)
        x = layers.Conv2D(filters, size, strides=stride, use_bias=False, name=conv)(x)
        norm = layers.BatchNormalization(epsilon=BN_EPS, name=batch_norm_of(conv))
        norm.trainable = False  # Keras runs frozen BN in inference mode even when training
        return norm(x)

    h = layers.ReLU(name="relu")(conv_bn(h, "conv1"))
    for block in blocks():
        out = layers.ReLU(name=f"{block.prefix}.relu1")(
            conv_bn(h, f"{block.prefix}.conv1", block.stride)
        )
        out = conv_bn(out, f"{block.prefix}.conv2")
        shortcut = (
            conv_bn(h, f"{block.prefix}.shortcut.0", block.stride) if block.has_projection else h
        )
        h = layers.ReLU(name=f"{block.prefix}.relu2")(
            layers.Add(name=f"{block.prefix}.add")([out, shortcut])
        )
    h = layers.GlobalAveragePooling2D(name="pool")(h)
    logits = layers.Dense(CLASSES, name="linear")(h)
    model = tf.keras.Model(inputs, logits, name=f"resnet18_cifar_{data_format}")

    for conv in convolutions():  # OIHW -> HWIO
        model.get_layer(conv).set_weights([params[f"{conv}.weight"].transpose(2, 3, 1, 0)])
        bn = batch_norm_of(conv)
        model.get_layer(bn).set_weights([params[f"{bn}.{s}"] for s in BN_STATISTICS])
    model.get_layer("linear").set_weights([params["linear.weight"].T, params["linear.bias"]])
    model.data_format = data_format
    return model


# --- JAX ------------------------------------------------------------------------------------------


def jax_params(weights: Optional[Weights] = None) -> Dict[str, Any]:
    """Parameters of :func:`resnet18_apply`: OIHW kernels, each BN as ``scale``/``shift`` (its
    inference-mode affine map) and ``linear``, as ``jax.numpy`` arrays."""
    import jax.numpy as jnp

    params = _weights_or_default(weights)
    result = {"linear.weight": params["linear.weight"], "linear.bias": params["linear.bias"]}
    for conv in convolutions():
        result[f"{conv}.weight"] = params[f"{conv}.weight"]
        bn = batch_norm_of(conv)
        result[f"{bn}.scale"], result[f"{bn}.shift"] = bn_scale_shift(params, bn)
    return {k: jnp.asarray(v) for k, v in result.items()}


def resnet18_apply(
    params: Mapping[str, Any], images: Any, data_format: str = "channels_first"
) -> Any:
    """Pure JAX ResNet-18: ``params`` (:func:`jax_params`), ``images`` -> logits ``(N, 10)``.

    ``images`` are ``(N, 3, 32, 32)`` (channels_first) or ``(N, 32, 32, 3)`` (channels_last).
    Differentiable and ``jax.jit``-able (``data_format`` static).
    """
    import jax
    from jax import lax

    def conv_bn(x: Any, conv: str, stride: int = 1) -> Any:
        kernel = params[f"{conv}.weight"]
        pad = (kernel.shape[-1] - 1) // 2  # 1 on every side for 3x3, as PyTorch's padding=1
        x = lax.conv_general_dilated(
            x,
            kernel,
            window_strides=(stride, stride),
            padding=((pad, pad), (pad, pad)),
            dimension_numbers=("NCHW", "OIHW", "NCHW"),
            precision=lax.Precision.HIGHEST,
        )
        bn = batch_norm_of(conv)
        return x * params[f"{bn}.scale"][:, None, None] + params[f"{bn}.shift"][:, None, None]

    h = images.transpose(0, 3, 1, 2) if data_format == "channels_last" else images
    h = jax.nn.relu(conv_bn(h, "conv1"))
    for block in blocks():
        out = jax.nn.relu(conv_bn(h, f"{block.prefix}.conv1", block.stride))
        out = conv_bn(out, f"{block.prefix}.conv2")
        shortcut = (
            conv_bn(h, f"{block.prefix}.shortcut.0", block.stride) if block.has_projection else h
        )
        h = jax.nn.relu(out + shortcut)
    features = h.mean(axis=(2, 3))
    return (
        lax.dot(features, params["linear.weight"].T, precision=lax.Precision.HIGHEST)
        + params["linear.bias"]
    )


def resnet18_jax(
    weights: Optional[Weights] = None, data_format: str = "channels_first"
) -> Callable[[Any], Any]:
    """The ResNet-18 as a jitted JAX function ``images -> logits`` (what ``fb.JAXModel`` takes).

    It is :func:`resnet18_apply` with the parameters bound; ``fn.params`` and ``fn.apply`` expose
    the two halves. Inputs are ``(N, 3, 32, 32)`` by default.
    """
    import jax

    data_format = checked_data_format("jax", data_format)
    params = jax_params(weights)
    apply = jax.jit(functools.partial(resnet18_apply, data_format=data_format))

    def forward(images: Any) -> Any:
        return apply(params, images)

    forward.params = params  # type: ignore[attr-defined]
    forward.apply = apply  # type: ignore[attr-defined]
    forward.data_format = data_format  # type: ignore[attr-defined]
    return forward


# --- Foolbox --------------------------------------------------------------------------------------


def foolbox_model(framework: str, data_format: str, weights: Optional[Weights] = None) -> Any:
    """A Foolbox model (bounds (0, 1)) of the ResNet-18 in the canonical ``framework``, with a
    checked ``data_format`` (:func:`foolbox_alma.zoo.foolbox_model` is the public entry)."""
    import foolbox as fb

    params = _weights_or_default(weights)
    if framework == "pytorch":
        return fb.PyTorchModel(resnet18_torch(params), bounds=(0, 1))
    if framework == "tensorflow":
        model = resnet18_tensorflow(params, data_format=data_format)
        return TensorFlowModel(model, bounds=(0, 1), data_format=data_format)
    return fb.JAXModel(resnet18_jax(params, data_format), bounds=(0, 1), data_format=data_format)
