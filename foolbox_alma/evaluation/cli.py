"""foolbox-alma evaluate: a robustness evaluation of your model over your data set.

Attacks every sample (ALMA by default), in batches, shard by shard, and writes to --out:
samples.csv (one row per input: index, [file,] label, [target,] clean and adversarial
predictions, success, minimal distance, inf where no adversarial was found), summary.json (ASR,
median, clean accuracy, robust accuracy at each --epsilons, counted passes per sample, seconds,
sanity flags, settings, the model's fingerprint, threads and device used, versions, machine),
robust_accuracy.png, report.md and, with --save-adversarials, adversarials.npz. A rerun with the
same settings recomputes only the shards that are missing (--force recomputes all); a rerun after
the model's weights changed never reuses the old results. Ctrl-C keeps every finished shard.
--ray spreads the shards over a local Ray instance or, with an address (or RAY_ADDRESS), over a
cluster.

Models (--model): a zoo name (smallcnn, colour-cnn, resnet18-cifar, ...), path/to/file.py:function
or package.module:function (a function of no arguments returning a Foolbox model of any framework,
or a bare torch.nn.Module or Keras model, wrapped with --bounds and --preprocessing), a TorchScript
.pt/.pth file, a Keras .keras/.h5 file or a TensorFlow SavedModel folder (the files with --bounds).
Data (--data): mnist-heldout (or another zoo held-out set), an .npz file with arrays x and y (and
targets), or a folder of images with one subfolder per class.
"""

import argparse
from typing import Tuple

from .._args import add_alma_options, bounds, number_list
from .._runtime import FRAMEWORK_ALIASES, limit_threads_before_import
from ..pipeline.result import format_table
from .run import AUTO, DEFAULT_ROOT, evaluate


def _sizes(text: str) -> Tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) not in (1, 2) or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"expected N (N x N pixels) or H,W, positive integers, got {text!r}"
        )
    return values


def _preprocessing(text: str) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or len(values) % 2:
        raise argparse.ArgumentTypeError(
            "expected MEAN,STD or one mean per channel then one std per channel (e.g. "
            f"0.485,0.456,0.406,0.229,0.224,0.225), got {text!r}"
        )
    half = len(values) // 2
    return tuple(values[:half]), tuple(values[half:])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options: the model and data, the attack, and how the run goes."""
    _add_input_arguments(parser)
    _add_attack_arguments(parser)
    _add_run_arguments(parser)


def _add_input_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "--model",
        required=True,
        help="model spec: a zoo name, file.py:function, "
        "package.module:function, a TorchScript .pt/.pth file, a Keras .keras/.h5 file or a "
        "SavedModel folder (see above)",
    )
    add(
        "--data",
        required=True,
        help="data spec: a zoo held-out set (mnist-heldout, ...), an "
        ".npz file with x and y (and targets), or a folder of class subfolders of images",
    )
    add(
        "--bounds",
        type=bounds,
        help="the model's input range LO,HI (e.g. 0,1 or 0,255): "
        "needed for model files and for a function that returns a bare network",
    )
    add(
        "--preprocessing",
        type=_preprocessing,
        metavar="MEAN,STD",
        help="normalisation "
        "applied before a network this command wraps (model files, bare networks): MEAN,STD, "
        "or the means of the channels then their stds (default: none)",
    )
    add(
        "--framework",
        choices=("torch", "pytorch", "tensorflow", "tf", "jax"),
        help="framework of a zoo model (default torch); other models bring their own",
    )


def _add_attack_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "--attack",
        default="alma",
        help="alma (default) or an attack of the registry (ddn, "
        "fmn-l2, fmn-l1, cw-l2, ead, adv_lib-alma-l2, ...)",
    )
    add_alma_options(parser, steps=1000)
    add(
        "--targeted",
        action="store_true",
        help="attack towards the data's targets, or class "
        "(label + 1) mod classes where it has none (default: untargeted)",
    )
    add(
        "--epsilons",
        type=number_list(float, "epsilons", minimum=0),
        default=[],
        help="budgets at which robust accuracy is reported, e.g. 0.5,1,2 (default: none)",
    )


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--batch-size", type=int, default=100, help="samples per attack call (default 100)")
    add(
        "--shard-size",
        type=int,
        help="samples per shard, the unit that is saved, resumed "
        "and sent to a Ray worker (default: the batch size)",
    )
    add(
        "--threads",
        type=int,
        help="CPU threads of the framework (default: its own; 1 per Ray worker)",
    )
    add(
        "--device",
        default=None,
        help="cpu, cuda or cuda:N: where the model must run (default: "
        "where it is; zoo models and TorchScript files on the CPU)",
    )
    add(
        "--out",
        default=None,
        help=f"output folder (default {DEFAULT_ROOT}/<model>-<data>-"
        "<attack>-<steps>-<digest>: named after the run, with 8 hex digits of its identity, so "
        "that different runs never share a folder)",
    )
    add(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run the shards on Ray: a local instance, or join ADDRESS (or RAY_ADDRESS)",
    )
    add("--workers", type=int, help="Ray tasks at a time (default: as many as the shards)")
    add(
        "--force",
        action="store_true",
        help="recompute every shard, and replace another run's results in --out",
    )
    add(
        "--save-adversarials",
        action="store_true",
        help="also write adversarials.npz (the returned points, in the data's layout)",
    )
    add("--limit", type=int, help="at most this many samples (default: all)")
    add("--offset", type=int, default=0, help="skip this many samples (default 0)")
    add(
        "--image-size",
        type=_sizes,
        metavar="N|H,W",
        help="resize the images of a folder to "
        "N x N or H x W pixels (default: as they are; they must then share one size)",
    )
    add(
        "--seed",
        type=int,
        default=0,
        help="the run's seed; shard i is seeded from (seed, i) (default 0)",
    )
    add("--no-progress", action="store_true", help="hide the progress bar")


def main(args: argparse.Namespace) -> int:
    framework = FRAMEWORK_ALIASES.get(args.framework, args.framework)
    if args.threads and not args.ray:
        for name in ("tensorflow", "jax"):  # (environment variables: nothing is imported)
            limit_threads_before_import(name, args.threads)
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
        out=args.out or AUTO,
        ray=args.ray,
        workers=args.workers,
        force=args.force,
        save_adversarials=args.save_adversarials,
        limit=args.limit,
        offset=args.offset,
        image_size=args.image_size,
        bounds=args.bounds,
        framework=framework,
        preprocessing=args.preprocessing,
        seed=args.seed,
        progress=not args.no_progress,
    )
    summary, out = result.summary, result.out
    print(summary["title"])
    shards = summary["shards"]
    if shards["loaded"]:
        print(
            f"{shards['loaded']} of {shards['total']} shards loaded from {out}, "
            f"{shards['computed']} computed"
        )
    print(format_table(result))
    for flag in summary["flags"]:
        print(f"warning: {flag['flag']}: {flag['seen']}. {flag['meaning']} {flag['advice']}")
    print(f"wrote {out}/samples.csv, summary.json, robust_accuracy.png, report.md")
    return 0
