"""Model zoo: the MNIST SmallCNN of the ALMA paper, colour CNNs, a CIFAR-size ResNet-18 and an
ImageNet-size ResNet-50, each built in PyTorch, TensorFlow and JAX from one set of weights.

Example::

    from foolbox_alma import zoo
    fmodel = zoo.foolbox_model("pytorch")               # or "tensorflow", "jax"
    images, labels = zoo.heldout_for("pytorch", n=100)  # native tensors, the model's layout

One framework-neutral weight archive (``data/smallcnn.npz``, PyTorch ``state_dict`` names and
layouts, trained by ``scripts/train_smallcnn.py`` on MNIST t10k images 0..8999) feeds all three
builders; ``data/mnist_heldout.npz`` holds the held-out t10k images 9000..9999. The colour models
(``colour-cnn``, ``colour-cnn-b``: 3x32x32 inputs, ``scripts/train_colour_cnn.py``) are the same
network family trained on the same digits coloured by :func:`colour_mnist`; their held-out images
ship as ``data/colour-mnist*_heldout.npz``:

    fmodel = zoo.foolbox_model("jax", "colour-cnn")
    images, labels = zoo.heldout_for("jax", n=100, model="colour-cnn")

``resnet18-cifar`` (:mod:`.resnet`) is the standard CIFAR ResNet-18 (11.2M parameters) on the same
colour-MNIST images, for measuring what an attack costs on a real-size network; its kernels are
generated from a seed and only the trained parts ship (:func:`.resnet.load_weights`).
``resnet50-imagenet`` (:mod:`.resnet50`) is torchvision's ResNet-50 (3x224x224, 25.6M parameters)
with seeded random weights and BatchNorm statistics calibrated on Foolbox's 20 ImageNet samples:
for what an attack costs at ImageNet size and for distances that need large images (MS-SSIM), not
for robustness; its data are those 20 images labelled with its own predictions::

    fmodel = zoo.foolbox_model("tensorflow", "resnet50-imagenet")
    images, labels = zoo.heldout_for("tensorflow", n=4, model="resnet50-imagenet")

Each name of :data:`ARCHITECTURES` works with every function here (:mod:`.registry` hands it to
its family).

Importing this package imports no deep-learning framework; each builder imports its own.
"""

from ._common import DEFAULT_DATA_FORMAT, weights_sha256
from .colour_mnist import colour_mnist
from .registry import (
    ARCHITECTURES,
    HELDOUT_DATA,
    foolbox_model,
    heldout_for,
    load_heldout,
    load_weights,
    weights_info,
)
from .resnet import resnet18_apply, resnet18_jax, resnet18_tensorflow, resnet18_torch
from .resnet50 import resnet50_apply, resnet50_jax, resnet50_tensorflow, resnet50_torch
from .smallcnn import (
    PARAMETER_SHAPES,
    Architecture,
    architecture,
    jax_params,
    load_mnist_heldout,
    parameter_shapes,
    smallcnn_apply,
    smallcnn_jax,
    smallcnn_tensorflow,
    smallcnn_torch,
)

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_DATA_FORMAT",
    "HELDOUT_DATA",
    "PARAMETER_SHAPES",
    "Architecture",
    "architecture",
    "colour_mnist",
    "foolbox_model",
    "heldout_for",
    "jax_params",
    "load_heldout",
    "load_mnist_heldout",
    "load_weights",
    "parameter_shapes",
    "resnet18_apply",
    "resnet18_jax",
    "resnet18_tensorflow",
    "resnet18_torch",
    "resnet50_apply",
    "resnet50_jax",
    "resnet50_tensorflow",
    "resnet50_torch",
    "smallcnn_apply",
    "smallcnn_jax",
    "smallcnn_tensorflow",
    "smallcnn_torch",
    "weights_info",
    "weights_sha256",
]
