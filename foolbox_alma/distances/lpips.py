"""LPIPS distance (Zhang, Isola, Efros, Shechtman and Wang, CVPR 2018) on AlexNet features.

The definition of the ``lpips`` package (``lpips.LPIPS(net="alex", version="0.1")``) on images in
[0, 1] (its ``normalize=True``): the images are mapped to [-1, 1] and through its scaling layer
(shift (-0.030, -0.088, -0.188), scale (0.458, 0.448, 0.450)), the five ReLU outputs of AlexNet's
convolutional part are normalised to unit length along the channels (``f / (||f|| + 1e-10)``), the
squared differences are weighted per channel by the LPIPS v0.1 linear layers (shipped with this
package: ``data/lpips_alex_v0.1.npz``, copied from the ``lpips`` package, BSD 2-clause licence),
averaged over space and summed over the layers.

The AlexNet weights are torchvision's (``features.0.weight``, ... of a ``state_dict``), read from a
file: they cannot ship with this package. Convolutions and max-pooling run natively in PyTorch,
TensorFlow or JAX (see ``_backend``). The channel norm's square root has a zero
slope (not an infinite one) where a layer's features are all zero at a pixel, so the gradient is
finite there without relying on the ReLU's masking.
"""

import os
from typing import Any, Dict, Hashable, List, Mapping, Optional, Sequence, Tuple, Union

import eagerpy as ep
import numpy as np

from . import _backend, _fast
from .base import AUTO, BoundsLike, ImageDistance, check_image_size

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = f"https://download.pytorch.org/models/{ALEXNET_FILE}"
LINEAR_WEIGHTS_FILE = os.path.join(os.path.dirname(__file__), "data", "lpips_alex_v0.1.npz")

# torchvision's AlexNet ``features``: (index, stride, padding) of the convolutions, each followed
# by a ReLU; a 3 x 3 max-pooling of stride 2 comes before the 2nd and the 3rd convolution.
CONVOLUTIONS = ((0, 4, 2), (3, 1, 2), (6, 1, 1), (8, 1, 1), (10, 1, 1))
POOL_BEFORE = (3, 6)
ALEXNET_SHAPES = {
    0: (64, 3, 11, 11),
    3: (192, 64, 5, 5),
    6: (384, 192, 3, 3),
    8: (256, 384, 3, 3),
    10: (256, 256, 3, 3),
}
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10
MIN_SIZE = 31  # the smallest image whose features survive both max-poolings
LPIPS_FIRST_STEP = 0.01
"""The L2 size (inputs in [0, 1]) of ALMA's automatic first step for LPIPS, a tenth of the
paper's L2 step: LPIPS-minimal adversarials lie much closer, in the first step's units, than
L2-minimal ones (LPIPS sees few of the directions L2 sees), and a first step of 0.1 already
overshoots them. Measured on the colour zoo model with two sets of random AlexNet weights (README,
"Defaults"); being an L2 length, it does not depend on the scale of LPIPS's values, which changes
with the network's weights."""

WeightsLike = Union[str, "os.PathLike[str]", Mapping[str, Any], None]


def default_alexnet_path() -> str:
    """Where torchvision caches the AlexNet weights: ``$TORCH_HOME/hub/checkpoints/`` (TORCH_HOME
    defaults to ``$XDG_CACHE_HOME/torch``, ``~/.cache/torch``)."""
    cache = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    torch_home = os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(cache, "torch")))
    return os.path.join(torch_home, "hub", "checkpoints", ALEXNET_FILE)


def _missing_weights_message(path: str) -> str:
    return (
        f"AlexNet weights not found at {path!r}. LPIPS needs torchvision's ImageNet AlexNet "
        "weights, which this package cannot download. On a machine with internet access, run\n"
        "    python -c \"import torchvision; torchvision.models.alexnet(weights='IMAGENET1K_V1')\"\n"
        f"which saves them to {default_alexnet_path()} (the default location LPIPS() reads), or "
        f"download {ALEXNET_URL}; then copy the file there or pass its path: "
        "LPIPS(alexnet_weights='/path/to/alexnet-owt-7be5be79.pth'). Without PyTorch, convert "
        "it once to .npz with foolbox_alma.distances.lpips.convert_alexnet_weights."
    )


