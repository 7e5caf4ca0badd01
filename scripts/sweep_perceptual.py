"""Calibration sweep of ALMA's step-size defaults on colour images (issue 10).

For each distance and step budget, runs ALMA (through the evaluation engine, in this process) on
held-out images of a colour zoo model at a grid of ``init_lr_distance`` values and records the
ASR and the median distance *on the standard scale* (failures as +inf); CIEDE2000 also runs on
adv_lib's scale (``CIEDE2000(adv_lib_scale=True)``, the paper's 0.05 and its grid), its
adversarials measured with the standard CIEDE2000. A second part sweeps ``alpha`` at an
intermediate budget (L2), where ALMA's default follows the budget between the paper's two points.

Writes ``sweep.json`` (every run: settings, ASR, median, seconds) and ``sweep.png`` (median and
ASR against init_lr_distance, one panel per distance and budget) into ``--out``. Each run is
cached in ``--out/runs`` by the engine, so an interrupted sweep resumes.

    python scripts/sweep_perceptual.py --model colour-cnn --images 100 --out bench_results/sweep
"""

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

GRIDS = {
    "ciede2000": [0.05, 0.1, 0.2, 0.5, 1.0, 2.0],
    "ciede2000-adv_lib": [0.01, 0.02, 0.05, 0.1, 0.2],
    "ssim": [1e-5, 1e-4, 1e-3, 1e-2],
    "msssim": [1e-5, 1e-4, 1e-3, 1e-2],
    "lpips": [1e-5, 1e-4, 1e-3, 1e-2],
}
ALPHAS = [0.5, 0.6, 0.7, 0.77, 0.85, 0.9]


def ruler(name: str) -> str:
    """The standard distance an attack's adversarials are measured with."""
    from foolbox_alma.registry import STANDARD_RULER

    return STANDARD_RULER.get(name, name)


def run_one(
    model: str, data: Any, distance: str, steps: int, init: float, alpha: Any, out: str
) -> Dict[str, Any]:
    from foolbox_alma import metrics
    from foolbox_alma.distances import get_distance
    from foolbox_alma.evaluation import evaluate
    from foolbox_alma.pipeline.engine import measure
    from foolbox_alma.pipeline.models import model_of, parse_model_spec

    spec = parse_model_spec(model)
    start = time.perf_counter()
    result = evaluate(
        spec,
        data,
        distance=get_distance(distance),  # "ciede2000-adv_lib": CIEDE2000(adv_lib_scale=True)
        steps=steps,
        init_lr_distance=init,
        alpha=alpha,
        batch_size=100,
        threads=1,
        keep_adversarials=True,
        save_adversarials=True,
        out=os.path.join(out, "runs", f"{distance}-{steps}-{init:g}-{alpha}"),
        progress=False,
    )
    fmodel = model_of(spec)
    from foolbox_alma._runtime import to_native

    x = to_native(fmodel, data[0])
    adv = to_native(fmodel, result.adversarials)
    standard = measure(ruler(distance), fmodel, x, adv)
    return {
        "distance": distance,
        "steps": steps,
        "init_lr_distance": init,
        "alpha": result.summary["settings"]["attack"]["alpha"],
        "asr": result.asr,
        "median": metrics.median_distance(standard, result.success),
        "median_own_scale": result.median,
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="colour-cnn")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--images-1000", type=int, default=50, help="images at 1000 steps")
    parser.add_argument("--distances", default="ciede2000,ciede2000-adv_lib,ssim")
    parser.add_argument("--steps", default="100,1000")
    parser.add_argument("--grid", default=None, help="subset of the grid at every budget")
    parser.add_argument("--grid-1000", default=None, help="subset of the grid at 1000 steps")
    parser.add_argument("--alpha-steps", type=int, default=300)
    parser.add_argument("--out", default="bench_results/sweep")
    parser.add_argument(
        "--random-alexnet",
        metavar="TORCH_HOME",
        help="for lpips offline: write seeded random AlexNet weights as torchvision's cached "
        "checkpoint there (scripts/bench_perceptual.py) and use them; a sweep with them shows "
        "how the step size relates to that distance's scale, not the real LPIPS's",
    )
    args = parser.parse_args()
    if args.random_alexnet:
        from bench_perceptual import write_random_alexnet

        os.environ["TORCH_HOME"] = os.path.abspath(args.random_alexnet)
        write_random_alexnet(Path(args.random_alexnet), seed=0)

    import torch

    from foolbox_alma import zoo

    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    runs: List[Dict[str, Any]] = []
    budgets = [int(s) for s in args.steps.split(",") if s]
    for steps in budgets:
        n = args.images if steps <= 100 else args.images_1000
        x, y = zoo.load_heldout(args.model, n)
        for distance in [d for d in args.distances.split(",") if d]:
            grid = GRIDS[distance]
            for subset in (args.grid, args.grid_1000 if steps > 100 else None):
                if subset:
                    wanted = [float(v) for v in subset.split(",")]
                    grid = [g for g in grid if any(np.isclose(g, w) for w in wanted)] or grid
            for init in grid:
                record = run_one(args.model, (x, y), distance, steps, init, None, args.out)
                record["images"] = n
                runs.append(record)
                print(json.dumps(record))
    if args.alpha_steps:
        x, y = zoo.load_heldout(args.model, args.images)
        for alpha in ALPHAS:
            record = run_one(args.model, (x, y), "l2", args.alpha_steps, 0.1, alpha, args.out)
            record["images"] = args.images
            runs.append(record)
            print(json.dumps(record))
    report = {
        "measured": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "model": args.model,
        "args": vars(args),
        "runs": runs,
    }
    with open(os.path.join(args.out, "sweep.json"), "w") as f:
        json.dump(report, f, indent=1, default=float)
    plot(report, os.path.join(args.out, "sweep.png"))
    with open(os.path.join(args.out, "sweep.md"), "w") as f:
        f.write(markdown(report) + "\n")
    print(markdown(report))


