"""``foolbox-alma bench`` (also ``python -m foolbox_alma.bench``): ALMA against its peers.

Runs ALMA and the baselines (Foolbox's DDN, FMN L1/L2, C&W L2, EAD; the authors' adv_lib ALMA, DDN
and FMN when adv-lib is installed) on a shipped model and held-out MNIST images, and writes to
``--out``: ``table.md`` (the paper's columns: ASR, median distance with failures as +inf, counted
forwards/backwards per image, seconds; plus the time over plain forward+backward passes and
AttackBench's optimality), ``results.json`` (per-image distances and all settings),
``robust_accuracy.png`` (one panel per distance) and ``report.md``. Every attack's result is also
saved under ``--out``/attacks/, and a rerun with the same settings skips it (``--force`` reruns).
``--measure ciede2000,ssim,lpips`` also measures every attack's adversarials in those distances
and adds a table of medians per distance: the paper's perceptual table, with the L2 attacks and
adv_lib's CIEDE2000 and LPIPS runs (on their own scales) measured on the standard ones.

Presets: ``quick`` (200 images, 100 steps, a few minutes on 2 CPU cores) and ``paper`` (1000
images, 100 and 1000 steps: hours on a CPU; resumable). Explicit flags override the preset.
``--collect DIR ... --write BENCHMARKS.md`` assembles the reports of finished runs.
"""

import argparse
import shlex
import sys
from typing import Any, Dict, List, Optional, Tuple

from .. import zoo
from .._args import bounds, name_list, number_list
from .._io import plain_text
from .._runtime import limit_threads_before_import, to_native
from ..pipeline.data import load_data
from ..pipeline.models import parse_model_spec
from ..registry import ATTACKS, GROUPS
from . import report
from .runner import run_benchmark