def load_alexnet_weights(path: Union[str, "os.PathLike[str]"]) -> Dict[str, np.ndarray]:
    """The convolution weights of torchvision's AlexNet from a ``.pth`` state dict (needs PyTorch)
    or a ``.npz`` archive with the same keys (``features.0.weight``, ``features.0.bias``, ...)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(_missing_weights_message(path))
    if path.endswith(".npz"):
        with np.load(path) as archive:
            return _check_alexnet_weights(dict(archive), path)
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"reading {path!r} (a PyTorch state dict) needs PyTorch; convert it once with "
            "foolbox_alma.distances.lpips.convert_alexnet_weights(src, 'alexnet.npz') where "
            "PyTorch is installed and pass the .npz file"
        ) from None
    state = torch.load(path, map_location="cpu", weights_only=True)
    return _check_alexnet_weights(state, path)


def _check_alexnet_weights(state: Mapping[str, Any], source: str) -> Dict[str, np.ndarray]:
    weights = {}
    for index, shape in ALEXNET_SHAPES.items():
        for kind, expected in (("weight", shape), ("bias", shape[:1])):
            key = f"features.{index}.{kind}"
            if key not in state:
                raise ValueError(f"{source}: not a torchvision AlexNet state dict (no {key!r})")
            value = state[key]
            if hasattr(value, "detach"):
                value = value.detach().cpu().numpy()
            value = np.asarray(value)
            if value.shape != expected:
                raise ValueError(f"{source}: {key} has shape {value.shape}, expected {expected}")
            weights[key] = value
    return weights


def convert_alexnet_weights(
    source: Union[str, "os.PathLike[str]"], destination: Union[str, "os.PathLike[str]"]
) -> str:
    """Save the convolution weights of a torchvision AlexNet ``.pth`` file as a ``.npz`` archive
    that LPIPS reads without PyTorch (for TensorFlow- or JAX-only installs). Returns the path."""
    destination = os.fspath(destination)
    if not destination.endswith(".npz"):
        destination += ".npz"
    weights = load_alexnet_weights(source)
    arrays = {k: v.astype(np.float32) for k, v in weights.items()}
    np.savez(destination, allow_pickle=False, **arrays)
    return destination


def load_linear_weights() -> Tuple[np.ndarray, ...]:
    """The LPIPS v0.1 per-channel weights of the five AlexNet layers (64, 192, 384, 256, 256)."""
    with np.load(LINEAR_WEIGHTS_FILE) as archive:
        return tuple(archive[f"lin{i}"] for i in range(len(CONVOLUTIONS)))


class _Constants:
    """The network's weights as tensors of one backend, dtype and device, in its layout."""

    def __init__(self, like: ep.Tensor, alexnet: Mapping[str, np.ndarray]):
        channels_last = _backend.channels_last(like)

        def per_channel(values: Any) -> ep.Tensor:
            values = np.asarray(values, dtype=np.float64)
            shape = (1, 1, 1, -1) if channels_last else (1, -1, 1, 1)
            return _backend.constant(like, values.reshape(shape))

        self.kernels = [
            _backend.conv_kernel(like, alexnet[f"features.{i}.weight"]) for i, _, _ in CONVOLUTIONS
        ]
        self.biases = [per_channel(alexnet[f"features.{i}.bias"]) for i, _, _ in CONVOLUTIONS]
        self.linear = [per_channel(w) for w in load_linear_weights()]
        # (2 x - 1 - shift) / scale for x in [0, 1]
        self.gain = per_channel([2 / s for s in SCALE])
        self.offset = per_channel([(-1 - t) / s for t, s in zip(SHIFT, SCALE)])


def _safe_sqrt(t: ep.Tensor) -> ep.Tensor:
    positive = t > 0
    return ep.where(positive, ep.sqrt(ep.where(positive, t, ep.ones_like(t))), ep.zeros_like(t))


def to_network_layout(images: ep.Tensor, channel_axis: int) -> ep.Tensor:
    """3-channel images in the backend's convolution layout (gray images repeated)."""
    count = images.shape[channel_axis]
    if count not in (1, 3):
        raise ValueError(
            f"LPIPS measures RGB (3 channels) or gray (1 channel) images; got {count} channels "
            f"along axis {channel_axis} of a batch of shape {tuple(images.shape)} (give "
            "channel_axis if that is not the channel axis)"
        )
    spatial = tuple(a for a in (1, 2, 3) if a != channel_axis)
    last = _backend.channels_last(images)
    images = images.transpose((0, *spatial, channel_axis) if last else (0, channel_axis, *spatial))
    height, width = images.shape[1:3] if last else images.shape[2:4]
    check_image_size("LPIPS (AlexNet)", height, width, MIN_SIZE)
    if count == 1:
        images = ep.concatenate([images] * 3, axis=-1 if last else 1)
    return images


def lpips_features(images: ep.Tensor, constants: _Constants) -> Tuple[ep.Tensor, ...]:
    """The five ReLU outputs of AlexNet for images in [0, 1] in the backend's layout."""
    h = images * constants.gain + constants.offset
    features = []
    for (index, stride, padding), kernel, bias in zip(
        CONVOLUTIONS, constants.kernels, constants.biases
    ):
        if index in POOL_BEFORE:
            h = _backend.max_pool2d(h, 3, 2)
        h = _backend.relu(_backend.conv2d(h, kernel, stride, (padding, padding)) + bias)
        features.append(h)
    return tuple(features)