def markdown(report: Dict[str, Any]) -> str:
    """The sweep as Markdown tables: per distance and budget, ASR and median (standard scale)."""
    lines = [
        f"Measured {report['measured']}: `python scripts/sweep_perceptual.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in report["args"].items() if v is not None
        )
        + "`",
        "",
        "| distance (attack's scale) | steps | images | init_lr_distance | alpha | ASR (%) "
        "| median, standard scale | median, attack's scale |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["runs"]:
        median = f"{r['median']:.4g}" if np.isfinite(r["median"]) else "-"
        own = f"{r['median_own_scale']:.4g}" if np.isfinite(r["median_own_scale"]) else "-"
        lines.append(
            f"| {r['distance']} | {r['steps']} | {r['images']} | {r['init_lr_distance']:g} "
            f"| {r['alpha']:.3g} | {100 * r['asr']:.0f} | {median} | {own} |"
        )
    return "\n".join(lines)


def plot(report: Dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in report["runs"] if r["distance"] != "l2"]
    rulers = sorted({ruler(r["distance"]) for r in runs})
    budgets = sorted({r["steps"] for r in runs})
    alpha_runs = [r for r in report["runs"] if r["distance"] == "l2"]
    columns = len(budgets) + (1 if alpha_runs else 0)
    fig, axes = plt.subplots(
        len(rulers), columns, figsize=(4.6 * columns, 3.4 * len(rulers)), squeeze=False
    )
    for i, name in enumerate(rulers):
        for j, steps in enumerate(budgets):
            ax = axes[i, j]
            twin = ax.twinx()
            for distance in sorted({r["distance"] for r in runs if ruler(r["distance"]) == name}):
                rs = sorted(
                    (r for r in runs if r["distance"] == distance and r["steps"] == steps),
                    key=lambda r: r["init_lr_distance"],
                )
                if not rs:
                    continue
                inits = [r["init_lr_distance"] for r in rs]
                medians = [r["median"] if np.isfinite(r["median"]) else np.nan for r in rs]
                line = ax.plot(inits, medians, "o-", label=f"{distance}: median")[0]
                twin.plot(
                    inits,
                    [100 * r["asr"] for r in rs],
                    "x:",
                    color=line.get_color(),
                    label=f"{distance}: ASR",
                )
            ax.set_xscale("log")
            ax.set_xlabel("init_lr_distance (attack's own scale)")
            ax.set_ylabel(f"median {name} (standard scale)")
            twin.set_ylabel("ASR (%)")
            twin.set_ylim(0, 105)
            ax.set_title(f"{name}, {steps} steps", fontsize=9)
            ax.set_ylim(bottom=0)
            ax.grid(True, linestyle="--", color="lightgray")
            lines = ax.get_lines() + twin.get_lines()
            ax.legend(
                lines,
                [line.get_label() for line in lines],
                fontsize=6,
                loc="lower left",
                framealpha=0.6,
            )
        for j in range(len(budgets), columns):
            if i:
                axes[i, j].axis("off")
    if alpha_runs:
        ax = axes[0, -1]
        rs = sorted(alpha_runs, key=lambda r: r["alpha"])
        ax.plot([r["alpha"] for r in rs], [r["median"] for r in rs], "o-")
        ax.set_xlabel("alpha")
        ax.set_ylabel("median L2")
        ax.set_title(f"L2, {rs[0]['steps']} steps: alpha", fontsize=9)
        ax.grid(True, linestyle="--", color="lightgray")
    fig.suptitle(f"ALMA step-size sweep on {report['model']} ({report['measured']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
