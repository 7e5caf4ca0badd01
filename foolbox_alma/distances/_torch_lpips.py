"""LPIPS on PyTorch with the reference's AlexNet features computed once per reference batch.

The generic code (:func:`.lpips.lpips_distances`) runs AlexNet on the reference and perturbed
images together, forward and backward, at every call; here the reference's unit features are
prepared once (ALMA measures every step against the same originals) and each call runs AlexNet
on the perturbed images only: half the forward pass, and a backward pass through half the batch.
The same EagerPy functions compute both (values equal up to the convolutions' round-off).
"""

from typing import Any, List, NamedTuple

import eagerpy as ep
import torch

from .lpips import LPIPS, lpips_features, to_network_layout, unit_features, weighted_distance


class Prepared(NamedTuple):
    """The reference images' unit features (one tensor per AlexNet layer)."""

    units: List[ep.Tensor]
    channel_axis: int
    lpips: LPIPS


def prepare(reference: torch.Tensor, channel_axis: int, lpips: LPIPS) -> Prepared:
    """The reference's half of LPIPS (images in [0, 1])."""
    x = ep.astensor(reference.detach())
    with torch.no_grad():
        features = lpips_features(to_network_layout(x, channel_axis), lpips.constants(x))
        return Prepared(unit_features(features), channel_axis, lpips)


def distances(prepared: Prepared, perturbed: torch.Tensor) -> Any:
    """Per-sample LPIPS between the prepared reference and ``perturbed`` (images in [0, 1])."""
    y = ep.astensor(perturbed)
    constants = prepared.lpips.constants(y)
    features = lpips_features(to_network_layout(y, prepared.channel_axis), constants)
    return weighted_distance(prepared.units, unit_features(features), constants).raw
