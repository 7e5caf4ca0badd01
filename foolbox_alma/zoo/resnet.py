"""The ResNet family of the zoo: one description of the network, built identically in PyTorch,
TensorFlow and JAX; and ``resnet18-cifar``, a CIFAR-size ResNet-18 (``resnet50-imagenet``, the
ImageNet ResNet-50, is :mod:`.resnet50`: same description and builders, other weights).

A :class:`ResNetArchitecture` lists the stem, the residual blocks (BasicBlocks or torchvision's
bottlenecks), the head and the input normalisation; :func:`torch_resnet`,
:func:`tensorflow_resnet` and :func:`resnet_apply` (JAX) build any of them from weights under
PyTorch ``state_dict`` names, and :func:`seeded_kernels` generates its He-normal kernels. Every
convolution pads ``k // 2`` pixels on every side, as PyTorch's ResNets do; TensorFlow's
``"same"`` padding would put the odd pixel of a stride-2 layer at the bottom and right only,
shifting every stride-2 layer (and the max-pooling) by one pixel. The TensorFlow build therefore
pads explicitly and convolves (and pools) ``"valid"``, and the JAX one passes explicit padding, so
the three compute the same function. BatchNorm runs in inference mode (running statistics, eps
1e-5) in every framework.

``resnet18-cifar``: the ResNet-18 of CIFAR code (He et al., CVPR 2016, as in kuangliu/pytorch-cifar
and RobustBench's ``ResNet18``), for 3x32x32 inputs in [0, 1] and 10 classes, 11.2M parameters::

    conv3x3 3->64 (stride 1, pad 1, no bias), BN, ReLU                      32x32, no max-pool
    layer1..layer4: 2 BasicBlocks each, 64/128/256/512 channels, strides 1/2/2/2
        BasicBlock: conv3x3 (stride s, pad 1), BN, ReLU, conv3x3 (pad 1), BN, + shortcut, ReLU
        shortcut: identity, or conv1x1 (stride s) + BN where the shape changes
    global average pooling (4x4 -> 1), fc 512->10 (logits)

Weights use the ``state_dict`` names of those repositories (:func:`parameter_shapes`: ``conv1``,
``bn1``, ``layer2.0.shortcut.0``, ..., ``linear``), so their checkpoints load too.

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
    checked_weights,
    data_file,
    jax_forward,
    read_npz,
    weights_sha256,
)

BN_EPS = 1e-5
BN_STATISTICS = ("weight", "bias", "running_mean", "running_var")
MAX_POOL = (3, 2, 1)
"""(window, stride, padding on every side) of the ImageNet stem's max-pooling, PyTorch's."""

# --- the architecture -----------------------------------------------------------------------------


class Conv(NamedTuple):
    """One convolution without bias: its ``state_dict`` prefix, OIHW kernel shape and stride."""

    name: str
    shape: Tuple[int, int, int, int]
    stride: int = 1

    @property
    def padding(self) -> int:
        """Pixels of zero padding on every side: ``k // 2``, as PyTorch's ResNets."""
        return self.shape[-1] // 2


class Block(NamedTuple):
    """One residual block: its name prefix (``layer2.0``), channels and stride; a BasicBlock (two
    3x3 convolutions) when ``width`` is 0, else torchvision's bottleneck (1x1 to ``width``
    channels, 3x3 carrying the stride as in torchvision's v1.5, 1x1 to ``out_channels``)."""

    prefix: str
    in_channels: int
    out_channels: int
    stride: int
    width: int = 0
    projection_name: str = "shortcut"
    """The shortcut's ``nn.Sequential(conv1x1, BN)``: ``shortcut`` (CIFAR code) or ``downsample``
    (torchvision)."""

    @property
    def has_projection(self) -> bool:
        """Whether the shortcut is a 1x1 convolution + BN (the shape changes) or the identity."""
        return self.stride != 1 or self.in_channels != self.out_channels

    def main_path(self) -> Tuple[Conv, ...]:
        """The residual branch's convolutions, in order; each is followed by its BN and, but for
        the last, a ReLU."""
        p, c_in, c_out, s, w = (
            self.prefix,
            self.in_channels,
            self.out_channels,
            self.stride,
            self.width,
        )
        if w:
            return (
                Conv(f"{p}.conv1", (w, c_in, 1, 1)),
                Conv(f"{p}.conv2", (w, w, 3, 3), s),
                Conv(f"{p}.conv3", (c_out, w, 1, 1)),
            )
        return Conv(f"{p}.conv1", (c_out, c_in, 3, 3), s), Conv(f"{p}.conv2", (c_out, c_out, 3, 3))

    @property
    def projection(self) -> Optional[Conv]:
        """The shortcut's 1x1 convolution, or None for the identity."""
        if not self.has_projection:
            return None
        return Conv(
            f"{self.prefix}.{self.projection_name}.0",
            (self.out_channels, self.in_channels, 1, 1),
            self.stride,
        )


