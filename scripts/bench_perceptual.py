"""The paper's perceptual table on the colour zoo model (issue 10): ALMA with CIEDE2000, SSIM and
LPIPS against the authors' ALMA (adv_lib) on the same distances, and the L2 attacks (ALMA, DDN,
FMN), every attack's adversarials measured in every perceptual distance on the standard scale.

Runs ``foolbox-alma bench --measure ciede2000,ssim,lpips`` once per step budget (each resumable:
the bench saves every attack's result and skips it on a rerun) and, with ``--write``, puts the
reports into BENCHMARKS.md in place of the section whose title starts with ``--section``.

LPIPS needs ImageNet-trained AlexNet weights, which cannot be downloaded on an offline machine:
this script writes *random* AlexNet weights (seeded, torchvision's shapes and initialisation
bounds) as torchvision's cached checkpoint in ``--torch-home`` and points ``TORCH_HOME`` there,
so that our LPIPS and adv_lib's (which loads ``torchvision.models.alexnet(pretrained=True)``)
use the same backbone. Its LPIPS figures compare the attacks on one random-feature distance,
not on the perceptual metric of the paper. Our ALMA LPIPS runs at its default, the automatic
first step (``init_lr_distance="auto"``); one more row runs it with an explicit first step in
LPIPS's units near the LPIPS of minimal adversarials under these weights (``--lpips-small-step``,
1e-5; the paper's 0.01 is 1000 times larger). With real weights in ``~/.cache/torch``, pass
``--torch-home ''`` to use them.

MS-SSIM needs images of at least 161 x 161 pixels (five scales): the colour model's 32 x 32
images cannot be measured with it, so it has no rows here.

Needs adv-lib (the ``oracles`` tox env has it)::

    .tox/oracles/bin/python scripts/bench_perceptual.py --steps 100 --images 100 --write
"""

import argparse
import os
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np

ATTACKS = [
    "alma-ciede2000",
    "adv_lib-alma-ciede2000",
    "alma-ssim",
    "adv_lib-alma-ssim",
    "alma-lpips",
    "alma-lpips-small-step",
    "adv_lib-alma-lpips",
    "alma-l2",
    "ddn",
    "fmn-l2",
]
RULERS = "ciede2000,ssim,lpips"
CHECKPOINT = "alexnet-owt-7be5be79.pth"  # torchvision's file name for AlexNet's weights

# torchvision's AlexNet: (key prefix, weight shape); biases have the first dimension
ALEXNET = [
    ("features.0", (64, 3, 11, 11)),
    ("features.3", (192, 64, 5, 5)),
    ("features.6", (384, 192, 3, 3)),
    ("features.8", (256, 384, 3, 3)),
    ("features.10", (256, 256, 3, 3)),
    ("classifier.1", (4096, 256 * 6 * 6)),
    ("classifier.4", (4096, 4096)),
    ("classifier.6", (1000, 4096)),
]


def write_random_alexnet(torch_home: Path, seed: int) -> Path:
    """Random AlexNet weights as torchvision's cached checkpoint under ``torch_home``: PyTorch's
    default initialisation bounds (uniform in +-1/sqrt(fan_in), weights and biases), from a
    seeded NumPy generator, so the same seed gives the same file on every machine. Written to a
    temporary name and renamed, so an interrupted write never leaves a truncated checkpoint."""
    import torch

    path = torch_home / "hub" / "checkpoints" / CHECKPOINT
    stamp = path.with_suffix(".seed")
    if path.exists() and stamp.exists() and stamp.read_text() == str(seed):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    state: Dict[str, torch.Tensor] = {}
    for prefix, shape in ALEXNET:
        bound = 1.0 / np.sqrt(int(np.prod(shape[1:])))
        for kind, size in (("weight", shape), ("bias", shape[:1])):
            values = rng.uniform(-bound, bound, size=size).astype(np.float32)
            state[f"{prefix}.{kind}"] = torch.from_numpy(values)
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)
    stamp.write_text(str(seed))
    return path


