"""Distances ALMA minimises: EagerPy functions and Foolbox ``Distance`` objects.

Every object here is a :class:`~foolbox_alma.distances.base.AttackDistance`: call it on native tensors
of any backend (``d(reference, perturbed)``) for per-sample distances, pass it to Foolbox as a
distance, or give it (or its name) to ``ALMA(distance=...)``.
"""

from typing import Dict, Union

from ..checks import by_name
from .base import AUTO, AttackDistance, FirstStep, ImageDistance, bisect_clip, resolve_channel_axis
from .ciede2000 import CIEDE2000, ciede2000, ciede2000_distances, delta_e_00
from .lp import LpDistance, l1, l1_distances, l2, l2_distances
from .lpips import LPIPS, convert_alexnet_weights, default_alexnet_path, lpips_distances
from .msssim import MSSSIM, msssim, msssim_distances
from .ssim import SSIM, ssim, ssim_distances

# LPIPS() reads torchvision's cached AlexNet weights at first use, so that naming "lpips" works
# where the file exists and otherwise fails with instructions only when the attack runs.
_BY_NAME: Dict[str, AttackDistance] = {
    "l1": l1,
    "l2": l2,
    "ciede2000": ciede2000,
    # the paper's scale (adv_lib's ciede2000_loss), with the paper's init_lr_distance 0.05
    "ciede2000-adv_lib": CIEDE2000(adv_lib_scale=True),
    "ssim": ssim,
    "msssim": msssim,
    "ms-ssim": msssim,
    "lpips": LPIPS(),
}


def get_distance(distance: Union[str, AttackDistance]) -> AttackDistance:
    """The distance object for a name (``"l1"``, ``"l2"``, ...) or the object itself."""
    if isinstance(distance, AttackDistance):
        return distance
    if isinstance(distance, str):
        return by_name(_BY_NAME, distance, "distance", "an AttackDistance object")
    raise TypeError(
        f"distance must be a name ({', '.join(sorted(_BY_NAME))}) or an AttackDistance, "
        f"got {type(distance).__name__}"
    )


__all__ = [
    "AUTO",
    "AttackDistance",
    "CIEDE2000",
    "FirstStep",
    "ImageDistance",
    "LPIPS",
    "LpDistance",
    "MSSSIM",
    "SSIM",
    "bisect_clip",
    "ciede2000",
    "ciede2000_distances",
    "convert_alexnet_weights",
    "default_alexnet_path",
    "delta_e_00",
    "get_distance",
    "l1",
    "l1_distances",
    "l2",
    "l2_distances",
    "lpips_distances",
    "msssim",
    "msssim_distances",
    "resolve_channel_axis",
    "ssim",
    "ssim_distances",
]