def lpips_distances(
    reference: ep.Tensor, perturbed: ep.Tensor, channel_axis: int, constants: _Constants
) -> ep.Tensor:
    """Per-sample LPIPS between images in [0, 1] (channels along ``channel_axis``)."""
    n = len(reference)
    both = ep.concatenate(
        [to_network_layout(reference, channel_axis), to_network_layout(perturbed, channel_axis)]
    )
    units = unit_features(lpips_features(both, constants))
    return weighted_distance([u[:n] for u in units], [u[n:] for u in units], constants)


def unit_features(features: Sequence[ep.Tensor]) -> List[ep.Tensor]:
    """Each layer's features normalised to unit length along the channels."""
    channel = -1 if _backend.channels_last(features[0]) else 1
    return [f / (_safe_sqrt((f**2).sum(axis=channel, keepdims=True)) + NORM_EPS) for f in features]


def weighted_distance(
    reference: Sequence[ep.Tensor], perturbed: Sequence[ep.Tensor], constants: _Constants
) -> ep.Tensor:
    """LPIPS from the unit features of both batches: squared differences weighted by the linear
    layers, averaged over space, summed over the layers."""
    channel = -1 if _backend.channels_last(reference[0]) else 1
    total: Optional[ep.Tensor] = None
    for unit_1, unit_2, linear in zip(reference, perturbed, constants.linear):
        squared = (unit_1 - unit_2) ** 2
        # the 1 x 1 linear layer, then the mean over the two spatial axes left
        term = (squared * linear).sum(axis=channel).mean(axis=(1, 2))
        total = term if total is None else total + term
    if total is None:
        raise ValueError("LPIPS needs at least one feature layer, the constants hold none")
    return total


class LPIPS(ImageDistance):
    """LPIPS distance with AlexNet and the v0.1 linear weights, as ``lpips.LPIPS(net="alex")``.

    Images are mapped from ``bounds`` (inside ALMA: the model's bounds) to [0, 1]; gray (1-channel)
    images are repeated to RGB. Images must be at least 31 x 31 pixels.

    Args:
        alexnet_weights: torchvision's ImageNet AlexNet weights: the path of its state dict
            (``alexnet-owt-7be5be79.pth``; reading it needs PyTorch), of a ``.npz`` archive with
            the same keys (:func:`convert_alexnet_weights`), or a mapping of those keys to arrays.
            None reads torchvision's cache file (:func:`default_alexnet_path`) at first use.
        channel_axis: The channel axis (None: the model's ``data_format`` inside an attack, else
            the one non-batch axis of size 3, or of size 1).
        bounds: The range of the inputs given to ``__call__`` and ``clip_perturbation``.
    """

    name = "lpips"
    init_lr_distance = AUTO
    auto_first_step = LPIPS_FIRST_STEP

    def __init__(
        self,
        alexnet_weights: WeightsLike = None,
        channel_axis: Optional[int] = None,
        *,
        bounds: BoundsLike = (0, 1),
    ):
        super().__init__(channel_axis, bounds=bounds)
        self._source = "torchvision cache" if alexnet_weights is None else alexnet_weights
        self._alexnet: Optional[Dict[str, np.ndarray]] = None
        if isinstance(alexnet_weights, Mapping):
            self._alexnet = _check_alexnet_weights(alexnet_weights, "alexnet_weights")
            self._source = "state dict"
        elif alexnet_weights is not None:
            self._alexnet = load_alexnet_weights(alexnet_weights)
            self._source = os.fspath(alexnet_weights)
        self._constants: Dict[Hashable, _Constants] = {}

    def __repr__(self) -> str:
        return (
            f"LPIPS(alexnet_weights={self._source!r}, channel_axis={self.channel_axis}, "
            f"bounds={self.bounds})"
        )

    @property
    def alexnet_weights(self) -> Dict[str, np.ndarray]:
        """The AlexNet weights (read from torchvision's cache at first use when not given)."""
        if self._alexnet is None:
            self._alexnet = load_alexnet_weights(default_alexnet_path())
        return self._alexnet

    def constants(self, like: ep.Tensor) -> _Constants:
        """The weights as tensors for ``like``'s backend, dtype and device (cached)."""
        key = _backend.cache_key(like)
        if key not in self._constants:
            self._constants[key] = _Constants(like, self.alexnet_weights)
        return self._constants[key]

    def image_distances(
        self, reference: ep.Tensor, perturbed: ep.Tensor, channel_axis: int
    ) -> ep.Tensor:
        return lpips_distances(reference, perturbed, channel_axis, self.constants(reference))

    def torch_kernel(self, channel_axis: int) -> _fast.Kernel:
        return _fast.torch_kernel("_torch_lpips", channel_axis, lpips=self)
