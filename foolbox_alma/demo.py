"""``foolbox-alma demo``: ALMA L2 and L1 on the shipped MNIST SmallCNN, offline.

Attacks held-out MNIST images (never seen in training) with ALMA, prints the paper's columns (ASR,
median distance, forwards/backwards per sample, seconds) and writes a PNG of originals,
adversarials and perturbations.
"""

import argparse
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

from .metrics import format_median, median_distance, success_rate

DISTANCES = ("l2", "l1")


@dataclass
class DemoResult:
    distance: str
    success: np.ndarray  # (N,) bool
    distances: np.ndarray  # (N,) float, in the model's input units
    adversarials: np.ndarray  # (N, 1, 28, 28)
    predictions: np.ndarray  # (N,) classes of the adversarials
    forwards: float  # per sample, counted
    backwards: float
    seconds: float

    @property
    def asr(self) -> float:
        return success_rate(self.success)

    @property
    def median(self) -> float:
        return median_distance(self.distances, self.success)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=int, default=100, help="held-out images (max 1000)")
    parser.add_argument("--steps", type=int, default=100, help="ALMA steps")
    parser.add_argument(
        "--distance",
        choices=("l2", "l1", "both"),
        default="both",
        help="distance(s) to minimise (default both)",
    )
    parser.add_argument(
        "--targeted",
        action="store_true",
        help="targeted attack towards class (label + 1) mod 10",
    )
    parser.add_argument("--seed", type=int, default=0, help="framework seed")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--output", default="alma_demo.png", help="PNG to write ('' for none)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def run_demo(
    images: int = 100,
    steps: int = 100,
    distances: Sequence[str] = DISTANCES,
    targeted: bool = False,
    seed: int = 0,
    batch_size: int = 500,
    progress: bool = True,
) -> "tuple[np.ndarray, np.ndarray, float, List[DemoResult]]":
    """Runs ALMA with each distance on the shipped SmallCNN (PyTorch); returns the images, labels,
    clean accuracy and one :class:`DemoResult` per distance."""
    import foolbox as fb
    import torch

    from .alma import ALMA
    from .counting import count_torch_passes
    from .zoo import load_mnist_heldout, smallcnn_torch

    if not 1 <= images <= 1000:
        raise ValueError(f"--images must be between 1 and 1000, got {images}")
    x_np, y_np = load_mnist_heldout(images)
    net = smallcnn_torch()
    fmodel = fb.PyTorchModel(net, bounds=(0, 1))
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
    with torch.no_grad():
        clean_accuracy = float((net(x).argmax(1) == y).float().mean())
    labels = (y + 1) % 10 if targeted else y

    results = []
    for distance in distances:
        torch.manual_seed(seed)
        attack = ALMA(distance=distance, steps=steps, progress=progress)
        adversarials = []
        start = time.perf_counter()
        with count_torch_passes(net) as counter:
            for lo in range(0, images, batch_size):
                batch = labels[lo : lo + batch_size]
                criterion = (
                    fb.criteria.TargetedMisclassification(batch)
                    if targeted
                    else fb.criteria.Misclassification(batch)
                )
                adversarials.append(attack.run(fmodel, x[lo : lo + batch_size], criterion))
        seconds = time.perf_counter() - start
        adv = torch.cat(adversarials)
        with torch.no_grad():
            predictions = net(adv).argmax(1)
        success = (predictions == labels) if targeted else (predictions != y)
        p = 2 if distance == "l2" else 1
        dist = (adv - x).flatten(1).norm(p=p, dim=1)
        forwards, backwards = counter.per_sample(images)
        results.append(
            DemoResult(
                distance=distance,
                success=success.numpy(),
                distances=dist.numpy(),
                adversarials=adv.numpy(),
                predictions=predictions.numpy(),
                forwards=forwards,
                backwards=backwards,
                seconds=seconds,
            )
        )
    return x_np, y_np, clean_accuracy, results


def format_table(results: Sequence[DemoResult], steps: int, targeted: bool) -> str:
    kind = "targeted" if targeted else "untargeted"
    lines = [
        f"| attack ({kind}) | ASR (%) | median distance | forwards / backwards | seconds |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| ALMA {r.distance.upper()} {steps} | {100 * r.asr:.2f} | {format_median(r.median)} "
            f"| {r.forwards:.0f} / {r.backwards:.0f} | {r.seconds:.1f} |"
        )
    return "\n".join(lines)


def plot(
    x: np.ndarray,
    y: np.ndarray,
    results: Sequence[DemoResult],
    path: str,
    columns: int = 8,
) -> None:
    """Originals on the first row; for each distance, the adversarials and the perturbations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(columns, len(x))
    rows = 1 + 2 * len(results)
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.8 * rows), squeeze=False)
    for c in range(columns):
        axes[0, c].imshow(x[c, 0], cmap="gray", vmin=0, vmax=1)
        axes[0, c].set_title(f"label {y[c]}", fontsize=8)
        for k, r in enumerate(results):
            adv, delta = r.adversarials[c, 0], r.adversarials[c, 0] - x[c, 0]
            title = f"-> {r.predictions[c]}, {r.distance.upper()} {r.distances[c]:.2f}"
            axes[1 + 2 * k, c].imshow(adv, cmap="gray", vmin=0, vmax=1)
            axes[1 + 2 * k, c].set_title(title if r.success[c] else "failed", fontsize=7)
            bound = max(float(np.abs(delta).max()), 1e-6)
            axes[2 + 2 * k, c].imshow(delta, cmap="seismic", vmin=-bound, vmax=bound)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("original", fontsize=8)
    for k, r in enumerate(results):
        axes[1 + 2 * k, 0].set_ylabel(f"ALMA {r.distance.upper()}", fontsize=8)
        axes[2 + 2 * k, 0].set_ylabel("perturbation", fontsize=8)
    fig.suptitle("ALMA on the shipped MNIST SmallCNN (held-out images)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(args: argparse.Namespace) -> int:
    distances: List[str] = list(DISTANCES) if args.distance == "both" else [args.distance]
    x, y, clean_accuracy, results = run_demo(
        images=args.images,
        steps=args.steps,
        distances=distances,
        targeted=args.targeted,
        seed=args.seed,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    print(
        f"MNIST SmallCNN (PyTorch), {args.images} held-out images, clean accuracy "
        f"{100 * clean_accuracy:.2f}%, {args.steps} steps"
    )
    print(format_table(results, args.steps, args.targeted))
    output: Optional[str] = args.output or None
    if output:
        plot(x, y, results, output)
        print(f"wrote {output}")
    return 0