LARGE = "large-colour"
"""``--model large-colour``: colour-cnn behind a 6 x 6 average pooling on its held-out images
upsampled to 192 x 192 (``scripts/large_colour_model.py``), for MS-SSIM."""


def model_options(args: argparse.Namespace, n: int) -> List[str]:
    """The bench's ``--model`` (and ``--data``) for ``args.model``: a zoo name as it is, or the
    large colour model with its data written next to the results."""
    if args.model != LARGE:
        return ["--model", args.model]
    sys.path.insert(0, str(Path(__file__).parent))
    from large_colour_model import write_data

    data = write_data(Path(f"{args.out}-data-{n}.npz"), n)
    model = os.path.relpath(Path(__file__).parent / "large_colour_model.py")
    return ["--model", f"{model}:build", "--data", str(data)]


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="colour-cnn")
    parser.add_argument("--steps", default="100,1000", help="budgets, comma-separated")
    parser.add_argument("--images", default="100", help="images per budget, comma-separated")
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument("--measure", default=RULERS)
    parser.add_argument(
        "--lpips-small-step",
        type=float,
        default=1e-5,
        help="init_lr_distance of the extra row alma-lpips-small-step (the LPIPS of minimal "
        "adversarials under random AlexNet weights is about 1e-5, 1000 times below the paper's "
        "0.01)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random AlexNet")
    parser.add_argument("--torch-home", default="bench_results/torch_home_random_alexnet")
    parser.add_argument("--out", default="bench_results/perceptual-colour")
    parser.add_argument("--write", action="store_true", help="splice into BENCHMARKS.md")
    parser.add_argument("--section", default="Perceptual table")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    budgets = [int(s) for s in args.steps.split(",")]
    images = [int(n) for n in args.images.split(",")]
    if len(images) == 1:
        images *= len(budgets)
    if len(images) != len(budgets):
        parser.error("--images takes one count, or one per budget")
    if args.torch_home:
        os.environ["TORCH_HOME"] = str(Path(args.torch_home).resolve())
        write_random_alexnet(Path(args.torch_home), args.seed)

    import shutil

    from foolbox_alma.bench import report
    from foolbox_alma.bench.cli import run_cli
    from foolbox_alma.registry import register_alma_distance

    register_alma_distance(
        "lpips",
        init_lr_distance=args.lpips_small_step,
        name="alma-lpips-small-step",
        label=f"ALMA (init_lr_distance {args.lpips_small_step:g})",
    )

    sections = []
    for steps, n in zip(budgets, images):
        out = f"{args.out}-{steps}"
        weights = (
            f"random AlexNet weights (seed {args.seed}, scripts/bench_perceptual.py)"
            if args.torch_home
            else "AlexNet weights from the torch cache"
        )
        title = (
            f"{args.section}: ALMA perceptual against adv_lib's ALMA and the L2 attacks, "
            f"{args.model}, {n} images, {steps} steps (LPIPS: {weights})"
        )
        command = (
            model_options(args, n)
            + [
                "--attacks",
                args.attacks,
                "--measure",
                args.measure,
                "--steps",
                str(steps),
                "--images",
                str(n),
                "--floor-passes",
                "0",
                "--threads",
                str(args.threads),
                "--out",
                out,
                "--title",
                title,
            ]
            + (["--no-progress"] if args.no_progress else [])
        )
        code = run_cli(command)
        if code:
            return code
        run, _ = report.load_run(out)
        run.info["command"] = (
            f"python scripts/bench_perceptual.py --model {args.model} --steps {steps} "
            f"--images {n} --seed {args.seed} --out {args.out}"
        )
        suffix = "" if args.model == "colour-cnn" else f"-{args.model}"
        figure = Path("docs") / f"bench_perceptual{suffix}-{steps}.png"
        shutil.copyfile(Path(out) / "robust_accuracy.png", figure)
        sections.append(report.markdown_report(run, title, figure=str(figure)))
    if args.write:
        report.splice_section(Path("BENCHMARKS.md"), args.section, "\n".join(sections))
        print("wrote BENCHMARKS.md")
    else:
        print("\n".join(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