def residual_blocks(
    stem_width: int,
    stages: Tuple[Tuple[int, int, int], ...],
    expansion: int = 1,
    projection_name: str = "shortcut",
) -> Tuple[Block, ...]:
    """The blocks of ``layer1``..``layerN``: ``stages`` lists (blocks, width, stride of the first
    block); ``expansion`` 1 makes BasicBlocks of ``width`` channels, 4 bottlenecks of ``width``
    inner and ``4 * width`` output channels."""
    result, channels = [], stem_width
    for stage, (depth, width, stride) in enumerate(stages, start=1):
        for index in range(depth):
            out = width * expansion
            result.append(
                Block(
                    f"layer{stage}.{index}",
                    channels,
                    out,
                    stride if index == 0 else 1,
                    width if expansion > 1 else 0,
                    projection_name,
                )
            )
            channels = out
    return tuple(result)


class ResNetArchitecture(NamedTuple):
    """What the three builders need to know about a ResNet (hashable: builders cache on it)."""

    name: str
    image_size: int
    stem: Conv
    max_pool: bool
    blocks: Tuple[Block, ...]
    head: str
    """The ``nn.Linear`` after global average pooling: ``linear`` (CIFAR code) or ``fc``."""
    classes: int
    input_mean: Optional[Tuple[float, ...]] = None
    input_std: Optional[Tuple[float, ...]] = None
    """Per-channel normalisation inside the network (``(x - mean) / std``); none when None."""
    seeded_head: bool = False
    """Whether :func:`seeded_kernels` generates the head's weight too."""

    @property
    def in_channels(self) -> int:
        return self.stem.shape[1]

    @property
    def features(self) -> int:
        """Channels of the last block: the globally pooled features the head reads."""
        return self.blocks[-1].out_channels

    def convolutions(self) -> Tuple[Conv, ...]:
        """Every convolution in forward order (a block's main path, then its projection); each is
        followed by the BN of :func:`batch_norm_of`."""
        convs = [self.stem]
        for block in self.blocks:
            convs.extend(block.main_path())
            if block.projection is not None:
                convs.append(block.projection)
        return tuple(convs)

    def parameter_shapes(self) -> Dict[str, Tuple[int, ...]]:
        """Every parameter (``state_dict`` name -> shape): kernels OIHW, BN vectors, the head
        (out, in)."""
        shapes: Dict[str, Tuple[int, ...]] = {}
        for conv in self.convolutions():
            shapes[f"{conv.name}.weight"] = conv.shape
            for statistic in BN_STATISTICS:
                shapes[f"{batch_norm_of(conv.name)}.{statistic}"] = (conv.shape[0],)
        shapes[f"{self.head}.weight"] = (self.classes, self.features)
        shapes[f"{self.head}.bias"] = (self.classes,)
        return shapes

    def input_affine(self) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """The input normalisation as float32 per-channel ``(scale, offset)``, ``x * scale +
        offset`` in every framework (computed in float64, rounded once); None without one."""
        if self.input_mean is None or self.input_std is None:
            return None
        mean, std = np.asarray(self.input_mean, np.float64), np.asarray(self.input_std, np.float64)
        return (1 / std).astype(np.float32), (-mean / std).astype(np.float32)


def batch_norm_of(conv: str) -> str:
    """The BN after a convolution: ``conv1`` -> ``bn1``, ``layer1.0.conv2`` -> ``layer1.0.bn2``,
    ``layer2.0.shortcut.0`` -> ``layer2.0.shortcut.1`` (``downsample`` likewise)."""
    head, _, last = conv.rpartition(".")
    prefix = head + "." if head else ""
    if last.isdigit():  # the convolution of an nn.Sequential(conv, BN)
        return f"{prefix}{int(last) + 1}"
    return prefix + "bn" + last[len("conv") :]


