"""MS-SSIM distance: one minus the multi-scale structural similarity of two images.

MS-SSIM (Wang, Simoncelli and Bovik, Asilomar 2003) as adv_lib's ``ms_ssim_loss`` computes it: at
five scales, each a 2 x 2 average pooling of the previous one, the SSIM machinery of
:mod:`.ssim` (11 x 11 Gaussian window of standard deviation 1.5, K1 = 0.01, K2 = 0.03, data range 1,
valid pixels only) gives per channel the mean contrast-structure term ``cs_s`` at scales 0 to 3 and
the mean SSIM ``ssim_4`` at the coarsest scale; per channel

    MS-SSIM = cs_0^w0 * cs_1^w1 * cs_2^w2 * cs_3^w3 * ssim_4^w4,
    w = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333),

averaged over the channels. The pooling of an odd side averages the last pixel alone (PyTorch's
``avg_pool2d(kernel_size=2, ceil_mode=True)``, adv_lib's choice).

The terms can be negative (images anti-correlated at some scale), where adv_lib's fractional powers
are NaN: each factor ``t^w`` here is ``max(t, 0)^w`` (pytorch-msssim's ReLU), so MS-SSIM is 0 there,
and the power's infinite slope at 0 is replaced by its chord on [0, FLOOR] to keep gradients finite.
"""

import eagerpy as ep

from .base import AUTO, ImageDistance, check_image_size
from .ssim import WINDOW_SIZE, planes_of, similarity_terms

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
SCALES = len(WEIGHTS)
MIN_SIZE = (WINDOW_SIZE - 1) * 2 ** (SCALES - 1) + 1
"""Smallest side (161) whose coarsest scale, ceil(side / 16), still holds the 11 x 11 window."""
FLOOR = 1e-12
"""Below this value a factor ``t^w`` is its chord ``t * FLOOR^(w - 1)``: finite slope at 0."""


def downsample(planes: ep.Tensor) -> ep.Tensor:
    """2 x 2 average pooling of (M, H, W) planes to (M, ceil(H / 2), ceil(W / 2)); the last row
    (column) of an odd side is averaged alone, as by ``avg_pool2d(2, ceil_mode=True)``."""
    if planes.shape[1] % 2:  # a repeated row makes that pair's mean the row itself
        planes = ep.concatenate([planes, planes[:, -1:, :]], axis=1)
    if planes.shape[2] % 2:
        planes = ep.concatenate([planes, planes[:, :, -1:]], axis=2)
    m, height, width = planes.shape
    return planes.reshape((m, height // 2, 2, width // 2, 2)).mean(axis=(2, 4))


def safe_power(term: ep.Tensor, weight: float) -> ep.Tensor:
    """``max(term, 0) ** weight`` for 0 < weight < 1, with finite gradients everywhere.

    Above FLOOR: ``term ** weight`` (adv_lib's and pytorch-msssim's value and gradient). On
    [0, FLOOR]: the chord ``term * FLOOR ** (weight - 1)``, which meets the power at both ends (so
    the value is continuous) and has the finite slope ``FLOOR ** (weight - 1)`` instead of the
    power's infinite one at 0. Below 0: 0 with a zero gradient (pytorch-msssim's ReLU; adv_lib's
    value is NaN there).
    """
    above = term > FLOOR
    # The power is only evaluated where it is finite (1 elsewhere), so its gradient never meets
    # an infinite factor that ``where`` would multiply by 0 into a NaN.
    power = ep.where(above, term, ep.ones_like(term)) ** weight
    chord = ep.where(term > 0, term, ep.zeros_like(term)) * FLOOR ** (weight - 1)
    return ep.where(above, power, chord)


def check_size(height: int, width: int) -> None:
    """An error for images too small for five scales."""
    check_image_size(
        "MS-SSIM",
        height,
        width,
        MIN_SIZE,
        f"its {SCALES} scales halve the size {SCALES - 1} times and the coarsest must hold the "
        f"{WINDOW_SIZE} x {WINDOW_SIZE} window",
    )


def msssim_per_channel(reference: ep.Tensor, perturbed: ep.Tensor, channel_axis: int) -> ep.Tensor:
    """MS-SSIM of each channel, shape (N, C), for images in [0, 1] of at least 161 x 161 pixels."""
    x, y, per_channel = planes_of(reference, perturbed, channel_axis, check_size)
    product = None
    for scale, weight in enumerate(WEIGHTS):
        if scale:
            x, y = downsample(x), downsample(y)
        similarity, contrast_structure = similarity_terms(x, y)
        term = similarity if scale == SCALES - 1 else contrast_structure
        # Explicit products: a framework's prod has a NaN gradient where a factor is 0.
        factor = safe_power(term, weight)
        product = factor if product is None else product * factor
    assert product is not None
    return product.reshape(per_channel)


def msssim_distances(reference: ep.Tensor, perturbed: ep.Tensor, channel_axis: int) -> ep.Tensor:
    """Per-sample ``1 - MS-SSIM`` (mean over channels) of images in [0, 1]."""
    return 1 - msssim_per_channel(reference, perturbed, channel_axis).mean(axis=-1)


class MSSSIM(ImageDistance):
    """MS-SSIM distance: ``1 - MS-SSIM(x, x~)``, five scales, averaged over the channels.

    adv_lib's ``ms_ssim_loss`` wherever that is finite (its 5 weights, 11 x 11 Gaussian window of
    standard deviation 1.5, K1 = 0.01, K2 = 0.03, 2 x 2 average pooling with ``ceil_mode``): see
    the module docstring. Where a scale's mean contrast-structure term (or the coarsest scale's
    mean SSIM) is negative, adv_lib's value is NaN; here that factor counts 0 (pytorch-msssim's
    ReLU), so the distance is 1 and its gradient 0 (that factor's sign decides, and the others are
    multiplied by 0). The power ``t^w`` has an infinite slope at ``t = 0``: on [0, 1e-12] it is
    replaced by its chord (slope ``1e-12^(w - 1)``, at most 2.9e11), the only place where the value
    differs from adv_lib's finite one. Value and gradient are finite everywhere in the box.

    Images are mapped from ``bounds`` (inside ALMA: the model's bounds) to [0, 1]; any number of
    channels works. Images must be at least 161 x 161 pixels (adv_lib asks for 177: it rejects a
    coarsest scale of exactly 11 x 11).

    ALMA's first step is the automatic one (``init_lr_distance="auto"``, as SSIM's): the paper
    has no MS-SSIM setting, and a value in MS-SSIM's units would have to be calibrated on large
    images.

    Args:
        channel_axis: The channel axis (None: the model's ``data_format`` inside an attack, else
            the one non-batch axis of size 3, or of size 1).
        bounds: The range of the inputs given to ``__call__`` and ``clip_perturbation``.
    """

    name = "msssim"
    init_lr_distance = AUTO
    _torch_module = "_torch_msssim"

    def image_distances(
        self, reference: ep.Tensor, perturbed: ep.Tensor, channel_axis: int
    ) -> ep.Tensor:
        return msssim_distances(reference, perturbed, channel_axis)


msssim = MSSSIM()
