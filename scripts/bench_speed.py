"""The speed section of the benchmark: what one ALMA attack costs over the model's own passes.

ALMA's step is one forward and one backward pass of the model plus the distance's own value and
gradient, so on a real network its time should be the network's. For one model, framework and
batch, this runs, interleaved round by round in one process:

* the floor: ``steps`` plain forward+backward passes (gradient of a cross-entropy loss with
  respect to the inputs, through the same Foolbox model: ``foolbox_alma.timing.floor_pass``,
  compiled on TensorFlow and JAX as ALMA's steps are);
* ALMA (ours) with each distance, ``steps`` steps, one attack object per distance for the whole
  run: on TensorFlow and JAX its step is traced and compiled once per process, in the first
  round, and that time is part of the amortised ratio;
* on PyTorch, where adv-lib is installed, the authors' ALMA with the same distance and settings;

and prints, per distance, the median ratio to the floor over the rounds with its range, the
amortised ratio (all rounds' time over all rounds' floor), and seconds. ``--memory`` also runs
the floor and each attack once more in their own child processes and prints the peak resident
memory of each above the floor's, in copies of the input batch.

Models: a zoo name (``resnet18-cifar``, ``smallcnn``, ``colour-cnn``, ``resnet50-imagenet`` (224 x
224, in every framework), ...) with its held-out images, or a network from the frameworks' own
libraries with random weights on 224 x 224 random images:
``keras-resnet50`` (``keras.applications.ResNet50``, TensorFlow) or ``torchvision-resnet50``
(PyTorch; needs torchvision, which does not import beside the CPU build of PyTorch: run it where
torchvision is installed, e.g. the ``oracles`` env).

    python scripts/bench_speed.py --framework pytorch --model resnet18-cifar --batch 32 --steps 20
    python scripts/bench_speed.py --framework tensorflow --model resnet18-cifar --steps 100
    python scripts/bench_speed.py --framework pytorch --model smallcnn --batch 200 --threads 1
    python scripts/bench_speed.py --model resnet50-imagenet --batch 4 --steps 10 --distances l2 --memory

``FOOLBOX_ALMA_GENERIC_DISTANCES=1`` times the distances' generic EagerPy code on PyTorch instead
of their fast paths. ``--collect`` renders BENCHMARKS.md's section from the runs' ``--json``
records.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Tuple

import eagerpy as ep
import numpy as np

DISTANCES = ("l2", "ciede2000", "ssim")
ADV_LIB_INIT = {"l1": 0.5, "l2": 0.1, "ciede2000": 0.05, "ssim": 1e-4, "lpips": 0.01}


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framework", default="pytorch", choices=("pytorch", "tensorflow", "jax"))
    parser.add_argument("--model", default="resnet18-cifar")
    parser.add_argument("--batch", type=int, default=32, help="images per attack call")
    parser.add_argument("--steps", type=int, default=20, help="steps per attack run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--distances", default=",".join(DISTANCES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-adv-lib", action="store_true", help="leave adv_lib's ALMA out")
    parser.add_argument("--memory", action="store_true", help="also the peak memory, per run")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall-clock time (what a user waits) or this process's CPU time, all its threads "
        "(steadier on a machine shared with other jobs; run with OMP_WAIT_POLICY=PASSIVE so "
        "that idle threads do not spin)",
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument(
        "--collect",
        nargs="+",
        metavar="JSON",
        help="measure nothing: the speed section of BENCHMARKS.md from these --json files",
    )
    parser.add_argument(
        "--write", action="store_true", help="with --collect: splice it into BENCHMARKS.md"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)  # floor | ours:<d> | adv_lib:<d>
    return parser.parse_args()


def limit_threads(framework: str, threads: int) -> None:
    """Before the framework starts (TensorFlow and JAX fix their pools at start-up)."""
    from foolbox_alma._runtime import limit_threads_before_import

    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    limit_threads_before_import(framework, threads)
    if framework == "pytorch":
        import torch

        torch.set_num_threads(threads)


def model_and_data(framework: str, name: str, batch: int) -> Tuple[Any, Any, Any, Any]:
    """The Foolbox model, the PyTorch module (adv_lib's attacks call it; None elsewhere), and a
    batch of inputs with the model's own predictions as labels (every image is attacked)."""
    from foolbox_alma import zoo
    from foolbox_alma._runtime import to_native
    from foolbox_alma.counting import torch_module_of

    if name == "keras-resnet50":
        import keras

        from foolbox_alma._runtime import TensorFlowModel

        network = keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3))
        fmodel = TensorFlowModel(network, bounds=(0, 1), data_format="channels_last")
        x = np.random.default_rng(0).uniform(size=(batch, 224, 224, 3)).astype(np.float32)
    elif name == "torchvision-resnet50":
        import foolbox as fb
        import torch
        import torchvision

        torch.manual_seed(0)
        fmodel = fb.PyTorchModel(torchvision.models.resnet50(weights=None).eval(), bounds=(0, 1))
        x = np.random.default_rng(0).uniform(size=(batch, 3, 224, 224)).astype(np.float32)
    else:
        fmodel = zoo.foolbox_model(framework, name)
        x = ep.astensor(zoo.heldout_for(framework, n=batch, model=name)[0]).numpy()
    native = to_native(fmodel, x)
    labels = ep.astensor(fmodel(native)).argmax(axis=-1).numpy()
    module = torch_module_of(fmodel)
    if module is not None:
        for parameter in module.parameters():
            parameter.requires_grad_(False)  # as the bench and adv_lib's benchmarks do
    return fmodel, module, native, to_native(fmodel, labels)


