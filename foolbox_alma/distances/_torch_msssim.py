"""MS-SSIM on PyTorch with the reference's five scales and their statistics prepared once.

The same distance as :func:`.msssim.msssim_distances` (same pooling, blur and formulas in the same
order; values agree to float round-off, tested against it): the reference's downsampled planes
and their local means and variances are computed once per reference batch, each call blurs three
planes per scale (y, y^2, x y) instead of five, and autograd differentiates the perturbed half
only.
"""

from typing import Any, List, NamedTuple, Optional

import torch

from ._torch_ssim import C1, C2, blur, to_planes
from .msssim import FLOOR, SCALES, WEIGHTS, check_size


class Scale(NamedTuple):
    """The reference planes at one scale and their blurred statistics."""

    x: torch.Tensor
    mu_x: torch.Tensor
    mu_x2: torch.Tensor
    var_x: torch.Tensor


class Prepared(NamedTuple):
    scales: List[Scale]
    channel_axis: int


def downsample(planes: torch.Tensor) -> torch.Tensor:
    """2 x 2 average pooling of (M, H, W) planes, the last row (column) of an odd side averaged
    alone (the generic ``downsample``)."""
    if planes.shape[1] % 2:
        planes = torch.cat([planes, planes[:, -1:, :]], dim=1)
    if planes.shape[2] % 2:
        planes = torch.cat([planes, planes[:, :, -1:]], dim=2)
    m, height, width = planes.shape
    return planes.reshape(m, height // 2, 2, width // 2, 2).mean(dim=(2, 4))


def prepare(reference: torch.Tensor, channel_axis: int) -> Prepared:
    """The reference images' half of MS-SSIM (images in [0, 1])."""
    x = to_planes(reference.detach(), channel_axis)
    check_size(*x.shape[1:])
    scales = []
    for scale in range(SCALES):
        if scale:
            x = downsample(x)
        mu_x, xx = blur(torch.stack((x, x * x))).unbind(0)
        mu_x2 = mu_x**2
        scales.append(Scale(x, mu_x, mu_x2, xx - mu_x2))
    return Prepared(scales, channel_axis)


def safe_power(term: torch.Tensor, weight: float) -> torch.Tensor:
    """The generic ``safe_power``: ``max(term, 0) ** weight`` with its chord on [0, FLOOR]."""
    above = term > FLOOR
    power = torch.where(above, term, torch.ones_like(term)) ** weight
    chord = torch.where(term > 0, term, torch.zeros_like(term)) * FLOOR ** (weight - 1)
    return torch.where(above, power, chord)


def distances(prepared: Prepared, perturbed: torch.Tensor) -> Any:
    """Per-sample ``1 - MS-SSIM`` between the prepared reference and ``perturbed`` (images in
    [0, 1]), differentiable (by autograd) with respect to ``perturbed``."""
    axis = prepared.channel_axis
    y = to_planes(perturbed, axis)
    product: Optional[torch.Tensor] = None
    for scale, (weight, reference) in enumerate(zip(WEIGHTS, prepared.scales)):
        if scale:
            y = downsample(y)
        x, mu_x, mu_x2, var_x = reference
        mu_y, yy, xy = blur(torch.stack((y, y * y, x * y))).unbind(0)
        # the generic similarity_terms, in the same order
        mu_y2 = mu_y**2
        contrast_structure = (2 * (xy - mu_x * mu_y) + C2) / (var_x + (yy - mu_y2) + C2)
        if scale < SCALES - 1:
            term = contrast_structure.mean(dim=(1, 2))
        else:
            luminance = (2 * mu_x * mu_y + C1) / (mu_x2 + mu_y2 + C1)
            term = (luminance * contrast_structure).mean(dim=(1, 2))
        factor = safe_power(term, weight)
        product = factor if product is None else product * factor
    assert product is not None
    return 1 - product.reshape(perturbed.shape[0], perturbed.shape[axis]).mean(dim=-1)
