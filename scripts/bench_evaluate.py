"""Benchmark of the evaluation engine: what it costs over calling ALMA directly, and what Ray buys.

Three ways to attack the same held-out images with the same ALMA settings, measured side by side
in one run (each wall-clock, start to finish):

* ``direct``: ``ALMA.run`` called on each batch in this process (framework seeded per batch with
  the engine's derived seeds), nothing else: the baseline;
* ``engine``: :func:`foolbox_alma.evaluate` in this process, with its output folder (shards
  written, results merged, CSV/JSON/PNG/report written), the same batches and seeds;
* ``ray``: the same evaluation on a local Ray instance with ``--workers`` workers of
  ``--threads`` threads each, start-up of the instance included (reported separately too).

Prints a table and the ratios (engine overhead = engine / direct - 1; Ray throughput ratio =
engine time / Ray time), checks that the three give identical adversarial distances, and writes
the table and the settings as JSON (``--json``) and Markdown (``--markdown``).

Comparing separate runs measures the engine's overhead only as well as the machine holds its speed
from one run to the next (on a shared 2-core machine, to within about 10%). So each in-process run
is also accounted for within itself: the time spent inside ``ALMA.run`` is summed (a timer around
the method) and the run's overhead is its wall-clock time over that sum, minus 1; a drift of the
machine's speed scales both alike.

    python scripts/bench_evaluate.py --images 1000 --steps 100 --threads 1 --workers 2
"""

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from typing import Any, Dict

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smallcnn")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="direct and engine runs each")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--json", default=None)
    parser.add_argument("--markdown", default=None)
    parser.add_argument(
        "--counting-ab",
        action="store_true",
        help="instead: what counting the passes costs inside ALMA.run (each batch attacked "
        "through the counted and the plain model, alternating which goes first)",
    )
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if args.counting_ab:
        counting_ab(args)
        return

    import foolbox as fb
    import torch

    from foolbox_alma import ALMA, zoo
    from foolbox_alma._runtime import derived_seed, seed_framework
    from foolbox_alma.evaluation import evaluate

    inside = {"seconds": 0.0}
    alma_run = ALMA.run

    def timed_run(self: Any, *a: Any, **k: Any) -> Any:
        start = time.perf_counter()
        try:
            return alma_run(self, *a, **k)  # (CPU: the result is ready when it returns)
        finally:
            inside["seconds"] += time.perf_counter() - start

    ALMA.run = timed_run  # type: ignore[method-assign]

    torch.set_num_threads(args.threads)
    x, y = zoo.load_mnist_heldout(args.images)
    fmodel = zoo.foolbox_model("pytorch", args.model)
    attack = ALMA(distance="l2", steps=args.steps)

    def run_direct() -> np.ndarray:
        direct = []
        for k, lo in enumerate(range(0, args.images, args.batch_size)):
            seed_framework("pytorch", derived_seed(0, k))
            xb = torch.from_numpy(x[lo : lo + args.batch_size])
            yb = torch.from_numpy(y[lo : lo + args.batch_size])
            direct.append(attack.run(fmodel, xb, fb.criteria.Misclassification(yb)).numpy())
        return np.concatenate(direct).astype(np.float64)

    common = dict(
        data="mnist-heldout",
        limit=args.images,
        distance="l2",
        steps=args.steps,
        batch_size=args.batch_size,
        threads=args.threads,
        progress=True,
        force=True,
    )
    scratch = tempfile.mkdtemp(prefix="bench_evaluate_")
    times: Dict[str, list] = {"direct": [], "engine": []}
    in_alma: Dict[str, list] = {"direct": [], "engine": []}
    results: Dict[str, Any] = {}
    # ABBA order (direct, engine, engine, direct, ...): a drift of the machine's speed during
    # the run affects both sides alike
    order = []
    for repeat in range(args.repeats):
        order += ["direct", "engine"] if repeat % 2 == 0 else ["engine", "direct"]
    try:
        for name in order:
            inside["seconds"] = 0.0
            start = time.perf_counter()
            if name == "direct":
                adv = run_direct()
            else:
                results["engine"] = evaluate(
                    args.model, out=os.path.join(scratch, "engine"), **common
                )
            times[name].append(time.perf_counter() - start)
            in_alma[name].append(inside["seconds"])
        engine = results["engine"]
        if not args.skip_ray:
            start = time.perf_counter()
            on_ray = evaluate(
                args.model,
                out=os.path.join(scratch, "ray"),
                ray=True,
                workers=args.workers,
                **common,
            )
            seconds = time.perf_counter() - start
            startup = on_ray.summary["execution"]["ray_startup_seconds"]
            times["ray"] = [seconds]
            results["ray"] = on_ray
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    rows: Dict[str, Dict[str, Any]] = {
        name: {"seconds": float(np.mean(values)), "runs": values} for name, values in times.items()
    }
    for name, values in in_alma.items():
        rows[name]["in_alma_runs"] = values
        rows[name]["over_own_alma"] = [t / a - 1 for t, a in zip(times[name], values)]
    if "ray" in rows:
        rows["ray"]["startup_seconds"] = startup
    direct_norms = np.linalg.norm((adv - x).reshape(len(x), -1), axis=1)

    success = engine.success
    identical = {
        name: bool(
            np.array_equal(r.distance, engine.distance)
            and np.array_equal(r.success, engine.success)
        )
        for name, r in results.items()
    }
    identical["direct"] = bool(
        np.allclose(engine.distance[success], direct_norms[success], rtol=1e-12, atol=0)
    )
    base = rows["direct"]["seconds"]
    for row in rows.values():
        row["images_per_second"] = args.images / row["seconds"]
        row["over_direct"] = row["seconds"] / base
    report = {
        "measured": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": "python scripts/bench_evaluate.py "
        + " ".join(
            f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}")
            for k, v in vars(args).items()
            if v not in (None, False) and k not in ("json", "markdown")
        ),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()}",
        "settings": vars(args),
        "rows": rows,
        "engine_overhead": rows["engine"]["seconds"] / base - 1,
        "engine_overhead_in_run": float(sum(times["engine"]) / sum(in_alma["engine"]) - 1),
        "direct_overhead_in_run": float(sum(times["direct"]) / sum(in_alma["direct"]) - 1),
        "ray_throughput_ratio": rows["engine"]["seconds"] / rows["ray"]["seconds"]
        if "ray" in rows
        else None,
        "ray_throughput_ratio_after_startup": rows["engine"]["seconds"]
        / (rows["ray"]["seconds"] - rows["ray"]["startup_seconds"])
        if "ray" in rows
        else None,
        "identical_results": identical,
        "order": order,
        "median_l2": engine.median,
    }
    text = markdown(report, args)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")