PRESETS: Dict[str, Dict[str, Any]] = {
    "quick": {"images": 200, "steps": [100], "floor_passes": 200, "out": "bench_results/quick"},
    "paper": {
        "images": 1000,
        "steps": [100, 1000],
        "floor_passes": 200,
        "out": "bench_results/paper",
    },
}
DEFAULTS: Dict[str, Any] = {"images": 200, "steps": [100], "floor_passes": None}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=sorted(PRESETS), help="quick or paper settings")
    parser.add_argument(
        "--model",
        default="smallcnn",
        help="model spec, as foolbox-alma evaluate takes it: a zoo name (default smallcnn), "
        "file.py:function, package.module:function, a .pt or .keras file (with --bounds)",
    )
    parser.add_argument(
        "--data",
        default=None,
        help="data spec, as foolbox-alma evaluate takes it (default: a zoo model's held-out "
        "images, <model>-heldout)",
    )
    parser.add_argument(
        "--bounds", type=bounds, help="input bounds LO,HI of a model file or bare network"
    )
    parser.add_argument(
        "--framework",
        default=None,
        choices=("torch", "pytorch", "tensorflow", "tf", "jax"),
        help="framework of a zoo model (default torch); other models bring their own",
    )
    parser.add_argument(
        "--attacks",
        type=name_list,
        help="comma-separated attacks or groups (all, l1, l2, alma, ours, foolbox, adv_lib); "
        "default: every attack available on the framework",
    )
    parser.add_argument(
        "--measure",
        type=name_list,
        default=[],
        help="comma-separated distances every attack's adversarials are also measured in "
        "(e.g. ciede2000,ssim,lpips: the L2 attacks in the perceptual distances, adv_lib's "
        "CIEDE2000 on the standard scale); adds a table of medians per distance",
    )
    parser.add_argument("--images", type=int, help="held-out images (max 1000; preset: 200)")
    parser.add_argument("--offset", type=int, default=0, help="first held-out image")
    parser.add_argument(
        "--steps",
        type=number_list(int, "step budgets", minimum=1),
        help="step budget(s), comma-separated (preset: 100)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=1000, help="images per attack call (default 1000)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="the run's seed: every attack runs seeded from it"
    )
    parser.add_argument("--out", help="output folder (default bench_results/<preset or run>)")
    parser.add_argument(
        "--floor-passes",
        type=int,
        help="at most this many plain forward+backward passes timed per batch (half before, "
        "half after the attack; presets: 200; else as many as the attack's budget; 0: none, "
        "which halves the run time and leaves the time ratio out)",
    )
    parser.add_argument(
        "--timing",
        choices=("auto", "steps", "around"),
        default="auto",
        help="how the floor passes are interleaved: between attack steps (steps, PyTorch), "
        "around each batch (around), or steps where possible (auto, default)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="CPU threads of the framework (default: its own choice; on cores shared with "
        "other jobs 1 can be much faster)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="run every attack this many times (round-robin) and report the median time ratio "
        "with its range",
    )
    _add_report_arguments(parser)


def _add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the report and of --collect."""
    parser.add_argument("--title", help="section title in the report")
    parser.add_argument("--force", action="store_true", help="rerun attacks already saved")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument(
        "--list", action="store_true", help="list the attacks and groups, then exit"
    )
    parser.add_argument(
        "--collect",
        nargs="+",
        metavar="DIR",
        help="instead of running: gather the reports of these output folders",
    )
    parser.add_argument(
        "--write", default="BENCHMARKS.md", help="file --collect writes (default BENCHMARKS.md)"
    )
    parser.add_argument("--notes", help="Markdown file --collect puts after the preamble")
    parser.add_argument(
        "--figures-dir",
        default="docs",
        help="folder --collect copies the PNGs into (default docs; '' for none)",
    )


def main(args: argparse.Namespace) -> int:
    if args.list:
        for spec in ATTACKS.values():
            print(f"{spec.name:22s} {spec.label:5s} {spec.distance:17s} {spec.source}")
        print("groups:", ", ".join(GROUPS))
        return 0
    if args.collect:
        figures = args.figures_dir or None
        report.collect(args.collect, args.write, figures_dir=figures, notes=args.notes)
        print(f"wrote {args.write}")
        return 0

    settings = dict(PRESETS[args.preset] if args.preset else DEFAULTS)
    for name in ("images", "steps", "floor_passes", "out"):
        value = getattr(args, name)
        if value is not None:
            settings[name] = value
    out = settings.get("out") or "bench_results/run"
    images = settings["images"]
    data = args.data or f"{args.model}-heldout"
    if data.endswith("-heldout") and not 1 <= images <= 1000 - args.offset:
        raise ValueError(f"--images must be between 1 and {1000 - args.offset}, got {images}")

    if args.threads:
        limit_threads_before_import(args.framework or "pytorch", args.threads)
    fmodel, x, y = load_model_and_images(
        args.model, args.framework, images, args.offset, data, args.bounds
    )
    command = _command(args)
    run = run_benchmark(
        fmodel,
        x,
        y,
        attacks=args.attacks,
        steps=settings["steps"],
        batch_size=args.batch_size,
        seed=args.seed,
        out=out,
        resume=not args.force,
        floor_passes=settings["floor_passes"],
        timing=args.timing,
        threads=args.threads,
        repeats=args.repeats,
        progress=not args.no_progress,
        model_name=args.model,
        measure=args.measure,
        info={
            "command": command,
            "data": _describe_data(data, args.offset, images),
        },
    )
    steps = "/".join(str(s) for s in settings["steps"])
    title = args.title or (
        f"{args.model} ({run.info['framework']}), {images} images, {steps} steps"
    )
    paths = report.write_outputs(run, out, title)
    print(report.format_table(run))
    measured = report.format_measured_table(run)
    if measured:
        print()
        print(measured)
    for note in report.findings(run) + report.measured_findings(run):
        print("*", note)
    print("wrote", ", ".join(str(p) for p in paths.values()))
    return 0


def _describe_data(data: str, offset: int, images: int) -> str:
    if data.endswith("-heldout"):
        name = data[: -len("-heldout")]
        name = zoo.HELDOUT_DATA.get(name, name)
        if "mnist" not in name:  # resnet50-imagenet: Foolbox's ImageNet samples, its own labels
            return (
                f"{name} images {offset}..{offset + images - 1} (Foolbox's ImageNet samples, "
                "labelled with the model's own predictions)"
            )
        first = 9000 + offset
        return (
            f"{name.replace('mnist', 'MNIST')} t10k images {first}..{first + images - 1}, "
            "never seen in training"
        )
    return f"{data}, samples {offset}..{offset + images - 1}"


def load_model_and_images(
    model: str,
    framework: Optional[str],
    images: int,
    offset: int = 0,
    data: str = "mnist-heldout",
    bounds: Optional[Tuple[float, float]] = None,
) -> Any:
    """The model of a spec as a Foolbox model and the data's images and labels as native tensors
    (the evaluation engine's model and data specs)."""
    fmodel = parse_model_spec(model, framework=framework, bounds=bounds).load()
    data_format = getattr(fmodel, "data_format", None) or "channels_first"
    dataset = load_data(
        data,
        data_format=data_format,
        limit=images,
        offset=offset,
        bounds=(fmodel.bounds[0], fmodel.bounds[1]),
    )
    if len(dataset.y) < images:
        raise ValueError(f"--images {images}: {data!r} holds {len(dataset.y)} from {offset}")
    return fmodel, to_native(fmodel, dataset.x), to_native(fmodel, dataset.y)


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run (the options that differ from the defaults)."""
    defaults = build_parser()
    parts = ["foolbox-alma", "bench"]
    for action in defaults._actions:
        if not action.option_strings or action.dest in (
            "help",
            "list",
            "collect",
            "write",
            "notes",
        ):
            continue
        value = getattr(args, action.dest, None)
        if value is None or value == action.default or action.dest == "figures_dir":
            continue
        flag = action.option_strings[0]
        if isinstance(value, bool):
            parts.append(flag)
        elif isinstance(value, list):
            parts += [flag, ",".join(str(v) for v in value)]
        else:
            parts += [flag, str(value)]
    return " ".join(shlex.quote(p) for p in parts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m foolbox_alma.bench",
        description=plain_text(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return parser


def run_cli(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m foolbox_alma.bench``."""
    args = build_parser().parse_args(argv)
    try:
        return main(args)
    except (ValueError, ImportError) as error:
        print(f"foolbox-alma bench: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run_cli())
