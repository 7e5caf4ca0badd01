"""``foolbox-alma compare``: the same ALMA attack on the same model and images in every framework.

One weight archive of the model zoo feeds the PyTorch, TensorFlow and JAX builds of a model
(:mod:`foolbox_alma.zoo`), so the three differ only by float32 rounding. The attack is one EagerPy
implementation, so on the same held-out images it should find the same adversarials up to that
rounding, amplified by the optimisation: :func:`compare_frameworks` runs it in each framework (each
in its native layout: TensorFlow channels-last), with the passes counted (see
:mod:`foolbox_alma.counting`) and the time measured, and reports how far the frameworks drift
apart, per sample and in the median distance.

Seconds are wall-clock time for the whole attack, the tracing and compilation of TensorFlow's
``tf.function`` and JAX's ``jax.jit`` included (what a user pays for one call).
"""

import argparse
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence

import eagerpy as ep
import numpy as np

from . import zoo
from ._io import markdown_table
from ._runtime import FRAMEWORK_ALIASES, FRAMEWORKS, framework_installed, to_native
from .alma import default_alpha
from .distances import get_distance
from .evaluation import evaluate
from .metrics import format_median, median_distance, success_rate
from .pipeline.engine import measure
from .pipeline.models import model_of, parse_model_spec

DISTANCES = ("l2", "l1", "ciede2000", "ssim", "lpips")
"""Distances the demo and the comparison offer (any name of :func:`~foolbox_alma.distances.get_distance`
is accepted; L1 and L2 are measured in NumPy float64, the others with the package's distance)."""
MEDIAN_TOLERANCE = 0.01  # relative: the medians of two frameworks must agree within 1%
_P = {"l2": 2, "l1": 1}


@dataclass
class AttackRun:
    """ALMA on one zoo model in one framework; arrays are NumPy, images channels-first."""

    framework: str
    model: str
    distance: str
    steps: int
    alpha: float
    data_format: str
    labels: np.ndarray  # (N,) true labels (or targets when targeted)
    success: np.ndarray  # (N,) bool: the returned point is adversarial
    distances: np.ndarray  # (N,) float64, in the model's input units
    adversarials: np.ndarray  # (N, 1, 28, 28) float32
    predictions: np.ndarray  # (N,) classes of the adversarials
    clean_accuracy: float
    forwards: float  # per sample, counted
    backwards: float
    seconds: float
    targeted: bool = False

    @property
    def asr(self) -> float:
        return success_rate(self.success)

    @property
    def median(self) -> float:
        return median_distance(self.distances, self.success)


@dataclass
class Disagreement:
    """How far one framework's run is from the reference framework's, sample by sample."""

    framework: str
    reference: str
    median_relative: float  # |median - reference median| / reference median
    success_differs: int  # samples adversarial in one run only
    max_distance: float  # largest |d - d_ref| over samples adversarial in both
    max_distance_index: int
    max_adversarial: float  # largest distance (same norm) between the two adversarials
    max_adversarial_index: int


@dataclass
class Comparison:
    """The runs of :func:`compare_frameworks`, and their disagreements with the first one."""

    runs: List[AttackRun]
    tolerance: float = MEDIAN_TOLERANCE
    disagreements: List[Disagreement] = field(init=False)

    def __post_init__(self) -> None:
        self.disagreements = [disagreement(run, self.runs[0]) for run in self.runs[1:]]

    @property
    def reference(self) -> AttackRun:
        return self.runs[0]

    @property
    def medians_agree(self) -> bool:
        return all(d.median_relative <= self.tolerance for d in self.disagreements)


def installed_frameworks() -> List[str]:
    """The frameworks importable here, in the order PyTorch, TensorFlow, JAX."""
    return [f for f in FRAMEWORKS if framework_installed(f)]


def parse_frameworks(names: Optional[Sequence[str]]) -> List[str]:
    """Canonical framework names (``torch`` and ``tf`` accepted), checked to be installed."""
    installed = installed_frameworks()
    if not names:
        if not installed:
            raise ImportError("none of PyTorch, TensorFlow, JAX is installed")
        return installed
    frameworks: List[str] = []
    for name in names:
        framework = FRAMEWORK_ALIASES.get(name.strip().lower(), name.strip().lower())
        if framework not in FRAMEWORKS:
            raise ValueError(
                f"unknown framework {name!r}; use {', '.join(FRAMEWORKS)} (or torch, tf)"
            )
        if framework not in installed:
            raise ImportError(f"{framework} is not installed (installed: {', '.join(installed)})")
        if framework not in frameworks:
            frameworks.append(framework)
    return frameworks