NAME = "resnet18-cifar"
IN_CHANNELS = 3
IMAGE_SIZE = 32
CLASSES = 10
STEM_WIDTH = 64
STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))
"""(channels, stride of the first block) of layer1..layer4."""
BLOCKS_PER_STAGE = 2

RESNET18_CIFAR = ResNetArchitecture(
    name=NAME,
    image_size=IMAGE_SIZE,
    stem=Conv("conv1", (STEM_WIDTH, IN_CHANNELS, 3, 3)),
    max_pool=False,
    blocks=residual_blocks(STEM_WIDTH, tuple((BLOCKS_PER_STAGE, w, s) for w, s in STAGES)),
    head="linear",
    classes=CLASSES,
)


def blocks() -> List[Block]:
    """The eight BasicBlocks of ``resnet18-cifar``, in forward order."""
    return list(RESNET18_CIFAR.blocks)


def convolutions(
    architecture: ResNetArchitecture = RESNET18_CIFAR,
) -> Dict[str, Tuple[int, int, int, int]]:
    """Every convolution (prefix -> OIHW kernel shape), in forward order; each is followed by the BN
    of :func:`batch_norm_of`."""
    return {conv.name: conv.shape for conv in architecture.convolutions()}


def parameter_shapes(
    architecture: ResNetArchitecture = RESNET18_CIFAR,
) -> Dict[str, Tuple[int, ...]]:
    """Every parameter (``state_dict`` name -> shape): kernels OIHW, BN vectors, the head
    (out, in)."""
    return architecture.parameter_shapes()


PARAMETER_SHAPES = parameter_shapes()


def checked(
    weights: Weights,
    label: str = "ResNet-18 weights",
    architecture: ResNetArchitecture = RESNET18_CIFAR,
) -> Dict[str, np.ndarray]:
    """``weights`` as float32 arrays in :func:`parameter_shapes` order; a ValueError that names the
    missing, unexpected and misshapen entries otherwise. PyTorch's ``num_batches_tracked`` counters
    are dropped (inference does not read them)."""
    given = {k: v for k, v in weights.items() if not k.endswith("num_batches_tracked")}
    return checked_weights(given, architecture.parameter_shapes(), label)


def _weights_or_default(weights: Optional[Weights]) -> Dict[str, np.ndarray]:
    return load_weights() if weights is None else checked(weights)


def bn_scale_shift(params: Mapping[str, Any], bn: str) -> Tuple[np.ndarray, np.ndarray]:
    """Inference-mode BN as ``x * scale + shift`` (float64 maths, float32 result)."""
    gamma, beta, mean, var = (np.asarray(params[f"{bn}.{s}"], np.float64) for s in BN_STATISTICS)
    scale = gamma / np.sqrt(var + BN_EPS)
    return scale.astype(np.float32), (beta - mean * scale).astype(np.float32)


# --- weights ------------------------------------------------------------------------------------


RANK = 8
"""Rank of the trained corrections of ``resnet18-cifar``'s seeded kernels."""
CORRECTION_KEYS = ("base_scale", "lowrank_u", "lowrank_v")


def he_normal(seed: int, index: int, shape: Tuple[int, ...]) -> np.ndarray:
    """He-normal float32 kernel of convolution ``index``: ``default_rng([seed, index])`` normals
    (float64) times ``sqrt(2 / fan_in)``, rounded once to float32."""
    fan_in = int(np.prod(shape[1:]))
    normals = np.random.default_rng([seed, index]).standard_normal(shape)
    return (normals * np.sqrt(2.0 / fan_in)).astype(np.float32)


def seeded_kernels(
    seed: int, architecture: ResNetArchitecture = RESNET18_CIFAR
) -> Dict[str, np.ndarray]:
    """Every convolution's seeded kernel (``<conv>.weight`` -> OIHW float32, :func:`he_normal` of
    the ``i``-th convolution in forward order) and, for a ``seeded_head`` architecture, the head's
    weight (index: the number of convolutions); read-only, built once per process and seed."""
    return _seeded_kernels(seed, architecture)


@functools.lru_cache(maxsize=4)
def _seeded_kernels(seed: int, architecture: ResNetArchitecture) -> Dict[str, np.ndarray]:
    shapes: Dict[str, Tuple[int, ...]] = {
        f"{conv.name}.weight": conv.shape for conv in architecture.convolutions()
    }
    if architecture.seeded_head:
        shapes[f"{architecture.head}.weight"] = (architecture.classes, architecture.features)
    kernels = {}
    for index, (key, shape) in enumerate(shapes.items()):
        kernel = he_normal(seed, index, shape)
        kernel.flags.writeable = False
        kernels[key] = kernel
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


