"""``foolbox-alma compare``: the same ALMA attack on several builds of one model, and how far apart
they are.

Two uses, one code path (:func:`compare_models`):

* the zoo in every framework (:func:`compare_frameworks`): one weight archive feeds the PyTorch,
  TensorFlow and JAX builds of a zoo model (:mod:`foolbox_alma.zoo`), so they differ only by
  float32 rounding; the attack is one EagerPy implementation, so on the same held-out images it
  should find the same adversarials up to that rounding, amplified by the optimisation;
* your own model across frameworks (any model specs, e.g. your PyTorch ``model.py:build`` and
  your Keras ``model.keras`` of the same network, on the same data): are they the same function
  (clean logits), and does the attack find the same distances?

Each model runs ALMA through the evaluation pipeline in its native layout (TensorFlow
channels-last), with the passes counted and the time measured. The report gives, against the
first model (the reference): the largest difference of clean logits, per-sample distances side by
side (their largest relative difference), the spread of the medians, the largest distance between
two adversarials, and the samples where success differs.

Seconds are wall-clock time for the whole attack, the tracing and compilation of TensorFlow's
``tf.function`` and JAX's ``jax.jit`` included (what a user pays for one call).
"""

import argparse
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Sequence

import eagerpy as ep
import numpy as np

from . import zoo
from ._args import add_alma_options, bounds, name_list
from ._io import markdown_table, write_atomic
from ._runtime import (
    FRAMEWORK_ALIASES,
    FRAMEWORKS,
    framework_installed,
    model_framework,
    to_native,
)
from .alma import default_alpha
from .distances import get_distance
from .evaluation import evaluate
from .metrics import PerSampleMetrics, format_median
from .pipeline.data import as_dataset, to_layout
from .pipeline.engine import measure
from .pipeline.models import model_of, parse_model_spec

DISTANCES = ("l2", "l1", "ciede2000", "ssim", "lpips")
"""Distances the demo and the comparison offer (any name of :func:`~foolbox_alma.distances.get_distance`
is accepted; L1 and L2 are measured in NumPy float64, the others with the package's distance)."""
MODEL_HELP = (
    "a model spec, as evaluate takes it (repeat for several: the first is the reference). A zoo "
    "name runs in each of --frameworks. Default: smallcnn"
)
MEDIAN_TOLERANCE = 0.01  # relative: the medians of two frameworks must agree within 1%
_P = {"l2": 2, "l1": 1}


@dataclass
class AttackRun(PerSampleMetrics):
    """ALMA on one model (a zoo model in one framework, or any model spec); arrays are NumPy,
    images channels-first."""

    framework: str
    model: str  # the model spec's text
    distance: str
    steps: int
    alpha: float
    data_format: str
    labels: np.ndarray  # (N,) true labels (or targets when targeted)
    success: np.ndarray  # (N,) bool: the returned point is adversarial
    distances: np.ndarray  # (N,) float64, in the model's input units
    adversarials: np.ndarray  # (N, C, H, W) float32
    predictions: np.ndarray  # (N,) classes of the adversarials
    clean_accuracy: float
    forwards: float  # per sample, counted
    backwards: float
    seconds: float
    targeted: bool = False
    logits: Optional[np.ndarray] = None  # (N, classes) float64: the clean inputs' logits

    @property
    def name(self) -> str:
        """How tables name the run: the framework for the zoo, else spec and framework."""
        return (
            self.framework
            if self.model in zoo.ARCHITECTURES
            else f"{self.model} ({self.framework})"
        )