def counting_ab(args: argparse.Namespace) -> None:
    """The cost of the engine's pass counting (hooks on the model) inside the attack: ALMA.run on
    every batch through the counted model and through the plain one, in alternating order, so
    that a drift of the machine's speed hits both alike; the per-batch time ratios."""
    import torch

    from foolbox_alma import ALMA, zoo
    from foolbox_alma.counting import counted_model

    torch.set_num_threads(args.threads)
    x, y = zoo.load_mnist_heldout(args.images)
    fmodel = zoo.foolbox_model("pytorch", args.model)
    attack = ALMA(distance="l2", steps=args.steps)
    times: Dict[str, list] = {"plain": [], "counted": []}
    for k, lo in enumerate(range(0, args.images, args.batch_size)):
        xb = torch.from_numpy(x[lo : lo + args.batch_size])
        yb = torch.from_numpy(y[lo : lo + args.batch_size])
        for name in ("plain", "counted") if k % 2 == 0 else ("counted", "plain"):
            torch.manual_seed(k)
            if name == "plain":
                start = time.perf_counter()
                attack.run(fmodel, xb, yb)
            else:
                with counted_model(fmodel) as (model, _, _):
                    start = time.perf_counter()
                    attack.run(model, xb, yb)
            times[name].append(time.perf_counter() - start)
    ratios = np.array(times["counted"]) / np.array(times["plain"])
    print(
        f"Measured {time.strftime('%Y-%m-%d %H:%M:%S %Z')}: `python scripts/bench_evaluate.py "
        f"--counting-ab --images {args.images} --steps {args.steps} --batch-size "
        f"{args.batch_size} --threads {args.threads}`: ALMA.run through the counted model over "
        f"the plain one, {len(ratios)} batches: total {sum(times['counted']):.1f} s vs "
        f"{sum(times['plain']):.1f} s ({100 * (sum(times['counted']) / sum(times['plain']) - 1):+.2f}%), "
        f"per-batch median {100 * (np.median(ratios) - 1):+.2f}% "
        f"[{100 * (ratios.min() - 1):+.1f}%, {100 * (ratios.max() - 1):+.1f}%]"
    )


def markdown(report: Dict[str, Any], args: argparse.Namespace) -> str:
    rows = report["rows"]
    lines = [
        f"Measured {report['measured']} on {report['machine']}: `{report['command']}` "
        f"({args.images} held-out images, ALMA L2 {args.steps} steps, batch {args.batch_size}, "
        f"{args.model}, PyTorch CPU).",
        "",
        f"Direct and engine ran {args.repeats} times each in ABBA order (mean seconds; each "
        "run in brackets); Ray once.",
        "",
        "| run | seconds | images / s | time / direct |",
        "|---|---|---|---|",
    ]
    names = {
        "direct": f"ALMA called directly, in-process, {args.threads} thread",
        "engine": f"evaluate(), in-process, {args.threads} thread",
        "ray": f"evaluate(ray=True), local Ray, {args.workers} workers x {args.threads} thread"
        " (start-up included)",
    }
    for name, row in rows.items():
        lines.append(
            f"| {names[name]} | {row['seconds']:.1f} "
            f"[{', '.join(f'{v:.1f}' for v in row['runs'])}] | {row['images_per_second']:.2f} "
            f"| {row['over_direct']:.3f} |"
        )
    lines.append("")
    lines.append(
        f"* engine overhead over direct ALMA (separate runs): {100 * report['engine_overhead']:+.2f}%"
    )
    lines.append(
        "* engine overhead within its own runs (wall-clock over the time inside `ALMA.run`): "
        f"{100 * report['engine_overhead_in_run']:+.2f}% (runs: "
        + ", ".join(f"{100 * v:+.2f}%" for v in rows["engine"]["over_own_alma"])
        + f"; the direct loop's own, likewise: {100 * report['direct_overhead_in_run']:+.2f}%)"
    )
    if report["ray_throughput_ratio"] is not None:
        lines.append(
            f"* Ray throughput over in-process: {report['ray_throughput_ratio']:.2f}x "
            f"({report['ray_throughput_ratio_after_startup']:.2f}x without the "
            f"{rows['ray']['startup_seconds']:.1f} s of Ray start-up)"
        )
    lines.append(f"* identical per-sample results: {report['identical_results']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