def expand(
    archive: Dict[str, np.ndarray],
    seed: int,
    architecture: ResNetArchitecture = RESNET18_CIFAR,
) -> Dict[str, np.ndarray]:
    """Full ``state_dict``-layout weights from an archive's arrays: each seeded kernel is the
    archive's own (``<conv>.weight``), its seeded kernel with a correction (``<conv>.base_scale``,
    ...), or the seeded kernel alone; the other arrays are taken as they are."""
    seeded = seeded_kernels(seed, architecture)
    weights = dict(archive)
    for key in seeded:
        conv = key[: -len(".weight")]
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


def rebuilt_weights(
    arrays: Dict[str, np.ndarray],
    label: str,
    architecture: ResNetArchitecture = RESNET18_CIFAR,
    script: str = "scripts/make_resnet18_cifar.py",
) -> Dict[str, np.ndarray]:
    """The full checked weights of an archive's arrays (its ``meta`` gives the seed, 0 when
    absent), against the digest the archive records; a ValueError naming ``script`` when the
    seeded kernels came out different here."""
    arrays = dict(arrays)
    meta = archive_meta(arrays.pop("meta", None))
    weights = checked(expand(arrays, int(meta.get("seed", 0)), architecture), label, architecture)
    recorded = meta.get("weights_sha256")
    if recorded is not None and weights_sha256(weights) != recorded:
        raise ValueError(
            f"{label}: the rebuilt weights' sha256 is {weights_sha256(weights)}, the archive "
            f"recorded {recorded}: the seeded kernels differ on this machine (a NumPy whose "
            f"normal generator changed?); rerun {script}"
        )
    return weights


def archive_meta(value: Optional[np.ndarray]) -> Dict[str, Any]:
    """An archive's ``meta`` JSON string as a dict (empty when absent)."""
    return {} if value is None else dict(json.loads(str(value)))


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
    return rebuilt_weights(read_npz(Path(path)), str(path))


@functools.lru_cache(maxsize=1)
def _shipped_weights() -> Dict[str, np.ndarray]:
    weights = rebuilt_weights(read_npz(data_file(f"{NAME}.npz")), f"zoo weights {NAME!r}")
    for array in weights.values():
        array.flags.writeable = False
    return weights


# --- PyTorch --------------------------------------------------------------------------------------


@functools.cache
def _torch_classes() -> Tuple[type, type]:
    """The ``nn.Module`` classes (a residual block, a ResNet), defined on first use so that
    importing this module needs no torch."""
    import torch
    from torch import nn

    def conv_bn(conv: Conv) -> Tuple[Any, Any]:
        c_out, c_in, size, _ = conv.shape
        padding = conv.padding
        layer = nn.Conv2d(c_in, c_out, size, stride=conv.stride, padding=padding, bias=False)
        return layer, nn.BatchNorm2d(c_out, eps=BN_EPS)

    class ResidualBlock(nn.Module):
        def __init__(self, block: Block):
            super().__init__()
            self.path = []  # (conv, BN) attribute names: conv1/bn1, ...
            for conv in block.main_path():
                local = conv.name.rpartition(".")[2]
                layer, norm = conv_bn(conv)
                setattr(self, local, layer)
                setattr(self, batch_norm_of(local), norm)
                self.path.append((local, batch_norm_of(local)))
            self.projection = None if block.projection is None else block.projection_name
            if block.projection is not None:
                setattr(self, block.projection_name, nn.Sequential(*conv_bn(block.projection)))

        def forward(self, x: Any) -> Any:
            out = x
            for index, (conv, norm) in enumerate(self.path):
                out = getattr(self, norm)(getattr(self, conv)(out))
                if index < len(self.path) - 1:
                    out = torch.relu(out)
            shortcut = x if self.projection is None else getattr(self, self.projection)(x)
            return torch.relu(out + shortcut)

    class ResNet(nn.Module):
        def __init__(self, architecture: ResNetArchitecture) -> None:
            super().__init__()
            self.head = architecture.head
            self.conv1, self.bn1 = conv_bn(architecture.stem)
            self.maxpool = nn.MaxPool2d(*MAX_POOL) if architecture.max_pool else None
            stages = sorted({b.prefix.split(".")[0] for b in architecture.blocks})
            for stage in stages:
                stage_blocks = [b for b in architecture.blocks if b.prefix.startswith(f"{stage}.")]
                setattr(self, stage, nn.Sequential(*map(ResidualBlock, stage_blocks)))
            self.stages = stages
            setattr(self, self.head, nn.Linear(architecture.features, architecture.classes))
            affine = architecture.input_affine()
            self.normalised = affine is not None
            if affine is not None:  # buffers outside the state_dict: torchvision's loads as it is
                for name, values in zip(("input_scale", "input_offset"), affine):
                    tensor = torch.from_numpy(values.copy()).view(-1, 1, 1)
                    self.register_buffer(name, tensor, persistent=False)

        def features(self, x: Any) -> Any:
            """The globally average-pooled features the head reads."""
            if self.normalised:
                x = x * self.input_scale + self.input_offset
            out = torch.relu(self.bn1(self.conv1(x)))
            if self.maxpool is not None:
                out = self.maxpool(out)
            for stage in self.stages:
                out = getattr(self, stage)(out)
            return out.mean(dim=(2, 3))

        def forward(self, x: Any) -> Any:
            return getattr(self, self.head)(self.features(x))

    return ResidualBlock, ResNet


