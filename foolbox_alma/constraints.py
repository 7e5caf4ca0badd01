"""ALMA's misclassification constraints: DLR+ (untargeted) and tDLR+ (targeted).

A sample is adversarial exactly when its constraint value is negative. The difference of logits is
divided by a spread of the sorted logits, which makes the constraint invariant to the scale of the
logits and avoids the gradient masking of plain logit differences (Croce & Hein, 2020; Rony et al.,
2021). ``kappa`` (the logit tolerance) keeps solutions off the exact decision boundary.

Fallback with few classes: the normalisers need the 3rd (untargeted) or 3rd and 4th (targeted)
largest logits. With fewer classes, the missing sorted logits are replaced by the smallest logit (the
last available one): with 3 classes the targeted normaliser is ``z_pi1 - z_pi3``. With 2 classes any
normaliser built from the current two logits equals ``|z_1 - z_2|`` and would turn the ratio into a
constant +-1 with zero gradient. The normaliser is then ``two_class_scale``: the attack passes the
logit gap ``|z_1 - z_2|`` of the clean input (a per-sample constant), so the constraint starts at
about +-1 like DLR+ and stays invariant to the scale of the logits; None means 1 (the plain
difference of logits).
"""

from typing import Optional

import eagerpy as ep

NORMALISER_EPS = 1e-8

Scale = Optional[ep.Tensor]


def _one_hot(logits: ep.Tensor, classes: ep.Tensor) -> ep.Tensor:
    indices = ep.arange(classes, logits.shape[-1]).astype(classes.dtype)
    return indices[None, :] == classes[:, None]


def _sorted_descending(logits: ep.Tensor) -> ep.Tensor:
    # PyTorch rejects negative-step slices, so sort the negated logits instead of reversing.
    return -((-logits).sort(axis=-1))


def logit_margin(logits: ep.Tensor, classes: ep.Tensor) -> ep.Tensor:
    """z_c - max_{i != c} z_i per sample."""
    mask = _one_hot(logits, classes)
    class_logit = ep.where(mask, logits, ep.zeros_like(logits)).sum(axis=-1)
    other_max = ep.where(mask, ep.full_like(logits, -float("inf")), logits).max(axis=-1)
    return class_logit - other_max


def _sorted_at(sorted_logits: ep.Tensor, rank: int) -> ep.Tensor:
    """The logit of the given (0-based) rank, or the smallest one if there are fewer classes."""
    return sorted_logits[:, min(rank, sorted_logits.shape[-1] - 1)]


def two_class_gap(logits: ep.Tensor) -> ep.Tensor:
    """``|z_1 - z_2| + 1e-8`` per sample: the normaliser of 2-class models (from the clean logits)."""
    return ep.abs(logits[:, 0] - logits[:, 1]) + NORMALISER_EPS


def dlr_plus(
    logits: ep.Tensor, labels: ep.Tensor, kappa: float = 1e-4, two_class_scale: Scale = None
) -> ep.Tensor:
    """DLR+(z, y) = (z_y - max_{i != y} z_i + kappa) / (z_pi1 - z_pi3 + 1e-8).

    Positive while the model predicts ``y``; negative once ``y`` is no longer the prediction (by more
    than ``kappa`` in logits).
    """
    numerator = logit_margin(logits, labels) + kappa
    if logits.shape[-1] < 3:
        return numerator if two_class_scale is None else numerator / two_class_scale
    s = _sorted_descending(logits)
    return numerator / (s[:, 0] - _sorted_at(s, 2) + NORMALISER_EPS)


def targeted_dlr_plus(
    logits: ep.Tensor, targets: ep.Tensor, kappa: float = 1e-4, two_class_scale: Scale = None
) -> ep.Tensor:
    """tDLR+(z, t) = (max_{i != t} z_i - z_t + kappa) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-8).

    Negative exactly when the target logit exceeds every other logit by more than ``kappa``.
    """
    numerator = kappa - logit_margin(logits, targets)
    if logits.shape[-1] < 3:
        return numerator if two_class_scale is None else numerator / two_class_scale
    s = _sorted_descending(logits)
    return numerator / (s[:, 0] - (_sorted_at(s, 2) + _sorted_at(s, 3)) / 2 + NORMALISER_EPS)