def runners(
    fmodel: Any, module: Any, x: Any, y: Any, distances: List[str], steps: int, adv_lib: bool
) -> Dict[str, Callable[[], None]]:
    """The timed functions: the floor, and each attack (one object per attack for the run)."""
    import foolbox as fb

    from foolbox_alma import ALMA
    from foolbox_alma.timing import floor_pass

    one_pass = floor_pass(fmodel, x, y)  # compiled and warmed on TF/JAX, like the bench's

    def floor() -> None:
        for _ in range(steps):
            one_pass()

    out: Dict[str, Callable[[], None]] = {"floor": floor}
    criterion = fb.criteria.Misclassification(y)
    for distance in distances:
        attack = ALMA(distance=distance, steps=steps)
        out[f"ours:{distance}"] = _waited(lambda a=attack: a.run(fmodel, x, criterion))
        if adv_lib and module is not None and distance in ADV_LIB_INIT:
            from adv_lib.attacks import alma

            options = dict(distance=distance, num_steps=steps, α=attack.alpha,
                           init_lr_distance=ADV_LIB_INIT[distance])  # fmt: skip
            out[f"adv_lib:{distance}"] = _waited(lambda o=options: alma(module, x, y, **o))
    return out


def _waited(run: Callable[[], Any]) -> Callable[[], None]:
    def call() -> None:
        ep.astensor(run()).numpy()  # waits for the result on every backend

    return call


def time_rounds(
    functions: Dict[str, Callable[[], None]], rounds: int, clock: Callable[[], float]
) -> Dict[str, List[float]]:
    """Seconds of each function in each round; the order alternates round by round, so that a
    busy machine's slow spells hit them alike."""
    seconds: Dict[str, List[float]] = {name: [] for name in functions}
    names = list(functions)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            start = clock()
            functions[name]()
            seconds[name].append(clock() - start)
            print(f"  round {r + 1} {name}: {seconds[name][-1]:.2f} s", file=sys.stderr)
    return seconds


def ratios(seconds: Dict[str, List[float]]) -> Dict[str, Dict[str, float]]:
    floor = seconds["floor"]
    out = {}
    for name, values in seconds.items():
        per_round = [v / f for v, f in zip(values, floor)]
        out[name] = {
            "median": statistics.median(per_round),
            "min": min(per_round),
            "max": max(per_round),
            "amortised": sum(values) / sum(floor),
            "seconds": statistics.median(values),
            "first": values[0],
        }
    return out