def run_alma(
    framework: str,
    model: str = "smallcnn",
    distance: str = "l2",
    steps: int = 100,
    images: int = 100,
    *,
    alpha: Optional[float] = None,
    targeted: bool = False,
    seed: int = 0,
    batch_size: int = 500,
    progress: bool = False,
) -> AttackRun:
    """ALMA on the zoo model ``model`` in ``framework``, on the first ``images`` held-out images.

    Args:
        framework: ``"pytorch"``, ``"tensorflow"`` or ``"jax"`` (the model in its native layout).
        model: a zoo model name (:data:`foolbox_alma.zoo.ARCHITECTURES`).
        distance: ``"l2"`` or ``"l1"``.
        steps: ALMA steps.
        images: how many held-out images (1..1000).
        alpha: ALMA's EMA weight; None: the paper's for the budget (:func:`default_alpha`).
        targeted: attack towards class ``(label + 1) mod 10`` instead.
        seed: the framework's seed, set before the attack.
        batch_size: images per attack call.
        progress: show ALMA's progress bar.
    """
    if not 1 <= images <= zoo.smallcnn.HELDOUT_SIZE:
        raise ValueError(f"--images must be between 1 and 1000, got {images}")
    if distance not in _P:
        get_distance(distance)  # an unknown name is an error that lists the known ones
    framework = parse_frameworks([framework])[0]
    alpha = default_alpha(steps) if alpha is None else alpha
    spec = parse_model_spec(model, framework=framework)
    x_native, y_native = zoo.heldout_for(framework, n=images, model=model)
    x, y = ep.astensor(x_native).numpy(), ep.astensor(y_native).numpy()
    result = evaluate(
        spec,
        (x, y),
        distance=distance,
        steps=steps,
        alpha=alpha,
        attack_params={"progress": progress},
        targeted=targeted,
        seed=seed,
        batch_size=batch_size,
        keep_adversarials=True,
        progress=False,
    )
    assert result.adversarials is not None
    data_format = _data_format(spec)
    adversarials = _channels_first(result.adversarials, data_format)
    originals = _channels_first(x, data_format)
    return AttackRun(
        framework=framework,
        model=model,
        distance=distance,
        steps=steps,
        alpha=alpha,
        data_format=data_format,
        labels=result.targets if targeted and result.targets is not None else result.labels,
        success=result.success,
        distances=norms(adversarials - originals, distance)
        if distance in _P
        else _measured(spec, distance, x, result.adversarials),
        adversarials=adversarials,
        predictions=result.adversarial_prediction,
        clean_accuracy=result.clean_accuracy,
        forwards=result.summary["forwards_per_sample"],
        backwards=result.summary["backwards_per_sample"],
        seconds=result.summary["seconds"]["attack"],
        targeted=targeted,
    )


def _measured(spec: Any, distance: str, x: np.ndarray, adversarials: np.ndarray) -> np.ndarray:
    """Per-sample perceptual distances of every returned point (adversarial or not)."""
    fmodel = model_of(spec)
    return measure(distance, fmodel, to_native(fmodel, x), to_native(fmodel, adversarials))


def _data_format(spec: Any) -> str:
    return getattr(model_of(spec), "data_format", None) or "channels_first"


def compare_frameworks(
    model: str = "smallcnn",
    distance: str = "l2",
    steps: int = 100,
    images: int = 100,
    frameworks: Optional[Sequence[str]] = None,
    *,
    alpha: Optional[float] = None,
    seed: int = 0,
    batch_size: int = 500,
    tolerance: float = MEDIAN_TOLERANCE,
    progress: bool = False,
) -> Comparison:
    """Runs :func:`run_alma` with the same settings in each framework (all installed when None).

    The first framework is the reference the others are compared with (PyTorch where installed).
    """
    runs = [
        run_alma(
            framework,
            model,
            distance,
            steps,
            images,
            alpha=alpha,
            seed=seed,
            batch_size=batch_size,
            progress=progress,
        )
        for framework in parse_frameworks(frameworks)
    ]
    return Comparison(runs, tolerance=tolerance)


