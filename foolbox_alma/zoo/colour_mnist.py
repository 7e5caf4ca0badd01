"""Colour MNIST: gray MNIST digits painted into 3x32x32 RGB images, reproducibly from the index.

Each digit is padded to 32x32 (2 pixels of background on each side) and used as an alpha mask
between a coloured foreground and a coloured background, so a classifier
has to separate the digit from its colours and colour perturbations (CIEDE2000, SSIM) act on real
colour structure. Two schemes, one per zoo data set:

* ``"gradient"`` (``colour-mnist``): a solid foreground colour on a background that shades linearly
  between two nearby colours along a random direction.
* ``"texture"`` (``colour-mnist-texture``): a foreground shading between two colours along a random
  direction, on a background of smooth colour noise (a 5x5 grid of colours interpolated bilinearly).

The foreground colour and the mean background colour are uniform in the RGB cube and at least
``MIN_CONTRAST`` apart (Euclidean RGB distance, rejection sampling), so no digit vanishes. Every
random number of image ``index`` comes from ``numpy.random.default_rng([seed, scheme, index])``:
an image depends only on its digit, its index, the scheme and the seed, not on the other images
of the batch. ``seed=0`` makes the shipped data; training recolours with other seeds to augment.
"""

from typing import Dict, Tuple

import numpy as np

SCHEMES: Dict[str, int] = {"gradient": 0, "texture": 1}
"""Colouring schemes and the number each contributes to the random seed."""

DATASETS: Dict[str, str] = {"colour-mnist": "gradient", "colour-mnist-texture": "texture"}
"""Zoo data set names and their schemes."""

IMAGE_SIZE = 32
PAD = (IMAGE_SIZE - 28) // 2
MIN_CONTRAST = 0.5
GRADIENT_SPREAD = 0.25  # how far the second background colour may be from the first, per channel
TEXTURE_GRID = 5
TEXTURE_SPREAD = 0.3  # per-channel spread of the texture's colours around the mean background

_COORDS = (np.arange(IMAGE_SIZE) - (IMAGE_SIZE - 1) / 2) / (IMAGE_SIZE - 1)  # in [-0.5, 0.5]


def colour_mnist(
    digits: np.ndarray, indices: np.ndarray, scheme: str = "gradient", seed: int = 0
) -> np.ndarray:
    """Colour MNIST images of ``digits``.

    Args:
        digits: uint8 ``(n, 28, 28)`` gray MNIST digits (white on black).
        indices: ``(n,)`` indices of the digits in their MNIST file; they seed the colours.
        scheme: a key of :data:`SCHEMES`.
        seed: 0 for the zoo's data; other values recolour the same digits (augmentation).

    Returns:
        uint8 ``(n, 3, 32, 32)`` RGB images, channels first.
    """
    digits = np.asarray(digits)
    indices = np.asarray(indices)
    if scheme not in SCHEMES:
        raise ValueError(f"unknown colour scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
    if digits.dtype != np.uint8 or digits.ndim != 3 or digits.shape[1:] != (28, 28):
        raise ValueError(f"digits must be uint8 (n, 28, 28), got {digits.dtype} {digits.shape}")
    if indices.shape != digits.shape[:1]:
        raise ValueError(f"need one index per digit: {indices.shape} for {len(digits)} digits")
    alpha = np.pad(digits.astype(np.float64) / 255.0, ((0, 0), (PAD, PAD), (PAD, PAD)))
    out = np.empty((len(digits), 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for i, (mask, index) in enumerate(zip(alpha, indices)):
        rng = np.random.default_rng([seed, SCHEMES[scheme], int(index)])
        foreground, background = _layers(rng, scheme)
        image = mask * foreground + (1.0 - mask) * background
        out[i] = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    return out


def _layers(rng: np.random.Generator, scheme: str) -> Tuple[np.ndarray, np.ndarray]:
    """Foreground and background, each ``(3, 32, 32)`` in [0, 1]."""
    foreground_colour, background_colour = _contrasting_colours(rng)
    if scheme == "gradient":
        foreground = np.broadcast_to(foreground_colour[:, None, None], (3, IMAGE_SIZE, IMAGE_SIZE))
        other = np.clip(background_colour + rng.uniform(-1, 1, 3) * GRADIENT_SPREAD, 0, 1)
        background = _linear_blend(rng, background_colour, other)
    else:
        other = np.clip(foreground_colour + rng.uniform(-1, 1, 3) * GRADIENT_SPREAD, 0, 1)
        foreground = _linear_blend(rng, foreground_colour, other)
        grid = background_colour[:, None, None] + rng.uniform(
            -TEXTURE_SPREAD, TEXTURE_SPREAD, (3, TEXTURE_GRID, TEXTURE_GRID)
        )
        upsample = _bilinear_matrix(TEXTURE_GRID, IMAGE_SIZE)
        background = np.clip(upsample @ grid @ upsample.T, 0, 1)
    return foreground, background


def _contrasting_colours(rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    while True:
        first, second = rng.uniform(0, 1, (2, 3))
        if np.linalg.norm(first - second) >= MIN_CONTRAST:
            return first, second


def _linear_blend(rng: np.random.Generator, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """``(3, 32, 32)``: ``start`` at one side, ``end`` at the other, along a random direction."""
    angle = rng.uniform(0, 2 * np.pi)
    position = np.cos(angle) * _COORDS[None, :] + np.sin(angle) * _COORDS[:, None]  # (H, W)
    weight = (position - position.min()) / (position.max() - position.min())
    return start[:, None, None] * (1 - weight) + end[:, None, None] * weight


def _bilinear_matrix(size_in: int, size_out: int) -> np.ndarray:
    """``(size_out, size_in)``: linear interpolation of ``size_in`` evenly spaced samples."""
    position = np.linspace(0, size_in - 1, size_out)
    lower = np.minimum(np.floor(position).astype(int), size_in - 2)
    fraction = position - lower
    matrix = np.zeros((size_out, size_in))
    matrix[np.arange(size_out), lower] = 1 - fraction
    matrix[np.arange(size_out), lower + 1] = fraction
    return matrix
