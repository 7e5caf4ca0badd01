"""SSIM on PyTorch with the reference's statistics prepared once and a closed-form gradient.

The same distance as :func:`.ssim.ssim_distances` (same blur, same formulas in the same order:
values agree to float round-off, tested against it and scikit-image), for eager PyTorch:

* :func:`prepare` blurs the reference planes once (their mean and second moment); each call
  blurs three planes (y, y^2, x y) instead of five.
* The gradient with respect to the perturbed images is the closed form of Wang and Simoncelli
  (``d SSIM / d y = blur^T(d/d mu_y) + 2 y blur^T(d/d E[y^2]) + x blur^T(d/d E[xy])``), computed
  in the forward pass and handed to autograd by :class:`_WithGradient`: three transposed blurs and
  a dozen elementwise kernels, instead of autograd's backward of the generic code.
"""

from typing import Dict, Hashable, NamedTuple, Tuple

import torch

from ._torch_ops import value_with_gradient
from .ssim import K1, K2, WINDOW_SIZE, check_size, gaussian_window

C1, C2 = K1**2, K2**2  # data range 1


class Prepared(NamedTuple):
    """The reference planes (M, H, W) and their blurred statistics (M, H - 10, W - 10)."""

    x: torch.Tensor
    mu_x: torch.Tensor
    two_mu_x: torch.Tensor  # 2 mu_x (the generic code's first product)
    mu_x2: torch.Tensor  # mu_x^2
    var_x: torch.Tensor
    channel_axis: int


_BANDS: Dict[Hashable, torch.Tensor] = {}


def _band(like: torch.Tensor, size: int) -> torch.Tensor:
    """(size, size - 10): the product of a row of ``size`` pixels with it is the row's valid
    Gaussian blur (the generic code's banded matrix; cached per dtype and device)."""
    key = (like.dtype, like.device, size)
    if key not in _BANDS:
        window = torch.as_tensor(gaussian_window(), dtype=like.dtype, device=like.device)
        band = torch.zeros(size, size - WINDOW_SIZE + 1, dtype=like.dtype, device=like.device)
        for start in range(band.shape[1]):
            band[start : start + WINDOW_SIZE, start] = window
        _BANDS[key] = band
    return _BANDS[key]


def blur(planes: torch.Tensor) -> torch.Tensor:
    """Valid Gaussian blur of (..., H, W) planes: (..., H - 10, W - 10), as the generic
    ``_valid_blur`` (two products with banded matrices)."""
    height, width = planes.shape[-2:]
    rows = torch.matmul(planes, _band(planes, width))
    return torch.matmul(_band(planes, height).T, rows)


def blur_transposed(maps: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The adjoint of :func:`blur`: (..., H - 10, W - 10) maps to (..., H, W)."""
    rows = torch.matmul(_band(maps, height), maps)
    return torch.matmul(rows, _band(maps, width).T)


def to_planes(images: torch.Tensor, channel_axis: int) -> torch.Tensor:
    """(N * C, H, W) planes of a 4-d batch with channels along ``channel_axis``."""
    spatial = [a for a in (1, 2, 3) if a != channel_axis]
    images = images.permute(0, channel_axis, *spatial)
    return images.reshape((-1,) + images.shape[2:])


def prepare(reference: torch.Tensor, channel_axis: int) -> Prepared:
    """The reference images' half of SSIM: their local means and variances (images in [0, 1])."""
    x = to_planes(reference.detach(), channel_axis)
    check_size(*x.shape[1:])
    mu_x, xx = blur(torch.stack((x, x * x))).unbind(0)
    mu_x2 = mu_x**2
    return Prepared(x, mu_x, 2 * mu_x, mu_x2, xx - mu_x2, channel_axis)


def distances(prepared: Prepared, perturbed: torch.Tensor) -> torch.Tensor:
    """Per-sample ``1 - SSIM`` between the prepared reference and ``perturbed`` (images in
    [0, 1]), differentiable with respect to ``perturbed``."""
    return value_with_gradient(_forward, prepared, perturbed)


def _forward(
    prepared: Prepared, perturbed: torch.Tensor, need_grad: bool
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-sample distances and (when ``need_grad``) their gradient w.r.t. ``perturbed``."""
    x, mu_x, two_mu_x, mu_x2, var_x, axis = prepared
    y = to_planes(perturbed.detach(), axis)
    planes = torch.empty((3,) + y.shape, dtype=y.dtype, device=y.device)
    planes[0].copy_(y)
    torch.mul(y, y, out=planes[1])
    torch.mul(x, y, out=planes[2])
    mu_y, yy, xy = blur(planes).unbind(0)
    # the generic similarity_terms, in the same order
    mu_y2 = mu_y * mu_y
    b_1 = (mu_x2 + mu_y2).add_(C1)
    b_2 = (yy - mu_y2).add_(var_x).add_(C2)
    luminance = (two_mu_x * mu_y).add_(C1).div_(b_1)
    contrast_structure = (xy - mu_x * mu_y).mul_(2).add_(C2).div_(b_2)
    similarity = (luminance * contrast_structure).mean(dim=(1, 2))
    n, channels = perturbed.shape[0], perturbed.shape[axis]
    value = 1 - similarity.reshape(n, channels).mean(dim=-1)
    if not need_grad:
        return value, value
    # d value / d (mu_y, E[y^2], E[xy]) at each pixel, each weighted by -1 / (C H' W'):
    # d/d mu_y = 2 [cs (mu_x - mu_y l) / b_1 + l / b_2 (mu_y cs - mu_x)],
    # d/d E[y^2] = -l cs / b_2, d/d E[xy] = 2 l / b_2
    weight = -1 / (channels * mu_y.shape[1] * mu_y.shape[2])
    maps = torch.empty_like(planes[:, :, : mu_y.shape[1], : mu_y.shape[2]])
    l_over_b2 = luminance / b_2
    g_mu_y = torch.addcmul(mu_x, mu_y, luminance, value=-1).mul_(contrast_structure).div_(b_1)
    g_mu_y.add_(torch.addcmul(-mu_x, mu_y, contrast_structure).mul_(l_over_b2))
    torch.mul(g_mu_y, 2 * weight, out=maps[0])
    torch.mul(l_over_b2, contrast_structure, out=maps[1]).mul_(-weight)
    torch.mul(l_over_b2, 2 * weight, out=maps[2])
    height, width = y.shape[1:]
    back = blur_transposed(maps, height, width)
    grad_planes = torch.addcmul(back[0], y, back[1], value=2).addcmul_(x, back[2])
    spatial = [a for a in (1, 2, 3) if a != axis]
    shape = perturbed.permute(0, axis, *spatial).shape
    order = [0, 0, 0, 0]
    for position, source in enumerate((0, axis, *spatial)):
        order[source] = position
    return value, grad_planes.reshape(shape).permute(*order)