def torch_resnet(architecture: ResNetArchitecture, params: Weights) -> Any:
    """``architecture`` as a ``torch.nn.Module`` in eval mode (BN on its running statistics) with
    ``params`` (checked full weights under ``state_dict`` names)."""
    import torch

    _, resnet_class = _torch_classes()
    net = resnet_class(architecture)
    state = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in params.items()}
    net.load_state_dict(state, strict=False)  # strict but for the num_batches_tracked counters
    return net.eval()


def resnet18_torch(weights: Optional[Weights] = None) -> Any:
    """The ResNet-18 as a ``torch.nn.Module`` in eval mode (BN on its running statistics), inputs
    ``(N, 3, 32, 32)``.

    ``weights`` (``state_dict`` names, see :func:`parameter_shapes`) default to the zoo's
    (:func:`foolbox_alma.zoo.load_weights` of ``"resnet18-cifar"``); a kuangliu/pytorch-cifar or
    RobustBench ``ResNet18`` ``state_dict`` converted to NumPy loads as it is.
    """
    return torch_resnet(RESNET18_CIFAR, _weights_or_default(weights))


# --- TensorFlow -----------------------------------------------------------------------------------


def tensorflow_resnet(
    architecture: ResNetArchitecture, params: Weights, data_format: str = "channels_last"
) -> Any:
    """``architecture`` as a ``tf.keras.Model`` with ``params`` (checked full weights under
    ``state_dict`` names); BN layers frozen: inference mode whatever ``training`` says.

    ``data_format`` ``"channels_first"`` transposes the input once and runs the channels-last
    network: TensorFlow's CPU convolutions are NHWC only (Keras would transpose around each one).
    ``model.data_format`` records the layout.
    """
    import tensorflow as tf

    data_format = checked_data_format("tensorflow", data_format)
    layers = tf.keras.layers
    channels_last = data_format == "channels_last"
    side, channels = architecture.image_size, architecture.in_channels
    shape = (side, side, channels) if channels_last else (channels, side, side)
    inputs = tf.keras.Input(shape=shape, name="images")
    h = inputs if channels_last else layers.Permute((2, 3, 1), name="to_nhwc")(inputs)

    def conv_bn(x: Any, conv: Conv) -> Any:
        if conv.padding:  # PyTorch's k // 2 on every side, also at stride 2 (not "same")
            x = layers.ZeroPadding2D(conv.padding, name=f"{conv.name}.pad")(x)
        filters, _, size, _ = conv.shape
        x = layers.Conv2D(filters, size, strides=conv.stride, use_bias=False, name=conv.name)(x)
        norm = layers.BatchNormalization(epsilon=BN_EPS, name=batch_norm_of(conv.name))
        norm.trainable = False  # Keras runs frozen BN in inference mode even when training
        return norm(x)

    affine = architecture.input_affine()
    if affine is not None:
        h = layers.Rescaling(scale=affine[0], offset=affine[1], name="normalize")(h)
    h = layers.ReLU(name="relu")(conv_bn(h, architecture.stem))
    if architecture.max_pool:
        # PyTorch pads with -inf; zeros are the same after a ReLU (every window has a real pixel)
        window, stride, padding = MAX_POOL
        h = layers.ZeroPadding2D(padding, name="maxpool.pad")(h)
        h = layers.MaxPooling2D(window, strides=stride, name="maxpool")(h)
    for block in architecture.blocks:
        out, path = h, block.main_path()
        for index, conv in enumerate(path, start=1):
            out = conv_bn(out, conv)
            if index < len(path):
                out = layers.ReLU(name=f"{block.prefix}.relu{index}")(out)
        shortcut = h if block.projection is None else conv_bn(h, block.projection)
        h = layers.ReLU(name=f"{block.prefix}.relu{len(path)}")(
            layers.Add(name=f"{block.prefix}.add")([out, shortcut])
        )
    h = layers.GlobalAveragePooling2D(name="pool")(h)
    logits = layers.Dense(architecture.classes, name=architecture.head)(h)
    model_name = f"{architecture.name.replace('-', '_')}_{data_format}"
    model = tf.keras.Model(inputs, logits, name=model_name)

    for conv in architecture.convolutions():  # OIHW -> HWIO
        model.get_layer(conv.name).set_weights(
            [params[f"{conv.name}.weight"].transpose(2, 3, 1, 0)]
        )
        bn = batch_norm_of(conv.name)
        model.get_layer(bn).set_weights([params[f"{bn}.{s}"] for s in BN_STATISTICS])
    head = architecture.head
    model.get_layer(head).set_weights([params[f"{head}.weight"].T, params[f"{head}.bias"]])
    model.data_format = data_format
    return model


