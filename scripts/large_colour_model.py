"""A large-image colour model for the perceptual table, and its data.

MS-SSIM needs images of at least 161 x 161 pixels. ``build()`` is the zoo's ``colour-cnn``
(trained, 98.7% on held-out colour-MNIST) behind a 6 x 6 average pooling, so it takes
3 x 192 x 192 images in [0, 1]; ``write_data(path, n)`` writes the first ``n`` of its held-out
images upsampled 6 times (nearest), as an ``.npz`` for ``--data``. Its decision boundaries are
those of a trained network, so the minimal adversarials of each distance are measurable at this
size, unlike those of the seeded random ``resnet50-imagenet``, whose boundaries lie so close to
its images that every attack's MS-SSIM and SSIM land within float32 rounding of 0. What it cannot
show: how attacks fare on a network trained at this resolution (this one sees 6 x 6 block means,
so only those matter to it).

    foolbox-alma bench --model scripts/large_colour_model.py:build --data large.npz ...
    (scripts/bench_perceptual.py --model large-colour writes the data and runs it)
"""

from pathlib import Path
from typing import Any, Union

import numpy as np

FACTOR = 6
"""Upsampling factor: 32 x 32 images become 192 x 192."""


def build() -> Any:
    """The Foolbox model (PyTorch): 6 x 6 average pooling, then colour-cnn."""
    import foolbox as fb
    import torch

    from foolbox_alma import zoo
    from foolbox_alma.counting import torch_module_of

    small = zoo.foolbox_model("pytorch", "colour-cnn")
    network = torch.nn.Sequential(torch.nn.AvgPool2d(FACTOR), torch_module_of(small)).eval()
    return fb.PyTorchModel(network, bounds=small.bounds, device="cpu")


def write_data(path: Union[str, Path], n: int) -> Path:
    """The first ``n`` held-out colour-MNIST images upsampled ``FACTOR`` times, with labels."""
    from foolbox_alma import zoo

    x, y = zoo.load_heldout("colour-cnn", n)
    large = np.repeat(np.repeat(x, FACTOR, axis=2), FACTOR, axis=3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=large, y=y)
    return path