def disagreement(run: AttackRun, reference: AttackRun) -> Disagreement:
    """Per-sample differences of ``run`` from ``reference`` (same model, images and settings)."""
    both = run.success & reference.success
    gap = np.where(both, np.abs(run.distances - reference.distances), -np.inf)
    apart = norms(
        run.adversarials - reference.adversarials, run.distance if run.distance in _P else "l2"
    )
    ref_median = reference.median
    if np.isfinite(ref_median) and ref_median > 0:
        median_relative = abs(run.median - ref_median) / ref_median
    else:  # both infinite (ASR < 50%) or both zero count as agreeing
        median_relative = 0.0 if run.median == ref_median else float("inf")
    i, j = int(np.argmax(gap)), int(np.argmax(apart))
    return Disagreement(
        framework=run.framework,
        reference=reference.framework,
        median_relative=float(median_relative),
        success_differs=int((run.success != reference.success).sum()),
        max_distance=float(gap[i]) if both.any() else 0.0,
        max_distance_index=i,
        max_adversarial=float(apart[j]),
        max_adversarial_index=j,
    )


def norms(delta: np.ndarray, distance: str) -> np.ndarray:
    """Per-sample L1 or L2 norms, in float64 (L2 for any other distance name)."""
    flat = np.asarray(delta, dtype=np.float64).reshape(len(delta), -1)
    return np.linalg.norm(flat, ord=_P.get(distance, 2), axis=1)


def _channels_first(images: np.ndarray, data_format: str) -> np.ndarray:
    if data_format == "channels_last":
        return np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    return images


# --- command line ----------------------------------------------------------------------------------


def format_table(comparison: Comparison) -> str:
    """The runs as a Markdown table, then the per-sample disagreements with the reference."""
    first = comparison.reference
    name = first.distance.upper()
    header = ["framework", "layout", "ASR (%)", f"median {name}", "forwards / backwards"]
    rows = [
        [
            r.framework,
            r.data_format.replace("channels_", "channels-"),
            f"{100 * r.asr:.2f}",
            format_median(r.median, 5),
            f"{r.forwards:.0f} / {r.backwards:.0f}",
            f"{r.seconds:.1f}",
        ]
        for r in comparison.runs
    ]
    lines = [markdown_table(header + ["seconds"], rows)]
    if not comparison.disagreements:
        lines.append("")
        lines.append("only one framework: nothing to compare")
        return "\n".join(lines)
    lines.append("")
    lines.append(f"Largest per-sample disagreement with {first.framework} (held-out image index):")
    for d in comparison.disagreements:
        lines.append(
            f"* {d.framework}: median {100 * d.median_relative:.3f}% apart; "
            f"distance {d.max_distance:.3g} (image {d.max_distance_index}); adversarials "
            f"{d.max_adversarial:.3g} {name} apart (image {d.max_adversarial_index}); "
            f"success differs on {d.success_differs} image(s)"
        )
    verdict = "agree" if comparison.medians_agree else "DISAGREE"
    lines.append(f"Medians {verdict} within {100 * comparison.tolerance:g}%.")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=zoo.ARCHITECTURES, default="smallcnn", help="zoo model")
    parser.add_argument(
        "--distance", default="l2", help=f"distance ALMA minimises: {', '.join(DISTANCES)}"
    )
    parser.add_argument("--steps", type=int, default=100, help="ALMA steps")
    parser.add_argument("--images", type=int, default=100, help="held-out images (max 1000)")
    parser.add_argument(
        "--frameworks",
        type=lambda text: [name for name in text.split(",") if name.strip()],
        default=None,
        help="comma-separated, e.g. torch,jax (default: all installed)",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="ALMA's EMA weight (default 0.5 up to 100 steps, else 0.9, as in the paper)",
    )
    parser.add_argument("--seed", type=int, default=0, help="framework seed")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--progress", action="store_true", help="show ALMA's progress bars")


def main(args: argparse.Namespace) -> int:
    if args.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {args.steps}")
    comparison = compare_frameworks(
        model=args.model,
        distance=args.distance,
        steps=args.steps,
        images=args.images,
        frameworks=args.frameworks,
        alpha=args.alpha,
        seed=args.seed,
        batch_size=args.batch_size,
        progress=args.progress,
    )
    first = comparison.reference
    print(
        f"ALMA {args.distance.upper()}, {args.steps} steps (alpha {first.alpha:g}) on {args.model}, "
        f"{args.images} held-out {zoo.HELDOUT_DATA[args.model].replace('mnist', 'MNIST')} images, "
        f"clean accuracy {100 * first.clean_accuracy:.2f}%"
    )
    print(format_table(comparison))
    return 0 if comparison.medians_agree else 1
