"""The paper's metrics, and AttackBench's optimality, on per-sample distances.

Every function takes per-sample ``distances`` of the points an attack returned and a ``success``
mask (the returned point is adversarial); a failure counts as distance +inf.

* ASR: the share of samples with an adversarial.
* Median distance over all samples, failures counted as +inf: infinite (printed "-") when
  ASR < 50%.
* Robust accuracy at epsilon: the share of samples whose adversarial is farther than epsilon
  (``d > epsilon``; an input the model already misclassifies has ``d = 0`` and is never robust).
* Optimality (AttackBench, Cinà et al. 2024): how close an attack's robust-accuracy curve comes to
  the curve of the per-sample best distance over all attacks, over ``[0, eps_max]`` with
  ``eps_max`` the largest finite best distance. With ``A(d) = integral_0^eps_max RA_d(eps) deps``
  (the area under a robust-accuracy curve, exactly ``mean_i min(d_i, eps_max)``) and
  ``A_worst = clean_accuracy * eps_max`` (an attack that never succeeds)::

      optimality = (A_worst - A(attack)) / (A_worst - A(best))
                 = 1 - (A(attack) - A(best)) / (A_worst - A(best))

  1.0: as good as the per-sample best at every epsilon; 0.0: no better than finding nothing
  (below ``eps_max``). Scaling every best distance by ``c >= 1`` gives ``1/c`` on a uniform
  spread of best distances (see the tests). AttackBench's own code integrates the curve with the
  trapezoidal rule over its points; here the curve is the exact step function.
"""

from typing import Any, Sequence

import numpy as np


class PerSampleMetrics:
    """ASR, median and robust accuracy of a result's per-sample ``success`` and distances (the
    attribute named by ``DISTANCES``), for every result type of the package: the evaluation's,
    the benchmark's and the comparison's compute them here, and only here."""

    DISTANCES = "distances"
    success: np.ndarray

    @property
    def distances_with_failures(self) -> np.ndarray:
        """Per-sample distances, +inf where no adversarial was found."""
        return distances_with_failures(getattr(self, self.DISTANCES), self.success)

    @property
    def asr(self) -> float:
        """Share of samples with an adversarial (already misclassified ones included)."""
        return success_rate(self.success)

    @property
    def median(self) -> float:
        """Median distance over all samples, failures as +inf."""
        return median_distance(getattr(self, self.DISTANCES), self.success)

    def robust_accuracy(self, epsilons: Any) -> np.ndarray:
        """Share of samples with no adversarial within each epsilon."""
        return robust_accuracy(self.distances_with_failures, epsilons)


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


def robust_accuracy(distances: Any, epsilons: Any) -> np.ndarray:
    """Share of samples whose distance (inf for failures) exceeds each epsilon."""
    d = np.asarray(distances, dtype=np.float64).ravel()
    eps = np.asarray(epsilons, dtype=np.float64)
    if d.size == 0:
        return np.full(eps.shape, np.nan)
    ordered = np.sort(d)
    # number of samples with d <= eps, for every eps at once
    broken = np.searchsorted(ordered, eps.ravel(), side="right").reshape(eps.shape)
    return 1.0 - broken / d.size


def best_distances(per_attack: Sequence[Any]) -> np.ndarray:
    """Per-sample minimum over attacks (each an array of distances with inf for failures)."""
    stacked = np.stack([np.asarray(d, dtype=np.float64) for d in per_attack])
    return stacked.min(axis=0)


def area_under_robust_accuracy(distances: Any, eps_max: float) -> float:
    """Exact area under the robust-accuracy step curve over ``[0, eps_max]``:
    ``mean_i min(d_i, eps_max)``."""
    d = np.asarray(distances, dtype=np.float64)
    if d.size == 0:
        return float("nan")
    return float(np.minimum(d, eps_max).mean())


def optimality(
    distances: Any,
    best: Any,
    clean_accuracy: float,
    eps_max: "float | None" = None,
) -> float:
    """AttackBench's optimality of one attack against the per-sample ``best`` distances.

    Args:
        distances: The attack's per-sample distances, inf for failures.
        best: The per-sample best distances over all attacks compared (inf where all failed).
        clean_accuracy: The model's accuracy on the clean inputs (the height of the worst curve).
        eps_max: The end of the epsilon range; the largest finite best distance when None.

    Returns:
        ``(A_worst - A(attack)) / (A_worst - A(best))``, 1.0 for the best attack; NaN when the
        best curve encloses no area (no finite best distance, or all samples misclassified).
    """
    best = np.asarray(best, dtype=np.float64)
    if eps_max is None:
        finite = best[np.isfinite(best)]
        if finite.size == 0:
            return float("nan")
        eps_max = float(finite.max())
    worst_area = clean_accuracy * eps_max
    best_area = area_under_robust_accuracy(best, eps_max)
    denominator = worst_area - best_area
    if not np.isfinite(denominator) or denominator <= 0:
        return float("nan")
    return float((worst_area - area_under_robust_accuracy(distances, eps_max)) / denominator)
