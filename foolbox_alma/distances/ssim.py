"""SSIM distance: one minus the mean structural similarity of two images.

SSIM (Wang, Bovik, Sheikh and Simoncelli, IEEE TIP 2004) with the usual settings: an 11 x 11
Gaussian window of standard deviation 1.5, K1 = 0.01, K2 = 0.03, data range 1, computed on each
channel and averaged over the valid pixels (those whose window lies inside the image) and the
channels. These are scikit-image's ``structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1)`` values: scikit-image filters with reflected borders and
then crops a 5-pixel border, which leaves exactly the valid pixels. The Gaussian blur is separable:
two 1-d blurs per image, written as matrix products (plain EagerPy).
"""

from typing import Callable, Dict, Hashable, Tuple

import eagerpy as ep
import numpy as np

from . import _backend
from .base import AUTO, ImageDistance, check_image_size

WINDOW_SIZE = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03


def gaussian_window(size: int = WINDOW_SIZE, sigma: float = SIGMA) -> np.ndarray:
    """The normalised 1-d Gaussian window (as ``scipy.ndimage.gaussian_filter`` with radius 5)."""
    coords = np.arange(size, dtype=np.float64) - (size - 1) / 2
    window = np.exp(-(coords**2) / (2 * sigma**2))
    return window / window.sum()


_BANDS: Dict[Hashable, ep.Tensor] = {}


def _band(like: ep.Tensor, size: int) -> ep.Tensor:
    """(size, size - 10) matrix whose product with a row of ``size`` pixels is the row's valid
    Gaussian blur."""
    key = (_backend.cache_key(like), size)
    if key not in _BANDS:
        window = gaussian_window()
        band = np.zeros((size, size - WINDOW_SIZE + 1))
        for start in range(band.shape[1]):
            band[start : start + WINDOW_SIZE, start] = window
        _BANDS[key] = _backend.constant(like, band)
    return _BANDS[key]


def _valid_blur(planes: ep.Tensor) -> ep.Tensor:
    """Gaussian blur of (M, H, W) planes, valid part only: (M, H - 10, W - 10).

    Two products with banded matrices: on CPUs they beat the frameworks' single-channel
    convolutions at every image size tried (32 x 32 to 224 x 224, forward and backward).
    """
    m, height, width = planes.shape
    rows = planes.reshape((-1, width)).matmul(_band(planes, width))
    columns = rows.reshape((m, height, -1)).transpose((0, 2, 1)).reshape((-1, height))
    blurred = columns.matmul(_band(planes, height)).reshape((m, width - WINDOW_SIZE + 1, -1))
    return blurred.transpose((0, 2, 1))


def to_planes(images: ep.Tensor, channel_axis: int) -> ep.Tensor:
    """(N * C, H, W) planes of a 4-d batch with channels along ``channel_axis``."""
    spatial = [a for a in (1, 2, 3) if a != channel_axis]
    images = images.transpose((0, channel_axis, *spatial))
    _, _, height, width = images.shape
    return images.reshape((-1, height, width))


def similarity_terms(x: ep.Tensor, y: ep.Tensor) -> Tuple[ep.Tensor, ep.Tensor]:
    """SSIM and its contrast-structure term, each averaged over the valid pixels, of (M, H, W)
    planes in [0, 1] (at least 11 x 11): two tensors of shape (M,)."""
    m = x.shape[0]
    # One blur for the five statistics: means, second moments, cross moment.
    stats = _valid_blur(ep.concatenate([x, y, x * x, y * y, x * y], axis=0))
    stats = stats.reshape((5, m) + stats.shape[1:])
    mu_x, mu_y, xx, yy, xy = (stats[i] for i in range(5))
    c1, c2 = K1**2, K2**2  # data range 1
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    contrast_structure = (2 * cov + c2) / (var_x + var_y + c2)
    similarity = luminance * contrast_structure
    return similarity.mean(axis=(1, 2)), contrast_structure.mean(axis=(1, 2))


def check_size(height: int, width: int) -> None:
    """An error for images smaller than the window."""
    check_image_size("SSIM", height, width, WINDOW_SIZE, "its window")


def planes_of(
    reference: ep.Tensor,
    perturbed: ep.Tensor,
    channel_axis: int,
    check_size: Callable[[int, int], None],
) -> Tuple[ep.Tensor, ep.Tensor, Tuple[int, int]]:
    """Both batches as (N * C, H, W) planes (:func:`to_planes`), their size checked by
    ``check_size``, and (N, C): the shape that per-plane values fold back to."""
    x, y = to_planes(reference, channel_axis), to_planes(perturbed, channel_axis)
    check_size(*x.shape[1:])
    return x, y, (reference.shape[0], reference.shape[channel_axis])


def ssim_per_channel(reference: ep.Tensor, perturbed: ep.Tensor, channel_axis: int) -> ep.Tensor:
    """Mean SSIM of each channel, shape (N, C), for images in [0, 1]."""
    x, y, per_channel = planes_of(reference, perturbed, channel_axis, check_size)
    similarity, _ = similarity_terms(x, y)
    return similarity.reshape(per_channel)


def ssim_distances(reference: ep.Tensor, perturbed: ep.Tensor, channel_axis: int) -> ep.Tensor:
    """Per-sample ``1 - SSIM`` (mean over pixels and channels) of images in [0, 1]."""
    return 1 - ssim_per_channel(reference, perturbed, channel_axis).mean(axis=-1)


class SSIM(ImageDistance):
    """SSIM distance: ``1 - SSIM(x, x~)``, SSIM averaged over the valid pixels and the channels.

    Images are mapped from ``bounds`` (inside ALMA: the model's bounds) to [0, 1]; any number of
    channels works. Images must be at least 11 x 11 pixels.

    Args:
        channel_axis: The channel axis (None: the model's ``data_format`` inside an attack, else
            the one non-batch axis of size 3, or of size 1).
        bounds: The range of the inputs given to ``__call__`` and ``clip_perturbation``.
    """

    name = "ssim"
    _torch_module = "_torch_ssim"
    init_lr_distance = AUTO
    """The paper's L2 first step, SSIM measured in its units (``ALMA(init_lr_distance="auto")``):
    on the colour zoo model, smaller medians than the value calibrated before in SSIM's units
    (1e-3, ten times the paper's 1e-4), which is still accepted explicitly."""

    def image_distances(
        self, reference: ep.Tensor, perturbed: ep.Tensor, channel_axis: int
    ) -> ep.Tensor:
        return ssim_distances(reference, perturbed, channel_axis)


ssim = SSIM()
