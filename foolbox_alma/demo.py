"""``foolbox-alma demo``: ALMA L2 and L1 on a shipped zoo model, offline.

Attacks held-out images (never seen in training) with ALMA, prints the paper's columns (ASR,
median distance, forwards/backwards per sample, seconds) and writes a PNG of originals,
adversarials and perturbations. ``--framework`` picks PyTorch, TensorFlow or JAX (the same weights
in each), ``--model`` the regular MNIST SmallCNN, the L2-robust one or a colour CNN.
"""

import argparse
import dataclasses
from typing import Any, List, Optional, Sequence

import numpy as np

from . import zoo
from ._io import markdown_table
from .compare import AttackRun, RunSettings, parse_frameworks, run_spec
from .metrics import format_median
from .pipeline.models import parse_model_spec

DISTANCES = ("l2", "l1")

DemoResult = AttackRun
"""One attack of the demo (the type :func:`foolbox_alma.compare.run_alma` returns)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--framework",
        choices=("torch", "tensorflow", "jax"),
        default="torch",
        help="framework that runs the model and the attack (default torch)",
    )
    parser.add_argument(
        "--model",
        choices=zoo.ARCHITECTURES,
        default="smallcnn",
        help="zoo model (default smallcnn): the regular MNIST SmallCNN, the L2-robust "
        "(DDN-trained) one, a colour CNN or the CIFAR ResNet-18 (3x32x32 colour MNIST)",
    )
    parser.add_argument(
        "--images", type=int, default=100, help="held-out images (default 100, max 1000)"
    )
    parser.add_argument("--steps", type=int, default=100, help="ALMA steps (default 100)")
    parser.add_argument(
        "--distance",
        choices=("l2", "l1", "both", "ciede2000", "ssim", "lpips"),
        default="both",
        help="distance(s) to minimise (default both: L2 and L1); the perceptual ones are meant "
        "for the colour models (lpips needs the AlexNet weights, see the README)",
    )
    parser.add_argument(
        "--targeted",
        action="store_true",
        help="targeted attack towards class (label + 1) mod 10",
    )
    parser.add_argument("--seed", type=int, default=0, help="the run's seed (default 0)")
    parser.add_argument(
        "--batch-size", type=int, default=500, help="images per attack call (default 500)"
    )
    parser.add_argument("--output", default="alma_demo.png", help="PNG to write ('' for none)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def run_demo(
    distances: Sequence[str] = DISTANCES,
    framework: str = "pytorch",
    model: str = "smallcnn",
    settings: Optional[RunSettings] = None,
) -> "tuple[np.ndarray, np.ndarray, float, List[DemoResult]]":
    """Runs ALMA with each distance on a shipped model in ``framework`` (``settings``: the
    number of held-out images, steps, seed...; 100 of each by default); returns the images
    (channels-first), labels, clean accuracy and one :class:`DemoResult` per distance.

    The attack uses ALMA's defaults (``alpha`` follows the budget: 0.5 up to 100 steps, 0.9 from
    1000); passes are counted with hooks on PyTorch and with a counting wrapper on TensorFlow and
    JAX (:func:`foolbox_alma.counting.counted_model`).
    """
    settings = settings or RunSettings(images=100, progress=True)
    images = 100 if settings.images is None else settings.images
    if not 1 <= images <= 1000:
        raise ValueError(f"--images must be between 1 and 1000, got {images}")
    spec = parse_model_spec(model, framework=parse_frameworks([framework])[0])
    results = [
        run_spec(spec, f"{model}-heldout", dataclasses.replace(settings, distance=distance))
        for distance in distances
    ]
    x_np, y_np = zoo.load_heldout(model, images)
    clean_accuracy = results[0].clean_accuracy if results else float("nan")
    return x_np, y_np, clean_accuracy, results


def format_table(results: Sequence[DemoResult], steps: int, targeted: bool) -> str:
    kind = "targeted" if targeted else "untargeted"
    header = [f"attack ({kind})", "ASR (%)", "median distance", "forwards / backwards", "seconds"]
    rows = [
        [
            f"ALMA {r.distance.upper()} {steps}",
            f"{100 * r.asr:.2f}",
            format_median(r.median),
            f"{r.forwards:.0f} / {r.backwards:.0f}",
            f"{r.seconds:.1f}",
        ]
        for r in results
    ]
    return markdown_table(header, rows)


def plot(
    x: np.ndarray,
    y: np.ndarray,
    results: Sequence[DemoResult],
    path: str,
    columns: int = 8,
) -> None:
    """Originals on the first row; for each distance, the adversarials and the perturbations.

    Gray images (one channel) are drawn in gray, their perturbations in a diverging colour map;
    colour images as RGB, their perturbations as RGB too, centred at 0.5 per channel and amplified
    so that the largest channel change of each image reaches 0 or 1.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(columns, len(x))
    rows = 1 + 2 * len(results)
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.8 * rows), squeeze=False)
    for c in range(columns):
        _show_image(axes[0, c], x[c])
        axes[0, c].set_title(f"label {y[c]}", fontsize=8)
        for k, r in enumerate(results):
            title = f"-> {r.predictions[c]}, {r.distance.upper()} {r.distances[c]:.2f}"
            _show_image(axes[1 + 2 * k, c], r.adversarials[c])
            axes[1 + 2 * k, c].set_title(title if r.success[c] else "failed", fontsize=7)
            _show_perturbation(axes[2 + 2 * k, c], r.adversarials[c] - x[c])
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("original", fontsize=8)
    for k, r in enumerate(results):
        axes[1 + 2 * k, 0].set_ylabel(f"ALMA {r.distance.upper()}", fontsize=8)
        axes[2 + 2 * k, 0].set_ylabel("perturbation", fontsize=8)
    where = f" {results[0].model} ({results[0].framework})" if results else " SmallCNN"
    data = _data_label(results[0].model if results else "smallcnn")
    fig.suptitle(f"ALMA on the shipped {data}{where}, held-out images", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _show_image(ax: Any, image: np.ndarray) -> None:
    """A channels-first image in [0, 1]: gray for one channel, RGB (HWC) for three."""
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(np.clip(image.transpose(1, 2, 0), 0, 1))


def _show_perturbation(ax: Any, delta: np.ndarray) -> None:
    bound = max(float(np.abs(delta).max()), 1e-6)
    if delta.shape[0] == 1:
        ax.imshow(delta[0], cmap="seismic", vmin=-bound, vmax=bound)
    else:
        amplified = 0.5 + 0.5 * delta.transpose(1, 2, 0) / bound
        ax.imshow(np.clip(amplified, 0, 1))


def _data_label(model: str) -> str:
    """The held-out data set of a zoo model, as the demo names it: MNIST, colour-MNIST, ..."""
    return zoo.HELDOUT_DATA.get(model, "mnist").replace("mnist", "MNIST")


def main(args: argparse.Namespace) -> int:
    distances: List[str] = list(DISTANCES) if args.distance == "both" else [args.distance]
    framework = {"torch": "pytorch"}.get(args.framework, args.framework)
    settings = RunSettings(
        steps=args.steps,
        images=args.images,
        targeted=args.targeted,
        seed=args.seed,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    x, y, clean_accuracy, results = run_demo(distances, framework, args.model, settings)
    print(
        f"{_data_label(args.model)} {args.model} ({framework}), {args.images} held-out images, "
        "clean accuracy "
        f"{100 * clean_accuracy:.2f}%, {args.steps} steps"
    )
    print(format_table(results, args.steps, args.targeted))
    output: Optional[str] = args.output or None
    if output:
        plot(x, y, results, output)
        print(f"wrote {output}")
    return 0
