"""``foolbox-alma evaluate``: a robustness evaluation of your model over your data set.

Attacks every sample (ALMA by default), in batches, shard by shard, and writes to ``--out``:
``samples.csv`` (one row per input: index, label, [target,] clean and adversarial predictions,
success, minimal distance, ``inf`` where no adversarial was found), ``summary.json`` (ASR, median,
clean accuracy, robust accuracy at each ``--epsilons``, counted passes per sample, seconds,
settings, versions, machine), ``robust_accuracy.png``, ``report.md`` and, with
``--save-adversarials``, ``adversarials.npz``. A rerun with the same settings recomputes only the
shards that are missing (``--force`` recomputes all). ``--ray`` spreads the shards over a local
Ray instance or, with an address (or ``RAY_ADDRESS``), over a cluster.

Models (``--model``): a zoo name (smallcnn, smallcnn-robust, ...), ``path/to/file.py:function``
or ``package.module:function`` (a function of no arguments returning a Foolbox model of any
framework), a TorchScript ``.pt`` or a Keras ``.keras`` file (both with ``--bounds``).
Data (``--data``): ``mnist-heldout``, an ``.npz`` file with arrays ``x`` and ``y`` (and
``targets``), or a folder of images with one subfolder per class.
"""

import argparse
import os
from typing import List, Optional, Tuple, Union

from .._runtime import FRAMEWORK_ALIASES, limit_threads_before_import
from ..pipeline.result import format_table
from .run import evaluate


def _floats(text: str) -> List[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from None
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"epsilons must be non-negative, got {text!r}")
    return values


def _first_step(text: str) -> Union[float, str]:
    """``auto`` or a number: ALMA's ``init_lr_distance``."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number, got {text!r}") from None


def _bounds(text: str) -> Tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected LO,HI (e.g. 0,1 or 0,255), got {text!r}"
        ) from None
    if not lo < hi:
        raise argparse.ArgumentTypeError(f"bounds need LO < HI, got {text!r}")
    return lo, hi


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model spec (see above)")
    parser.add_argument("--data", required=True, help="data spec (see above)")
    parser.add_argument("--bounds", type=_bounds, help="input bounds LO,HI (.pt and .keras models)")
    parser.add_argument(
        "--framework",
        choices=("torch", "pytorch", "tensorflow", "tf", "jax"),
        help="framework of a zoo model (default torch)",
    )
    parser.add_argument(
        "--attack",
        default="alma",
        help="alma (default) or an attack of the benchmark's registry (ddn, fmn-l2, ...)",
    )
    parser.add_argument("--distance", default=None, help="ALMA's distance (default l2)")
    parser.add_argument("--steps", type=int, default=1000, help="attack steps (default 1000)")
    parser.add_argument("--alpha", type=float, help="ALMA's EMA weight (default: ALMA's)")
    parser.add_argument(
        "--init-lr-distance",
        type=_first_step,
        help="ALMA's first-step distance, or auto (default: the distance's)",
    )
    parser.add_argument("--targeted", action="store_true", help="attack towards the targets")
    parser.add_argument(
        "--epsilons", type=_floats, default=[], help="budgets for robust accuracy, e.g. 0.5,1,2"
    )
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--shard-size", type=int, help="samples per shard (default: batch size)")
    parser.add_argument("--threads", type=int, help="CPU threads (per Ray worker; default 1 there)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (PyTorch models)")
    parser.add_argument("--out", default=None, help="output folder (default evaluation/<model>)")
    parser.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run the shards on Ray: a local instance, or join ADDRESS (or RAY_ADDRESS)",
    )
    parser.add_argument("--workers", type=int, help="Ray tasks at a time")
    parser.add_argument("--force", action="store_true", help="recompute every shard")
    parser.add_argument("--save-adversarials", action="store_true", help="write adversarials.npz")
    parser.add_argument("--limit", type=int, help="at most this many samples")
    parser.add_argument("--offset", type=int, default=0, help="skip this many samples")
    parser.add_argument("--image-size", type=int, help="resize folder images to this size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def default_out(model: str, attack: str, distance: Optional[str], steps: int) -> str:
    stem = os.path.splitext(os.path.basename(model.split(":")[-1] if ":" in model else model))[0]
    what = attack if attack != "alma" else f"alma-{distance or 'l2'}"
    return os.path.join("evaluation", f"{stem}-{what}-{steps}")


def main(args: argparse.Namespace) -> int:
    framework = FRAMEWORK_ALIASES.get(args.framework, args.framework)
    if args.threads and not args.ray:
        for name in ("tensorflow", "jax"):
            if args.model.endswith(".keras") and name == "tensorflow" or framework == name:
                limit_threads_before_import(name, args.threads)
    out = args.out or default_out(args.model, args.attack, args.distance, args.steps)
    result = evaluate(
        args.model,
        args.data,
        attack=args.attack,
        distance=args.distance,
        steps=args.steps,
        alpha=args.alpha,
        init_lr_distance=args.init_lr_distance,
        targeted=args.targeted,
        epsilons=args.epsilons,
        batch_size=args.batch_size,
        shard_size=args.shard_size,
        threads=args.threads,
        device=args.device,
        out=out,
        ray=args.ray,
        workers=args.workers,
        force=args.force,
        save_adversarials=args.save_adversarials,
        limit=args.limit,
        offset=args.offset,
        image_size=args.image_size,
        bounds=args.bounds,
        framework=framework,
        seed=args.seed,
        progress=not args.no_progress,
    )
    summary = result.summary
    print(summary["title"])
    shards = summary["shards"]
    if shards["loaded"]:
        print(
            f"{shards['loaded']} of {shards['total']} shards loaded from {out}, "
            f"{shards['computed']} computed"
        )
    print(format_table(result))
    print(f"wrote {out}/samples.csv, summary.json, robust_accuracy.png, report.md")
    return 0