@dataclass(frozen=True)
class RunSettings:
    """How every model of a comparison is attacked (the same for all)."""

    distance: str = "l2"
    steps: int = 100
    images: Optional[int] = None  # the first samples of the data (None: all)
    alpha: Optional[float] = None  # None: the budget's default (default_alpha)
    init_lr_distance: Optional[float] = None  # None: the distance's default
    targeted: bool = False
    seed: int = 0
    batch_size: int = 500
    progress: bool = False  # ALMA's progress bars


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
    max_distance_relative: float = 0.0  # largest |d - d_ref| / d_ref (adversarial in both)
    max_distance_relative_index: int = 0
    logits_max_abs: Optional[float] = None  # largest |z - z_ref| on the clean inputs
    logits_max_relative: Optional[float] = None  # the same over the largest |z_ref|
    predictions_differ: Optional[int] = None  # clean inputs classified differently


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

    @property
    def median_spread(self) -> float:
        """(largest median - smallest) / smallest over the runs (0 for one run)."""
        medians = [r.median for r in self.runs]
        low, high = min(medians), max(medians)
        if not np.isfinite(high) or low <= 0:
            return 0.0 if low == high else float("inf")
        return float((high - low) / low)


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
        distance: ``"l2"``, ``"l1"`` or another name of
            :func:`~foolbox_alma.distances.get_distance`.
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
    framework = parse_frameworks([framework])[0]
    settings = RunSettings(
        distance, steps, images, alpha, None, targeted, seed, batch_size, progress
    )
    return run_spec(parse_model_spec(model, framework=framework), f"{model}-heldout", settings)


def run_spec(spec: Any, data: Any, settings: Optional["RunSettings"] = None) -> AttackRun:
    """ALMA on any model spec (a string of :func:`~foolbox_alma.pipeline.models.parse_model_spec`
    or a ModelSpec) over the first ``images`` samples of ``data`` (a data spec), in the model's
    own layout, through the evaluation pipeline; distances, adversarials and clean logits come
    back channels-first."""
    s = settings or RunSettings()
    distance = s.distance
    if distance not in _P:
        get_distance(distance)  # an unknown name is an error that lists the known ones
    spec = parse_model_spec(spec) if isinstance(spec, str) else spec
    alpha = default_alpha(s.steps) if s.alpha is None else s.alpha
    fmodel = model_of(spec)
    dataset = as_dataset(data, fmodel, limit=s.images)
    result = evaluate(
        spec,
        dataset,
        distance=distance,
        steps=s.steps,
        alpha=alpha,
        init_lr_distance=s.init_lr_distance,
        attack_params={"progress": s.progress},
        targeted=s.targeted,
        seed=s.seed,
        batch_size=s.batch_size,
        keep_adversarials=True,
        progress=False,
    )
    batch_size = s.batch_size
    assert result.adversarials is not None
    native = to_native(fmodel, dataset.x)
    logits = np.concatenate(
        [
            ep.astensor(fmodel(native[lo : lo + batch_size])).numpy().astype(np.float64)
            for lo in range(0, len(dataset.x), batch_size)
        ]
    )
    data_format = dataset.data_format
    in_model_layout = to_layout(result.adversarials, data_format)  # they come in the data's
    adversarials = to_layout(in_model_layout, "channels_first")
    originals = to_layout(dataset.x, "channels_first")
    return AttackRun(
        framework=model_framework(fmodel),
        model=spec.text,
        distance=distance,
        steps=s.steps,
        alpha=alpha,
        data_format=data_format,
        labels=result.targets if s.targeted and result.targets is not None else result.labels,
        success=result.success,
        distances=norms(adversarials - originals, distance)
        if distance in _P
        else measure(distance, fmodel, native, to_native(fmodel, in_model_layout)),
        adversarials=adversarials,
        predictions=result.adversarial_prediction,
        clean_accuracy=result.clean_accuracy,
        forwards=result.summary["forwards_per_sample"],
        backwards=result.summary["backwards_per_sample"],
        seconds=result.summary["seconds"]["attack"],
        targeted=s.targeted,
        logits=logits,
    )