def peak_of(run: Callable[[], None]) -> float:
    """Peak resident memory (bytes) while ``run`` runs: the process's peak is reset first (Linux's
    ``clear_refs``), so that imports and the model's loading, the same for every run, do not
    hide the run's own peak; where it cannot be reset, the process's peak so far."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        run()
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0  # KiB on Linux
    run()
    with open("/proc/self/status") as f:
        peak_kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return peak_kib * 1024.0


def peak_memory(args: argparse.Namespace, names: List[str]) -> Dict[str, float]:
    """Peak resident memory (bytes) of a child process running only ``name``, for each name."""
    peaks = {}
    for name in names:
        command = [sys.executable, __file__, "--framework", args.framework, "--model", args.model,
                   "--batch", str(args.batch), "--steps", str(args.steps), "--threads",
                   str(args.threads), "--distances", args.distances, "--child", name]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        peaks[name] = float(done.stdout.strip().splitlines()[-1])
    return peaks


def main() -> int:
    args = arguments()
    if args.collect:
        return collect(args.collect, args.write)
    limit_threads(args.framework, args.threads)
    distances = [d for d in args.distances.split(",") if d]
    fmodel, module, x, y = model_and_data(args.framework, args.model, args.batch)
    adv_lib = not args.no_adv_lib and args.framework == "pytorch" and _importable("adv_lib")
    functions = runners(fmodel, module, x, y, distances, args.steps, adv_lib)
    if args.child:
        print(peak_of(functions[args.child]))
        return 0
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    table = ratios(time_rounds(functions, args.rounds, clock))
    batch_bytes = ep.astensor(x).numpy().nbytes
    peaks = peak_memory(args, list(functions)) if args.memory else {}
    record = {"args": vars(args), "ratios": table, "peaks": peaks, "started": started,
              "batch_bytes": batch_bytes, "machine": _machine(), "load": _load()}  # fmt: skip
    print(run_text(record))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)
    return 0


def command_of(args: Dict[str, Any]) -> str:
    """The command line that made a run (from its recorded arguments)."""
    words = ["python scripts/bench_speed.py"]
    for flag in ("framework", "model", "batch", "steps", "rounds", "distances", "threads", "clock"):
        words.append(f"--{flag} {args[flag]}")
    words += [f"--{flag.replace('_', '-')}" for flag in ("no_adv_lib", "memory") if args[flag]]
    return " ".join(words)


def run_text(record: Dict[str, Any]) -> str:
    """One run: its title, command, date, machine and load, and the table of ratios (with peak
    memory over the floor's, in copies of the input batch, when measured)."""
    from foolbox_alma._io import markdown_table

    args, table, peaks = record["args"], record["ratios"], record["peaks"]
    header = ["run", "ALMA / floor (median [min, max])", "round 1", "amortised", "seconds (median)"]
    if peaks:
        header.append("peak memory over the floor's (input batches)")
    rows = []
    for name, r in table.items():
        row = [name, f"{r['median']:.3f} [{r['min']:.3f}, {r['max']:.3f}]",
               f"{r['first'] / table['floor']['first']:.3f}", f"{r['amortised']:.3f}",
               f"{r['seconds']:.2f}"]  # fmt: skip
        if peaks:
            row.append(f"{(peaks[name] - peaks['floor']) / record['batch_bytes']:+.1f}")
        rows.append(row)
    return "\n".join([
        f"### {args['model']} ({args['framework']}), batch {args['batch']}, {args['steps']} steps, "
        f"{args['threads']} thread(s)",
        "",
        f"`{command_of(args)}` (with `OMP_WAIT_POLICY=PASSIVE`): {args['rounds']} interleaved "
        f"rounds, {args['clock']} time; started {record['started']}; {record['machine']['cpu']}, "
        f"load average (1, 5, 15 min) {record.get('load', 'not recorded')} at the end",
        "",
        markdown_table(header, rows),
        "",
    ])  # fmt: skip


SECTION = "Speed: ALMA over the model's own passes"


def collect(paths: List[str], write: bool) -> int:
    """The speed section of BENCHMARKS.md from runs of this script (their ``--json`` files)."""
    from pathlib import Path

    from foolbox_alma.bench.report import splice_section

    records = [json.loads(Path(p).read_text()) for p in paths]
    order = {"pytorch": 0, "tensorflow": 1, "jax": 2}
    records.sort(key=lambda r: (r["args"]["model"], order[r["args"]["framework"]], r["started"]))
    text = "\n".join([f"## {SECTION}", "", INTRO, ""] + [run_text(r) for r in records])
    if write:
        splice_section(Path("BENCHMARKS.md"), SECTION, text)
        print("wrote BENCHMARKS.md")
    else:
        print(text)
    return 0


INTRO = """Written by `python scripts/bench_speed.py --collect docs/speed/*.json --write` from the
records of the runs below (each made by the command shown, with `--json`). Each run times,
interleaved round by round in one process, the floor (`steps` plain forward+backward passes of
the model, compiled on TensorFlow and JAX) and ALMA with each distance (`steps` steps, one
attack object for the whole run: on TensorFlow and JAX the first round includes tracing and
compiling its step), and on PyTorch adv_lib's ALMA with the same settings. Ratios are ALMA's
time over the floor's in the same round: the median over rounds with its range, the first
round's (on TensorFlow and JAX: one attack of `steps` steps with its trace and compilation, the
floor's own compiled before timing), and the amortised ratio (all rounds' time over all rounds'
floor). Peak memory (`--memory`): each run once more in its own child process, its peak
resident memory over the floor's, in copies of the input batch."""


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _machine() -> Dict[str, Any]:
    from foolbox_alma._runtime import machine_info

    info = machine_info()
    info["platform"] = platform.platform()
    return info


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
