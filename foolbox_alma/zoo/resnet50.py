"""``resnet50-imagenet``: torchvision's ResNet-50 at ImageNet size, seeded random weights, built
identically in PyTorch, TensorFlow and JAX (the builders of :mod:`.resnet`).

What it is for. ALMA costs one forward and one backward of the model per step plus the distance's
own cost; this model measures that on a network of the size users attack (224x224 inputs, 25.6M
parameters, 4.1 GFLOPs per image forward), in every framework; and it takes the images MS-SSIM
needs (at least 161x161: five scales of 11x11 windows). With random weights it **can** show: what an
attack costs over the model's own forward and backward, how the first step-size rule behaves on a
deep network at this image size, MS-SSIM (and every other distance) at the size it needs, and
whether the three frameworks agree on a deep network. It **cannot** show anything about the
robustness of a real ImageNet model: its classes mean nothing, its decision boundaries are those
of random features, and the distances an attack reaches on it say nothing about a trained
ResNet-50's.

Architecture (``torchvision.models.resnet50``, so torchvision's ``state_dict`` names and shapes:
its own checkpoints load into :func:`resnet50_torch` as they are)::

    (x - mean) / std, ImageNet's mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225)
    conv7x7 3->64 (stride 2, pad 3, no bias), BN, ReLU, max-pool 3x3 (stride 2, pad 1)    56x56
    layer1..layer4: 3/4/6/3 bottlenecks, widths 64/128/256/512, outputs 4x wider, strides 1/2/2/2
        bottleneck: conv1x1, BN, ReLU, conv3x3 (stride s, pad 1), BN, ReLU, conv1x1, BN,
                    + shortcut, ReLU (the stride on the 3x3: torchvision's "v1.5")
        shortcut: identity, or ``downsample``: conv1x1 (stride s) + BN where the shape changes
    global average pooling (7x7 -> 1), fc 2048->1000 (logits)

Inputs are ``(N, 3, 224, 224)`` in [0, 1] (bounds (0, 1)); the normalisation is inside the network,
the same ``x * (1 / std) + (-mean / std)`` in every framework, in buffers outside the
``state_dict``.

Weights: 25.6M parameters are generated, not shipped (``data/resnet50-imagenet.npz`` is 0.25 MB):

* **Seeded**: every convolution kernel and the ``fc`` weight, He-normal (std ``sqrt(2 / fan_in)``)
  from ``numpy.random.default_rng([seed, i])`` for the ``i``-th of them in forward order
  (:func:`.resnet.seeded_kernels`): the same float32 bytes on every machine; built once per process
  (about 1 s), read-only.
* **Shipped**: every BatchNorm's arrays (weight 1 and bias 0 as torchvision initialises them;
  running statistics calibrated on images) and the ``fc`` bias, written by
  ``scripts/make_resnet50_imagenet.py``: with the seeded kernels in place, one forward in float64
  of the 20 ImageNet sample images that ship inside Foolbox's wheel sets each BatchNorm's running
  mean and (biased) variance to those of its input over the 20 images, layer after layer, so that
  every BatchNorm's output has zero mean and unit variance on them and activations stay in range
  through the 50 layers. With a random ``fc`` and no bias the network then predicts one class for
  every image (the pooled features share a large common part, which a random readout maps to one
  class): the ``fc`` bias is set to ``-fc.weight @ mean feature`` of the 20 images, which centres
  their logits and leaves their differences, 16 distinct classes among the 20 images. The weight
  is the seeded one, unscaled: logits spread with standard deviation 0.64 and reach 6.9, top-2
  margins 0.003 to 1.6 (the minimal adversarial perturbation does not depend on the logits'
  scale, only on where the boundaries lie).

The boundaries of this random network lie close to the images: ALMA's L2 adversarials after 10
steps measure 0.006 to 0.024 (4 images), its MS-SSIM ones 7e-7 to 7e-6, that is 10 to 100 float32
steps of ``1 - MS-SSIM`` near 1. Comparisons of attacks in MS-SSIM on this model see that
resolution.

The archive's ``meta`` records the seed, how it was made, the date, the digest of the full
weights (checked when loading: a NumPy whose normal generator changed would otherwise give a
silently different network) and of the 20 decoded images.

Data (:func:`load_heldout`): the 20 sample images, ``foolbox/data/imagenet_XX_LABEL.jpg`` read at
run time from the installed Foolbox with Pillow and resized to 224x224 (bicubic, as
``foolbox.utils.samples`` does), labelled with this network's own predictions (stored in the
archive as ``heldout_labels``), so that every image is correctly classified and attacks have
something to do. They are not held out in the usual sense: the BatchNorm statistics and the ``fc``
bias were computed on these same images, and nothing was trained. Their ImageNet labels (the
``LABEL`` of the file names) are not used.

Framework imports happen inside the functions that need them: importing this module imports none.
"""