def resnet18_tensorflow(
    weights: Optional[Weights] = None, data_format: str = "channels_last"
) -> Any:
    """The ResNet-18 as a ``tf.keras.Model`` (BN layers frozen: inference mode whatever
    ``training`` says).

    Args:
        weights: ``state_dict``-layout parameters; the zoo's when None.
        data_format: ``"channels_last"`` for ``(N, 32, 32, 3)`` inputs or ``"channels_first"`` for
            ``(N, 3, 32, 32)`` (transposed once at the input, :func:`tensorflow_resnet`).
    """
    return tensorflow_resnet(RESNET18_CIFAR, _weights_or_default(weights), data_format)


# --- JAX ------------------------------------------------------------------------------------------


def jax_params_of(architecture: ResNetArchitecture, params: Weights) -> Dict[str, Any]:
    """Parameters of :func:`resnet_apply`: OIHW kernels, each BN as ``scale``/``shift`` (its
    inference-mode affine map) and the head, as ``jax.numpy`` arrays."""
    import jax.numpy as jnp

    head = architecture.head
    result = {f"{head}.{part}": params[f"{head}.{part}"] for part in ("weight", "bias")}
    for conv in architecture.convolutions():
        result[f"{conv.name}.weight"] = params[f"{conv.name}.weight"]
        bn = batch_norm_of(conv.name)
        result[f"{bn}.scale"], result[f"{bn}.shift"] = bn_scale_shift(params, bn)
    return {k: jnp.asarray(v) for k, v in result.items()}


def resnet_apply(
    architecture: ResNetArchitecture,
    params: Mapping[str, Any],
    images: Any,
    data_format: str = "channels_first",
) -> Any:
    """Pure JAX ResNet: ``params`` (:func:`jax_params_of`), ``images`` -> logits.

    ``images`` are ``(N, C, H, W)`` (channels_first) or ``(N, H, W, C)`` (channels_last).
    Differentiable and ``jax.jit``-able (``architecture`` and ``data_format`` static).
    """
    import jax
    import jax.numpy as jnp
    from jax import lax

    def conv_bn(x: Any, conv: Conv) -> Any:
        pad = conv.padding
        x = lax.conv_general_dilated(
            x,
            params[f"{conv.name}.weight"],
            window_strides=(conv.stride, conv.stride),
            padding=((pad, pad), (pad, pad)),
            dimension_numbers=("NCHW", "OIHW", "NCHW"),
            precision=lax.Precision.HIGHEST,
        )
        bn = batch_norm_of(conv.name)
        return x * params[f"{bn}.scale"][:, None, None] + params[f"{bn}.shift"][:, None, None]

    h = images.transpose(0, 3, 1, 2) if data_format == "channels_last" else images
    affine = architecture.input_affine()
    if affine is not None:
        h = h * affine[0][:, None, None] + affine[1][:, None, None]
    h = jax.nn.relu(conv_bn(h, architecture.stem))
    if architecture.max_pool:
        window, stride, padding = MAX_POOL
        h = lax.reduce_window(
            h,
            -jnp.inf,
            lax.max,
            (1, 1, window, window),
            (1, 1, stride, stride),
            ((0, 0), (0, 0), (padding, padding), (padding, padding)),
        )
    for block in architecture.blocks:
        out, path = h, block.main_path()
        for index, conv in enumerate(path, start=1):
            out = conv_bn(out, conv)
            if index < len(path):
                out = jax.nn.relu(out)
        shortcut = h if block.projection is None else conv_bn(h, block.projection)
        h = jax.nn.relu(out + shortcut)
    features = h.mean(axis=(2, 3))
    head = architecture.head
    return (
        lax.dot(features, params[f"{head}.weight"].T, precision=lax.Precision.HIGHEST)
        + params[f"{head}.bias"]
    )


