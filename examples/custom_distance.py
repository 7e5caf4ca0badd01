"""A distance of one's own: L2 in YCbCr with the colour (chroma) differences weighted down.

The eye resolves changes of brightness better than changes of colour (JPEG keeps a quarter of the
chroma samples for that reason). This distance measures the perturbation after the ITU-R BT.601
conversion to YCbCr (full range: Y in [0, 1], Cb and Cr in [-0.5, 0.5]), with the chroma planes
weighted by ``chroma_weight``:

    D(x, x~) = sqrt(||dY||^2 + chroma_weight^2 (||dCb||^2 + ||dCr||^2))

Subclassing ``ImageDistance`` gives the mapping from the model's bounds to [0, 1], the channel axis
(from the model's ``data_format``), Foolbox's ``Distance`` interface and ``clip_perturbation``;
only ``image_distances`` is written here, with ``ep.`` operations, so it runs on PyTorch,
TensorFlow and JAX. ALMA's default first step (``init_lr_distance="auto"``) needs no value in this
distance's units.

python examples/custom_distance.py
"""

from typing import Optional

import eagerpy as ep

from foolbox_alma.distances import ImageDistance

# ITU-R BT.601: the rows give Y, Cb, Cr from R, G, B (colour-science's RGB_to_YCbCr, full range)
BT601 = (
    (0.299, 0.587, 0.114),
    (-0.168735892, -0.331264108, 0.5),
    (0.5, -0.418687589, -0.081312411),
)


class YCbCrL2(ImageDistance):
    """L2 norm of the perturbation in YCbCr (BT.601), chroma weighted by ``chroma_weight``."""

    name = "ycbcr-l2"

    def __init__(self, chroma_weight: float = 0.5, channel_axis: Optional[int] = None):
        super().__init__(channel_axis)
        self.chroma_weight = chroma_weight

    def __repr__(self) -> str:
        return f"YCbCrL2(chroma_weight={self.chroma_weight}, channel_axis={self.channel_axis})"

    def image_distances(
        self, reference: ep.Tensor, perturbed: ep.Tensor, channel_axis: int
    ) -> ep.Tensor:
        delta = perturbed - reference
        planes = [delta[(slice(None),) * channel_axis + (c,)] for c in range(3)]  # R, G, B
        total = None
        for row, weight in zip(BT601, (1.0, self.chroma_weight, self.chroma_weight)):
            plane = sum(k * p for k, p in zip(row, planes))
            term = weight**2 * plane.square().reshape((len(delta), -1)).sum(axis=-1)
            total = term if total is None else total + term
        return total.sqrt()


if __name__ == "__main__":
    import numpy as np
    import torch

    from foolbox_alma import ALMA, zoo

    torch.manual_seed(0)
    fmodel = zoo.foolbox_model("pytorch", "colour-cnn")
    images, labels = (torch.from_numpy(a) for a in zoo.load_heldout("colour-cnn", 20))
    distance = YCbCrL2()
    for attack in (ALMA(distance="l2", steps=100), ALMA(distance=distance, steps=100)):
        adv = attack.run(fmodel, images, labels)
        success = (fmodel(adv).argmax(-1) != labels).float().mean().item()
        median = np.median(distance(images, adv).numpy())
        print(
            f"ALMA minimising {attack.distance.name}: success {success:.0%}, "
            f"median {distance.name} {median:.4f}"
        )