import functools
import hashlib
import importlib.resources
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from ._common import Weights, data_file, heldout_count, read_npz
from .resnet import (
    BN_STATISTICS,
    Conv,
    ResNetArchitecture,
    archive_meta,
    batch_norm_of,
    checked,
    foolbox_model_of,
    jax_params_of,
    jax_resnet,
    rebuilt_weights,
    residual_blocks,
    resnet_apply,
    tensorflow_resnet,
    torch_resnet,
)

NAME = "resnet50-imagenet"
IMAGE_SIZE = 224
CLASSES = 1000
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STAGES = ((3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2))
"""(bottlenecks, width, stride of the first one) of layer1..layer4."""
SCRIPT = "scripts/make_resnet50_imagenet.py"
LABELS_KEY = "heldout_labels"
"""The archive's array of the 20 images' labels (the network's own predictions)."""
HELDOUT_SIZE = 20
SAMPLE_PREFIX = "imagenet_"
"""Foolbox's sample files: ``foolbox/data/imagenet_<index, 2 digits>_<ImageNet label>.jpg``."""

RESNET50_IMAGENET = ResNetArchitecture(
    name=NAME,
    image_size=IMAGE_SIZE,
    stem=Conv("conv1", (64, 3, 7, 7), 2),
    max_pool=True,
    blocks=residual_blocks(64, STAGES, expansion=4, projection_name="downsample"),
    head="fc",
    classes=CLASSES,
    input_mean=IMAGENET_MEAN,
    input_std=IMAGENET_STD,
    seeded_head=True,
)

PARAMETER_SHAPES = RESNET50_IMAGENET.parameter_shapes()
SHIPPED_KEYS = tuple(
    [
        f"{batch_norm_of(conv.name)}.{statistic}"
        for conv in RESNET50_IMAGENET.convolutions()
        for statistic in BN_STATISTICS
    ]
    + ["fc.bias"]
)
"""The parameters the archive holds; the others are seeded."""


# --- weights --------------------------------------------------------------------------------------


def load_weights(*, path: Union[str, Path, None] = None) -> Dict[str, np.ndarray]:
    """The full float32 weights of ``resnet50-imagenet`` (torchvision ``state_dict`` names, OIHW
    kernels): the seeded kernels and ``fc`` weight, the archive's BatchNorms and ``fc`` bias.

    Args:
        path: an archive of the same layout (or a full ``state_dict`` as ``.npz``, e.g.
            torchvision's converted to NumPy) instead of the shipped one.

    Raises:
        ValueError: missing, unexpected or misshapen arrays; or full weights whose digest is not the
            one the archive records (the seeded kernels came out different here).
    """
    if path is None:
        return dict(_shipped_weights())
    arrays = read_npz(Path(path))
    arrays.pop(LABELS_KEY, None)
    return _rebuilt(arrays, str(path))


def _rebuilt(arrays: Dict[str, np.ndarray], label: str) -> Dict[str, np.ndarray]:
    return rebuilt_weights(arrays, label, RESNET50_IMAGENET, SCRIPT)


@functools.lru_cache(maxsize=1)
def _shipped_archive() -> Dict[str, np.ndarray]:
    return read_npz(data_file(f"{NAME}.npz"))


@functools.lru_cache(maxsize=1)
def _shipped_weights() -> Dict[str, np.ndarray]:
    arrays = {k: v for k, v in _shipped_archive().items() if k != LABELS_KEY}
    weights = _rebuilt(arrays, f"zoo weights {NAME!r}")
    for array in weights.values():
        array.flags.writeable = False
    return weights


def _weights_or_default(weights: Optional[Weights]) -> Dict[str, np.ndarray]:
    if weights is None:
        return load_weights()
    return checked(weights, "ResNet-50 weights", RESNET50_IMAGENET)


# --- data -----------------------------------------------------------------------------------------


def sample_files() -> List[Any]:
    """Foolbox's 20 ImageNet sample files (``Traversable``s, index order), from the installed
    package."""
    folder = importlib.resources.files("foolbox").joinpath("data")
    found = {f.name: f for f in folder.iterdir() if f.name.startswith(SAMPLE_PREFIX)}
    files = []
    for index in range(HELDOUT_SIZE):
        names = sorted(n for n in found if n.startswith(f"{SAMPLE_PREFIX}{index:02d}_"))
        if len(names) != 1:
            raise FileNotFoundError(
                f"Foolbox's sample image {SAMPLE_PREFIX}{index:02d}_*.jpg: found {names} in "
                f"{folder}; this model's data are Foolbox's 20 ImageNet samples"
            )
        files.append(found[names[0]])
    return files


