"""Model zoo: the MNIST SmallCNN of the ALMA paper with shipped weights, in PyTorch, TF and JAX.

    from foolbox_alma import zoo
    fmodel = zoo.foolbox_model("pytorch")               # or "tensorflow", "jax"
    images, labels = zoo.heldout_for("pytorch", n=100)  # native tensors, the model's layout

One framework-neutral weight archive (``data/smallcnn.npz``, PyTorch ``state_dict`` names and
layouts, trained by ``scripts/train_smallcnn.py`` on MNIST t10k images 0..8999) feeds all three
builders; ``data/mnist_heldout.npz`` holds the held-out t10k images 9000..9999. Importing this
package imports no deep-learning framework; each builder imports its own.
"""

from .smallcnn import (
    ARCHITECTURES,
    DEFAULT_DATA_FORMAT,
    PARAMETER_SHAPES,
    foolbox_model,
    heldout_for,
    jax_params,
    load_mnist_heldout,
    load_weights,
    smallcnn_apply,
    smallcnn_jax,
    smallcnn_tensorflow,
    smallcnn_torch,
    weights_info,
    weights_sha256,
)

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_DATA_FORMAT",
    "PARAMETER_SHAPES",
    "foolbox_model",
    "heldout_for",
    "jax_params",
    "load_mnist_heldout",
    "load_weights",
    "smallcnn_apply",
    "smallcnn_jax",
    "smallcnn_tensorflow",
    "smallcnn_torch",
    "weights_info",
    "weights_sha256",
]