def compare_models(
    specs: Sequence[Any],
    data: Any,
    settings: Optional["RunSettings"] = None,
    tolerance: float = MEDIAN_TOLERANCE,
) -> Comparison:
    """Runs :func:`run_spec` with the same ``settings`` on each model spec and ``data``; the first
    is the reference the others are compared with."""
    if not specs:
        raise ValueError("compare needs at least one model")
    return Comparison([run_spec(spec, data, settings) for spec in specs], tolerance=tolerance)


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
    """The zoo model ``model`` in each framework (all installed when None) on its first
    ``images`` held-out images; the first framework is the reference (PyTorch where
    installed)."""
    if not 1 <= images <= zoo.smallcnn.HELDOUT_SIZE:
        raise ValueError(f"--images must be between 1 and 1000, got {images}")
    specs = [parse_model_spec(model, framework=f) for f in parse_frameworks(frameworks)]
    settings = RunSettings(distance, steps, images, alpha, None, False, seed, batch_size, progress)
    return compare_models(specs, f"{model}-heldout", settings, tolerance)


def disagreement(run: AttackRun, reference: AttackRun) -> Disagreement:
    """Per-sample differences of ``run`` from ``reference`` (same images and settings)."""
    both = run.success & reference.success
    gap = np.where(both, np.abs(run.distances - reference.distances), -np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(both & (reference.distances > 0), gap / reference.distances, -np.inf)
    apart = norms(
        run.adversarials - reference.adversarials, run.distance if run.distance in _P else "l2"
    )
    ref_median = reference.median
    if np.isfinite(ref_median) and ref_median > 0:
        median_relative = abs(run.median - ref_median) / ref_median
    else:  # both infinite (ASR < 50%) or both zero count as agreeing
        median_relative = 0.0 if run.median == ref_median else float("inf")
    i, j, k = int(np.argmax(gap)), int(np.argmax(apart)), int(np.argmax(relative))
    logits: Dict[str, Any] = {}
    if run.logits is not None and reference.logits is not None:
        if run.logits.shape != reference.logits.shape:
            raise ValueError(
                f"{run.name} has outputs of shape {run.logits.shape[1:]}, {reference.name} of "
                f"{reference.logits.shape[1:]}: not builds of one model"
            )
        largest = np.abs(run.logits - reference.logits).max(initial=0)
        scale = max(np.abs(reference.logits).max(initial=0), 1e-12)
        logits = {
            "logits_max_abs": float(largest),
            "logits_max_relative": float(largest / scale),
            "predictions_differ": int(
                (run.logits.argmax(axis=1) != reference.logits.argmax(axis=1)).sum()
            ),
        }
    return Disagreement(
        framework=run.name,
        reference=reference.name,
        median_relative=float(median_relative),
        success_differs=int((run.success != reference.success).sum()),
        max_distance=float(gap[i]) if both.any() else 0.0,
        max_distance_index=i,
        max_adversarial=float(apart[j]),
        max_adversarial_index=j,
        max_distance_relative=float(relative[k]) if np.isfinite(relative[k]) else 0.0,
        max_distance_relative_index=k,
        **logits,
    )


def norms(delta: np.ndarray, distance: str) -> np.ndarray:
    """Per-sample L1 or L2 norms, in float64 (L2 for any other distance name)."""
    flat = np.asarray(delta, dtype=np.float64).reshape(len(delta), -1)
    return np.linalg.norm(flat, ord=_P.get(distance, 2), axis=1)


# --- command line ----------------------------------------------------------------------------------


def format_table(comparison: Comparison) -> str:
    """The runs as a Markdown table, then the per-sample disagreements with the reference."""
    first = comparison.reference
    name = first.distance.upper()
    zoo_only = all(r.model in zoo.ARCHITECTURES for r in comparison.runs)
    what = "framework" if zoo_only else "model"
    header = [what, "layout", "ASR (%)", f"median {name}", "forwards / backwards"]
    rows = [
        [
            r.name if zoo_only else f"{r.model} ({r.framework})",
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
        lines.append(f"only one {what}: nothing to compare")
        return "\n".join(lines)
    lines.append("")
    lines.append(f"Largest per-sample disagreement with {first.name} (sample index):")
    for d in comparison.disagreements:
        logits = (
            ""
            if d.logits_max_abs is None
            else f"clean logits {d.logits_max_abs:.3g} apart ({d.logits_max_relative:.2g} of the "
            f"largest), {d.predictions_differ} clean prediction(s) differ; "
        )
        lines.append(
            f"* {d.framework}: {logits}median {100 * d.median_relative:.3f}% apart; "
            f"distance {d.max_distance:.3g} (image {d.max_distance_index}), relative "
            f"{100 * d.max_distance_relative:.3g}% (image {d.max_distance_relative_index}); "
            f"adversarials {d.max_adversarial:.3g} {name} apart (image "
            f"{d.max_adversarial_index}); success differs on {d.success_differs} image(s)"
        )
    verdict = "agree" if comparison.medians_agree else "DISAGREE"
    lines.append(f"Medians {verdict} within {100 * comparison.tolerance:g}%.")
    lines.append(f"Median spread: {100 * comparison.median_spread:.3g}% of the smallest median.")
    return "\n".join(lines)


def samples_csv(comparison: Comparison) -> str:
    """The per-sample distances of every run side by side (inf where no adversarial was found),
    and each run's success."""
    header = ["index", "label"]
    for r in comparison.runs:
        header += [f"distance[{r.name}]", f"success[{r.name}]"]
    lines = [",".join(header)]
    first = comparison.reference
    for i in range(len(first.labels)):
        row = [str(i), str(int(first.labels[i]))]
        for r in comparison.runs:
            d = r.distances[i] if r.success[i] else float("inf")
            row += [repr(float(d)), str(bool(r.success[i]))]
        lines.append(",".join(row))
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--model", action="append", help=MODEL_HELP)
    add(
        "--data",
        help="data spec, as evaluate takes it (default: a zoo model's held-out images, "
        "<model>-heldout; required for other models)",
    )
    add("--bounds", type=bounds, help="input bounds LO,HI of model files and bare networks")
    add(
        "--frameworks",
        type=name_list,
        default=None,
        help="frameworks of the zoo models, comma-separated, e.g. torch,jax (default: all "
        "installed)",
    )
    add_alma_options(parser, steps=100)
    add("--images", type=int, default=100, help="samples of the data (default 100)")
    add("--seed", type=int, default=0, help="framework seed (default 0)")
    add("--batch-size", type=int, default=500, help="samples per attack call (default 500)")
    add("--samples", help="also write the per-sample distances side by side to this CSV file")
    add("--progress", action="store_true", help="show ALMA's progress bars")


def main(args: argparse.Namespace) -> int:
    if args.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {args.steps}")
    models = args.model or ["smallcnn"]
    specs = []
    for text in models:
        if text in zoo.ARCHITECTURES:
            specs += [
                parse_model_spec(text, framework=f) for f in parse_frameworks(args.frameworks)
            ]
        else:
            specs.append(parse_model_spec(text, bounds=args.bounds))
    zoo_only = all(text in zoo.ARCHITECTURES for text in models)
    if args.data is None and zoo_only and not 1 <= args.images <= zoo.smallcnn.HELDOUT_SIZE:
        raise ValueError(f"--images must be between 1 and 1000, got {args.images}")
    if args.images < 1:  # else, with --data, the data loader's "limit must be ..." names no flag
        raise ValueError(f"--images must be at least 1, got {args.images}")
    data = args.data or (f"{models[0]}-heldout" if zoo_only else None)
    if data is None:
        raise ValueError("--data is needed for models that are not zoo names")
    distance = args.distance or "l2"
    given = {f.name: getattr(args, f.name) for f in fields(RunSettings) if hasattr(args, f.name)}
    comparison = compare_models(specs, data, RunSettings(**dict(given, distance=distance)))
    first = comparison.reference
    source = (
        f"held-out {zoo.HELDOUT_DATA[models[0]].replace('mnist', 'MNIST')} images"
        if args.data is None
        else f"samples of {data}"
    )
    print(
        f"ALMA {distance.upper()}, {args.steps} steps (alpha {first.alpha:g}) on "
        f"{', '.join(models)}, {len(first.labels)} {source}, clean accuracy "
        f"{100 * first.clean_accuracy:.2f}%"
    )
    print(format_table(comparison))
    if args.samples:
        write_atomic(args.samples, samples_csv(comparison))
        print(f"wrote {args.samples}")
    return 0 if comparison.medians_agree else 1