def decode_samples() -> np.ndarray:
    """The 20 sample images as uint8 ``(20, 3, 224, 224)``, decoded now: RGB, resized with
    Pillow's bicubic filter (``foolbox.utils.samples``'s resize)."""
    from PIL import Image

    images = []
    for file in sample_files():
        with file.open("rb") as f, Image.open(f) as image:
            resized = image.convert("RGB").resize(
                (IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC
            )
            images.append(np.asarray(resized, dtype=np.uint8).transpose(2, 0, 1))
    return np.stack(images)


@functools.lru_cache(maxsize=1)
def sample_images() -> np.ndarray:
    """:func:`decode_samples`, read-only, once per process; a RuntimeWarning when the pixels are
    not those the archive's labels were made on (the digest in its ``meta``)."""
    images = decode_samples()
    recorded = archive_meta(_shipped_archive().get("meta")).get("images_sha256")
    if recorded is not None and images_sha256(images) != recorded:
        warnings.warn(
            f"{NAME}: Foolbox's sample images decode differently here (another Pillow or "
            f"libjpeg?) than when {SCRIPT} labelled them; an image whose top-2 logits are close "
            "may no longer be classified as its stored label",
            RuntimeWarning,
            stacklevel=2,
        )
    images.flags.writeable = False
    return images


def images_sha256(images: np.ndarray) -> str:
    """Digest of decoded uint8 images (ties the stored labels to the pixels they were made on)."""
    return hashlib.sha256(np.ascontiguousarray(images, dtype=np.uint8).tobytes()).hexdigest()


def heldout_labels() -> np.ndarray:
    """The network's own predictions on the 20 images, stored in the archive (int64)."""
    return _shipped_archive()[LABELS_KEY].astype(np.int64)


def load_heldout(n: Optional[int] = None, offset: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """The 20 sample images and the network's predictions on them (module docstring: they are
    the images the BatchNorms were calibrated on, not unseen ones).

    Args:
        n: how many images (all remaining after ``offset`` when None).
        offset: index of the first image (0..19).

    Returns:
        ``(images, labels)``: float32 ``(n, 3, 224, 224)`` in [0, 1] and int64 ``(n,)``.
    """
    n = heldout_count(n, offset, HELDOUT_SIZE, f"images of {NAME}")
    images = sample_images()[offset : offset + n].astype(np.float32) / np.float32(255)
    return images, heldout_labels()[offset : offset + n]


# --- the three builds -----------------------------------------------------------------------------


def resnet50_torch(weights: Optional[Weights] = None) -> Any:
    """The ResNet-50 as a ``torch.nn.Module`` in eval mode (BN on its running statistics), inputs
    ``(N, 3, 224, 224)`` in [0, 1] (normalised inside).

    ``weights`` (torchvision ``state_dict`` names, :data:`PARAMETER_SHAPES`) default to the zoo's;
    ``torchvision.models.resnet50(...).state_dict()`` converted to NumPy loads as it is.
    """
    return torch_resnet(RESNET50_IMAGENET, _weights_or_default(weights))


def resnet50_tensorflow(
    weights: Optional[Weights] = None, data_format: str = "channels_last"
) -> Any:
    """The ResNet-50 as a ``tf.keras.Model`` (BN layers frozen: inference mode whatever
    ``training`` says; the 7x7 stem, the stride-2 3x3s and the max-pooling padded explicitly, as
    PyTorch pads, not ``"same"``).

    Args:
        weights: ``state_dict``-layout parameters; the zoo's when None.
        data_format: ``"channels_last"`` for ``(N, 224, 224, 3)`` inputs or ``"channels_first"``
            for ``(N, 3, 224, 224)`` (transposed once at the input).
    """
    return tensorflow_resnet(RESNET50_IMAGENET, _weights_or_default(weights), data_format)


def jax_params(weights: Optional[Weights] = None) -> Dict[str, Any]:
    """Parameters of :func:`resnet50_apply`: OIHW kernels, each BN as its inference-mode
    ``scale``/``shift``, ``fc``; ``jax.numpy`` arrays."""
    return jax_params_of(RESNET50_IMAGENET, _weights_or_default(weights))


def resnet50_apply(
    params: Mapping[str, Any], images: Any, data_format: str = "channels_first"
) -> Any:
    """Pure JAX ResNet-50: ``params`` (:func:`jax_params`), ``images`` in [0, 1] -> logits
    ``(N, 1000)``; ``jax.jit``-able (``data_format`` static)."""
    return resnet_apply(RESNET50_IMAGENET, params, images, data_format)


def resnet50_jax(
    weights: Optional[Weights] = None, data_format: str = "channels_first"
) -> Callable[[Any], Any]:
    """The ResNet-50 as a jitted JAX function ``images -> logits`` (what ``fb.JAXModel`` takes);
    ``fn.params`` and ``fn.apply`` expose the two halves. Inputs ``(N, 3, 224, 224)`` by default."""
    return jax_resnet(RESNET50_IMAGENET, _weights_or_default(weights), data_format)


def foolbox_model(framework: str, data_format: str, weights: Optional[Weights] = None) -> Any:
    """A Foolbox model (bounds (0, 1)) of the ResNet-50 in the canonical ``framework``, with a
    checked ``data_format`` (:func:`foolbox_alma.zoo.foolbox_model` is the public entry)."""
    params = _weights_or_default(weights)
    return foolbox_model_of(RESNET50_IMAGENET, framework, data_format, params)
