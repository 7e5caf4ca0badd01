"""The paper's metrics: attack success rate and median distance with failures counted as +inf."""

from typing import Any

import numpy as np


def success_rate(success: Any) -> float:
    """Share of samples for which an adversarial was found."""
    success = np.asarray(success, dtype=bool)
    return float(success.mean()) if success.size else float("nan")


def distances_with_failures(distances: Any, success: Any) -> np.ndarray:
    """Per-sample distances with +inf where the attack failed."""
    distances = np.asarray(distances, dtype=np.float64)
    return np.where(np.asarray(success, dtype=bool), distances, np.inf)


def median_distance(distances: Any, success: Any) -> float:
    """Median over all samples, failures counted as +inf (so it is inf when ASR < 50%)."""
    values = distances_with_failures(distances, success)
    if values.size == 0:
        return float("nan")
    # np.median of an array holding inf averages the two middle values: take the lower-middle and
    # upper-middle elements explicitly so that inf only appears when a middle element is inf.
    ordered = np.sort(values)
    n = len(ordered)
    low, high = ordered[(n - 1) // 2], ordered[n // 2]
    if np.isinf(high):
        return float("inf")
    return float((low + high) / 2)


def format_median(value: float, digits: int = 4) -> str:
    """As the paper prints it: '-' when the median is infinite (ASR < 50%)."""
    return "-" if not np.isfinite(value) else f"{value:.{digits}g}"