def jax_resnet(
    architecture: ResNetArchitecture, params: Weights, data_format: str = "channels_first"
) -> Callable[[Any], Any]:
    """``architecture`` as a jitted JAX function ``images -> logits`` (what ``fb.JAXModel`` takes),
    :func:`resnet_apply` with ``params`` (checked full weights) bound; ``fn.params`` and
    ``fn.apply`` expose the two halves."""
    import jax

    data_format = checked_data_format("jax", data_format)
    bound = jax_params_of(architecture, params)
    apply = jax.jit(functools.partial(resnet_apply, architecture, data_format=data_format))
    return jax_forward(apply, bound, data_format)


def jax_params(weights: Optional[Weights] = None) -> Dict[str, Any]:
    """Parameters of :func:`resnet18_apply` (:func:`jax_params_of` the ResNet-18's weights)."""
    return jax_params_of(RESNET18_CIFAR, _weights_or_default(weights))


def resnet18_apply(
    params: Mapping[str, Any], images: Any, data_format: str = "channels_first"
) -> Any:
    """Pure JAX ResNet-18: ``params`` (:func:`jax_params`), ``images`` -> logits ``(N, 10)``.

    ``images`` are ``(N, 3, 32, 32)`` (channels_first) or ``(N, 32, 32, 3)`` (channels_last).
    Differentiable and ``jax.jit``-able (``data_format`` static).
    """
    return resnet_apply(RESNET18_CIFAR, params, images, data_format)


def resnet18_jax(
    weights: Optional[Weights] = None, data_format: str = "channels_first"
) -> Callable[[Any], Any]:
    """The ResNet-18 as a jitted JAX function ``images -> logits`` (what ``fb.JAXModel`` takes).

    It is :func:`resnet18_apply` with the parameters bound; ``fn.params`` and ``fn.apply`` expose
    the two halves. Inputs are ``(N, 3, 32, 32)`` by default.
    """
    return jax_resnet(RESNET18_CIFAR, _weights_or_default(weights), data_format)


# --- Foolbox --------------------------------------------------------------------------------------


def foolbox_model_of(
    architecture: ResNetArchitecture, framework: str, data_format: str, params: Weights
) -> Any:
    """A Foolbox model (bounds (0, 1)) of ``architecture`` with ``params`` (checked full weights) in
    the canonical ``framework``, with a checked ``data_format``."""
    import foolbox as fb

    if framework == "pytorch":
        return fb.PyTorchModel(torch_resnet(architecture, params), bounds=(0, 1))
    if framework == "tensorflow":
        model = tensorflow_resnet(architecture, params, data_format=data_format)
        return TensorFlowModel(model, bounds=(0, 1), data_format=data_format)
    forward = jax_resnet(architecture, params, data_format)
    return fb.JAXModel(forward, bounds=(0, 1), data_format=data_format)


def foolbox_model(framework: str, data_format: str, weights: Optional[Weights] = None) -> Any:
    """A Foolbox model (bounds (0, 1)) of the ResNet-18 in the canonical ``framework``, with a
    checked ``data_format`` (:func:`foolbox_alma.zoo.foolbox_model` is the public entry)."""
    return foolbox_model_of(RESNET18_CIFAR, framework, data_format, _weights_or_default(weights))
